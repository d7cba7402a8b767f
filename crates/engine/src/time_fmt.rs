//! Times as people read and type them.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// `2026-11-25T10:04:00Z`.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `2026-11-25 10:04 UTC`, for tables and pages: every time on screen is UTC, and says so.
pub fn short(unix: i64) -> String {
    let s = rfc3339(unix);
    s.get(..16)
        .map(|p| format!("{} UTC", p.replace('T', " ")))
        .unwrap_or(s)
}

/// Serialises an optional epoch-seconds time as RFC 3339, like every time in `--json` and the
/// API.
pub fn serde_rfc3339_opt<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Parses an absolute time: RFC 3339, or a date (`2026-11-01`, midnight UTC).
pub fn parse_time(input: &str) -> Option<i64> {
    let s = input.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &date_fmt).ok().map(|d| {
        PrimitiveDateTime::new(d, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp()
    })
}

/// Parses `--since`: an absolute time ([`parse_time`]), or an age such as `7d`, `24h`, `30m`,
/// `2w` counted back from `now`.
pub fn parse_since(input: &str, now: i64) -> Option<i64> {
    if let Some(t) = parse_time(input) {
        return Some(t);
    }
    let s = input.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(now - n.checked_mul(secs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_764_000_000;
        assert_eq!(parse_since("7d", now), Some(now - 7 * 86_400));
        assert_eq!(parse_since("24h", now), Some(now - 86_400));
        assert_eq!(parse_since("2025-01-01", now), Some(1_735_689_600));
        assert_eq!(
            parse_since("2025-01-01T00:00:10Z", now),
            Some(1_735_689_610)
        );
        assert_eq!(parse_since("yesterday", now), None);
        assert_eq!(parse_since("7y", now), None);
        assert_eq!(parse_time("2025-01-01"), Some(1_735_689_600));
        assert_eq!(parse_time("7d"), None);
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(short(1_735_689_600), "2025-01-01 00:00 UTC");
    }
}

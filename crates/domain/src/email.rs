//! Emails compared the way people mean them: trimmed and case-insensitive.

use std::fmt;

/// A normalised email: trimmed and lower-cased. Two accounts or identities have "the same
/// email" exactly when their keys are equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmailKey(String);

impl EmailKey {
    /// `None` for anything that is not an address (empty, no `@`, spaces inside, a
    /// forgotten-user placeholder).
    pub fn parse(raw: &str) -> Option<Self> {
        let t = raw.trim();
        let (local, domain) = t.split_once('@')?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || t.chars().any(char::is_whitespace)
        {
            return None;
        }
        Some(Self(t.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// TestRail's "Forget this user" replaces name and email with a placeholder such as
/// `F15238729834696`: an `F` and a long run of digits, no `@`.
pub fn is_forgotten_placeholder(email: &str) -> bool {
    let t = email.trim();
    t.len() >= 8 && t.starts_with('F') && t[1..].chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_trimmed_and_case_insensitive() {
        assert_eq!(
            EmailKey::parse(" Jane.Doe@Example.COM "),
            EmailKey::parse("jane.doe@example.com")
        );
        assert_eq!(
            EmailKey::parse("a+b@x.io").map(|k| k.to_string()),
            Some("a+b@x.io".into())
        );
        for bad in [
            "",
            "jane",
            "@x.io",
            "jane@",
            "ja ne@x.io",
            "a@b@c",
            "F15238729834696",
        ] {
            assert_eq!(EmailKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forgotten_placeholders() {
        assert!(is_forgotten_placeholder("F15238729834696"));
        assert!(!is_forgotten_placeholder("Fred@example.com"));
        assert!(!is_forgotten_placeholder("F12"));
        assert!(!is_forgotten_placeholder("f15238729834696"));
    }
}

//! Identity files: CSV with a header row `id,name,email,other_emails,status` (further columns
//! become free attributes; `manager_email`, if present, must be an email: that manager reviews
//! the person's access in access reviews), or JSON: an array of objects with the same keys. Every malformed
//! row is reported with its line (or entry) number, and then nothing is imported.

use std::collections::{BTreeMap, BTreeSet};

use accessrail_domain::{EmailKey, Identity, IdentityStatus};
use serde_json::Value;

/// One problem in an identity file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// `line 4` for CSV, `entry 3` for JSON.
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// From the file name, or from the content when the name says nothing.
    pub fn guess(path: &str, bytes: &[u8]) -> Self {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".json") {
            return Self::Json;
        }
        if lower.ends_with(".csv") {
            return Self::Csv;
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Self::Json,
            _ => Self::Csv,
        }
    }
}

const REQUIRED: [&str; 5] = ["id", "name", "email", "other_emails", "status"];

struct Raw {
    location: String,
    id: String,
    name: String,
    email: String,
    other_emails: Vec<String>,
    status: String,
    attributes: BTreeMap<String, String>,
}

/// Problems shown in full before the rest are only counted: a file with 100,000 bad rows says
/// what is wrong without printing megabytes.
pub const ERRORS_SHOWN: usize = 20;

/// The first [`ERRORS_SHOWN`] problems, one per entry, then "... and N more" if there are more.
pub fn error_lines(errors: &[RowError]) -> Vec<String> {
    let mut lines: Vec<String> = errors
        .iter()
        .take(ERRORS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if errors.len() > ERRORS_SHOWN {
        lines.push(format!(
            "... and {} more problem(s)",
            errors.len() - ERRORS_SHOWN
        ));
    }
    lines
}

pub fn parse(bytes: &[u8], format: Format) -> Result<Vec<Identity>, Vec<RowError>> {
    let (raws, mut errors) = match format {
        Format::Csv => parse_csv(bytes)?,
        Format::Json => parse_json(bytes)?,
    };
    match validate(raws) {
        Ok(ids) if errors.is_empty() => Ok(ids),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            errors.sort_by_key(|e| {
                e.location
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            Err(errors)
        }
    }
}

type Parsed = (Vec<Raw>, Vec<RowError>);

fn parse_csv(bytes: &[u8]) -> Result<Parsed, Vec<RowError>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            return Err(vec![RowError {
                location: "line 1".into(),
                message: format!("cannot read the header row: {e}"),
            }]);
        }
    };
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !headers.iter().any(|h| h == r))
        .collect();
    if !missing.is_empty() {
        return Err(vec![RowError {
            location: "line 1".into(),
            message: format!(
                "the header row must name id,name,email,other_emails,status; missing: {}",
                missing.join(", ")
            ),
        }]);
    }
    let mut seen = BTreeSet::new();
    for h in &headers {
        if !seen.insert(h.clone()) {
            return Err(vec![RowError {
                location: "line 1".into(),
                message: format!("the column {h:?} appears twice"),
            }]);
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    location: format!("line {line}"),
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let mut raw = Raw {
            location: format!("line {line}"),
            id: String::new(),
            name: String::new(),
            email: String::new(),
            other_emails: Vec::new(),
            status: String::new(),
            attributes: BTreeMap::new(),
        };
        for (h, v) in headers.iter().zip(rec.iter()) {
            match h.as_str() {
                "id" => raw.id = v.to_string(),
                "name" => raw.name = v.to_string(),
                "email" => raw.email = v.to_string(),
                "other_emails" => raw.other_emails = split_emails(v),
                "status" => raw.status = v.to_string(),
                _ if !v.is_empty() => {
                    raw.attributes.insert(h.clone(), v.to_string());
                }
                _ => {}
            }
        }
        out.push(raw);
    }
    Ok((out, errors))
}

fn split_emails(v: &str) -> Vec<String> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_json(bytes: &[u8]) -> Result<Parsed, Vec<RowError>> {
    let whole = |m: String| {
        vec![RowError {
            location: "file".into(),
            message: m,
        }]
    };
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| whole(format!("not valid JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(whole(
            "the JSON file must hold an array of identities".into(),
        ));
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let location = format!("entry {}", n + 1);
        let Value::Object(map) = item else {
            errors.push(RowError {
                location,
                message: "not an object".into(),
            });
            continue;
        };
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        };
        let mut raw = Raw {
            location: location.clone(),
            id: String::new(),
            name: String::new(),
            email: String::new(),
            other_emails: Vec::new(),
            status: String::new(),
            attributes: BTreeMap::new(),
        };
        let mut bad = None;
        for (k, v) in &map {
            match k.as_str() {
                "other_emails" => match v {
                    Value::Array(list) => {
                        for e in list {
                            match e.as_str() {
                                Some(s) => raw.other_emails.extend(split_emails(s)),
                                None => bad = Some("other_emails must hold strings".to_string()),
                            }
                        }
                    }
                    Value::String(s) => raw.other_emails = split_emails(s),
                    Value::Null => {}
                    _ => bad = Some("other_emails must be a list or a ';'-separated string".into()),
                },
                key => match text(v) {
                    Some(t) => match key {
                        "id" => raw.id = t,
                        "name" => raw.name = t,
                        "email" => raw.email = t,
                        "status" => raw.status = t,
                        _ if !t.is_empty() => {
                            raw.attributes.insert(key.to_string(), t);
                        }
                        _ => {}
                    },
                    None => bad = Some(format!("{key} must be a string")),
                },
            }
        }
        match bad {
            Some(m) => errors.push(RowError {
                location,
                message: m,
            }),
            None => out.push(raw),
        }
    }
    Ok((out, errors))
}

/// The optional column naming a person's manager (an email): their access reviewer.
pub const MANAGER_EMAIL: &str = "manager_email";

/// The id prefix of people an identity provider manages through SCIM (`scim:<token>:<user>`):
/// an import file cannot use it, and a full import never marks them gone.
pub const SCIM_PREFIX: &str = "scim:";

fn validate(raws: Vec<Raw>) -> Result<Vec<Identity>, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut ids = BTreeMap::new();
    let mut out = Vec::new();
    for raw in raws {
        let mut problems = Vec::new();
        if raw.id.is_empty() {
            problems.push("id is empty".to_string());
        } else if raw.id.starts_with(SCIM_PREFIX) {
            problems.push(format!(
                "id {:?}: ids starting with {SCIM_PREFIX:?} belong to people SCIM manages",
                raw.id
            ));
        } else if let Some(prev) = ids.insert(raw.id.clone(), raw.location.clone()) {
            problems.push(format!("id {:?} already used at {prev}", raw.id));
        }
        if raw.email.is_empty() {
            problems.push("email is empty".to_string());
        } else if EmailKey::parse(&raw.email).is_none() {
            problems.push(format!("{:?} is not an email address", raw.email));
        }
        for e in &raw.other_emails {
            if EmailKey::parse(e).is_none() {
                problems.push(format!("other_emails: {e:?} is not an email address"));
            }
        }
        // The manager reviews this person's access in access reviews.
        if let Some(m) = raw.attributes.get(MANAGER_EMAIL)
            && EmailKey::parse(m).is_none()
        {
            problems.push(format!("{MANAGER_EMAIL}: {m:?} is not an email address"));
        }
        let status = IdentityStatus::parse(&raw.status);
        if status.is_none() {
            problems.push(if raw.status.is_empty() {
                "status is required (active or leaver)".to_string()
            } else {
                format!("status {:?} is not active or leaver", raw.status)
            });
        }
        if !problems.is_empty() {
            errors.push(RowError {
                location: raw.location,
                message: problems.join("; "),
            });
            continue;
        }
        let mut emails = vec![raw.email.clone()];
        for e in raw.other_emails {
            if !emails.iter().any(|x| x.eq_ignore_ascii_case(&e)) {
                emails.push(e);
            }
        }
        out.push(Identity {
            name: if raw.name.is_empty() {
                raw.email
            } else {
                raw.name
            },
            id: raw.id,
            emails,
            status: status.unwrap_or(IdentityStatus::Active),
            attributes: raw.attributes,
            gone: false,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_email_must_be_an_email() {
        let ok = parse(
            b"id,name,email,other_emails,status,manager_email\n1,Ana,ana@x.io,,active,boss@x.io\n",
            Format::Csv,
        )
        .unwrap();
        assert_eq!(
            ok[0].attributes.get(MANAGER_EMAIL).map(String::as_str),
            Some("boss@x.io")
        );
        let errs = parse(
            b"id,name,email,other_emails,status,manager_email\n1,Ana,ana@x.io,,active,the boss\n",
            Format::Csv,
        )
        .expect_err("not an email");
        assert!(errs[0].message.contains("manager_email"), "{errs:?}");
    }

    #[test]
    fn csv_with_attributes_and_aliases() {
        let csv = "id,name,email,other_emails,status,department\n\
                   p1,Ana,ana@x.io,ana.alias@x.io; a@x.io,active,QA\n\
                   p2,Ben,ben@x.io,,leaver,\n";
        let ids = parse(csv.as_bytes(), Format::Csv).expect("valid");
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].emails, vec!["ana@x.io", "ana.alias@x.io", "a@x.io"]);
        assert_eq!(
            ids[0].attributes.get("department").map(String::as_str),
            Some("QA")
        );
        assert_eq!(ids[1].status, IdentityStatus::Leaver);
        assert!(ids[1].attributes.is_empty());
    }

    #[test]
    fn many_errors_show_the_first_twenty_and_a_count() {
        let mut csv = String::from("id,name,email,other_emails,status\n");
        for i in 0..1000 {
            csv.push_str(&format!("p{i},Person,not-an-email,,active\n"));
        }
        let errors = parse(csv.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(errors.len(), 1000);
        let lines = error_lines(&errors);
        assert_eq!(lines.len(), ERRORS_SHOWN + 1);
        assert_eq!(lines.last().unwrap(), "... and 980 more problem(s)");
        assert!(lines[0].contains("line 2"), "{}", lines[0]);
    }

    #[test]
    fn csv_errors_name_their_lines() {
        let csv = "id,name,email,other_emails,status\n\
                   p1,Ana,ana@x.io,,active\n\
                   p1,Dup,dup@x.io,,active\n\
                   p3,Bad,not-an-email,,active\n\
                   p4,NoStatus,n@x.io,,\n\
                   p5,Odd,o@x.io,bad alias,retired\n";
        let errs = parse(csv.as_bytes(), Format::Csv).expect_err("invalid");
        let locs: Vec<&str> = errs.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(locs, vec!["line 3", "line 4", "line 5", "line 6"]);
        assert!(errs[3].message.contains("retired") && errs[3].message.contains("bad alias"));
        let errs = parse(b"id,email\n1,a@x.io\n", Format::Csv).expect_err("header");
        assert!(
            errs[0]
                .message
                .contains("missing: name, other_emails, status")
        );
    }

    #[test]
    fn json_forms() {
        let json = r#"[{"id":"p1","name":"Ana","email":"ana@x.io","other_emails":["b@x.io"],"status":"active","department":"QA"},
                      {"id":2,"name":"Ben","email":"ben@x.io","other_emails":"c@x.io;d@x.io","status":"leaver"}]"#;
        let ids = parse(json.as_bytes(), Format::Json).expect("valid");
        assert_eq!(ids[1].id, "2");
        assert_eq!(ids[1].emails, vec!["ben@x.io", "c@x.io", "d@x.io"]);
        let errs =
            parse(br#"[{"id":"x","email":"x@x.io"}, 3]"#, Format::Json).expect_err("invalid");
        assert_eq!(
            errs.iter().map(|e| e.location.as_str()).collect::<Vec<_>>(),
            vec!["entry 1", "entry 2"]
        );
        assert_eq!(Format::guess("people.json", b""), Format::Json);
        assert_eq!(Format::guess("people", b"  ["), Format::Json);
        assert_eq!(Format::guess("people.txt", b"id,"), Format::Csv);
    }
}

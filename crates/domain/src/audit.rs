//! The audit log's record and its hash chain: each entry's hash covers the previous entry's
//! hash and every field of the entry, so an edited, removed or reordered entry breaks the chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first entry chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written right before a step's first write to TestRail: if no entry for the step follows
    /// it, the process stopped while the step ran (its effect is unknown; the next scan shows it).
    Started,
    Done,
    Noop,
    NotRun,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Done => "done",
            Self::Noop => "noop",
            Self::NotRun => "not_run",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "started" => Some(Self::Started),
            "done" => Some(Self::Done),
            "noop" => Some(Self::Noop),
            "not_run" => Some(Self::NotRun),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One audit entry's content (what the hash covers, besides the previous hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: i64,
    /// `cli:<user>@<host>`, `token:<name>`, `flow:<rule>`, `scheduler`.
    pub actor: String,
    pub connection: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The TestRail calls made, e.g. `update_user/12`.
    pub calls: Vec<String>,
    pub outcome: Outcome,
    pub message: Option<String>,
}

/// `sha256(prev_hash || "\n" || canonical JSON of the record)`, hex.
pub fn chain_hash(prev_hash: &str, r: &AuditRecord) -> String {
    let canonical = serde_json::json!([
        r.at,
        r.actor,
        r.connection,
        r.action,
        r.target,
        r.before,
        r.after,
        r.calls,
        r.outcome.as_str(),
        r.message
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a chain in order: `(id, record, prev_hash, hash)`. Returns the first broken id.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = (i64, &'a AuditRecord, &'a str, &'a str)>,
) -> Result<u64, (i64, String)> {
    let mut expected_prev = GENESIS.to_string();
    let mut n = 0;
    for (id, rec, prev, hash) in entries {
        if prev != expected_prev {
            return Err((id, "its previous-hash does not match the entry before it (an entry was removed or reordered)".into()));
        }
        if chain_hash(prev, rec) != hash {
            return Err((
                id,
                "its content does not match its hash (the entry was altered)".into(),
            ));
        }
        expected_prev = hash.to_string();
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> AuditRecord {
        AuditRecord {
            at: i,
            actor: "cli:ana@host".into(),
            connection: "acme".into(),
            action: "deactivate".into(),
            target: format!("user{i}@x.io"),
            before: Some("active".into()),
            after: Some("inactive".into()),
            calls: vec!["update_user/3".into()],
            outcome: Outcome::Done,
            message: None,
        }
    }

    #[test]
    fn chain_detects_edits_removals_and_reordering() {
        let mut chain = vec![];
        let mut prev = GENESIS.to_string();
        for i in 1..=4 {
            let r = rec(i);
            let h = chain_hash(&prev, &r);
            chain.push((i, r, prev.clone(), h.clone()));
            prev = h;
        }
        let view = |c: &Vec<(i64, AuditRecord, String, String)>| {
            c.iter()
                .map(|(i, r, p, h)| (*i, r.clone(), p.clone(), h.clone()))
                .collect::<Vec<_>>()
        };
        let check = |c: &Vec<(i64, AuditRecord, String, String)>| {
            verify_chain(c.iter().map(|(i, r, p, h)| (*i, r, p.as_str(), h.as_str())))
        };
        assert_eq!(check(&chain), Ok(4));
        let mut edited = view(&chain);
        edited[1].1.outcome = Outcome::Failed;
        assert_eq!(check(&edited).map_err(|e| e.0), Err(2));
        let mut removed = view(&chain);
        removed.remove(2);
        assert_eq!(check(&removed).map_err(|e| e.0), Err(4));
        let mut swapped = view(&chain);
        swapped.swap(0, 1);
        assert_eq!(check(&swapped).map_err(|e| e.0), Err(2));
    }
}

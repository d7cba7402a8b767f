//! Matching TestRail accounts to identities by email. An email that two identities claim, or
//! that two accounts share, is ambiguous and never guessed. Forgotten users are never matched.
//! Manual pins and exclusions win over the email rule.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::email::{EmailKey, is_forgotten_placeholder};
use crate::identity::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideKind {
    /// This account is this identity, whatever the emails say.
    Pin,
    /// This account is not this identity.
    Exclude,
}

impl OverrideKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pin => "pin",
            Self::Exclude => "exclude",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOverride {
    pub account_id: u64,
    pub identity_id: String,
    pub kind: OverrideKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchState {
    Matched,
    Unmatched,
    Ambiguous,
    Forgotten,
}

impl MatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Unmatched => "unmatched",
            Self::Ambiguous => "ambiguous",
            Self::Forgotten => "forgotten",
        }
    }
}

/// The outcome for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOutcome {
    pub state: MatchState,
    pub identity_id: Option<String>,
    /// For an ambiguous outcome: the identities that claim the email.
    pub candidates: Vec<String>,
    /// Decided by a manual pin.
    pub pinned: bool,
    /// Why, in a few words (for reports).
    pub reason: &'static str,
}

/// What matching needs to know of an account.
#[derive(Debug, Clone, Copy)]
pub struct AccountRef<'a> {
    pub id: u64,
    pub email: Option<&'a str>,
}

/// Matches every account. Deterministic: the same inputs give the same outcomes.
pub fn match_accounts(
    accounts: &[AccountRef<'_>],
    identities: &[Identity],
    overrides: &[MatchOverride],
) -> BTreeMap<u64, MatchOutcome> {
    let known: BTreeSet<&str> = identities.iter().map(|i| i.id.as_str()).collect();
    let mut claims: BTreeMap<EmailKey, BTreeSet<&str>> = BTreeMap::new();
    for ident in identities {
        for key in ident.email_keys() {
            claims.entry(key).or_default().insert(ident.id.as_str());
        }
    }
    let mut accounts_per_email: BTreeMap<EmailKey, u32> = BTreeMap::new();
    for a in accounts {
        if let Some(k) = a.email.and_then(EmailKey::parse) {
            *accounts_per_email.entry(k).or_default() += 1;
        }
    }
    let mut pins: BTreeMap<u64, &str> = BTreeMap::new();
    let mut excluded: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for o in overrides {
        match o.kind {
            OverrideKind::Pin if known.contains(o.identity_id.as_str()) => {
                pins.insert(o.account_id, o.identity_id.as_str());
            }
            OverrideKind::Pin => {}
            OverrideKind::Exclude => {
                excluded
                    .entry(o.account_id)
                    .or_default()
                    .insert(o.identity_id.as_str());
            }
        }
    }

    let mut out = BTreeMap::new();
    for a in accounts {
        let outcome = if let Some(id) = pins.get(&a.id) {
            MatchOutcome {
                state: MatchState::Matched,
                identity_id: Some((*id).to_string()),
                candidates: vec![],
                pinned: true,
                reason: "pinned by hand",
            }
        } else if a.email.is_some_and(is_forgotten_placeholder) {
            outcome(MatchState::Forgotten, "forgotten user (GDPR placeholder)")
        } else if let Some(key) = a.email.and_then(EmailKey::parse) {
            let none = BTreeSet::new();
            let excl = excluded.get(&a.id).unwrap_or(&none);
            let candidates: Vec<String> = claims
                .get(&key)
                .map(|ids| {
                    ids.iter()
                        .filter(|i| !excl.contains(*i))
                        .map(|i| (*i).to_string())
                        .collect()
                })
                .unwrap_or_default();
            if accounts_per_email.get(&key).copied().unwrap_or(0) > 1 {
                MatchOutcome {
                    candidates,
                    ..outcome(MatchState::Ambiguous, "email shared by several accounts")
                }
            } else {
                match candidates.len() {
                    0 => outcome(MatchState::Unmatched, "no identity has this email"),
                    1 => MatchOutcome {
                        identity_id: candidates.first().cloned(),
                        ..outcome(MatchState::Matched, "email")
                    },
                    _ => MatchOutcome {
                        candidates,
                        ..outcome(MatchState::Ambiguous, "email claimed by several identities")
                    },
                }
            }
        } else {
            outcome(MatchState::Unmatched, "no usable email")
        };
        out.insert(a.id, outcome);
    }
    out
}

fn outcome(state: MatchState, reason: &'static str) -> MatchOutcome {
    MatchOutcome {
        state,
        identity_id: None,
        candidates: vec![],
        pinned: false,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityStatus;

    fn ident(id: &str, emails: &[&str]) -> Identity {
        Identity {
            id: id.into(),
            name: id.into(),
            emails: emails.iter().map(|e| (*e).to_string()).collect(),
            status: IdentityStatus::Active,
            attributes: BTreeMap::new(),
            gone: false,
        }
    }

    #[test]
    fn matching_rules() {
        let identities = vec![
            ident("p1", &["ana@x.io", "ana.alias@x.io"]),
            ident("p2", &["ben@x.io"]),
            ident("p3", &["shared@x.io"]),
            ident("p4", &["SHARED@x.io"]),
            ident("p5", &["dup@x.io"]),
        ];
        let accounts = [
            AccountRef {
                id: 1,
                email: Some("  ANA@X.IO "),
            },
            AccountRef {
                id: 2,
                email: Some("ana.alias@x.io"),
            },
            AccountRef {
                id: 3,
                email: Some("shared@x.io"),
            },
            AccountRef {
                id: 4,
                email: Some("nobody@x.io"),
            },
            AccountRef {
                id: 5,
                email: Some("F15238729834696"),
            },
            AccountRef {
                id: 6,
                email: Some("dup@x.io"),
            },
            AccountRef {
                id: 7,
                email: Some("Dup@x.io"),
            },
            AccountRef { id: 8, email: None },
            AccountRef {
                id: 9,
                email: Some("ben@x.io"),
            },
        ];
        let m = match_accounts(&accounts, &identities, &[]);
        assert_eq!(m[&1].identity_id.as_deref(), Some("p1"));
        assert_eq!(m[&2].identity_id.as_deref(), Some("p1"), "aliases match");
        assert_eq!(m[&3].state, MatchState::Ambiguous);
        assert_eq!(m[&3].candidates, vec!["p3", "p4"]);
        assert_eq!(m[&4].state, MatchState::Unmatched);
        assert_eq!(m[&5].state, MatchState::Forgotten);
        assert_eq!(
            (m[&6].state, m[&7].state),
            (MatchState::Ambiguous, MatchState::Ambiguous)
        );
        assert_eq!(m[&8].state, MatchState::Unmatched);
        assert_eq!(m[&9].state, MatchState::Matched);

        let overrides = vec![
            MatchOverride {
                account_id: 4,
                identity_id: "p2".into(),
                kind: OverrideKind::Pin,
            },
            MatchOverride {
                account_id: 3,
                identity_id: "p4".into(),
                kind: OverrideKind::Exclude,
            },
            MatchOverride {
                account_id: 9,
                identity_id: "p2".into(),
                kind: OverrideKind::Exclude,
            },
            MatchOverride {
                account_id: 1,
                identity_id: "unknown".into(),
                kind: OverrideKind::Pin,
            },
        ];
        let m = match_accounts(&accounts, &identities, &overrides);
        assert_eq!(
            (m[&4].state, m[&4].identity_id.as_deref(), m[&4].pinned),
            (MatchState::Matched, Some("p2"), true)
        );
        assert_eq!(
            m[&3].identity_id.as_deref(),
            Some("p3"),
            "exclusion resolves the ambiguity"
        );
        assert_eq!(m[&9].state, MatchState::Unmatched);
        assert_eq!(
            m[&1].identity_id.as_deref(),
            Some("p1"),
            "a pin to an unknown identity is ignored"
        );
    }
}

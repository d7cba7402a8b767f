//! The organisation's people, as imported from an HR or directory export.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::email::EmailKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityStatus {
    Active,
    Leaver,
}

impl IdentityStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Self::Active),
            "leaver" => Some(Self::Leaver),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Leaver => "leaver",
        }
    }
}

/// One person. `emails[0]` is the primary address; the rest are aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub emails: Vec<String>,
    pub status: IdentityStatus,
    /// Free attributes such as `department`.
    pub attributes: BTreeMap<String, String>,
    /// No longer in the latest full import; still matched, shown as gone.
    pub gone: bool,
}

impl Identity {
    /// Every address of this identity, normalised, without duplicates.
    pub fn email_keys(&self) -> Vec<EmailKey> {
        let mut keys: Vec<EmailKey> = self
            .emails
            .iter()
            .filter_map(|e| EmailKey::parse(e))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

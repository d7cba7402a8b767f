//! A TestRail account as one scan saw it, and the changes between two sightings.

use serde::{Deserialize, Serialize};

/// A TestRail user in a scan. `fields` keeps every field TestRail returned (but the group ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// TestRail's user id.
    pub id: u64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub is_active: bool,
    pub role_id: Option<u64>,
    pub role: Option<String>,
    pub is_admin: Option<bool>,
    pub group_ids: Vec<u64>,
    pub fields: Fields,
}

/// Every field TestRail returned for a user, except its group ids (memberships are facts of
/// their own) and fields sent as null: one compact JSON object with its keys in order. It is
/// kept as that text, which is what the store saves and compares, so a scan writes each user's
/// fields once instead of building a tree per user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields(String);

impl Fields {
    /// Text that is already a compact JSON object with sorted keys, without `group_ids` and
    /// nulls (as a serializer of a sorted map writes it). Anything else is not checked here:
    /// use [`Fields::from_value`].
    pub fn from_canonical(text: String) -> Self {
        Self(text)
    }

    /// From a JSON value: an object keeps its non-null fields but `group_ids`; anything else
    /// is no fields.
    pub fn from_value(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Object(mut m) => {
                m.remove("group_ids");
                m.retain(|_, v| !v.is_null());
                // serde_json's map keeps keys sorted: this text is canonical.
                Self(serde_json::Value::Object(m).to_string())
            }
            _ => Self::default(),
        }
    }

    /// The JSON text (`{}` when there are no fields).
    pub fn as_str(&self) -> &str {
        if self.0.is_empty() { "{}" } else { &self.0 }
    }

    /// One field's value.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        match serde_json::from_str::<serde_json::Value>(self.as_str()) {
            Ok(serde_json::Value::Object(mut m)) => m.remove(key),
            _ => None,
        }
    }

    /// The fields as a JSON value (an object).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_str()).unwrap_or_else(|_| serde_json::json!({}))
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::from_value)
    }
}

/// What a scan found changed, for accounts and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    AccountAdded,
    AccountDeactivated,
    AccountReactivated,
    AccountRenamed,
    EmailChanged,
    RoleChanged,
    AdminGranted,
    AdminRevoked,
    /// The account no longer appears in TestRail's list (TestRail cannot delete users, so this
    /// points at a permissions change or a data problem).
    AccountMissing,
    GroupJoined,
    GroupLeft,
    GroupCreated,
    GroupRenamed,
    GroupDeleted,
    ProjectAdded,
    ProjectCompleted,
    ProjectReopened,
    ProjectRenamed,
    /// TestRail no longer lists the project (deleted).
    ProjectRemoved,
    ProjectAccessGranted,
    ProjectAccessChanged,
    ProjectAccessRevoked,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountAdded => "account_added",
            Self::AccountDeactivated => "account_deactivated",
            Self::AccountReactivated => "account_reactivated",
            Self::AccountRenamed => "account_renamed",
            Self::EmailChanged => "email_changed",
            Self::RoleChanged => "role_changed",
            Self::AdminGranted => "admin_granted",
            Self::AdminRevoked => "admin_revoked",
            Self::AccountMissing => "account_missing",
            Self::GroupJoined => "group_joined",
            Self::GroupLeft => "group_left",
            Self::GroupCreated => "group_created",
            Self::GroupRenamed => "group_renamed",
            Self::GroupDeleted => "group_deleted",
            Self::ProjectAdded => "project_added",
            Self::ProjectCompleted => "project_completed",
            Self::ProjectReopened => "project_reopened",
            Self::ProjectRenamed => "project_renamed",
            Self::ProjectRemoved => "project_removed",
            Self::ProjectAccessGranted => "project_access_granted",
            Self::ProjectAccessChanged => "project_access_changed",
            Self::ProjectAccessRevoked => "project_access_revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

const ALL: [ChangeKind; 22] = [
    ChangeKind::AccountAdded,
    ChangeKind::AccountDeactivated,
    ChangeKind::AccountReactivated,
    ChangeKind::AccountRenamed,
    ChangeKind::EmailChanged,
    ChangeKind::RoleChanged,
    ChangeKind::AdminGranted,
    ChangeKind::AdminRevoked,
    ChangeKind::AccountMissing,
    ChangeKind::GroupJoined,
    ChangeKind::GroupLeft,
    ChangeKind::GroupCreated,
    ChangeKind::GroupRenamed,
    ChangeKind::GroupDeleted,
    ChangeKind::ProjectAdded,
    ChangeKind::ProjectCompleted,
    ChangeKind::ProjectReopened,
    ChangeKind::ProjectRenamed,
    ChangeKind::ProjectRemoved,
    ChangeKind::ProjectAccessGranted,
    ChangeKind::ProjectAccessChanged,
    ChangeKind::ProjectAccessRevoked,
];

/// A change to one account attribute, with the value before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeChange {
    pub kind: ChangeKind,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The account-level changes from `old` (the previous scan's version, if any) to `new`.
/// Group membership changes are computed separately, as set differences.
pub fn account_changes(old: Option<&Account>, new: &Account) -> Vec<AttributeChange> {
    let Some(old) = old else {
        return vec![AttributeChange {
            kind: ChangeKind::AccountAdded,
            before: None,
            after: new.email.clone().or_else(|| new.name.clone()),
        }];
    };
    let mut out = Vec::new();
    let mut push = |kind, before: Option<String>, after: Option<String>| {
        out.push(AttributeChange {
            kind,
            before,
            after,
        });
    };
    if old.is_active && !new.is_active {
        push(
            ChangeKind::AccountDeactivated,
            Some("active".into()),
            Some("inactive".into()),
        );
    }
    if !old.is_active && new.is_active {
        push(
            ChangeKind::AccountReactivated,
            Some("inactive".into()),
            Some("active".into()),
        );
    }
    if old.name != new.name {
        push(
            ChangeKind::AccountRenamed,
            old.name.clone(),
            new.name.clone(),
        );
    }
    let email_key = |e: &Option<String>| e.as_deref().map(|s| s.trim().to_lowercase());
    if email_key(&old.email) != email_key(&new.email) || old.email != new.email {
        push(
            ChangeKind::EmailChanged,
            old.email.clone(),
            new.email.clone(),
        );
    }
    if old.role_id != new.role_id {
        let show = |a: &Account| a.role.clone().or_else(|| a.role_id.map(|r| r.to_string()));
        push(ChangeKind::RoleChanged, show(old), show(new));
    }
    match (old.is_admin, new.is_admin) {
        (Some(false) | None, Some(true)) => push(ChangeKind::AdminGranted, None, None),
        (Some(true), Some(false)) => push(ChangeKind::AdminRevoked, None, None),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> Account {
        Account {
            id: 7,
            name: Some("Ana".into()),
            email: Some("ana@x.io".into()),
            is_active: true,
            role_id: Some(3),
            role: Some("Tester".into()),
            is_admin: Some(false),
            group_ids: vec![],
            fields: Fields::default(),
        }
    }

    #[test]
    fn fields_drop_group_ids_and_nulls_and_keep_keys_in_order() {
        let f =
            Fields::from_value(serde_json::json!({"z": 1, "group_ids": [1], "a": null, "b": "x"}));
        assert_eq!(f.as_str(), r#"{"b":"x","z":1}"#);
        assert_eq!(f.get("b"), Some(serde_json::json!("x")));
        assert_eq!(f.get("group_ids"), None);
        assert_eq!(Fields::from_value(serde_json::json!([1])).as_str(), "{}");
        let back: Fields = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn new_accounts_and_each_attribute() {
        let a = acct();
        assert_eq!(account_changes(None, &a)[0].kind, ChangeKind::AccountAdded);
        assert!(account_changes(Some(&a), &a).is_empty());
        let b = Account {
            is_active: false,
            name: Some("Ana B".into()),
            email: Some("ana.b@x.io".into()),
            role_id: Some(1),
            role: Some("Lead".into()),
            is_admin: Some(true),
            ..acct()
        };
        let kinds: Vec<ChangeKind> = account_changes(Some(&a), &b)
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                ChangeKind::AccountDeactivated,
                ChangeKind::AccountRenamed,
                ChangeKind::EmailChanged,
                ChangeKind::RoleChanged,
                ChangeKind::AdminGranted
            ]
        );
        let back: Vec<ChangeKind> = account_changes(Some(&b), &a)
            .iter()
            .map(|c| c.kind)
            .collect();
        assert!(
            back.contains(&ChangeKind::AccountReactivated)
                && back.contains(&ChangeKind::AdminRevoked)
        );
        for k in ALL {
            assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
        }
    }
}

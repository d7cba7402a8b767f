//! TestRail's users, roles, groups and projects as the API returns them. Every field beyond
//! `id` is optional, because editions and versions differ; fields this client does not know are
//! kept in `extra`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// An id TestRail sends as a number (or, in very old versions, a numeric string).
fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid id {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid id {s:?}"))),
        Some(other) => Err(serde::de::Error::custom(format!("invalid id {other}"))),
    }
}

/// A boolean TestRail may send as `true`/`false` or `1`/`0`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(other) => Err(serde::de::Error::custom(format!("invalid boolean {other}"))),
    }
}

/// A TestRail user (`get_user` format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_active: Option<bool>,
    /// Global role (6.4+).
    #[serde(default, deserialize_with = "lenient_id")]
    pub role_id: Option<u64>,
    #[serde(default)]
    pub role: Option<String>,
    /// 7.3+.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_notifications: Option<bool>,
    /// 7.3+.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_admin: Option<bool>,
    /// 7.3+.
    #[serde(default)]
    pub group_ids: Option<Vec<u64>>,
    /// 7.3+.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub mfa_required: Option<bool>,
    /// Enterprise only.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub sso_enabled: Option<bool>,
    /// Enterprise only.
    #[serde(default)]
    pub assigned_projects: Option<Vec<u64>>,
    /// Fields this client does not know, as TestRail sent them.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A role (`get_roles`, 7.3+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_default: Option<bool>,
    /// Enterprise only.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_project_admin: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A user group (7.5+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A project (only what user access needs; the rest stays in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_completed: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Items that carry TestRail's numeric id.
pub trait HasId {
    fn id(&self) -> u64;

    /// The record as an error names it, e.g. `user id 7 (email ana@example.com)`.
    fn describe(&self) -> String {
        format!("record id {}", self.id())
    }

    /// The other ids the record carries (its role, groups, members, projects), each with the
    /// field it came from.
    fn referenced_ids(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// `kind id N (label)`, or `kind id N` without a label.
fn describe(kind: &str, id: u64, label: Option<(&str, &Option<String>)>) -> String {
    match label {
        Some((field, Some(v))) => format!("{kind} id {id} ({field} {v})"),
        _ => format!("{kind} id {id}"),
    }
}

impl HasId for User {
    fn id(&self) -> u64 {
        self.id
    }

    fn describe(&self) -> String {
        let label = if self.email.is_some() {
            ("email", &self.email)
        } else {
            ("name", &self.name)
        };
        describe("user", self.id, Some(label))
    }

    fn referenced_ids(&self) -> Vec<(&'static str, u64)> {
        let list = |field: &'static str, ids: &Option<Vec<u64>>| {
            ids.iter()
                .flatten()
                .map(move |v| (field, *v))
                .collect::<Vec<_>>()
        };
        let mut out: Vec<_> = self.role_id.map(|r| ("role id", r)).into_iter().collect();
        out.extend(list("group id", &self.group_ids));
        out.extend(list("project id", &self.assigned_projects));
        out
    }
}

impl HasId for Role {
    fn id(&self) -> u64 {
        self.id
    }

    fn describe(&self) -> String {
        describe("role", self.id, Some(("name", &self.name)))
    }
}

impl HasId for Group {
    fn id(&self) -> u64 {
        self.id
    }

    fn describe(&self) -> String {
        describe("group", self.id, Some(("name", &self.name)))
    }

    fn referenced_ids(&self) -> Vec<(&'static str, u64)> {
        self.user_ids
            .iter()
            .map(|u| ("member user id", *u))
            .collect()
    }
}

impl HasId for Project {
    fn id(&self) -> u64 {
        self.id
    }

    fn describe(&self) -> String {
        describe("project", self.id, Some(("name", &self.name)))
    }
}

/// The body of `add_user`. `is_active` is always sent, because TestRail's default for it is
/// documented as false.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_ids: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_notifications: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_projects: Option<Vec<u64>>,
}

impl NewUser {
    /// An active user with TestRail's defaults for everything else.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            email: email.into(),
            is_active: true,
            role_id: None,
            group_ids: None,
            is_admin: None,
            email_notifications: None,
            mfa_required: None,
            sso_enabled: None,
            assigned_projects: None,
        }
    }
}

/// The body of `update_user`: only the fields set are sent (a partial update).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_id: Option<u64>,
    /// Replaces the user's whole set of groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_ids: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_notifications: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_projects: Option<Vec<u64>>,
}

/// The body of `add_group`. `user_ids` is always sent (possibly empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewGroup {
    pub name: String,
    pub user_ids: Vec<u64>,
}

/// The body of `update_group`. `user_ids`, when set, replaces the whole membership.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<u64>>,
}

/// One entry of `update_project`'s `users` list. `role_id` 0 means "use the global role" and
/// null clears the user's project role; it is always sent (null included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectUserRole {
    pub user_id: u64,
    pub role_id: Option<u64>,
}

/// One entry of `update_project`'s `groups` list (same role semantics as users).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectGroupRole {
    pub group_id: u64,
    pub role_id: Option<u64>,
}

/// The body of `update_project` (7.3+) as Accessrail sends it: only the access lists, each
/// complete (every entry the project has, with the one being changed), so the result is the
/// same whether TestRail merges the entries or replaces the list.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProjectUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<ProjectUserRole>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<ProjectGroupRole>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_updates_send_null_to_clear() {
        let body = ProjectUpdate {
            users: Some(vec![
                ProjectUserRole {
                    user_id: 4,
                    role_id: None,
                },
                ProjectUserRole {
                    user_id: 5,
                    role_id: Some(0),
                },
            ]),
            groups: None,
        };
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"users":[{"user_id":4,"role_id":null},{"user_id":5,"role_id":0}]}"#
        );
    }

    #[test]
    fn users_of_every_shape_decode() {
        let pro: User = serde_json::from_str(
            r#"{"id":1,"email":"a@b.io","email_notifications":true,"is_active":true,"is_admin":false,
                "name":"A","role_id":3,"role":"Tester","group_ids":[1,2],"mfa_required":false}"#,
        )
        .expect("professional");
        assert_eq!(pro.group_ids, Some(vec![1, 2]));
        assert_eq!(pro.sso_enabled, None);
        assert!(pro.extra.is_empty());
        let old: User = serde_json::from_str(
            r#"{"id":2,"name":"B","email":"b@b.io","is_active":1,"role_id":"3"}"#,
        )
        .expect("old");
        assert_eq!(old.is_active, Some(true));
        assert_eq!(old.role_id, Some(3));
        assert_eq!(old.is_admin, None);
        let ent: User = serde_json::from_str(
            r#"{"id":3,"sso_enabled":true,"assigned_projects":[1],"custom_x":"y"}"#,
        )
        .expect("enterprise");
        assert_eq!(ent.assigned_projects, Some(vec![1]));
        assert_eq!(ent.extra.get("custom_x"), Some(&Value::from("y")));
        assert!(serde_json::from_str::<User>(r#"{"name":"no id"}"#).is_err());
    }

    #[test]
    fn write_bodies_send_only_what_is_set() {
        let body = serde_json::to_value(UserUpdate {
            is_active: Some(false),
            ..UserUpdate::default()
        })
        .expect("json");
        assert_eq!(body, serde_json::json!({"is_active": false}));
        let body = serde_json::to_value(NewUser::new("A", "a@b.io")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"name":"A","email":"a@b.io","is_active":true})
        );
        let body = serde_json::to_value(NewGroup {
            name: "QA".into(),
            user_ids: vec![],
        })
        .expect("json");
        assert_eq!(body, serde_json::json!({"name":"QA","user_ids":[]}));
    }
}

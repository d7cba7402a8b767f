//! TestRail, as the engine sees it: builds clients and maps TestRail's records to domain
//! accounts, groups and roles, collecting warnings about fields that are missing or unknown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use accessrail_domain::Account;
use accessrail_store::{GroupRecord, RoleRecord};
use testrail_client::{ApiKey, BaseUrl, Client, Group, Role, User};

use crate::error::{EngineError, EngineResult};

/// The fields this version of Accessrail knows on a TestRail user.
pub const KNOWN_USER_FIELDS: &[&str] = &[
    "id",
    "name",
    "email",
    "is_active",
    "role_id",
    "role",
    "email_notifications",
    "is_admin",
    "group_ids",
    "mfa_required",
    "sso_enabled",
    "assigned_projects",
];

/// The default request budget on TestRail Cloud, whose per-instance limit is shared with the
/// customer's CI.
pub const CLOUD_DEFAULT_BUDGET: u32 = 60;

/// How to reach TestRail.
#[derive(Clone)]
pub struct ClientOptions {
    pub allow_http: bool,
    /// Attempts per request (default: the client's policy, 5).
    pub retry_attempts: Option<u32>,
    pub timeout: Duration,
    pub clock: Option<Arc<dyn testrail_client::Clock>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("allow_http", &self.allow_http)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            allow_http: false,
            retry_attempts: None,
            timeout: Duration::from_secs(30),
            clock: None,
        }
    }
}

pub fn parse_base(input: &str, opts: &ClientOptions) -> EngineResult<BaseUrl> {
    BaseUrl::parse(input, opts.allow_http).map_err(|e| EngineError::InvalidInput(e.to_string()))
}

pub fn build_client(
    base: BaseUrl,
    email: &str,
    key: ApiKey,
    budget: Option<u32>,
    opts: &ClientOptions,
    on_event: Option<testrail_client::EventHook>,
) -> EngineResult<Client> {
    let mut b = Client::builder(base, email, key)
        .timeout(opts.timeout)
        .request_budget(budget)
        .user_agent(concat!("Accessrail/", env!("CARGO_PKG_VERSION")));
    if let Some(n) = opts.retry_attempts {
        b = b.retry(testrail_client::RetryPolicy {
            max_attempts: n.max(1),
            ..testrail_client::RetryPolicy::default()
        });
    }
    if let Some(c) = &opts.clock {
        b = b.clock(c.clone());
    }
    if let Some(h) = on_event {
        b = b.on_event(move |e| h(e));
    }
    b.build()
        .map_err(|e| EngineError::upstream("building the TestRail client", e))
}

/// Counts of field problems across a scan, turned into warnings at the end.
#[derive(Debug, Default)]
pub struct FieldWarnings {
    missing: BTreeMap<&'static str, u64>,
    unknown: BTreeMap<String, u64>,
}

impl FieldWarnings {
    pub fn into_messages(self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, n) in self.missing {
            out.push(format!("{n} user(s) came without `{field}`"));
        }
        for (field, n) in self.unknown {
            out.push(format!(
                "{n} user(s) carry the unknown field `{field}` (kept as returned)"
            ));
        }
        out
    }
}

/// A TestRail user as a domain account. Every field TestRail returned is kept in `fields`.
pub fn to_account(u: &User, warnings: &mut FieldWarnings) -> Account {
    let mut missing = |f: &'static str, absent: bool| {
        if absent {
            *warnings.missing.entry(f).or_default() += 1;
        }
    };
    missing("name", u.name.is_none());
    missing("email", u.email.is_none());
    missing("is_active", u.is_active.is_none());
    missing("role_id", u.role_id.is_none());
    for k in u.extra.keys() {
        *warnings.unknown.entry(k.clone()).or_default() += 1;
    }
    let mut fields = match serde_json::to_value(u) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    fields.retain(|_, v| !v.is_null());
    Account {
        id: u.id,
        name: u.name.clone(),
        email: u.email.clone(),
        // TestRail always sends is_active; if it is missing, count the seat rather than hide it.
        is_active: u.is_active.unwrap_or(true),
        role_id: u.role_id,
        role: u.role.clone(),
        is_admin: u.is_admin,
        group_ids: u.group_ids.clone().unwrap_or_default(),
        fields: serde_json::Value::Object(fields),
    }
}

pub fn to_group(g: &Group) -> GroupRecord {
    let mut members = g.user_ids.clone();
    members.sort_unstable();
    members.dedup();
    GroupRecord {
        id: g.id,
        name: g.name.clone(),
        member_ids: members,
    }
}

pub fn to_role(r: &Role) -> RoleRecord {
    RoleRecord {
        id: r.id,
        name: r.name.clone(),
        is_default: r.is_default,
        is_project_admin: r.is_project_admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_keep_every_field_and_warn_about_gaps() {
        let u: User = serde_json::from_str(
            r#"{"id":5,"name":"Ana","email":"ana@x.io","is_active":false,"role_id":3,"role":"Tester",
                "group_ids":[2,1],"is_admin":false,"custom_badge":"blue"}"#,
        )
        .expect("user");
        let mut w = FieldWarnings::default();
        let a = to_account(&u, &mut w);
        assert_eq!(
            (a.id, a.is_active, a.role_id, a.group_ids.clone()),
            (5, false, Some(3), vec![2, 1])
        );
        assert_eq!(a.fields["custom_badge"], "blue");
        assert!(
            a.fields.get("sso_enabled").is_none(),
            "absent fields are not invented"
        );
        let bare: User = serde_json::from_str(r#"{"id":6}"#).expect("user");
        let b = to_account(&bare, &mut w);
        assert!(b.is_active, "a missing is_active counts the seat");
        let msgs = w.into_messages();
        assert!(msgs.iter().any(|m| m.contains("without `email`")));
        assert!(msgs.iter().any(|m| m.contains("without `is_active`")));
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown field `custom_badge`"))
        );
    }
}

//! What an admin looks at: every account with role, groups and matched identity; the seat
//! summary; groups, roles and identities.

use std::collections::BTreeMap;

use accessrail_domain::{
    AccountRef, Identity, IdentityStatus, MatchOverride, MatchState, match_accounts,
};
use accessrail_store::{Connection, Store};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// One TestRail account, as `accessrail users --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub id: u64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub is_active: bool,
    pub is_admin: Option<bool>,
    pub role: Option<String>,
    pub role_id: Option<u64>,
    pub groups: Vec<String>,
    pub group_ids: Vec<u64>,
    /// The matched identity's id.
    pub identity: Option<String>,
    pub identity_name: Option<String>,
    /// `active`, `leaver`, or `gone` (no longer in the identity import), when matched.
    pub identity_status: Option<String>,
    #[serde(rename = "match")]
    pub match_state: MatchState,
    pub match_reason: String,
    pub pinned: bool,
    /// For ambiguous accounts: the identities that claim the email.
    pub candidates: Vec<String>,
}

impl UserView {
    pub fn is_leaver(&self) -> bool {
        self.identity_status.as_deref() == Some("leaver")
    }
}

/// Narrowing of `accessrail users`; each set flag narrows the list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub unmatched: bool,
    pub ambiguous: bool,
    pub inactive: bool,
    /// A role name (any case) or id.
    pub role: Option<String>,
    /// A group name (any case) or id.
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub connection: String,
    pub last_scan: Option<i64>,
    pub last_scan_at: Option<i64>,
    pub accounts: u64,
    pub active_seats: u64,
    pub inactive_accounts: u64,
    pub unmatched_active_accounts: u64,
    pub ambiguous_accounts: u64,
    pub forgotten_accounts: u64,
    pub active_accounts_of_leavers: u64,
    pub admins: u64,
}

fn identity_status(i: &Identity) -> &'static str {
    if i.gone {
        "gone"
    } else {
        match i.status {
            IdentityStatus::Active => "active",
            IdentityStatus::Leaver => "leaver",
        }
    }
}

pub async fn users<S: Store>(engine: &Engine<S>, conn: &Connection) -> EngineResult<Vec<UserView>> {
    let store = engine.store();
    let accounts = store.current_accounts(&conn.id).await?;
    let identities = store.identities().await?;
    let overrides: Vec<MatchOverride> = store
        .overrides(&conn.id)
        .await?
        .into_iter()
        .map(|o| MatchOverride {
            account_id: o.account_id,
            identity_id: o.identity_id,
            kind: o.kind,
        })
        .collect();
    let groups: BTreeMap<u64, Option<String>> = store
        .current_groups(&conn.id)
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect();
    let refs: Vec<AccountRef<'_>> = accounts
        .iter()
        .map(|a| AccountRef {
            id: a.id,
            email: a.email.as_deref(),
        })
        .collect();
    let outcomes = match_accounts(&refs, &identities, &overrides);
    let by_id: BTreeMap<&str, &Identity> = identities.iter().map(|i| (i.id.as_str(), i)).collect();
    Ok(accounts
        .iter()
        .map(|a| {
            let o = outcomes.get(&a.id);
            let ident = o
                .and_then(|o| o.identity_id.as_deref())
                .and_then(|id| by_id.get(id));
            UserView {
                id: a.id,
                email: a.email.clone(),
                name: a.name.clone(),
                is_active: a.is_active,
                is_admin: a.is_admin,
                role: a.role.clone(),
                role_id: a.role_id,
                groups: a
                    .group_ids
                    .iter()
                    .map(|g| {
                        groups
                            .get(g)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| format!("#{g}"))
                    })
                    .collect(),
                group_ids: a.group_ids.clone(),
                identity: ident.map(|i| i.id.clone()),
                identity_name: ident.map(|i| i.name.clone()),
                identity_status: ident.map(|i| identity_status(i).to_string()),
                match_state: o.map_or(MatchState::Unmatched, |o| o.state),
                match_reason: o.map_or("", |o| o.reason).to_string(),
                pinned: o.is_some_and(|o| o.pinned),
                candidates: o.map(|o| o.candidates.clone()).unwrap_or_default(),
            }
        })
        .collect())
}

/// Resolves a role or group given by name (any case) or id; an unknown one is a usage error.
fn resolve_named(what: &str, input: &str, known: &[(u64, Option<String>)]) -> EngineResult<u64> {
    let t = input.trim();
    if let Some((id, _)) = known
        .iter()
        .find(|(_, n)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
    {
        return Ok(*id);
    }
    if let Ok(id) = t.parse::<u64>()
        && known.iter().any(|(k, _)| *k == id)
    {
        return Ok(id);
    }
    let names: Vec<String> = known.iter().filter_map(|(_, n)| n.clone()).collect();
    Err(EngineError::Usage(format!(
        "unknown {what} {t:?}; known: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )))
}

pub async fn filtered_users<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    f: &UserFilter,
) -> EngineResult<Vec<UserView>> {
    let store = engine.store();
    let role = match &f.role {
        Some(r) => {
            let mut known: Vec<(u64, Option<String>)> = store
                .current_roles(&conn.id)
                .await?
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect();
            if known.is_empty() {
                // Before TestRail 7.3 there is no get_roles: use the roles the users carry.
                let mut seen = BTreeMap::new();
                for a in store.current_accounts(&conn.id).await? {
                    if let Some(id) = a.role_id {
                        seen.entry(id).or_insert(a.role);
                    }
                }
                known = seen.into_iter().collect();
            }
            Some(resolve_named("role", r, &known)?)
        }
        None => None,
    };
    let group = match &f.group {
        Some(g) => {
            let known: Vec<(u64, Option<String>)> = store
                .current_groups(&conn.id)
                .await?
                .into_iter()
                .map(|g| (g.id, g.name))
                .collect();
            Some(resolve_named("group", g, &known)?)
        }
        None => None,
    };
    let all = users(engine, conn).await?;
    Ok(all
        .into_iter()
        .filter(|u| !f.unmatched || u.match_state == MatchState::Unmatched)
        .filter(|u| !f.ambiguous || u.match_state == MatchState::Ambiguous)
        .filter(|u| !f.inactive || !u.is_active)
        .filter(|u| role.is_none_or(|r| u.role_id == Some(r)))
        .filter(|u| group.is_none_or(|g| u.group_ids.contains(&g)))
        .collect())
}

pub async fn summary<S: Store>(engine: &Engine<S>, conn: &Connection) -> EngineResult<Summary> {
    let all = users(engine, conn).await?;
    let last = engine
        .store()
        .scans(&conn.id)
        .await?
        .into_iter()
        .rev()
        .find(|s| s.status == accessrail_store::ScanStatus::Succeeded);
    let count = |f: &dyn Fn(&UserView) -> bool| all.iter().filter(|u| f(u)).count() as u64;
    Ok(Summary {
        connection: conn.name.clone(),
        last_scan: last.as_ref().map(|s| s.id),
        last_scan_at: last.as_ref().and_then(|s| s.finished_at),
        accounts: all.len() as u64,
        active_seats: count(&|u| u.is_active),
        inactive_accounts: count(&|u| !u.is_active),
        unmatched_active_accounts: count(&|u| {
            u.is_active && u.match_state == MatchState::Unmatched
        }),
        ambiguous_accounts: count(&|u| u.match_state == MatchState::Ambiguous),
        forgotten_accounts: count(&|u| u.match_state == MatchState::Forgotten),
        active_accounts_of_leavers: count(&|u| u.is_active && u.is_leaver()),
        admins: count(&|u| u.is_admin == Some(true)),
    })
}

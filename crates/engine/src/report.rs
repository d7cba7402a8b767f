//! What an admin looks at: every account with role, groups and matched identity; the seat
//! summary; groups, roles and identities.

use std::collections::BTreeMap;

use accessrail_domain::MatchState;
use accessrail_store::{AccountQuery, Connection, ListedAccount, Store};
use serde::Serialize;

pub use accessrail_store::AccountSort;

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

/// Narrowing of a listing of accounts; each set field narrows it. Served by one store query
/// (filters, sort and paging in SQL), now or at a scan.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub unmatched: bool,
    pub ambiguous: bool,
    pub inactive: bool,
    /// `Some(true)`: active accounts only; `Some(false)`: inactive only (as `inactive`).
    pub active: Option<bool>,
    /// One match state (matched, unmatched, ambiguous, forgotten).
    pub match_state: Option<MatchState>,
    /// A role name (any case) or id.
    pub role: Option<String>,
    /// A group name (any case) or id.
    pub group: Option<String>,
    /// Accounts matched to a leaver.
    pub leaver: bool,
    /// Administrators only.
    pub admins: bool,
    /// A substring of the email or name, any case.
    pub q: Option<String>,
    /// The accounts as they were right after this scan committed.
    pub at_scan: Option<i64>,
    pub sort: AccountSort,
    pub limit: Option<u64>,
    pub offset: u64,
}

/// One page of a listing, with the count of every account that passed the filters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserPage {
    pub total: u64,
    pub users: Vec<UserView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub connection: String,
    pub last_scan: Option<i64>,
    #[serde(serialize_with = "crate::time_fmt::serde_rfc3339_opt")]
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

/// Every current account, by id.
pub async fn users<S: Store>(engine: &Engine<S>, conn: &Connection) -> EngineResult<Vec<UserView>> {
    Ok(list(
        engine,
        conn,
        &UserFilter {
            sort: AccountSort::Id,
            ..UserFilter::default()
        },
    )
    .await?
    .users)
}

fn view(a: ListedAccount) -> UserView {
    let m = a.matched;
    UserView {
        id: a.account.id,
        email: a.account.email,
        name: a.account.name,
        is_active: a.account.is_active,
        is_admin: a.account.is_admin,
        role: a.account.role,
        role_id: a.account.role_id,
        groups: a
            .groups
            .iter()
            .map(|(id, name)| name.clone().unwrap_or_else(|| format!("#{id}")))
            .collect(),
        group_ids: a.account.group_ids,
        identity: m.as_ref().and_then(|m| m.identity_id.clone()),
        identity_name: m.as_ref().and_then(|m| m.identity_name.clone()),
        identity_status: m.as_ref().and_then(|m| m.identity_status.clone()),
        match_state: m.as_ref().map_or(MatchState::Unmatched, |m| m.state),
        match_reason: m.as_ref().map_or_else(
            || "no match recorded at this scan (it predates stored matches)".to_string(),
            |m| m.reason.clone(),
        ),
        pinned: m.as_ref().is_some_and(|m| m.pinned),
        candidates: m.map(|m| m.candidates).unwrap_or_default(),
    }
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

/// One page of accounts, filtered and sorted by the store.
pub async fn list<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    f: &UserFilter,
) -> EngineResult<UserPage> {
    let store = engine.store();
    // In history, an id is taken as given: the role or group may be gone or renamed since.
    let historical_id = |input: &Option<String>| {
        f.at_scan
            .and(input.as_deref())
            .and_then(|x| x.trim().parse::<u64>().ok())
    };
    let role = match &f.role {
        Some(_) if historical_id(&f.role).is_some() => historical_id(&f.role),
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
        Some(_) if historical_id(&f.group).is_some() => historical_id(&f.group),
        Some(g) => {
            let known = store.current_group_names(&conn.id).await?;
            Some(resolve_named("group", g, &known)?)
        }
        None => None,
    };
    // Two different states asked for at once: nothing can match both.
    let states: Vec<MatchState> = [
        f.unmatched.then_some(MatchState::Unmatched),
        f.ambiguous.then_some(MatchState::Ambiguous),
        f.match_state,
    ]
    .into_iter()
    .flatten()
    .collect();
    if states.windows(2).any(|w| w[0] != w[1]) {
        return Ok(UserPage {
            total: 0,
            users: vec![],
        });
    }
    let active = match (f.inactive, f.active) {
        (true, Some(true)) => {
            return Ok(UserPage {
                total: 0,
                users: vec![],
            });
        }
        (true, _) => Some(false),
        (false, a) => a,
    };
    let listing = store
        .list_accounts(
            &conn.id,
            &AccountQuery {
                at_scan: f.at_scan,
                active,
                match_state: states.first().copied(),
                role_id: role,
                group_id: group,
                leaver: f.leaver,
                admin: f.admins.then_some(true),
                q: f.q.clone().filter(|q| !q.trim().is_empty()),
                sort: f.sort,
                limit: f.limit,
                offset: f.offset,
            },
        )
        .await?;
    Ok(UserPage {
        total: listing.total,
        users: listing.accounts.into_iter().map(view).collect(),
    })
}

/// Every account that passes the filter (no paging).
pub async fn filtered_users<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    f: &UserFilter,
) -> EngineResult<Vec<UserView>> {
    Ok(list(
        engine,
        conn,
        &UserFilter {
            limit: None,
            offset: 0,
            ..f.clone()
        },
    )
    .await?
    .users)
}

pub async fn summary<S: Store>(engine: &Engine<S>, conn: &Connection) -> EngineResult<Summary> {
    let c = engine.store().account_counts(&conn.id).await?;
    let last = engine
        .store()
        .scans(&conn.id)
        .await?
        .into_iter()
        .rev()
        .find(|s| s.status == accessrail_store::ScanStatus::Succeeded);
    Ok(Summary {
        connection: conn.name.clone(),
        last_scan: last.as_ref().map(|s| s.id),
        last_scan_at: last.as_ref().and_then(|s| s.finished_at),
        accounts: c.accounts,
        active_seats: c.active,
        inactive_accounts: c.accounts - c.active,
        unmatched_active_accounts: c.unmatched_active,
        ambiguous_accounts: c.ambiguous,
        forgotten_accounts: c.forgotten,
        active_accounts_of_leavers: c.leavers_active,
        admins: c.admins,
    })
}

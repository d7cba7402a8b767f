//! The console's accounts: the users list, an account's page (its fields, identity, groups,
//! effective project access with its sources, its changes and audit entries, and what can be
//! changed), creating a user, and groups with a search of accounts to add.

use std::collections::BTreeSet;
use std::sync::Arc;

use accessrail_domain::MatchState;
use accessrail_engine::provision::Caution;
use accessrail_engine::report::{self, UserView};
use accessrail_engine::time_fmt;
use accessrail_store::{Connection, ListedAccount, Store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::state::AppState;
use crate::ui::{
    audit_link, change_source, current_connection, message_page, page, plural, scan_numbers,
    to_login,
};
use crate::ui_projects;
use crate::ui_seats;

const PAGE: usize = 50;

/// An account's changes and audit entries shown on its page.
const HISTORY_SHOWN: u64 = 100;

/// Accounts a group's search lists.
const FOUND_SHOWN: u64 = 20;

fn enc(v: &str) -> String {
    testrail_client::encode_query_value(v)
}

/// What the console calls an account: its name, else its email, else its id.
pub(crate) fn label(name: Option<&str>, email: Option<&str>, id: u64) -> String {
    name.filter(|n| !n.trim().is_empty())
        .or(email.filter(|e| !e.trim().is_empty()))
        .map_or_else(|| format!("TestRail user #{id}"), str::to_string)
}

fn email_ok(email: Option<&str>) -> bool {
    email.is_some_and(|e| e.contains('@'))
}

/// The connection's own account: the owner of the saved API key.
fn is_own(conn: &Connection, email: Option<&str>) -> bool {
    email.is_some_and(|e| e.trim().eq_ignore_ascii_case(conn.email.trim()))
}

/// Why deactivating this account needs care (an administrator, the own account).
fn guard(conn: &Connection, u: &UserView) -> Option<Caution> {
    if is_own(conn, u.email.as_deref()) {
        Some(Caution::OwnAccount)
    } else if u.is_admin == Some(true) {
        Some(Caution::Administrator)
    } else {
        None
    }
}

fn flags(conn: &Connection, u: &UserView) -> Vec<(String, &'static str)> {
    let mut f = vec![];
    match u.match_state {
        MatchState::Unmatched => f.push(("unmatched".to_string(), "warn")),
        MatchState::Ambiguous => f.push(("ambiguous".into(), "warn")),
        MatchState::Forgotten => f.push(("forgotten".into(), "")),
        MatchState::Matched => {}
    }
    if u.is_leaver() {
        f.push((
            if u.is_active {
                "leaver, still active".into()
            } else {
                "leaver".into()
            },
            "bad",
        ));
    }
    if u.identity_status.as_deref() == Some("gone") {
        f.push(("identity gone".into(), ""));
    }
    if u.is_admin == Some(true) {
        f.push(("admin".into(), ""));
    }
    if is_own(conn, u.email.as_deref()) {
        f.push(("Accessrail's account".into(), ""));
    }
    f
}

/// An account as the listing shows it (the store's account, its groups and match).
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
        match_reason: m
            .as_ref()
            .map_or_else(|| "no match recorded yet".to_string(), |m| m.reason.clone()),
        pinned: m.as_ref().is_some_and(|m| m.pinned),
        candidates: m.map(|m| m.candidates).unwrap_or_default(),
    }
}

// ---- the users list -----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: usize,
}

fn users_link(q: &UsersQuery, sort: &str, page: usize) -> String {
    format!(
        "/users?q={}&filter={}&role={}&group={}&sort={}&page={page}",
        enc(&q.q),
        enc(&q.filter),
        enc(&q.role),
        enc(&q.group),
        enc(sort)
    )
}

async fn role_names(s: &AppState, conn: &Connection) -> Vec<String> {
    let mut roles: Vec<String> = s
        .engine
        .store()
        .current_roles(&conn.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// The current groups (id, name), by name.
async fn group_list(s: &AppState, conn: &Connection) -> Vec<(u64, String)> {
    let mut groups: Vec<(u64, String)> = s
        .engine
        .store()
        .current_group_names(&conn.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, name)| (id, name.unwrap_or_else(|| format!("#{id}"))))
        .collect();
    groups.sort_by(|a, b| {
        a.1.to_lowercase()
            .cmp(&b.1.to_lowercase())
            .then(a.0.cmp(&b.0))
    });
    groups
}

pub(crate) async fn users_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<UsersQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let summary = report::summary(&s.engine, &conn).await.ok();
    let roles = role_names(&s, &conn).await;
    let groups: Vec<String> = group_list(&s, &conn)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let sort = if q.sort.is_empty() {
        "name".to_string()
    } else {
        q.sort.clone()
    };
    // One store query: filters, sort and paging in SQL.
    let filter = report::UserFilter {
        q: Some(q.q.trim().to_string()).filter(|x| !x.is_empty()),
        match_state: match q.filter.as_str() {
            "unmatched" => Some(MatchState::Unmatched),
            "ambiguous" => Some(MatchState::Ambiguous),
            "forgotten" => Some(MatchState::Forgotten),
            _ => None,
        },
        active: match q.filter.as_str() {
            "inactive" => Some(false),
            "active" => Some(true),
            _ => None,
        },
        leaver: q.filter == "leaver",
        admins: q.filter == "admin",
        role: Some(q.role.clone()).filter(|x| !x.is_empty()),
        group: Some(q.group.clone()).filter(|x| !x.is_empty()),
        sort: match sort.as_str() {
            "email" => report::AccountSort::Email,
            "role" => report::AccountSort::Role,
            "active" => report::AccountSort::Active,
            _ => report::AccountSort::Name,
        },
        limit: Some(PAGE as u64),
        offset: q.page.saturating_mul(PAGE) as u64,
        ..report::UserFilter::default()
    };
    let listed = report::list(&s.engine, &conn, &filter)
        .await
        .unwrap_or(report::UserPage {
            total: 0,
            users: vec![],
        });
    let total = usize::try_from(listed.total).unwrap_or(usize::MAX);
    let start = q.page.saturating_mul(PAGE);
    let rows: Vec<Value> = listed
        .users
        .iter()
        .map(|u| {
            let guarded = u.is_active.then(|| guard(&conn, u)).flatten();
            // Deactivating an administrator or the own account starts from its page, where
            // the warning is; everyone else has the button here.
            let action_link = (email_ok(u.email.as_deref()) && guarded.is_none()).then(|| {
                format!(
                    "/provision/confirm?action={}&email={}",
                    if u.is_active { "deactivate" } else { "reactivate" },
                    enc(u.email.as_deref().unwrap_or_default())
                )
            });
            context! {
                id => u.id, label => label(u.name.as_deref(), u.email.as_deref(), u.id),
                name => u.name, email => u.email, is_active => u.is_active, role => u.role,
                groups => u.groups.join(", "), identity => u.identity_name.clone().or(u.identity.clone()),
                flags => flags(&conn, u), action_link,
                action => if u.is_active { "Deactivate" } else { "Reactivate" },
                guarded => guarded.map(|c| match c {
                    Caution::OwnAccount => "Accessrail's own account: open it to change it",
                    Caution::Administrator => "A TestRail administrator: open the account to change it",
                }),
            }
        })
        .collect();
    let columns: Vec<(String, String, String, &str)> = [
        ("name", "Name", ""),
        ("email", "Email", "hide-sm"),
        ("active", "Active", "hide-sm"),
        ("role", "Role", "hide-sm"),
    ]
    .iter()
    .map(|(k, label, css)| {
        (
            (*k).to_string(),
            (*label).to_string(),
            users_link(&q, k, 0),
            *css,
        )
    })
    .collect();
    let filters = [
        ("", "everyone"),
        ("active", "active"),
        ("inactive", "inactive"),
        ("admin", "administrators"),
        ("unmatched", "unmatched"),
        ("ambiguous", "ambiguous"),
        ("leaver", "leavers"),
        ("forgotten", "forgotten"),
    ];
    // The summary in parts, each kept on one line.
    let summary_parts: Vec<String> = summary
        .map(|x| {
            vec![
                plural(x.accounts, "account", "accounts"),
                plural(x.active_seats, "active seat", "active seats"),
                format!("{} inactive", x.inactive_accounts),
                format!("{} active unmatched", x.unmatched_active_accounts),
                format!(
                    "{} still active",
                    plural(x.active_accounts_of_leavers, "leaver", "leavers")
                ),
                x.last_scan_at.map_or_else(
                    || "no scan yet".to_string(),
                    |t| format!("last scan {}", time_fmt::short(t)),
                ),
            ]
        })
        .unwrap_or_default();
    page(
        &s,
        &v,
        "users.html",
        context! {
            title => "Users", page => "users", connection => conn.name, summary => summary_parts, users => rows, columns,
            filters, filter => q.filter, roles, role => q.role, groups, group => q.group, q => q.q, sort,
            shown => format!("{}–{} of {total}", if total == 0 { 0 } else { start + 1 }, (start + PAGE).min(total)),
            prev_link => (q.page > 0).then(|| users_link(&q, &sort, q.page - 1)),
            next_link => (start + PAGE < total).then(|| users_link(&q, &sort, q.page + 1)),
        },
    )
}

// ---- one account ------------------------------------------------------------------------------

/// The account's other fields, for people: what the page already shows and memberships left
/// out, names spelled out, values plain.
fn other_fields(fields: &serde_json::Value) -> Vec<(String, String)> {
    const SHOWN: &[&str] = &[
        "id",
        "name",
        "email",
        "is_active",
        "role_id",
        "role",
        "is_admin",
        "group_ids",
    ];
    let Some(map) = fields.as_object() else {
        return vec![];
    };
    map.iter()
        .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
                serde_json::Value::Array(a) if a.is_empty() => "none".to_string(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k.replace('_', " "), text)
        })
        .collect()
}

pub(crate) async fn user_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<u64>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let store = s.engine.store();
    let listed = match store.account(&conn.id, id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return message_page(
                &s,
                &v,
                StatusCode::NOT_FOUND,
                "No such account",
                &format!(
                    "TestRail user #{id} is not among the accounts of {} (as of the last scan).",
                    conn.name
                ),
                "/users",
            );
        }
        Err(e) => {
            tracing::error!("reading account {id}: {e}");
            return message_page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Account",
                "The database did not answer. Try again.",
                "/users",
            );
        }
    };
    let fields = listed.account.fields.to_value();
    let u = view(listed);
    let own_flags = flags(&conn, &u);
    let guard_now = u.is_active.then(|| guard(&conn, &u)).flatten();
    let email = u.email.clone().unwrap_or_default();
    let can_act = email_ok(u.email.as_deref());
    let back = format!("/users/{id}");
    let scans = store.scans(&conn.id).await.unwrap_or_default();
    let numbers = scan_numbers(&scans);
    let changes: Vec<Value> = store
        .account_changes(&conn.id, id, HISTORY_SHOWN)
        .await
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let (source, source_link) = change_source(c, &numbers);
            context! { at => time_fmt::short(c.at), kind => c.kind.replace('_', " "), before => c.before, after => c.after, source, source_link }
        })
        .collect();
    let audit: Vec<Value> = store
        .account_audit(&conn.id, id, u.email.as_deref(), HISTORY_SHOWN)
        .await
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let r = &e.record;
            let css = match r.outcome.as_str() { "done" => "ok", "failed" => "bad", "not_run" => "warn", _ => "" };
            context! {
                id => e.id, link => audit_link(e.id), at => time_fmt::short(r.at), actor => r.actor, action => r.action.replace('_', " "),
                before => r.before, after => r.after, outcome => r.outcome.as_str(), css, message => r.message,
            }
        })
        .collect();
    let member: BTreeSet<u64> = u.group_ids.iter().copied().collect();
    let all_groups = group_list(&s, &conn).await;
    let groups: Vec<Value> = u
        .group_ids
        .iter()
        .zip(&u.groups)
        .map(|(gid, name)| {
            context! {
                id => gid, name,
                remove_link => can_act.then(|| format!("/provision/confirm?action=remove_from_group&group={gid}&email={}&back={}", enc(&email), enc(&back))),
            }
        })
        .collect();
    let addable: Vec<(u64, String)> = all_groups
        .into_iter()
        .filter(|(g, _)| !member.contains(g))
        .collect();
    let toggle_link = can_act.then(|| {
        format!(
            "/provision/confirm?action={}&email={}&back={}",
            if u.is_active {
                "deactivate"
            } else {
                "reactivate"
            },
            enc(&email),
            enc(&back)
        )
    });
    let match_css = match u.match_state {
        MatchState::Matched => "ok",
        MatchState::Unmatched | MatchState::Ambiguous => "warn",
        MatchState::Forgotten => "",
    };
    let roles = role_names(&s, &conn).await;
    let admin = match u.is_admin {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not reported by TestRail",
    };
    let title = label(u.name.as_deref(), u.email.as_deref(), u.id);
    let access = ui_projects::account_access(&s, &conn, id).await;
    let activity = ui_seats::account_activity(&s, &conn, id).await;
    page(
        &s,
        &v,
        "user.html",
        context! {
            title, page => "users",
            u => context! {
                id => u.id, label => title, name => u.name, email => u.email, is_active => u.is_active, admin, role => u.role,
                flags => own_flags, match_state => u.match_state.as_str(), identity => u.identity, identity_name => u.identity_name,
                identity_status => u.identity_status, match_reason => u.match_reason, pinned => u.pinned,
                candidates => u.candidates.join(", "),
            },
            match_css, fields => other_fields(&fields), access, activity,
            groups, addable, roles, can_act, toggle_link,
            toggle_label => if u.is_active { "Deactivate…" } else { "Reactivate…" },
            guard => guard_now.map(Caution::message),
            read_only => !conn.provisioning_enabled,
            changes, audit, scanned => !scans.is_empty(),
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct FindQuery {
    #[serde(default)]
    email: String,
}

/// The page of the account with this email (an audit entry names accounts by email), or the
/// users list searched for it.
pub(crate) async fn find_user(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<FindQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let email = q.email.trim();
    let found = report::list(
        &s.engine,
        &conn,
        &report::UserFilter {
            q: Some(email.to_string()).filter(|e| !e.is_empty()),
            limit: Some(50),
            ..report::UserFilter::default()
        },
    )
    .await
    .map(|p| p.users)
    .unwrap_or_default();
    let exact: Vec<&UserView> = found
        .iter()
        .filter(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(email))
        })
        .collect();
    match exact.as_slice() {
        [one] => Redirect::to(&format!("/users/{}", one.id)).into_response(),
        _ => Redirect::to(&format!("/users?q={}", enc(email))).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct NewUserQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

/// The form for a new TestRail user: it leads to the plan's confirmation page.
pub(crate) async fn new_user_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<NewUserQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let roles = role_names(&s, &conn).await;
    let groups = group_list(&s, &conn).await;
    page(
        &s,
        &v,
        "user_new.html",
        context! {
            title => "Create user", page => "users", roles, groups, name => q.name, email => q.email,
            error => (!conn.provisioning_enabled).then(|| format!("{} is read-only: provisioning is off, so the plan will be refused (accessrail provisioning enable).", conn.name)),
        },
    )
}

// ---- groups -----------------------------------------------------------------------------------

pub(crate) async fn groups_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let groups: Vec<Value> = s
        .engine
        .store()
        .group_summaries(&conn.id)
        .await
        .unwrap_or_default()
        .iter()
        .map(|g| context! { id => g.id, name => g.name, members => g.members, active => g.active_members })
        .collect();
    page(
        &s,
        &v,
        "groups.html",
        context! { title => "Groups", page => "groups", connection => conn.name, groups, supported => conn.groups_supported != Some(false) },
    )
}

#[derive(Deserialize, Default)]
pub(crate) struct GroupQuery {
    /// A search for accounts to add.
    #[serde(default)]
    q: String,
}

pub(crate) async fn group_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<u64>,
    Query(q): Query<GroupQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let names = s
        .engine
        .store()
        .current_group_names(&conn.id)
        .await
        .unwrap_or_default();
    let Some((gid, gname)) = names.into_iter().find(|(g, _)| *g == id) else {
        return message_page(
            &s,
            &v,
            StatusCode::NOT_FOUND,
            "No such group",
            &format!("{} has no group #{id} (as of the last scan).", conn.name),
            "/groups",
        );
    };
    // The members, listed by the store (by name).
    let listed = report::list(
        &s.engine,
        &conn,
        &report::UserFilter {
            group: Some(gid.to_string()),
            sort: report::AccountSort::Name,
            ..report::UserFilter::default()
        },
    )
    .await
    .map(|p| p.users)
    .unwrap_or_default();
    let members: Vec<Value> = listed
        .iter()
        .map(|a| {
            context! {
                id => a.id, label => label(a.name.as_deref(), a.email.as_deref(), a.id),
                name => a.name, email => a.email, is_active => a.is_active, role => a.role,
                email_ok => email_ok(a.email.as_deref()),
            }
        })
        .collect();
    // Accounts to add: a search by name or email (the listing query), and the same accounts
    // (or, without a search, active accounts by name) offered as the email field's suggestions.
    let needle = q.q.trim().to_string();
    let searched = report::list(
        &s.engine,
        &conn,
        &report::UserFilter {
            q: Some(needle.clone()).filter(|n| !n.is_empty()),
            active: needle.is_empty().then_some(true),
            sort: report::AccountSort::Name,
            limit: Some(if needle.is_empty() { 200 } else { FOUND_SHOWN }),
            ..report::UserFilter::default()
        },
    )
    .await
    .unwrap_or(report::UserPage {
        total: 0,
        users: vec![],
    });
    let found: Vec<Value> = searched
        .users
        .iter()
        .map(|a| {
            context! {
                id => a.id, label => label(a.name.as_deref(), a.email.as_deref(), a.id),
                name => a.name, email => a.email, is_active => a.is_active,
                member => a.group_ids.contains(&gid), email_ok => email_ok(a.email.as_deref()),
            }
        })
        .collect();
    let suggestions: Vec<(String, String)> = searched
        .users
        .iter()
        .filter(|a| !a.group_ids.contains(&gid))
        .filter_map(|a| {
            a.email
                .clone()
                .filter(|e| e.contains('@'))
                .map(|e| (e, a.name.clone().unwrap_or_default()))
        })
        .collect();
    let more = (!needle.is_empty() && searched.total > FOUND_SHOWN).then(|| {
        format!(
            "The first {FOUND_SHOWN} of {} are shown: type more of the name or email.",
            plural(searched.total, "match", "matches")
        )
    });
    page(
        &s,
        &v,
        "groups.html",
        context! {
            title => "Group", page => "groups", group => context! { id => gid, name => gname },
            members_count => plural(listed.len() as u64, "member", "members"), members,
            q => needle.clone(), found => if needle.is_empty() { vec![] } else { found }, more, suggestions,
        },
    )
}

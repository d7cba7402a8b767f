//! The console: server-rendered pages, a session cookie (HttpOnly, SameSite=Strict) and a CSRF
//! token on every form, sign-in included. No secret ever reaches a page.

use std::collections::BTreeMap;
use std::sync::Arc;

use accessrail_domain::{MatchState, audit};
use accessrail_engine::provision::{Action, Origin, Rails, Request};
use accessrail_engine::report::{self, UserView};
use accessrail_engine::{ApiKey, ConnectRequest, Target, schedule, time_fmt, tokens};
use accessrail_store::{Connection, ScanStatus, Store};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use crate::auth::{CSRF_COOKIE, SESSION_COOKIE, Visitor, end_session, set_cookie, start_session};
use crate::state::AppState;

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    // An absent value shows as nothing, never as "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    for (name, src) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("setup.html", include_str!("../templates/setup.html")),
        ("users.html", include_str!("../templates/users.html")),
        ("groups.html", include_str!("../templates/groups.html")),
        ("scans.html", include_str!("../templates/scans.html")),
        ("changes.html", include_str!("../templates/changes.html")),
        ("audit.html", include_str!("../templates/audit.html")),
        ("confirm.html", include_str!("../templates/confirm.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!("template {name}: {e}");
        }
    }
    env
}

pub fn routes(_state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/users") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(setup_page).post(setup))
        .route("/users", get(users_page))
        .route("/groups", get(groups_page))
        .route("/groups/{id}", get(group_page))
        .route("/scans", get(scans_page))
        .route("/scans/run", post(scan_now))
        .route("/changes", get(changes_page))
        .route("/audit", get(audit_page))
        .route("/provision/confirm", get(confirm_page))
        .route("/provision/apply", post(apply))
}

/// Adds the visitor's cookies (a new sign-in CSRF cookie, or the removal of a dead session's).
fn with_cookies(mut resp: Response, v: &Visitor) -> Response {
    for c in v.set_cookies() {
        if let Ok(c) = header::HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    resp
}

/// A rendered page, with the visitor's cookies.
fn page(state: &AppState, v: &Visitor, name: &str, ctx: Value) -> Response {
    let base = context! { signed_in => v.signed_in(), csrf => v.csrf() };
    let html = state
        .templates
        .get_template(name)
        .and_then(|t| t.render(context! { ..ctx, ..base }))
        .unwrap_or_else(|e| {
            tracing::error!("rendering {name}: {e}");
            "<h1>Something went wrong rendering this page.</h1>".into()
        });
    let mut resp = Html(html).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    with_cookies(resp, v)
}

fn to_login(v: &Visitor) -> Response {
    with_cookies(Redirect::to("/login").into_response(), v)
}

fn forbidden(state: &AppState, v: &Visitor) -> Response {
    let mut r = page(
        state,
        v,
        "login.html",
        context! { title => "Sign in", error => "This form has expired or did not come from this console (CSRF check). Please try again." },
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

async fn current_connection(state: &AppState) -> Option<Connection> {
    state
        .engine
        .store()
        .connections()
        .await
        .ok()
        .and_then(|c| c.into_iter().next())
}

// ---- sign-in ----------------------------------------------------------------------------------

async fn login_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    if v.signed_in().is_some() {
        return Redirect::to("/users").into_response();
    }
    page(&s, &v, "login.html", context! { title => "Sign in" })
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: Option<String>,
    token: String,
}

async fn login(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<LoginForm>) -> Response {
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let hash = tokens::hash(&f.token);
    match s.engine.store().token_by_hash(&hash).await {
        Ok(Some(name)) => {
            // The first server-side state for this visitor; a new session id on every sign-in.
            if let Some(old) = v.session_id() {
                end_session(&s, old).await;
            }
            let id = match start_session(&s, name, hash).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!("cannot keep a console session: {e}");
                    let mut r = page(
                        &s,
                        &v,
                        "login.html",
                        context! { title => "Sign in", error => "Signing in failed: the database is not reachable. Try again." },
                    );
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return r;
                }
            };
            let mut resp = Redirect::to("/users").into_response();
            for c in [
                set_cookie(SESSION_COOKIE, &id, v.secure, None),
                set_cookie(CSRF_COOKIE, "", v.secure, Some(0)),
            ] {
                if let Ok(c) = header::HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, c);
                }
            }
            resp
        }
        _ => {
            let mut r = page(
                &s,
                &v,
                "login.html",
                context! { title => "Sign in", error => "That token is not valid (or was revoked)." },
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<CsrfForm>) -> Response {
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    if let Some(id) = v.session_id() {
        end_session(&s, id).await;
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(c) = header::HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", v.secure, Some(0)))
    {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

// ---- setup ------------------------------------------------------------------------------------

#[derive(Deserialize, Default, serde::Serialize)]
struct SetupForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    subdomain: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    email: String,
    #[serde(default, skip_serializing)]
    api_key: String,
    #[serde(default)]
    op: String,
}

async fn setup_ctx(s: &AppState) -> Vec<Value> {
    s.engine
        .store()
        .connections()
        .await
        .unwrap_or_default()
        .iter()
        .map(|c| {
            context! {
                name => c.name, base_url => c.base_url, email => c.email,
                groups => match c.groups_supported { Some(true) => "yes", Some(false) => "no (before 7.5)", None => "-" },
                provisioning => if c.provisioning_enabled { "on" } else { "off (read-only)" },
            }
        })
        .collect()
}

async fn setup_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let connections = setup_ctx(&s).await;
    page(
        &s,
        &v,
        "setup.html",
        context! { title => "TestRail integration", page => "setup", allow_base_urls => s.allow_base_urls, form => SetupForm::default(), connections },
    )
}

async fn setup(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<SetupForm>) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let target = if s.allow_base_urls && !f.base_url.trim().is_empty() {
        Target::BaseUrl(f.base_url.trim().to_string())
    } else {
        Target::Subdomain(f.subdomain.trim().to_string())
    };
    let flash: Option<(String, &str)>;
    let mut checks = vec![];
    let mut passed = false;
    match ApiKey::new(&f.api_key) {
        None => flash = Some(("Paste the API key.".into(), "bad")),
        Some(key) => {
            let result = if f.op == "save" {
                s.engine
                    .connect(ConnectRequest {
                        scan_interval_secs: None,
                        target,
                        email: f.email.clone(),
                        key,
                        name: None,
                        replace: true,
                        request_budget: None,
                    })
                    .await
                    .map(|(r, saved)| (r, saved.map(|c| c.name)))
            } else {
                s.engine
                    .test_candidate(&target, &f.email, key)
                    .await
                    .map(|r| (r, None))
            };
            match result {
                Ok((report, saved)) => {
                    passed = report.passed;
                    checks = report
                        .checks
                        .iter()
                        .map(|c| {
                            let css = match c.status.as_str() { "pass" => "ok", "warn" => "warn", "fail" => "bad", _ => "" };
                            context! { title => c.title, status => c.status.as_str(), message => c.message, hint => c.hint, css }
                        })
                        .collect();
                    flash = match (f.op.as_str(), saved) {
                        ("save", Some(name)) => {
                            s.scan_now.notify_one();
                            Some((
                                format!(
                                    "Saved connection {name}. The API key is stored encrypted and will not be shown again. The first scan is starting."
                                ),
                                "ok",
                            ))
                        }
                        ("save", None) => {
                            Some(("The test failed, so nothing was saved.".into(), "bad"))
                        }
                        _ if report.passed => Some((
                            "The test passed. Click Save to store the connection.".into(),
                            "ok",
                        )),
                        _ => Some(("The test failed. See the checks below.".into(), "bad")),
                    };
                }
                Err(e) => flash = Some((e.to_string(), "bad")),
            }
        }
    }
    let connections = setup_ctx(&s).await;
    let (msg, kind) = flash.unwrap_or_default();
    page(
        &s,
        &v,
        "setup.html",
        context! { title => "TestRail integration", page => "setup", allow_base_urls => s.allow_base_urls, form => f, checks, passed, flash => msg, flash_kind => kind, connections },
    )
}

// ---- users ------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct UsersQuery {
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

const PAGE: usize = 50;

fn flags(u: &UserView) -> Vec<(String, &'static str)> {
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
    f
}

fn users_link(q: &UsersQuery, sort: &str, page: usize) -> String {
    let enc = testrail_client::encode_query_value;
    format!(
        "/users?q={}&filter={}&role={}&group={}&sort={}&page={page}",
        enc(&q.q),
        enc(&q.filter),
        enc(&q.role),
        enc(&q.group),
        enc(sort)
    )
}

async fn users_page(
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
    let mut groups: Vec<String> = s
        .engine
        .store()
        .current_group_names(&conn.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, name)| name)
        .collect();
    groups.sort();
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
    let list = &listed.users;
    let start = q.page.saturating_mul(PAGE);
    let rows: Vec<Value> = list
        .iter()
        .map(|u| {
            context! {
                name => u.name, email => u.email, is_active => u.is_active, role => u.role,
                groups => u.groups.join(", "), identity => u.identity_name.clone().or(u.identity.clone()),
                flags => flags(u), email_ok => u.email.as_deref().is_some_and(|e| e.contains('@')),
            }
        })
        .collect();
    let columns: Vec<(String, String, String)> = [
        ("name", "Name"),
        ("email", "Email"),
        ("active", "Active"),
        ("role", "Role"),
    ]
    .iter()
    .map(|(k, label)| ((*k).to_string(), (*label).to_string(), users_link(&q, k, 0)))
    .collect();
    let filters = [
        ("", "everyone"),
        ("active", "active"),
        ("inactive", "inactive"),
        ("unmatched", "unmatched"),
        ("ambiguous", "ambiguous"),
        ("leaver", "leavers"),
        ("forgotten", "forgotten"),
    ];
    let summary_line = summary.map(|x| {
        format!(
            "{} accounts · {} active seats · {} inactive · {} active unmatched · {} leavers still active{}",
            x.accounts,
            x.active_seats,
            x.inactive_accounts,
            x.unmatched_active_accounts,
            x.active_accounts_of_leavers,
            x.last_scan_at.map(|t| format!(" · last scan {}", time_fmt::short(t))).unwrap_or_else(|| " · no scan yet".into())
        )
    });
    page(
        &s,
        &v,
        "users.html",
        context! {
            title => "Users", page => "users", connection => conn.name, summary => summary_line, users => rows, columns,
            filters, filter => q.filter, roles, role => q.role, groups, group => q.group, q => q.q, sort,
            shown => format!("{}–{} of {total}", if total == 0 { 0 } else { start + 1 }, (start + PAGE).min(total)),
            prev_link => (q.page > 0).then(|| users_link(&q, &sort, q.page - 1)),
            next_link => (start + PAGE < total).then(|| users_link(&q, &sort, q.page + 1)),
        },
    )
}

// ---- groups -----------------------------------------------------------------------------------

async fn groups_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
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

async fn group_page(State(s): State<Arc<AppState>>, v: Visitor, Path(id): Path<u64>) -> Response {
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
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>No such group</h1><p><a href=\"/groups\">Groups</a></p>"),
        )
            .into_response();
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
                name => a.name, email => a.email, is_active => a.is_active, role => a.role,
                email_ok => a.email.as_deref().is_some_and(|e| e.contains('@')),
            }
        })
        .collect();
    let g = (gid, gname);
    page(
        &s,
        &v,
        "groups.html",
        context! { title => "Group", page => "groups", group => context! { id => g.0, name => g.1 }, members },
    )
}

// ---- scans, changes, audit -------------------------------------------------------------------------

async fn scans_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let scans = s.engine.store().scans(&conn.id).await.unwrap_or_default();
    let now = s.engine.now();
    let status = schedule::statuses(&s.engine, &s.schedule)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|x| x.connection == conn.name);
    let rows: Vec<Value> = scans
        .iter()
        .rev()
        .map(|x| {
            let css = match x.status { ScanStatus::Succeeded => "ok", ScanStatus::Failed | ScanStatus::Interrupted => "bad", ScanStatus::Running => "warn" };
            context! {
                id => x.id, started => time_fmt::short(x.started_at), status => x.status.as_str(), css,
                duration => x.finished_at.map(|f| format!("{}s", f - x.started_at)).unwrap_or_default(),
                users => x.users_seen, seats => if x.status == ScanStatus::Succeeded { x.active_seats.to_string() } else { "-".into() },
                requests => x.requests, changes => x.changes, error => x.error,
            }
        })
        .collect();
    let last_ok = status.as_ref().and_then(|x| x.last_ok);
    page(
        &s,
        &v,
        "scans.html",
        context! {
            title => "Scans", page => "scans", connection => conn.name, scans => rows,
            failing => status.as_ref().is_some_and(|x| x.failing),
            last_ok => last_ok.map_or("none yet".into(), time_fmt::short),
            age => last_ok.map(|t| format!(" ({} ago)", human_age(now - t))).unwrap_or_default(),
            next_due => status.and_then(|x| x.next_due).map_or("as soon as possible".into(), |d| if d <= now { "due now".into() } else { time_fmt::short(d) }),
            flash => q.get("started").map(|_| "A scan has started; refresh to follow it."),
        },
    )
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

async fn scan_now(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<CsrfForm>) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    if let Some(conn) = current_connection(&s).await
        && let Err(e) = crate::serve::queue_scan(
            &s,
            conn.id,
            format!("token:{}", v.signed_in().unwrap_or_default()),
        )
        .await
    {
        tracing::error!("cannot queue a scan: {e}");
    }
    Redirect::to("/scans?started=1").into_response()
}

/// A page of a newest-first log: `?before=ID` shows the entries older than ID.
#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    before: Option<i64>,
    /// `1`: verify the audit chain on this view.
    #[serde(default)]
    verify: Option<u8>,
}

const LOG_PAGE: u64 = 200;

async fn changes_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<LogQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let list = s
        .engine
        .store()
        .recent_changes(&conn.id, q.before, LOG_PAGE)
        .await
        .unwrap_or_default();
    let older = (list.len() as u64 == LOG_PAGE)
        .then(|| list.last().map(|c| format!("/changes?before={}", c.id)))
        .flatten();
    let changes: Vec<Value> = list
        .iter()
        .map(|c| {
            context! {
                at => time_fmt::short(c.at), kind => c.kind.replace('_', " "), subject => c.subject, before => c.before, after => c.after,
                source => c.audit_id.map_or_else(|| format!("scan {}", c.scan_id), |a| format!("audit #{a}")),
            }
        })
        .collect();
    page(
        &s,
        &v,
        "changes.html",
        context! { title => "Changes", page => "changes", connection => conn.name, changes, older },
    )
}

async fn audit_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<LogQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    // The whole chain is verified on request only (it reads every entry).
    let chain = if q.verify == Some(1) {
        let log = s.engine.store().audit_log().await.unwrap_or_default();
        Some(
            match audit::verify_chain(
                log.iter()
                    .map(|e| (e.id, &e.record, e.prev_hash.as_str(), e.hash.as_str())),
            ) {
                Ok(n) => format!("Chain verified: {n} entries."),
                Err((id, why)) => format!("CHAIN BROKEN at entry {id}: {why}"),
            },
        )
    } else {
        None
    };
    let log = s
        .engine
        .store()
        .recent_audit(q.before, LOG_PAGE)
        .await
        .unwrap_or_default();
    let older = (log.len() as u64 == LOG_PAGE)
        .then(|| log.last().map(|e| format!("/audit?before={}", e.id)))
        .flatten();
    let entries: Vec<Value> = log
        .iter()
        .map(|e| {
            let r = &e.record;
            let css = match r.outcome.as_str() { "done" => "ok", "failed" => "bad", "not_run" => "warn", _ => "" };
            context! {
                id => e.id, at => time_fmt::short(r.at), actor => r.actor, action => r.action.replace('_', " "), target => r.target,
                before => r.before, after => r.after, outcome => r.outcome.as_str(), css, calls => r.calls.join(", "), message => r.message,
            }
        })
        .collect();
    page(
        &s,
        &v,
        "audit.html",
        context! { title => "Audit log", page => "audit", entries, chain, older },
    )
}

// ---- provisioning with confirmation -------------------------------------------------------------

#[derive(Deserialize)]
struct ConfirmQuery {
    action: String,
    email: String,
    #[serde(default)]
    group: Option<String>,
}

async fn confirm_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let email = q.email.trim().to_string();
    let group = q.group.clone().unwrap_or_default();
    let (action, heading) = match q.action.as_str() {
        "deactivate" => (
            Action::Deactivate {
                email: email.clone(),
            },
            format!("Deactivate {email}"),
        ),
        "reactivate" => (
            Action::Reactivate {
                email: email.clone(),
            },
            format!("Reactivate {email}"),
        ),
        "add_to_group" if !group.is_empty() => (
            Action::AddToGroup {
                email: email.clone(),
                group: group.clone(),
            },
            format!("Add {email} to a group"),
        ),
        "remove_from_group" if !group.is_empty() => (
            Action::RemoveFromGroup {
                email: email.clone(),
                group: group.clone(),
            },
            format!("Remove {email} from a group"),
        ),
        _ => return (StatusCode::BAD_REQUEST, Html("<h1>Unknown action</h1>")).into_response(),
    };
    if let Err(e) = accessrail_engine::provision::ensure_enabled(&conn) {
        return page(
            &s,
            &v,
            "confirm.html",
            context! { title => heading, heading, error => e.to_string() },
        );
    }
    let actor = format!("token:{token}");
    let req = Request {
        action,
        origin: Origin::Direct {
            actor: actor.clone(),
        },
    };
    match crate::api::make_plan(&s, &conn, vec![req], &Rails::new(None, false), actor).await {
        Ok((id, stored)) => {
            let steps: Vec<Value> = stored
                .plan
                .steps
                .iter()
                .map(|st| context! { action => if st.is_noop() { format!("{} (no-op)", st.action) } else { st.action.to_string() }, target => st.target, calls => st.calls.join(", "), before => st.before, after => st.after, note => st.note })
                .collect();
            page(
                &s,
                &v,
                "confirm.html",
                context! { title => heading, heading, steps, plan_id => id },
            )
        }
        Err(e) => page(
            &s,
            &v,
            "confirm.html",
            context! { title => heading, heading, error => e.message },
        ),
    }
}

#[derive(Deserialize)]
struct ApplyForm {
    csrf: Option<String>,
    plan: String,
}

async fn apply(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<ApplyForm>) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    match crate::api::apply_stored(&s, &f.plan, format!("token:{token}")).await {
        Ok(r) => {
            let results: Vec<Value> = r
                .results
                .iter()
                .map(|x| {
                    let css = match x.outcome.as_str() { "done" => "ok", "failed" => "bad", _ => "" };
                    context! { step => x.step, action => x.action, target => x.target, outcome => x.outcome.as_str(), css, message => x.message, audit => x.audit_id }
                })
                .collect();
            page(
                &s,
                &v,
                "confirm.html",
                context! { title => "Result", heading => "Result", results },
            )
        }
        Err(e) => {
            // An interrupted apply may have changed TestRail in part; one still running may yet.
            let heading = match e.code {
                "plan_interrupted" => "Interrupted",
                "plan_being_applied" => "Still being applied",
                _ => "Not applied",
            };
            page(
                &s,
                &v,
                "confirm.html",
                context! { title => heading, heading, error => e.message },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes() {
        let env = templates();
        for name in [
            "login.html",
            "setup.html",
            "users.html",
            "groups.html",
            "scans.html",
            "changes.html",
            "audit.html",
            "confirm.html",
        ] {
            let html = env
                .get_template(name)
                .and_then(|t| t.render(context! { title => "<t>", signed_in => "admin", csrf => "c", heading => "<script>x</script>", error => Value::from(()), form => context! { subdomain => "", base_url => "", email => "" } }))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!html.contains("<script>x</script>"), "{name} escapes");
            assert!(
                !html.contains(">none<") && !html.contains(">None<"),
                "{name}"
            );
        }
    }
}

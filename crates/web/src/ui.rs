//! The console: server-rendered pages, a session cookie (HttpOnly, SameSite=Strict) and a CSRF
//! token on every form, sign-in included. No secret ever reaches a page.
//!
//! This module has the frame (templates, cookies, sign-in), the integration form, scans,
//! changes, the audit log and the confirmation of provisioning plans; `ui_users` has the
//! accounts: the users list, an account's page, creating a user, and groups; `ui_projects` has
//! the projects and who can reach them; `ui_reviews` has the access reviews; `ui_seats` has seats and activity evidence; `ui_offboard` has offboarding.

use std::collections::BTreeMap;
use std::sync::Arc;

use accessrail_domain::audit;
use accessrail_engine::provision::{self, Action, Caution, Origin, Rails, Request};
use accessrail_engine::{ApiKey, ConnectRequest, Target, schedule, time_fmt, tokens};
use accessrail_store::{Connection, PendingSetupKey, ScanRecord, ScanStatus, Store};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use crate::auth::{CSRF_COOKIE, SESSION_COOKIE, Visitor, end_session, set_cookie, start_session};
use crate::state::AppState;
use crate::ui_users;

use crate::ui_offboard;
use crate::ui_projects;
use crate::ui_reviews;
use crate::ui_scim;
use crate::ui_seats;

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
    env.add_filter("breakable", breakable);
    env.add_filter("when", when);
    for (name, src) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("setup.html", include_str!("../templates/setup.html")),
        ("users.html", include_str!("../templates/users.html")),
        ("user.html", include_str!("../templates/user.html")),
        ("user_new.html", include_str!("../templates/user_new.html")),
        ("groups.html", include_str!("../templates/groups.html")),
        ("projects.html", include_str!("../templates/projects.html")),
        ("project.html", include_str!("../templates/project.html")),
        ("scans.html", include_str!("../templates/scans.html")),
        ("seats.html", include_str!("../templates/seats.html")),
        ("changes.html", include_str!("../templates/changes.html")),
        ("audit.html", include_str!("../templates/audit.html")),
        ("confirm.html", include_str!("../templates/confirm.html")),
        ("offboard.html", include_str!("../templates/offboard.html")),
        ("holds.html", include_str!("../templates/holds.html")),
        ("reviews.html", include_str!("../templates/reviews.html")),
        ("review.html", include_str!("../templates/review.html")),
        (
            "review_keep.html",
            include_str!("../templates/review_keep.html"),
        ),
        (
            "review_close.html",
            include_str!("../templates/review_close.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!("template {name}: {e}");
        }
    }
    env
}

/// Text (an email, an address) escaped, with line-break opportunities after `@` and `/`: a
/// narrow column wraps it there, not anywhere.
fn breakable(v: Value) -> Value {
    if v.is_none() || v.is_undefined() {
        return v;
    }
    let text = v.to_string();
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '/' => out.push_str("&#x2f;"),
            c => out.push(c),
        }
        if ch == '@' || ch == '/' {
            out.push_str("<wbr>");
        }
    }
    Value::from_safe_string(out)
}

/// A time as `time_fmt::short` writes it (`2026-11-25 10:04 UTC`): the date and the time each
/// kept on one line, so a narrow column takes two lines at most.
fn when(v: Value) -> Value {
    if v.is_none() || v.is_undefined() {
        return v;
    }
    let text = v.to_string();
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    match text.split_once(' ') {
        Some((date, time)) => Value::from_safe_string(format!(
            "<span class=\"nowrap\">{}</span> <span class=\"nowrap\">{}</span>",
            esc(date),
            esc(time)
        )),
        None => Value::from_safe_string(esc(&text)),
    }
}

pub fn routes(_state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/users") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(setup_page).post(setup))
        .route("/users", get(ui_users::users_page))
        .route("/users/new", get(ui_users::new_user_page))
        .route("/users/find", get(ui_users::find_user))
        .route("/users/{id}", get(ui_users::user_page))
        .route(
            "/users/{id}/offboard",
            get(ui_offboard::offboard_page).post(ui_offboard::offboard_apply),
        )
        .route("/groups", get(ui_users::groups_page))
        .route("/groups/{id}", get(ui_users::group_page))
        .route("/projects", get(ui_projects::projects_page))
        .route("/projects/{id}", get(ui_projects::project_page))
        .route("/seats", get(ui_seats::seats_page))
        .route("/holds", get(ui_scim::holds_page))
        .route("/holds/{id}/approve", post(ui_scim::approve))
        .route("/holds/{id}/reject", post(ui_scim::reject))
        .route("/scans", get(scans_page))
        .route("/scans/run", post(scan_now))
        .route("/changes", get(changes_page))
        .route("/audit", get(audit_page))
        .route("/provision/confirm", get(confirm_page))
        .route("/provision/apply", post(apply))
        .route("/reviews", get(ui_reviews::reviews_page))
        .route("/reviews/{id}", get(ui_reviews::review_page))
        .route("/reviews/{id}/decide", post(ui_reviews::decide))
        .route(
            "/reviews/{id}/keep-all",
            get(ui_reviews::keep_all_page).post(ui_reviews::keep_all),
        )
        .route("/reviews/{id}/submit", post(ui_reviews::submit))
        .route("/reviews/{id}/approve", post(ui_reviews::approve))
        .route("/reviews/{id}/send-back", post(ui_reviews::send_back))
        .route(
            "/reviews/{id}/close",
            get(ui_reviews::close_dry_run).post(ui_reviews::close),
        )
        .route("/reviews/{id}/export.csv", get(ui_reviews::export_csv))
        .route("/reviews/{id}/export.json", get(ui_reviews::export_json))
        .route("/reviews/{id}/export.html", get(ui_reviews::export_html))
}

/// `1 leaver`, `2 leavers`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A link to one audit entry: the page of the log that starts with it.
pub(crate) fn audit_link(id: i64) -> String {
    format!("/audit?before={}#audit-{id}", id.saturating_add(1))
}

/// Each scan's number among the connection's scans (#1 is the first), by its id. Revision
/// ids are shared with provisioning, so they have gaps; these do not.
pub(crate) fn scan_numbers(scans: &[ScanRecord]) -> BTreeMap<i64, usize> {
    let mut ids: Vec<i64> = scans.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.into_iter()
        .enumerate()
        .map(|(n, id)| (id, n + 1))
        .collect()
}

/// Where a change came from, with a link: its audit entry, or the scan that found it.
pub(crate) fn change_source(
    c: &accessrail_store::ChangeRecord,
    numbers: &BTreeMap<i64, usize>,
) -> (String, Option<String>) {
    match (c.audit_id, numbers.get(&c.scan_id)) {
        (Some(a), _) => (format!("audit #{a}"), Some(audit_link(a))),
        (None, Some(n)) => (format!("scan #{n}"), Some(format!("/scans#scan-{n}"))),
        (None, None) => ("scan".into(), None),
    }
}

/// A local page to go back to: only the console's own account and group pages qualify.
pub(crate) fn safe_back(back: Option<&str>) -> Option<String> {
    let b = back?.trim();
    let ok = b == "/users"
        || b == "/users/new"
        || ["/users/", "/groups/"].iter().any(|p| {
            b.strip_prefix(p).is_some_and(|id| {
                !id.is_empty() && id.len() < 20 && id.bytes().all(|c| c.is_ascii_digit())
            })
        });
    ok.then(|| b.to_string())
}

/// Adds the visitor's cookies (a new sign-in CSRF cookie, or the removal of a dead session's).
pub(crate) fn with_cookies(mut resp: Response, v: &Visitor) -> Response {
    for c in v.set_cookies() {
        if let Ok(c) = header::HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    resp
}

/// A rendered page, with the visitor's cookies.
pub(crate) fn page(state: &AppState, v: &Visitor, name: &str, ctx: Value) -> Response {
    let base = context! { signed_in => v.signed_in(), reviewer => v.reviewer(), csrf => v.csrf() };
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

/// Where a visitor who may not see a page goes: anonymous visitors sign in; a reviewer
/// sign-in goes back to the review pages, the only ones it reaches.
pub(crate) fn to_login(v: &Visitor) -> Response {
    let to = if v.reviewer().is_some() {
        "/reviews"
    } else {
        "/login"
    };
    with_cookies(Redirect::to(to).into_response(), v)
}

pub(crate) fn forbidden(state: &AppState, v: &Visitor) -> Response {
    let mut r = page(
        state,
        v,
        "login.html",
        context! { title => "Sign in", error => "This form has expired or did not come from this console (CSRF check). Please try again." },
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

pub(crate) async fn current_connection(state: &AppState) -> Option<Connection> {
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
    if v.reviewer().is_some() {
        return Redirect::to("/reviews").into_response();
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
    match s.engine.store().token_auth_by_hash(&hash).await {
        Ok(Some(auth)) => {
            let name = auth.name;
            let landing = if auth.reviewer.is_some() {
                "/reviews"
            } else {
                "/users"
            };
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
            let mut resp = Redirect::to(landing).into_response();
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

/// A page that only says something went wrong (or is missing), with a way back.
pub(crate) fn message_page(
    state: &AppState,
    v: &Visitor,
    status: StatusCode,
    heading: &str,
    message: &str,
    back: &str,
) -> Response {
    let mut r = page(
        state,
        v,
        "confirm.html",
        context! { title => heading, heading, error => message, back },
    );
    *r.status_mut() = status;
    r
}

// ---- setup ------------------------------------------------------------------------------------

/// How long a key that passed Test is kept for the Save that follows.
pub const SETUP_KEY_LIFETIME: i64 = 10 * 60;

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

impl SetupForm {
    fn target(&self, allow_base_urls: bool) -> Target {
        if allow_base_urls && !self.base_url.trim().is_empty() {
            Target::BaseUrl(self.base_url.trim().to_string())
        } else {
            Target::Subdomain(self.subdomain.trim().to_string())
        }
    }
}

/// What was tested, as kept with the key: `url:...` or `subdomain:...`.
fn target_text(t: &Target) -> String {
    match t {
        Target::BaseUrl(u) => format!("url:{u}"),
        Target::Subdomain(s) => format!("subdomain:{s}"),
    }
}

fn email_text(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The associated data a kept key is sealed with: it opens only for this session, this
/// address and this email.
fn setup_key_aad(session_hash: &str, target: &str, email: &str) -> String {
    format!("console-setup-key-v1\n{session_hash}\n{target}\n{email}")
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
                provisioning_css => if c.provisioning_enabled { "ok" } else { "" },
            }
        })
        .collect()
}

/// The key this session's Test passed, if still kept.
async fn kept_key(s: &AppState, session_hash: &str) -> Option<PendingSetupKey> {
    let now = s.engine.now();
    match s
        .engine
        .store()
        .setup_key(session_hash, now - SETUP_KEY_LIFETIME)
        .await
    {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("reading a kept setup key: {e}");
            None
        }
    }
}

fn kept_until(k: &PendingSetupKey) -> String {
    time_fmt::short(k.created_at + SETUP_KEY_LIFETIME)
}

/// What a kept key was tested for, in words.
fn kept_for(k: &PendingSetupKey) -> String {
    let place = k
        .target
        .strip_prefix("url:")
        .map(str::to_string)
        .or_else(|| {
            k.target
                .strip_prefix("subdomain:")
                .map(|s| format!("subdomain {s}"))
        })
        .unwrap_or_default();
    format!("{} at {place}", k.email)
}

async fn setup_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    // An administrator's session only: a reviewer sign-in has a session too.
    let Some(session) = v.signed_in().and(v.session_id()).map(tokens::hash) else {
        return to_login(&v);
    };
    let connections = setup_ctx(&s).await;
    // A Test passed in this session: the form as tested, ready for Save.
    let mut form = SetupForm::default();
    let kept = kept_key(&s, &session).await;
    if let Some(k) = &kept {
        if let Some(u) = k.target.strip_prefix("url:") {
            form.base_url = u.to_string();
        } else if let Some(sd) = k.target.strip_prefix("subdomain:") {
            form.subdomain = sd.to_string();
        }
        form.email = k.email.clone();
    }
    page(
        &s,
        &v,
        "setup.html",
        context! {
            title => "TestRail integration", page => "setup", allow_base_urls => s.allow_base_urls, form, connections,
            key_kept => kept.as_ref().map(kept_until), kept_for => kept.as_ref().map(kept_for),
        },
    )
}

/// The key Save uses: the one typed, or else the one this session's Test passed for the same
/// address and email.
async fn key_for_save(
    s: &AppState,
    session: &str,
    target: &str,
    email: &str,
) -> Result<ApiKey, String> {
    let Some(k) = kept_key(s, session).await else {
        return Err(format!(
            "Paste the API key. (A key that passed Test is kept for {} minutes for Save.)",
            SETUP_KEY_LIFETIME / 60
        ));
    };
    if k.target != target || k.email != email {
        return Err(
            "The address or email changed since the Test: click Test again, or paste the API key."
                .into(),
        );
    }
    s.engine
        .keyring()
        .open(&setup_key_aad(session, target, email), &k.secret)
        .map_err(|e| {
            tracing::error!("opening a kept setup key: {e}");
            "The tested key could not be read back: paste the API key again.".to_string()
        })
}

async fn setup(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<SetupForm>) -> Response {
    // An administrator's session only: a reviewer sign-in has a session too.
    let Some(session) = v.signed_in().and(v.session_id()).map(tokens::hash) else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let target = f.target(s.allow_base_urls);
    let (tested_target, tested_email) = (target_text(&target), email_text(&f.email));
    let saving = f.op == "save";
    let typed = ApiKey::new(&f.api_key);
    let key = match typed.clone() {
        Some(k) => Ok(k),
        None if saving => key_for_save(&s, &session, &tested_target, &tested_email).await,
        None => Err("Paste the API key.".to_string()),
    };
    let flash: Option<(String, &str)>;
    let mut checks = vec![];
    let mut passed = false;
    match key {
        Err(msg) => flash = Some((msg, "bad")),
        Ok(key) => {
            let result = if saving {
                s.engine
                    .connect(ConnectRequest {
                        scan_interval_secs: None,
                        target,
                        email: f.email.clone(),
                        key: key.clone(),
                        name: None,
                        replace: true,
                        request_budget: None,
                    })
                    .await
                    .map(|(r, saved)| (r, saved.map(|c| c.name)))
            } else {
                s.engine
                    .test_candidate(&target, &f.email, key.clone())
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
                    // Keep the key a Test passed for Save; forget it once saved, or when a
                    // Test of another key failed.
                    let store = s.engine.store();
                    let kept = if !saving && report.passed {
                        let now = s.engine.now();
                        let sealed = s.engine.keyring().seal(
                            &setup_key_aad(&session, &tested_target, &tested_email),
                            &key,
                        );
                        match sealed {
                            Ok(secret) => store
                                .keep_setup_key(
                                    PendingSetupKey {
                                        session_hash: session.clone(),
                                        target: tested_target.clone(),
                                        email: tested_email.clone(),
                                        secret,
                                        created_at: now,
                                    },
                                    now - SETUP_KEY_LIFETIME,
                                )
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                        .inspect_err(|e| tracing::error!("keeping a tested setup key: {e}"))
                        .is_ok()
                    } else {
                        if saved.is_some() || !report.passed {
                            let _ = store.drop_setup_key(&session).await;
                        }
                        false
                    };
                    flash = match (saving, saved) {
                        (true, Some(name)) => {
                            s.scan_now.notify_one();
                            Some((
                                format!(
                                    "Saved connection {name}. The API key is stored encrypted and will not be shown again. The first scan is starting."
                                ),
                                "ok",
                            ))
                        }
                        (true, None) => {
                            Some(("The test failed, so nothing was saved.".into(), "bad"))
                        }
                        _ if report.passed && kept => Some((
                            format!(
                                "The test passed. Click Save to store the connection: the key you tested is kept for it (for {} minutes), so leave the API Key field empty.",
                                SETUP_KEY_LIFETIME / 60
                            ),
                            "ok",
                        )),
                        _ if report.passed => Some((
                            "The test passed. Paste the key again and click Save to store the connection.".into(),
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
    let kept = kept_key(&s, &session).await;
    let key_kept = kept.as_ref().map(kept_until);
    let kept_for = kept.as_ref().map(kept_for);
    let (msg, kind) = flash.unwrap_or_default();
    page(
        &s,
        &v,
        "setup.html",
        context! { title => "TestRail integration", page => "setup", allow_base_urls => s.allow_base_urls, form => f, checks, passed, flash => msg, flash_kind => kind, connections, key_kept, kept_for },
    )
}

// ---- scans, changes, audit -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ScansQuery {
    /// Set by Scan now: when the scan was asked for (Unix seconds).
    #[serde(default)]
    requested: Option<i64>,
    /// Set by Scan now when the scan could not be queued.
    #[serde(default)]
    failed: Option<u8>,
}

/// How long the scans page waits for an asked-for scan to start before saying so.
const SCAN_START_PATIENCE: i64 = 10 * 60;

async fn scans_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<ScansQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let scans = s.engine.store().scans(&conn.id).await.unwrap_or_default();
    let numbers = scan_numbers(&scans);
    let now = s.engine.now();
    let status = schedule::statuses(&s.engine, &s.schedule)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|x| x.connection == conn.name);
    let baseline = scans
        .iter()
        .find(|x| x.status == ScanStatus::Succeeded)
        .map(|x| x.id);
    let rows: Vec<Value> = scans
        .iter()
        .rev()
        .map(|x| {
            let css = match x.status { ScanStatus::Succeeded => "ok", ScanStatus::Failed | ScanStatus::Interrupted => "bad", ScanStatus::Running => "warn" };
            let done = x.status == ScanStatus::Succeeded;
            context! {
                n => numbers.get(&x.id).copied().unwrap_or_default(), started => time_fmt::short(x.started_at), status => x.status.as_str(), css,
                duration => x.finished_at.map(|f| format!("{}s", f - x.started_at)).unwrap_or_default(),
                users => x.users_seen, seats => if done { x.active_seats.to_string() } else { "-".into() },
                requests => x.requests,
                changes => if Some(x.id) == baseline { "baseline".to_string() } else if done { x.changes.to_string() } else { "-".into() },
                changes_link => (done && x.changes > 0 && Some(x.id) != baseline).then(|| format!("/changes?scan={}", x.id)),
                error => x.error,
            }
        })
        .collect();
    // What the visitor should know about a scan running or asked for.
    let running = scans.iter().rev().find(|x| x.status == ScanStatus::Running);
    let number = |x: &ScanRecord| numbers.get(&x.id).copied().unwrap_or_default();
    let (notice, notice_kind, refresh) = if q.failed.is_some() {
        (
            Some(
                "The scan could not be queued (the database did not answer). Try again."
                    .to_string(),
            ),
            "bad",
            None,
        )
    } else if let Some(r) = running {
        (
            Some(format!(
                "Scan #{} is running: started {} ({} ago). This page refreshes every few seconds until it ends.",
                number(r),
                time_fmt::short(r.started_at),
                human_age(now - r.started_at)
            )),
            "warn",
            Some(3),
        )
    } else if let Some(asked) = q.requested {
        match scans.iter().rev().find(|x| x.started_at >= asked) {
            Some(x) => (
                Some(format!(
                    "Scan #{} {}{}.",
                    number(x),
                    x.status.as_str(),
                    match x.status {
                        ScanStatus::Succeeded if Some(x.id) == baseline => format!(
                            ": {} read and recorded as the baseline",
                            plural(x.users_seen, "account", "accounts")
                        ),
                        ScanStatus::Succeeded => format!(
                            ": {} read, {} found",
                            plural(x.users_seen, "account", "accounts"),
                            plural(x.changes, "change", "changes")
                        ),
                        _ => x
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default(),
                    }
                )),
                if x.status == ScanStatus::Succeeded {
                    "ok"
                } else {
                    "bad"
                },
                None,
            ),
            None if now.saturating_sub(asked) < SCAN_START_PATIENCE => (
                Some(format!(
                    "Scan requested at {}: waiting for the background worker to start it (a scan already running is finished first). This page refreshes every few seconds.",
                    time_fmt::short(asked)
                )),
                "warn",
                Some(3),
            ),
            None => (
                Some(format!(
                    "The scan requested at {} has not started: no background worker may be running (see the service's log).",
                    time_fmt::short(asked)
                )),
                "bad",
                None,
            ),
        }
    } else {
        (None, "", None)
    };
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
            notice, notice_kind, refresh,
        },
    )
}

fn human_age(secs: i64) -> String {
    match secs.max(0) {
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
    let asked = s.engine.now();
    if let Some(conn) = current_connection(&s).await
        && let Err(e) = crate::serve::queue_scan(
            &s,
            conn.id,
            format!("token:{}", v.signed_in().unwrap_or_default()),
        )
        .await
    {
        tracing::error!("cannot queue a scan: {e}");
        return Redirect::to("/scans?failed=1").into_response();
    }
    Redirect::to(&format!("/scans?requested={asked}")).into_response()
}

/// A page of a newest-first log: `?before=ID` shows the entries older than ID.
#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    before: Option<i64>,
    /// `1`: verify the audit chain on this view.
    #[serde(default)]
    verify: Option<u8>,
    /// Changes: only those one scan found.
    #[serde(default)]
    scan: Option<i64>,
}

const LOG_PAGE: u64 = 200;

/// At most this many changes of one scan are listed.
const SCAN_CHANGES_SHOWN: usize = 1000;

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
    let store = s.engine.store();
    let numbers = scan_numbers(&store.scans(&conn.id).await.unwrap_or_default());
    let (list, older) = match q.scan {
        Some(scan) => {
            let mut l = store
                .changes(&conn.id, None, Some(scan))
                .await
                .unwrap_or_default();
            l.reverse();
            l.truncate(SCAN_CHANGES_SHOWN);
            (l, None)
        }
        None => {
            let l = store
                .recent_changes(&conn.id, q.before, LOG_PAGE)
                .await
                .unwrap_or_default();
            let older = (l.len() as u64 == LOG_PAGE)
                .then(|| l.last().map(|c| format!("/changes?before={}", c.id)))
                .flatten();
            (l, older)
        }
    };
    let changes: Vec<Value> = list
        .iter()
        .map(|c| {
            let (source, source_link) = change_source(c, &numbers);
            let subject_link = match (c.tr_user_id, c.tr_group_id) {
                (Some(u), _) => Some(format!("/users/{u}")),
                (None, Some(g)) => Some(format!("/groups/{g}")),
                _ => None,
            };
            context! {
                at => time_fmt::short(c.at), kind => c.kind.replace('_', " "), subject => c.subject, subject_link, before => c.before, after => c.after,
                source, source_link,
            }
        })
        .collect();
    let scan_label = q.scan.map(|id| {
        numbers
            .get(&id)
            .map_or_else(|| id.to_string(), |n| format!("#{n}"))
    });
    page(
        &s,
        &v,
        "changes.html",
        context! { title => "Changes", page => "changes", connection => conn.name, changes, older, scan_label },
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
                Ok(n) => format!("Chain verified: {}.", plural(n, "entry", "entries")),
                Err((id, why)) => format!("CHAIN BROKEN at entry {id}: {why}"),
            },
        )
    } else {
        None
    };
    let current = current_connection(&s).await.map(|c| c.name);
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
            // The account's page, for entries of the connection the console shows.
            let target_link = (current.as_deref() == Some(r.connection.as_str()) && r.target.contains('@'))
                .then(|| format!("/users/find?email={}", testrail_client::encode_query_value(&r.target)));
            context! {
                id => e.id, link => audit_link(e.id), at => time_fmt::short(r.at), actor => r.actor, action => r.action.replace('_', " "), target => r.target,
                target_link, before => r.before, after => r.after, outcome => r.outcome.as_str(), css, calls => r.calls.join(", "), message => r.message,
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

/// What a confirmation page is asked to plan (`group` may repeat for `create_user`).
#[derive(Debug, Default)]
struct ConfirmQuery {
    action: String,
    email: String,
    name: String,
    role: String,
    groups: Vec<String>,
    back: Option<String>,
}

impl ConfirmQuery {
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let mut q = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "action" => q.action = v,
                "email" => q.email = v.trim().to_string(),
                "name" => q.name = v.trim().to_string(),
                "role" => q.role = v.trim().to_string(),
                "group" if !v.trim().is_empty() => q.groups.push(v.trim().to_string()),
                "back" => q.back = Some(v),
                _ => {}
            }
        }
        q
    }
}

/// What the person confirming must acknowledge, for the cautions of a plan's steps.
pub(crate) fn cautions(steps: &[provision::Step]) -> Vec<Caution> {
    let mut out: Vec<Caution> = steps.iter().filter_map(|s| s.caution).collect();
    out.sort_by_key(|c| c.as_str());
    out.dedup();
    out
}

pub(crate) fn caution_title(c: Caution) -> &'static str {
    match c {
        Caution::Administrator => "A TestRail administrator.",
        Caution::OwnAccount => "Accessrail's own TestRail account.",
    }
}

pub(crate) fn acknowledge_text(cs: &[Caution]) -> String {
    if cs.contains(&Caution::OwnAccount) {
        "I understand that Accessrail will lose its access to TestRail, and I want to deactivate this account.".into()
    } else {
        "I understand that this deactivates a TestRail administrator.".into()
    }
}

async fn confirm_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let q = ConfirmQuery::parse(pairs);
    let email = q.email.clone();
    // Group ids read better as names in the heading.
    let group_names = s
        .engine
        .store()
        .current_group_names(&conn.id)
        .await
        .unwrap_or_default();
    let group_label = |g: &str| {
        g.parse::<u64>()
            .ok()
            .and_then(|id| group_names.iter().find(|(gid, _)| *gid == id))
            .and_then(|(_, n)| n.clone())
            .unwrap_or_else(|| g.to_string())
    };
    let group = q.groups.first().cloned().unwrap_or_default();
    let group_back = group.parse::<u64>().ok().map(|id| format!("/groups/{id}"));
    let (action, heading, default_back) = match q.action.as_str() {
        "deactivate" => (
            Action::Deactivate {
                email: email.clone(),
            },
            format!("Deactivate {email}"),
            None,
        ),
        "reactivate" => (
            Action::Reactivate {
                email: email.clone(),
            },
            format!("Reactivate {email}"),
            None,
        ),
        "set_role" if !q.role.is_empty() => (
            Action::SetRole {
                email: email.clone(),
                role: q.role.clone(),
            },
            format!("Change the role of {email} to {}", q.role),
            None,
        ),
        "add_to_group" if !group.is_empty() => (
            Action::AddToGroup {
                email: email.clone(),
                group: group.clone(),
            },
            format!("Add {email} to {}", group_label(&group)),
            group_back.clone(),
        ),
        "remove_from_group" if !group.is_empty() => (
            Action::RemoveFromGroup {
                email: email.clone(),
                group: group.clone(),
            },
            format!("Remove {email} from {}", group_label(&group)),
            group_back.clone(),
        ),
        "create_user" => (
            Action::CreateUser {
                name: q.name.clone(),
                email: email.clone(),
                role: Some(q.role.clone()).filter(|r| !r.is_empty()),
                groups: q.groups.clone(),
                reconcile: false,
            },
            format!("Create user {email}"),
            Some("/users/new".to_string()),
        ),
        _ => {
            return message_page(
                &s,
                &v,
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "This link does not name a change Accessrail can plan.",
                "/users",
            );
        }
    };
    // Where Back goes: the page the visitor came from, or the account's or group's page.
    let back_for = |user_id: Option<u64>| {
        safe_back(q.back.as_deref())
            .or_else(|| default_back.clone())
            .or_else(|| user_id.map(|id| format!("/users/{id}")))
            .unwrap_or_else(|| "/users".to_string())
    };
    if email.is_empty() {
        return message_page(
            &s,
            &v,
            StatusCode::BAD_REQUEST,
            &heading,
            "An email is needed.",
            &back_for(None),
        );
    }
    if let Err(e) = provision::ensure_enabled(&conn) {
        return message_page(
            &s,
            &v,
            StatusCode::CONFLICT,
            &heading,
            &e.to_string(),
            &back_for(None),
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
            let plan = &stored.plan;
            let user_id = plan.steps.iter().find_map(|st| st.user_id);
            let nothing_to_do = plan.steps.iter().all(provision::Step::is_noop);
            // Nothing to do for an account that exists: back to that account.
            let back = match user_id {
                Some(id) if nothing_to_do && safe_back(q.back.as_deref()).is_none() => {
                    format!("/users/{id}")
                }
                _ => back_for(user_id),
            };
            let steps: Vec<Value> = plan
                .steps
                .iter()
                .map(|st| context! { action => if st.is_noop() { format!("{} (nothing to do)", st.action.replace('_', " ")) } else { st.action.replace('_', " ") }, target => st.target, calls => st.calls.join(", "), before => st.before, after => st.after, note => st.note })
                .collect();
            let skipped: Vec<String> = plan
                .skipped
                .iter()
                .map(|x| format!("{} {}: {}", x.action, x.target, x.reason))
                .collect();
            if steps.is_empty() {
                return message_page(
                    &s,
                    &v,
                    StatusCode::OK,
                    &heading,
                    &format!("Nothing to do. {}", skipped.join("; ")),
                    &back,
                );
            }
            let cs = cautions(&plan.steps);
            let caution_ctx: Vec<Value> = cs
                .iter()
                .map(|c| context! { kind => c.as_str(), title => caution_title(*c), message => c.message() })
                .collect();
            // Before a deactivation: what is still assigned to the person, read from TestRail.
            let work = match (q.action.as_str(), user_id) {
                ("deactivate", Some(uid)) if !nothing_to_do => Some(
                    match accessrail_engine::offboard::impact(&s.engine, &conn, &email).await {
                        Ok(i) => context! {
                            summary => crate::ui_offboard::work_summary(&i),
                            link => format!("/users/{uid}/offboard"),
                        },
                        Err(e) => context! {
                            error => format!("What is still assigned to them could not be read from TestRail: {}", crate::error::ApiError::from(e).message),
                            link => format!("/users/{uid}/offboard"),
                        },
                    },
                ),
                _ => None,
            };
            page(
                &s,
                &v,
                "confirm.html",
                context! {
                    title => heading, heading, steps, plan_id => id, back, nothing_to_do,
                    cautions => caution_ctx, acknowledge_text => acknowledge_text(&cs), work,
                },
            )
        }
        Err(e) => {
            let status = if e.status.is_client_error() {
                e.status
            } else {
                StatusCode::BAD_GATEWAY
            };
            message_page(&s, &v, status, &heading, &e.message, &back_for(None))
        }
    }
}

#[derive(Deserialize)]
struct ApplyForm {
    csrf: Option<String>,
    plan: String,
    /// The box that confirms a cautioned deactivation (an administrator, the own account).
    #[serde(default)]
    acknowledge: Option<String>,
    #[serde(default)]
    back: Option<String>,
}

/// The cautions of a kept plan, checked again on the server: the plan is made again from
/// TestRail as it is now (only reads), exactly as its apply will make it. `Ok(vec![])` for a
/// plan without deactivations, and for one that is no longer ready (its apply says why).
async fn kept_plan_cautions(s: &AppState, id: &str) -> Result<Vec<Caution>, String> {
    let Some(kept) = s.engine.store().plan(id).await.map_err(|e| e.to_string())? else {
        return Ok(vec![]);
    };
    if kept.status != accessrail_store::PlanStatus::Ready {
        return Ok(vec![]);
    }
    let actions: Vec<Action> =
        serde_json::from_str(&kept.actions).map_err(|e| format!("the plan cannot be read: {e}"))?;
    if !actions
        .iter()
        .any(|a| matches!(a, Action::Deactivate { .. }))
    {
        return Ok(vec![]);
    }
    let conn = s
        .engine
        .resolve(Some(&kept.connection))
        .await
        .map_err(|e| e.to_string())?;
    let requests = actions
        .into_iter()
        .map(|action| Request {
            action,
            origin: Origin::Direct {
                actor: kept.actor.clone(),
            },
        })
        .collect();
    let rails = Rails::new(Some(kept.max_deactivations), kept.force);
    let fresh = provision::plan(&s.engine, &conn, requests, &rails)
        .await
        .map_err(|e| e.to_string())?;
    Ok(cautions(&fresh.steps))
}

async fn apply(State(s): State<Arc<AppState>>, v: Visitor, Form(f): Form<ApplyForm>) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let back = safe_back(f.back.as_deref()).unwrap_or_else(|| "/users".into());
    match kept_plan_cautions(&s, &f.plan).await {
        Ok(cs) if !cs.is_empty() && f.acknowledge.as_deref() != Some("yes") => {
            let what: Vec<&str> = cs
                .iter()
                .map(|c| match c {
                    Caution::Administrator => "a TestRail administrator",
                    Caution::OwnAccount => "Accessrail's own TestRail account",
                })
                .collect();
            return message_page(
                &s,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not applied",
                &format!(
                    "This plan deactivates {}: it needs its confirmation box ticked. Nothing was changed; go back, read the warning and tick the box to go ahead.",
                    what.join(" and ")
                ),
                &back,
            );
        }
        Ok(_) => {}
        Err(e) => {
            return message_page(
                &s,
                &v,
                StatusCode::BAD_GATEWAY,
                "Not applied",
                &format!(
                    "The plan could not be checked against TestRail: {e}. Nothing was changed."
                ),
                &back,
            );
        }
    }
    // The box was ticked for every caution (checked above), or the plan has none.
    match crate::api::apply_stored(&s, &f.plan, format!("token:{token}"), true).await {
        Ok(r) => {
            let results: Vec<Value> = r
                .results
                .iter()
                .map(|x| {
                    let css = match x.outcome.as_str() { "done" => "ok", "failed" => "bad", _ => "" };
                    context! { step => x.step, action => x.action.replace('_', " "), target => x.target, outcome => x.outcome.as_str(), css, message => x.message, audit => x.audit_id, audit_link => audit_link(x.audit_id) }
                })
                .collect();
            page(
                &s,
                &v,
                "confirm.html",
                context! { title => "Result", heading => "Result", results, back },
            )
        }
        Err(e) => {
            // An interrupted apply may have changed TestRail in part; one still running may yet.
            let heading = match e.code {
                "plan_interrupted" => "Interrupted",
                "plan_being_applied" => "Still being applied",
                _ => "Not applied",
            };
            message_page(&s, &v, StatusCode::OK, heading, &e.message, &back)
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
            "user.html",
            "user_new.html",
            "groups.html",
            "projects.html",
            "project.html",
            "scans.html",
            "seats.html",
            "changes.html",
            "audit.html",
            "confirm.html",
            "offboard.html",
            "holds.html",
            "reviews.html",
            "review.html",
            "review_keep.html",
            "review_close.html",
        ] {
            let html = env
                .get_template(name)
                .and_then(|t| t.render(context! { title => "<t>", signed_in => "admin", csrf => "c", heading => "<script>x</script>", error => Value::from(()), form => context! { subdomain => "", base_url => "", email => "" }, u => context! { label => "<script>x</script>", id => 1 } }))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!html.contains("<script>x</script>"), "{name} escapes");
            assert!(
                !html.contains(">none<") && !html.contains(">None<"),
                "{name}"
            );
        }
    }

    #[test]
    fn emails_break_at_their_parts_and_stay_escaped() {
        assert_eq!(
            breakable(Value::from("a.b@x.io")).to_string(),
            "a.b@<wbr>x.io"
        );
        assert_eq!(breakable(Value::from("<b>&")).to_string(), "&lt;b&gt;&amp;");
        assert!(breakable(Value::from(())).is_none());
    }

    #[test]
    fn a_time_wraps_between_its_date_and_its_time_only() {
        assert_eq!(
            when(Value::from("2026-11-25 10:04 UTC")).to_string(),
            "<span class=\"nowrap\">2026-11-25</span> <span class=\"nowrap\">10:04 UTC</span>"
        );
        assert_eq!(when(Value::from("<x>")).to_string(), "&lt;x&gt;");
    }

    #[test]
    fn plurals_and_safe_back_links() {
        assert_eq!(plural(1, "leaver", "leavers"), "1 leaver");
        assert_eq!(plural(0, "leaver", "leavers"), "0 leavers");
        assert_eq!(plural(2, "entry", "entries"), "2 entries");
        for ok in ["/users", "/users/12", "/groups/3", "/users/new"] {
            assert_eq!(safe_back(Some(ok)).as_deref(), Some(ok));
        }
        for bad in [
            "//evil.example",
            "https://evil.example/users",
            "/users/12/../../x",
            "/groups/",
            "/audit",
            "/users/1x",
        ] {
            assert_eq!(safe_back(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn scans_are_numbered_without_gaps() {
        let scan = |id| ScanRecord {
            id,
            connection_id: "c".into(),
            started_at: 0,
            finished_at: None,
            status: ScanStatus::Succeeded,
            error: None,
            requests: 0,
            retries: 0,
            users_seen: 0,
            groups_seen: 0,
            active_seats: 0,
            changes: 0,
            rows_written: 0,
            warnings: vec![],
        };
        let n = scan_numbers(&[scan(1), scan(4), scan(9)]);
        assert_eq!(n.get(&4), Some(&2));
        assert_eq!(n.get(&9), Some(&3));
    }
}

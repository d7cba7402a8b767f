//! TestRail API v2 protocol: routing on the raw query string, the order of checks, and every
//! users / roles / groups / projects method; the artefact methods (suites, cases, runs, plans,
//! tests, results) are in `api/artefacts.rs`.

pub(crate) mod artefacts;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::model::{
    Edition, GLOBAL_ROLE, Group, Project, Role, Settings, User, UsersPagination, Version,
};
use crate::sim::{Sim, SimState};
use crate::state::{Instance, ProjectPatch};

/// Error texts, as TestRail sends them (see `docs/simulator.md` for which are TestRail's own and
/// which are placeholders where TestRail's text is unknown).
pub mod texts {
    pub const AUTH_FAILED: &str =
        "Authentication failed: invalid or missing user/password or session cookie.";
    pub const API_DISABLED: &str = "The API is disabled for your installation. It can be enabled in the administration area in TestRail under Administration > Site Settings > API.";
    pub const NOT_ADMIN_GET_USERS: &str = "Access Denied. You are not a TestRail administrator. Field:project_id is a required field.";
    pub const NOT_ADMIN: &str = "Access Denied. You are not a TestRail administrator.";
    pub const CONTENT_MISSING: &str =
        "Content-Type header missing (use Content-Type: application/json)";
    pub const CONTENT_INVALID: &str =
        "Content-Type header invalid (use Content-Type: application/json)";
    pub const MAINTENANCE: &str =
        "Your TestRail account is undergoing daily maintenance. Please try again in a few minutes.";
    pub const INVALID_USER: &str = "Field :user is not a valid user.";
    pub const INVALID_EMAIL: &str = "Field :email is not a valid email address.";
    pub const EMAIL_IN_USE: &str = "Field :email is already in use by another user.";
    pub const INVALID_GROUP: &str = "Field :group_id is not a valid group.";
    pub const INVALID_PROJECT: &str = "Field :project_id is not a valid or accessible project.";
    pub const INVALID_ROLE: &str = "Field :role_id is not a valid role.";
    pub const INVALID_DEFAULT_ROLE: &str = "Field :default_role_id is not a valid role.";
    pub const ROLE_REQUIRED: &str = "Field :role_id is a required field.";
    pub const INVALID_PROJECT_USERS: &str = "Field :users contains an invalid user.";
    pub const INVALID_PROJECT_GROUPS: &str = "Field :groups contains an invalid group.";
    pub const NAME_REQUIRED: &str = "Field :name is a required field.";
    pub const INVALID_JSON: &str = "Bad request: the request body is not valid JSON.";
    pub const SERVER_ERROR: &str = "An internal error occurred (simulated server error).";
}

/// An error answer: TestRail's status and its `{"error": ...}` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<u64>,
}

fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        retry_after: None,
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    err(400, message)
}

/// What the transport does with a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Normal,
    /// The effect happened; cut the connection before answering.
    Drop,
    /// Send the headers and half the body, then cut.
    Truncate,
}

#[derive(Debug)]
pub(crate) enum Answer {
    Ok {
        body: Option<Value>,
        delivery: Delivery,
    },
    Err(ApiError),
}

/// The parts of an HTTP request the protocol looks at.
#[derive(Debug)]
pub(crate) struct ApiRequest<'a> {
    pub http_method: &'a str,
    /// The raw query string, without the leading `?`.
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// `http://host[/subpath]` as the request reached the front controller, for the `url` of
    /// rendered projects; `None` when unknown.
    pub base_url: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
}

struct MethodSpec {
    name: &'static str,
    verb: Verb,
    since: (u16, u16),
}

const METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "get_user",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_current_user",
        verb: Verb::Get,
        since: (6, 6),
    },
    MethodSpec {
        name: "get_user_by_email",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_users",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "add_user",
        verb: Verb::Post,
        since: (7, 3),
    },
    MethodSpec {
        name: "update_user",
        verb: Verb::Post,
        since: (7, 3),
    },
    MethodSpec {
        name: "get_roles",
        verb: Verb::Get,
        since: (7, 3),
    },
    MethodSpec {
        name: "get_group",
        verb: Verb::Get,
        since: (7, 5),
    },
    MethodSpec {
        name: "get_groups",
        verb: Verb::Get,
        since: (7, 5),
    },
    MethodSpec {
        name: "add_group",
        verb: Verb::Post,
        since: (7, 5),
    },
    MethodSpec {
        name: "update_group",
        verb: Verb::Post,
        since: (7, 5),
    },
    MethodSpec {
        name: "delete_group",
        verb: Verb::Post,
        since: (7, 5),
    },
    MethodSpec {
        name: "get_projects",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_project",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "update_project",
        verb: Verb::Post,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_suites",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_cases",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_runs",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_run",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_plans",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_plan",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_tests",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "get_results_for_run",
        verb: Verb::Get,
        since: (1, 0),
    },
    MethodSpec {
        name: "update_run",
        verb: Verb::Post,
        since: (1, 0),
    },
    MethodSpec {
        name: "update_run_in_plan_entry",
        verb: Verb::Post,
        since: (6, 4),
    },
    MethodSpec {
        name: "add_results",
        verb: Verb::Post,
        since: (1, 0),
    },
];

/// A parsed API route: `/api/v2/<method>[/<id>...]` plus `&k=v` parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub method: String,
    pub ids: Vec<String>,
    pub params: BTreeMap<String, String>,
}

/// Decodes a query component as PHP does: `+` is a space, `%XX` a byte.
fn php_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Routes on the raw query string: everything before the first `&` is the route.
pub(crate) fn parse_route(query: &str) -> Option<Route> {
    let mut parts = query.split('&');
    let route = parts.next()?;
    let rest = route.strip_prefix("/api/v2/")?;
    let mut segs = rest.split('/');
    let method = segs.next()?.to_string();
    if method.is_empty() {
        return None;
    }
    let ids = segs.map(str::to_string).collect();
    let mut params = BTreeMap::new();
    for kv in parts {
        if kv.is_empty() {
            continue;
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        params.insert(php_decode(k), php_decode(v));
    }
    Some(Route {
        method,
        ids,
        params,
    })
}

fn authenticate<'a>(
    inst: &'a Instance,
    settings: &Settings,
    authorization: Option<&str>,
) -> Option<&'a User> {
    let encoded = authorization?.trim().strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (email, secret) = decoded.split_once(':')?;
    let user = inst.user_by_email(email)?;
    if !user.is_active {
        return None;
    }
    let key_ok = user.api_keys.iter().any(|k| k == secret);
    let password_ok = !settings.require_api_keys && user.password.as_deref() == Some(secret);
    (key_ok || password_ok).then_some(user)
}

fn fault_applies(st: &SimState, method: &str) -> bool {
    st.faults.methods.is_empty() || st.faults.methods.iter().any(|m| m == method)
}

fn roll(st: &mut SimState, p: f64) -> bool {
    p > 0.0 && st.fault_rng.random_bool(p.clamp(0.0, 1.0))
}

impl Sim {
    /// The latency to add before answering a TestRail request.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.lock().faults.latency_ms)
    }

    /// Answers one TestRail API request, applying the documented order of checks:
    /// 409 maintenance, 429 rate limit, (injected 500), 401 credentials, 403 API disabled,
    /// 404 unknown method, 400 wrong verb / content type / JSON, then per method 403 not an
    /// administrator and 400 validation and unknown ids.
    pub(crate) fn handle(&self, req: &ApiRequest<'_>) -> Answer {
        let now = self.clock().now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let route = parse_route(req.query);
        let method_name = route
            .as_ref()
            .map_or_else(|| "(not an API route)".to_string(), |r| r.method.clone());
        st.stats.requests_total += 1;
        *st.stats.by_method.entry(method_name.clone()).or_default() += 1;

        if st.settings.maintenance {
            return Answer::Err(err(409, texts::MAINTENANCE));
        }
        if let Some(limit) = st.settings.rate_limit_per_minute.filter(|l| *l > 0) {
            let secs = now.as_secs();
            let window = secs / 60;
            if st.window.0 != window {
                st.window = (window, 0);
            }
            if st.window.1 >= limit {
                st.stats.rate_limited += 1;
                let retry = (60 - secs % 60).max(1);
                return Answer::Err(ApiError {
                    status: 429,
                    message: format!(
                        "API Rate Limit Exceeded - {limit} per minute maximum allowed. Retry after {retry} seconds."
                    ),
                    retry_after: Some(retry),
                });
            }
            st.window.1 += 1;
        }
        let faulty = fault_applies(st, &method_name);
        if faulty {
            st.fault_seen += 1;
            let over = st
                .faults
                .fail_after_requests
                .is_some_and(|n| st.fault_seen > n);
            let error_rate = st.faults.error_rate;
            if over || roll(st, error_rate) {
                return Answer::Err(err(500, texts::SERVER_ERROR));
            }
        }

        let Some(caller) = authenticate(&st.inst, &st.settings, req.authorization).cloned() else {
            return Answer::Err(err(401, texts::AUTH_FAILED));
        };
        if !st.settings.api_enabled {
            return Answer::Err(err(403, texts::API_DISABLED));
        }
        let Some(route) = route else {
            return Answer::Err(err(404, "Unknown method (not an API v2 route)"));
        };
        let version = st.settings.testrail_version;
        let Some(spec) = METHODS
            .iter()
            .find(|m| m.name == route.method && version.at_least(m.since.0, m.since.1))
        else {
            return Answer::Err(err(404, format!("Unknown method '{}'", route.method)));
        };
        let body = match (spec.verb, req.http_method) {
            (Verb::Get, "GET") => Map::new(),
            (Verb::Post, "POST") => {
                match req.content_type.map(str::trim) {
                    None | Some("") => return Answer::Err(bad(texts::CONTENT_MISSING)),
                    Some(ct)
                        if !ct
                            .split(';')
                            .next()
                            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) =>
                    {
                        return Answer::Err(bad(texts::CONTENT_INVALID));
                    }
                    Some(_) => {}
                }
                if req.body.iter().all(u8::is_ascii_whitespace) {
                    Map::new()
                } else {
                    match serde_json::from_slice::<Value>(req.body) {
                        Ok(Value::Object(m)) => m,
                        _ => return Answer::Err(bad(texts::INVALID_JSON)),
                    }
                }
            }
            (Verb::Get, _) => {
                return Answer::Err(bad(format!(
                    "The method {} requires a GET request.",
                    spec.name
                )));
            }
            (Verb::Post, _) => {
                return Answer::Err(bad(format!(
                    "The method {} requires a POST request.",
                    spec.name
                )));
            }
        };
        let repeat_rate = st.faults.repeat_page_rate;
        let repeat = faulty && roll(st, repeat_rate);
        let ctx = Ctx {
            caller: &caller,
            route: &route,
            body: &body,
            repeat,
            base_url: req.base_url,
            now: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        };
        let result = dispatch(st, &ctx);
        match result {
            Ok(body) => {
                let mut delivery = Delivery::Normal;
                if faulty {
                    let (drop_rate, truncate_rate) = (st.faults.drop_rate, st.faults.truncate_rate);
                    if roll(st, drop_rate) {
                        delivery = Delivery::Drop;
                    } else if roll(st, truncate_rate) {
                        delivery = Delivery::Truncate;
                    }
                }
                Answer::Ok { body, delivery }
            }
            Err(e) => Answer::Err(e),
        }
    }
}

struct Ctx<'a> {
    caller: &'a User,
    route: &'a Route,
    body: &'a Map<String, Value>,
    repeat: bool,
    base_url: Option<&'a str>,
    /// The simulator clock, Unix seconds.
    now: i64,
}

type Res = Result<Option<Value>, ApiError>;

fn dispatch(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    match ctx.route.method.as_str() {
        "get_user" => get_user(st, ctx),
        "get_current_user" => Ok(Some(render_user(
            &ctx.caller.clone(),
            &st.inst,
            &st.settings,
        ))),
        "get_user_by_email" => get_user_by_email(st, ctx),
        "get_users" => get_users(st, ctx),
        "add_user" => add_user(st, ctx),
        "update_user" => update_user(st, ctx),
        "get_roles" => {
            let roles: Vec<&Role> = st.inst.roles.iter().collect();
            paginate(&roles, "roles", "get_roles", ctx, |r| {
                render_role(r, &st.settings)
            })
        }
        "get_group" => {
            let id = path_id(ctx, "group_id", texts::INVALID_GROUP)?;
            let g = st
                .inst
                .groups
                .get(&id)
                .ok_or_else(|| bad(texts::INVALID_GROUP))?;
            Ok(Some(render_group(g)))
        }
        "get_groups" => {
            let groups: Vec<&Group> = st.inst.groups.values().collect();
            paginate(&groups, "groups", "get_groups", ctx, |g| render_group(g))
        }
        "add_group" => add_group(st, ctx),
        "update_group" => update_group(st, ctx),
        "delete_group" => {
            require_admin(ctx)?;
            let id = path_id(ctx, "group_id", texts::INVALID_GROUP)?;
            if st.inst.delete_group(id) {
                Ok(None)
            } else {
                Err(bad(texts::INVALID_GROUP))
            }
        }
        "get_projects" => get_projects(st, ctx),
        "get_project" => {
            let p = project_for(st, ctx)?;
            Ok(Some(render_project(
                p,
                &st.inst,
                &st.settings,
                ctx.base_url,
            )))
        }
        "update_project" => update_project(st, ctx),
        "get_suites" => artefacts::get_suites(st, ctx),
        "get_cases" => artefacts::get_cases(st, ctx),
        "get_runs" => artefacts::get_runs(st, ctx),
        "get_run" => artefacts::get_run(st, ctx),
        "get_plans" => artefacts::get_plans(st, ctx),
        "get_plan" => artefacts::get_plan(st, ctx),
        "get_tests" => artefacts::get_tests(st, ctx),
        "get_results_for_run" => artefacts::get_results_for_run(st, ctx),
        "update_run" => artefacts::update_run(st, ctx),
        "update_run_in_plan_entry" => artefacts::update_run_in_plan_entry(st, ctx),
        "add_results" => artefacts::add_results(st, ctx),
        other => Err(err(404, format!("Unknown method '{other}'"))),
    }
}

fn require_admin(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    if ctx.caller.is_admin {
        Ok(())
    } else {
        Err(err(403, texts::NOT_ADMIN))
    }
}

/// The numeric id in the path (`get_user/12`).
fn path_id(ctx: &Ctx<'_>, field: &str, invalid: &str) -> Result<u64, ApiError> {
    match ctx.route.ids.first().map(String::as_str) {
        None | Some("") => Err(bad(format!("Field :{field} is a required field."))),
        Some(s) => s.parse::<u64>().map_err(|_| bad(invalid)),
    }
}

fn project_for<'a>(st: &'a SimState, ctx: &Ctx<'_>) -> Result<&'a Project, ApiError> {
    let id = path_id(ctx, "project_id", texts::INVALID_PROJECT)?;
    let p = st
        .inst
        .projects
        .get(&id)
        .ok_or_else(|| bad(texts::INVALID_PROJECT))?;
    if !reaches(st, p, ctx.caller) {
        return Err(bad(texts::INVALID_PROJECT));
    }
    Ok(p)
}

/// Groups (and so their project roles) exist from TestRail 7.5.
fn groups_exist(settings: &Settings) -> bool {
    settings.testrail_version.at_least(7, 5)
}

/// The caller can see the project: its effective role there is not "No Access".
fn reaches(st: &SimState, p: &Project, user: &User) -> bool {
    st.inst
        .effective_project_role(p, user, groups_exist(&st.settings))
        .is_some()
}

fn get_projects(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let completed = match ctx.route.params.get("is_completed").map(|v| v.trim()) {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => return Err(bad("Field :is_completed is not a valid boolean.")),
    };
    let projects: Vec<&Project> = st
        .inst
        .projects
        .values()
        .filter(|p| completed.is_none_or(|c| p.is_completed == c))
        .filter(|p| reaches(st, p, ctx.caller))
        .collect();
    let link = match completed {
        None => "get_projects".to_string(),
        Some(c) => format!("get_projects&is_completed={}", u8::from(c)),
    };
    paginate(&projects, "projects", &link, ctx, |p| {
        render_project(p, &st.inst, &st.settings, ctx.base_url)
    })
}

fn get_user(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let id = path_id(ctx, "user_id", texts::INVALID_USER)?;
    if !ctx.caller.is_admin && id != ctx.caller.id {
        return Err(err(403, texts::NOT_ADMIN));
    }
    let u = st
        .inst
        .users
        .get(&id)
        .ok_or_else(|| bad(texts::INVALID_USER))?;
    Ok(Some(render_user(u, &st.inst, &st.settings)))
}

fn get_user_by_email(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let email = ctx
        .route
        .params
        .get("email")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("Field :email is a required field."))?;
    let user = st.inst.user_by_email(email);
    if !ctx.caller.is_admin && user.is_none_or(|u| u.id != ctx.caller.id) {
        return Err(err(403, texts::NOT_ADMIN));
    }
    let u = user.ok_or_else(|| bad(texts::INVALID_EMAIL))?;
    Ok(Some(render_user(u, &st.inst, &st.settings)))
}

fn get_users(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let settings = &st.settings;
    if ctx.route.ids.first().is_none_or(String::is_empty) {
        if !ctx.caller.is_admin {
            return Err(err(403, texts::NOT_ADMIN_GET_USERS));
        }
        let ids = st.inst.user_ids();
        let render = |id: &u64| {
            st.inst
                .users
                .get(id)
                .map_or(Value::Null, |u| render_user(u, &st.inst, settings))
        };
        if settings.users_pagination == UsersPagination::Array {
            return Ok(Some(Value::Array(ids.iter().map(render).collect())));
        }
        return paginate(ids, "users", "get_users", ctx, render);
    }
    let project = project_for(st, ctx)?;
    // Active users whose effective project role is not "No Access", by id.
    let rows: Vec<(&User, u64)> = st
        .inst
        .project_members(project.id, groups_exist(settings))
        .into_iter()
        .filter_map(|(id, role)| st.inst.users.get(&id).map(|u| (u, role)))
        .collect();
    let render = |(u, role_id): &(&User, u64)| {
        let mut v = render_user(u, &st.inst, settings);
        if let Value::Object(m) = &mut v
            && settings.testrail_version.at_least(6, 4)
        {
            m.insert("role_id".into(), json!(role_id));
            m.insert("role".into(), json!(st.inst.project_role_name(*role_id)));
        }
        v
    };
    if settings.users_pagination == UsersPagination::Array {
        return Ok(Some(Value::Array(rows.iter().map(render).collect())));
    }
    let link = format!("get_users/{}", project.id);
    paginate(&rows, "users", &link, ctx, render)
}

/// Parses a `limit`/`offset` parameter.
fn int_param(ctx: &Ctx<'_>, name: &str) -> Result<Option<i64>, ApiError> {
    match ctx.route.params.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad(format!("Field :{name} is not a valid integer."))),
    }
}

/// The bulk envelope: at most 250 items from `offset`, with `_links` to the neighbours.
fn paginate<T>(
    items: &[T],
    key: &str,
    link_route: &str,
    ctx: &Ctx<'_>,
    render: impl Fn(&T) -> Value,
) -> Res {
    let limit = int_param(ctx, "limit")?.unwrap_or(250);
    if limit < 1 {
        return Err(bad("Field :limit is too small (1 at least)."));
    }
    let limit = limit.min(250) as usize;
    let offset = int_param(ctx, "offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(bad("Field :offset is too small (0 at least)."));
    }
    let mut offset = offset as usize;
    if ctx.repeat && offset > 0 {
        // The fault: the previous page again instead of this one.
        offset = offset.saturating_sub(limit);
    }
    let page: Vec<Value> = items.iter().skip(offset).take(limit).map(render).collect();
    let next = (offset + limit < items.len()).then(|| {
        format!(
            "/api/v2/{link_route}&limit={limit}&offset={}",
            offset + limit
        )
    });
    let prev = (offset > 0).then(|| {
        format!(
            "/api/v2/{link_route}&limit={limit}&offset={}",
            offset.saturating_sub(limit)
        )
    });
    let mut m = Map::new();
    m.insert("offset".into(), json!(offset));
    m.insert("limit".into(), json!(limit));
    m.insert("size".into(), json!(page.len()));
    m.insert("_links".into(), json!({ "next": next, "prev": prev }));
    m.insert(key.into(), Value::Array(page));
    Ok(Some(Value::Object(m)))
}

// ---- field parsing for add/update bodies ---------------------------------------------------

fn opt<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn field_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match opt(body, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(_) => Err(bad(format!("Field :{key} is not a valid boolean."))),
    }
}

fn field_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match opt(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("Field :{key} is not a valid string."))),
    }
}

fn field_id_list(
    body: &Map<String, Value>,
    key: &str,
    invalid: &str,
) -> Result<Option<Vec<u64>>, ApiError> {
    match opt(body, key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().ok_or_else(|| bad(invalid)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(format!("Field :{key} is not a valid array."))),
    }
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
        && email.len() <= 250
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        Err(bad(texts::NAME_REQUIRED))
    } else if name.chars().count() > 250 {
        Err(bad("Field :name is too long (250 characters at most)."))
    } else {
        Ok(())
    }
}

/// Fields shared by add_user and update_user, validated against the instance.
#[derive(Default)]
struct UserFields {
    name: Option<String>,
    email: Option<String>,
    is_active: Option<bool>,
    is_admin: Option<bool>,
    role_id: Option<u64>,
    email_notifications: Option<bool>,
    mfa_required: Option<bool>,
    sso_enabled: Option<bool>,
    assigned_projects: Option<Vec<u64>>,
    group_ids: Option<Vec<u64>>,
}

fn parse_user_fields(
    inst: &Instance,
    settings: &Settings,
    body: &Map<String, Value>,
    self_id: Option<u64>,
) -> Result<UserFields, ApiError> {
    let name = field_string(body, "name")?;
    if let Some(n) = &name {
        check_name(n)?;
    }
    let email = field_string(body, "email")?.map(|e| e.trim().to_string());
    if let Some(e) = &email {
        if e.is_empty() {
            return Err(bad("Field :email is a required field."));
        }
        if !valid_email(e) {
            return Err(bad(texts::INVALID_EMAIL));
        }
        if settings.unique_emails && inst.user_by_email(e).is_some_and(|u| Some(u.id) != self_id) {
            return Err(bad(texts::EMAIL_IN_USE));
        }
    }
    let role_id = match opt(body, "role_id") {
        None => None,
        Some(v) => {
            let id = v
                .as_u64()
                .filter(|id| inst.role(*id).is_some())
                .ok_or_else(|| bad(texts::INVALID_ROLE))?;
            Some(id)
        }
    };
    let group_ids = field_id_list(body, "group_ids", "Field :group_ids is not a valid group.")?;
    if let Some(ids) = &group_ids
        && ids.iter().any(|g| !inst.groups.contains_key(g))
    {
        return Err(bad("Field :group_ids is not a valid group."));
    }
    let enterprise = settings.edition == Edition::Enterprise;
    let assigned_projects = if enterprise {
        let ids = field_id_list(
            body,
            "assigned_projects",
            "Field :assigned_projects is not a valid project.",
        )?;
        if let Some(ids) = &ids
            && ids.iter().any(|p| !inst.projects.contains_key(p))
        {
            return Err(bad("Field :assigned_projects is not a valid project."));
        }
        ids
    } else {
        None
    };
    Ok(UserFields {
        name,
        email,
        is_active: field_bool(body, "is_active")?,
        is_admin: field_bool(body, "is_admin")?,
        role_id,
        email_notifications: field_bool(body, "email_notifications")?,
        mfa_required: field_bool(body, "mfa_required")?,
        sso_enabled: if enterprise {
            field_bool(body, "sso_enabled")?
        } else {
            None
        },
        assigned_projects,
        group_ids,
    })
}

fn add_user(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    require_admin(ctx)?;
    if field_string(ctx.body, "name")?.is_none() {
        return Err(bad(texts::NAME_REQUIRED));
    }
    if field_string(ctx.body, "email")?.is_none() {
        return Err(bad("Field :email is a required field."));
    }
    let f = parse_user_fields(&st.inst, &st.settings, ctx.body, None)?;
    let user = User {
        id: 0,
        name: f.name.unwrap_or_default(),
        email: f.email.unwrap_or_default(),
        is_active: f.is_active.unwrap_or(st.settings.add_user_active_default),
        is_admin: f.is_admin.unwrap_or(false),
        role_id: f.role_id.unwrap_or_else(|| st.inst.default_role_id()),
        email_notifications: f.email_notifications.unwrap_or(true),
        mfa_required: f.mfa_required.unwrap_or(false),
        sso_enabled: f.sso_enabled.unwrap_or(false),
        assigned_projects: f.assigned_projects.unwrap_or_default(),
        group_ids: f.group_ids.unwrap_or_default().into_iter().collect(),
        api_keys: Vec::new(),
        password: None,
    };
    let id = st.inst.insert_user(user);
    let u = st
        .inst
        .users
        .get(&id)
        .ok_or_else(|| err(500, texts::SERVER_ERROR))?;
    Ok(Some(render_user(u, &st.inst, &st.settings)))
}

fn update_user(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    require_admin(ctx)?;
    let id = path_id(ctx, "user_id", texts::INVALID_USER)?;
    if !st.inst.users.contains_key(&id) {
        return Err(bad(texts::INVALID_USER));
    }
    let f = parse_user_fields(&st.inst, &st.settings, ctx.body, Some(id))?;
    if let Some(groups) = &f.group_ids {
        let set: BTreeSet<u64> = groups.iter().copied().collect();
        st.inst.set_user_groups(id, &set);
    }
    let u = st
        .inst
        .users
        .get_mut(&id)
        .ok_or_else(|| bad(texts::INVALID_USER))?;
    if let Some(v) = f.name {
        u.name = v;
    }
    if let Some(v) = f.email {
        u.email = v;
    }
    if let Some(v) = f.is_active {
        u.is_active = v;
    }
    if let Some(v) = f.is_admin {
        u.is_admin = v;
    }
    if let Some(v) = f.role_id {
        u.role_id = v;
    }
    if let Some(v) = f.email_notifications {
        u.email_notifications = v;
    }
    if let Some(v) = f.mfa_required {
        u.mfa_required = v;
    }
    if let Some(v) = f.sso_enabled {
        u.sso_enabled = v;
    }
    if let Some(v) = f.assigned_projects {
        u.assigned_projects = v;
    }
    let u = st
        .inst
        .users
        .get(&id)
        .ok_or_else(|| bad(texts::INVALID_USER))?;
    Ok(Some(render_user(u, &st.inst, &st.settings)))
}

fn member_ids(inst: &Instance, body: &Map<String, Value>) -> Result<Option<Vec<u64>>, ApiError> {
    let ids = field_id_list(body, "user_ids", "Field :user_ids is not a valid user.")?;
    if let Some(ids) = &ids
        && ids.iter().any(|u| !inst.users.contains_key(u))
    {
        return Err(bad("Field :user_ids is not a valid user."));
    }
    Ok(ids)
}

fn add_group(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    require_admin(ctx)?;
    let name = field_string(ctx.body, "name")?.ok_or_else(|| bad(texts::NAME_REQUIRED))?;
    check_name(&name)?;
    let members = member_ids(&st.inst, ctx.body)?.unwrap_or_default();
    let id = st.inst.insert_group(name, &members);
    let g = st
        .inst
        .groups
        .get(&id)
        .ok_or_else(|| err(500, texts::SERVER_ERROR))?;
    Ok(Some(render_group(g)))
}

fn update_group(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    require_admin(ctx)?;
    let id = path_id(ctx, "group_id", texts::INVALID_GROUP)?;
    if !st.inst.groups.contains_key(&id) {
        return Err(bad(texts::INVALID_GROUP));
    }
    let name = field_string(ctx.body, "name")?;
    if let Some(n) = &name {
        check_name(n)?;
    }
    let members = member_ids(&st.inst, ctx.body)?;
    if let Some(members) = members {
        st.inst.set_group_members(id, &members);
    }
    let g = st
        .inst
        .groups
        .get_mut(&id)
        .ok_or_else(|| bad(texts::INVALID_GROUP))?;
    if let Some(n) = name {
        g.name = n;
    }
    Ok(Some(render_group(g)))
}

// ---- projects -------------------------------------------------------------------------------

/// A project role id in a body: 0 ("the global role") or a role valid in a project.
fn project_role_id(inst: &Instance, v: &Value, invalid: &str) -> Result<u64, ApiError> {
    v.as_u64()
        .filter(|r| *r == GLOBAL_ROLE || inst.project_role(*r).is_some())
        .ok_or_else(|| bad(invalid))
}

/// `users` / `groups` of an `update_project` body: `[{<id_key> (or "id"), role_id}]`, where a
/// role of 0 is "the global role" and null clears the entry.
fn role_entries(
    inst: &Instance,
    body: &Map<String, Value>,
    key: &str,
    id_key: &str,
    exists: impl Fn(u64) -> bool,
    invalid: &str,
) -> Result<Vec<(u64, Option<u64>)>, ApiError> {
    let items = match body.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad(format!("Field :{key} is not a valid array."))),
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(entry) = item else {
                return Err(bad(invalid));
            };
            let id = entry
                .get(id_key)
                .or_else(|| entry.get("id"))
                .and_then(Value::as_u64)
                .filter(|id| exists(*id))
                .ok_or_else(|| bad(invalid))?;
            let role = match entry.get("role_id") {
                None => return Err(bad(texts::ROLE_REQUIRED)),
                Some(Value::Null) => None,
                Some(v) => Some(project_role_id(inst, v, texts::INVALID_ROLE)?),
            };
            Ok((id, role))
        })
        .collect()
}

/// Validates an `update_project` body against the instance; nothing changes here. Access fields
/// are read only when `with_access` (TestRail 7.3+), `groups` only when `with_groups` (7.5+);
/// otherwise they are ignored like any unknown field.
pub(crate) fn parse_project_patch(
    inst: &Instance,
    body: &Map<String, Value>,
    with_access: bool,
    with_groups: bool,
) -> Result<ProjectPatch, ApiError> {
    let name = field_string(body, "name")?;
    if let Some(n) = &name {
        check_name(n)?;
    }
    let mut patch = ProjectPatch {
        name,
        announcement: field_string(body, "announcement")?,
        show_announcement: field_bool(body, "show_announcement")?,
        is_completed: field_bool(body, "is_completed")?,
        ..ProjectPatch::default()
    };
    if with_access {
        patch.default_role_id = opt(body, "default_role_id")
            .map(|v| project_role_id(inst, v, texts::INVALID_DEFAULT_ROLE))
            .transpose()?;
        patch.users = role_entries(
            inst,
            body,
            "users",
            "user_id",
            |id| inst.users.contains_key(&id),
            texts::INVALID_PROJECT_USERS,
        )?;
        if with_groups {
            patch.groups = role_entries(
                inst,
                body,
                "groups",
                "group_id",
                |id| inst.groups.contains_key(&id),
                texts::INVALID_PROJECT_GROUPS,
            )?;
        }
    }
    Ok(patch)
}

fn update_project(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    require_admin(ctx)?;
    let id = path_id(ctx, "project_id", texts::INVALID_PROJECT)?;
    if !st.inst.projects.contains_key(&id) {
        return Err(bad(texts::INVALID_PROJECT));
    }
    let v = st.settings.testrail_version;
    let patch = parse_project_patch(
        &st.inst,
        ctx.body,
        v.at_least(7, 3),
        groups_exist(&st.settings),
    )?;
    st.inst.update_project(id, &patch, ctx.now);
    let p = st
        .inst
        .projects
        .get(&id)
        .ok_or_else(|| bad(texts::INVALID_PROJECT))?;
    Ok(Some(render_project(
        p,
        &st.inst,
        &st.settings,
        ctx.base_url,
    )))
}

// ---- rendering ------------------------------------------------------------------------------

/// A user in `get_user` format, with the fields the edition and version have.
pub(crate) fn render_user(u: &User, inst: &Instance, settings: &Settings) -> Value {
    let v: Version = settings.testrail_version;
    let mut m = Map::new();
    m.insert("id".into(), json!(u.id));
    m.insert("name".into(), json!(u.name));
    m.insert("email".into(), json!(u.email));
    m.insert("is_active".into(), json!(u.is_active));
    if v.at_least(6, 4) {
        m.insert("role_id".into(), json!(u.role_id));
        m.insert(
            "role".into(),
            json!(inst.role(u.role_id).map(|r| r.name.clone())),
        );
    }
    if v.at_least(7, 3) {
        m.insert("email_notifications".into(), json!(u.email_notifications));
        m.insert("is_admin".into(), json!(u.is_admin));
        m.insert("group_ids".into(), json!(u.group_ids));
        m.insert("mfa_required".into(), json!(u.mfa_required));
        if settings.edition == Edition::Enterprise {
            m.insert("sso_enabled".into(), json!(u.sso_enabled));
            m.insert("assigned_projects".into(), json!(u.assigned_projects));
        }
    }
    Value::Object(m)
}

fn render_group(g: &Group) -> Value {
    json!({ "id": g.id, "name": g.name, "user_ids": g.user_ids })
}

fn render_role(r: &&Role, settings: &Settings) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("name".into(), json!(r.name));
    m.insert("is_default".into(), json!(r.is_default));
    if settings.edition == Edition::Enterprise {
        m.insert("is_project_admin".into(), json!(r.is_project_admin));
    }
    Value::Object(m)
}

/// A project as `get_project` answers, with the access fields the version and edition have.
pub(crate) fn render_project(
    p: &Project,
    inst: &Instance,
    settings: &Settings,
    base_url: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("name".into(), json!(p.name));
    m.insert("announcement".into(), json!(p.announcement));
    m.insert("show_announcement".into(), json!(p.show_announcement));
    m.insert("is_completed".into(), json!(p.is_completed));
    m.insert("completed_on".into(), json!(p.completed_on));
    m.insert("suite_mode".into(), json!(p.suite_mode));
    if let Some(base) = base_url {
        m.insert(
            "url".into(),
            json!(format!("{base}/index.php?/projects/overview/{}", p.id)),
        );
    }
    if settings.testrail_version.at_least(7, 3) {
        m.insert("default_role_id".into(), json!(p.default_role_id));
        m.insert(
            "default_role".into(),
            json!(inst.project_role_name(p.default_role_id)),
        );
        let groups: Vec<Value> = if groups_exist(settings) {
            p.group_roles
                .iter()
                .map(|(id, role_id)| {
                    json!({ "id": id, "role_id": role_id, "role": inst.project_role_name(*role_id) })
                })
                .collect()
        } else {
            Vec::new()
        };
        m.insert("groups".into(), Value::Array(groups));
        if settings.edition == Edition::Enterprise {
            let users: Vec<Value> = p
                .user_roles
                .iter()
                .filter_map(|(id, role_id)| inst.users.get(id).map(|u| (u, role_id)))
                .map(|(u, role_id)| {
                    json!({
                        "id": u.id,
                        "global_role_id": u.role_id,
                        "global_role": inst.role(u.role_id).map(|r| r.name.clone()),
                        "project_role_id": role_id,
                        "project_role": inst.project_role_name(*role_id),
                    })
                })
                .collect();
            m.insert("users".into(), Value::Array(users));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_on_the_raw_query_string() {
        let r = parse_route("/api/v2/get_users/5&limit=250&offset=0").expect("route");
        assert_eq!(r.method, "get_users");
        assert_eq!(r.ids, vec!["5"]);
        assert_eq!(r.params.get("limit").map(String::as_str), Some("250"));
        assert_eq!(r.params.get("offset").map(String::as_str), Some("0"));
        assert!(parse_route("api/v2/get_users").is_none());
        assert!(parse_route("/api/v1/get_users").is_none());
        assert!(parse_route("/api/v2/").is_none());
    }

    #[test]
    fn decodes_parameters_like_php() {
        let r = parse_route("/api/v2/get_user_by_email&email=a%2Bb%40x.io").expect("route");
        assert_eq!(r.params["email"], "a+b@x.io");
        // A raw plus is a space, as PHP decodes it.
        let r = parse_route("/api/v2/get_user_by_email&email=a+b@x.io").expect("route");
        assert_eq!(r.params["email"], "a b@x.io");
    }

    #[test]
    fn email_validation() {
        assert!(valid_email("jane.doe+qa@example.com"));
        assert!(!valid_email("jane"));
        assert!(!valid_email("jane@"));
        assert!(!valid_email("jane@localhost"));
        assert!(!valid_email("ja ne@example.com"));
        assert!(!valid_email("F15238729834696"));
    }
}

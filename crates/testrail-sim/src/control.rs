//! The control API under `/__sim/`: outside TestRail's namespace, never rate-limited, faulted
//! or counted.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::artefacts::{render_result, result_status};
use crate::api::{parse_project_patch, render_user};
use crate::artefacts::{Case, NewResult, Plan, PlanEntry, Run};
use crate::model::{
    Edition, Faults, GLOBAL_ROLE, NO_ACCESS_ROLE_ID, Project, Settings, User, Version,
};
use crate::sim::Sim;

pub(crate) fn router() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/__sim/reset", post(reset))
        .route("/__sim/settings", get(get_settings).put(put_settings))
        .route("/__sim/faults", get(get_faults).put(put_faults))
        .route("/__sim/stats", get(stats))
        .route("/__sim/users", get(list_users).post(create_user))
        .route("/__sim/groups", get(list_groups))
        .route("/__sim/projects", get(list_projects).post(create_project))
        .route("/__sim/projects/{id}", patch(patch_project))
        .route("/__sim/results", post(create_result))
        .route("/__sim/runs", post(create_run))
        .route("/__sim/runs/{id}", patch(patch_run))
        .route("/__sim/artefacts/summary", get(artefacts_summary))
}

fn control_error(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": message.into() })),
    )
        .into_response()
}

async fn reset(State(sim): State<Sim>) -> Json<Value> {
    sim.reset();
    Json(json!({ "ok": true }))
}

async fn get_settings(State(sim): State<Sim>) -> Json<Settings> {
    Json(sim.settings())
}

/// Merges the given keys into the current settings; unknown keys or bad values change nothing.
async fn put_settings(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Value::Object(m),
        _ => return control_error("settings must be a JSON object"),
    };
    let current = match serde_json::to_value(sim.settings()) {
        Ok(Value::Object(m)) => m,
        _ => return control_error("settings could not be read"),
    };
    let mut merged = current.clone();
    if let Value::Object(p) = patch {
        for (k, mut v) in p {
            if !current.contains_key(&k) {
                return control_error(format!("unknown setting {k:?}"));
            }
            if k == "rate_limit_per_minute" && v.as_u64() == Some(0) {
                v = Value::Null;
            }
            merged.insert(k, v);
        }
    }
    match serde_json::from_value::<Settings>(Value::Object(merged)) {
        Ok(s) => {
            sim.set_settings(s.clone());
            Json(s).into_response()
        }
        Err(e) => control_error(format!("invalid settings: {e}")),
    }
}

async fn get_faults(State(sim): State<Sim>) -> Json<Faults> {
    Json(sim.faults())
}

async fn put_faults(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return control_error(format!("invalid faults: {e}")),
    };
    for (name, p) in [
        ("error_rate", faults.error_rate),
        ("drop_rate", faults.drop_rate),
        ("truncate_rate", faults.truncate_rate),
        ("repeat_page_rate", faults.repeat_page_rate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return control_error(format!("{name} must be between 0 and 1"));
        }
    }
    sim.set_faults(faults.clone());
    Json(faults).into_response()
}

async fn stats(State(sim): State<Sim>) -> Json<Value> {
    Json(json!(sim.stats()))
}

/// Every user in the fullest shape (latest version, Enterprise fields), for tests.
fn full_settings() -> Settings {
    Settings {
        edition: Edition::Enterprise,
        testrail_version: Version::LATEST,
        ..Settings::default()
    }
}

async fn list_users(State(sim): State<Sim>) -> Json<Value> {
    let inst = sim.snapshot();
    let full = full_settings();
    Json(Value::Array(
        inst.users
            .values()
            .map(|u| render_user(u, &inst, &full))
            .collect(),
    ))
}

async fn list_groups(State(sim): State<Sim>) -> Json<Value> {
    let inst = sim.snapshot();
    Json(Value::Array(
        inst.groups
            .values()
            .map(|g| json!({ "id": g.id, "name": g.name, "user_ids": g.user_ids }))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: Option<String>,
    email: Option<String>,
    #[serde(default = "yes")]
    is_active: bool,
    #[serde(default)]
    is_admin: bool,
    role_id: Option<u64>,
    #[serde(default)]
    group_ids: Vec<u64>,
    api_key: Option<String>,
    #[serde(default)]
    api_keys: Vec<String>,
    password: Option<String>,
    /// A user as TestRail leaves it after "Forget this user".
    #[serde(default)]
    forgotten: bool,
    #[serde(default = "yes")]
    email_notifications: bool,
    #[serde(default)]
    mfa_required: bool,
    #[serde(default)]
    sso_enabled: bool,
    #[serde(default)]
    assigned_projects: Vec<u64>,
}

fn yes() -> bool {
    true
}

async fn create_user(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let new: NewUser = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return control_error(format!("invalid user: {e}")),
    };
    let result = sim.with_instance(|inst| {
        let (name, email, is_active) = if new.forgotten {
            let placeholder = format!("F{:014}", 10_000_000_000_000u64 + inst.users.len() as u64);
            (placeholder.clone(), placeholder, false)
        } else {
            let email = new
                .email
                .clone()
                .filter(|e| !e.trim().is_empty())
                .ok_or("email is required")?;
            if inst.user_by_email(&email).is_some() {
                return Err("a user with this email already exists");
            }
            let name = new.name.clone().unwrap_or_else(|| email.clone());
            (name, email, new.is_active)
        };
        let role_id = new.role_id.unwrap_or_else(|| inst.default_role_id());
        if inst.role(role_id).is_none() {
            return Err("unknown role_id");
        }
        if new.group_ids.iter().any(|g| !inst.groups.contains_key(g)) {
            return Err("unknown group id");
        }
        let mut api_keys = new.api_keys.clone();
        api_keys.extend(new.api_key.clone());
        let id = inst.insert_user(User {
            id: 0,
            name,
            email,
            is_active,
            is_admin: new.is_admin,
            role_id,
            email_notifications: new.email_notifications,
            mfa_required: new.mfa_required,
            sso_enabled: new.sso_enabled,
            assigned_projects: new.assigned_projects.clone(),
            group_ids: new.group_ids.iter().copied().collect::<BTreeSet<_>>(),
            api_keys,
            password: new.password.clone(),
        });
        Ok(id)
    });
    match result {
        Ok(id) => {
            let inst = sim.snapshot();
            match inst.users.get(&id) {
                Some(u) => (
                    StatusCode::CREATED,
                    Json(render_user(u, &inst, &full_settings())),
                )
                    .into_response(),
                None => control_error("user vanished"),
            }
        }
        Err(e) => control_error(e),
    }
}

/// A project with its raw access, as the simulator stores it.
fn raw_project(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "announcement": p.announcement,
        "show_announcement": p.show_announcement,
        "is_completed": p.is_completed,
        "completed_on": p.completed_on,
        "suite_mode": p.suite_mode,
        "default_role_id": p.default_role_id,
        "user_roles": p.user_roles.iter()
            .map(|(id, r)| json!({ "user_id": id, "role_id": r }))
            .collect::<Vec<_>>(),
        "group_roles": p.group_roles.iter()
            .map(|(id, r)| json!({ "group_id": id, "role_id": r }))
            .collect::<Vec<_>>(),
    })
}

async fn list_projects(State(sim): State<Sim>) -> Json<Value> {
    let inst = sim.snapshot();
    Json(Value::Array(
        inst.projects.values().map(raw_project).collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    is_completed: bool,
    #[serde(default)]
    users: Vec<NewUserRole>,
    /// Default: "No Access", so only the listed users and groups (and administrators) reach it.
    default_role_id: Option<u64>,
    #[serde(default)]
    groups: Vec<NewGroupRole>,
    announcement: Option<String>,
    #[serde(default)]
    show_announcement: bool,
    suite_mode: Option<u8>,
}

/// A user's project role; a missing or null `role_id` is the user's global role (0).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserRole {
    #[serde(alias = "id")]
    user_id: u64,
    role_id: Option<u64>,
}

/// A group's project role; a missing or null `role_id` is each member's global role (0).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroupRole {
    #[serde(alias = "id")]
    group_id: u64,
    role_id: Option<u64>,
}

async fn create_project(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let new: NewProject = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return control_error(format!("invalid project: {e}")),
    };
    let now = i64::try_from(sim.clock().now().as_secs()).unwrap_or(i64::MAX);
    let result = sim.with_instance(|inst| {
        if new.name.trim().is_empty() {
            return Err("name is required".to_string());
        }
        let valid_role = |r: u64| r == GLOBAL_ROLE || inst.project_role(r).is_some();
        let default_role_id = new.default_role_id.unwrap_or(NO_ACCESS_ROLE_ID);
        if !valid_role(default_role_id) {
            return Err(format!("unknown role {default_role_id}"));
        }
        let mut user_roles = BTreeMap::new();
        for a in &new.users {
            if !inst.users.contains_key(&a.user_id) {
                return Err(format!("unknown user {}", a.user_id));
            }
            let role = a.role_id.unwrap_or(GLOBAL_ROLE);
            if !valid_role(role) {
                return Err(format!("unknown role {role}"));
            }
            user_roles.insert(a.user_id, role);
        }
        let mut group_roles = BTreeMap::new();
        for g in &new.groups {
            if !inst.groups.contains_key(&g.group_id) {
                return Err(format!("unknown group {}", g.group_id));
            }
            let role = g.role_id.unwrap_or(GLOBAL_ROLE);
            if !valid_role(role) {
                return Err(format!("unknown role {role}"));
            }
            group_roles.insert(g.group_id, role);
        }
        let id = inst.insert_project(Project {
            id: 0,
            name: new.name.clone(),
            announcement: new.announcement.clone(),
            show_announcement: new.show_announcement,
            is_completed: new.is_completed,
            completed_on: new.is_completed.then_some(now),
            suite_mode: new.suite_mode.unwrap_or(1),
            default_role_id,
            user_roles,
            group_roles,
        });
        Ok((id, default_role_id))
    });
    match result {
        Ok((id, default_role_id)) => (
            StatusCode::CREATED,
            Json(json!({
                "id": id,
                "name": new.name,
                "user_ids": new.users.iter().map(|a| a.user_id).collect::<Vec<_>>(),
                "default_role_id": default_role_id,
            })),
        )
            .into_response(),
        Err(e) => control_error(e),
    }
}

/// Changes a project the way an administrator would, with `update_project`'s body and
/// semantics (every field, whatever the version), without a counted API request.
async fn patch_project(
    State(sim): State<Sim>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Response {
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => return control_error("the body must be a JSON object"),
    };
    let now = i64::try_from(sim.clock().now().as_secs()).unwrap_or(i64::MAX);
    let result = sim.with_instance(|inst| {
        if !inst.projects.contains_key(&id) {
            return Err((StatusCode::NOT_FOUND, format!("unknown project {id}")));
        }
        let patch = parse_project_patch(inst, &body, true, true)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.message))?;
        inst.update_project(id, &patch, now);
        inst.projects
            .get(&id)
            .map(raw_project)
            .ok_or((StatusCode::NOT_FOUND, format!("unknown project {id}")))
    });
    match result {
        Ok(v) => Json(v).into_response(),
        Err((status, e)) => (status, Json(json!({ "error": e }))).into_response(),
    }
}

// ---- artefacts ------------------------------------------------------------------------------

fn now_secs(sim: &Sim) -> i64 {
    i64::try_from(sim.clock().now().as_secs()).unwrap_or(i64::MAX)
}

/// A result added as `user_id` at `created_on` (default: now). Unlike `add_results`, a
/// completed run is accepted (to build history) and a result may carry any status but 3.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSimResult {
    run_id: u64,
    test_id: u64,
    user_id: u64,
    created_on: Option<i64>,
    status_id: Option<Value>,
    comment: Option<String>,
    assignedto_id: Option<u64>,
}

async fn create_result(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let new: NewSimResult = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return control_error(format!("invalid result: {e}")),
    };
    let now = new.created_on.unwrap_or_else(|| now_secs(&sim));
    let status_id = match new.status_id.as_ref().map(result_status).transpose() {
        Ok(s) => s,
        Err(e) => return control_error(e.message),
    };
    let result = sim.with_instance(|inst| {
        if !inst.users.contains_key(&new.user_id) {
            return Err(format!("unknown user {}", new.user_id));
        }
        if new
            .assignedto_id
            .is_some_and(|a| !inst.users.contains_key(&a))
        {
            return Err("unknown assignedto_id".to_string());
        }
        if inst.artefacts.run(new.run_id).is_none() {
            return Err(format!("unknown run {}", new.run_id));
        }
        let r = NewResult {
            test_id: new.test_id,
            status_id,
            assignedto_id: new.assignedto_id,
            comment: new.comment.clone(),
        };
        let id = inst
            .artefacts
            .add_result(new.run_id, &r, new.user_id, now)
            .ok_or_else(|| format!("test {} is not in run {}", new.test_id, new.run_id))?;
        inst.artefacts
            .result(id)
            .map(render_result)
            .ok_or_else(|| "result vanished".to_string())
    });
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => control_error(e),
    }
}

/// A run created in a project as `user_id` at `created_on` (default: now), with one test per
/// case of the suite (the project's first suite by default; created when the project has
/// none). `tests: N` takes the first N cases, creating cases (by the same user at the same
/// time) when the suite has fewer. `plan: "<name>"` puts the run into a new plan of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSimRun {
    project_id: u64,
    user_id: u64,
    suite_id: Option<u64>,
    name: Option<String>,
    created_on: Option<i64>,
    assignedto_id: Option<u64>,
    tests: Option<usize>,
    /// Every test assigned to this user.
    tests_assignedto_id: Option<u64>,
    plan: Option<String>,
}

async fn create_run(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let new: NewSimRun = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return control_error(format!("invalid run: {e}")),
    };
    let now = new.created_on.unwrap_or_else(|| now_secs(&sim));
    let result = sim.with_instance(|inst| {
        if !inst.projects.contains_key(&new.project_id) {
            return Err(format!("unknown project {}", new.project_id));
        }
        for u in [
            Some(new.user_id),
            new.assignedto_id,
            new.tests_assignedto_id,
        ]
        .into_iter()
        .flatten()
        {
            if !inst.users.contains_key(&u) {
                return Err(format!("unknown user {u}"));
            }
        }
        let a = &mut inst.artefacts;
        let suite_id = match new.suite_id {
            Some(s) => {
                if a.suite(s).is_none_or(|s| s.project_id != new.project_id) {
                    return Err(format!("unknown suite {s} in project {}", new.project_id));
                }
                s
            }
            None => match a.project_suites(new.project_id).first() {
                Some(s) => *s,
                None => a.insert_suite(new.project_id, "Master".into(), true),
            },
        };
        let have = a.suite(suite_id).map_or(0, |s| s.case_ids.len());
        let want = new.tests.unwrap_or(if have == 0 { 10 } else { have });
        for i in have..want {
            a.insert_case(Case {
                id: 0,
                suite_id,
                section_id: None,
                title: format!("Case {}", i + 1),
                created_by: new.user_id,
                created_on: now,
                updated_by: new.user_id,
                updated_on: now,
            });
        }
        let cases: Vec<(u64, Option<u64>)> = a
            .suite(suite_id)
            .map(|s| {
                s.case_ids
                    .iter()
                    .take(want)
                    .map(|c| (*c, new.tests_assignedto_id))
                    .collect()
            })
            .unwrap_or_default();
        let name = new
            .name
            .clone()
            .unwrap_or_else(|| format!("Run {}", a.runs.len() + 1));
        let id = a.insert_run(
            Run {
                id: 0,
                project_id: new.project_id,
                suite_id,
                name: name.clone(),
                description: None,
                created_by: new.user_id,
                created_on: now,
                updated_on: now,
                assignedto_id: new.assignedto_id,
                is_completed: false,
                completed_on: None,
                plan_id: None,
                entry_id: None,
                test_ids: Vec::new(),
                result_ids: Vec::new(),
            },
            &cases,
        );
        if let Some(plan_name) = &new.plan {
            let entry = format!("00000000-0000-4000-8000-{id:012x}");
            a.insert_plan(Plan {
                id: 0,
                project_id: new.project_id,
                name: plan_name.clone(),
                description: None,
                created_by: new.user_id,
                created_on: now,
                assignedto_id: new.assignedto_id,
                is_completed: false,
                completed_on: None,
                entries: vec![PlanEntry {
                    id: entry,
                    suite_id,
                    name,
                    run_ids: vec![id],
                }],
            });
        }
        Ok(raw_run(a.run(id)))
    });
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => control_error(e),
    }
}

/// A run as the simulator stores it, with its test ids.
fn raw_run(r: Option<&Run>) -> Value {
    r.map_or(Value::Null, |r| {
        json!({
            "id": r.id,
            "project_id": r.project_id,
            "suite_id": r.suite_id,
            "name": r.name,
            "created_by": r.created_by,
            "created_on": r.created_on,
            "updated_on": r.updated_on,
            "assignedto_id": r.assignedto_id,
            "is_completed": r.is_completed,
            "completed_on": r.completed_on,
            "plan_id": r.plan_id,
            "entry_id": r.entry_id,
            "test_ids": r.test_ids,
        })
    })
}

/// Completes or reopens a run (for a run in a plan: the whole plan and its runs), or changes
/// its assignee (`null` clears it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunPatch {
    is_completed: Option<bool>,
    completed_on: Option<i64>,
    #[serde(default, with = "double_option")]
    assignedto_id: Option<Option<u64>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }
}

async fn patch_run(
    State(sim): State<Sim>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Response {
    let p: RunPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return control_error(format!("invalid run change: {e}")),
    };
    let now = p.completed_on.unwrap_or_else(|| now_secs(&sim));
    let result = sim.with_instance(|inst| {
        if let Some(Some(a)) = p.assignedto_id
            && !inst.users.contains_key(&a)
        {
            return Err((StatusCode::BAD_REQUEST, format!("unknown user {a}")));
        }
        let a = &mut inst.artefacts;
        let Some(run) = a.run(id) else {
            return Err((StatusCode::NOT_FOUND, format!("unknown run {id}")));
        };
        let plan_id = run.plan_id;
        if let Some(done) = p.is_completed {
            let completed_on = done.then_some(now);
            let runs: Vec<u64> = match plan_id.and_then(|pid| a.plan_mut(pid)) {
                Some(plan) => {
                    plan.is_completed = done;
                    plan.completed_on = completed_on;
                    plan.entries
                        .iter()
                        .flat_map(|e| e.run_ids.iter().copied())
                        .collect()
                }
                None => vec![id],
            };
            for r in runs {
                if let Some(r) = a.run_mut(r) {
                    r.is_completed = done;
                    r.completed_on = completed_on;
                    r.updated_on = r.updated_on.max(now);
                }
            }
        }
        if let Some(assignee) = p.assignedto_id
            && let Some(r) = a.run_mut(id)
        {
            r.assignedto_id = assignee;
        }
        Ok(raw_run(a.run(id)))
    });
    match result {
        Ok(v) => Json(v).into_response(),
        Err((status, e)) => (status, Json(json!({ "error": e }))).into_response(),
    }
}

async fn artefacts_summary(State(sim): State<Sim>) -> Json<Value> {
    let st = sim.lock();
    let a = &st.inst.artefacts;
    Json(json!({
        "suites": a.suites.len(),
        "cases": a.cases.len(),
        "runs": a.runs.len(),
        "plan_runs": a.runs.iter().filter(|r| r.plan_id.is_some()).count(),
        "completed_runs": a.runs.iter().filter(|r| r.is_completed).count(),
        "plans": a.plans.len(),
        "completed_plans": a.plans.iter().filter(|p| p.is_completed).count(),
        "tests": a.tests.len(),
        "results": a.results.len(),
        "automation_user_id": a.automation_user,
        "automation_results": a.automation_user.map_or(0, |u| a.results.iter().filter(|r| r.created_by == u).count()),
    }))
}

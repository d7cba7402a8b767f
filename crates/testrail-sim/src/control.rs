//! The control API under `/__sim/`: outside TestRail's namespace, never rate-limited, faulted
//! or counted.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::render_user;
use crate::model::{Edition, Faults, Project, ProjectAccess, Settings, User, Version};
use crate::sim::Sim;

pub(crate) fn router() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/__sim/reset", post(reset))
        .route("/__sim/settings", get(get_settings).put(put_settings))
        .route("/__sim/faults", get(get_faults).put(put_faults))
        .route("/__sim/stats", get(stats))
        .route("/__sim/users", get(list_users).post(create_user))
        .route("/__sim/groups", get(list_groups))
        .route("/__sim/projects", post(create_project))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    is_completed: bool,
    #[serde(default)]
    users: Vec<NewAccess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccess {
    user_id: u64,
    role_id: Option<u64>,
}

async fn create_project(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let new: NewProject = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return control_error(format!("invalid project: {e}")),
    };
    let result = sim.with_instance(|inst| {
        for a in &new.users {
            if !inst.users.contains_key(&a.user_id) {
                return Err(format!("unknown user {}", a.user_id));
            }
            if let Some(r) = a.role_id
                && inst.role(r).is_none()
            {
                return Err(format!("unknown role {r}"));
            }
        }
        let id = inst.insert_project(Project {
            id: 0,
            name: new.name.clone(),
            announcement: None,
            is_completed: new.is_completed,
            suite_mode: 1,
            default_role_id: Some(inst.default_role_id()),
            access: new
                .users
                .iter()
                .map(|a| ProjectAccess {
                    user_id: a.user_id,
                    role_id: a.role_id,
                })
                .collect(),
        });
        Ok(id)
    });
    match result {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "name": new.name, "user_ids": new.users.iter().map(|a| a.user_id).collect::<Vec<_>>() })),
        )
            .into_response(),
        Err(e) => control_error(e),
    }
}

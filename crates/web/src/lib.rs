//! Accessrail's service: the JSON API under `/api/v1/` (bearer tokens), its OpenAPI document at
//! `/api/openapi.json`, `/healthz`, the server-rendered console (session cookie + CSRF), and
//! the scan scheduler. `serve` runs them in one process.

mod api;
mod auth;
mod error;
mod serve;
mod state;
mod ui;

pub use api::openapi_json;
pub use serve::{ServeConfig, bootstrap_admin_token, serve, spawn_scan};
pub use state::{App, AppState};

/// All routes: API, console, health.
pub fn router(state: std::sync::Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .merge(api::routes(state.clone()))
        .merge(ui::routes(state.clone()))
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .with_state(state)
}

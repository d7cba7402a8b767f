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
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers every answer carries: no framing (clickjacking), no MIME sniffing, no referrer
/// leaking URLs, and a content policy that allows only this origin (the console has no scripts).
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    resp
}

//! Accessrail's service: the JSON API under `/api/v1/` (bearer tokens), its OpenAPI document at
//! `/api/openapi.json`, `/healthz`, the server-rendered console (session cookie + CSRF), and
//! the scan scheduler. `serve` runs them in one process.

mod api;
mod api_evidence;
mod api_reviews;
mod auth;
mod error;
mod extract;
mod scim;
mod serve;
mod state;
mod ui;
mod ui_offboard;
mod ui_projects;
mod ui_reviews;
mod ui_scim;
mod ui_seats;
mod ui_users;

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

pub use api::openapi_json;
pub use auth::MAX_SESSIONS;
pub use serve::{ServeConfig, bootstrap_admin_token, queue_scan, serve};
pub use state::{App, AppState};

use auth::Transport;
use error::ApiError;

/// All routes: API, console, health. Under `/api/`, an unknown path or a wrong method is
/// answered in the API's JSON error envelope too.
pub fn router(state: std::sync::Arc<AppState>, cfg: &ServeConfig) -> axum::Router {
    let transport = Transport {
        https: cfg.is_https(),
    };
    axum::Router::new()
        .merge(api::routes(state.clone()))
        .merge(ui::routes(state.clone()))
        .merge(scim::routes(cfg.public_url.clone()))
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(not_found)
        // After every route: it applies to the routes present when it is called.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::reviewer_fence,
        ))
        .layer(axum::middleware::map_response_with_state(
            transport,
            security_headers,
        ))
        .layer(axum::Extension(transport))
        .with_state(state)
}

fn is_api(uri: &Uri) -> bool {
    let p = uri.path();
    p == "/api" || p.starts_with("/api/")
}

async fn not_found(uri: Uri) -> Response {
    if scim::is_scim(uri.path()) {
        return scim::not_found().await;
    }
    if is_api(&uri) {
        ApiError::not_found(format!(
            "no API path {} (see /api/openapi.json)",
            uri.path()
        ))
        .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    if scim::is_scim(uri.path()) {
        return scim::method_not_allowed();
    }
    if is_api(&uri) {
        ApiError::method_not_allowed().into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    }
}

/// Headers every answer carries: no framing (clickjacking), no MIME sniffing, no referrer
/// leaking URLs, and a content policy that allows only this origin (the console has no scripts).
/// Served over https (by its public URL), browsers are also told to use https only (HSTS).
async fn security_headers(
    axum::extract::State(transport): axum::extract::State<Transport>,
    mut resp: Response,
) -> Response {
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
    if transport.https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

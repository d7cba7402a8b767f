//! The web API suite (`api_suite`) on a temporary SQLite store, and the committed OpenAPI
//! document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_suite;
mod common;

use api_suite::Backend;
use serde_json::Value;

api_suite!(Backend::Sqlite);

#[test]
fn openapi_document_is_current() {
    let generated = accessrail_web::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("ACCESSRAIL_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: regenerate it with ACCESSRAIL_WRITE_OPENAPI=1 cargo test -p accessrail-web openapi"
    );
    let v: Value = serde_json::from_str(&generated).unwrap();
    for p in [
        "/api/v1/connections",
        "/api/v1/connections/{name}/accounts",
        "/api/v1/plans/{id}/apply",
        "/api/v1/audit",
    ] {
        assert!(v["paths"].get(p).is_some(), "{p}");
    }
}

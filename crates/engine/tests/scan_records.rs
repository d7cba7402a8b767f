//! Scans against a scripted TestRail whose answers the simulator never gives: unknown fields,
//! missing optional fields, and a record without an id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::scan::{self, Quiet};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, ConnectRequest, Engine, EngineError, SystemClock, Target};
use accessrail_store::{ScanStatus, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers TestRail routes from a table; `users` can be swapped between scans.
async fn scripted(users: Arc<Mutex<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let users = users.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or_default().to_string();
                let body = if line.contains("get_current_user") {
                    r#"{"id":1,"name":"Admin","email":"admin@example.com","is_active":true,"is_admin":true,"role_id":1,"role":"Lead"}"#.to_string()
                } else if line.contains("get_users") {
                    users.lock().unwrap().clone()
                } else if line.contains("get_groups") {
                    r#"{"offset":0,"limit":250,"size":0,"_links":{"next":null,"prev":null},"groups":[]}"#.to_string()
                } else if line.contains("get_roles") {
                    r#"{"offset":0,"limit":250,"size":1,"_links":{"next":null,"prev":null},"roles":[{"id":1,"name":"Lead","is_default":false}]}"#.to_string()
                } else if line.contains("get_projects") {
                    r#"{"offset":0,"limit":250,"size":0,"_links":{"next":null,"prev":null},"projects":[]}"#.to_string()
                } else {
                    r#"{"error":"Unknown method"}"#.to_string()
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn envelope(users: &str) -> String {
    format!(
        r#"{{"offset":0,"limit":250,"size":2,"_links":{{"next":null,"prev":null}},"users":[{users}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_for_odd_fields_and_a_failed_scan_for_a_record_without_id() {
    let users = Arc::new(Mutex::new(envelope(
        r#"{"id":1,"name":"Admin","email":"admin@example.com","is_active":true,"is_admin":true,"role_id":1,"role":"Lead"},
           {"id":2,"name":"No Email","is_active":true,"role_id":1,"favourite_colour":"teal"}"#,
    )));
    let base = scripted(users.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let engine = Engine::new(
        store,
        Keyring::load(dir.path()).unwrap(),
        dir.path().to_path_buf(),
        ClientOptions {
            retry_attempts: Some(1),
            ..ClientOptions::default()
        },
        Arc::new(SystemClock),
    );
    let (report, saved) = engine
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(base),
            email: "admin@example.com".into(),
            key: ApiKey::new("k").unwrap(),
            name: Some("odd".into()),
            replace: false,
            request_budget: None,
        })
        .await
        .unwrap();
    assert!(report.passed, "{report:?}");
    let conn = saved.unwrap();

    let ok = scan::scan(&engine, None, Arc::new(Quiet)).await.unwrap();
    assert_eq!(ok.users, 2);
    assert!(
        ok.warnings.iter().any(|w| w.contains("without `email`")),
        "{:?}",
        ok.warnings
    );
    assert!(
        ok.warnings
            .iter()
            .any(|w| w.contains("unknown field `favourite_colour`")),
        "{:?}",
        ok.warnings
    );
    let stored = engine.store().current_accounts(&conn.id).await.unwrap();
    assert_eq!(
        stored[1].fields.get("favourite_colour"),
        Some(serde_json::json!("teal")),
        "every field TestRail returns is kept"
    );

    // A record without an id fails the scan; the last good snapshot stays.
    *users.lock().unwrap() = envelope(
        r#"{"id":1,"name":"Admin","email":"admin@example.com","is_active":false},{"name":"Ghost"}"#,
    );
    let err = scan::scan(&engine, None, Arc::new(Quiet))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Upstream { .. }), "{err}");
    assert!(err.to_string().contains("users[1]"), "names where: {err}");
    assert_eq!(
        engine.store().current_accounts(&conn.id).await.unwrap(),
        stored
    );
    let scans = engine.store().scans(&conn.id).await.unwrap();
    assert_eq!(scans.last().unwrap().status, ScanStatus::Failed);
}

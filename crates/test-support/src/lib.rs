//! Accessrail's test helpers, shared by the test suites of several crates.
//!
//! [`fresh_postgres_url`] gives each caller a new, empty PostgreSQL database on a real server:
//! `ACCESSRAIL_TEST_DATABASE_URL` names one (`postgres://...`); without it the first call
//! starts a throwaway cluster with `scripts/pg-test-cluster.sh`, stopped and deleted when the
//! test process exits (even if it is killed).

// Test support: a failure to set up is a test failure, reported by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The URL of a new, uniquely named, empty database on the test server (see the crate docs).
pub async fn fresh_postgres_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // The process id and the start time keep databases apart across test processes sharing
    // one server (`ACCESSRAIL_TEST_DATABASE_URL`), the counter within a process.
    static STAMP: OnceLock<u64> = OnceLock::new();
    let stamp = STAMP.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let db = format!(
        "accessrail_test_{}_{stamp}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let admin = sqlx::PgPool::connect(&url_of("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    url_of(&db)
}

/// The server's URL, minus the database: `(base, query)`.
fn server() -> &'static (String, String) {
    static SERVER: OnceLock<(String, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url = match std::env::var("ACCESSRAIL_TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => start_cluster(),
        };
        // postgres://user@host/db?params or postgres:///db?host=/dir&user=...
        let (head, query) = url.split_once('?').unwrap_or((&url, ""));
        let base = head.rsplit_once('/').map_or(head, |(b, _)| b).to_string();
        (base, query.to_string())
    })
}

fn start_cluster() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::Builder::new()
        .prefix("accessrail-pg-")
        .tempdir()
        .unwrap()
        .keep();
    let script = root.join("scripts/pg-test-cluster.sh");
    let out = std::process::Command::new(&script)
        .arg("start")
        .arg(&dir)
        .output()
        .expect("run scripts/pg-test-cluster.sh");
    assert!(
        out.status.success(),
        "cannot start a PostgreSQL cluster (scripts/install-test-deps.sh installs the server): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A watchdog stops and deletes the cluster once this process is gone. It outlives this
    // process by design (init reaps it), so it is never waited for.
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {script} stop {dir}; rm -rf {dir}",
        pid = std::process::id(),
        script = script.display(),
        dir = dir.display()
    );
    #[allow(clippy::zombie_processes)]
    std::process::Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the cluster's watchdog");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn url_of(db: &str) -> String {
    let (base, query) = server();
    if query.is_empty() {
        format!("{base}/{db}")
    } else {
        format!("{base}/{db}?{query}")
    }
}

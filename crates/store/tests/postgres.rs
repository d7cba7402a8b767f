//! The store conformance suite on PostgreSQL, each store its own database on a real server:
//! `ACCESSRAIL_TEST_DATABASE_URL` names one (`postgres://...`); without it the suite starts a
//! throwaway cluster with `scripts/pg-test-cluster.sh` (stopped and deleted when this test
//! process exits, even if it is killed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use accessrail_store::PgStore;
use conformance::Backend;

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

#[derive(Default)]
struct Postgres {
    last: Mutex<Option<String>>,
}

impl Backend for Postgres {
    type S = PgStore;

    async fn fresh(&self) -> PgStore {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = format!(
            "conformance_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let admin = sqlx::PgPool::connect(&url_of("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = url_of(&db);
        *self.last.lock().unwrap() = Some(url.clone());
        PgStore::open(&url).await.unwrap()
    }

    async fn reopen(&self, store: PgStore) -> PgStore {
        store.close().await;
        let url = self.last.lock().unwrap().clone().expect("a store was made");
        PgStore::open(&url).await.unwrap()
    }
}

conformance_suite!(Postgres::default());

//! Evidence scans on the scan schedule, with an injected clock: due at once after the first
//! scan, then an interval after the last evidence scan began.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::schedule::Schedule;
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, Clock, ConnectRequest, Engine, Target, evidence};
use accessrail_store::{SqliteStore, Store};
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

#[derive(Debug, Clone)]
struct FakeClock(Arc<AtomicI64>);

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_due_on_the_scan_schedule() {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::with_artefacts(
            SeedConfig {
                users: 20,
                groups: 2,
                admin_key: "k".into(),
                ..SeedConfig::default()
            },
            Some(3),
            500,
            Settings::default(),
            Arc::new(testrail_sim::SystemClock),
        ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = Arc::new(AtomicI64::new(real_now));
    let store = SqliteStore::open(&dir.path().join("accessrail.db"))
        .await
        .unwrap();
    let e = Engine::new(
        store,
        Keyring::load(dir.path()).unwrap(),
        dir.path().to_path_buf(),
        ClientOptions::default(),
        Arc::new(FakeClock(t.clone())),
    );
    let (_, saved) = e
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(sim.base_url()),
            email: "admin@example.com".into(),
            key: ApiKey::new("k").unwrap(),
            name: Some("acme".into()),
            replace: false,
            request_budget: None,
        })
        .await
        .unwrap();
    let conn = saved.unwrap();
    let sched = Schedule {
        interval: 3600,
        jitter: 0,
        retry_base: 60,
    };
    assert!(
        evidence::due(&e, &sched).await.unwrap().is_empty(),
        "not before a scan"
    );
    accessrail_engine::scan::scan(&e, None, Arc::new(accessrail_engine::scan::Quiet))
        .await
        .unwrap();
    assert_eq!(evidence::due(&e, &sched).await.unwrap().len(), 1);
    let o = evidence::scan(&e, &conn, None).await.unwrap();
    assert_eq!(o.requests, o.estimate);
    assert!(evidence::due(&e, &sched).await.unwrap().is_empty());
    t.fetch_add(3599, Ordering::SeqCst);
    assert!(evidence::due(&e, &sched).await.unwrap().is_empty());
    t.fetch_add(1, Ordering::SeqCst);
    assert_eq!(evidence::due(&e, &sched).await.unwrap().len(), 1);
    // A failed evidence scan saves its evidence so far but does not move the watermark.
    sim.sim().set_settings(Settings {
        api_enabled: false,
        ..Settings::default()
    });
    assert!(evidence::scan(&e, &conn, None).await.is_err());
    let runs = e.store().evidence_runs(&conn.id).await.unwrap();
    assert_eq!(runs.last().unwrap().status, "failed");
    assert_eq!(
        evidence::covered_from(&e, &conn).await.unwrap(),
        Some(runs[0].read_from)
    );
    assert!(
        evidence::due(&e, &sched).await.unwrap().is_empty(),
        "retried after a fifth"
    );
    t.fetch_add(720, Ordering::SeqCst);
    assert_eq!(evidence::due(&e, &sched).await.unwrap().len(), 1);
}

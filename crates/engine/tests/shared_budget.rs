//! TestRail's rate limit is per instance, so the request budget is too: two processes on one
//! store (here two engines, each with its own connection pool on one database file) take their
//! requests to one instance from one budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, ConnectRequest, Engine, SystemClock, Target};
use accessrail_store::{SqliteStore, Store};
use testrail_client::Event;
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

async fn engine(dir: &std::path::Path) -> Engine<SqliteStore> {
    Engine::new(
        SqliteStore::open(&dir.join("accessrail.db")).await.unwrap(),
        Keyring::load(dir).unwrap(),
        dir.to_path_buf(),
        ClientOptions::default(),
        Arc::new(SystemClock),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_instance_budget() {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users: 3,
                groups: 1,
                admin_key: "k".into(),
                ..SeedConfig::default()
            },
            Settings::default(),
        ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = engine(dir.path()).await;
    let (report, saved) = a
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(sim.base_url()),
            email: "admin@example.com".into(),
            key: ApiKey::new("k").unwrap(),
            name: Some("main".into()),
            replace: false,
            request_budget: Some(4),
        })
        .await
        .unwrap();
    assert!(report.passed, "{report:?}");
    let conn = saved.unwrap();
    let b = engine(dir.path()).await;

    // Process A uses the whole minute's budget.
    let client_a = a.client_for(&conn, None).unwrap();
    for _ in 0..4 {
        client_a.get_current_user().await.unwrap();
    }
    // Process B, with a budget of its own untouched, must wait for the shared one.
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = events.clone();
    let client_b = b
        .client_for(
            &conn,
            Some(Arc::new(move |e: &Event| {
                seen.lock().unwrap().push(e.clone())
            })),
        )
        .unwrap();
    let before = sim.sim().stats().requests_total;
    let waited = tokio::time::timeout(Duration::from_secs(2), client_b.get_current_user()).await;
    assert!(waited.is_err(), "B sent a request past the shared budget");
    assert_eq!(
        sim.sim().stats().requests_total,
        before,
        "nothing reached TestRail"
    );
    let waits: Vec<Duration> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::BudgetWait { wait } => Some(*wait),
            _ => None,
        })
        .collect();
    assert!(
        waits
            .first()
            .is_some_and(|w| (50..=60).contains(&w.as_secs())),
        "B was told to wait for the window: {waits:?}"
    );
    // Another TestRail instance (another address) has its own budget.
    let store = b.store();
    assert_eq!(
        store
            .take_request_slot("https://other.testrail.io/", 4, a.now())
            .await
            .unwrap(),
        None
    );
}

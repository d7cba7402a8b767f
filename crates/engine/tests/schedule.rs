//! The scheduler against the simulator with an injected clock: no sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::schedule::{self, Schedule};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, Clock, ConnectRequest, Engine, Target};
use accessrail_store::{ScanStatus, SqliteStore, Store};
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

#[derive(Debug, Clone)]
struct FakeClock(Arc<AtomicI64>);

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn engine(dir: &std::path::Path, clock: &FakeClock) -> Engine<SqliteStore> {
    let store = SqliteStore::open(&dir.join("accessrail.db")).await.unwrap();
    Engine::new(
        store,
        Keyring::load(dir).unwrap(),
        dir.to_path_buf(),
        ClientOptions {
            retry_attempts: Some(1),
            ..ClientOptions::default()
        },
        Arc::new(clock.clone()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_on_interval_retries_with_backoff_and_resumes_after_restart() {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users: 5,
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
    let t = Arc::new(AtomicI64::new(1_800_000_000));
    let clock = FakeClock(t.clone());
    let at = |secs: i64| t.store(1_800_000_000 + secs, Ordering::SeqCst);
    let e = engine(dir.path(), &clock).await;
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

    // No history: the first tick scans at once.
    let ran = schedule::tick(&e, &sched).await.unwrap();
    assert_eq!(ran.len(), 1);
    assert!(ran[0].1.is_ok());
    // Before the interval: nothing.
    at(1800);
    assert!(schedule::tick(&e, &sched).await.unwrap().is_empty());
    // After it: a scan.
    at(3601);
    assert_eq!(schedule::tick(&e, &sched).await.unwrap().len(), 1);
    assert_eq!(e.store().scans(&conn.id).await.unwrap().len(), 2);

    // TestRail fails: the scan is recorded as failed, the last good data stays, and retries back off.
    sim.sim().set_settings(Settings {
        api_enabled: false,
        ..Settings::default()
    });
    at(3601 + 3600);
    let ran = schedule::tick(&e, &sched).await.unwrap();
    assert!(ran[0].1.is_err());
    let statuses = schedule::statuses(&e, &sched).await.unwrap();
    assert!(statuses[0].failing);
    assert_eq!(statuses[0].last_ok, Some(1_800_000_000 + 3601));
    assert_eq!(
        e.store().current_accounts(&conn.id).await.unwrap().len(),
        6,
        "last good data kept"
    );
    at(3601 + 3600 + 30);
    assert!(
        schedule::tick(&e, &sched).await.unwrap().is_empty(),
        "backoff: not yet"
    );
    at(3601 + 3600 + 61);
    assert!(
        schedule::tick(&e, &sched).await.unwrap()[0].1.is_err(),
        "first retry"
    );
    at(3601 + 3600 + 61 + 100);
    assert!(
        schedule::tick(&e, &sched).await.unwrap().is_empty(),
        "second retry waits twice as long"
    );
    sim.sim().set_settings(Settings::default());
    at(3601 + 3600 + 61 + 121);
    assert!(
        schedule::tick(&e, &sched).await.unwrap()[0].1.is_ok(),
        "recovered"
    );

    // A restart continues from the last recorded scan instead of scanning at once.
    let last = e
        .store()
        .scans(&conn.id)
        .await
        .unwrap()
        .last()
        .unwrap()
        .finished_at
        .unwrap();
    drop(e);
    let e2 = engine(dir.path(), &clock).await;
    assert!(schedule::tick(&e2, &sched).await.unwrap().is_empty());
    t.store(last + 3600, Ordering::SeqCst);
    assert_eq!(schedule::tick(&e2, &sched).await.unwrap().len(), 1);
    let all = e2.store().scans(&conn.id).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|s| s.status == ScanStatus::Failed)
            .count(),
        2
    );
    assert_eq!(
        all.iter()
            .filter(|s| s.status == ScanStatus::Succeeded)
            .count(),
        4
    );

    // A connection's own interval beats the default.
    e2.connect(ConnectRequest {
        scan_interval_secs: Some(600),
        target: Target::BaseUrl(sim.base_url()),
        email: "admin@example.com".into(),
        key: ApiKey::new("k").unwrap(),
        name: Some("acme".into()),
        replace: true,
        request_budget: None,
    })
    .await
    .unwrap();
    let last = e2
        .store()
        .scans(&conn.id)
        .await
        .unwrap()
        .last()
        .unwrap()
        .finished_at
        .unwrap();
    t.store(last + 601, Ordering::SeqCst);
    assert_eq!(
        schedule::tick(&e2, &sched).await.unwrap().len(),
        1,
        "due after 10 minutes, not an hour"
    );
}

/// Two processes see a connection due at once; the first scans it. The second, once it holds
/// the lease, finds the new scan and does not scan again (no duplicate scan per interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_scan_another_process_just_ran_is_not_run_again() {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users: 5,
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
    let clock = FakeClock(Arc::new(AtomicI64::new(1_800_000_000)));
    let a = engine(dir.path(), &clock).await;
    let (_, saved) = a
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
    let b = engine(dir.path(), &clock).await;
    let sched = Schedule {
        interval: 3600,
        jitter: 0,
        retry_base: 60,
    };
    let now = clock.now();
    // Both saw it due (never scanned); A gets there first.
    let first = schedule::scan_if_still_due(&a, conn.clone(), &sched, now)
        .await
        .unwrap();
    assert!(first.is_some(), "A scans the due connection");
    let requests = sim.sim().stats().requests_total;
    let second = schedule::scan_if_still_due(&b, conn.clone(), &sched, now)
        .await
        .unwrap();
    assert!(second.is_none(), "B finds A's scan once it holds the lease");
    assert_eq!(
        sim.sim().stats().requests_total,
        requests,
        "B sent nothing to TestRail"
    );
    assert_eq!(b.store().scans(&conn.id).await.unwrap().len(), 1);
    // An interval later it is due again, for whoever comes first.
    clock.0.store(now + 3600, Ordering::SeqCst);
    assert!(
        schedule::scan_if_still_due(&b, conn, &sched, now + 3600)
            .await
            .unwrap()
            .is_some()
    );
}

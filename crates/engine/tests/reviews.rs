//! Recurring access reviews with an injected clock: the next round starts when due, once
//! (however many schedulers ask), from a fresh snapshot, with the same settings; and the
//! calendar arithmetic of `--every`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use accessrail_domain::review::{Every, Scope, Undecided};
use accessrail_engine::connector::ClientOptions;
use accessrail_engine::reviews::{self, Actor, StartOptions};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, Clock, ConnectRequest, Engine, Target};
use accessrail_store::{SqliteStore, Store};
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

#[derive(Debug, Clone)]
struct FakeClock(Arc<AtomicI64>);

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn every_adds_calendar_months() {
    // 2026-01-31 00:00 UTC + 1 month = 2026-02-28 (clamped), + 3 months = 2026-04-30.
    let jan31 = 1_769_817_600;
    assert_eq!(reviews::advance(jan31, Every::Months(1)), 1_772_236_800);
    assert_eq!(reviews::advance(jan31, Every::Months(3)), 1_777_507_200);
    assert_eq!(reviews::advance(jan31, Every::Months(12)), 1_801_353_600);
    assert_eq!(
        reviews::advance(jan31, Every::Days(14)),
        jan31 + 14 * 86_400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_review_starts_its_next_round_once() {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users: 8,
                groups: 2,
                admin_key: "k".into(),
                ..SeedConfig::default()
            },
            Settings::default(),
        ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(AtomicI64::new(1_769_817_600));
    let clock = FakeClock(t.clone());
    let store = SqliteStore::open(&dir.path().join("accessrail.db"))
        .await
        .unwrap();
    let e = Engine::new(
        store,
        Keyring::load(dir.path()).unwrap(),
        dir.path().to_path_buf(),
        ClientOptions::default(),
        Arc::new(clock),
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
    accessrail_engine::scan::scan(&e, None, Arc::new(accessrail_engine::scan::Quiet))
        .await
        .unwrap();
    let first = reviews::start(
        &e,
        &conn,
        StartOptions {
            scope: Scope::All,
            fallbacks: vec!["audit@corp.example".into()],
            due_at: Some(t.load(Ordering::SeqCst) + 10 * 86_400),
            undecided: Undecided::Revoke,
            every: Some(Every::Months(3)),
        },
        "cli:test",
    )
    .await
    .unwrap();
    assert_eq!(first.next_start_at, Some(1_777_507_200));
    assert!(
        reviews::start_due(&e).await.unwrap().is_empty(),
        "not yet due"
    );

    // Three months later, two schedulers ask at once: one next round.
    t.store(1_777_507_200, Ordering::SeqCst);
    let (a, b) = tokio::join!(reviews::start_due(&e), reviews::start_due(&e));
    let started: Vec<i64> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        reviews::start_due(&e).await.unwrap().is_empty(),
        "started once"
    );
    let admin = Actor::Admin {
        actor: "cli:test".into(),
    };
    let all = reviews::list(&e, None, &admin).await.unwrap();
    assert_eq!(all.len(), 2);
    let next = &all[0];
    assert_eq!(next.previous_review, Some(first.id));
    assert_eq!(
        (next.scope.as_str(), next.undecided.as_str()),
        ("all", "revoke")
    );
    assert_eq!(next.every.as_deref(), Some("3mo"));
    assert_eq!(
        next.due_at,
        Some(1_777_507_200 + 10 * 86_400),
        "the same length"
    );
    assert_eq!(next.created_by, "scheduler");
    assert_eq!(next.items, first.items);
    let audit = e.store().audit_log().await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|x| x.record.action == "review_start")
            .count(),
        2
    );
}

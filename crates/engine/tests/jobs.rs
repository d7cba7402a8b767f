//! The durable job queue against the simulator over real HTTP: on a SQLite file, a queued job
//! runs and a keyed job is kept once; a plan apply cut short is never run again; on
//! PostgreSQL, a job whose worker died is taken over by another worker once its heartbeats
//! stop, and the scan it was running is recorded as interrupted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::jobs::{self, Job, PlanOutcome, Runner};
use accessrail_engine::provision::{self, Action, Origin, Rails, Request};
use accessrail_engine::schedule::Schedule;
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, ConnectRequest, Engine, SystemClock, Target};
use accessrail_store::{
    AnyStore, Connection, JobTiming, PlanRecord, PlanStatus, ScanStatus, Store, StoreLocation,
};
use testrail_sim::{Faults, SeedConfig, Settings, Sim, SimServer};

const TIMING: JobTiming = JobTiming {
    heartbeat: Duration::from_secs(1),
    missed_heartbeats: 3,
    poll: Duration::from_millis(50),
};

async fn sim() -> SimServer {
    SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users: 8,
                groups: 1,
                admin_key: "k".into(),
                ..SeedConfig::default()
            },
            Settings::default(),
        ),
    )
    .await
    .unwrap()
}

/// Leases last 2 s: shorter than a dead worker's orphan time (3 s), so a job taken over
/// before its worker's heartbeats were missed would show. (Not 1 s: lease times are whole
/// seconds, so a 1 s lease renewed early in a second can read as expired at the next second's
/// start, and a scan committing then loses it.)
async fn engine(dir: &std::path::Path, location: &StoreLocation) -> Arc<Engine<AnyStore>> {
    let store = AnyStore::open(location).await.unwrap();
    Arc::new(
        Engine::new(
            store,
            Keyring::load(dir).unwrap(),
            dir.to_path_buf(),
            ClientOptions {
                retry_attempts: Some(1),
                ..ClientOptions::default()
            },
            Arc::new(SystemClock),
        )
        .with_lease_ttl(2),
    )
}

async fn connect(e: &Engine<AnyStore>, sim: &SimServer) -> Connection {
    e.connect(ConnectRequest {
        scan_interval_secs: None,
        target: Target::BaseUrl(sim.base_url()),
        email: "admin@example.com".into(),
        key: ApiKey::new("k").unwrap(),
        name: Some("acme".into()),
        replace: false,
        request_budget: None,
    })
    .await
    .unwrap()
    .1
    .unwrap()
}

/// A dead worker's jobs are taken over after 4 s: well after the 1 s leases its work held
/// expire, so a takeover that waited only for the leases would show.
const TAKEOVER: JobTiming = JobTiming {
    heartbeat: Duration::from_secs(1),
    missed_heartbeats: 4,
    poll: Duration::from_millis(50),
};

/// Starts a worker that stops when `stop` is sent (a graceful shutdown).
fn stoppable_worker(
    e: &Arc<Engine<AnyStore>>,
    storage: &accessrail_store::JobStorage<Job>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let runner = Arc::new(Runner::new(e.clone(), Schedule::default(), 2));
    let storage = storage.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        jobs::work(runner, storage, TIMING.poll, async move {
            let _ = rx.await;
        })
        .await
    });
    (tx, task)
}

/// Starts a worker; dropping (aborting) its task is what a killed process does to it.
fn worker(
    e: &Arc<Engine<AnyStore>>,
    storage: &accessrail_store::JobStorage<Job>,
) -> tokio::task::JoinHandle<()> {
    let runner = Arc::new(Runner::new(e.clone(), Schedule::default(), 2));
    let storage = storage.clone();
    tokio::spawn(async move {
        let _ = jobs::work(runner, storage, TIMING.poll, std::future::pending()).await;
    })
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `limit`) until the connection's scans satisfy `done`.
async fn wait_for_scans(
    store: &AnyStore,
    id: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&[accessrail_store::ScanRecord]) -> bool,
) {
    let start = Instant::now();
    loop {
        let scans = store.scans(id).await.unwrap();
        if done(&scans) {
            return;
        }
        if start.elapsed() >= limit {
            let jobs = store.job_count(jobs::QUEUE, true).await;
            panic!("{what}: not within {limit:?}; scans {scans:?}; unfinished jobs {jobs:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_scans_run_and_a_keyed_job_is_kept_once() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), &StoreLocation::Sqlite(dir.path().join("a.db"))).await;
    let conn = connect(&e, &sim).await;
    let mut storage = e.store().job_storage(jobs::QUEUE, TIMING).await.unwrap();
    let scheduled = Job::ScheduledScan {
        connection: conn.id.clone(),
        due: 0,
        round: 7,
    };
    // Every replica's scheduler queues the same due scan: one is kept.
    storage.push(scheduled.clone().into_new()).await.unwrap();
    storage.push(scheduled.into_new()).await.unwrap();
    assert_eq!(e.store().job_count(jobs::QUEUE, false).await.unwrap(), 1);
    let (stop, w) = stoppable_worker(&e, &storage);
    let store = e.store().clone();
    let id = conn.id.clone();
    wait_for_scans(
        &store,
        &id,
        "the scheduled scan ran",
        Duration::from_secs(20),
        |s| s.iter().any(|x| x.status == ScanStatus::Succeeded),
    )
    .await;
    // Not due any more: a second scheduled job for the same connection (another round) finds
    // the fresh scan under the lease and does nothing.
    storage
        .push(
            Job::ScheduledScan {
                connection: conn.id.clone(),
                due: 0,
                round: 8,
            }
            .into_new(),
        )
        .await
        .unwrap();
    // "Scan now" scans whatever the history says.
    storage
        .push(
            Job::ScanNow {
                connection: conn.id.clone(),
                actor: "token:admin".into(),
                asked: e.now(),
            }
            .into_new(),
        )
        .await
        .unwrap();
    wait_for_scans(
        &store,
        &id,
        "the requested scan ran",
        Duration::from_secs(20),
        |s| {
            s.iter()
                .filter(|x| x.status == ScanStatus::Succeeded)
                .count()
                == 2
        },
    )
    .await;
    // Every job has run (the round-8 one too), and scanned nothing more.
    wait_until("every job ran", Duration::from_secs(20), || {
        let store = store.clone();
        async move { store.job_count(jobs::QUEUE, true).await.unwrap() == 0 }
    })
    .await;
    assert_eq!(store.job_count(jobs::QUEUE, false).await.unwrap(), 3);
    // Finished jobs are kept until forgotten: not while they are recent, then all of them.
    assert_eq!(
        store.forget_finished_jobs(jobs::QUEUE, 3600).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.forget_finished_jobs(jobs::QUEUE, 0).await.unwrap(), 3);
    assert_eq!(store.job_count(jobs::QUEUE, false).await.unwrap(), 0);
    let scans = store.scans(&id).await.unwrap();
    assert_eq!(
        scans.len(),
        2,
        "one scheduled scan (the no-longer-due job scanned nothing) and one requested: {scans:?}"
    );
    // Asked to stop with nothing to do, the worker stops at once.
    let asked = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("the worker stops within 5 s")
        .unwrap()
        .unwrap();
    eprintln!("worker stopped in {:?}", asked.elapsed());
}

async fn kept_plan(
    e: &Engine<AnyStore>,
    conn: &Connection,
    id: &str,
    email: &str,
) -> (PlanRecord, Vec<String>) {
    let actions = vec![Action::Deactivate {
        email: email.to_string(),
    }];
    let requests: Vec<Request> = actions
        .iter()
        .cloned()
        .map(|action| Request {
            action,
            origin: Origin::Direct {
                actor: "token:admin".into(),
            },
        })
        .collect();
    let plan = provision::plan(e, conn, requests, &Rails::new(None, false))
        .await
        .unwrap();
    let record = PlanRecord {
        id: id.into(),
        connection: conn.name.clone(),
        actions: serde_json::to_string(&actions).unwrap(),
        fingerprint: jobs::fingerprint(&plan),
        actor: "token:admin".into(),
        max_deactivations: 10,
        force: false,
        created_at: e.now(),
        status: PlanStatus::Ready,
        started_at: None,
        outcome: None,
    };
    e.store().insert_plan(record.clone(), 0).await.unwrap();
    (record, plan.steps[0].calls.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_apply_cut_short_is_never_run_again() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), &StoreLocation::Sqlite(dir.path().join("a.db"))).await;
    let conn = connect(&e, &sim).await;
    e.store().set_provisioning(&conn.id, true).await.unwrap();
    let people: Vec<String> = sim
        .sim()
        .snapshot()
        .users
        .values()
        .filter(|u| u.is_active && !u.is_admin)
        .map(|u| u.email.clone())
        .collect();

    // Applied once: the outcome is kept; running the job again changes nothing more.
    let (_, planned_calls) = kept_plan(&e, &conn, "p-ok", &people[0]).await;
    assert!(matches!(
        e.store().claim_plan("p-ok", 0).await.unwrap(),
        accessrail_store::PlanClaim::Claimed(_)
    ));
    let first = jobs::apply_kept(&e, "p-ok", "token:admin", false).await;
    let PlanOutcome::Applied { done, results, .. } = &first else {
        panic!("applied: {first:?}");
    };
    assert_eq!(*done, 1);
    // The plan shows the calls the apply makes, and the audit entry records the same.
    assert_eq!(results[0].calls_made, planned_calls);
    let audit = e.store().audit_log().await.unwrap();
    let entry = audit.iter().find(|a| a.id == results[0].audit_id).unwrap();
    assert_eq!(entry.record.calls, planned_calls);
    let writes = || {
        sim.sim()
            .stats()
            .by_method
            .get("update_user")
            .copied()
            .unwrap_or(0)
    };
    let after_first = writes();
    assert_eq!(after_first, 1);
    let again = jobs::apply_kept(&e, "p-ok", "token:admin", false).await;
    assert_eq!(again, first, "a re-run reports the kept outcome");
    assert_eq!(writes(), after_first, "and sends nothing");
    let kept = e.store().plan("p-ok").await.unwrap().unwrap();
    assert_eq!(kept.status, PlanStatus::Applied);

    // Cut short: the first run marked the start (about to send), then its process died. The
    // job's second run must not apply it: the plan ends interrupted, with an audit entry.
    kept_plan(&e, &conn, "p-cut", &people[1]).await;
    assert!(matches!(
        e.store().claim_plan("p-cut", 0).await.unwrap(),
        accessrail_store::PlanClaim::Claimed(_)
    ));
    assert!(e.store().start_plan_apply("p-cut", e.now()).await.unwrap());
    let audit_before = e.store().audit_log().await.unwrap().len();
    let rerun = jobs::apply_kept(&e, "p-cut", "token:admin", false).await;
    assert!(
        matches!(rerun, PlanOutcome::Interrupted { .. }),
        "{rerun:?}"
    );
    assert_eq!(
        writes(),
        after_first,
        "nothing sent for the interrupted plan"
    );
    let kept = e.store().plan("p-cut").await.unwrap().unwrap();
    assert_eq!(kept.status, PlanStatus::Interrupted);
    let audit = e.store().audit_log().await.unwrap();
    assert_eq!(audit.len(), audit_before + 1);
    let last = audit.last().unwrap();
    assert_eq!(last.record.action, "apply_plan");
    assert_eq!(last.record.target, "p-cut");
    assert_eq!(
        e.store().claim_plan("p-cut", 0).await.unwrap(),
        accessrail_store::PlanClaim::Interrupted
    );

    // A second run while the first is alive (its worker was only slow: it still holds the
    // plan's lease) does nothing: the plan is neither applied nor called interrupted.
    kept_plan(&e, &conn, "p-live", &people[3]).await;
    assert!(matches!(
        e.store().claim_plan("p-live", 0).await.unwrap(),
        accessrail_store::PlanClaim::Claimed(_)
    ));
    let live = accessrail_engine::lease::try_acquire(&e, "plan:p-live", "apply")
        .await
        .unwrap()
        .expect("the first run holds the plan's lease");
    assert!(e.store().start_plan_apply("p-live", e.now()).await.unwrap());
    let second = jobs::apply_kept(&e, "p-live", "token:admin", false).await;
    assert!(
        matches!(&second, PlanOutcome::Refused { code, .. } if code == "busy"),
        "{second:?}"
    );
    let kept = e.store().plan("p-live").await.unwrap().unwrap();
    assert_eq!((kept.status, kept.outcome), (PlanStatus::Applying, None));
    // Once the first run is gone (its lease released or expired), a run ends it interrupted.
    accessrail_engine::lease::release(&e, &live).await;
    assert!(matches!(
        jobs::apply_kept(&e, "p-live", "token:admin", false).await,
        PlanOutcome::Interrupted { .. }
    ));
    assert_eq!(writes(), after_first, "nothing sent for either");

    // TestRail changed since the plan: refused as stale, nothing sent, the plan handed back.
    kept_plan(&e, &conn, "p-stale", &people[2]).await;
    let stale_email = people[2].clone();
    sim.sim().with_instance(|inst| {
        for u in inst.users.values_mut() {
            if u.email == stale_email {
                u.is_active = false;
            }
        }
    });
    assert!(matches!(
        e.store().claim_plan("p-stale", 0).await.unwrap(),
        accessrail_store::PlanClaim::Claimed(_)
    ));
    let stale = jobs::apply_kept(&e, "p-stale", "token:admin", false).await;
    assert!(
        matches!(&stale, PlanOutcome::Refused { code, .. } if code == "stale_plan"),
        "{stale:?}"
    );
    assert_eq!(writes(), after_first);
    let kept = e.store().plan("p-stale").await.unwrap().unwrap();
    assert_eq!(kept.status, PlanStatus::Ready);
    assert_eq!(kept.started_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_taken_over_and_its_scan_shows_interrupted() {
    let url = accessrail_test_support::fresh_postgres_url().await;
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::parse(&url).unwrap();
    let e = engine(dir.path(), &location).await;
    let conn = connect(&e, &sim).await;
    let mut storage = e.store().job_storage(jobs::QUEUE, TAKEOVER).await.unwrap();
    // PostgreSQL refuses a second job with the same key (SQLite ignores it): one is kept.
    for _ in 0..2 {
        storage
            .push(
                Job::ScheduledScan {
                    connection: "no-such-connection".into(),
                    due: 0,
                    round: 1,
                }
                .into_new(),
            )
            .await
            .unwrap();
    }
    assert_eq!(e.store().job_count(jobs::QUEUE, false).await.unwrap(), 1);
    // A slow TestRail: the scan is still running when its worker dies.
    sim.sim().set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    storage
        .push(
            Job::ScanNow {
                connection: conn.id.clone(),
                actor: "token:admin".into(),
                asked: e.now(),
            }
            .into_new(),
        )
        .await
        .unwrap();
    // Worker A runs as another process would: its own runtime, its own engine and database
    // pool. Shutting that runtime down kills it like kill -9: every task of it stops at once.
    let a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    {
        let (dir, location) = (dir.path().to_path_buf(), location.clone());
        a.spawn(async move {
            let e = engine(&dir, &location).await;
            let storage = e.store().job_storage(jobs::QUEUE, TAKEOVER).await.unwrap();
            let runner = Arc::new(Runner::new(e, Schedule::default(), 2));
            let _ = jobs::work(runner, storage, TIMING.poll, std::future::pending()).await;
        });
    }
    let store = e.store().clone();
    let id = conn.id.clone();
    wait_for_scans(
        &store,
        &id,
        "worker A started the scan",
        Duration::from_secs(20),
        |s| s.iter().any(|x| x.status == ScanStatus::Running),
    )
    .await;
    // Worker A dies mid-scan: no heartbeats, no lease renewals, nothing cleaned up.
    a.shutdown_background();
    let died = Instant::now();
    sim.sim().set_faults(Faults::default());
    // Worker B (another process's) takes the job over once A missed its heartbeats and the
    // scan lease expired, and completes the scan.
    let b = worker(&e, &storage);
    wait_for_scans(
        &store,
        &id,
        "worker B completed the scan",
        Duration::from_secs(30),
        |s| s.iter().any(|x| x.status == ScanStatus::Succeeded),
    )
    .await;
    // A's jobs go to B once A's last heartbeat (up to one beat before the kill) is older than
    // the orphan time; apalis counts in whole seconds. The scan lease (1 s) lapsed long before.
    let taken = died.elapsed();
    let earliest = TAKEOVER.orphaned_after() - TAKEOVER.heartbeat - Duration::from_secs(1);
    assert!(
        taken >= earliest,
        "taken over after {taken:?}, before the dead worker's heartbeats were missed ({earliest:?})"
    );
    let scans = store.scans(&id).await.unwrap();
    assert_eq!(
        scans.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![ScanStatus::Interrupted, ScanStatus::Succeeded],
        "the killed scan shows as interrupted, then the taken-over one: {scans:?}"
    );
    // Finished jobs are forgotten on PostgreSQL too.
    wait_until("every job finished", Duration::from_secs(20), || {
        let store = store.clone();
        async move { store.job_count(jobs::QUEUE, true).await.unwrap() == 0 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let all = store.job_count(jobs::QUEUE, false).await.unwrap();
    assert!(all >= 2, "{all}");
    assert_eq!(
        store.forget_finished_jobs(jobs::QUEUE, 0).await.unwrap(),
        u64::try_from(all).unwrap()
    );
    b.abort();
}

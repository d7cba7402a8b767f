//! Background work as durable jobs (see `docs/decisions/0007-job-queue.md`): scheduled scans,
//! "Scan now", flows after an identity import, and plan applies. Jobs are kept in the store's
//! database by apalis (`accessrail_store::JobStorage`), so any replica's worker may run one,
//! and a job whose worker died (it stopped sending heartbeats) is run again by another.
//!
//! Running a job twice must never do the work twice. Each kind is safe on its own terms:
//! - a scan takes the connection's scan lease and asks again, under it, whether it is still
//!   wanted (a scheduled scan: still due), so a re-run after a finished scan does nothing, and a
//!   re-run after a killed scan records that scan as interrupted and scans afresh;
//! - flows are evaluated against the current state, so what a first run did is not planned
//!   again;
//! - a plan apply is never re-run: it records that it started sending to TestRail before it
//!   sends anything, and a second run that finds that mark ends the plan as interrupted (an
//!   audit entry says so) instead of applying it again.

use std::sync::Arc;

use accessrail_domain::{AuditRecord, Outcome};
use accessrail_store::{PlanStatus, ScanStatus, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::lease;
use crate::provision::{self, Origin, Rails, Request};
use crate::scan::{self, Quiet};
use crate::schedule::{self, Schedule};

/// The one queue all of Accessrail's jobs go through.
pub const QUEUE: &str = "accessrail";

/// Jobs one worker runs at once. A worker takes a job only when it has room for it (and one
/// at a time), so the jobs spread over the replicas instead of queueing behind the first.
pub const JOBS_AT_ONCE: usize = 4;

/// How often a scan job waiting for another scan's lease asks again.
const LEASE_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// A plan must be applied within this many seconds of being made.
pub const PLAN_LIFETIME: i64 = 3600;

/// One unit of background work. Connections are named by id (a renamed connection keeps its
/// queued work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// The scheduler found the connection due (at `due`, from its scan history), in interval
    /// number `round` (the current time divided by the connection's interval).
    ScheduledScan {
        connection: String,
        due: i64,
        round: i64,
    },
    /// "Scan now" from the console or the API, asked at `asked` (a scan that starts after it
    /// answers it).
    ScanNow {
        connection: String,
        actor: String,
        #[serde(default)]
        asked: i64,
    },
    /// The connection's flows, after an identity import.
    Flows { connection: String, actor: String },
    /// Applies a kept plan that the request queueing this job claimed.
    ApplyPlan {
        plan: String,
        actor: String,
        /// The requester confirmed the plan's cautions (deactivating an administrator or the
        /// connection's own account); without it such a plan is refused.
        #[serde(default)]
        acknowledged: bool,
    },
}

impl Job {
    /// The key that makes a second push of the same work a no-op: one scheduled scan per
    /// connection, due time and interval (every replica's scheduler sees the same). A plan's
    /// apply needs none: only the request that claimed the plan queues it.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::ScheduledScan {
                connection,
                due,
                round,
            } => Some(format!("scan:{connection}:{due}:{round}")),
            Self::ApplyPlan { .. } | Self::ScanNow { .. } | Self::Flows { .. } => None,
        }
    }

    /// How often apalis may run it after it failed (runs after its worker died come on top).
    /// A failed scan is retried by the scheduler (with backoff, from the scan history), not by
    /// the queue; a plan apply whose outcome could not be recorded is run again (its start mark
    /// and lease make that safe).
    pub fn max_attempts(&self) -> usize {
        match self {
            Self::ApplyPlan { .. } => 3,
            _ => 1,
        }
    }

    /// What kind of job it is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ScheduledScan { .. } => "scheduled_scan",
            Self::ScanNow { .. } => "scan_now",
            Self::Flows { .. } => "flows",
            Self::ApplyPlan { .. } => "apply_plan",
        }
    }

    pub fn into_new(self) -> accessrail_store::NewJob<Job> {
        accessrail_store::NewJob {
            key: self.key(),
            max_attempts: self.max_attempts(),
            args: self,
        }
    }
}

/// How a plan's apply ended, kept with the plan (as JSON) for whoever asked for the apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PlanOutcome {
    Applied {
        done: usize,
        noop: usize,
        failed: usize,
        not_run: usize,
        results: Vec<StepOutcome>,
    },
    /// Nothing was sent to TestRail; `code` is an error code (`stale_plan`, `read_only`, ...).
    Refused { code: String, message: String },
    /// Its apply was cut short; TestRail may be partly changed.
    Interrupted { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub step: usize,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub message: Option<String>,
    pub calls_made: Vec<String>,
    pub audit_id: i64,
}

impl From<&provision::ApplyReport> for PlanOutcome {
    fn from(r: &provision::ApplyReport) -> Self {
        Self::Applied {
            done: r.done,
            noop: r.noop,
            failed: r.failed,
            not_run: r.not_run,
            results: r
                .results
                .iter()
                .map(|x| StepOutcome {
                    step: x.step,
                    action: x.action.to_string(),
                    target: x.target.clone(),
                    outcome: x.outcome.as_str().to_string(),
                    message: x.message.clone(),
                    calls_made: x.calls_made.clone(),
                    audit_id: x.audit_id,
                })
                .collect(),
        }
    }
}

/// A plan's fingerprint: what it would do, so an apply can check TestRail still looks the same.
pub fn fingerprint(plan: &provision::Plan) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&plan.steps).unwrap_or_default());
    h.update(serde_json::to_vec(&plan.skipped).unwrap_or_default());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs jobs for one process: what a worker calls for each job it takes.
#[derive(Debug)]
pub struct Runner<S: Store> {
    engine: Arc<Engine<S>>,
    schedule: Schedule,
    /// Scans running at once in this process; each holds a database connection for its run.
    scan_slots: Arc<Semaphore>,
}

impl<S: Store> Runner<S> {
    pub fn new(engine: Arc<Engine<S>>, schedule: Schedule, scans_at_once: usize) -> Self {
        Self {
            engine,
            schedule,
            scan_slots: Arc::new(Semaphore::new(scans_at_once.max(1))),
        }
    }

    pub fn engine(&self) -> &Arc<Engine<S>> {
        &self.engine
    }

    /// Runs one job. `Ok` says what happened; `Err` is a failure worth a log line (the job is
    /// not run again for it; see [`Job::max_attempts`]).
    pub async fn run(&self, job: Job) -> Result<String, String> {
        match job {
            Job::ScheduledScan { connection, .. } => self.scheduled_scan(&connection).await,
            Job::ScanNow {
                connection, asked, ..
            } => self.scan_now(&connection, asked).await,
            Job::Flows { connection, actor } => run_flows(&self.engine, &connection, &actor)
                .await
                .map_err(|e| e.to_string()),
            Job::ApplyPlan {
                plan,
                actor,
                acknowledged,
            } => {
                let outcome = apply_kept(&self.engine, &plan, &actor, acknowledged).await;
                let busy = matches!(&outcome, PlanOutcome::Refused { code, .. } if code == "busy");
                let left_applying = self
                    .engine
                    .store()
                    .plan(&plan)
                    .await
                    .map(|p| p.is_some_and(|p| p.status == PlanStatus::Applying))
                    .unwrap_or(true);
                if left_applying && !busy {
                    // The outcome could not be recorded: fail, so the queue runs the job again
                    // (safe: the plan's start mark and lease keep it from applying twice).
                    return Err(format!(
                        "plan {plan}: {}; its outcome could not be recorded",
                        summary(&outcome)
                    ));
                }
                Ok(format!("plan {plan}: {}", summary(&outcome)))
            }
        }
    }

    async fn conn(&self, id: &str) -> Result<accessrail_store::Connection, String> {
        connection_by_id(&self.engine, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("connection {id} was removed"))
    }

    /// A scan the scheduler found due, if it still is once its lease is held.
    async fn scheduled_scan(&self, id: &str) -> Result<String, String> {
        self.scan_when_free(id, |conn| {
            schedule::scan_if_still_due(&self.engine, conn, &self.schedule, self.engine.now())
        })
        .await
    }

    /// A scan asked for: one that starts after the request (a scan that finished meanwhile,
    /// after the request was made, is enough).
    async fn scan_now(&self, id: &str, asked: i64) -> Result<String, String> {
        self.scan_when_free(id, |conn| {
            scan::scan_if(&self.engine, conn, Arc::new(Quiet), move |_, h| {
                !h.iter()
                    .any(|s| s.started_at > asked && s.status == ScanStatus::Succeeded)
            })
        })
        .await
    }

    /// Runs `attempt` (a scan that asks, under the connection's lease, whether it is still
    /// wanted) in one of this process's scan slots. A lease held elsewhere, by a live scan or by
    /// a process that died (until it expires), is waited for, up to twice the lease time.
    async fn scan_when_free<F, Fut>(&self, id: &str, attempt: F) -> Result<String, String>
    where
        F: Fn(accessrail_store::Connection) -> Fut,
        Fut: std::future::Future<Output = EngineResult<Option<crate::scan::ScanOutcome>>>,
    {
        let conn = self.conn(id).await?;
        let _slot = self.scan_slots.acquire().await.map_err(|e| e.to_string())?;
        let ttl = self.engine.lease_ttl_secs().max(1);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2 * ttl as u64);
        loop {
            match attempt(conn.clone()).await {
                Ok(Some(o)) => {
                    return Ok(format!(
                        "scanned {}: {} users, {} changes",
                        conn.name, o.users, o.changes
                    ));
                }
                Ok(None) => return Ok(format!("{} was scanned meanwhile", conn.name)),
                Err(EngineError::ScanRunning(_)) if std::time::Instant::now() < give_up => {
                    tokio::time::sleep(LEASE_RECHECK).await;
                }
                Err(EngineError::ScanRunning(_)) => {
                    return Ok(format!("{} is being scanned elsewhere", conn.name));
                }
                Err(e) => return Err(format!("scan of {} failed: {e}", conn.name)),
            }
        }
    }
}

/// The connection with this id (jobs name connections by id: a renamed one keeps its work).
async fn connection_by_id<S: Store>(
    engine: &Engine<S>,
    id: &str,
) -> EngineResult<Option<accessrail_store::Connection>> {
    Ok(engine
        .store()
        .connections()
        .await?
        .into_iter()
        .find(|c| c.id == id))
}

fn summary(o: &PlanOutcome) -> String {
    match o {
        PlanOutcome::Applied {
            done, failed, noop, ..
        } => format!("applied ({done} done, {noop} unchanged, {failed} failed)"),
        PlanOutcome::Refused { code, message } => format!("not applied ({code}): {message}"),
        PlanOutcome::Interrupted { message } => format!("interrupted: {message}"),
    }
}

/// A connection's flows, evaluated now: applied when provisioning is on, planned only when off.
pub async fn run_flows<S: Store>(
    engine: &Engine<S>,
    connection_id: &str,
    actor: &str,
) -> EngineResult<String> {
    let Some(conn) = connection_by_id(engine, connection_id).await? else {
        return Ok(format!("connection {connection_id} was removed"));
    };
    let Some((file, _)) = crate::flows::load_for(engine, &conn).await? else {
        return Ok(format!("{} has no flows", conn.name));
    };
    let identities = engine.store().identities().await?;
    let users = crate::report::users(engine, &conn).await?;
    let activity = crate::evidence::activity(engine, &conn).await?;
    let requests = crate::flows::evaluate(&file, &identities, &users, &activity);
    if requests.is_empty() {
        return Ok(format!("flows of {}: nothing to do", conn.name));
    }
    let handovers = crate::flows::handovers(&file, &identities, &users);
    let mut plan = provision::plan(engine, &conn, requests, &Rails::new(None, false)).await?;
    let steps = plan.steps.iter().filter(|s| !s.is_noop()).count();
    if !conn.provisioning_enabled {
        return Ok(format!(
            "flows of {}: {steps} step(s) planned, not applied (provisioning is off)",
            conn.name
        ));
    }
    let handover_plans = crate::offboard::plan_handovers(engine, &conn, &handovers, &plan).await?;
    let handed =
        crate::offboard::apply_handovers(engine, &conn, &handover_plans, &mut plan).await?;
    let r = provision::apply(engine, &conn, &plan).await?;
    let held_back = handed.iter().filter(|h| !h.held).count();
    let handed_over = handed
        .iter()
        .filter(|h| h.held && !h.steps.is_empty())
        .count();
    Ok(format!(
        "flows of {} (after an import by {actor}): {} done, {} failed, {} not run{}",
        conn.name,
        r.done,
        r.failed,
        r.not_run,
        if handed.is_empty() {
            String::new()
        } else {
            format!("; {handed_over} leaver(s) handed their work over, {held_back} held back")
        }
    ))
}

/// Applies a kept plan that its requester claimed (`applying`), at most once, and only if
/// TestRail still looks as it did when the plan was made. Its outcome is kept with the plan.
///
/// One run at a time holds the plan's lease (`plan:<id>`, renewed while it applies): a second
/// run of the job while the first still runs (its worker was only slow) does nothing; a run
/// that finds the apply started and the lease free knows the first run died, and ends the plan
/// `interrupted` instead of applying it again.
pub async fn apply_kept<S: Store>(
    engine: &Engine<S>,
    id: &str,
    actor: &str,
    acknowledged: bool,
) -> PlanOutcome {
    let name = format!("plan:{id}");
    let token = match lease::try_acquire(engine, &name, "apply").await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return PlanOutcome::Refused {
                code: "busy".into(),
                message: format!("plan {id} is being applied by another worker"),
            };
        }
        Err(e) => return refused(engine, id, e).await,
    };
    let lost = std::sync::atomic::AtomicBool::new(false);
    let outcome = lease::hold(engine, std::slice::from_ref(&token), &lost, async {
        match apply_kept_inner(engine, id, actor, acknowledged).await {
            Ok(o) => o,
            Err(e) => refused(engine, id, e).await,
        }
    })
    .await;
    lease::release(engine, &token).await;
    outcome
}

/// Nothing was sent: the plan is handed back (`ready`) with the reason. Details of internal
/// errors (the store, secrets) go to the log, not to whoever reads the plan.
async fn refused<S: Store>(engine: &Engine<S>, id: &str, e: EngineError) -> PlanOutcome {
    let code = e.code();
    let message = match code {
        crate::ErrorCode::Store | crate::ErrorCode::Secret => {
            tracing::error!(plan = id, error = %e, "plan apply failed");
            "an internal error stopped the apply before anything was sent; see the service log"
                .to_string()
        }
        _ => e.to_string(),
    };
    let o = PlanOutcome::Refused {
        code: code.as_str().to_string(),
        message,
    };
    finish(engine, id, PlanStatus::Ready, &o).await;
    o
}

/// Records how a plan's apply ended, trying a few times: a plan left `applying` would tell its
/// requester nothing. `false` when it could not be recorded.
async fn finish<S: Store>(
    engine: &Engine<S>,
    id: &str,
    status: PlanStatus,
    o: &PlanOutcome,
) -> bool {
    let text = serde_json::to_string(o).unwrap_or_default();
    let mut pause = std::time::Duration::from_millis(200);
    for attempt in 1..=5 {
        match engine.store().finish_plan(id, status, Some(&text)).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(attempt, "cannot record how plan {id} ended: {e}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    false
}

async fn apply_kept_inner<S: Store>(
    engine: &Engine<S>,
    id: &str,
    actor: &str,
    acknowledged: bool,
) -> EngineResult<PlanOutcome> {
    let store = engine.store();
    let Some(kept) = store.plan(id).await? else {
        return Err(EngineError::NotFound(format!("no plan {id}")));
    };
    if kept.status != PlanStatus::Applying {
        // Finished before (a job run again after it ended): say how, do nothing.
        return Ok(kept
            .outcome
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(PlanOutcome::Refused {
                code: "conflict".into(),
                message: format!("plan {id} is {}", kept.status.as_str()),
            }));
    }
    if kept.started_at.is_some() {
        // Started, and nobody holds its lease but us: the run that started it died.
        return Ok(interrupted(engine, &kept, actor).await);
    }
    let conn = engine.resolve(Some(&kept.connection)).await?;
    provision::ensure_enabled(&conn)?;
    let planned: Vec<provision::Action> = serde_json::from_str(&kept.actions)
        .map_err(|e| EngineError::InvalidInput(format!("plan {id} cannot be read: {e}")))?;
    // The applier is the one the audit log names.
    let requests: Vec<Request> = planned
        .into_iter()
        .map(|action| Request {
            action,
            origin: Origin::Direct {
                actor: actor.to_string(),
            },
        })
        .collect();
    let rails = Rails::new(Some(kept.max_deactivations), kept.force);
    let fresh = provision::plan(engine, &conn, requests, &rails).await?;
    let mut cmp = fresh.clone();
    for st in &mut cmp.steps {
        st.actor = kept.actor.clone();
    }
    for sk in &mut cmp.skipped {
        sk.actor = kept.actor.clone();
    }
    if fingerprint(&cmp) != kept.fingerprint {
        let o = PlanOutcome::Refused {
            code: "stale_plan".into(),
            message: "TestRail changed since this plan was made; make a new plan and review it"
                .into(),
        };
        finish(engine, id, PlanStatus::Ready, &o).await;
        return Ok(o);
    }
    // Deactivating an administrator or Accessrail's own account needs the requester's explicit
    // confirmation, whoever asks (console, API): nothing is sent without it.
    if !acknowledged
        && fresh
            .steps
            .iter()
            .any(|s| s.caution.is_some() && !s.is_noop())
    {
        let o = PlanOutcome::Refused {
            code: "needs_acknowledgement".into(),
            message: "this plan deactivates a TestRail administrator or Accessrail's own account (see the plan's cautions): confirm it explicitly (API: apply with ?acknowledge=true; console: tick the box)".into(),
        };
        finish(engine, id, PlanStatus::Ready, &o).await;
        return Ok(o);
    }
    // From here on TestRail may change: mark it first, so a second run never applies it again.
    if !store.start_plan_apply(id, engine.now()).await? {
        return Ok(interrupted(engine, &kept, actor).await);
    }
    let o = match provision::apply(engine, &conn, &fresh).await {
        Ok(r) => PlanOutcome::from(&r),
        Err(e) => PlanOutcome::Interrupted {
            message: format!("the apply stopped: {e}; see the audit log for what reached TestRail"),
        },
    };
    let status = match o {
        PlanOutcome::Interrupted { .. } => PlanStatus::Interrupted,
        _ => PlanStatus::Applied,
    };
    finish(engine, id, status, &o).await;
    Ok(o)
}

/// A plan whose apply was started and cut short: recorded, audited, never applied again.
async fn interrupted<S: Store>(
    engine: &Engine<S>,
    kept: &accessrail_store::PlanRecord,
    actor: &str,
) -> PlanOutcome {
    let message = "its apply was cut short (the process applying it stopped); TestRail may be \
                   partly changed: see the audit log's 'started' entries, scan, then plan again"
        .to_string();
    let o = PlanOutcome::Interrupted {
        message: message.clone(),
    };
    let audit = engine
        .store()
        .append_audit(AuditRecord {
            at: engine.now(),
            actor: actor.to_string(),
            connection: kept.connection.clone(),
            action: "apply_plan".into(),
            target: kept.id.clone(),
            before: None,
            after: None,
            calls: vec![],
            outcome: Outcome::Failed,
            message: Some(message),
        })
        .await;
    if let Err(e) = audit {
        tracing::error!("cannot audit the interrupted plan {}: {e}", kept.id);
    }
    finish(engine, &kept.id, PlanStatus::Interrupted, &o).await;
    o
}

/// Runs this process's worker on `storage` until `stop` completes: it takes jobs (a few at a
/// time), heartbeats while it runs them, and hands the jobs of workers that went silent to
/// itself. Each replica runs one, under a name of its own. A worker that fails (apalis stops a
/// worker whose heartbeat could not be written, e.g. while the database fails over) is started
/// again under a new name after a pause. The jobs it was running stop there, as if its process
/// had died, and are taken over like a dead worker's (a scan records as interrupted, a plan
/// apply ends interrupted).
pub async fn work<S: Store>(
    runner: Arc<Runner<S>>,
    storage: accessrail_store::JobStorage<Job>,
    poll: std::time::Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
            Ok::<(), std::io::Error>(())
        };
        let name = format!(
            "{}-{}",
            runner.engine.instance(),
            crate::tokens::random_hex(4)
        );
        match run_worker(&name, runner.clone(), storage.clone(), poll, stopped).await {
            Ok(()) => return Ok(()),
            Err(e) if *stop_rx.borrow() => return Err(format!("job worker {name}: {e}")),
            Err(e) => {
                tracing::warn!(worker = name, error = %e, "job worker stopped; starting another");
            }
        }
        let mut rx = stop_rx.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = rx.wait_for(|s| *s) => return Ok(()),
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(30));
    }
}

async fn run_worker<S: Store>(
    name: &str,
    runner: Arc<Runner<S>>,
    storage: accessrail_store::JobStorage<Job>,
    poll: std::time::Duration,
    stop: impl std::future::Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), String> {
    use apalis_core::backend::ext::BackendExt as _;
    use apalis_core::worker::builder::WorkerBuilder;
    let ran = match storage {
        accessrail_store::JobStorage::Postgres(s) => {
            WorkerBuilder::new(name)
                .backend(s.poll_with_interval(poll))
                .layer(tower::limit::ConcurrencyLimitLayer::new(JOBS_AT_ONCE))
                .data(runner)
                .build(handle::<S>)
                .run_until(stop)
                .await
        }
        accessrail_store::JobStorage::Sqlite(s) => {
            WorkerBuilder::new(name)
                .backend(s.poll_with_interval(poll))
                .layer(tower::limit::ConcurrencyLimitLayer::new(JOBS_AT_ONCE))
                .data(runner)
                .build(handle::<S>)
                .run_until(stop)
                .await
        }
    };
    ran.map_err(|e| e.to_string())
}

async fn handle<S: Store>(
    job: Job,
    runner: apalis_core::task::data::Data<Arc<Runner<S>>>,
) -> Result<String, apalis_core::error::BoxDynError> {
    let what = format!("{job:?}");
    let kind = job.kind();
    // In a task of its own: if apalis stops this worker (a heartbeat it could not write), the
    // job goes on instead of being cut short mid-step.
    let runner: Arc<Runner<S>> = (*runner).clone();
    let ran = tokio::spawn(async move { runner.run(job).await })
        .await
        .unwrap_or_else(|e| Err(format!("the job stopped: {e}")));
    match ran {
        Ok(done) => {
            tracing::info!(job = what, "job done ({kind}): {done}");
            Ok(done)
        }
        Err(e) => {
            tracing::warn!(job = what, "job failed ({kind}): {e}");
            Err(e.into())
        }
    }
}

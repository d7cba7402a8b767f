use std::sync::Arc;
use std::time::Duration;

use accessrail_engine::Engine;
use accessrail_engine::jobs::{Job, Runner};
use accessrail_engine::provision::{Plan, Request};
use accessrail_engine::schedule::Schedule;
use accessrail_store::{AnyStore, JobStorage, JobTiming};
use tokio::sync::Notify;

pub type App = Engine<AnyStore>;

/// A signed-in console session (kept in the store, so every replica knows it); its CSRF
/// token protects every form. Nothing is kept for a visitor who has not signed in (their
/// sign-in form is protected by a signed cookie instead).
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    /// The token name behind the session.
    pub token: String,
    /// That token's hash, to check with one indexed lookup that it is still live.
    pub token_hash: String,
    pub created_at: i64,
}

/// A plan as made: what the plan request answers with. What its apply needs (the actions,
/// the fingerprint, the rails) is kept in the store, for any replica to apply once.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    pub connection: String,
    pub requests: Vec<Request>,
    pub fingerprint: String,
    pub plan: Plan,
    pub actor: String,
    pub max_deactivations: u32,
    pub force: bool,
}

pub struct AppState {
    pub engine: Arc<App>,
    pub allow_base_urls: bool,
    pub schedule: Schedule,
    pub scan_now: Arc<Notify>,
    pub templates: minijinja::Environment<'static>,
    /// Signs the pre-sign-in CSRF cookie: derived from the master key, so every replica (and
    /// a restarted one) accepts a sign-in form another served.
    pub(crate) csrf_key: Vec<u8>,
    /// The durable job queue (in the store's database): scans, flows, plan applies.
    pub(crate) jobs: JobStorage<Job>,
    pub(crate) job_timing: JobTiming,
    /// What this process's worker runs jobs with.
    pub(crate) runner: Arc<Runner<AnyStore>>,
    /// Project access of the current revision, kept until the next one commits.
    pub(crate) access: accessrail_engine::access::AccessCache,
}

/// Scans one process runs at once; each holds a database connection for its whole run, so
/// they stay below the pool's size and leave room for lease renewals and requests.
pub const BACKGROUND_SCANS: usize = 3;

/// How this process's job worker proves it is alive: a heartbeat every third of the lease time,
/// and its jobs go to another worker after three missed beats (about one lease time), when the
/// leases its work held have expired too.
pub fn job_timing(lease_ttl_secs: i64, poll: Duration) -> JobTiming {
    let ttl = u64::try_from(lease_ttl_secs.max(1)).unwrap_or(60);
    JobTiming {
        heartbeat: Duration::from_secs(ttl.div_ceil(3).max(1)),
        missed_heartbeats: 3,
        poll,
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("allow_base_urls", &self.allow_base_urls)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the job queue (creating its tables on first use) and builds the state. `job_poll`:
    /// how often an idle worker looks for jobs.
    pub async fn open(
        engine: Arc<App>,
        allow_base_urls: bool,
        schedule: Schedule,
        job_poll: Duration,
    ) -> Result<Arc<Self>, String> {
        let csrf_key = engine.keyring().derive("console-csrf-v1").to_vec();
        let job_timing = job_timing(engine.lease_ttl_secs(), job_poll);
        let jobs = engine
            .store()
            .job_storage(accessrail_engine::jobs::QUEUE, job_timing)
            .await
            .map_err(|e| format!("job queue: {e}"))?;
        let runner = Arc::new(Runner::new(engine.clone(), schedule, BACKGROUND_SCANS));
        Ok(Arc::new(Self {
            engine,
            allow_base_urls,
            schedule,
            scan_now: Arc::new(Notify::new()),
            jobs,
            job_timing,
            runner,
            access: accessrail_engine::access::AccessCache::default(),
            csrf_key,
            templates: crate::ui::templates(),
        }))
    }

    /// Queues a job (one copy per key: the same work queued twice is kept once).
    pub async fn enqueue(&self, job: Job) -> Result<(), accessrail_store::StoreError> {
        self.jobs.clone().push(job.into_new()).await
    }

    /// How many console sessions are kept (signed-in visitors only, all replicas).
    pub async fn session_count(&self) -> usize {
        use accessrail_store::Store as _;
        self.engine
            .store()
            .session_count()
            .await
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// A random id (sessions, CSRF tokens, plan ids).
pub fn random_id() -> String {
    accessrail_engine::tokens::random_hex(24)
}

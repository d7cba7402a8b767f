use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use accessrail_engine::Engine;
use accessrail_engine::provision::{Plan, Request};
use accessrail_engine::schedule::Schedule;
use accessrail_store::AnyStore;
use tokio::sync::Notify;

pub type App = Engine<AnyStore>;

/// A signed-in console session; its CSRF token protects every form. Nothing is kept for a
/// visitor who has not signed in (their sign-in form is protected by a signed cookie instead).
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    /// The token name behind the session.
    pub token: String,
    /// That token's hash, to check with one indexed lookup that it is still live.
    pub token_hash: String,
    pub created_at: i64,
    /// Order of creation (several sessions can start in one second): the oldest goes first.
    pub seq: u64,
}

/// Where a kept plan is in its life. A plan is claimed (`Applying`) before it is applied, so
/// that it runs at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanState {
    Ready,
    Applying,
    Applied,
}

/// A plan kept for its apply request.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    pub connection: String,
    pub requests: Vec<Request>,
    pub fingerprint: String,
    pub plan: Plan,
    pub created_at: i64,
    pub actor: String,
    pub max_deactivations: u32,
    pub force: bool,
    pub state: PlanState,
}

pub struct AppState {
    pub engine: Arc<App>,
    pub allow_base_urls: bool,
    pub schedule: Schedule,
    pub scan_now: Arc<Notify>,
    /// Signed-in sessions only, at most `auth::MAX_SESSIONS`.
    pub sessions: Mutex<HashMap<String, Session>>,
    pub(crate) session_seq: AtomicU64,
    pub plans: Mutex<HashMap<String, StoredPlan>>,
    pub templates: minijinja::Environment<'static>,
    /// Signs the pre-sign-in CSRF cookie. New at every start: a sign-in form opened before a
    /// restart is refused once and works when reloaded.
    pub(crate) csrf_key: Vec<u8>,
    /// Background work ("Scan now"): awaited for the grace period at shutdown.
    pub(crate) tasks: Mutex<tokio::task::JoinSet<()>>,
    /// Background scans running at once; each holds a database connection for its whole run,
    /// so they stay below the pool's size and leave room for lease renewals and requests.
    pub(crate) scan_slots: Arc<tokio::sync::Semaphore>,
}

/// Background scans at once ("Scan now" on several connections); the scheduler runs one more.
pub const BACKGROUND_SCANS: usize = 3;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("allow_base_urls", &self.allow_base_urls)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(engine: Arc<App>, allow_base_urls: bool, schedule: Schedule) -> Arc<Self> {
        Arc::new(Self {
            engine,
            allow_base_urls,
            schedule,
            scan_now: Arc::new(Notify::new()),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            scan_slots: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_SCANS)),
            sessions: Mutex::new(HashMap::new()),
            session_seq: AtomicU64::new(0),
            plans: Mutex::new(HashMap::new()),
            templates: crate::ui::templates(),
            csrf_key: accessrail_engine::tokens::random_hex(32).into_bytes(),
        })
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many console sessions the server keeps (signed-in visitors only).
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    pub fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredPlan>> {
        self.plans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A random id (sessions, CSRF tokens, plan ids).
pub fn random_id() -> String {
    accessrail_engine::tokens::random_hex(24)
}

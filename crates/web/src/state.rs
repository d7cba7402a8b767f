use std::sync::{Arc, Mutex};

use accessrail_engine::Engine;
use accessrail_engine::provision::{Plan, Request};
use accessrail_engine::schedule::Schedule;
use accessrail_store::AnyStore;
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
        let csrf_key = engine.keyring().derive("console-csrf-v1").to_vec();
        Arc::new(Self {
            engine,
            allow_base_urls,
            schedule,
            scan_now: Arc::new(Notify::new()),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            scan_slots: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_SCANS)),
            csrf_key,
            templates: crate::ui::templates(),
        })
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

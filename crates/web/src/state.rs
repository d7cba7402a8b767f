use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use accessrail_engine::Engine;
use accessrail_engine::provision::{Plan, Request};
use accessrail_engine::schedule::Schedule;
use accessrail_store::SqliteStore;
use tokio::sync::Notify;

pub type App = Engine<SqliteStore>;

/// A console session: anonymous until sign-in; its CSRF token protects every form.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    /// The token name behind a signed-in session.
    pub token: Option<String>,
    /// That token's hash, to check with one indexed lookup that it is still live.
    pub token_hash: Option<String>,
    pub created_at: i64,
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
}

pub struct AppState {
    pub engine: Arc<App>,
    pub allow_base_urls: bool,
    pub schedule: Schedule,
    pub scan_now: Arc<Notify>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub plans: Mutex<HashMap<String, StoredPlan>>,
    pub templates: minijinja::Environment<'static>,
}

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
            sessions: Mutex::new(HashMap::new()),
            plans: Mutex::new(HashMap::new()),
            templates: crate::ui::templates(),
        })
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredPlan>> {
        self.plans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A random id (sessions, CSRF tokens, plan ids).
pub fn random_id() -> String {
    accessrail_engine::tokens::random_hex(24)
}

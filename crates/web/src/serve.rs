//! `accessrail serve`: API, console and scheduler in one process. If any of them stops, the
//! process stops with an error; Ctrl-C / SIGTERM shuts down gracefully.

use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use accessrail_engine::scan::{self, Quiet};
use accessrail_engine::{schedule, tokens};
use accessrail_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{App, AppState};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How often the scheduler looks for due scans.
    pub tick_every: Duration,
    /// How long a running scan may take to finish at shutdown before it is abandoned.
    pub grace: Duration,
    /// The address browsers use to reach the service, e.g. `https://accessrail.example.com`
    /// (behind a TLS-terminating proxy). When it is https, the console's cookies are `Secure`
    /// and every answer carries `Strict-Transport-Security`. `None`: plain http.
    pub public_url: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            tick_every: Duration::from_secs(30),
            grace: Duration::from_secs(20),
            public_url: None,
        }
    }
}

impl ServeConfig {
    /// Whether the public URL is https.
    pub fn is_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| {
            u.trim()
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
    }

    /// The public URL, if given, must be an http(s) URL with a host.
    pub fn check(&self) -> Result<(), String> {
        let Some(u) = self.public_url.as_deref() else {
            return Ok(());
        };
        let u = u.trim();
        let rest = ["https://", "http://"]
            .iter()
            .find_map(|p| {
                u.get(..p.len())
                    .filter(|s| s.eq_ignore_ascii_case(p))
                    .map(|_| &u[p.len()..])
            })
            .ok_or_else(|| format!("public URL {u:?}: use http://HOST or https://HOST"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("public URL {u:?} has no host"));
        }
        Ok(())
    }
}

/// `ACCESSRAIL_ADMIN_TOKEN` sets the bootstrap token named `admin`. Without it, and without
/// any live token, a token is created and returned so it can be printed once.
pub async fn bootstrap_admin_token(engine: &App) -> Result<Option<String>, String> {
    let store = engine.store();
    if let Ok(t) = std::env::var("ACCESSRAIL_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        store
            .upsert_token("admin", &tokens::hash(&t), engine.now())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let live = store
        .tokens()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|t| t.revoked_at.is_none());
    if live {
        return Ok(None);
    }
    let token = tokens::generate();
    store
        .upsert_token("admin", &tokens::hash(&token), engine.now())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(token))
}

/// Starts a scan in the background (the store lease keeps it to one per connection; at most
/// `BACKGROUND_SCANS` run at once, the rest wait their turn). Shutdown waits for it within the
/// grace period.
pub fn spawn_scan(state: Arc<AppState>, connection: String) {
    let st = state.clone();
    let mut tasks = state.tasks.lock().unwrap_or_else(PoisonError::into_inner);
    while tasks.try_join_next().is_some() {}
    tasks.spawn(async move {
        let Ok(_slot) = st.scan_slots.clone().acquire_owned().await else {
            return;
        };
        if let Err(e) = scan::scan(&st.engine, Some(&connection), Arc::new(Quiet)).await {
            tracing::warn!(connection, error = %e, "scan failed");
        }
    });
}

async fn scheduler(
    state: Arc<AppState>,
    cfg: ServeConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let tick = schedule::tick(&state.engine, &state.schedule);
        tokio::pin!(tick);
        tokio::select! {
            r = &mut tick => {
                match r {
                    Ok(ran) => for (conn, res) in ran {
                        match res {
                            Ok(o) => tracing::info!(conn, users = o.users, changes = o.changes, "scheduled scan done"),
                            Err(e) => tracing::warn!(conn, error = %e, "scheduled scan failed; it will be retried with backoff"),
                        }
                    },
                    Err(e) => return Err(format!("scheduler: {e}")),
                }
            }
            _ = stop.changed() => {
                // Let a running scan finish, within the grace period; then abandon it cleanly.
                let _ = tokio::time::timeout(cfg.grace, tick).await;
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.tick_every) => {}
            _ = state.scan_now.notified() => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Serves until `shutdown` completes or a part stops.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    cfg.check()?;
    let engine = state.engine.clone();
    // A replica whose master key cannot open the stored API keys would fail on every scan:
    // refuse to start, and say why.
    engine.check_master_key().await.map_err(|e| e.to_string())?;
    let abandoned = engine
        .store()
        .abandon_running_scans(engine.now(), "interrupted: the process stopped")
        .await
        .map_err(|e| e.to_string())?;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "scans left running by a stopped process were marked interrupted"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = crate::router(state.clone(), &cfg);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.changed().await;
            })
            .await
            .map_err(|e| format!("HTTP server: {e}"))
    });
    let cfg_grace = cfg.grace;
    let sched = tokio::spawn(scheduler(state.clone(), cfg, stop_rx));
    let stopper = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopper.send(true);
    });
    let mut server = server;
    let mut sched = sched;
    let (first, other) = tokio::select! {
        r = &mut server => (("HTTP server", r), sched),
        r = &mut sched => (("scheduler", r), server),
    };
    let _ = stop_tx.send(true);
    // The other part, and background scans, get the grace period to finish.
    let grace = cfg_grace;
    let mut background =
        std::mem::take(&mut *state.tasks.lock().unwrap_or_else(PoisonError::into_inner));
    let _ = tokio::time::timeout(grace + Duration::from_secs(2), async {
        let _ = other.await;
        while background.join_next().await.is_some() {}
    })
    .await;
    background.abort_all();
    // Whatever still runs past the grace period (a scan, "Scan now") is dropped: release this
    // process's leases at once and record its scans as interrupted, so the next scan need not
    // wait for the leases to expire.
    let _ = engine
        .release_everything("interrupted: the service shut down")
        .await;
    let shutting_down = *stop_tx.borrow();
    match first {
        (_, Ok(Ok(()))) if shutting_down => Ok(()),
        (part, Ok(Ok(()))) => Err(format!("the {part} stopped unexpectedly")),
        (_, Ok(Err(e))) => Err(e),
        (part, Err(e)) => Err(format!("the {part} failed: {e}")),
    }
}

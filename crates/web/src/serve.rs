//! `accessrail serve`: API, console, scheduler and job worker in one process. If any of them
//! stops, the process stops with an error; Ctrl-C / SIGTERM shuts down gracefully.
//!
//! Background work goes through the durable job queue (`engine::jobs`): the scheduler queues
//! due scans, "Scan now" and plan applies queue theirs, and the worker of whichever replica
//! takes a job runs it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use accessrail_engine::jobs::{self, Job};
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
    /// How often an idle job worker looks for queued jobs.
    pub job_poll: Duration,
    /// Run activity evidence scans on the scan schedule.
    pub evidence_scans: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            tick_every: Duration::from_secs(30),
            grace: Duration::from_secs(20),
            public_url: None,
            job_poll: Duration::from_millis(500),
            evidence_scans: true,
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

/// Queues a scan of the connection (by id) now ("Scan now"): whichever replica's worker takes
/// it runs it; the store lease keeps it to one scan per connection at a time.
pub async fn queue_scan(
    state: &AppState,
    connection_id: String,
    actor: String,
) -> Result<(), accessrail_store::StoreError> {
    state
        .enqueue(Job::ScanNow {
            connection: connection_id,
            actor,
            asked: state.engine.now(),
        })
        .await
}

/// Queues the scans that are due. It never runs one itself: a scheduler that stops (shutdown,
/// a killed replica) leaves nothing half done, and every replica queues the same jobs (the
/// queue keeps one of each).
async fn scheduler(
    state: Arc<AppState>,
    cfg: ServeConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut failures = 0u32;
    let mut forgot_at: Option<std::time::Instant> = None;
    loop {
        // Finished jobs are kept a week (to look into), then forgotten; checked hourly.
        if forgot_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            forgot_at = Some(std::time::Instant::now());
            match state
                .engine
                .store()
                .forget_finished_jobs(jobs::QUEUE, 7 * 86_400)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "forgot finished jobs older than a week"),
                Err(e) => tracing::warn!(error = %e, "cannot forget finished jobs"),
            }
            // API keys kept between a console Test and its Save outlive their use by minutes,
            // not by the session's hours.
            let expired = state.engine.now() - crate::ui::SETUP_KEY_LIFETIME;
            if let Err(e) = state.engine.store().forget_setup_keys(Some(expired)).await {
                tracing::warn!(error = %e, "cannot forget expired setup keys");
            }
        }
        // Activity evidence, on the scan schedule: each due connection in a task of its own
        // (the evidence lease keeps it to one at a time across replicas).
        let due_evidence = if cfg.evidence_scans {
            accessrail_engine::evidence::due(&state.engine, &state.schedule).await
        } else {
            Ok(vec![])
        };
        match due_evidence {
            Ok(due) => {
                for conn in due {
                    let state = state.clone();
                    tokio::spawn(async move {
                        match accessrail_engine::evidence::scan(&state.engine, &conn, None).await {
                            Ok(o) => tracing::info!(
                                connection = %o.connection,
                                requests = o.requests,
                                new = o.evidence_new,
                                "evidence scan done"
                            ),
                            Err(accessrail_engine::EngineError::Busy(_)) => {}
                            Err(e) => {
                                tracing::warn!(connection = %conn.name, error = %e, "evidence scan failed")
                            }
                        }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot tell which evidence scans are due"),
        }
        // Recurring access reviews whose next round is due start here; every replica may
        // try, the store keeps one next round per review.
        match accessrail_engine::reviews::start_due(&state.engine).await {
            Ok(started) if !started.is_empty() => {
                tracing::info!(reviews = ?started, "started the next round of recurring reviews")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot start recurring reviews"),
        }
        match schedule::due_jobs(&state.engine, &state.schedule).await {
            Ok(due) => {
                failures = 0;
                for job in due {
                    if let Err(e) = state.enqueue(job.clone()).await {
                        tracing::warn!(job = ?job, error = %e, "cannot queue a scan");
                    }
                }
            }
            // A database that is briefly away (a failover) is waited out; one that stays away
            // stops the process, so its supervisor sees it.
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "scheduler: cannot read the connections");
                if failures >= 10 {
                    return Err(format!("scheduler: {e}"));
                }
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
    let mut worker_stop = stop_rx.clone();
    let worker = tokio::spawn(jobs::work(
        state.runner.clone(),
        state.jobs.clone(),
        state.job_timing.poll,
        async move {
            let _ = worker_stop.changed().await;
        },
    ));
    let sched = tokio::spawn(scheduler(state.clone(), cfg, stop_rx));
    let stopper = stop_tx.clone();
    // Whether the stop was asked for (Ctrl-C / SIGTERM), as opposed to a part that ended.
    let requested = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = requested.clone();
    tokio::spawn(async move {
        shutdown.await;
        asked.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = stopper.send(true);
    });
    let mut server = server;
    let mut sched = sched;
    let mut worker = worker;
    let (first, others) = tokio::select! {
        r = &mut server => (("HTTP server", r), [sched, worker]),
        r = &mut sched => (("scheduler", r), [server, worker]),
        r = &mut worker => (("job worker", r), [server, sched]),
    };
    let _ = stop_tx.send(true);
    // The other parts, and the jobs the worker runs, get the grace period to finish.
    let grace = cfg_grace;
    let [a, b] = others;
    let (abort_a, abort_b) = (a.abort_handle(), b.abort_handle());
    let _ = tokio::time::timeout(grace + Duration::from_secs(2), async {
        let _ = a.await;
        let _ = b.await;
    })
    .await;
    abort_a.abort();
    abort_b.abort();
    // Whatever still runs past the grace period (a scan) is dropped: release this process's
    // leases at once and record its scans as interrupted, so the next scan need not wait for
    // the leases to expire. Its job goes to another replica once this one's heartbeats stop.
    let _ = engine
        .release_everything("interrupted: the service shut down")
        .await;
    let shutting_down = requested.load(std::sync::atomic::Ordering::SeqCst);
    match first {
        (_, Ok(Ok(()))) if shutting_down => Ok(()),
        (part, Ok(Ok(()))) => Err(format!("the {part} stopped unexpectedly")),
        (_, Ok(Err(e))) => Err(e),
        (part, Err(e)) => Err(format!("the {part} failed: {e}")),
    }
}

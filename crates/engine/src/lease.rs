//! Leases: one scan of a connection, one change of a group, one creation of an email at a time,
//! across processes and replicas. A lease lives `ttl` seconds unless its holder renews it; a
//! holder renews it every third of that while it works ([`hold`]), and checks it right before
//! each write ([`fence`]), so a holder that lost its lease (it stalled past the ttl and someone
//! else took over) stops before writing instead of overwriting the newer holder's work.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accessrail_store::{LeaseToken, Store};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// A unique holder name for one acquisition: this process's instance, what for, a random part.
pub fn holder<S: Store>(engine: &Engine<S>, purpose: &str) -> String {
    format!(
        "{} {purpose} {}",
        engine.instance(),
        crate::tokens::random_hex(4)
    )
}

/// Takes the lease now, or `None` when someone else holds it.
pub async fn try_acquire<S: Store>(
    engine: &Engine<S>,
    name: &str,
    purpose: &str,
) -> EngineResult<Option<LeaseToken>> {
    let me = holder(engine, purpose);
    Ok(engine
        .store()
        .acquire_lease(name, &me, engine.now(), engine.lease_ttl_secs())
        .await?)
}

/// Waits (up to `max_wait`) for the lease; `busy` says what is busy when it never comes free.
pub async fn wait_for<S: Store>(
    engine: &Engine<S>,
    name: &str,
    purpose: &str,
    max_wait: Duration,
    busy: impl FnOnce() -> String,
) -> EngineResult<LeaseToken> {
    let me = holder(engine, purpose);
    let mut waited = Duration::ZERO;
    loop {
        if let Some(t) = engine
            .store()
            .acquire_lease(name, &me, engine.now(), engine.lease_ttl_secs())
            .await?
        {
            return Ok(t);
        }
        if waited > max_wait {
            return Err(EngineError::Busy(busy()));
        }
        let jitter = u64::from_str_radix(&crate::tokens::random_hex(1), 16).unwrap_or(0) % 50;
        let pause = Duration::from_millis(25 + jitter);
        tokio::time::sleep(pause).await;
        waited += pause;
    }
}

/// Checks, right before a write, that `token` still holds its lease (and extends it).
pub async fn fence<S: Store>(engine: &Engine<S>, token: &LeaseToken) -> EngineResult<()> {
    if engine
        .store()
        .renew_lease(token, engine.now(), engine.lease_ttl_secs())
        .await?
    {
        Ok(())
    } else {
        Err(EngineError::LeaseLost(format!(
            "lost the lease {} (another process took over after this one stalled); stopped before writing",
            token.name
        )))
    }
}

fn beat_period(ttl_secs: i64) -> Duration {
    let ms = u64::try_from(ttl_secs).unwrap_or(1).saturating_mul(1000) / 3;
    Duration::from_millis(ms.max(100))
}

/// Runs `work` while renewing the leases every third of their ttl. When a renewal finds a lease
/// gone, `lost` is set (the work checks it, and [`fence`] before writes, and stops); a failed
/// renewal (a busy database) is tried again at the next beat.
pub async fn hold<S: Store, F: Future>(
    engine: &Engine<S>,
    tokens: &[LeaseToken],
    lost: &AtomicBool,
    work: F,
) -> F::Output {
    let period = beat_period(engine.lease_ttl_secs());
    let heartbeat = async {
        'beat: loop {
            tokio::time::sleep(period).await;
            for token in tokens {
                match engine
                    .store()
                    .renew_lease(token, engine.now(), engine.lease_ttl_secs())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::warn!(lease = %token.name, "lease lost while held");
                        break 'beat;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %token.name, error = %e, "lease renewal failed")
                    }
                }
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::pin!(work);
    tokio::pin!(heartbeat);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = &mut heartbeat => {}
        }
    }
}

/// Runs `work` holding `tokens` (renewed as in [`hold`]), then releases them. For work that
/// checks its leases with [`fence`] before each write rather than watching for a loss.
pub async fn held<S: Store, F: Future>(
    engine: &Engine<S>,
    tokens: &[LeaseToken],
    work: F,
) -> F::Output {
    let lost = AtomicBool::new(false);
    let out = hold(engine, tokens, &lost, work).await;
    for t in tokens {
        release(engine, t).await;
    }
    out
}

/// Releases a lease; failures are logged, the lease then expires on its own.
pub async fn release<S: Store>(engine: &Engine<S>, token: &LeaseToken) {
    if let Err(e) = engine
        .store()
        .release_lease(&token.name, &token.holder)
        .await
    {
        tracing::warn!(lease = %token.name, error = %e, "could not release the lease; it expires on its own");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_three_times_per_ttl_but_not_too_often() {
        assert_eq!(beat_period(60), Duration::from_secs(20));
        assert_eq!(beat_period(1), Duration::from_millis(333));
        assert_eq!(beat_period(0), Duration::from_millis(100));
    }
}

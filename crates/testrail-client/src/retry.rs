//! Retry policy, request budget and the events that make retries visible.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::clock::Clock;

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay (before jitter).
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Wait when a 429 has no usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            default_retry_after: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff delays: exponential with jitter, bounded.
    pub(crate) fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Something the client did that a caller may want to report: retries and waits are never
/// hidden.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// An HTTP request is about to be sent (every attempt, retries included).
    RequestSent { method: String },
    /// A request failed and will be sent again after `delay`.
    Retrying {
        method: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        delay: Duration,
        reason: String,
    },
    /// TestRail answered 429; the client waits `wait` as `Retry-After` asked.
    RateLimited { method: String, wait: Duration },
    /// The shared request budget (see [`SharedBudget`]) could not be asked; the request went
    /// ahead under this process's own budget.
    SharedBudgetUnavailable { error: String },
    /// The request budget is used up; the client waits `wait` before sending.
    BudgetWait { wait: Duration },
    /// A write whose answer was lost was checked before being sent again.
    WriteRecovered { method: String, found: bool },
}

/// Receives [`Event`]s.
pub type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// A request budget shared with other processes that talk to the same TestRail instance (for
/// example through a database), since TestRail's rate limit is per instance, not per process.
pub trait SharedBudget: Send + Sync {
    /// Takes one request slot now if the shared budget has room (`Ok(None)`); otherwise says
    /// how long to wait before asking again. An error lets the request through: the process's
    /// own budget still applies, and the failure is reported as an event.
    fn take(&self) -> Pin<Box<dyn Future<Output = Result<Option<Duration>, String>> + Send + '_>>;
}

/// A sliding one-minute window: at most `per_minute` requests in any 60 seconds.
pub(crate) struct Budget {
    per_minute: u32,
    sent: Mutex<VecDeque<Duration>>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Budget({}/min)", self.per_minute)
    }
}

const WINDOW: Duration = Duration::from_secs(60);

impl Budget {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits (through `clock`) until one more request fits, then records it.
    pub(crate) async fn acquire(&self, clock: &dyn Clock, hook: Option<&EventHook>) {
        loop {
            let wait = {
                let now = clock.now();
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                while sent
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) >= WINDOW)
                {
                    sent.pop_front();
                }
                if (sent.len() as u32) < self.per_minute {
                    sent.push_back(now);
                    return;
                }
                sent.front()
                    .map_or(WINDOW, |oldest| (*oldest + WINDOW).saturating_sub(now))
            };
            if let Some(h) = hook {
                h(&Event::BudgetWait { wait });
            }
            clock.sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        let delays: Vec<Duration> = p.backoff().take(12).collect();
        assert_eq!(delays.len(), 12);
        // With jitter each delay is within [d, 2d) of the un-jittered value, capped.
        assert!(delays[0] >= p.base_delay && delays[0] < p.base_delay * 2);
        assert!(delays.iter().all(|d| *d <= p.max_delay * 2));
        assert!(delays[5] >= Duration::from_secs(16));
    }
}

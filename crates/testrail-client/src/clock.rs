//! The client's time source. Every wait (backoff, `Retry-After`, the request budget) goes
//! through a [`Clock`], so tests can replace it and never wait for real.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A boxed sleep future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Monotonic time and sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock: `Instant` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

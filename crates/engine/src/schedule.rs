//! Recurring scans: each connection on its own interval with jitter, failing scans retried
//! with backoff, continuing from the last recorded scan after a restart. Time comes from the
//! engine's clock, so tests drive it without sleeping.

use std::sync::Arc;

use accessrail_store::{Connection, ScanRecord, ScanStatus, Store};

use crate::engine::Engine;
use crate::error::EngineResult;
use crate::scan::{self, Quiet, ScanOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Seconds between scans of a connection.
    pub interval: i64,
    /// Up to this many seconds are added, per connection, so instances do not scan in lockstep.
    pub jitter: i64,
    /// First retry after a failed scan; doubles per consecutive failure, capped at `interval`.
    pub retry_base: i64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            interval: 6 * 3600,
            jitter: 10 * 60,
            retry_base: 5 * 60,
        }
    }
}

/// A stable per-connection jitter in `0..=max`.
pub fn jitter_for(connection_id: &str, max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    let h = connection_id
        .bytes()
        .fold(1_469_598_103_934_665_603u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
        });
    (h % (max as u64 + 1)) as i64
}

/// When the next scan is due, from the history: `(finished_at, succeeded)` of recorded scans,
/// oldest first. No history: due at once.
pub fn next_due(history: &[(i64, bool)], schedule: &Schedule, jitter: i64) -> i64 {
    let Some(&(last_at, last_ok)) = history.last() else {
        return i64::MIN;
    };
    if last_ok {
        return last_at + schedule.interval + jitter;
    }
    let failures = history.iter().rev().take_while(|(_, ok)| !ok).count() as u32;
    let backoff = schedule
        .retry_base
        .saturating_mul(1i64 << failures.saturating_sub(1).min(20))
        .min(schedule.interval);
    last_at + backoff
}

/// When a connection's next scan is due, from its recorded scans and its own interval (or the
/// default one).
fn due_at(conn: &Connection, scans: &[ScanRecord], schedule: &Schedule) -> i64 {
    let history: Vec<(i64, bool)> = scans
        .iter()
        .filter(|s| s.status != ScanStatus::Running)
        .map(|s| {
            (
                s.finished_at.unwrap_or(s.started_at),
                s.status == ScanStatus::Succeeded,
            )
        })
        .collect();
    let own = Schedule {
        interval: conn.scan_interval_secs.unwrap_or(schedule.interval),
        ..*schedule
    };
    next_due(&history, &own, jitter_for(&conn.id, schedule.jitter))
}

/// What the scheduler knows of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub connection: String,
    pub next_due: Option<i64>,
    pub last_ok: Option<i64>,
    pub failing: bool,
}

/// Scans every connection that is due at the engine's current time. Connections being scanned
/// elsewhere (the store lease) are skipped this round.
pub async fn tick<S: Store>(
    engine: &Engine<S>,
    schedule: &Schedule,
) -> EngineResult<Vec<(String, Result<ScanOutcome, String>)>> {
    let now = engine.now();
    let mut ran = Vec::new();
    for conn in engine.store().connections().await? {
        let scans = engine.store().scans(&conn.id).await?;
        if due_at(&conn, &scans, schedule) > now {
            continue;
        }
        let name = conn.name.clone();
        match scan_if_still_due(engine, conn, schedule, now).await {
            Err(crate::EngineError::ScanRunning(_)) | Ok(None) => {}
            Err(e) => ran.push((name, Err(e.to_string()))),
            Ok(Some(o)) => ran.push((name, Ok(o))),
        }
    }
    Ok(ran)
}

/// The scan jobs due now: one per connection whose next scan is due. Every replica's scheduler
/// computes the same job for a connection (its due time comes from the shared scan history), so
/// the queue's key keeps one of them. The key also names the current interval, so a connection
/// whose history does not move (nothing could record a scan) is tried again an interval later.
pub async fn due_jobs<S: Store>(
    engine: &Engine<S>,
    schedule: &Schedule,
) -> EngineResult<Vec<crate::jobs::Job>> {
    let now = engine.now();
    let mut jobs = Vec::new();
    for conn in engine.store().connections().await? {
        let scans = engine.store().scans(&conn.id).await?;
        let due = due_at(&conn, &scans, schedule);
        if due > now {
            continue;
        }
        let every = conn.scan_interval_secs.unwrap_or(schedule.interval).max(60);
        jobs.push(crate::jobs::Job::ScheduledScan {
            connection: conn.id.clone(),
            due: due.max(0),
            round: now.div_euclid(every),
        });
    }
    Ok(jobs)
}

/// Scans a connection that was seen due, if it still is once its scan lease is held: between
/// the look at its history and the lease, another process may have scanned it (`Ok(None)`).
pub async fn scan_if_still_due<S: Store>(
    engine: &Engine<S>,
    conn: Connection,
    schedule: &Schedule,
    now: i64,
) -> EngineResult<Option<ScanOutcome>> {
    let still_due = |c: &Connection, history: &[ScanRecord]| due_at(c, history, schedule) <= now;
    scan::scan_if(engine, conn, Arc::new(Quiet), still_due).await
}

/// The schedule of every connection, for the console.
pub async fn statuses<S: Store>(
    engine: &Engine<S>,
    schedule: &Schedule,
) -> EngineResult<Vec<Status>> {
    let mut out = Vec::new();
    for conn in engine.store().connections().await? {
        let scans = engine.store().scans(&conn.id).await?;
        let due = due_at(&conn, &scans, schedule);
        out.push(Status {
            connection: conn.name.clone(),
            next_due: Some(due).filter(|d| *d != i64::MIN),
            last_ok: scans
                .iter()
                .rev()
                .find(|s| s.status == ScanStatus::Succeeded)
                .and_then(|s| s.finished_at),
            failing: scans
                .iter()
                .rev()
                .find(|s| s.status != ScanStatus::Running)
                .is_some_and(|s| s.status == ScanStatus::Failed),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times() {
        let s = Schedule {
            interval: 3600,
            jitter: 0,
            retry_base: 60,
        };
        assert_eq!(next_due(&[], &s, 0), i64::MIN);
        assert_eq!(next_due(&[(1000, true)], &s, 0), 4600);
        assert_eq!(next_due(&[(1000, true)], &s, 30), 4630);
        assert_eq!(next_due(&[(1000, true), (5000, false)], &s, 0), 5060);
        assert_eq!(
            next_due(&[(1000, true), (5000, false), (5060, false)], &s, 0),
            5180
        );
        assert_eq!(
            next_due(&[(0, false); 30], &s, 0),
            3600,
            "backoff capped at the interval"
        );
        let j = jitter_for("conn-a", 600);
        assert!((0..=600).contains(&j));
        assert_eq!(j, jitter_for("conn-a", 600));
    }
}

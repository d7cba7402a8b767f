//! The durable job queue's storage: apalis' PostgreSQL and SQLite storages, in the store's own
//! database, so every replica on one PostgreSQL shares one queue (and a SQLite installation
//! keeps its queued work across a restart). apalis owns its tables (`apalis.jobs` and
//! `apalis.workers` on PostgreSQL, `Jobs` and `Workers` on SQLite) and its migrations, which
//! are recorded in a history table of their own (`_apalis_migrations`), so they never mix with
//! Accessrail's.
//!
//! What a job means, and how it is run, is the engine's business (`engine::jobs`).

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::task::builder::TaskBuilder;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::any::AnyStore;
use crate::error::{StoreError, StoreResult};

/// The table where apalis' migrations are recorded (Accessrail's stay in `_sqlx_migrations`).
const APALIS_MIGRATIONS: &str = "_apalis_migrations";

/// How workers prove they are alive. A job whose worker missed `missed_heartbeats` beats in a
/// row is handed to another worker (apalis re-enqueues it, counting one more attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTiming {
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// How often an idle worker looks for new jobs.
    pub poll: Duration,
}

impl JobTiming {
    /// After how long a silent worker's jobs go to another worker.
    pub fn orphaned_after(&self) -> Duration {
        self.heartbeat * u32::try_from(self.missed_heartbeats).unwrap_or(u32::MAX)
    }
}

/// One queue on the store's back end.
pub enum JobStorage<T> {
    Postgres(PostgresStorage<T>),
    Sqlite(SqliteStorage<T>),
}

impl<T> Clone for JobStorage<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Postgres(s) => Self::Postgres(s.clone()),
            Self::Sqlite(s) => Self::Sqlite(s.clone()),
        }
    }
}

impl<T> std::fmt::Debug for JobStorage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "JobStorage::Postgres",
            Self::Sqlite(_) => "JobStorage::Sqlite",
        })
    }
}

/// A job to push: its arguments, and an optional key that makes a second push of the same
/// work a no-op (the first one stays, whatever its state).
#[derive(Debug, Clone)]
pub struct NewJob<T> {
    pub args: T,
    pub key: Option<String>,
    /// How often apalis may run it after it failed or its worker died (at least 1).
    pub max_attempts: usize,
}

impl AnyStore {
    /// Creates apalis' tables if needed (once per database; replicas starting together take
    /// turns on the migration lock) and opens the queue named `queue`.
    pub async fn job_storage<T>(
        &self,
        queue: &str,
        timing: JobTiming,
    ) -> StoreResult<JobStorage<T>> {
        match self {
            AnyStore::Postgres(s) => {
                let mut m = PostgresStorage::<()>::migrations();
                m.dangerous_set_table_name(APALIS_MIGRATIONS);
                m.run(&s.pool).await?;
                let cfg = apalis_postgres::Config::default()
                    .queue(queue)
                    .heartbeat_interval(timing.heartbeat)
                    .missed_heartbeats(timing.missed_heartbeats)
                    .batch_size(1);
                Ok(JobStorage::Postgres(
                    PostgresStorage::new(&s.pool).with_config(cfg),
                ))
            }
            AnyStore::Sqlite(s) => {
                let mut m = SqliteStorage::<()>::migrations();
                m.dangerous_set_table_name(APALIS_MIGRATIONS);
                m.run(&s.pool).await?;
                let cfg = apalis_sqlite::Config::default()
                    .queue(queue)
                    .heartbeat_interval(timing.heartbeat)
                    .missed_heartbeats(timing.missed_heartbeats)
                    .batch_size(1);
                Ok(JobStorage::Sqlite(
                    SqliteStorage::new(&s.pool).with_config(cfg),
                ))
            }
        }
    }
}

impl AnyStore {
    /// How many jobs the queue holds: all of them (finished jobs stay in apalis' tables), or
    /// only those not finished yet (pending, taken or running). For health pages and tests.
    pub async fn job_count(&self, queue: &str, unfinished_only: bool) -> StoreResult<i64> {
        Ok(match self {
            AnyStore::Postgres(s) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1
                       AND (NOT $2 OR status IN ('Pending', 'Queued', 'Running'))",
                )
                .bind(queue)
                .bind(unfinished_only)
                .fetch_one(&s.pool)
                .await?
            }
            AnyStore::Sqlite(s) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM Jobs WHERE job_type = ?
                       AND (NOT ? OR status IN ('Pending', 'Queued', 'Running'))",
                )
                .bind(queue)
                .bind(unfinished_only)
                .fetch_one(&s.pool)
                .await?
            }
        })
    }
}

impl AnyStore {
    /// Forgets the jobs that finished (done, killed, or failed for good) more than
    /// `older_than_secs` ago; apalis keeps them otherwise. Returns how many went.
    pub async fn forget_finished_jobs(
        &self,
        queue: &str,
        older_than_secs: i64,
    ) -> StoreResult<u64> {
        Ok(match self {
            AnyStore::Postgres(s) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE job_type = $1
                   AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))
                   AND done_at < now() - make_interval(secs => $2)",
            )
            .bind(queue)
            .bind(older_than_secs as f64)
            .execute(&s.pool)
            .await?
            .rows_affected(),
            AnyStore::Sqlite(s) => sqlx::query(
                "DELETE FROM Jobs WHERE job_type = ?
                   AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))
                   AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?",
            )
            .bind(queue)
            .bind(older_than_secs)
            .execute(&s.pool)
            .await?
            .rows_affected(),
        })
    }
}

impl<T> JobStorage<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    /// Queues a job. A job with the same key as one queued before is dropped (the first stays,
    /// whatever its state): SQLite's storage ignores it, PostgreSQL's refuses it, which is
    /// taken as the same answer.
    pub async fn push(&mut self, job: NewJob<T>) -> StoreResult<()> {
        let mut b = TaskBuilder::new(job.args).max_attempts(job.max_attempts.max(1));
        if let Some(k) = &job.key {
            b = b.idempotency_key(k);
        }
        let task = b.build();
        let pushed = match self {
            Self::Postgres(s) => s.push_task(task).await.map_err(|e| e.to_string()),
            Self::Sqlite(s) => s.push_task(task).await.map_err(|e| e.to_string()),
        };
        match pushed {
            Ok(()) => Ok(()),
            // The key's unique index (`idx_jobs_idempotency_key`) refused a second copy.
            Err(e) if job.key.is_some() && e.contains("idx_jobs_idempotency_key") => Ok(()),
            Err(e) => Err(StoreError::Database(format!("queueing a job: {e}"))),
        }
    }
}

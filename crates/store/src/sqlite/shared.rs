//! What every process shares through the database: console sessions (and the key a session's
//! Test passed, kept for its Save), kept provisioning plans, instance settings.

use super::*;

#[derive(FromRow)]
struct PlanRow {
    id: String,
    connection: String,
    actions: String,
    fingerprint: String,
    actor: String,
    max_deactivations: i64,
    force: bool,
    created_at: i64,
    status: String,
    started_at: Option<i64>,
    outcome: Option<String>,
}

impl PlanRow {
    fn into_record(self) -> StoreResult<PlanRecord> {
        Ok(PlanRecord {
            status: PlanStatus::parse(&self.status).ok_or_else(|| {
                StoreError::Corrupt(format!("plan {} status {:?}", self.id, self.status))
            })?,
            id: self.id,
            connection: self.connection,
            actions: self.actions,
            fingerprint: self.fingerprint,
            actor: self.actor,
            max_deactivations: u32::try_from(self.max_deactivations).unwrap_or(u32::MAX),
            force: self.force,
            created_at: self.created_at,
            started_at: self.started_at,
            outcome: self.outcome,
        })
    }
}

const PLAN_COLS: &str = "id, connection, actions, fingerprint, actor, max_deactivations, force, created_at, status, \
     started_at, outcome";

impl SqliteStore {
    pub(super) async fn create_session_impl(
        &self,
        s: SessionRecord,
        expired_before: i64,
        max: u64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE created_at < ?")
            .bind(expired_before)
            .execute(&mut *tx)
            .await?;
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&mut *tx)
            .await?;
        let over = kept - i(max) + 1;
        if over > 0 {
            sqlx::query(
                "DELETE FROM sessions WHERE id_hash IN
                   (SELECT id_hash FROM sessions ORDER BY created_at, seq LIMIT ?)",
            )
            .bind(over)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO sessions (id_hash, csrf, token, token_hash, created_at, seq)
             VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM sessions))",
        )
        .bind(&s.id_hash)
        .bind(&s.csrf)
        .bind(&s.token)
        .bind(&s.token_hash)
        .bind(s.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn session_impl(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id_hash, csrf, token, token_hash, created_at FROM sessions WHERE id_hash = ?",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(id_hash, csrf, token, token_hash, created_at)| SessionRecord {
                id_hash,
                csrf,
                token,
                token_hash,
                created_at,
            },
        ))
    }

    pub(super) async fn delete_session_impl(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn session_count_impl(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(u(n))
    }

    pub(super) async fn keep_setup_key_impl(
        &self,
        k: PendingSetupKey,
        expired_before: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM session_setup_keys WHERE created_at < ?")
            .bind(expired_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO session_setup_keys (session_hash, target, email, secret, secret_key_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(session_hash) DO UPDATE SET target = excluded.target, email = excluded.email,
                secret = excluded.secret, secret_key_id = excluded.secret_key_id, created_at = excluded.created_at",
        )
        .bind(&k.session_hash)
        .bind(&k.target)
        .bind(&k.email)
        .bind(&k.secret.bytes)
        .bind(&k.secret.key_id)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn setup_key_impl(
        &self,
        session_hash: &str,
        not_before: i64,
    ) -> StoreResult<Option<PendingSetupKey>> {
        let row: Option<(String, String, String, Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT session_hash, target, email, secret, secret_key_id, created_at
             FROM session_setup_keys WHERE session_hash = ? AND created_at >= ?",
        )
        .bind(session_hash)
        .bind(not_before)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(session_hash, target, email, bytes, key_id, created_at)| PendingSetupKey {
                session_hash,
                target,
                email,
                secret: SealedSecret { key_id, bytes },
                created_at,
            },
        ))
    }

    pub(super) async fn forget_setup_keys_impl(
        &self,
        kept_before: Option<i64>,
    ) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM session_setup_keys WHERE created_at < ?")
                .bind(kept_before.unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub(super) async fn drop_setup_key_impl(&self, session_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM session_setup_keys WHERE session_hash = ?")
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn insert_plan_impl(
        &self,
        p: PlanRecord,
        forget_before: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM plans WHERE created_at < ?")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO plans ({PLAN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&p.id)
        .bind(&p.connection)
        .bind(&p.actions)
        .bind(&p.fingerprint)
        .bind(&p.actor)
        .bind(i64::from(p.max_deactivations))
        .bind(p.force)
        .bind(p.created_at)
        .bind(p.status.as_str())
        .bind(p.started_at)
        .bind(&p.outcome)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn claim_plan_impl(
        &self,
        id: &str,
        stale_before: i64,
    ) -> StoreResult<PlanClaim> {
        let mut tx = self.pool.begin().await?;
        // One statement: of two processes claiming at once, one changes the row, the other
        // finds it applying.
        let claimed: Option<PlanRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE plans SET status = 'applying' WHERE id = ? AND status = 'ready' AND created_at >= ?
             RETURNING {PLAN_COLS}"
        )))
        .bind(id)
        .bind(stale_before)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match claimed {
            Some(row) => PlanClaim::Claimed(row.into_record()?),
            None => {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM plans WHERE id = ?")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match status.as_deref().and_then(PlanStatus::parse) {
                    None => PlanClaim::NotFound,
                    Some(PlanStatus::Applying) => PlanClaim::BeingApplied,
                    Some(PlanStatus::Applied) => PlanClaim::AlreadyApplied,
                    Some(PlanStatus::Interrupted) => PlanClaim::Interrupted,
                    Some(PlanStatus::Ready) => {
                        sqlx::query("DELETE FROM plans WHERE id = ? AND status = 'ready'")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        PlanClaim::Stale
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn start_plan_apply_impl(&self, id: &str, now: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE plans SET started_at = ? WHERE id = ? AND status = 'applying' AND started_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(super) async fn finish_plan_impl(
        &self,
        id: &str,
        status: PlanStatus,
        outcome: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE plans SET status = ?, outcome = ? WHERE id = ? AND status = 'applying'",
        )
        .bind(status.as_str())
        .bind(outcome)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn plan_impl(&self, id: &str) -> StoreResult<Option<PlanRecord>> {
        let row: Option<PlanRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAN_COLS} FROM plans WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(PlanRow::into_record).transpose()
    }

    pub(super) async fn release_plan_impl(&self, id: &str, status: PlanStatus) -> StoreResult<()> {
        sqlx::query("UPDATE plans SET status = ? WHERE id = ? AND status = 'applying'")
            .bind(status.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn flows_impl(&self, connection_id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT text FROM connection_flows WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn set_flows_impl(
        &self,
        connection_id: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        match text {
            Some(t) => {
                sqlx::query(
                    "INSERT INTO connection_flows (connection_id, text, updated_at) VALUES (?, ?, ?)
                     ON CONFLICT(connection_id) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
                )
                .bind(connection_id)
                .bind(t)
                .bind(now)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM connection_flows WHERE connection_id = ?")
                    .bind(connection_id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn set_setting_impl(&self, name: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instance_settings (name, value) VALUES (?, ?)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn claim_setting_impl(&self, name: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO instance_settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let kept: String = sqlx::query_scalar("SELECT value FROM instance_settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(kept)
    }

    pub(super) async fn take_request_slot_impl(
        &self,
        instance: &str,
        per_minute: u32,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        // The first statement writes: SQLite's write lock serialises every taker.
        sqlx::query("INSERT INTO request_budget_instances (instance) VALUES (?) ON CONFLICT(instance) DO NOTHING")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        let taken = take_slot_sqlite(&mut tx, instance, per_minute, now).await?;
        tx.commit().await?;
        Ok(taken)
    }
}

/// The sliding window of one instance's budget, inside the caller's (locked) transaction.
async fn take_slot_sqlite(
    tx: &mut SqliteConnection,
    instance: &str,
    per_minute: u32,
    now: i64,
) -> StoreResult<Option<i64>> {
    sqlx::query("DELETE FROM request_budget_seconds WHERE instance = ? AND at <= ?")
        .bind(instance)
        .bind(now - 60)
        .execute(&mut *tx)
        .await?;
    let (used, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COALESCE(SUM(n), 0), MIN(at) FROM request_budget_seconds WHERE instance = ?",
    )
    .bind(instance)
    .fetch_one(&mut *tx)
    .await?;
    if used < i64::from(per_minute.max(1)) {
        sqlx::query(
            "INSERT INTO request_budget_seconds (instance, at, n) VALUES (?, ?, 1)
             ON CONFLICT(instance, at) DO UPDATE SET n = n + 1",
        )
        .bind(instance)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        return Ok(None);
    }
    Ok(Some((oldest.unwrap_or(now) + 60 - now).max(1)))
}

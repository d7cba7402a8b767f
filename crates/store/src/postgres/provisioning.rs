//! Provisioning: the switch per connection, protected accounts, the append-only hash-chained
//! audit log, and the revisions provisioning actions record.

use super::*;

impl PgStore {
    pub(super) async fn set_provisioning_impl(
        &self,
        connection_id: &str,
        enabled: bool,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        write_lock(&mut tx).await?;
        sqlx::query("UPDATE connections SET provisioning_enabled = $1 WHERE id = $2")
            .bind(enabled)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn protect_impl(
        &self,
        connection_id: &str,
        p: ProtectedAccount,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        write_lock(&mut tx).await?;
        sqlx::query(
            "INSERT INTO protected_accounts (connection_id, email, owner, reason, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(connection_id, email) DO UPDATE SET owner = excluded.owner, reason = excluded.reason,
             expires_at = excluded.expires_at",
        )
        .bind(connection_id)
        .bind(p.email.to_lowercase())
        .bind(&p.owner)
        .bind(&p.reason)
        .bind(p.expires_at)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn unprotect_impl(
        &self,
        connection_id: &str,
        email: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        write_lock(&mut tx).await?;
        let res =
            sqlx::query("DELETE FROM protected_accounts WHERE connection_id = $1 AND email = $2")
                .bind(connection_id)
                .bind(email.trim().to_lowercase())
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn protected_impl(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<ProtectedAccount>> {
        let rows: Vec<(String, String, String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT email, owner, reason, expires_at, created_at FROM protected_accounts WHERE connection_id = $1 ORDER BY email",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(email, owner, reason, expires_at, created_at)| ProtectedAccount {
                    email,
                    owner,
                    reason,
                    expires_at,
                    created_at,
                },
            )
            .collect())
    }

    pub(super) async fn append_audit_impl(&self, record: AuditRecord) -> StoreResult<AuditEntry> {
        let mut tx = self.pool.begin().await?;
        // Take the write lock before reading the last hash, so two writers (on any replica)
        // cannot both append after the same head and fork the chain. The read below runs after
        // the lock is granted, so it sees every entry committed before (READ COMMITTED).
        write_lock(&mut tx).await?;
        let prev: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let prev = prev.unwrap_or_else(|| audit::GENESIS.to_string());
        let hash = audit::chain_hash(&prev, &record);
        let calls = serde_json::to_string(&record.calls).unwrap_or_else(|_| "[]".into());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, connection, action, target, before, after, calls, outcome, message, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(record.at)
        .bind(&record.actor)
        .bind(&record.connection)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.before)
        .bind(&record.after)
        .bind(calls)
        .bind(record.outcome.as_str())
        .bind(&record.message)
        .bind(&prev)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            id,
            record,
            prev_hash: prev,
            hash,
        })
    }

    pub(super) async fn audit_log_impl(&self) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as("SELECT * FROM audit_log ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(AuditRow::into_entry).collect()
    }

    pub(super) async fn recent_audit_impl(
        &self,
        before: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT * FROM audit_log WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRow::into_entry).collect()
    }

    pub(super) async fn record_provision_impl(
        &self,
        connection_id: &str,
        audit_id: i64,
        now: i64,
        update: ProvisionUpdate,
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        // The write lock first, so the revision number is taken under it: it is higher than
        // every revision committed before, scans included.
        write_lock(&mut tx).await?;
        let rev = new_revision(&mut tx, connection_id, "provision", now).await?;
        let row_id: i64 = sqlx::query_scalar(
            "INSERT INTO scans (connection_id, started_at, finished_at, status, kind, revision)
             VALUES ($1, $2, $3, 'succeeded', 'provision', $4) RETURNING id",
        )
        .bind(connection_id)
        .bind(now)
        .bind(now)
        .bind(rev)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(a) = &update.account {
            sqlx::query("UPDATE account_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_user_id = $3 AND valid_to_rev IS NULL")
                .bind(rev)
                .bind(connection_id)
                .bind(i(a.id))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO account_versions (connection_id, valid_from_rev, {ACCOUNT_COLS}, name_key, email_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )))
            .bind(connection_id)
            .bind(rev)
            .bind(i(a.id))
            .bind(&a.name)
            .bind(&a.email)
            .bind(a.is_active)
            .bind(a.role_id.map(i))
            .bind(&a.role)
            .bind(a.is_admin)
            .bind(a.fields.as_str())
            .bind(keys(a).0)
            .bind(keys(a).1)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(g) = &update.group {
            let gid = i(g.id);
            // The group's name (a new group: its first version; a rename: a new version).
            let named: Option<Option<String>> = sqlx::query_scalar(
                "SELECT name FROM group_versions WHERE connection_id = $1 AND tr_group_id = $2 AND valid_to_rev IS NULL",
            )
            .bind(connection_id)
            .bind(gid)
            .fetch_optional(&mut *tx)
            .await?;
            if named.as_ref() != Some(&g.name) {
                if named.is_some() {
                    sqlx::query("UPDATE group_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_group_id = $3 AND valid_to_rev IS NULL")
                        .bind(rev).bind(connection_id).bind(gid).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO group_versions (connection_id, tr_group_id, valid_from_rev, name) VALUES ($1, $2, $3, $4)")
                    .bind(connection_id).bind(gid).bind(rev).bind(&g.name).execute(&mut *tx).await?;
            }
            let current: Vec<i64> = sqlx::query_scalar(
                "SELECT tr_user_id FROM membership_versions WHERE connection_id = $1 AND tr_group_id = $2 AND valid_to_rev IS NULL",
            )
            .bind(connection_id)
            .bind(gid)
            .fetch_all(&mut *tx)
            .await?;
            let wanted: BTreeSet<i64> = g.member_ids.iter().map(|m| i(*m)).collect();
            for uid in current.iter().filter(|u| !wanted.contains(u)) {
                sqlx::query("UPDATE membership_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_group_id = $3 AND tr_user_id = $4 AND valid_to_rev IS NULL")
                    .bind(rev).bind(connection_id).bind(gid).bind(uid).execute(&mut *tx).await?;
            }
            for uid in wanted.iter().filter(|u| !current.contains(u)) {
                sqlx::query("INSERT INTO membership_versions (connection_id, tr_group_id, tr_user_id, valid_from_rev) VALUES ($1, $2, $3, $4)")
                    .bind(connection_id).bind(gid).bind(uid).bind(rev).execute(&mut *tx).await?;
            }
        }
        for (gid, uid) in &update.joined {
            sqlx::query(
                "INSERT INTO membership_versions (connection_id, tr_group_id, tr_user_id, valid_from_rev)
                 SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM membership_versions WHERE connection_id = $1
                   AND tr_group_id = $2 AND tr_user_id = $3 AND valid_to_rev IS NULL)",
            )
            .bind(connection_id)
            .bind(i(*gid))
            .bind(i(*uid))
            .bind(rev)
            .execute(&mut *tx)
            .await?;
        }
        for c in &update.changes {
            sqlx::query(
                "INSERT INTO changes (connection_id, scan_id, at, kind, tr_user_id, tr_group_id, subject, before, after, audit_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(connection_id)
            .bind(row_id)
            .bind(now)
            .bind(c.kind.as_str())
            .bind(c.user.map(i))
            .bind(c.group.map(i))
            .bind(&c.subject)
            .bind(&c.before)
            .bind(&c.after)
            .bind(audit_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut changes = update.changes.len() as i64;
        if let Some(project) = &update.project {
            let n = super::projects::record(
                &mut tx,
                connection_id,
                rev,
                project,
                update.project_principal,
                row_id,
                now,
                audit_id,
            )
            .await?;
            changes += i(n);
        }
        if update.account.is_some() {
            matches::refresh(&mut tx, connection_id, matches::Rev::At(rev)).await?;
        }
        listing::recount(&mut tx, connection_id).await?;
        let seats: i64 =
            sqlx::query_scalar("SELECT active FROM account_counts WHERE connection_id = $1")
                .bind(connection_id)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("UPDATE scans SET active_seats = $1, changes = $2 WHERE id = $3")
            .bind(seats)
            .bind(changes)
            .bind(row_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row_id)
    }
}

//! One account, as the console's page of it shows it: its current version with its fields,
//! groups and match, its changes, and the audit entries about it.

use super::*;

#[derive(FromRow)]
struct OneRow {
    tr_user_id: i64,
    name: Option<String>,
    email: Option<String>,
    is_active: bool,
    role_id: Option<i64>,
    role_name: Option<String>,
    is_admin: Option<bool>,
    fields: String,
    state: Option<String>,
    identity_id: Option<String>,
    identity_name: Option<String>,
    identity_status: Option<String>,
    pinned: Option<bool>,
    reason: Option<String>,
    candidates: Option<String>,
}

impl PgStore {
    pub(super) async fn account_impl(
        &self,
        connection_id: &str,
        account_id: u64,
    ) -> StoreResult<Option<ListedAccount>> {
        // One read transaction: the account, its match and its groups from one snapshot.
        let mut conn = self.pool.begin().await?;
        read_snapshot(&mut conn).await?;
        let row: Option<OneRow> = sqlx::query_as(
            "SELECT a.tr_user_id, a.name, a.email, a.is_active, a.role_id, a.role_name, a.is_admin, a.fields,
                    m.state, m.identity_id, m.identity_name, m.identity_status, m.pinned, m.reason, m.candidates
             FROM account_versions a LEFT JOIN match_versions m
               ON m.connection_id = a.connection_id AND m.tr_user_id = a.tr_user_id AND m.valid_to_rev IS NULL
             WHERE a.connection_id = $1 AND a.tr_user_id = $2 AND a.valid_to_rev IS NULL",
        )
        .bind(connection_id)
        .bind(i(account_id))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let groups: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT g.tr_group_id, gv.name FROM membership_versions g
             LEFT JOIN group_versions gv ON gv.connection_id = g.connection_id
                  AND gv.tr_group_id = g.tr_group_id AND gv.valid_to_rev IS NULL
             WHERE g.connection_id = $1 AND g.tr_user_id = $2 AND g.valid_to_rev IS NULL
             ORDER BY g.tr_group_id",
        )
        .bind(connection_id)
        .bind(i(account_id))
        .fetch_all(&mut *conn)
        .await?;
        let groups: Vec<(u64, Option<String>)> =
            groups.into_iter().map(|(id, n)| (u(id), n)).collect();
        let matched = match &r.state {
            Some(state) => Some(matches::to_stored(
                state,
                r.identity_id,
                r.identity_name,
                r.identity_status,
                r.pinned.unwrap_or(false),
                r.reason.unwrap_or_default(),
                r.candidates.as_deref().unwrap_or("[]"),
            )?),
            None => None,
        };
        Ok(Some(ListedAccount {
            account: Account {
                id: u(r.tr_user_id),
                name: r.name,
                email: r.email,
                is_active: r.is_active,
                role_id: r.role_id.map(u),
                role: r.role_name,
                is_admin: r.is_admin,
                group_ids: groups.iter().map(|(id, _)| *id).collect(),
                fields: accessrail_domain::Fields::from_canonical(r.fields),
            },
            groups,
            matched,
        }))
    }

    pub(super) async fn account_changes_impl(
        &self,
        connection_id: &str,
        account_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANGE_COLS} FROM changes
             WHERE connection_id = $1 AND tr_user_id = $2 ORDER BY id DESC LIMIT $3"
        )))
        .bind(connection_id)
        .bind(i(account_id))
        .bind(i(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ChangeRow::into_record).collect())
    }

    pub(super) async fn account_audit_impl(
        &self,
        connection_id: &str,
        account_id: u64,
        email: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEntry>> {
        // The audit log names connections by name.
        let Some(name): Option<String> =
            sqlx::query_scalar("SELECT name FROM connections WHERE id = $1")
                .bind(connection_id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(vec![]);
        };
        let email = email.map(|e| e.trim().to_lowercase()).unwrap_or_default();
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT * FROM audit_log WHERE id IN (
                 SELECT id FROM audit_log WHERE connection = $1 AND $2 <> '' AND lower(target) = $2
                 UNION
                 SELECT audit_id FROM changes WHERE connection_id = $3 AND tr_user_id = $4 AND audit_id IS NOT NULL)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(&name)
        .bind(&email)
        .bind(connection_id)
        .bind(i(account_id))
        .bind(i(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRow::into_entry).collect()
    }
}

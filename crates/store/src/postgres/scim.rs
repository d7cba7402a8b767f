//! SCIM: tokens bound to one connection, what SCIM keeps that TestRail does not (externalId,
//! who created a resource, DELETEd ids) and the deactivation cap's ledger.

use super::*;

#[derive(sqlx::FromRow)]
struct ResourceRow {
    connection_id: String,
    kind: String,
    tr_id: i64,
    external_id: Option<String>,
    user_name: Option<String>,
    email_meta: Option<String>,
    token: String,
    created_by: Option<String>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
}

/// How long an administrator's decision on a held deactivation answers the identity
/// provider's retries (a day); a request after that is counted (or held) afresh.
const DECISION_LIFETIME: i64 = 86_400;

impl From<ResourceRow> for ScimResource {
    fn from(r: ResourceRow) -> Self {
        Self {
            connection_id: r.connection_id,
            kind: r.kind,
            tr_id: r.tr_id as u64,
            external_id: r.external_id,
            user_name: r.user_name,
            email_meta: r.email_meta,
            token: r.token,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeactivationRow {
    id: i64,
    connection_id: String,
    token: String,
    tr_user_id: i64,
    email: String,
    requested_at: i64,
    status: String,
    decided_by: Option<String>,
    decided_at: Option<i64>,
}

impl From<DeactivationRow> for ScimDeactivation {
    fn from(r: DeactivationRow) -> Self {
        Self {
            id: r.id,
            connection_id: r.connection_id,
            token: r.token,
            tr_user_id: r.tr_user_id as u64,
            email: r.email,
            requested_at: r.requested_at,
            status: r.status,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
        }
    }
}

impl PgStore {
    pub(super) async fn create_scim_token_impl(
        &self,
        name: &str,
        hash: &str,
        connection_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (name, hash, created_at, scim_connection) VALUES ($1, $2, $3, $4)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at,
             revoked_at = NULL, reviewer = NULL, scim_connection = excluded.scim_connection
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(hash)
        .bind(now)
        .bind(connection_id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists (revoke it first)"
            )));
        }
        Ok(())
    }

    pub(super) async fn scim_token_by_hash_impl(
        &self,
        hash: &str,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT name, scim_connection FROM api_tokens
             WHERE hash = $1 AND revoked_at IS NULL AND scim_connection IS NOT NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn scim_resource_impl(
        &self,
        connection_id: &str,
        kind: &str,
        tr_id: u64,
    ) -> StoreResult<Option<ScimResource>> {
        let row: Option<ResourceRow> = sqlx::query_as(
            "SELECT connection_id, kind, tr_id, external_id, user_name, email_meta, token, created_by, created_at, updated_at, deleted_at FROM scim_resources WHERE connection_id = $1 AND kind = $2 AND tr_id = $3",
        )
        .bind(connection_id)
        .bind(kind)
        .bind(tr_id as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    pub(super) async fn scim_resources_impl(
        &self,
        connection_id: &str,
        kind: &str,
    ) -> StoreResult<Vec<ScimResource>> {
        let rows: Vec<ResourceRow> = sqlx::query_as(
            "SELECT connection_id, kind, tr_id, external_id, user_name, email_meta, token, created_by, created_at, updated_at, deleted_at FROM scim_resources WHERE connection_id = $1 AND kind = $2 ORDER BY tr_id",
        )
        .bind(connection_id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(super) async fn put_scim_resource_impl(&self, r: ScimResource) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO scim_resources (connection_id, kind, tr_id, external_id, user_name, email_meta, token, created_by, created_at, updated_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (connection_id, kind, tr_id) DO UPDATE SET external_id = excluded.external_id, user_name = excluded.user_name, email_meta = excluded.email_meta,
             token = excluded.token, updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
        )
        .bind(&r.connection_id)
        .bind(&r.kind)
        .bind(r.tr_id as i64)
        .bind(&r.external_id)
        .bind(&r.user_name)
        .bind(&r.email_meta)
        .bind(&r.token)
        .bind(&r.created_by)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.deleted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn scim_claim_deactivation_impl(
        &self,
        connection_id: &str,
        token: &str,
        tr_user_id: u64,
        email: &str,
        now: i64,
        cap: u32,
        window: i64,
    ) -> StoreResult<ScimClaim> {
        let mut tx = self.pool.begin().await?;
        // Take the write lock first: two claims at once are decided one after the other.
        sqlx::query("SELECT id FROM connections WHERE id = $1 FOR UPDATE")
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        let user = tr_user_id as i64;
        let decided: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, status FROM scim_deactivations
             WHERE connection_id = $1 AND tr_user_id = $2 AND status IN ('held', 'approved', 'rejected')
               AND requested_at >= $3
             ORDER BY id DESC LIMIT 1",
        )
        .bind(connection_id)
        .bind(user)
        // A decision answers the requests of its day; later ones are asked afresh.
        .bind(now - DECISION_LIFETIME)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match decided {
            Some((id, status)) if status == "approved" => {
                sqlx::query("UPDATE scim_deactivations SET status = 'used' WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                ScimClaim::Go
            }
            Some((id, status)) if status == "held" => ScimClaim::Held(id),
            Some((id, _)) => ScimClaim::Rejected(id),
            None => {
                let exempt: bool = sqlx::query_scalar(
                    "SELECT count(*) > 0 FROM scim_resources WHERE connection_id = $1 AND kind = 'user'
                     AND tr_id = $2 AND created_by = $3 AND created_at >= $4",
                )
                .bind(connection_id)
                .bind(user)
                .bind(token)
                .bind(now - window)
                .fetch_one(&mut *tx)
                .await?;
                let counted: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM scim_deactivations
                     WHERE connection_id = $1 AND status = 'counted' AND requested_at >= $2",
                )
                .bind(connection_id)
                .bind(now - window)
                .fetch_one(&mut *tx)
                .await?;
                let status = if exempt {
                    "exempt"
                } else if counted < i64::from(cap) {
                    "counted"
                } else {
                    "held"
                };
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO scim_deactivations (connection_id, token, tr_user_id, email, requested_at, status)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(connection_id)
                .bind(token)
                .bind(user)
                .bind(email)
                .bind(now)
                .bind(status)
                .fetch_one(&mut *tx)
                .await?;
                if status == "held" {
                    ScimClaim::Held(id)
                } else {
                    ScimClaim::Go
                }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    pub(super) async fn scim_holds_impl(
        &self,
        connection_id: Option<&str>,
    ) -> StoreResult<Vec<ScimDeactivation>> {
        let rows: Vec<DeactivationRow> = sqlx::query_as(
            "SELECT id, connection_id, token, tr_user_id, email, requested_at, status, decided_by, decided_at
             FROM scim_deactivations
             WHERE status IN ('held', 'approved', 'rejected', 'used') AND ($1 IS NULL OR connection_id = $1)
             ORDER BY CASE WHEN status = 'held' THEN 0 ELSE 1 END, id DESC LIMIT 1000",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(super) async fn scim_decide_impl(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE scim_deactivations SET status = $1, decided_by = $2, decided_at = $3
             WHERE id = $4 AND status = 'held'",
        )
        .bind(if approve { "approved" } else { "rejected" })
        .bind(by)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }
}

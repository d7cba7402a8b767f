//! API tokens: only their hashes are stored.

use super::*;

impl PgStore {
    pub(super) async fn create_token_impl(
        &self,
        name: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (name, hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at, revoked_at = NULL, reviewer = NULL, scim_connection = NULL
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists (revoke it first)"
            )));
        }
        Ok(())
    }

    pub(super) async fn upsert_token_impl(
        &self,
        name: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (name, hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, revoked_at = NULL, reviewer = NULL, scim_connection = NULL",
        )
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn revoke_token_impl(&self, name: &str, now: i64) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn tokens_impl(&self) -> StoreResult<Vec<TokenRecord>> {
        let rows: Vec<(String, i64, Option<i64>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT name, created_at, revoked_at, reviewer, scim_connection FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, created_at, revoked_at, reviewer, scim_connection)| TokenRecord {
                    name,
                    created_at,
                    revoked_at,
                    reviewer,
                    scim_connection,
                },
            )
            .collect())
    }

    pub(super) async fn token_by_hash_impl(&self, hash: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT name FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL AND reviewer IS NULL AND scim_connection IS NULL",
            )
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?,
        )
    }
}

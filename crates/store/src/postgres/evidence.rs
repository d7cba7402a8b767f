//! Activity evidence: evidence scans and the evidence they read (one row per piece, so a
//! re-read keeps nothing twice).

use super::*;

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    connection_id: String,
    started_at: i64,
    finished_at: Option<i64>,
    status: String,
    read_from: i64,
    requests: i64,
    estimate: i64,
    evidence: i64,
    error: Option<String>,
}

impl From<RunRow> for EvidenceRun {
    fn from(r: RunRow) -> Self {
        Self {
            id: r.id,
            connection_id: r.connection_id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: r.status,
            read_from: r.read_from,
            requests: r.requests as u64,
            estimate: r.estimate as u64,
            evidence: r.evidence as u64,
            error: r.error,
        }
    }
}

use crate::evidence::LatestRow;

impl PgStore {
    pub(super) async fn begin_evidence_run_impl(
        &self,
        connection_id: &str,
        now: i64,
        read_from: i64,
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE evidence_runs SET status = 'failed', finished_at = $2, error = $3
             WHERE connection_id = $1 AND status = 'running'",
        )
        .bind(connection_id)
        .bind(now)
        .bind(crate::evidence::INTERRUPTED)
        .execute(&mut *tx)
        .await?;
        let id = sqlx::query_scalar(
            "INSERT INTO evidence_runs (connection_id, started_at, status, read_from)
             VALUES ($1, $2, 'running', $3) RETURNING id",
        )
        .bind(connection_id)
        .bind(now)
        .bind(read_from)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn add_evidence_impl(
        &self,
        connection_id: &str,
        evidence: Vec<EvidenceRecord>,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for chunk in evidence.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO evidence (connection_id, kind, artefact_id, tr_user_id, at, project_id, run_id) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(connection_id)
                    .push_bind(&e.kind)
                    .push_bind(e.artefact_id as i64)
                    .push_bind(e.tr_user_id as i64)
                    .push_bind(e.at)
                    .push_bind(e.project_id.map(|p| p as i64))
                    .push_bind(e.run_id.map(|r| r as i64));
            });
            q.push(" ON CONFLICT DO NOTHING");
            added += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_evidence_run_impl(
        &self,
        run_id: i64,
        status: &str,
        requests: u64,
        estimate: u64,
        evidence: u64,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE evidence_runs SET status = $1, requests = $2, estimate = $3, evidence = $4, error = $5,
             finished_at = $6 WHERE id = $7 AND status = 'running'",
        )
        .bind(status)
        .bind(requests as i64)
        .bind(estimate as i64)
        .bind(evidence as i64)
        .bind(error)
        .bind(now)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn evidence_runs_impl(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<EvidenceRun>> {
        let rows: Vec<RunRow> =
            sqlx::query_as("SELECT * FROM evidence_runs WHERE connection_id = $1 ORDER BY id")
                .bind(connection_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(super) async fn account_evidence_impl(
        &self,
        connection_id: &str,
        now: i64,
        account: Option<u64>,
    ) -> StoreResult<Vec<AccountEvidence>> {
        // One account (its page) reads through the index by user; every account, all rows.
        let (lo, hi) = account.map_or((i64::MIN, i64::MAX), |a| (a as i64, a as i64));
        let latest: Vec<LatestRow> = sqlx::query_as(
            "SELECT e.tr_user_id, e.kind, e.artefact_id, e.at, e.project_id, e.run_id FROM evidence e
             JOIN (SELECT tr_user_id, max(at) AS at FROM evidence
                   WHERE connection_id = $1 AND tr_user_id BETWEEN $2 AND $3 GROUP BY tr_user_id) m
               ON m.tr_user_id = e.tr_user_id AND m.at = e.at
             WHERE e.connection_id = $1 ORDER BY e.tr_user_id, e.kind, e.artefact_id",
        )
        .bind(connection_id)
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let counts: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT tr_user_id,
               sum(CASE WHEN at >= $2 THEN 1 ELSE 0 END),
               sum(CASE WHEN at >= $3 THEN 1 ELSE 0 END),
               sum(CASE WHEN at >= $3 AND kind = 'result' THEN 1 ELSE 0 END)
             FROM evidence WHERE connection_id = $1 AND tr_user_id BETWEEN $4 AND $5
             GROUP BY tr_user_id",
        )
        .bind(connection_id)
        .bind(now - 30 * 86_400)
        .bind(now - 90 * 86_400)
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::evidence::assemble(latest, counts))
    }
}

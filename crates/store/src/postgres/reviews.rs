//! Access reviews: owners, reviews with their frozen items, decisions, submissions and what
//! closing did. Reviewer sign-ins live in `api_tokens` (`reviewer` set).

use super::*;

#[derive(sqlx::FromRow)]
struct ReviewRow {
    id: i64,
    connection_id: String,
    scope: String,
    scan_id: i64,
    undecided: String,
    every: Option<String>,
    fallbacks: String,
    due_at: Option<i64>,
    status: String,
    created_at: i64,
    created_by: String,
    closed_at: Option<i64>,
    closed_by: Option<String>,
    outcome: Option<String>,
    previous_id: Option<i64>,
    next_start_at: Option<i64>,
    items: i64,
    decided: i64,
}

const REVIEW_COLUMNS: &str = "r.id, r.connection_id, r.scope, r.scan_id, r.undecided, r.every, r.fallbacks, r.due_at, r.status,
     r.created_at, r.created_by, r.closed_at, r.closed_by, r.outcome, r.previous_id, r.next_start_at,
     (SELECT count(*) FROM review_items i WHERE i.review_id = r.id) AS items,
     (SELECT count(*) FROM review_items i WHERE i.review_id = r.id AND i.decision IS NOT NULL) AS decided";

fn review_of(r: ReviewRow) -> ReviewRecord {
    ReviewRecord {
        id: r.id,
        connection_id: r.connection_id,
        scope: r.scope,
        scan_id: r.scan_id,
        undecided: r.undecided,
        every: r.every,
        fallbacks: serde_json::from_str(&r.fallbacks).unwrap_or_default(),
        due_at: r.due_at,
        status: r.status,
        created_at: r.created_at,
        created_by: r.created_by,
        closed_at: r.closed_at,
        closed_by: r.closed_by,
        outcome: r.outcome,
        previous_id: r.previous_id,
        next_start_at: r.next_start_at,
        items: r.items as u64,
        decided: r.decided as u64,
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    review_id: i64,
    item: i64,
    tr_user_id: i64,
    email: String,
    name: String,
    reviewer: String,
    route: String,
    snapshot: String,
    identity: Option<String>,
    decision: Option<String>,
    action: Option<String>,
    comment: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    final_decision: Option<String>,
    final_source: Option<String>,
    outcome: Option<String>,
    outcome_audit_id: Option<i64>,
    outcome_at: Option<i64>,
}

impl From<ItemRow> for ReviewItemRecord {
    fn from(r: ItemRow) -> Self {
        Self {
            review_id: r.review_id,
            item: r.item,
            tr_user_id: r.tr_user_id as u64,
            email: r.email,
            name: r.name,
            reviewer: r.reviewer,
            route: r.route,
            snapshot: r.snapshot,
            identity: r.identity,
            decision: r.decision,
            action: r.action,
            comment: r.comment,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            final_decision: r.final_decision,
            final_source: r.final_source,
            outcome: r.outcome,
            outcome_audit_id: r.outcome_audit_id,
            outcome_at: r.outcome_at,
        }
    }
}

/// Items whose outcome is final (an earlier, partly failed close did them): their decision no
/// longer changes.
const FINAL_OUTCOME: &str =
    "coalesce(outcome, '') LIKE 'done%' OR coalesce(outcome, '') LIKE 'kept%'
     OR coalesce(outcome, '') LIKE 'no change%' OR coalesce(outcome, '') LIKE 'no action%'";

/// Takes the store's write lock for the rest of the transaction (reads that decide a write must
/// not interleave with another writer).
async fn lock(tx: &mut sqlx::PgConnection) -> StoreResult<()> {
    write_lock(tx).await
}

/// The review must exist and be open.
async fn open_review(tx: &mut sqlx::PgConnection, review_id: i64) -> StoreResult<()> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM reviews WHERE id = $1")
        .bind(review_id)
        .fetch_optional(&mut *tx)
        .await?;
    match status.as_deref() {
        None => Err(StoreError::NotFound(format!("no review {review_id}"))),
        Some("open") => Ok(()),
        Some("closing") => Err(StoreError::Conflict(format!(
            "review {review_id} is being closed: decisions and approvals are frozen; nothing was changed"
        ))),
        Some(_) => Err(StoreError::Conflict(format!(
            "review {review_id} is closed; nothing was changed"
        ))),
    }
}

impl PgStore {
    pub(super) async fn create_reviewer_token_impl(
        &self,
        name: &str,
        hash: &str,
        reviewer: &str,
        now: i64,
    ) -> StoreResult<()> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (name, hash, created_at, reviewer) VALUES ($1, $2, $3, $4)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at,
             revoked_at = NULL, reviewer = excluded.reviewer, scim_connection = NULL
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(hash)
        .bind(now)
        .bind(reviewer)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists (revoke it first)"
            )));
        }
        Ok(())
    }

    pub(super) async fn token_auth_by_hash_impl(
        &self,
        hash: &str,
    ) -> StoreResult<Option<TokenAuth>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT name, reviewer FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL AND scim_connection IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(name, reviewer)| TokenAuth { name, reviewer }))
    }

    pub(super) async fn set_owner_impl(
        &self,
        connection_id: &str,
        kind: &str,
        target_id: u64,
        target_name: &str,
        owner: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        let res = match owner {
            Some(owner) => {
                sqlx::query(
                    "INSERT INTO access_owners (connection_id, kind, target_id, target_name, owner_email, set_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT(connection_id, kind, target_id) DO UPDATE SET target_name = excluded.target_name,
                     owner_email = excluded.owner_email, set_at = excluded.set_at",
                )
                .bind(connection_id)
                .bind(kind)
                .bind(target_id as i64)
                .bind(target_name)
                .bind(owner.trim().to_lowercase())
                .bind(now)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "DELETE FROM access_owners WHERE connection_id = $1 AND kind = $2 AND target_id = $3",
                )
                .bind(connection_id)
                .bind(kind)
                .bind(target_id as i64)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn owners_impl(&self, connection_id: &str) -> StoreResult<Vec<OwnerRecord>> {
        let rows: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT kind, target_id, target_name, owner_email, set_at FROM access_owners
             WHERE connection_id = $1 ORDER BY kind, lower(target_name), target_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OwnerRecord {
                kind: r.0,
                target_id: r.1 as u64,
                target_name: r.2,
                owner_email: r.3,
                set_at: r.4,
            })
            .collect())
    }

    pub(super) async fn create_review_impl(
        &self,
        r: NewReview,
        items: Vec<ReviewItemRecord>,
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reviews (connection_id, scope, scan_id, undecided, every, fallbacks, due_at, status,
             created_at, created_by, previous_id, next_start_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11) RETURNING id",
        )
        .bind(&r.connection_id)
        .bind(&r.scope)
        .bind(r.scan_id)
        .bind(&r.undecided)
        .bind(&r.every)
        .bind(serde_json::to_string(&r.fallbacks).unwrap_or_else(|_| "[]".into()))
        .bind(r.due_at)
        .bind(r.created_at)
        .bind(&r.created_by)
        .bind(r.previous_id)
        .bind(r.next_start_at)
        .fetch_one(&mut *tx)
        .await?;
        for chunk in items.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO review_items (review_id, item, tr_user_id, email, name, reviewer, route, snapshot, identity) ",
            );
            q.push_values(chunk, |mut b, it| {
                b.push_bind(id)
                    .push_bind(it.item)
                    .push_bind(it.tr_user_id as i64)
                    .push_bind(&it.email)
                    .push_bind(&it.name)
                    .push_bind(it.reviewer.to_lowercase())
                    .push_bind(&it.route)
                    .push_bind(&it.snapshot)
                    .push_bind(&it.identity);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn reviews_impl(
        &self,
        connection_id: Option<&str>,
    ) -> StoreResult<Vec<ReviewRecord>> {
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews r WHERE ($1::text IS NULL OR r.connection_id = $1) ORDER BY r.id DESC"
        );
        let rows: Vec<ReviewRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(connection_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(review_of).collect())
    }

    pub(super) async fn review_impl(&self, id: i64) -> StoreResult<Option<ReviewRecord>> {
        let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews r WHERE r.id = $1");
        let row: Option<ReviewRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(review_of))
    }

    pub(super) async fn review_items_impl(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
    ) -> StoreResult<Vec<ReviewItemRecord>> {
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT * FROM review_items WHERE review_id = $1 AND ($2::text IS NULL OR reviewer = $2) ORDER BY item",
        )
        .bind(review_id)
        .bind(reviewer.map(|r| r.trim().to_lowercase()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(super) async fn review_progress_impl(
        &self,
        review_id: i64,
    ) -> StoreResult<Vec<ReviewerProgress>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT reviewer, count(*), count(decision) FROM review_items WHERE review_id = $1
             GROUP BY reviewer ORDER BY reviewer",
        )
        .bind(review_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(reviewer, items, decided)| ReviewerProgress {
                reviewer,
                items: items as u64,
                decided: decided as u64,
            })
            .collect())
    }

    pub(super) async fn decide_review_items_impl(
        &self,
        review_id: i64,
        reviewer: &str,
        decisions: Vec<ReviewDecision>,
    ) -> StoreResult<u64> {
        let reviewer = reviewer.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        open_review(&mut tx, review_id).await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM review_submissions WHERE review_id = $1 AND reviewer = $2",
        )
        .bind(review_id)
        .bind(&reviewer)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(s) = status.filter(|s| s != "sent_back") {
            return Err(StoreError::Conflict(format!(
                "{reviewer}'s decisions in review {review_id} are {s}; nothing was changed (an administrator can send them back)"
            )));
        }
        // One statement for the whole batch (a bulk keep can hold thousands of items); every
        // item must be this reviewer's, or nothing changes.
        let mut changed = 0;
        for chunk in decisions.chunks(5000) {
            let items: Vec<i64> = chunk.iter().map(|d| d.item).collect();
            let decided: Vec<Option<String>> = chunk.iter().map(|d| d.decision.clone()).collect();
            let actions: Vec<Option<String>> = chunk.iter().map(|d| d.action.clone()).collect();
            let comments: Vec<Option<String>> = chunk.iter().map(|d| d.comment.clone()).collect();
            let by: Vec<Option<String>> = chunk
                .iter()
                .map(|d| d.decision.as_ref().map(|_| d.by.clone()))
                .collect();
            let at: Vec<Option<i64>> = chunk
                .iter()
                .map(|d| d.decision.as_ref().map(|_| d.at))
                .collect();
            let res = sqlx::query(
                sqlx::AssertSqlSafe(format!("UPDATE review_items r SET decision = v.decision, action = v.action, comment = v.comment,
                 decided_by = v.decided_by, decided_at = v.decided_at
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                   AS v(item, decision, action, comment, decided_by, decided_at)
                 WHERE r.review_id = $7 AND r.item = v.item AND r.reviewer = $8 AND NOT ({FINAL_OUTCOME})")),
            )
            .bind(&items)
            .bind(&decided)
            .bind(&actions)
            .bind(&comments)
            .bind(&by)
            .bind(&at)
            .bind(review_id)
            .bind(&reviewer)
            .execute(&mut *tx)
            .await?;
            let distinct: std::collections::BTreeSet<i64> = items.iter().copied().collect();
            if res.rows_affected() != distinct.len() as u64 {
                return Err(StoreError::Conflict(format!(
                    "some items of review {review_id} are not {reviewer}'s to decide; nothing was changed"
                )));
            }
            changed += res.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub(super) async fn review_submissions_impl(
        &self,
        review_id: i64,
    ) -> StoreResult<Vec<SubmissionRecord>> {
        let rows: Vec<(
            String,
            String,
            i64,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
            String,
        )> = sqlx::query_as(
            "SELECT reviewer, status, submitted_at, digest, judged_by, judged_at, comment, submitted_by
                 FROM review_submissions WHERE review_id = $1 ORDER BY reviewer",
        )
        .bind(review_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SubmissionRecord {
                review_id,
                reviewer: r.0,
                status: r.1,
                submitted_at: r.2,
                digest: r.3,
                judged_by: r.4,
                judged_at: r.5,
                comment: r.6,
                submitted_by: r.7,
            })
            .collect())
    }

    pub(super) async fn submit_review_impl(
        &self,
        review_id: i64,
        reviewer: &str,
        by: &str,
        now: i64,
    ) -> StoreResult<String> {
        let reviewer = reviewer.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        open_review(&mut tx, review_id).await?;
        let rows: Vec<crate::reviews::SubmittedRow> = sqlx::query_as(
            "SELECT item, email, decision, action, comment FROM review_items
                 WHERE review_id = $1 AND reviewer = $2 ORDER BY item",
        )
        .bind(review_id)
        .bind(&reviewer)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!(
                "{reviewer} has no items in review {review_id}"
            )));
        }
        let digest = crate::reviews::digest(&rows);
        let res = sqlx::query(
            "INSERT INTO review_submissions (review_id, reviewer, status, submitted_at, digest, submitted_by)
             VALUES ($1, $2, 'submitted', $3, $4, $5)
             ON CONFLICT(review_id, reviewer) DO UPDATE SET status = 'submitted',
             submitted_at = excluded.submitted_at, digest = excluded.digest, submitted_by = excluded.submitted_by,
             judged_by = NULL, judged_at = NULL, comment = NULL
             WHERE review_submissions.status = 'sent_back'",
        )
        .bind(review_id)
        .bind(&reviewer)
        .bind(now)
        .bind(&digest)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{reviewer} already submitted review {review_id}; nothing was changed"
            )));
        }
        tx.commit().await?;
        Ok(digest)
    }

    pub(super) async fn judge_submission_impl(
        &self,
        review_id: i64,
        reviewer: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let reviewer = reviewer.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        open_review(&mut tx, review_id).await?;
        let res = sqlx::query(
            "UPDATE review_submissions SET status = $1, judged_by = $2, judged_at = $3, comment = $4
             WHERE review_id = $5 AND reviewer = $6 AND (status = 'submitted' OR ($7 AND status = 'approved'))",
        )
        .bind(if approve { "approved" } else { "sent_back" })
        .bind(by)
        .bind(now)
        .bind(comment)
        .bind(review_id)
        .bind(&reviewer)
        .bind(!approve)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{reviewer} has no submission {} in review {review_id}",
                if approve {
                    "waiting for approval"
                } else {
                    "to send back"
                }
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn record_review_outcomes_impl(
        &self,
        review_id: i64,
        outcomes: Vec<ItemOutcome>,
        close: Option<ReviewClose>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM reviews WHERE id = $1")
            .bind(review_id)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() != Some("closing") {
            return Err(StoreError::Conflict(format!(
                "review {review_id} is not being closed; nothing was recorded"
            )));
        }
        for o in &outcomes {
            sqlx::query(
                "UPDATE review_items SET final_decision = $1, final_source = $2, outcome = $3, outcome_audit_id = $4,
                 outcome_at = $5 WHERE review_id = $6 AND item = $7",
            )
            .bind(&o.final_decision)
            .bind(&o.final_source)
            .bind(&o.outcome)
            .bind(o.audit_id)
            .bind(o.at)
            .bind(review_id)
            .bind(o.item)
            .execute(&mut *tx)
            .await?;
        }
        match close {
            Some(c) => {
                sqlx::query(
                    "UPDATE reviews SET status = 'closed', closed_at = $1, closed_by = $2, outcome = $3 WHERE id = $4",
                )
                .bind(c.at)
                .bind(&c.by)
                .bind(&c.outcome)
                .bind(review_id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("UPDATE reviews SET status = 'open' WHERE id = $1")
                    .bind(review_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
    pub(super) async fn begin_review_close_impl(&self, review_id: i64) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE reviews SET status = 'closing' WHERE id = $1 AND status IN ('open', 'closing')",
        )
        .bind(review_id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(match self.review_impl(review_id).await? {
                None => StoreError::NotFound(format!("no review {review_id}")),
                Some(_) => StoreError::Conflict(format!("review {review_id} is already closed")),
            });
        }
        Ok(())
    }

    pub(super) async fn end_review_close_impl(&self, review_id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE reviews SET status = 'open' WHERE id = $1 AND status = 'closing'")
            .bind(review_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    pub(super) async fn review_items_page_impl(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
        decided: Option<bool>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<ReviewItemRecord>, u64)> {
        let reviewer = reviewer.map(|r| r.trim().to_lowercase());
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT * FROM review_items WHERE review_id = $1 AND item IN (
               SELECT item FROM review_items WHERE review_id = $1 AND ($2::text IS NULL OR reviewer = $2)
               AND ($3::boolean IS NULL OR (decision IS NOT NULL) = $3) ORDER BY item LIMIT $4 OFFSET $5)
             ORDER BY item",
        )
        .bind(review_id)
        .bind(&reviewer)
        .bind(decided)
        .bind(limit.min(i64::MAX as u64) as i64)
        .bind(offset.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM review_items WHERE review_id = $1 AND ($2::text IS NULL OR reviewer = $2)
             AND ($3::boolean IS NULL OR (decision IS NOT NULL) = $3)",
        )
        .bind(review_id)
        .bind(&reviewer)
        .bind(decided)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows.into_iter().map(Into::into).collect(), total as u64))
    }

    pub(super) async fn review_decision_counts_impl(
        &self,
        review_id: i64,
    ) -> StoreResult<Vec<(String, Option<String>, u64)>> {
        let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT reviewer, decision, count(*) FROM review_items WHERE review_id = $1 GROUP BY reviewer, decision
             ORDER BY reviewer, decision",
        )
        .bind(review_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(r, d, n)| (r, d, n as u64)).collect())
    }
}

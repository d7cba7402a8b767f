//! Identities (the organisation's people) and manual match decisions; both refresh the stored
//! matches in the same transaction.

use super::*;

impl SqliteStore {
    pub(super) async fn import_identities_impl(
        &self,
        identities: Vec<Identity>,
        full: bool,
        now: i64,
    ) -> StoreResult<ImportSummary> {
        let mut tx = self.pool.begin().await?;
        // Take the write lock first so a concurrent import waits instead of failing later.
        sqlx::query("UPDATE identities SET updated_at = updated_at WHERE 0")
            .execute(&mut *tx)
            .await?;
        let existing: Vec<IdentityRow> =
            sqlx::query_as("SELECT id, name, status, emails, attributes, gone FROM identities")
                .fetch_all(&mut *tx)
                .await?;
        let mut current: BTreeMap<String, Identity> = BTreeMap::new();
        for row in existing {
            let ident = row.into_identity()?;
            current.insert(ident.id.clone(), ident);
        }
        let mut summary = ImportSummary::default();
        let mut seen = BTreeSet::new();
        let mut upserts: Vec<(Identity, String, String)> = Vec::new();
        for ident in identities {
            seen.insert(ident.id.clone());
            match current.get(&ident.id) {
                Some(old)
                    if old.name == ident.name
                        && old.emails == ident.emails
                        && old.status == ident.status
                        && old.attributes == ident.attributes
                        && !old.gone =>
                {
                    summary.unchanged += 1;
                    continue;
                }
                Some(_) => summary.updated += 1,
                None => summary.added += 1,
            }
            let emails = serde_json::to_string(&ident.emails)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let attrs = serde_json::to_string(&ident.attributes)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            upserts.push((ident, emails, attrs));
        }
        // Many rows per statement: an import of 100,000 people is 200 statements, not 100,000.
        for chunk in upserts.chunks(BATCH) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO identities (id, name, status, emails, attributes, gone, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (ident, emails, attrs)| {
                b.push_bind(ident.id.clone())
                    .push_bind(ident.name.clone())
                    .push_bind(ident.status.as_str())
                    .push_bind(emails.clone())
                    .push_bind(attrs.clone())
                    .push_bind(false)
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, status = excluded.status, emails = excluded.emails,
                 attributes = excluded.attributes, gone = 0, updated_at = excluded.updated_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        if full {
            let gone: Vec<&String> = current
                .iter()
                // People an identity provider manages through SCIM are not in HR files.
                .filter(|(id, old)| !seen.contains(*id) && !old.gone && !id.starts_with("scim:"))
                .map(|(id, _)| id)
                .collect();
            for chunk in gone.chunks(BATCH) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("UPDATE identities SET gone = 1, updated_at = ");
                qb.push_bind(now);
                qb.push(" WHERE id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind((*id).clone());
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            summary.marked_gone += gone.len() as u64;
        }
        // The matching below loads the identities again: free these first.
        drop((upserts, current, seen));
        if summary.added + summary.updated + summary.marked_gone > 0 {
            matches::refresh_all(&mut tx, now).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    pub(super) async fn identities_impl(&self) -> StoreResult<Vec<Identity>> {
        let rows: Vec<IdentityRow> = sqlx::query_as(
            "SELECT id, name, status, emails, attributes, gone FROM identities ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(IdentityRow::into_identity).collect()
    }

    pub(super) async fn set_override_impl(
        &self,
        connection_id: &str,
        o: OverrideRecord,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if o.kind == OverrideKind::Pin {
            // One pin per account: a new pin replaces the old one.
            sqlx::query("DELETE FROM match_overrides WHERE connection_id = ? AND tr_user_id = ? AND kind = 'pin'")
                .bind(connection_id)
                .bind(i(o.account_id))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO match_overrides (connection_id, tr_user_id, identity_id, kind, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(connection_id, tr_user_id, identity_id) DO UPDATE SET kind = excluded.kind, created_at = excluded.created_at",
        )
        .bind(connection_id)
        .bind(i(o.account_id))
        .bind(&o.identity_id)
        .bind(o.kind.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        matches::refresh(&mut tx, connection_id, matches::Rev::OwnIfChanged { now }).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn clear_override_impl(
        &self,
        connection_id: &str,
        account_id: u64,
        identity_id: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "DELETE FROM match_overrides WHERE connection_id = ? AND tr_user_id = ? AND (? IS NULL OR identity_id = ?)",
        )
        .bind(connection_id)
        .bind(i(account_id))
        .bind(identity_id)
        .bind(identity_id)
        .execute(&mut *tx)
        .await?;
        matches::refresh(&mut tx, connection_id, matches::Rev::OwnIfChanged { now }).await?;
        tx.commit().await?;
        Ok(res.rows_affected())
    }

    pub(super) async fn overrides_impl(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<OverrideRecord>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT tr_user_id, identity_id, kind FROM match_overrides WHERE connection_id = ? ORDER BY tr_user_id, identity_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(account, identity_id, kind)| OverrideRecord {
                account_id: u(account),
                identity_id,
                kind: if kind == "pin" {
                    OverrideKind::Pin
                } else {
                    OverrideKind::Exclude
                },
            })
            .collect())
    }
}

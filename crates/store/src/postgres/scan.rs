//! A scan being written: pages staged in temporary tables on the scan's own connection, then
//! committed as versions and change rows in one transaction (or discarded).

use accessrail_domain::{Account, ChangeKind, account_changes};
use sqlx::pool::PoolConnection;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use super::{ACCOUNT_COLS, BATCH, PgStore, i, keys, listing, matches, new_revision, u};
use crate::ScanWriter;
use crate::digest::{digest, members_digest};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// A scan in progress: pages staged in temporary tables on one connection, never in the main
/// tables until [`ScanWriter::commit`].
#[derive(Debug)]
pub struct PgScan {
    pub(super) id: i64,
    pub(super) connection_id: String,
    pub(super) conn: PoolConnection<Postgres>,
    pub(super) lease: LeaseToken,
    /// The current accounts' digests when the scan began (`None`: written before digests).
    pub(super) known: std::collections::HashMap<i64, Option<i64>>,
    /// Every account id the scan has read.
    pub(super) seen: std::collections::HashSet<i64>,
    /// The current groups' member lists when the scan began, by digest.
    pub(super) known_members: std::collections::HashMap<i64, i64>,
    /// Every group id the scan has read.
    pub(super) groups_seen: std::collections::HashSet<i64>,
    /// Groups whose member list changed (their members were staged).
    pub(super) members_staged: std::collections::HashSet<i64>,
    /// The projects read, kept in memory until commit (a few hundred at most).
    pub(super) projects: Option<Vec<accessrail_domain::project::Project>>,
}

impl PgStore {
    /// Starts a scan of `connection_id` (the body of [`crate::Store::begin_scan`]).
    pub(super) async fn begin_scan_impl(
        &self,
        connection_id: &str,
        now: i64,
        lease: LeaseToken,
    ) -> StoreResult<PgScan> {
        // The base revision is read in the same statement, under the write lock (so no
        // revision is being handed out meanwhile): everything committed later is newer than
        // what this scan will read from TestRail.
        let mut tx = self.pool.begin().await?;
        super::write_lock(&mut tx).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scans (connection_id, started_at, status, base_revision)
             VALUES ($1, $2, 'running', (SELECT COALESCE(MAX(id), 0) FROM revisions)) RETURNING id",
        )
        .bind(connection_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut conn = self.pool.acquire().await?;
        for stmt in [
            r#"CREATE TEMP TABLE IF NOT EXISTS stage_accounts (tr_user_id BIGINT PRIMARY KEY, name TEXT COLLATE "C",
                email TEXT COLLATE "C", is_active BOOLEAN NOT NULL, role_id BIGINT, role_name TEXT COLLATE "C",
                is_admin BOOLEAN, fields TEXT NOT NULL, name_key TEXT COLLATE "C" NOT NULL,
                email_key TEXT COLLATE "C" NOT NULL, digest BIGINT NOT NULL)"#,
            r#"CREATE TEMP TABLE IF NOT EXISTS stage_groups (tr_group_id BIGINT PRIMARY KEY, name TEXT COLLATE "C")"#,
            "CREATE TEMP TABLE IF NOT EXISTS stage_members (tr_group_id BIGINT NOT NULL, tr_user_id BIGINT NOT NULL,
                PRIMARY KEY (tr_group_id, tr_user_id))",
            r#"CREATE TEMP TABLE IF NOT EXISTS stage_roles (tr_role_id BIGINT PRIMARY KEY, name TEXT COLLATE "C",
                is_default BOOLEAN, is_project_admin BOOLEAN)"#,
            "DELETE FROM stage_accounts",
            "DELETE FROM stage_groups",
            "DELETE FROM stage_members",
            "DELETE FROM stage_roles",
        ] {
            sqlx::query(stmt).execute(&mut *conn).await?;
        }
        // What the current accounts look like, by digest: unchanged ones are not staged.
        let known: std::collections::HashMap<i64, Option<i64>> = sqlx::query_as::<_, (i64, Option<i64>)>(
            "SELECT tr_user_id, digest FROM account_versions WHERE connection_id = $1 AND valid_to_rev IS NULL",
        )
        .bind(connection_id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        // And each current group's member list, by digest: unchanged lists are not staged.
        let mut lists: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
        for (g, user) in sqlx::query_as::<_, (i64, i64)>(
            "SELECT tr_group_id, tr_user_id FROM membership_versions
             WHERE connection_id = $1 AND valid_to_rev IS NULL ORDER BY tr_group_id, tr_user_id",
        )
        .bind(connection_id)
        .fetch_all(&mut *conn)
        .await?
        {
            lists.entry(g).or_default().push(user);
        }
        let known_members = lists
            .into_iter()
            .map(|(g, users)| (g, members_digest(&users)))
            .collect();
        Ok(PgScan {
            id,
            connection_id: connection_id.to_string(),
            conn,
            lease,
            known,
            seen: std::collections::HashSet::new(),
            known_members,
            groups_seen: std::collections::HashSet::new(),
            members_staged: std::collections::HashSet::new(),
            projects: None,
        })
    }
}

/// Fills the temporary table `table` (one column `id`) with `ids`, replacing what it held.
async fn id_set(tx: &mut PgConnection, table: &str, ids: &[i64]) -> StoreResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TEMP TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY)"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
        .execute(&mut *tx)
        .await?;
    for chunk in ids.chunks(BATCH) {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("INSERT INTO {table} (id) "));
        qb.push_values(chunk, |mut b, id| {
            b.push_bind(*id);
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// The items of `items` whose key no later item repeats, in their order. PostgreSQL refuses
/// to update one row twice in a statement (`ON CONFLICT DO UPDATE`), so repeats are left out
/// beforehand: the last one wins, as SQLite's `INSERT OR REPLACE` made it win.
fn keep_last<T>(items: Vec<T>, key: impl Fn(&T) -> i64) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<T> = items
        .into_iter()
        .rev()
        .filter(|x| seen.insert(key(x)))
        .collect();
    out.reverse();
    out
}

struct Counter {
    changes: u64,
    rows: u64,
    account_rows: u64,
}

/// A change row waiting to be written (in batches).
struct PendingChange {
    kind: ChangeKind,
    user: Option<i64>,
    group: Option<i64>,
    subject: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

async fn write_changes(
    tx: &mut PgConnection,
    n: &mut Counter,
    connection_id: &str,
    scan: i64,
    now: i64,
    changes: &[PendingChange],
) -> StoreResult<()> {
    for chunk in changes.chunks(BATCH / 2) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO changes (connection_id, scan_id, at, kind, tr_user_id, tr_group_id, subject, before, after) ",
        );
        qb.push_values(chunk, |mut b, c| {
            b.push_bind(connection_id)
                .push_bind(scan)
                .push_bind(now)
                .push_bind(c.kind.as_str())
                .push_bind(c.user)
                .push_bind(c.group)
                .push_bind(c.subject.clone())
                .push_bind(c.before.clone())
                .push_bind(c.after.clone());
        });
        qb.build().execute(&mut *tx).await?;
    }
    n.changes += changes.len() as u64;
    n.rows += changes.len() as u64;
    Ok(())
}

#[derive(FromRow)]
struct DiffRow {
    tr_user_id: i64,
    name: Option<String>,
    email: Option<String>,
    is_active: bool,
    role_id: Option<i64>,
    role_name: Option<String>,
    is_admin: Option<bool>,
    c_exists: Option<i64>,
    c_name: Option<String>,
    c_email: Option<String>,
    c_is_active: Option<bool>,
    c_role_id: Option<i64>,
    c_role_name: Option<String>,
    c_is_admin: Option<bool>,
}

/// Staged accounts that are new or differ from their current version, leaving out accounts a
/// newer revision holds (see `PgScan::apply`).
const CHANGED_ACCOUNTS: &str = "FROM stage_accounts s
     LEFT JOIN account_versions c
       ON c.connection_id = $1 AND c.tr_user_id = s.tr_user_id AND c.valid_to_rev IS NULL
     WHERE (c.tr_user_id IS NULL OR c.name IS DISTINCT FROM s.name OR c.email IS DISTINCT FROM s.email
        OR c.is_active IS DISTINCT FROM s.is_active OR c.role_id IS DISTINCT FROM s.role_id
        OR c.role_name IS DISTINCT FROM s.role_name OR c.is_admin IS DISTINCT FROM s.is_admin
        OR c.fields IS DISTINCT FROM s.fields)
       AND s.tr_user_id NOT IN (SELECT tr_user_id FROM held_accounts)";

impl PgScan {
    async fn drop_staging(&mut self) {
        for t in [
            "stage_accounts",
            "stage_groups",
            "stage_members",
            "stage_roles",
            "changed_ids",
            "held_accounts",
            "held_members",
            "missing_ids",
            "play_groups",
        ] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
                .execute(&mut *self.conn)
                .await;
        }
    }

    async fn apply(&mut self, report: &ScanReport, now: i64) -> StoreResult<CommitSummary> {
        let cid = self.connection_id.clone();
        let scan = self.id;
        let mut tx = sqlx::Connection::begin(&mut *self.conn).await?;
        // The store's write lock first, so the transaction holds it from the start; the
        // revision number taken below is therefore higher than every committed one.
        super::write_lock(&mut tx).await?;
        super::bulk_joins(&mut tx).await?;
        // Fencing: only the holder of the scan lease may commit.
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND generation = $3 AND expires_at > $4)",
        )
        .bind(&self.lease.name)
        .bind(&self.lease.holder)
        .bind(self.lease.generation)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if !held {
            return Err(StoreError::Conflict(format!(
                "this scan lost its lease ({}) before saving; nothing was saved",
                self.lease.name
            )));
        }
        let base: i64 =
            sqlx::query_scalar("SELECT COALESCE(base_revision, 0) FROM scans WHERE id = $1")
                .bind(scan)
                .fetch_one(&mut *tx)
                .await?;
        let rev = new_revision(&mut tx, &cid, "scan", now).await?;
        sqlx::query("UPDATE scans SET revision = $1 WHERE id = $2")
            .bind(rev)
            .bind(scan)
            .execute(&mut *tx)
            .await?;
        // Accounts and memberships that a revision committed after this scan began (a
        // provisioning action) has written hold newer facts than this scan read: leave them.
        for stmt in [
            "CREATE TEMP TABLE IF NOT EXISTS held_accounts (tr_user_id BIGINT PRIMARY KEY)",
            "CREATE TEMP TABLE IF NOT EXISTS held_members (tr_group_id BIGINT NOT NULL, tr_user_id BIGINT NOT NULL,
                PRIMARY KEY (tr_group_id, tr_user_id))",
            "DELETE FROM held_accounts",
            "DELETE FROM held_members",
        ] {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO held_accounts SELECT tr_user_id FROM account_versions
             WHERE connection_id = $1 AND (valid_from_rev > $2 OR valid_to_rev > $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&cid)
        .bind(base)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO held_members SELECT tr_group_id, tr_user_id FROM membership_versions
             WHERE connection_id = $1 AND (valid_from_rev > $2 OR valid_to_rev > $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&cid)
        .bind(base)
        .execute(&mut *tx)
        .await?;
        // Accounts current when the scan began that it never read: TestRail no longer lists them.
        let missing: Vec<i64> = self
            .known
            .keys()
            .filter(|id| !self.seen.contains(id))
            .copied()
            .collect();
        id_set(&mut tx, "missing_ids", &missing).await?;
        // Groups whose memberships this scan decides: lists that changed, and groups that
        // were current when it began but it never read (deleted in TestRail).
        let play: Vec<i64> = self
            .members_staged
            .iter()
            .copied()
            .chain(
                self.known_members
                    .keys()
                    .filter(|g| !self.groups_seen.contains(g))
                    .copied(),
            )
            .collect();
        id_set(&mut tx, "play_groups", &play).await?;
        sqlx::query(
            "DELETE FROM stage_members WHERE EXISTS (SELECT 1 FROM held_members h
               WHERE h.tr_group_id = stage_members.tr_group_id AND h.tr_user_id = stage_members.tr_user_id)",
        )
        .execute(&mut *tx)
        .await?;
        let mut n = Counter {
            changes: 0,
            rows: 0,
            account_rows: 0,
        };
        // The first good scan is the baseline: it records versions, not thousands of "added".
        let baseline: bool = !sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM scans WHERE connection_id = $1 AND status = 'succeeded' AND kind = 'scan')",
        )
        .bind(&cid)
        .fetch_one(&mut *tx)
        .await?;

        let mut pending = Vec::new();
        if !baseline {
            // In account order (SQLite walks the staging table by its integer key).
            let diffs: Vec<DiffRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT s.tr_user_id, s.name, s.email, s.is_active, s.role_id, s.role_name, s.is_admin,
                        c.tr_user_id AS c_exists, c.name AS c_name, c.email AS c_email, c.is_active AS c_is_active,
                        c.role_id AS c_role_id, c.role_name AS c_role_name, c.is_admin AS c_is_admin {CHANGED_ACCOUNTS}
                 ORDER BY s.tr_user_id"
            )))
            .bind(&cid)
            .fetch_all(&mut *tx)
            .await?;
            for d in diffs {
                let new = Account {
                    id: u(d.tr_user_id),
                    name: d.name,
                    email: d.email,
                    is_active: d.is_active,
                    role_id: d.role_id.map(u),
                    role: d.role_name,
                    is_admin: d.is_admin,
                    group_ids: vec![],
                    fields: Default::default(),
                };
                let old = d.c_exists.map(|_| Account {
                    id: new.id,
                    name: d.c_name,
                    email: d.c_email,
                    is_active: d.c_is_active.unwrap_or(false),
                    role_id: d.c_role_id.map(u),
                    role: d.c_role_name,
                    is_admin: d.c_is_admin,
                    group_ids: vec![],
                    fields: Default::default(),
                });
                let subject = new.email.clone().or_else(|| new.name.clone());
                for ch in account_changes(old.as_ref(), &new) {
                    pending.push(PendingChange {
                        kind: ch.kind,
                        user: Some(d.tr_user_id),
                        group: None,
                        subject: subject.clone(),
                        before: ch.before,
                        after: ch.after,
                    });
                }
            }
        }
        // Versions, set-based: close the current version of every changed account, open the new.
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS changed_ids (tr_user_id BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM changed_ids")
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO changed_ids SELECT s.tr_user_id {CHANGED_ACCOUNTS}"
        )))
        .bind(&cid)
        .execute(&mut *tx)
        .await?;
        // Matching depends on emails only: recompute matches when an email appeared or changed.
        let emails_changed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM changed_ids ch JOIN stage_accounts s ON s.tr_user_id = ch.tr_user_id
               LEFT JOIN account_versions c ON c.connection_id = $1 AND c.tr_user_id = ch.tr_user_id AND c.valid_to_rev IS NULL
               WHERE c.tr_user_id IS NULL OR c.email IS DISTINCT FROM s.email)",
        )
        .bind(&cid)
        .fetch_one(&mut *tx)
        .await?;
        let closed = sqlx::query(
            "UPDATE account_versions SET valid_to_rev = $2 WHERE connection_id = $1 AND valid_to_rev IS NULL
               AND tr_user_id IN (SELECT tr_user_id FROM changed_ids)",
        )
        .bind(&cid)
        .bind(rev)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let opened = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO account_versions (connection_id, valid_from_rev, {ACCOUNT_COLS}, name_key, email_key, digest)
             SELECT $1, $2, s.tr_user_id, s.name, s.email, s.is_active, s.role_id, s.role_name, s.is_admin, s.fields,
                    s.name_key, s.email_key, s.digest
             FROM stage_accounts s WHERE s.tr_user_id IN (SELECT tr_user_id FROM changed_ids)"
        )))
        .bind(&cid)
        .bind(rev)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        n.rows += closed + opened;
        n.account_rows += closed + opened;
        // Rows written before digests existed (or by provisioning) that the scan found
        // unchanged get the digest now, so the next rescan skips them.
        sqlx::query(
            "UPDATE account_versions SET digest = (SELECT s.digest FROM stage_accounts s
                                                   WHERE s.tr_user_id = account_versions.tr_user_id)
             WHERE connection_id = $1 AND valid_to_rev IS NULL AND digest IS NULL
               AND tr_user_id IN (SELECT tr_user_id FROM stage_accounts)
               AND tr_user_id NOT IN (SELECT tr_user_id FROM held_accounts)",
        )
        .bind(&cid)
        .execute(&mut *tx)
        .await?;

        // Accounts TestRail no longer lists.
        let missing: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT c.tr_user_id, COALESCE(c.email, c.name) FROM account_versions c
             WHERE c.connection_id = $1 AND c.valid_to_rev IS NULL
               AND c.tr_user_id IN (SELECT id FROM missing_ids)
               AND c.tr_user_id NOT IN (SELECT tr_user_id FROM held_accounts)
             ORDER BY c.tr_user_id",
        )
        .bind(&cid)
        .fetch_all(&mut *tx)
        .await?;
        let any_missing = !missing.is_empty();
        if any_missing {
            let res = sqlx::query(
                "UPDATE account_versions SET valid_to_rev = $2 WHERE connection_id = $1 AND valid_to_rev IS NULL
                   AND tr_user_id IN (SELECT id FROM missing_ids)
                   AND tr_user_id NOT IN (SELECT tr_user_id FROM held_accounts)",
            )
            .bind(&cid)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
            n.rows += res.rows_affected();
            n.account_rows += res.rows_affected();
            for (user, subject) in missing {
                pending.push(PendingChange {
                    kind: ChangeKind::AccountMissing,
                    user: Some(user),
                    group: None,
                    subject,
                    before: None,
                    after: None,
                });
            }
        }

        let refresh = baseline || emails_changed || any_missing;
        if refresh {
            matches::refresh(&mut tx, &cid, matches::Rev::At(rev)).await?;
        }
        if report.groups_fetched {
            apply_groups(&mut tx, &mut n, &cid, rev, baseline, &mut pending).await?;
        }
        if report.roles_fetched {
            apply_roles(&mut tx, &mut n, &cid, rev).await?;
        }
        write_changes(&mut tx, &mut n, &cid, scan, now, &pending).await?;
        if report.projects_fetched
            && let Some(staged) = self.projects.take()
        {
            // The first scan that reads projects is their baseline: versions, no change rows.
            let baseline: bool = !sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM scans WHERE connection_id = $1 AND status = 'succeeded'
                   AND kind = 'scan' AND projects_seen IS NOT NULL)",
            )
            .bind(&cid)
            .fetch_one(&mut *tx)
            .await?;
            let (rows, grants) = super::projects::load_rows(&mut tx, &cid, None).await?;
            let held = super::projects::held(&mut tx, &cid, base).await?;
            let w = crate::projects::plan(&rows, &grants, staged, &held, baseline);
            let (rows, changes) =
                super::projects::write(&mut tx, &cid, rev, &w, scan, now, None).await?;
            n.rows += rows;
            n.changes += changes;
            sqlx::query("UPDATE scans SET projects_seen = $1 WHERE id = $2")
                .bind(i(report.projects_seen))
                .bind(scan)
                .execute(&mut *tx)
                .await?;
        }

        // Counts change only with versions (or matches); a scan that wrote none keeps them.
        let counted: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM account_counts WHERE connection_id = $1)",
        )
        .bind(&cid)
        .fetch_one(&mut *tx)
        .await?;
        if refresh || n.rows > 0 || !counted {
            listing::recount(&mut tx, &cid).await?;
        }
        let active: i64 =
            sqlx::query_scalar("SELECT active FROM account_counts WHERE connection_id = $1")
                .bind(&cid)
                .fetch_one(&mut *tx)
                .await?;
        let active = u(active);
        let warnings = serde_json::to_string(&report.warnings).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE scans SET status = 'succeeded', finished_at = $1, requests = $2, retries = $3, users_seen = $4,
                    groups_seen = $5, active_seats = $6, changes = $7, rows_written = $8, warnings = $9 WHERE id = $10",
        )
        .bind(now)
        .bind(i(report.requests))
        .bind(i(report.retries))
        .bind(i(report.users_seen))
        .bind(i(report.groups_seen))
        .bind(i(active))
        .bind(i(n.changes))
        .bind(i(n.rows))
        .bind(warnings)
        .bind(scan)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CommitSummary {
            scan_id: scan,
            changes: n.changes,
            rows_written: n.rows,
            account_rows_written: n.account_rows,
            active_seats: active,
        })
    }
}

async fn apply_groups(
    tx: &mut PgConnection,
    n: &mut Counter,
    cid: &str,
    rev: i64,
    baseline: bool,
    pending: &mut Vec<PendingChange>,
) -> StoreResult<()> {
    // Groups created or renamed.
    let rows: Vec<(i64, Option<String>, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT s.tr_group_id, s.name, c.tr_group_id, c.name FROM stage_groups s
         LEFT JOIN group_versions c ON c.connection_id = $1 AND c.tr_group_id = s.tr_group_id AND c.valid_to_rev IS NULL
         WHERE c.tr_group_id IS NULL OR c.name IS DISTINCT FROM s.name
         ORDER BY s.tr_group_id",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?;
    for (gid, name, existed, old_name) in rows {
        if existed.is_some() {
            sqlx::query("UPDATE group_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_group_id = $3 AND valid_to_rev IS NULL")
                .bind(rev).bind(cid).bind(gid).execute(&mut *tx).await?;
            n.rows += 1;
        }
        sqlx::query("INSERT INTO group_versions (connection_id, tr_group_id, valid_from_rev, name) VALUES ($1, $2, $3, $4)")
            .bind(cid).bind(gid).bind(rev).bind(&name).execute(&mut *tx).await?;
        n.rows += 1;
        if !baseline {
            let kind = if existed.is_some() {
                ChangeKind::GroupRenamed
            } else {
                ChangeKind::GroupCreated
            };
            pending.push(PendingChange {
                kind,
                user: None,
                group: Some(gid),
                subject: name.clone(),
                before: old_name,
                after: name,
            });
        }
    }
    // Groups deleted.
    let gone: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT c.tr_group_id, c.name FROM group_versions c WHERE c.connection_id = $1 AND c.valid_to_rev IS NULL
           AND NOT EXISTS (SELECT 1 FROM stage_groups s WHERE s.tr_group_id = c.tr_group_id)
         ORDER BY c.tr_group_id",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?;
    for (gid, name) in gone {
        sqlx::query("UPDATE group_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_group_id = $3 AND valid_to_rev IS NULL")
            .bind(rev).bind(cid).bind(gid).execute(&mut *tx).await?;
        n.rows += 1;
        pending.push(PendingChange {
            kind: ChangeKind::GroupDeleted,
            user: None,
            group: Some(gid),
            subject: name.clone(),
            before: name,
            after: None,
        });
    }
    // Memberships joined and left: set differences against the current versions.
    if !baseline {
        let joined: Vec<(i64, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.tr_group_id, s.tr_user_id, g.name, COALESCE(a.email, a.name) FROM stage_members s
             LEFT JOIN stage_groups g ON g.tr_group_id = s.tr_group_id
             LEFT JOIN account_versions a ON a.connection_id = $1 AND a.tr_user_id = s.tr_user_id AND a.valid_to_rev IS NULL
             WHERE NOT EXISTS (SELECT 1 FROM membership_versions m WHERE m.connection_id = $1 AND m.tr_group_id = s.tr_group_id
                               AND m.tr_user_id = s.tr_user_id AND m.valid_to_rev IS NULL)
             ORDER BY s.tr_group_id, s.tr_user_id",
        )
        .bind(cid)
        .fetch_all(&mut *tx)
        .await?;
        for (gid, uid, gname, subject) in joined {
            pending.push(PendingChange {
                kind: ChangeKind::GroupJoined,
                user: Some(uid),
                group: Some(gid),
                subject,
                before: None,
                after: gname,
            });
        }
        // A group this revision renamed has two versions here (the one it closed and the one
        // it opened): one row per membership, with the name the group had before (the older
        // version, the row SQLite's bare-column GROUP BY returned).
        let left: Vec<(i64, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT ON (m.tr_group_id, m.tr_user_id) m.tr_group_id, m.tr_user_id, g.name, COALESCE(a.email, a.name)
             FROM membership_versions m
             LEFT JOIN group_versions g ON g.connection_id = m.connection_id AND g.tr_group_id = m.tr_group_id
                  AND (g.valid_to_rev IS NULL OR g.valid_to_rev = $2)
             LEFT JOIN account_versions a ON a.connection_id = m.connection_id AND a.tr_user_id = m.tr_user_id
                  AND a.valid_to_rev IS NULL
             WHERE m.connection_id = $1 AND m.valid_to_rev IS NULL
               AND m.tr_group_id IN (SELECT id FROM play_groups)
               AND NOT EXISTS (SELECT 1 FROM stage_members s WHERE s.tr_group_id = m.tr_group_id AND s.tr_user_id = m.tr_user_id)
               AND NOT EXISTS (SELECT 1 FROM held_members h WHERE h.tr_group_id = m.tr_group_id AND h.tr_user_id = m.tr_user_id)
             ORDER BY m.tr_group_id, m.tr_user_id, g.valid_from_rev NULLS FIRST",
        )
        .bind(cid)
        .bind(rev)
        .fetch_all(&mut *tx)
        .await?;
        for (gid, uid, gname, subject) in left {
            pending.push(PendingChange {
                kind: ChangeKind::GroupLeft,
                user: Some(uid),
                group: Some(gid),
                subject,
                before: gname,
                after: None,
            });
        }
    }
    let closed = sqlx::query(
        "UPDATE membership_versions SET valid_to_rev = $2 WHERE connection_id = $1 AND valid_to_rev IS NULL
           AND tr_group_id IN (SELECT id FROM play_groups)
           AND NOT EXISTS (SELECT 1 FROM stage_members s WHERE s.tr_group_id = membership_versions.tr_group_id
                           AND s.tr_user_id = membership_versions.tr_user_id)
           AND NOT EXISTS (SELECT 1 FROM held_members h WHERE h.tr_group_id = membership_versions.tr_group_id
                           AND h.tr_user_id = membership_versions.tr_user_id)",
    )
    .bind(cid)
    .bind(rev)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let opened = sqlx::query(
        "INSERT INTO membership_versions (connection_id, tr_group_id, tr_user_id, valid_from_rev)
         SELECT $1, s.tr_group_id, s.tr_user_id, $2 FROM stage_members s
         WHERE NOT EXISTS (SELECT 1 FROM membership_versions m WHERE m.connection_id = $1 AND m.tr_group_id = s.tr_group_id
                           AND m.tr_user_id = s.tr_user_id AND m.valid_to_rev IS NULL)",
    )
    .bind(cid)
    .bind(rev)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    n.rows += closed + opened;
    Ok(())
}

async fn apply_roles(
    tx: &mut PgConnection,
    n: &mut Counter,
    cid: &str,
    rev: i64,
) -> StoreResult<()> {
    let changed: Vec<(i64, Option<String>, Option<bool>, Option<bool>, Option<i64>)> = sqlx::query_as(
        "SELECT s.tr_role_id, s.name, s.is_default, s.is_project_admin, c.tr_role_id FROM stage_roles s
         LEFT JOIN role_versions c ON c.connection_id = $1 AND c.tr_role_id = s.tr_role_id AND c.valid_to_rev IS NULL
         WHERE c.tr_role_id IS NULL OR c.name IS DISTINCT FROM s.name OR c.is_default IS DISTINCT FROM s.is_default
            OR c.is_project_admin IS DISTINCT FROM s.is_project_admin
         ORDER BY s.tr_role_id",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?;
    for (rid, name, is_default, is_pa, existed) in changed {
        if existed.is_some() {
            sqlx::query("UPDATE role_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND tr_role_id = $3 AND valid_to_rev IS NULL")
                .bind(rev).bind(cid).bind(rid).execute(&mut *tx).await?;
            n.rows += 1;
        }
        sqlx::query("INSERT INTO role_versions (connection_id, tr_role_id, valid_from_rev, name, is_default, is_project_admin) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(cid).bind(rid).bind(rev).bind(&name).bind(is_default).bind(is_pa).execute(&mut *tx).await?;
        n.rows += 1;
    }
    let res = sqlx::query(
        "UPDATE role_versions SET valid_to_rev = $1 WHERE connection_id = $2 AND valid_to_rev IS NULL
           AND NOT EXISTS (SELECT 1 FROM stage_roles s WHERE s.tr_role_id = role_versions.tr_role_id)",
    )
    .bind(rev)
    .bind(cid)
    .execute(&mut *tx)
    .await?;
    n.rows += res.rows_affected();
    Ok(())
}

impl ScanWriter for PgScan {
    fn id(&self) -> i64 {
        self.id
    }

    async fn stage_accounts(&mut self, accounts: &[Account]) -> StoreResult<()> {
        // Only accounts that are new or whose digest changed are staged; the rest are noted
        // as seen (a rescan with no change writes almost nothing).
        let mut staged = Vec::new();
        for a in accounts {
            let id = i(a.id);
            self.seen.insert(id);
            let fields = a.fields.as_str();
            let d = digest(a, fields);
            if self.known.get(&id) != Some(&Some(d)) {
                staged.push((a, fields, d));
            }
        }
        if staged.is_empty() {
            return Ok(());
        }
        let staged = keep_last(staged, |(a, _, _)| i(a.id));
        let mut tx = sqlx::Connection::begin(&mut *self.conn).await?;
        for chunk in staged.chunks(BATCH) {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
                "INSERT INTO stage_accounts ({ACCOUNT_COLS}, name_key, email_key, digest) "
            ));
            qb.push_values(chunk, |mut b, (a, fields, d)| {
                let (name_key, email_key) = keys(a);
                b.push_bind(i(a.id))
                    .push_bind(a.name.clone())
                    .push_bind(a.email.clone())
                    .push_bind(a.is_active)
                    .push_bind(a.role_id.map(i))
                    .push_bind(a.role.clone())
                    .push_bind(a.is_admin)
                    .push_bind(*fields)
                    .push_bind(name_key)
                    .push_bind(email_key)
                    .push_bind(*d);
            });
            qb.push(
                " ON CONFLICT (tr_user_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
                  is_active = EXCLUDED.is_active, role_id = EXCLUDED.role_id, role_name = EXCLUDED.role_name,
                  is_admin = EXCLUDED.is_admin, fields = EXCLUDED.fields, name_key = EXCLUDED.name_key,
                  email_key = EXCLUDED.email_key, digest = EXCLUDED.digest",
            );
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stage_groups(&mut self, groups: &[GroupRecord]) -> StoreResult<()> {
        let mut tx = sqlx::Connection::begin(&mut *self.conn).await?;
        let named = keep_last(groups.iter().collect(), |g| i(g.id));
        for chunk in named.chunks(BATCH) {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO stage_groups (tr_group_id, name) ");
            qb.push_values(chunk, |mut b, g| {
                b.push_bind(i(g.id)).push_bind(g.name.clone());
            });
            qb.push(" ON CONFLICT (tr_group_id) DO UPDATE SET name = EXCLUDED.name");
            qb.build().execute(&mut *tx).await?;
        }
        // Members only of groups whose list changed since the scan began.
        let mut pairs: Vec<(i64, i64)> = Vec::new();
        for g in groups {
            let gid = i(g.id);
            self.groups_seen.insert(gid);
            let mut users: Vec<i64> = g.member_ids.iter().map(|u| i(*u)).collect();
            users.sort_unstable();
            users.dedup();
            if self.known_members.get(&gid) == Some(&members_digest(&users))
                && !self.members_staged.contains(&gid)
            {
                continue;
            }
            self.members_staged.insert(gid);
            pairs.extend(users.into_iter().map(|u| (gid, u)));
        }
        for chunk in pairs.chunks(BATCH) {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO stage_members (tr_group_id, tr_user_id) ");
            qb.push_values(chunk, |mut b, (g, user)| {
                b.push_bind(*g).push_bind(*user);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stage_roles(&mut self, roles: &[RoleRecord]) -> StoreResult<()> {
        let roles = keep_last(roles.iter().collect(), |r| i(r.id));
        for chunk in roles.chunks(BATCH) {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO stage_roles (tr_role_id, name, is_default, is_project_admin) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(i(r.id))
                    .push_bind(r.name.clone())
                    .push_bind(r.is_default)
                    .push_bind(r.is_project_admin);
            });
            qb.push(
                " ON CONFLICT (tr_role_id) DO UPDATE SET name = EXCLUDED.name,
                  is_default = EXCLUDED.is_default, is_project_admin = EXCLUDED.is_project_admin",
            );
            qb.build().execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    async fn stage_projects(
        &mut self,
        projects: Vec<accessrail_domain::project::Project>,
    ) -> StoreResult<()> {
        self.projects = Some(projects);
        Ok(())
    }

    async fn commit(mut self, report: ScanReport, now: i64) -> StoreResult<CommitSummary> {
        let result = self.apply(&report, now).await;
        if result
            .as_ref()
            .is_ok_and(|s| s.rows_written > super::ANALYZE_AFTER_ROWS)
        {
            super::analyze_history(&mut self.conn).await;
        }
        if let Err(e) = &result {
            let msg = format!("saving the scan failed: {e}");
            let _ = sqlx::query(
                "UPDATE scans SET status = 'failed', finished_at = $1, error = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(msg)
            .bind(self.id)
            .execute(&mut *self.conn)
            .await;
        }
        self.drop_staging().await;
        result
    }

    async fn fail(mut self, error: &str, report: ScanReport, now: i64) -> StoreResult<()> {
        self.drop_staging().await;
        let warnings = serde_json::to_string(&report.warnings).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE scans SET status = 'failed', finished_at = $1, error = $2, requests = $3, retries = $4, users_seen = $5,
                    groups_seen = $6, warnings = $7 WHERE id = $8",
        )
        .bind(now)
        .bind(error)
        .bind(i(report.requests))
        .bind(i(report.retries))
        .bind(i(report.users_seen))
        .bind(i(report.groups_seen))
        .bind(warnings)
        .bind(self.id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

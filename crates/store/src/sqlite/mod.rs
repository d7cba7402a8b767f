//! The SQLite implementation of [`Store`].
// Row tuples mirror their SELECT lists, so their types are as long as the queries.
#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use accessrail_domain::{Account, Identity, IdentityStatus, OverrideKind};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::Store;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use accessrail_domain::{AuditRecord, Outcome, audit};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod account;
mod evidence;
mod identities;
mod listing;
mod matches;
mod projects;
mod provisioning;
mod reviews;
mod scan;
mod scim;
mod shared;
mod tokens;

pub use scan::SqliteScan;

/// Rows per multi-row INSERT (8 columns each, well under SQLite's variable limit).
const BATCH: usize = 500;

/// The embedded SQLite store: one database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed, owner-only) the database at `path` and runs pending
    /// migrations. Processes opening one file at once take turns: creation and migrations run
    /// under an exclusive lock on `<path>.lock`, so two first starts never race.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let lock_path = {
            let mut p = path.as_os_str().to_owned();
            p.push(".lock");
            std::path::PathBuf::from(p)
        };
        let db_path = path.to_path_buf();
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let lock = private_file(&lock_path)?;
            lock.lock()?;
            // SQLite gives its -wal and -shm files the database file's permissions.
            private_file(&db_path)?;
            Ok(lock)
        })
        .await
        .map_err(|e| StoreError::Database(format!("opening the database: {e}")))?
        .map_err(|e| {
            StoreError::Database(format!("cannot open or lock {}: {e}", path.display()))
        })?;
        let opened = Self::open_locked(path).await;
        drop(lock);
        opened
    }

    async fn open_locked(path: &Path) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        // A database from before match results were stored gets them once, now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        // Once, after an upgrade: stored matches, counts and Unicode keys for older rows. Only
        // when something is missing, and then in a transaction that writes first (so it waits
        // for other writers instead of failing on a stale snapshot).
        let needs: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE id NOT IN (SELECT connection_id FROM account_counts))",
        )
        .fetch_one(&pool)
        .await?;
        if needs {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE connections SET updated_at = updated_at WHERE 0")
                .execute(&mut *tx)
                .await?;
            rekey(&mut tx).await?;
            matches::backfill(&mut tx, now).await?;
            let uncounted: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM connections WHERE id NOT IN (SELECT connection_id FROM account_counts)",
            )
            .fetch_all(&mut *tx)
            .await?;
            for cid in &uncounted {
                listing::recount(&mut tx, cid).await?;
            }
            tx.commit().await?;
        }
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool (read by the copy to PostgreSQL, `crate::migrate`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Accounts with their group ids: the current versions, or those valid right after scan
    /// `at_scan` committed.
    async fn accounts_as_of(
        &self,
        connection_id: &str,
        at_scan: Option<i64>,
    ) -> StoreResult<Vec<Account>> {
        let mut conn = self.pool.acquire().await?;
        let at = match at_scan {
            None => None,
            Some(scan) => {
                let rev: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT revision FROM scans WHERE id = ? AND connection_id = ?",
                )
                .bind(scan)
                .bind(connection_id)
                .fetch_optional(&mut *conn)
                .await?;
                match rev.flatten() {
                    Some(r) => Some(r),
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "a committed scan {scan} of this connection"
                        )));
                    }
                }
            }
        };
        let groups = memberships(&mut conn, connection_id, at).await?;
        let rows: Vec<AccountRow> = match at {
            None => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ACCOUNT_COLS} FROM account_versions WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_user_id"
                )))
                .bind(connection_id)
                .fetch_all(&mut *conn)
                .await?
            }
            Some(scan) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ACCOUNT_COLS} FROM account_versions WHERE connection_id = ? AND valid_from_rev <= ?
                     AND (valid_to_rev IS NULL OR valid_to_rev > ?) ORDER BY tr_user_id"
                )))
                .bind(connection_id)
                .bind(scan)
                .bind(scan)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| {
                let g = groups.get(&u(r.tr_user_id)).cloned().unwrap_or_default();
                r.into_account(g)
            })
            .collect())
    }
}

/// Opens `path` for writing, creating it owner-only (0600) when it does not exist; an existing
/// file keeps its permissions.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

// ---- row types (private) --------------------------------------------------------------------

#[derive(FromRow)]
struct ConnectionRow {
    id: String,
    name: String,
    base_url: String,
    email: String,
    secret: Vec<u8>,
    secret_key_id: String,
    request_budget: Option<i64>,
    groups_supported: Option<bool>,
    provisioning_enabled: bool,
    scan_interval_secs: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<ConnectionRow> for Connection {
    fn from(r: ConnectionRow) -> Self {
        Connection {
            id: r.id,
            name: r.name,
            base_url: r.base_url,
            email: r.email,
            secret: SealedSecret {
                key_id: r.secret_key_id,
                bytes: r.secret,
            },
            request_budget: r.request_budget.and_then(|b| u32::try_from(b).ok()),
            groups_supported: r.groups_supported,
            provisioning_enabled: r.provisioning_enabled,
            scan_interval_secs: r.scan_interval_secs,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(FromRow)]
struct ScanRow {
    id: i64,
    connection_id: String,
    started_at: i64,
    finished_at: Option<i64>,
    status: String,
    error: Option<String>,
    requests: i64,
    retries: i64,
    users_seen: i64,
    groups_seen: i64,
    active_seats: i64,
    changes: i64,
    rows_written: i64,
    warnings: String,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl From<ScanRow> for ScanRecord {
    fn from(r: ScanRow) -> Self {
        ScanRecord {
            id: r.id,
            connection_id: r.connection_id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: ScanStatus::parse(&r.status),
            error: r.error,
            requests: u(r.requests),
            retries: u(r.retries),
            users_seen: u(r.users_seen),
            groups_seen: u(r.groups_seen),
            active_seats: u(r.active_seats),
            changes: u(r.changes),
            rows_written: u(r.rows_written),
            warnings: serde_json::from_str(&r.warnings).unwrap_or_default(),
        }
    }
}

#[derive(FromRow)]
struct AccountRow {
    tr_user_id: i64,
    name: Option<String>,
    email: Option<String>,
    is_active: bool,
    role_id: Option<i64>,
    role_name: Option<String>,
    is_admin: Option<bool>,
    fields: String,
}

impl AccountRow {
    fn into_account(self, group_ids: Vec<u64>) -> Account {
        Account {
            id: u(self.tr_user_id),
            name: self.name,
            email: self.email,
            is_active: self.is_active,
            role_id: self.role_id.map(u),
            role: self.role_name,
            is_admin: self.is_admin,
            group_ids,
            fields: accessrail_domain::Fields::from_canonical(self.fields),
        }
    }
}

#[derive(FromRow)]
struct ChangeRow {
    id: i64,
    scan_id: i64,
    at: i64,
    kind: String,
    tr_user_id: Option<i64>,
    tr_group_id: Option<i64>,
    subject: Option<String>,
    before: Option<String>,
    after: Option<String>,
    audit_id: Option<i64>,
    tr_project_id: Option<i64>,
    project_name: Option<String>,
}

/// The columns a [`ChangeRow`] reads.
const CHANGE_COLS: &str = "id, scan_id, at, kind, tr_user_id, tr_group_id, subject, before, after, audit_id, tr_project_id, project_name";

impl ChangeRow {
    fn into_record(self) -> ChangeRecord {
        ChangeRecord {
            id: self.id,
            scan_id: self.scan_id,
            at: self.at,
            kind: self.kind,
            tr_user_id: self.tr_user_id.map(u),
            tr_group_id: self.tr_group_id.map(u),
            subject: self.subject,
            before: self.before,
            after: self.after,
            audit_id: self.audit_id,
            tr_project_id: self.tr_project_id.map(u),
            project: self.project_name,
        }
    }
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    connection: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
    calls: String,
    outcome: String,
    message: Option<String>,
    prev_hash: String,
    hash: String,
}

impl AuditRow {
    fn into_entry(self) -> StoreResult<AuditEntry> {
        Ok(AuditEntry {
            id: self.id,
            record: AuditRecord {
                at: self.at,
                actor: self.actor,
                connection: self.connection,
                action: self.action,
                target: self.target,
                before: self.before,
                after: self.after,
                calls: serde_json::from_str(&self.calls)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry {}: {e}", self.id)))?,
                outcome: Outcome::parse(&self.outcome).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "audit entry {} outcome {:?}",
                        self.id, self.outcome
                    ))
                })?,
                message: self.message,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[derive(FromRow)]
struct IdentityRow {
    id: String,
    name: String,
    status: String,
    emails: String,
    attributes: String,
    gone: bool,
}

impl IdentityRow {
    fn into_identity(self) -> StoreResult<Identity> {
        Ok(Identity {
            status: IdentityStatus::parse(&self.status).ok_or_else(|| {
                StoreError::Corrupt(format!("identity {} status {:?}", self.id, self.status))
            })?,
            emails: serde_json::from_str(&self.emails)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            attributes: serde_json::from_str(&self.attributes)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            id: self.id,
            name: self.name,
            gone: self.gone,
        })
    }
}

/// A new revision number, higher than every one handed out before (call it in the committing
/// transaction, after its first write, so the write lock orders revisions by commit).
async fn new_revision(
    tx: &mut SqliteConnection,
    cid: &str,
    kind: &str,
    now: i64,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO revisions (connection_id, kind, committed_at) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(cid)
    .bind(kind)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?)
}

/// Rows written before the keys existed got SQLite's ASCII-only `lower()`: give every row with
/// non-ASCII text the keys Rust computes, as new rows get.
async fn rekey(tx: &mut SqliteConnection) -> StoreResult<()> {
    let rows: Vec<(i64, Option<String>, Option<String>, String, String)> = sqlx::query_as(
        "SELECT rowid, name, email, name_key, email_key FROM account_versions
         WHERE name GLOB '*[^ -~]*' OR email GLOB '*[^ -~]*'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (rowid, name, email, name_key, email_key) in rows {
        let want_name = name.as_deref().unwrap_or_default().to_lowercase();
        let want_email = email.as_deref().unwrap_or_default().to_lowercase();
        if want_name != name_key || want_email != email_key {
            sqlx::query("UPDATE account_versions SET name_key = ?, email_key = ? WHERE rowid = ?")
                .bind(want_name)
                .bind(want_email)
                .bind(rowid)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// The lower-cased (Unicode) name and email an account is sorted and searched by.
fn keys(a: &Account) -> (String, String) {
    (
        a.name.as_deref().unwrap_or_default().to_lowercase(),
        a.email.as_deref().unwrap_or_default().to_lowercase(),
    )
}

const ACCOUNT_COLS: &str =
    "tr_user_id, name, email, is_active, role_id, role_name, is_admin, fields";

async fn memberships(
    conn: &mut SqliteConnection,
    connection_id: &str,
    at_scan: Option<i64>,
) -> StoreResult<BTreeMap<u64, Vec<u64>>> {
    let rows: Vec<(i64, i64)> = match at_scan {
        None => {
            sqlx::query_as(
                "SELECT tr_user_id, tr_group_id FROM membership_versions
                 WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_user_id, tr_group_id",
            )
            .bind(connection_id)
            .fetch_all(&mut *conn)
            .await?
        }
        Some(scan) => {
            sqlx::query_as(
                "SELECT tr_user_id, tr_group_id FROM membership_versions
                 WHERE connection_id = ? AND valid_from_rev <= ? AND (valid_to_rev IS NULL OR valid_to_rev > ?)
                 ORDER BY tr_user_id, tr_group_id",
            )
            .bind(connection_id)
            .bind(scan)
            .bind(scan)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut map: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (user, group) in rows {
        map.entry(u(user)).or_default().push(u(group));
    }
    Ok(map)
}

impl Store for SqliteStore {
    type Scan = SqliteScan;

    async fn insert_connection(&self, c: NewConnection) -> StoreResult<Connection> {
        let res = sqlx::query(
            "INSERT INTO connections (id, name, base_url, email, secret, secret_key_id, request_budget, groups_supported, created_at, updated_at, scan_interval_secs)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.base_url)
        .bind(&c.email)
        .bind(&c.secret.bytes)
        .bind(&c.secret.key_id)
        .bind(c.request_budget.map(i64::from))
        .bind(c.groups_supported)
        .bind(c.now)
        .bind(c.now)
        .bind(c.scan_interval_secs)
        .execute(&self.pool)
        .await;
        match res {
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a connection named {:?} already exists",
                    c.name
                )));
            }
            other => {
                other?;
            }
        }
        sqlx::query(
            "INSERT OR IGNORE INTO account_counts (connection_id, accounts, active, unmatched_active, ambiguous,
                    forgotten, leavers_active, admins) VALUES (?, 0, 0, 0, 0, 0, 0, 0)",
        )
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        self.connection(&c.name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connection {}", c.name)))
    }

    async fn replace_connection(&self, c: NewConnection) -> StoreResult<Connection> {
        let res = sqlx::query(
            "UPDATE connections SET base_url = ?, email = ?, secret = ?, secret_key_id = ?, request_budget = ?,
                    groups_supported = ?, updated_at = ?, scan_interval_secs = ? WHERE name = ?",
        )
        .bind(&c.base_url)
        .bind(&c.email)
        .bind(&c.secret.bytes)
        .bind(&c.secret.key_id)
        .bind(c.request_budget.map(i64::from))
        .bind(c.groups_supported)
        .bind(c.now)
        .bind(c.scan_interval_secs)
        .bind(&c.name)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return self.insert_connection(c).await;
        }
        self.connection(&c.name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connection {}", c.name)))
    }

    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        let rows: Vec<ConnectionRow> = sqlx::query_as("SELECT * FROM connections ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        let row: Option<ConnectionRow> = sqlx::query_as("SELECT * FROM connections WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Connection::from))
    }

    async fn remove_connection(&self, name: &str) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM connections WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn set_groups_supported(&self, connection_id: &str, supported: bool) -> StoreResult<()> {
        sqlx::query("UPDATE connections SET groups_supported = ? WHERE id = ?")
            .bind(supported)
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reseal_secrets(&self, secrets: Vec<(String, SealedSecret)>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (id, s) in secrets {
            sqlx::query("UPDATE connections SET secret = ?, secret_key_id = ? WHERE id = ?")
                .bind(&s.bytes)
                .bind(&s.key_id)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> StoreResult<Option<LeaseToken>> {
        let generation: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at, generation) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                generation = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?4
                                  THEN leases.generation ELSE leases.generation + 1 END
             WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder
             RETURNING generation",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_secs)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(generation.map(|generation| LeaseToken {
            name: name.to_string(),
            holder: holder.to_string(),
            generation,
        }))
    }

    async fn renew_lease(&self, token: &LeaseToken, now: i64, ttl_secs: i64) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE leases SET expires_at = ?1 WHERE name = ?2 AND holder = ?3 AND generation = ?4 AND expires_at > ?5",
        )
        .bind(now + ttl_secs)
        .bind(&token.name)
        .bind(&token.holder)
        .bind(token.generation)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        // Kept with expires_at = 0, so the next holder's generation is still higher.
        sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_leases_held_by(&self, holder_prefix: &str) -> StoreResult<u64> {
        let res = sqlx::query(
            "UPDATE leases SET expires_at = 0 WHERE expires_at > 0 AND substr(holder, 1, length(?1)) = ?1",
        )
        .bind(holder_prefix)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    async fn begin_scan(
        &self,
        connection_id: &str,
        now: i64,
        lease: LeaseToken,
    ) -> StoreResult<SqliteScan> {
        // The base revision is read in the same statement: everything committed later is newer
        // than what this scan will read from TestRail.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scans (connection_id, started_at, status, base_revision)
             VALUES (?, ?, 'running', (SELECT COALESCE(MAX(id), 0) FROM revisions)) RETURNING id",
        )
        .bind(connection_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        for stmt in [
            "CREATE TEMP TABLE IF NOT EXISTS stage_accounts (tr_user_id INTEGER PRIMARY KEY, name TEXT, email TEXT,
                is_active INTEGER NOT NULL, role_id INTEGER, role_name TEXT, is_admin INTEGER, fields TEXT NOT NULL,
                name_key TEXT NOT NULL, email_key TEXT NOT NULL, digest INTEGER NOT NULL)",
            "CREATE TEMP TABLE IF NOT EXISTS stage_groups (tr_group_id INTEGER PRIMARY KEY, name TEXT)",
            "CREATE TEMP TABLE IF NOT EXISTS stage_members (tr_group_id INTEGER NOT NULL, tr_user_id INTEGER NOT NULL,
                PRIMARY KEY (tr_group_id, tr_user_id))",
            "CREATE TEMP TABLE IF NOT EXISTS stage_roles (tr_role_id INTEGER PRIMARY KEY, name TEXT, is_default INTEGER,
                is_project_admin INTEGER)",
            "DELETE FROM temp.stage_accounts",
            "DELETE FROM temp.stage_groups",
            "DELETE FROM temp.stage_members",
            "DELETE FROM temp.stage_roles",
        ] {
            sqlx::query(stmt).execute(&mut *conn).await?;
        }
        // What the current accounts look like, by digest: unchanged ones are not staged.
        let known: std::collections::HashMap<i64, Option<i64>> = sqlx::query_as::<_, (i64, Option<i64>)>(
            "SELECT tr_user_id, digest FROM account_versions WHERE connection_id = ? AND valid_to_rev IS NULL",
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
             WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_group_id, tr_user_id",
        )
        .bind(connection_id)
        .fetch_all(&mut *conn)
        .await?
        {
            lists.entry(g).or_default().push(user);
        }
        let known_members = lists
            .into_iter()
            .map(|(g, users)| (g, crate::digest::members_digest(&users)))
            .collect();
        Ok(SqliteScan {
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

    async fn scans(&self, connection_id: &str) -> StoreResult<Vec<ScanRecord>> {
        let rows: Vec<ScanRow> = sqlx::query_as(
            "SELECT * FROM scans WHERE connection_id = ? AND kind = 'scan' ORDER BY id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ScanRecord::from).collect())
    }

    async fn scan(&self, scan_id: i64) -> StoreResult<Option<ScanRecord>> {
        let row: Option<ScanRow> = sqlx::query_as("SELECT * FROM scans WHERE id = ?")
            .bind(scan_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(ScanRecord::from))
    }

    async fn current_accounts(&self, connection_id: &str) -> StoreResult<Vec<Account>> {
        self.accounts_as_of(connection_id, None).await
    }

    async fn accounts_at_scan(
        &self,
        connection_id: &str,
        scan_id: i64,
    ) -> StoreResult<Vec<Account>> {
        self.accounts_as_of(connection_id, Some(scan_id)).await
    }

    async fn current_groups(&self, connection_id: &str) -> StoreResult<Vec<GroupRecord>> {
        let groups: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT tr_group_id, name FROM group_versions WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_group_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        let members: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT tr_group_id, tr_user_id FROM membership_versions WHERE connection_id = ? AND valid_to_rev IS NULL
             ORDER BY tr_group_id, tr_user_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_group: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for (g, user) in members {
            by_group.entry(g).or_default().push(u(user));
        }
        Ok(groups
            .into_iter()
            .map(|(id, name)| GroupRecord {
                id: u(id),
                name,
                member_ids: by_group.remove(&id).unwrap_or_default(),
            })
            .collect())
    }

    async fn current_group_names(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<(u64, Option<String>)>> {
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT tr_group_id, name FROM group_versions WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_group_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, n)| (u(id), n)).collect())
    }

    async fn group_summaries(&self, connection_id: &str) -> StoreResult<Vec<GroupSummary>> {
        let rows: Vec<(i64, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT g.tr_group_id, g.name, COALESCE(c.members, 0), COALESCE(c.active_members, 0)
             FROM group_versions g
             LEFT JOIN group_counts c ON c.connection_id = g.connection_id AND c.tr_group_id = g.tr_group_id
             WHERE g.connection_id = ? AND g.valid_to_rev IS NULL
             ORDER BY g.tr_group_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, members, active)| GroupSummary {
                id: u(id),
                name,
                members: u(members),
                active_members: u(active),
            })
            .collect())
    }

    async fn list_accounts(
        &self,
        connection_id: &str,
        query: &AccountQuery,
    ) -> StoreResult<AccountListing> {
        listing::list(&self.pool, connection_id, query).await
    }

    async fn account_counts(&self, connection_id: &str) -> StoreResult<AccountCounts> {
        listing::counts(&self.pool, connection_id).await
    }

    async fn current_roles(&self, connection_id: &str) -> StoreResult<Vec<RoleRecord>> {
        let rows: Vec<(i64, Option<String>, Option<bool>, Option<bool>)> = sqlx::query_as(
            "SELECT tr_role_id, name, is_default, is_project_admin FROM role_versions
             WHERE connection_id = ? AND valid_to_rev IS NULL ORDER BY tr_role_id",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, is_default, is_project_admin)| RoleRecord {
                id: u(id),
                name,
                is_default,
                is_project_admin,
            })
            .collect())
    }

    async fn changes(
        &self,
        connection_id: &str,
        since: Option<i64>,
        scan_id: Option<i64>,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANGE_COLS} FROM changes
             WHERE connection_id = ? AND (? IS NULL OR at >= ?) AND (? IS NULL OR scan_id = ?) ORDER BY id"
        )))
        .bind(connection_id)
        .bind(since)
        .bind(since)
        .bind(scan_id)
        .bind(scan_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ChangeRow::into_record).collect())
    }

    async fn recent_changes(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANGE_COLS} FROM changes
             WHERE connection_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        )))
        .bind(connection_id)
        .bind(before)
        .bind(i(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ChangeRow::into_record).collect())
    }

    async fn account(
        &self,
        connection_id: &str,
        account_id: u64,
    ) -> StoreResult<Option<ListedAccount>> {
        self.account_impl(connection_id, account_id).await
    }

    async fn latest_revision(&self, connection_id: &str) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(id) FROM revisions WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn projects(
        &self,
        connection_id: &str,
        at_scan: Option<i64>,
    ) -> StoreResult<Vec<accessrail_domain::project::Project>> {
        self.projects_impl(connection_id, at_scan).await
    }

    async fn project_changes(
        &self,
        connection_id: &str,
        project_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        self.project_changes_impl(connection_id, project_id, limit)
            .await
    }

    async fn account_changes(
        &self,
        connection_id: &str,
        account_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        self.account_changes_impl(connection_id, account_id, limit)
            .await
    }

    async fn account_audit(
        &self,
        connection_id: &str,
        account_id: u64,
        email: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.account_audit_impl(connection_id, account_id, email, limit)
            .await
    }

    async fn import_identities(
        &self,
        identities: Vec<Identity>,
        full: bool,
        now: i64,
    ) -> StoreResult<ImportSummary> {
        self.import_identities_impl(identities, full, now).await
    }

    async fn identities(&self) -> StoreResult<Vec<Identity>> {
        self.identities_impl().await
    }

    async fn set_override(
        &self,
        connection_id: &str,
        o: OverrideRecord,
        now: i64,
    ) -> StoreResult<()> {
        self.set_override_impl(connection_id, o, now).await
    }

    async fn clear_override(
        &self,
        connection_id: &str,
        account_id: u64,
        identity_id: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        self.clear_override_impl(connection_id, account_id, identity_id, now)
            .await
    }

    async fn overrides(&self, connection_id: &str) -> StoreResult<Vec<OverrideRecord>> {
        self.overrides_impl(connection_id).await
    }

    async fn set_provisioning(&self, connection_id: &str, enabled: bool) -> StoreResult<()> {
        self.set_provisioning_impl(connection_id, enabled).await
    }

    async fn protect(&self, connection_id: &str, p: ProtectedAccount) -> StoreResult<()> {
        self.protect_impl(connection_id, p).await
    }

    async fn unprotect(&self, connection_id: &str, email: &str) -> StoreResult<bool> {
        self.unprotect_impl(connection_id, email).await
    }

    async fn protected(&self, connection_id: &str) -> StoreResult<Vec<ProtectedAccount>> {
        self.protected_impl(connection_id).await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<AuditEntry> {
        self.append_audit_impl(record).await
    }

    async fn recent_audit(&self, before: Option<i64>, limit: u64) -> StoreResult<Vec<AuditEntry>> {
        self.recent_audit_impl(before, limit).await
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        self.audit_log_impl().await
    }

    async fn record_provision(
        &self,
        connection_id: &str,
        audit_id: i64,
        now: i64,
        update: ProvisionUpdate,
    ) -> StoreResult<i64> {
        self.record_provision_impl(connection_id, audit_id, now, update)
            .await
    }

    async fn create_token(&self, name: &str, hash: &str, now: i64) -> StoreResult<()> {
        self.create_token_impl(name, hash, now).await
    }

    async fn upsert_token(&self, name: &str, hash: &str, now: i64) -> StoreResult<()> {
        self.upsert_token_impl(name, hash, now).await
    }

    async fn revoke_token(&self, name: &str, now: i64) -> StoreResult<bool> {
        self.revoke_token_impl(name, now).await
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.tokens_impl().await
    }

    async fn create_reviewer_token(
        &self,
        name: &str,
        hash: &str,
        reviewer: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.create_reviewer_token_impl(name, hash, reviewer, now)
            .await
    }
    async fn token_auth_by_hash(&self, hash: &str) -> StoreResult<Option<TokenAuth>> {
        self.token_auth_by_hash_impl(hash).await
    }
    async fn set_owner(
        &self,
        connection_id: &str,
        kind: &str,
        target_id: u64,
        target_name: &str,
        owner: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        self.set_owner_impl(connection_id, kind, target_id, target_name, owner, now)
            .await
    }
    async fn owners(&self, connection_id: &str) -> StoreResult<Vec<OwnerRecord>> {
        self.owners_impl(connection_id).await
    }
    async fn create_review(
        &self,
        review: NewReview,
        items: Vec<ReviewItemRecord>,
    ) -> StoreResult<i64> {
        self.create_review_impl(review, items).await
    }
    async fn reviews(&self, connection_id: Option<&str>) -> StoreResult<Vec<ReviewRecord>> {
        self.reviews_impl(connection_id).await
    }
    async fn review(&self, id: i64) -> StoreResult<Option<ReviewRecord>> {
        self.review_impl(id).await
    }
    async fn review_items(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
    ) -> StoreResult<Vec<ReviewItemRecord>> {
        self.review_items_impl(review_id, reviewer).await
    }
    async fn review_progress(&self, review_id: i64) -> StoreResult<Vec<ReviewerProgress>> {
        self.review_progress_impl(review_id).await
    }
    async fn decide_review_items(
        &self,
        review_id: i64,
        reviewer: &str,
        decisions: Vec<ReviewDecision>,
    ) -> StoreResult<u64> {
        self.decide_review_items_impl(review_id, reviewer, decisions)
            .await
    }
    async fn review_submissions(&self, review_id: i64) -> StoreResult<Vec<SubmissionRecord>> {
        self.review_submissions_impl(review_id).await
    }
    async fn submit_review(
        &self,
        review_id: i64,
        reviewer: &str,
        by: &str,
        now: i64,
    ) -> StoreResult<String> {
        self.submit_review_impl(review_id, reviewer, by, now).await
    }
    async fn begin_review_close(&self, review_id: i64) -> StoreResult<()> {
        self.begin_review_close_impl(review_id).await
    }
    async fn end_review_close(&self, review_id: i64) -> StoreResult<()> {
        self.end_review_close_impl(review_id).await
    }

    async fn judge_submission(
        &self,
        review_id: i64,
        reviewer: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        self.judge_submission_impl(review_id, reviewer, approve, by, comment, now)
            .await
    }
    async fn record_review_outcomes(
        &self,
        review_id: i64,
        outcomes: Vec<ItemOutcome>,
        close: Option<ReviewClose>,
    ) -> StoreResult<()> {
        self.record_review_outcomes_impl(review_id, outcomes, close)
            .await
    }
    async fn review_items_page(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
        decided: Option<bool>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<ReviewItemRecord>, u64)> {
        self.review_items_page_impl(review_id, reviewer, decided, offset, limit)
            .await
    }
    async fn review_decision_counts(
        &self,
        review_id: i64,
    ) -> StoreResult<Vec<(String, Option<String>, u64)>> {
        self.review_decision_counts_impl(review_id).await
    }
    async fn begin_evidence_run(
        &self,
        connection_id: &str,
        now: i64,
        read_from: i64,
    ) -> StoreResult<i64> {
        self.begin_evidence_run_impl(connection_id, now, read_from)
            .await
    }
    async fn add_evidence(
        &self,
        connection_id: &str,
        evidence: Vec<EvidenceRecord>,
    ) -> StoreResult<u64> {
        self.add_evidence_impl(connection_id, evidence).await
    }
    #[allow(clippy::too_many_arguments)]
    async fn finish_evidence_run(
        &self,
        run_id: i64,
        status: &str,
        requests: u64,
        estimate: u64,
        evidence: u64,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        self.finish_evidence_run_impl(run_id, status, requests, estimate, evidence, error, now)
            .await
    }
    async fn evidence_runs(&self, connection_id: &str) -> StoreResult<Vec<EvidenceRun>> {
        self.evidence_runs_impl(connection_id).await
    }
    async fn account_evidence(
        &self,
        connection_id: &str,
        now: i64,
        account: Option<u64>,
    ) -> StoreResult<Vec<AccountEvidence>> {
        self.account_evidence_impl(connection_id, now, account)
            .await
    }
    async fn create_scim_token(
        &self,
        name: &str,
        hash: &str,
        connection_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.create_scim_token_impl(name, hash, connection_id, now)
            .await
    }
    async fn scim_token_by_hash(&self, hash: &str) -> StoreResult<Option<(String, String)>> {
        self.scim_token_by_hash_impl(hash).await
    }
    async fn scim_resource(
        &self,
        connection_id: &str,
        kind: &str,
        tr_id: u64,
    ) -> StoreResult<Option<ScimResource>> {
        self.scim_resource_impl(connection_id, kind, tr_id).await
    }
    async fn scim_resources(
        &self,
        connection_id: &str,
        kind: &str,
    ) -> StoreResult<Vec<ScimResource>> {
        self.scim_resources_impl(connection_id, kind).await
    }
    async fn put_scim_resource(&self, r: ScimResource) -> StoreResult<()> {
        self.put_scim_resource_impl(r).await
    }
    async fn scim_claim_deactivation(
        &self,
        connection_id: &str,
        token: &str,
        tr_user_id: u64,
        email: &str,
        now: i64,
        cap: u32,
        window: i64,
    ) -> StoreResult<ScimClaim> {
        self.scim_claim_deactivation_impl(connection_id, token, tr_user_id, email, now, cap, window)
            .await
    }
    async fn scim_holds(&self, connection_id: Option<&str>) -> StoreResult<Vec<ScimDeactivation>> {
        self.scim_holds_impl(connection_id).await
    }
    async fn scim_decide(&self, id: i64, approve: bool, by: &str, now: i64) -> StoreResult<bool> {
        self.scim_decide_impl(id, approve, by, now).await
    }
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<String>> {
        self.token_by_hash_impl(hash).await
    }

    async fn interrupt_running_scans(
        &self,
        connection_id: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<u64> {
        let res = sqlx::query(
            "UPDATE scans SET status = 'interrupted', finished_at = ?, error = ?
             WHERE connection_id = ? AND status = 'running' AND kind = 'scan'",
        )
        .bind(now)
        .bind(reason)
        .bind(connection_id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    async fn create_session(
        &self,
        s: SessionRecord,
        expired_before: i64,
        max: u64,
    ) -> StoreResult<()> {
        self.create_session_impl(s, expired_before, max).await
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        self.session_impl(id_hash).await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.delete_session_impl(id_hash).await
    }

    async fn session_count(&self) -> StoreResult<u64> {
        self.session_count_impl().await
    }

    async fn keep_setup_key(&self, key: PendingSetupKey, expired_before: i64) -> StoreResult<()> {
        self.keep_setup_key_impl(key, expired_before).await
    }

    async fn setup_key(
        &self,
        session_hash: &str,
        not_before: i64,
    ) -> StoreResult<Option<PendingSetupKey>> {
        self.setup_key_impl(session_hash, not_before).await
    }

    async fn drop_setup_key(&self, session_hash: &str) -> StoreResult<()> {
        self.drop_setup_key_impl(session_hash).await
    }

    async fn forget_setup_keys(&self, kept_before: Option<i64>) -> StoreResult<u64> {
        self.forget_setup_keys_impl(kept_before).await
    }

    async fn insert_plan(&self, p: PlanRecord, forget_before: i64) -> StoreResult<()> {
        self.insert_plan_impl(p, forget_before).await
    }

    async fn claim_plan(&self, id: &str, stale_before: i64) -> StoreResult<PlanClaim> {
        self.claim_plan_impl(id, stale_before).await
    }

    async fn release_plan(&self, id: &str, status: PlanStatus) -> StoreResult<()> {
        self.release_plan_impl(id, status).await
    }

    async fn start_plan_apply(&self, id: &str, now: i64) -> StoreResult<bool> {
        self.start_plan_apply_impl(id, now).await
    }

    async fn finish_plan(
        &self,
        id: &str,
        status: PlanStatus,
        outcome: Option<&str>,
    ) -> StoreResult<()> {
        self.finish_plan_impl(id, status, outcome).await
    }

    async fn plan(&self, id: &str) -> StoreResult<Option<PlanRecord>> {
        self.plan_impl(id).await
    }

    async fn take_request_slot(
        &self,
        instance: &str,
        per_minute: u32,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        self.take_request_slot_impl(instance, per_minute, now).await
    }

    async fn flows(&self, connection_id: &str) -> StoreResult<Option<String>> {
        self.flows_impl(connection_id).await
    }

    async fn set_flows(
        &self,
        connection_id: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        self.set_flows_impl(connection_id, text, now).await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.set_setting_impl(name, value).await
    }

    async fn claim_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        self.claim_setting_impl(name, value).await
    }

    async fn abandon_running_scans(&self, now: i64, reason: &str) -> StoreResult<u64> {
        let res = sqlx::query(
            "UPDATE scans SET status = 'interrupted', finished_at = ?, error = ? WHERE status = 'running'
               AND NOT EXISTS (SELECT 1 FROM leases WHERE leases.name = 'scan:' || scans.connection_id AND leases.expires_at > ?)",
        )
        .bind(now)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }
}

#[cfg(test)]
mod upgrade_tests;

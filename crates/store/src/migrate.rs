//! Moving an installation from its SQLite file into an empty PostgreSQL database
//! (`accessrail migrate-store`).
//!
//! Every table is copied row for row with an explicit column list, ids included (the audit
//! log's hash chain covers its ids, and revisions, scans, changes and audit entries refer to
//! each other by id), in one PostgreSQL transaction that holds the store's write lock: the copy
//! lands whole or not at all. The SQLite side is read in one transaction too, so the copy is
//! one consistent snapshot even if another process writes meanwhile. SQLite's 0/1 flags become
//! BOOLEAN where PostgreSQL has one; sealed API keys are copied as they are (the master key does
//! not change). Afterwards the identity sequences continue past the copied ids.
//!
//! A table of the SQLite store that is neither copied nor deliberately skipped (a table added
//! later and forgotten here) stops the copy before anything is written, and so does a column
//! this copy does not name.

use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, SqliteConnection};

use crate::error::{StoreError, StoreResult};
use crate::postgres::{PgStore, write_lock};
use crate::sqlite::SqliteStore;

/// Rows per statement, read and written (at most 17 columns: 8,500 parameters).
const BATCH: i64 = 500;

/// What one column holds, as PostgreSQL types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// INTEGER on SQLite, BIGINT on PostgreSQL.
    Int,
    /// A 0/1 INTEGER on SQLite, BOOLEAN on PostgreSQL.
    Bool,
    /// BLOB on SQLite, BYTEA on PostgreSQL.
    Bytes,
}

use Kind::{Bool, Bytes, Int, Text};

/// One table to copy.
#[derive(Debug)]
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Its `id` is an identity column on PostgreSQL (AUTOINCREMENT on SQLite): the sequence is
    /// moved past the copied ids.
    identity: bool,
    /// Copied when the SQLite store has it (a table newer than some installations' schema
    /// would otherwise be required); every other table must exist.
    optional: bool,
}

const fn table(name: &'static str, columns: &'static [(&'static str, Kind)]) -> Table {
    Table {
        name,
        columns,
        identity: false,
        optional: false,
    }
}

const fn with_ids(name: &'static str, columns: &'static [(&'static str, Kind)]) -> Table {
    Table {
        name,
        columns,
        identity: true,
        optional: false,
    }
}

/// Every table that is copied, in an order that satisfies the foreign keys (connections first).
const TABLES: &[Table] = &[
    table(
        "connections",
        &[
            ("id", Text),
            ("name", Text),
            ("base_url", Text),
            ("email", Text),
            ("secret", Bytes),
            ("secret_key_id", Text),
            ("request_budget", Int),
            ("groups_supported", Bool),
            ("created_at", Int),
            ("updated_at", Int),
            ("provisioning_enabled", Bool),
            ("scan_interval_secs", Int),
        ],
    ),
    with_ids(
        "revisions",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("kind", Text),
            ("committed_at", Int),
        ],
    ),
    with_ids(
        "scans",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("started_at", Int),
            ("finished_at", Int),
            ("status", Text),
            ("error", Text),
            ("requests", Int),
            ("retries", Int),
            ("users_seen", Int),
            ("groups_seen", Int),
            ("active_seats", Int),
            ("changes", Int),
            ("rows_written", Int),
            ("warnings", Text),
            ("kind", Text),
            ("revision", Int),
            ("base_revision", Int),
            ("projects_seen", Int),
        ],
    ),
    table(
        "account_versions",
        &[
            ("connection_id", Text),
            ("tr_user_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
            ("name", Text),
            ("email", Text),
            ("is_active", Bool),
            ("role_id", Int),
            ("role_name", Text),
            ("is_admin", Bool),
            ("fields", Text),
            ("name_key", Text),
            ("email_key", Text),
            ("digest", Int),
        ],
    ),
    table(
        "group_versions",
        &[
            ("connection_id", Text),
            ("tr_group_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
            ("name", Text),
        ],
    ),
    table(
        "membership_versions",
        &[
            ("connection_id", Text),
            ("tr_group_id", Int),
            ("tr_user_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
        ],
    ),
    table(
        "role_versions",
        &[
            ("connection_id", Text),
            ("tr_role_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
            ("name", Text),
            ("is_default", Bool),
            ("is_project_admin", Bool),
        ],
    ),
    table(
        "project_versions",
        &[
            ("connection_id", Text),
            ("tr_project_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
            ("name", Text),
            ("is_completed", Bool),
            ("completed_on", Int),
            ("access_known", Bool),
            ("users_known", Bool),
        ],
    ),
    table(
        "project_grant_versions",
        &[
            ("connection_id", Text),
            ("tr_project_id", Int),
            ("principal", Text),
            ("principal_id", Int),
            ("role_id", Int),
            ("role_name", Text),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
        ],
    ),
    with_ids(
        "changes",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("scan_id", Int),
            ("at", Int),
            ("kind", Text),
            ("tr_user_id", Int),
            ("tr_group_id", Int),
            ("subject", Text),
            ("before", Text),
            ("after", Text),
            ("audit_id", Int),
            ("tr_project_id", Int),
            ("project_name", Text),
        ],
    ),
    table(
        "identities",
        &[
            ("id", Text),
            ("name", Text),
            ("status", Text),
            ("emails", Text),
            ("attributes", Text),
            ("gone", Bool),
            ("updated_at", Int),
        ],
    ),
    table(
        "match_overrides",
        &[
            ("connection_id", Text),
            ("tr_user_id", Int),
            ("identity_id", Text),
            ("kind", Text),
            ("created_at", Int),
        ],
    ),
    table(
        "match_versions",
        &[
            ("connection_id", Text),
            ("tr_user_id", Int),
            ("valid_from_rev", Int),
            ("valid_to_rev", Int),
            ("state", Text),
            ("identity_id", Text),
            ("identity_name", Text),
            ("identity_status", Text),
            ("pinned", Bool),
            ("reason", Text),
            ("candidates", Text),
        ],
    ),
    table(
        "account_counts",
        &[
            ("connection_id", Text),
            ("accounts", Int),
            ("active", Int),
            ("unmatched_active", Int),
            ("ambiguous", Int),
            ("forgotten", Int),
            ("leavers_active", Int),
            ("admins", Int),
        ],
    ),
    table(
        "account_facets",
        &[
            ("connection_id", Text),
            ("is_active", Bool),
            ("is_admin", Bool),
            ("role_id", Int),
            ("state", Text),
            ("identity_status", Text),
            ("n", Int),
        ],
    ),
    table(
        "group_counts",
        &[
            ("connection_id", Text),
            ("tr_group_id", Int),
            ("members", Int),
            ("active_members", Int),
        ],
    ),
    table(
        "protected_accounts",
        &[
            ("connection_id", Text),
            ("email", Text),
            ("owner", Text),
            ("reason", Text),
            ("expires_at", Int),
            ("created_at", Int),
        ],
    ),
    with_ids(
        "audit_log",
        &[
            ("id", Int),
            ("at", Int),
            ("actor", Text),
            ("connection", Text),
            ("action", Text),
            ("target", Text),
            ("before", Text),
            ("after", Text),
            ("calls", Text),
            ("outcome", Text),
            ("message", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    ),
    table(
        "api_tokens",
        &[
            ("name", Text),
            ("hash", Text),
            ("created_at", Int),
            ("revoked_at", Int),
            ("reviewer", Text),
            ("scim_connection", Text),
        ],
    ),
    // Instance-wide settings written once (such as the id of the master key the replicas
    // share): they stay true after the move. Newer than some schemas, hence optional.
    Table {
        name: "instance_settings",
        columns: &[("name", Text), ("value", Text)],
        identity: false,
        optional: true,
    },
    Table {
        name: "connection_flows",
        columns: &[("connection_id", Text), ("text", Text), ("updated_at", Int)],
        identity: false,
        optional: true,
    },
    table(
        "access_owners",
        &[
            ("connection_id", Text),
            ("kind", Text),
            ("target_id", Int),
            ("target_name", Text),
            ("owner_email", Text),
            ("set_at", Int),
        ],
    ),
    with_ids(
        "reviews",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("scope", Text),
            ("scan_id", Int),
            ("undecided", Text),
            ("every", Text),
            ("fallbacks", Text),
            ("due_at", Int),
            ("status", Text),
            ("created_at", Int),
            ("created_by", Text),
            ("closed_at", Int),
            ("closed_by", Text),
            ("outcome", Text),
            ("previous_id", Int),
            ("next_start_at", Int),
        ],
    ),
    table(
        "review_items",
        &[
            ("review_id", Int),
            ("item", Int),
            ("tr_user_id", Int),
            ("email", Text),
            ("name", Text),
            ("reviewer", Text),
            ("route", Text),
            ("snapshot", Text),
            ("identity", Text),
            ("decision", Text),
            ("action", Text),
            ("comment", Text),
            ("decided_by", Text),
            ("decided_at", Int),
            ("final_decision", Text),
            ("final_source", Text),
            ("outcome", Text),
            ("outcome_audit_id", Int),
            ("outcome_at", Int),
        ],
    ),
    table(
        "review_submissions",
        &[
            ("review_id", Int),
            ("reviewer", Text),
            ("status", Text),
            ("submitted_at", Int),
            ("digest", Text),
            ("judged_by", Text),
            ("judged_at", Int),
            ("comment", Text),
            ("submitted_by", Text),
        ],
    ),
    with_ids(
        "evidence_runs",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("started_at", Int),
            ("finished_at", Int),
            ("status", Text),
            ("read_from", Int),
            ("requests", Int),
            ("estimate", Int),
            ("evidence", Int),
            ("error", Text),
        ],
    ),
    table(
        "scim_resources",
        &[
            ("connection_id", Text),
            ("kind", Text),
            ("tr_id", Int),
            ("external_id", Text),
            ("user_name", Text),
            ("email_meta", Text),
            ("token", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("deleted_at", Int),
        ],
    ),
    with_ids(
        "scim_deactivations",
        &[
            ("id", Int),
            ("connection_id", Text),
            ("token", Text),
            ("tr_user_id", Int),
            ("email", Text),
            ("requested_at", Int),
            ("status", Text),
            ("decided_by", Text),
            ("decided_at", Int),
        ],
    ),
    table(
        "evidence",
        &[
            ("connection_id", Text),
            ("kind", Text),
            ("artefact_id", Int),
            ("tr_user_id", Int),
            ("at", Int),
            ("project_id", Int),
            ("run_id", Int),
        ],
    ),
];

/// Tables deliberately not copied: they hold transient state that a running Accessrail
/// recreates. `leases` (who is scanning or changing a group right now: every holder has to
/// start again on the new store anyway), and the web console's sessions and the provisioning
/// plans kept for their apply (`session*`, `plan*`: signing in again and planning again is
/// all it takes), the shared TestRail request budget's last minute (`request_budget*`), and the
/// job queue (apalis' `Jobs`, `Workers` and `_apalis_migrations`: the scheduler queues due
/// scans again on the new store; stop `serve` before moving, so no apply is in flight).
fn is_transient(table: &str) -> bool {
    table == "leases"
        || table.starts_with("session")
        || table.starts_with("plan")
        || table.starts_with("request_budget")
        || matches!(table, "Jobs" | "Workers" | "_apalis_migrations")
}

/// What [`sqlite_to_postgres`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Rows copied, per table, in copy order (every copied table, empty ones too).
    pub tables: Vec<(&'static str, u64)>,
    /// Tables of the SQLite store deliberately left behind (transient state).
    pub skipped: Vec<String>,
    /// The ids of the master keys that sealed the copied API keys (they are copied sealed:
    /// the PostgreSQL store needs the same master key).
    pub secret_key_ids: Vec<String>,
}

impl MigrationReport {
    /// Rows copied from `table` (0 when it was not copied).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// Copies everything but transient state from the SQLite store `from` into the PostgreSQL
/// store `to`, whose database must hold no Accessrail data yet (its schema is created by
/// [`PgStore::open`]). All or nothing: one PostgreSQL transaction.
///
/// Errors: [`StoreError::Invalid`] when the target is not empty (nothing is written);
/// [`StoreError::Database`] when the SQLite store has a table or column this copy does not
/// know (checked before anything is written), or when the databases fail.
pub async fn sqlite_to_postgres(from: &SqliteStore, to: &PgStore) -> StoreResult<MigrationReport> {
    // One read transaction on SQLite: every table from the same snapshot.
    let mut src = from.pool().begin().await?;
    let present = sqlite_tables(&mut src).await?;
    let skipped = check_tables(&present)?;
    let copied: Vec<&Table> = TABLES
        .iter()
        .filter(|t| !t.optional || present.iter().any(|p| p == t.name))
        .collect();
    for t in &copied {
        check_columns(&mut src, t).await?;
    }
    let secret_key_ids: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT secret_key_id FROM connections ORDER BY 1")
            .fetch_all(&mut *src)
            .await?;

    let mut dst = to.pool.begin().await?;
    // Replicas already running on the target wait for the copy (and then see all of it).
    write_lock(&mut dst).await?;
    check_empty(&mut dst, &copied).await?;
    let mut tables = Vec::with_capacity(copied.len());
    for t in &copied {
        let n = copy_table(&mut src, &mut dst, t).await?;
        tables.push((t.name, n));
    }
    for t in copied.iter().filter(|t| t.identity) {
        continue_sequence(&mut src, &mut dst, t.name).await?;
    }
    dst.commit().await?;
    src.rollback().await?;
    Ok(MigrationReport {
        tables,
        skipped,
        secret_key_ids,
    })
}

/// The SQLite store's own tables (not SQLite's internal ones, not sqlx's migration record).
async fn sqlite_tables(src: &mut SqliteConnection) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        r"SELECT name FROM sqlite_master WHERE type = 'table'
          AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_sqlx%' ESCAPE '\'
          ORDER BY name",
    )
    .fetch_all(&mut *src)
    .await?)
}

/// Every table of the SQLite store is either copied or deliberately skipped; a required table
/// is there. Returns the skipped ones.
fn check_tables(present: &[String]) -> StoreResult<Vec<String>> {
    let unknown: Vec<&str> = present
        .iter()
        .map(String::as_str)
        .filter(|p| !is_transient(p) && !TABLES.iter().any(|t| t.name == *p))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::Database(format!(
            "the SQLite store has table(s) the copy to PostgreSQL does not know: {}; nothing was copied (crates/store/src/migrate.rs must copy or deliberately skip every table)",
            unknown.join(", ")
        )));
    }
    let missing: Vec<&str> = TABLES
        .iter()
        .filter(|t| !t.optional && !present.iter().any(|p| p == t.name))
        .map(|t| t.name)
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Database(format!(
            "the SQLite store lacks table(s) {}: nothing was copied",
            missing.join(", ")
        )));
    }
    Ok(present
        .iter()
        .filter(|p| is_transient(p))
        .cloned()
        .collect())
}

/// The table's columns on SQLite are exactly the ones the copy names.
async fn check_columns(src: &mut SqliteConnection, t: &Table) -> StoreResult<()> {
    let have: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(t.name)
        .fetch_all(&mut *src)
        .await?;
    let unknown: Vec<&str> = have
        .iter()
        .map(String::as_str)
        .filter(|c| !t.columns.iter().any(|(n, _)| n == c))
        .collect();
    let missing: Vec<&str> = t
        .columns
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !have.iter().any(|c| c == n))
        .collect();
    if unknown.is_empty() && missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Database(format!(
        "the SQLite table {} does not have the columns the copy to PostgreSQL expects (unknown: {}; missing: {}); nothing was copied",
        t.name,
        if unknown.is_empty() {
            "none".to_string()
        } else {
            unknown.join(", ")
        },
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(", ")
        },
    )))
}

/// Refuses a target that already holds Accessrail data (leases aside).
async fn check_empty(dst: &mut PgConnection, copied: &[&Table]) -> StoreResult<()> {
    let connections: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections")
        .fetch_one(&mut *dst)
        .await?;
    if connections > 0 {
        return Err(StoreError::Invalid(format!(
            "the target PostgreSQL database already has {connections} connection(s): migrate-store copies into an empty database only; nothing was written"
        )));
    }
    let mut used = vec![];
    for t in copied {
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{}\")",
            t.name
        )))
        .fetch_one(&mut *dst)
        .await?;
        if any {
            used.push(t.name);
        }
    }
    if used.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "the target PostgreSQL database is not empty ({} hold rows): migrate-store copies into an empty database only; nothing was written",
        used.join(", ")
    )))
}

/// One value read from SQLite, typed for PostgreSQL.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

fn read_row(row: &SqliteRow, t: &Table) -> StoreResult<(i64, Vec<Value>)> {
    let rowid: i64 = row.try_get(0)?;
    let mut values = Vec::with_capacity(t.columns.len());
    for (i, (column, kind)) in t.columns.iter().enumerate() {
        let at = i + 1;
        let unreadable =
            |e: sqlx::Error| StoreError::Corrupt(format!("{}.{column} (row {rowid}): {e}", t.name));
        values.push(match kind {
            Text => Value::Text(row.try_get(at).map_err(unreadable)?),
            Int => Value::Int(row.try_get(at).map_err(unreadable)?),
            Bool => {
                let v: Option<i64> = row.try_get(at).map_err(unreadable)?;
                Value::Bool(v.map(|v| v != 0))
            }
            Bytes => Value::Bytes(row.try_get(at).map_err(unreadable)?),
        });
    }
    Ok((rowid, values))
}

/// Copies one table in batches, in rowid order. Returns the rows copied.
async fn copy_table(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    t: &Table,
) -> StoreResult<u64> {
    let columns = t
        .columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!(
        "SELECT rowid, {columns} FROM \"{}\" WHERE rowid > ? ORDER BY rowid LIMIT {BATCH}",
        t.name
    );
    let mut after = i64::MIN;
    let mut copied = 0u64;
    loop {
        let rows: Vec<SqliteRow> = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .bind(after)
            .fetch_all(&mut *src)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let batch = rows
            .iter()
            .map(|r| read_row(r, t).map(|(_, v)| v))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("INSERT INTO \"{}\" ({columns}) ", t.name));
        qb.push_values(batch, |mut b, values| {
            for v in values {
                match v {
                    Value::Text(v) => b.push_bind(v),
                    Value::Int(v) => b.push_bind(v),
                    Value::Bool(v) => b.push_bind(v),
                    Value::Bytes(v) => b.push_bind(v),
                };
            }
        });
        let res =
            qb.build().execute(&mut *dst).await.map_err(|e| {
                StoreError::Database(format!("copying {} to PostgreSQL: {e}", t.name))
            })?;
        copied += res.rows_affected();
        if rows.len() < BATCH as usize {
            break;
        }
    }
    Ok(copied)
}

/// Moves the identity sequence of `table.id` past every id it holds and every id SQLite ever
/// handed out (AUTOINCREMENT never reuses the id of a deleted row, so neither does PostgreSQL
/// after the move): the next row gets a new id.
async fn continue_sequence(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &str,
) -> StoreResult<()> {
    let has_sequence: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence')",
    )
    .fetch_one(&mut *src)
    .await?;
    let handed_out: Option<i64> = if has_sequence {
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
            .bind(table)
            .fetch_optional(&mut *src)
            .await?
    } else {
        None
    };
    let max_id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT MAX(id) FROM \"{table}\""
    )))
    .fetch_one(&mut *dst)
    .await?;
    let last = max_id.max(handed_out).filter(|n| *n >= 1);
    // setval(seq, n, true): the next id is n + 1; setval(seq, 1, false): the next id is 1.
    sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)")
        .bind(table)
        .bind(last.unwrap_or(1))
        .bind(last.is_some())
        .execute(&mut *dst)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_tables_are_leases_sessions_and_plans() {
        for t in [
            "leases",
            "sessions",
            "session_tokens",
            "plans",
            "plan_steps",
            "Jobs",
            "Workers",
            "_apalis_migrations",
        ] {
            assert!(is_transient(t), "{t}");
        }
        for t in TABLES {
            assert!(!is_transient(t.name), "{}", t.name);
        }
    }

    #[test]
    fn an_unknown_table_stops_the_copy() {
        let mut present: Vec<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
        present.push("leases".into());
        present.push("sessions".into());
        assert_eq!(
            check_tables(&present).ok(),
            Some(vec!["leases".to_string(), "sessions".to_string()])
        );
        present.push("approvals".into());
        let err = check_tables(&present).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("approvals")),
            "{err:?}"
        );
    }

    #[test]
    fn batches_stay_under_postgres_parameter_limit() {
        let widest = TABLES.iter().map(|t| t.columns.len()).max().unwrap_or(0);
        assert!(widest as i64 * BATCH <= 65_535);
    }
}

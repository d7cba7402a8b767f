//! Projects and their access grants (see `crate::projects` for what is decided where).

use accessrail_domain::project::{Principal, Project};

use super::*;
use crate::projects::{self as shared, GrantRow, ProjectRow, Writes};

/// The revision right after scan `at_scan` committed (`None`: now).
pub(super) async fn revision_of(
    conn: &mut SqliteConnection,
    connection_id: &str,
    at_scan: Option<i64>,
) -> StoreResult<Option<i64>> {
    let Some(scan) = at_scan else { return Ok(None) };
    let rev: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revision FROM scans WHERE id = ? AND connection_id = ?")
            .bind(scan)
            .bind(connection_id)
            .fetch_optional(&mut *conn)
            .await?;
    match rev.flatten() {
        Some(r) => Ok(Some(r)),
        None => Err(StoreError::NotFound(format!(
            "a committed scan {scan} of this connection"
        ))),
    }
}

/// The project and grant rows as of revision `rev` (`None`: the current versions).
pub(super) async fn load_rows(
    conn: &mut SqliteConnection,
    cid: &str,
    rev: Option<i64>,
) -> StoreResult<(Vec<ProjectRow>, Vec<GrantRow>)> {
    const VALID: &str = "connection_id = ?1 AND (CASE WHEN ?2 IS NULL THEN valid_to_rev IS NULL
        ELSE valid_from_rev <= ?2 AND (valid_to_rev IS NULL OR valid_to_rev > ?2) END)";
    let projects: Vec<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT tr_project_id, name, is_completed, completed_on, access_known, users_known
         FROM project_versions WHERE {VALID} ORDER BY tr_project_id"
    )))
    .bind(cid)
    .bind(rev)
    .fetch_all(&mut *conn)
    .await?;
    let grants: Vec<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT tr_project_id, principal, principal_id, role_id, role_name
         FROM project_grant_versions WHERE {VALID} ORDER BY tr_project_id, principal, principal_id"
    )))
    .bind(cid)
    .bind(rev)
    .fetch_all(&mut *conn)
    .await?;
    Ok((projects, grants))
}

/// The projects as of revision `rev` (`None`: the current versions), as views show them.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    cid: &str,
    rev: Option<i64>,
) -> StoreResult<Vec<Project>> {
    let (projects, grants) = load_rows(conn, cid, rev).await?;
    Ok(shared::assemble(projects, grants))
}

/// Projects that a revision after `base` wrote (provisioning while a scan ran).
pub(super) async fn held(
    conn: &mut SqliteConnection,
    cid: &str,
    base: i64,
) -> StoreResult<shared::Held> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT tr_project_id FROM project_grant_versions
         WHERE connection_id = ?1 AND (valid_from_rev > ?2 OR valid_to_rev > ?2)
         UNION SELECT tr_project_id FROM project_versions
         WHERE connection_id = ?1 AND (valid_from_rev > ?2 OR valid_to_rev > ?2)",
    )
    .bind(cid)
    .bind(base)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Executes `w` at revision `rev` and writes its change rows (for `scan_row`). With `audit`,
/// the change of that principal points at that audit entry (the others, found on the way,
/// are TestRail's own). Returns (rows written, change rows).
pub(super) async fn write(
    conn: &mut SqliteConnection,
    cid: &str,
    rev: i64,
    w: &Writes,
    scan_row: i64,
    now: i64,
    audit: Option<(i64, Principal)>,
) -> StoreResult<(u64, u64)> {
    for pid in &w.close_projects {
        sqlx::query("UPDATE project_versions SET valid_to_rev = ? WHERE connection_id = ? AND tr_project_id = ? AND valid_to_rev IS NULL")
            .bind(rev).bind(cid).bind(pid).execute(&mut *conn).await?;
    }
    for p in &w.open_projects {
        sqlx::query(
            "INSERT INTO project_versions (connection_id, tr_project_id, valid_from_rev, name, is_completed, completed_on, access_known, users_known)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(cid)
        .bind(p.tr_project_id)
        .bind(rev)
        .bind(&p.name)
        .bind(p.is_completed)
        .bind(p.completed_on)
        .bind(p.access_known)
        .bind(p.users_known)
        .execute(&mut *conn)
        .await?;
    }
    for (pid, kind, id) in &w.close_grants {
        sqlx::query(
            "UPDATE project_grant_versions SET valid_to_rev = ? WHERE connection_id = ? AND tr_project_id = ?
               AND principal = ? AND principal_id = ? AND valid_to_rev IS NULL",
        )
        .bind(rev)
        .bind(cid)
        .bind(pid)
        .bind(kind)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    for g in &w.open_grants {
        sqlx::query(
            "INSERT INTO project_grant_versions (connection_id, tr_project_id, principal, principal_id, role_id, role_name, valid_from_rev)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(cid)
        .bind(g.tr_project_id)
        .bind(&g.principal)
        .bind(g.principal_id)
        .bind(g.role_id)
        .bind(&g.role_name)
        .bind(rev)
        .execute(&mut *conn)
        .await?;
    }
    for c in &w.changes {
        let audit_id = audit
            .filter(|(_, who)| c.principal == Some(*who))
            .map(|(id, _)| id);
        let (user, group) = shared::principal_ids(c.principal);
        let subject: Option<String> = match c.principal {
            Some(Principal::User(_)) => sqlx::query_scalar(
                "SELECT COALESCE(email, name) FROM account_versions WHERE connection_id = ? AND tr_user_id = ?
                 ORDER BY valid_from_rev DESC LIMIT 1",
            )
            .bind(cid)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?
            .flatten()
            .or_else(|| user.map(|u| format!("user {u}"))),
            Some(Principal::Group(_)) => sqlx::query_scalar(
                "SELECT name FROM group_versions WHERE connection_id = ? AND tr_group_id = ?
                 ORDER BY valid_from_rev DESC LIMIT 1",
            )
            .bind(cid)
            .bind(group)
            .fetch_optional(&mut *conn)
            .await?
            .flatten()
            .or_else(|| group.map(|g| format!("group {g}"))),
            Some(Principal::Everyone) => Some("everyone (project default)".into()),
            None => c.project.clone(),
        };
        sqlx::query(
            "INSERT INTO changes (connection_id, scan_id, at, kind, tr_user_id, tr_group_id, subject, before, after, audit_id,
                                  tr_project_id, project_name)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(cid)
        .bind(scan_row)
        .bind(now)
        .bind(c.kind.as_str())
        .bind(user)
        .bind(group)
        .bind(subject)
        .bind(&c.before)
        .bind(&c.after)
        .bind(audit_id)
        .bind(i(c.project_id))
        .bind(&c.project)
        .execute(&mut *conn)
        .await?;
    }
    let changes = w.changes.len() as u64;
    Ok((w.rows() + changes, changes))
}

impl SqliteStore {
    pub(super) async fn projects_impl(
        &self,
        connection_id: &str,
        at_scan: Option<i64>,
    ) -> StoreResult<Vec<Project>> {
        let mut conn = self.pool.acquire().await?;
        let rev = revision_of(&mut conn, connection_id, at_scan).await?;
        load(&mut conn, connection_id, rev).await
    }

    pub(super) async fn project_changes_impl(
        &self,
        connection_id: &str,
        project_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANGE_COLS} FROM changes WHERE connection_id = ?1 AND tr_project_id = ?2 ORDER BY id DESC LIMIT ?3"
        )))
        .bind(connection_id)
        .bind(i(project_id))
        .bind(i(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ChangeRow::into_record).collect())
    }
}

/// The project facts of a provisioning read-back, written as revision `rev`; the change of
/// `principal` is credited to audit entry `audit_id`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn record(
    conn: &mut SqliteConnection,
    cid: &str,
    rev: i64,
    project: &Project,
    principal: Option<Principal>,
    scan_row: i64,
    now: i64,
    audit_id: i64,
) -> StoreResult<u64> {
    let (rows, grants) = load_rows(conn, cid, None).await?;
    let w = shared::plan_read_back(rows, grants, project);
    let audit = principal.map(|p| (audit_id, p));
    let (_, changes) = write(conn, cid, rev, &w, scan_row, now, audit).await?;
    Ok(changes)
}

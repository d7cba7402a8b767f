//! A scan: every user, group, role and project of a connection, and each project's access, in
//! ceil(U/250) + ceil(G/250) + 1 + ceil(P/250) + P requests, streamed page by page into the
//! store, committed as one snapshot or not at all.
//!
//! Project access is part of every scan, not a step of its own: effective access combines
//! accounts, memberships and project roles, and only facts read together give one consistent
//! revision (what `--at-scan N` and a review's snapshot rely on).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use accessrail_store::{LeaseToken, ScanReport, ScanWriter, Store};
use serde::Serialize;
use testrail_client::{ErrorKind, Event};

use crate::connector::{self, FieldWarnings};
use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::lease;

/// What a running scan tells whoever watches it (a progress bar, a log).
pub trait ScanObserver: Send + Sync {
    /// Users read so far.
    fn users_read(&self, _n: u64) {}
    /// A phase begins: `users`, `groups`, `roles`, `saving`.
    fn phase(&self, _phase: &str) {}
    /// A retry, a 429 wait or a budget wait: reported, never hidden.
    fn client_event(&self, _event: &Event) {}
}

/// Watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl ScanObserver for Quiet {}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanOutcome {
    pub connection: String,
    pub scan_id: i64,
    pub users: u64,
    pub active_seats: u64,
    pub groups: u64,
    pub roles: u64,
    pub groups_fetched: bool,
    /// Projects read, and whether their access was: `read`, `partly unknown` or
    /// `unknown (TestRail before 7.3)`.
    pub projects: u64,
    pub project_access: String,
    pub requests: u64,
    pub minimum_requests: u64,
    pub retries: u64,
    pub changes: u64,
    pub rows_written: u64,
    pub account_rows_written: u64,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// ceil(U/250) + ceil(G/250) + 1, the cost of a scan when nothing fails.
pub fn minimum_requests(users: u64, groups: u64, groups_fetched: bool) -> u64 {
    let pages = |n: u64| n.div_ceil(250).max(1);
    pages(users) + if groups_fetched { pages(groups) } else { 1 } + 1
}

/// ceil(P/250) + P: the project list, then each project's access (7.3+; before 7.3 the list
/// only, since there is no access to read).
pub fn minimum_project_requests(projects: u64, access_readable: bool) -> u64 {
    projects.div_ceil(250).max(1) + if access_readable { projects } else { 0 }
}

/// Project reads in flight at once: enough to hide latency, few enough to leave TestRail's
/// per-instance rate limit (and the request budget, which paces them all) to others.
const PROJECT_READS_AT_ONCE: usize = 4;
/// Projects per scan at most, so a hostile TestRail cannot make a scan run for ever.
const MAX_PROJECTS: u64 = 100_000;

/// Every project, and (7.3+) each one's access through `get_project/{id}`.
async fn read_projects(
    client: &testrail_client::Client,
    access_readable: bool,
    warnings: &mut Vec<String>,
) -> EngineResult<Vec<accessrail_domain::project::Project>> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let listed = client
        .projects()
        .max_items(Some(MAX_PROJECTS))
        .collect_all()
        .await
        .map_err(|e| EngineError::upstream("reading projects", e))?;
    if !access_readable {
        if !listed.is_empty() {
            warnings.push(
                "this TestRail reports no project access (before 7.3): who can reach each project is unknown".into(),
            );
        }
        return Ok(listed
            .iter()
            .map(|p| {
                let mut d = connector::to_project(p, warnings);
                d.access = None;
                d
            })
            .collect());
    }
    let ids: Vec<u64> = listed.iter().map(|p| p.id).collect();
    // Each read owns its client handle: a future borrowing one is not `Send` for every
    // lifetime, which a spawned scan needs. Each answer becomes a domain project at once (an
    // Enterprise answer lists users, and there may be many).
    type Read = Option<(accessrail_domain::project::Project, Vec<String>)>;
    let read: Vec<Read> = stream::iter(ids)
        .map(|id| {
            let client = client.clone();
            async move {
                match client.get_project(id).await {
                    Ok(p) if p.id != id => Err(EngineError::upstream(
                        format!("reading project {id}"),
                        testrail_client::Error::upstream_bug(
                            "get_project",
                            format!("asked for project {id}, TestRail answered project {}", p.id),
                        ),
                    )),
                    Ok(p) => {
                        let mut w = Vec::new();
                        let d = connector::to_project(&p, &mut w);
                        Ok(Some((d, w)))
                    }
                    // Deleted since the list was read: it is gone, as the next list will say.
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(EngineError::upstream(format!("reading project {id}"), e)),
                }
            }
        })
        .buffered(PROJECT_READS_AT_ONCE)
        .try_collect()
        .await?;
    let gone = read.iter().filter(|r| r.is_none()).count();
    if gone > 0 {
        warnings.push(format!(
            "{gone} project(s) were deleted while the scan read them: recorded as removed"
        ));
    }
    let mut out = Vec::new();
    for (p, w) in read.into_iter().flatten() {
        warnings.extend(w);
        out.push(p);
    }
    let unknown = out.iter().filter(|p| p.access.is_none()).count();
    if unknown > 0 {
        warnings.push(format!(
            "{unknown} project(s) came without access fields: who can reach them is unknown"
        ));
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}

/// Scans one connection. Only one scan of a connection runs at a time, across processes: the
/// scan holds the connection's lease, renewed while it runs, and its commit checks the lease in
/// the same transaction. A scan found running whose lease expired (its process died) is
/// recorded as interrupted by whoever takes the lease next.
pub async fn scan<S: Store>(
    engine: &Engine<S>,
    connection: Option<&str>,
    observer: Arc<dyn ScanObserver>,
) -> EngineResult<ScanOutcome> {
    let conn = engine.resolve(connection).await?;
    let name = conn.name.clone();
    // Always wanted: `None` cannot come back.
    let ran = scan_if(engine, conn, observer, |_, _| true).await?;
    ran.ok_or(EngineError::ScanRunning(name))
}

/// Scans the connection if, once its scan lease is held, `wanted(connection, its scans)` still
/// says so: `Ok(None)` when it no longer does. The scheduler asks "is it still due?" here, so
/// of several processes that all saw a connection due, only the first scans it; the others
/// find its new scan once they hold the lease.
pub async fn scan_if<S: Store>(
    engine: &Engine<S>,
    conn: accessrail_store::Connection,
    observer: Arc<dyn ScanObserver>,
    wanted: impl Fn(&accessrail_store::Connection, &[accessrail_store::ScanRecord]) -> bool,
) -> EngineResult<Option<ScanOutcome>> {
    let store = engine.store();
    let name = format!("scan:{}", conn.id);
    let Some(token) = lease::try_acquire(engine, &name, "scan").await? else {
        return Err(EngineError::ScanRunning(conn.name.clone()));
    };
    let history = match store.scans(&conn.id).await {
        Ok(h) => h,
        Err(e) => {
            lease::release(engine, &token).await;
            return Err(e.into());
        }
    };
    if !wanted(&conn, &history) {
        lease::release(engine, &token).await;
        return Ok(None);
    }
    // Any scan of this connection still marked running lost its process (we hold the lease).
    if let Err(e) = store
        .interrupt_running_scans(
            &conn.id,
            engine.now(),
            "interrupted: the process running it stopped (its lease expired)",
        )
        .await
    {
        lease::release(engine, &token).await;
        return Err(e.into());
    }
    let lost = AtomicBool::new(false);
    let result = lease::hold(
        engine,
        std::slice::from_ref(&token),
        &lost,
        run(engine, &conn, observer, &token, &lost),
    )
    .await;
    lease::release(engine, &token).await;
    result.map(Some)
}

async fn run<S: Store>(
    engine: &Engine<S>,
    conn: &accessrail_store::Connection,
    observer: Arc<dyn ScanObserver>,
    token: &LeaseToken,
    lost: &AtomicBool,
) -> EngineResult<ScanOutcome> {
    let started = Instant::now();
    let store = engine.store();
    let requests = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let hook = {
        let (requests, retries, observer) = (requests.clone(), retries.clone(), observer.clone());
        Arc::new(move |e: &Event| {
            match e {
                Event::RequestSent { .. } => {
                    requests.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Event::Retrying { .. } | Event::RateLimited { .. } => {
                    retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            observer.client_event(e);
        }) as Arc<dyn Fn(&Event) + Send + Sync>
    };
    let client = engine.client_for(conn, Some(hook))?;
    let mut writer = store
        .begin_scan(&conn.id, engine.now(), token.clone())
        .await?;
    let still_held = || {
        if lost.load(Ordering::SeqCst) {
            Err(EngineError::LeaseLost(format!(
                "the scan of {} lost its lease (this process stalled longer than the lease lasts and another scan may have started); nothing was saved",
                conn.name
            )))
        } else {
            Ok(())
        }
    };
    let mut report = ScanReport::default();
    let mut warnings = FieldWarnings::default();
    let mut user_groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut has_group_ids = false;

    let outcome: EngineResult<(u64, u64)> = async {
        observer.phase("users");
        // Capped per scan; the client refuses ids it cannot hand on exactly and one id with two
        // different records.
        let mut pager = client.users().max_items(Some(engine.options().limits.max_users));
        while let Some(page) = pager
            .next_page()
            .await
            .map_err(|e| EngineError::upstream(connector::reading("users", &e, engine.options()), e))?
        {
            let accounts: Vec<_> = page.iter().map(|u| connector::to_account(u, &mut warnings)).collect();
            for u in &page {
                if let Some(g) = &u.group_ids {
                    has_group_ids = true;
                    if !g.is_empty() {
                        let mut g = g.clone();
                        g.sort_unstable();
                        user_groups.insert(u.id, g);
                    }
                }
            }
            writer.stage_accounts(&accounts).await?;
            report.users_seen += accounts.len() as u64;
            observer.users_read(report.users_seen);
            still_held()?;
        }

        observer.phase("groups");
        let mut group_members: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut gpager = client.groups().max_items(Some(engine.options().limits.max_groups));
        report.groups_fetched = true;
        loop {
            match gpager.next_page().await {
                Ok(Some(page)) => {
                    let groups: Vec<_> = page.iter().map(connector::to_group).collect();
                    for g in &groups {
                        group_members.insert(g.id, g.member_ids.clone());
                    }
                    writer.stage_groups(&groups).await?;
                    report.groups_seen += groups.len() as u64;
                }
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::Unsupported && report.groups_seen == 0 => {
                    report.groups_fetched = false;
                    report
                        .warnings
                        .push("this TestRail has no group methods (before 7.5): groups and memberships were not read".into());
                    break;
                }
                Err(e) => return Err(EngineError::upstream(connector::reading("groups", &e, engine.options()), e)),
            }
        }
        if report.groups_fetched && has_group_ids {
            // Users' group_ids and groups' user_ids should tell the same story.
            let mut from_groups: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
            for (g, members) in &group_members {
                for m in members {
                    from_groups.entry(*m).or_default().insert(*g);
                }
            }
            let disagree = user_groups
                .iter()
                .filter(|(u, g)| from_groups.get(u).map(|s| s.iter().copied().collect::<Vec<_>>()) != Some((*g).clone()))
                .count()
                + from_groups.keys().filter(|u| !user_groups.contains_key(u)).count();
            if disagree > 0 {
                report.warnings.push(format!(
                    "{disagree} user(s) have group_ids that disagree with the groups' member lists (the groups' lists were used)"
                ));
            }
        }

        observer.phase("roles");
        let roles = match client.get_roles().await {
            Ok(roles) => {
                let roles: Vec<_> = roles.iter().map(connector::to_role).collect();
                writer.stage_roles(&roles).await?;
                report.roles_fetched = true;
                roles.len() as u64
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                report.warnings.push("this TestRail has no get_roles (before 7.3): role names come from the users".into());
                0
            }
            Err(e) => return Err(EngineError::upstream("reading roles", e)),
        };
        still_held()?;

        observer.phase("projects");
        let projects = read_projects(&client, report.roles_fetched, &mut report.warnings).await?;
        let access_read = projects.iter().filter(|p| p.access.is_some()).count() as u64;
        report.projects_seen = projects.len() as u64;
        report.projects_fetched = true;
        writer.stage_projects(projects).await?;
        Ok((roles, access_read))
    }
    .await;

    report.warnings.extend(warnings.into_messages());
    report.requests = requests.load(Ordering::Relaxed);
    report.retries = retries.load(Ordering::Relaxed);
    match outcome {
        Ok((roles, project_reads)) => {
            observer.phase("saving");
            let groups_supported = report.groups_fetched;
            let summary = writer.commit(report.clone(), engine.now()).await?;
            if conn.groups_supported != Some(groups_supported) {
                store
                    .set_groups_supported(&conn.id, groups_supported)
                    .await?;
            }
            Ok(ScanOutcome {
                connection: conn.name.clone(),
                scan_id: summary.scan_id,
                users: report.users_seen,
                active_seats: summary.active_seats,
                groups: report.groups_seen,
                roles,
                groups_fetched: report.groups_fetched,
                requests: report.requests,
                projects: report.projects_seen,
                project_access: if !report.roles_fetched {
                    "unknown (TestRail before 7.3)"
                } else if project_reads == report.projects_seen {
                    "read"
                } else {
                    "partly unknown"
                }
                .to_string(),
                minimum_requests: minimum_requests(
                    report.users_seen,
                    report.groups_seen,
                    report.groups_fetched,
                ) + minimum_project_requests(
                    report.projects_seen,
                    report.roles_fetched,
                ),
                retries: report.retries,
                changes: summary.changes,
                rows_written: summary.rows_written,
                account_rows_written: summary.account_rows_written,
                warnings: report.warnings,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            let msg = e.to_string();
            writer.fail(&msg, report, engine.now()).await?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_request_counts() {
        assert_eq!(minimum_requests(1, 0, true), 3);
        assert_eq!(minimum_requests(250, 250, true), 3);
        assert_eq!(minimum_requests(251, 1, true), 4);
        assert_eq!(minimum_requests(50_001, 1000, true), 201 + 4 + 1);
        assert_eq!(minimum_requests(10, 0, false), 3);
    }
}

//! Offboarding impact: before deactivating a leaver, what work is still theirs in TestRail —
//! open runs and plans assigned to them, untested or retest tests assigned to them in open
//! runs, and (as context) cases they created or last updated. Read fresh from TestRail, per
//! project, never per user.

use accessrail_store::{Connection, Store};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use testrail_client::Event;
use testrail_client::artefacts::ListFilter;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// TestRail's "untested" and "retest" statuses: the tests still to be done.
const OPEN_STATUSES: [u64; 2] = [3, 4];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssignedRun {
    pub id: u64,
    pub name: String,
    pub project_id: u64,
    pub project: String,
    /// Set for a run inside a plan (reassigned with `update_run_in_plan_entry`).
    pub plan_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssignedPlan {
    pub id: u64,
    pub name: String,
    pub project: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssignedTest {
    pub id: u64,
    pub run_id: u64,
    pub project: String,
    /// `untested` or `retest`.
    pub status: String,
}

/// What is still assigned to a person, and what they authored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OffboardImpact {
    pub connection: String,
    pub account_id: u64,
    pub email: String,
    pub is_active: bool,
    pub runs: Vec<AssignedRun>,
    pub plans: Vec<AssignedPlan>,
    pub tests: Vec<AssignedTest>,
    /// Context: cases they created, and cases they updated last.
    pub cases_created: u64,
    pub cases_last_updated: u64,
    pub requests: u64,
}

pub async fn impact<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    email: &str,
) -> EngineResult<OffboardImpact> {
    let requests = Arc::new(AtomicU64::new(0));
    let hook = {
        let requests = requests.clone();
        Arc::new(move |e: &Event| {
            if let Event::RequestSent { .. } = e {
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }) as Arc<dyn Fn(&Event) + Send + Sync>
    };
    let client = engine.client_for(conn, Some(hook))?;
    let up = |what: String, e| EngineError::upstream(what, e);
    let user = client.get_user_by_email(email).await.map_err(|e| {
        if e.kind() == testrail_client::ErrorKind::NotFound {
            EngineError::NotFound(format!("no TestRail account has the email {email}"))
        } else {
            up("looking the account up".into(), e)
        }
    })?;
    let uid = user.id;
    let mut out = OffboardImpact {
        connection: conn.name.clone(),
        account_id: uid,
        email: user.email.clone().unwrap_or_else(|| email.to_string()),
        is_active: user.is_active.unwrap_or(true),
        runs: vec![],
        plans: vec![],
        tests: vec![],
        cases_created: 0,
        cases_last_updated: 0,
        requests: 0,
    };
    let projects = client
        .get_projects()
        .await
        .map_err(|e| up("reading the projects".into(), e))?;
    for p in projects.iter().filter(|p| p.is_completed != Some(true)) {
        let pname = p
            .name
            .clone()
            .unwrap_or_else(|| format!("project {}", p.id));
        let open_runs = client
            .runs(
                p.id,
                &ListFilter {
                    is_completed: Some(false),
                    include_plan_runs: true,
                    ..ListFilter::default()
                },
            )
            .collect_all()
            .await
            .map_err(|e| up(format!("reading the runs of {pname}"), e))?;
        for r in &open_runs {
            if r.assignedto_id == Some(uid) {
                out.runs.push(AssignedRun {
                    id: r.id,
                    name: r.name.clone().unwrap_or_default(),
                    project_id: p.id,
                    project: pname.clone(),
                    plan_id: r.plan_id,
                });
            }
            let tests = client
                .tests(
                    r.id,
                    &ListFilter {
                        status_id: OPEN_STATUSES.to_vec(),
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(format!("reading the tests of run {}", r.id), e))?;
            out.tests.extend(
                tests
                    .iter()
                    .filter(|t| t.assignedto_id == Some(uid))
                    .map(|t| AssignedTest {
                        id: t.id,
                        run_id: r.id,
                        project: pname.clone(),
                        status: if t.status_id == Some(4) {
                            "retest".into()
                        } else {
                            "untested".into()
                        },
                    }),
            );
        }
        let plans = client
            .plans(
                p.id,
                &ListFilter {
                    is_completed: Some(false),
                    ..ListFilter::default()
                },
            )
            .collect_all()
            .await
            .map_err(|e| up(format!("reading the plans of {pname}"), e))?;
        out.plans.extend(
            plans
                .iter()
                .filter(|pl| pl.assignedto_id == Some(uid))
                .map(|pl| AssignedPlan {
                    id: pl.id,
                    name: pl.name.clone().unwrap_or_default(),
                    project: pname.clone(),
                }),
        );
        let suites = client
            .suites(p.id)
            .collect_all()
            .await
            .map_err(|e| up(format!("reading the suites of {pname}"), e))?;
        for s in &suites {
            let created = client
                .cases(
                    p.id,
                    &ListFilter {
                        suite_id: Some(s.id),
                        created_by: vec![uid],
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(format!("reading the cases of {pname}"), e))?;
            out.cases_created += created.len() as u64;
            let updated = client
                .cases(
                    p.id,
                    &ListFilter {
                        suite_id: Some(s.id),
                        updated_by: vec![uid],
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(format!("reading the cases of {pname}"), e))?;
            out.cases_last_updated += updated.len() as u64;
        }
    }
    out.requests = requests.load(Ordering::Relaxed);
    Ok(out)
}

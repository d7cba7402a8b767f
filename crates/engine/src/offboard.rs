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

/// One step of an offboarding plan that reassigns work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReassignStep {
    /// `reassign_run`, `reassign_plan_run` or `reassign_tests`.
    pub action: &'static str,
    pub run_id: u64,
    /// For `reassign_tests`: the tests.
    pub test_ids: Vec<u64>,
    pub target: String,
    /// The TestRail calls the step makes.
    pub calls: Vec<String>,
    pub note: Option<String>,
}

/// The hand-over of a person's work: what is theirs, who takes it, and the steps.
#[derive(Debug, Clone, Serialize)]
pub struct Reassignment {
    pub impact: OffboardImpact,
    pub reassign_to: Option<(u64, String)>,
    pub steps: Vec<ReassignStep>,
}

impl Reassignment {
    /// Work the steps hand over (plans are listed only: TestRail's API cannot reassign one).
    pub fn has_work(&self) -> bool {
        !self.impact.runs.is_empty() || !self.impact.tests.is_empty()
    }
}

/// Reassign the person's work to another, then deactivate them: one plan.
#[derive(Debug, Clone, Serialize)]
pub struct OffboardPlan {
    pub impact: OffboardImpact,
    pub reassign_to: Option<(u64, String)>,
    pub steps: Vec<ReassignStep>,
    pub deactivate: crate::provision::Plan,
}

impl OffboardPlan {
    /// What the plan would do: a confirmation applies only the plan it showed (made again
    /// when confirmed; if TestRail changed meanwhile, the fingerprint differs).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.reassign_to).unwrap_or_default());
        h.update(serde_json::to_vec(&self.steps).unwrap_or_default());
        // Who asks is not part of what the plan does (a dry run by one sign-in, applied by
        // another, is the same plan).
        let mut deactivate = self.deactivate.clone();
        for st in &mut deactivate.steps {
            st.actor.clear();
        }
        for x in &mut deactivate.skipped {
            x.actor.clear();
        }
        h.update(crate::jobs::fingerprint(&deactivate));
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Plans the offboarding: the impact, the reassignment steps (with `reassign_to`), and the
/// deactivation through the usual rails.
pub async fn plan<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    email: &str,
    reassign_to: Option<&str>,
    rails: &crate::provision::Rails,
    actor: &str,
) -> EngineResult<OffboardPlan> {
    let r = plan_reassignment(engine, conn, email, reassign_to).await?;
    let deactivate = crate::provision::plan(
        engine,
        conn,
        vec![crate::provision::Request {
            action: crate::provision::Action::Deactivate {
                email: r.impact.email.clone(),
            },
            origin: crate::provision::Origin::Direct {
                actor: actor.to_string(),
            },
        }],
        rails,
    )
    .await?;
    Ok(OffboardPlan {
        impact: r.impact,
        reassign_to: r.reassign_to,
        steps: r.steps,
        deactivate,
    })
}

/// The impact and, with `reassign_to`, the steps that hand the work over.
pub async fn plan_reassignment<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    email: &str,
    reassign_to: Option<&str>,
) -> EngineResult<Reassignment> {
    let impact = impact(engine, conn, email).await?;
    let to = match reassign_to {
        None => None,
        Some(t) => Some(assignee(engine, conn, &impact, t).await?),
    };
    let steps = to
        .as_ref()
        .map(|to| steps_for(&impact, to))
        .unwrap_or_default();
    Ok(Reassignment {
        impact,
        reassign_to: to,
        steps,
    })
}

/// The account that takes the work: active, and not the person leaving.
async fn assignee<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    impact: &OffboardImpact,
    t: &str,
) -> EngineResult<(u64, String)> {
    let client = engine.client_for(conn, None)?;
    let u = client.get_user_by_email(t).await.map_err(|e| {
        if e.kind() == testrail_client::ErrorKind::NotFound {
            EngineError::NotFound(format!("no TestRail account has the email {t}"))
        } else {
            EngineError::upstream("looking the new assignee up", e)
        }
    })?;
    if u.id == impact.account_id {
        return Err(EngineError::InvalidInput(format!(
            "{t} is the person being offboarded: their work cannot go to them"
        )));
    }
    if u.is_active == Some(false) {
        return Err(EngineError::InvalidInput(format!(
            "{t} is deactivated in TestRail: work cannot go to them"
        )));
    }
    Ok((u.id, u.email.unwrap_or_else(|| t.to_string())))
}

/// The steps that hand the impact's runs and tests to `to`.
fn steps_for(impact: &OffboardImpact, (to_id, to_email): &(u64, String)) -> Vec<ReassignStep> {
    let mut steps = Vec::new();
    for r in &impact.runs {
        let (action, call) = match r.plan_id {
            None => ("reassign_run", format!("update_run/{}", r.id)),
            Some(_) => (
                "reassign_plan_run",
                format!("update_run_in_plan_entry/{}", r.id),
            ),
        };
        steps.push(ReassignStep {
            action,
            run_id: r.id,
            test_ids: vec![],
            target: format!("run {} \"{}\" in {} to {to_email}", r.id, r.name, r.project),
            calls: vec![call, format!("get_run/{}", r.id)],
            note: None,
        });
    }
    let mut by_run: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for t in &impact.tests {
        by_run.entry(t.run_id).or_default().push(t.id);
    }
    for (run, tests) in by_run {
        steps.push(ReassignStep {
            action: "reassign_tests",
            run_id: run,
            target: format!("{} tests of run {run} to {to_email}", tests.len()),
            test_ids: tests,
            calls: vec![format!("add_results/{run}"), format!("get_tests/{run}")],
            note: Some(format!(
                "TestRail reassigns a test only by adding a result: each test gets a result (no status, assignee {to_email} (id {to_id})) authored by the account Accessrail signs in with"
            )),
        });
    }
    steps
}

/// What applying an offboarding plan did.
#[derive(Debug, Clone, Serialize)]
pub struct OffboardReport {
    /// Per reassignment step: `done`, `noop`, `failed` or `not_run`, with its audit entry.
    pub steps: Vec<(String, String, i64)>,
    pub deactivation: Option<crate::provision::ApplyReport>,
}

/// Applies an offboarding plan: each reassignment (audited before and after, read back), then
/// the deactivation (only when every reassignment held).
pub async fn apply<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    plan: &OffboardPlan,
    actor: &str,
) -> EngineResult<OffboardReport> {
    crate::provision::ensure_enabled(conn)?;
    let (steps, held) = apply_reassignment(
        engine,
        conn,
        &plan.impact,
        plan.reassign_to.as_ref(),
        &plan.steps,
        actor,
    )
    .await?;
    let deactivation = if held {
        Some(crate::provision::apply(engine, conn, &plan.deactivate).await?)
    } else {
        None
    };
    Ok(OffboardReport {
        steps,
        deactivation,
    })
}

/// Applies the hand-over steps in order, each audited before and after and read back; after a
/// failure the rest are recorded as not run. `true` when every step held.
pub async fn apply_reassignment<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    impact: &OffboardImpact,
    reassign_to: Option<&(u64, String)>,
    steps: &[ReassignStep],
    actor: &str,
) -> EngineResult<(Vec<(String, String, i64)>, bool)> {
    use accessrail_domain::{AuditRecord, Outcome};
    crate::provision::ensure_enabled(conn)?;
    let mut results = Vec::new();
    let Some((to, to_email)) = reassign_to else {
        return Ok((results, true));
    };
    let client = engine.client_for(conn, None)?;
    let mut failed = false;
    let audit = |outcome: Outcome, st: &ReassignStep, message: Option<String>| AuditRecord {
        at: engine.now(),
        actor: actor.to_string(),
        connection: conn.name.clone(),
        action: st.action.to_string(),
        target: st.target.clone(),
        before: Some(impact.email.clone()),
        after: Some(to_email.clone()),
        calls: st.calls.clone(),
        outcome,
        message,
    };
    for st in steps {
        if failed {
            let e = engine
                .store()
                .append_audit(audit(
                    Outcome::NotRun,
                    st,
                    Some("not run: an earlier step failed".into()),
                ))
                .await?;
            results.push((st.target.clone(), "not_run".to_string(), e.id));
            continue;
        }
        engine
            .store()
            .append_audit(audit(
                Outcome::Started,
                st,
                Some("about to change TestRail".into()),
            ))
            .await?;
        let (outcome, message) = match reassign(&client, st, *to).await {
            Ok(true) => (Outcome::Done, None),
            Ok(false) => (Outcome::Noop, Some("already assigned so".to_string())),
            Err(e) => {
                failed = true;
                (Outcome::Failed, Some(e.to_string()))
            }
        };
        let e = engine
            .store()
            .append_audit(audit(outcome, st, message))
            .await?;
        results.push((st.target.clone(), outcome.as_str().to_string(), e.id));
    }
    Ok((results, !failed))
}

/// A leaver rule's hand-over, planned: the work and its steps, or why the leaver's
/// deactivation is held back.
#[derive(Debug, Clone, Serialize)]
pub struct HandoverPlan {
    pub rule: String,
    pub email: String,
    pub reassignment: Option<Reassignment>,
    /// Set when the work cannot be handed over: the leaver is then not deactivated.
    pub hold: Option<String>,
}

/// Plans the hand-overs of the leavers a flow plan deactivates (those the rails skipped, or
/// already deactivated, are left alone). Read fresh from TestRail.
pub async fn plan_handovers<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    handovers: &[crate::flows::Handover],
    plan: &crate::provision::Plan,
) -> EngineResult<Vec<HandoverPlan>> {
    use accessrail_domain::EmailKey;
    let deactivated: std::collections::BTreeSet<EmailKey> = plan
        .steps
        .iter()
        .filter(|s| s.action == "deactivate" && !s.is_noop())
        .filter_map(|s| EmailKey::parse(&s.target))
        .collect();
    let mut out = Vec::new();
    for h in handovers {
        if !EmailKey::parse(&h.email).is_some_and(|k| deactivated.contains(&k)) {
            continue;
        }
        let mut hp = HandoverPlan {
            rule: h.rule.clone(),
            email: h.email.clone(),
            reassignment: None,
            hold: None,
        };
        let mut r = plan_reassignment(engine, conn, &h.email, None).await?;
        let to = match &h.to {
            Ok(t) if EmailKey::parse(t).is_some_and(|k| deactivated.contains(&k)) => {
                Err(format!("{t} is deactivated by the same run"))
            }
            Ok(t) => match assignee(engine, conn, &r.impact, t).await {
                Ok(to) => Ok(to),
                Err(e @ (EngineError::NotFound(_) | EngineError::InvalidInput(_))) => {
                    Err(e.to_string())
                }
                Err(e) => return Err(e),
            },
            Err(why) => Err(why.clone()),
        };
        match to {
            Ok(to) => {
                r.steps = steps_for(&r.impact, &to);
                r.reassign_to = Some(to);
            }
            // Nobody to take the work: it matters only if there is work.
            Err(why) if r.has_work() => {
                hp.hold = Some(format!(
                    "not deactivated: its open work cannot be handed over ({why})"
                ));
            }
            Err(_) => {}
        }
        hp.reassignment = Some(r);
        out.push(hp);
    }
    Ok(out)
}

/// Takes the deactivations of the leavers named here out of a plan, recording why.
pub fn hold_back(plan: &mut crate::provision::Plan, email: &str, reason: &str) {
    use accessrail_domain::EmailKey;
    let key = EmailKey::parse(email);
    let mut held = Vec::new();
    plan.steps.retain(|s| {
        let hit = s.action == "deactivate" && EmailKey::parse(&s.target) == key;
        if hit {
            held.push(crate::provision::Skipped {
                target: s.target.clone(),
                action: s.action,
                reason: reason.to_string(),
                actor: s.actor.clone(),
            });
        }
        !hit
    });
    plan.skipped.extend(held);
}

/// What the hand-overs of a flow run did, per leaver.
#[derive(Debug, Clone, Serialize)]
pub struct HandoverReport {
    pub email: String,
    pub steps: Vec<(String, String, i64)>,
    /// The leaver's deactivation stays in the plan.
    pub held: bool,
}

/// Applies the hand-overs, then takes out of `plan` the deactivation of every leaver whose
/// work was not handed over (held back by the plan, or a step that failed).
pub async fn apply_handovers<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    handovers: &[HandoverPlan],
    plan: &mut crate::provision::Plan,
) -> EngineResult<Vec<HandoverReport>> {
    let mut out = Vec::new();
    for h in handovers {
        if let Some(why) = &h.hold {
            hold_back(plan, &h.email, why);
            out.push(HandoverReport {
                email: h.email.clone(),
                steps: vec![],
                held: false,
            });
            continue;
        }
        let Some(r) = &h.reassignment else { continue };
        let actor = format!("flow:{}", h.rule);
        // One hand-over of a person at a time, across processes: two runs at once would both
        // find the tests unassigned and both add results.
        let lease_name = format!("offboard:{}:{}", conn.id, h.email.trim().to_lowercase());
        let Some(lease) = crate::lease::try_acquire(engine, &lease_name, "hand-over").await? else {
            hold_back(
                plan,
                &h.email,
                "not deactivated: another run is handing its work over right now",
            );
            out.push(HandoverReport {
                email: h.email.clone(),
                steps: vec![],
                held: false,
            });
            continue;
        };
        let applied = crate::lease::held(
            engine,
            std::slice::from_ref(&lease),
            apply_reassignment(
                engine,
                conn,
                &r.impact,
                r.reassign_to.as_ref(),
                &r.steps,
                &actor,
            ),
        )
        .await;
        let (steps, held) = applied?;
        if !held {
            hold_back(
                plan,
                &h.email,
                "not deactivated: handing its open work over failed (see the audit log)",
            );
        }
        out.push(HandoverReport {
            email: h.email.clone(),
            steps,
            held,
        });
    }
    Ok(out)
}

/// One reassignment with its read-back: `Ok(false)` when it already held.
async fn reassign(
    client: &testrail_client::Client,
    st: &ReassignStep,
    to: u64,
) -> EngineResult<bool> {
    use testrail_client::artefacts::{NewResult, RunUpdate};
    let up = |what: &str, e| EngineError::upstream(what.to_string(), e);
    match st.action {
        "reassign_run" | "reassign_plan_run" => {
            let before = client
                .get_run(st.run_id)
                .await
                .map_err(|e| up("reading the run", e))?;
            if before.assignedto_id == Some(to) {
                return Ok(false);
            }
            let update = RunUpdate {
                assignedto_id: Some(to),
            };
            if st.action == "reassign_run" {
                client.update_run(st.run_id, &update).await
            } else {
                client.update_run_in_plan_entry(st.run_id, &update).await
            }
            .map_err(|e| up("reassigning the run", e))?;
            let after = client
                .get_run(st.run_id)
                .await
                .map_err(|e| up("reading the run back", e))?;
            if after.assignedto_id != Some(to) {
                return Err(EngineError::Conflict(format!(
                    "run {} reads back assigned to {:?}, not {to}",
                    st.run_id, after.assignedto_id
                )));
            }
            Ok(true)
        }
        _ => {
            let assigned = |tests: &[testrail_client::artefacts::Test]| {
                st.test_ids
                    .iter()
                    .filter(|id| {
                        tests
                            .iter()
                            .any(|t| t.id == **id && t.assignedto_id == Some(to))
                    })
                    .count()
            };
            let all = |client: &testrail_client::Client| {
                client
                    .tests(st.run_id, &ListFilter::default())
                    .collect_all()
            };
            let before = all(client).await.map_err(|e| up("reading the tests", e))?;
            let todo: Vec<NewResult> = st
                .test_ids
                .iter()
                .filter(|id| {
                    !before
                        .iter()
                        .any(|t| t.id == **id && t.assignedto_id == Some(to))
                })
                .map(|id| NewResult {
                    test_id: *id,
                    assignedto_id: Some(to),
                    ..NewResult::default()
                })
                .collect();
            if todo.is_empty() {
                return Ok(false);
            }
            let sent = client.add_results(st.run_id, &todo).await;
            let after = all(client)
                .await
                .map_err(|e| up("reading the tests back", e))?;
            if assigned(&after) == st.test_ids.len() {
                return Ok(true);
            }
            sent.map_err(|e| up("reassigning the tests", e))?;
            Err(EngineError::Conflict(format!(
                "{} of {} tests of run {} read back assigned to {to}",
                assigned(&after),
                st.test_ids.len(),
                st.run_id
            )))
        }
    }
}

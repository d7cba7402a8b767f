//! The console's offboarding (`accessrail_engine::offboard`): what is still assigned to a person
//! in TestRail (open runs and plans, untested or retest tests in open runs, and as context the
//! cases they created or updated last), read fresh from TestRail; a plan that hands the runs
//! and tests to someone else and then deactivates the account; its confirmation, which applies
//! only the plan it showed; and the short form of the work for the deactivate confirmation.

use std::sync::Arc;

use accessrail_engine::offboard::{self, OffboardImpact, OffboardPlan};
use accessrail_engine::provision::Rails;
use accessrail_store::{Connection, Store};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::{
    acknowledge_text, audit_link, caution_title, cautions, current_connection, forbidden,
    message_page, page, plural, to_login,
};
use crate::ui_users::label;

#[derive(Deserialize, Default)]
pub(crate) struct OffboardQuery {
    #[serde(default)]
    reassign_to: String,
}

#[derive(Deserialize)]
pub(crate) struct OffboardForm {
    csrf: Option<String>,
    #[serde(default)]
    reassign_to: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    acknowledge: Option<String>,
}

/// The account's email and its label, from the last scan.
async fn account(s: &AppState, conn: &Connection, id: u64) -> Result<(String, String), String> {
    match s.engine.store().account(&conn.id, id).await {
        Ok(Some(a)) => {
            let email = a.account.email.clone().unwrap_or_default();
            let name = a.account.name.clone();
            if email.trim().is_empty() {
                return Err(format!(
                    "TestRail user #{id} has no email: Accessrail cannot name it to TestRail."
                ));
            }
            Ok((email.clone(), label(name.as_deref(), Some(&email), id)))
        }
        Ok(None) => Err(format!(
            "TestRail user #{id} is not among the accounts of {} (as of the last scan).",
            conn.name
        )),
        Err(e) => {
            tracing::error!("reading account {id}: {e}");
            Err("The database did not answer. Try again.".into())
        }
    }
}

/// "2 open runs, 14 untested or retest tests, 1 open plan", or None when nothing is theirs.
pub(crate) fn work_summary(i: &OffboardImpact) -> Option<String> {
    let mut parts = Vec::new();
    if !i.runs.is_empty() {
        parts.push(plural(i.runs.len() as u64, "open run", "open runs"));
    }
    if !i.tests.is_empty() {
        parts.push(plural(
            i.tests.len() as u64,
            "untested or retest test",
            "untested or retest tests",
        ));
    }
    if !i.plans.is_empty() {
        parts.push(plural(i.plans.len() as u64, "open plan", "open plans"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The work as the page lists it.
fn impact_ctx(i: &OffboardImpact) -> Value {
    let runs: Vec<Value> = i
        .runs
        .iter()
        .map(|r| context! { id => r.id, name => r.name, project => r.project, plan => r.plan_id })
        .collect();
    let plans: Vec<Value> = i
        .plans
        .iter()
        .map(|p| context! { id => p.id, name => p.name, project => p.project })
        .collect();
    // Tests, counted per run.
    let mut per_run: std::collections::BTreeMap<(u64, &str), (u64, u64)> = Default::default();
    for t in &i.tests {
        let e = per_run.entry((t.run_id, t.project.as_str())).or_default();
        if t.status == "retest" {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }
    let tests: Vec<Value> = per_run
        .iter()
        .map(|((run, project), (untested, retest))| context! { run, project, untested, retest })
        .collect();
    context! {
        runs, plans, tests, test_count => i.tests.len(), is_active => i.is_active,
        cases_created => i.cases_created, cases_last_updated => i.cases_last_updated,
        requests => i.requests, summary => work_summary(i),
    }
}

fn plan_ctx(p: &OffboardPlan) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|st| context! { action => st.action.replace('_', " "), target => st.target, calls => st.calls.join(", "), note => st.note })
        .collect();
    let deactivate: Vec<Value> = p
        .deactivate
        .steps
        .iter()
        .map(|st| context! { action => if st.is_noop() { format!("{} (nothing to do)", st.action) } else { st.action.to_string() }, target => st.target, calls => st.calls.join(", "), before => st.before, after => st.after, note => st.note })
        .collect();
    let skipped: Vec<String> = p
        .deactivate
        .skipped
        .iter()
        .map(|x| format!("{} {}: {}", x.action, x.target, x.reason))
        .collect();
    let cs = cautions(&p.deactivate.steps);
    let caution_ctx: Vec<Value> = cs
        .iter()
        .map(
            |c| context! { kind => c.as_str(), title => caution_title(*c), message => c.message() },
        )
        .collect();
    context! {
        steps, deactivate, skipped, to => p.reassign_to.as_ref().map(|t| t.1.clone()),
        fingerprint => p.fingerprint(), cautions => caution_ctx, acknowledge_text => acknowledge_text(&cs),
        nothing => p.steps.is_empty() && p.deactivate.steps.iter().all(|s| s.is_noop()),
    }
}

/// Renders the page: the work, and the plan when one was made.
#[allow(clippy::too_many_arguments)]
fn render(
    s: &AppState,
    v: &Visitor,
    conn: &Connection,
    id: u64,
    who: &str,
    plan: &OffboardPlan,
    reassign_to: &str,
    error: Option<String>,
) -> Response {
    page(
        s,
        v,
        "offboard.html",
        context! {
            title => format!("Offboard {who}"), page => "users", id, who,
            work => impact_ctx(&plan.impact), plan => plan_ctx(plan), reassign_to,
            read_only => !conn.provisioning_enabled, error,
        },
    )
}

fn failure(s: &AppState, v: &Visitor, heading: &str, e: ApiError, back: &str) -> Response {
    message_page(s, v, e.status, heading, &e.message, back)
}

/// `GET /users/{id}/offboard[?reassign_to=EMAIL]`: the work, and the plan that hands it over.
pub(crate) async fn offboard_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<u64>,
    Query(q): Query<OffboardQuery>,
) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let back = format!("/users/{id}");
    let (email, who) = match account(&s, &conn, id).await {
        Ok(a) => a,
        Err(m) => return message_page(&s, &v, StatusCode::NOT_FOUND, "Offboard", &m, &back),
    };
    let heading = format!("Offboard {who}");
    let to = q.reassign_to.trim();
    let planned = offboard::plan(
        &s.engine,
        &conn,
        &email,
        Some(to).filter(|t| !t.is_empty()),
        &Rails::new(None, false),
        &format!("token:{token}"),
    )
    .await;
    match planned {
        Ok(p) => render(&s, &v, &conn, id, &who, &p, to, None),
        Err(e) => failure(&s, &v, &heading, e.into(), &back),
    }
}

/// `POST /users/{id}/offboard`: plans again from TestRail and applies it only if it is the
/// plan the page showed.
pub(crate) async fn offboard_apply(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<u64>,
    Form(f): Form<OffboardForm>,
) -> Response {
    let Some(token) = v.signed_in().map(str::to_string) else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let back = format!("/users/{id}");
    let (email, who) = match account(&s, &conn, id).await {
        Ok(a) => a,
        Err(m) => return message_page(&s, &v, StatusCode::NOT_FOUND, "Offboard", &m, &back),
    };
    let heading = format!("Offboard {who}");
    if let Err(e) = accessrail_engine::provision::ensure_enabled(&conn) {
        return failure(&s, &v, &heading, e.into(), &back);
    }
    let actor = format!("token:{token}");
    let to = f.reassign_to.trim();
    let plan = match offboard::plan(
        &s.engine,
        &conn,
        &email,
        Some(to).filter(|t| !t.is_empty()),
        &Rails::new(None, false),
        &actor,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return failure(&s, &v, &heading, e.into(), &back),
    };
    if plan.fingerprint() != f.fingerprint.trim() {
        let mut r = render(
            &s,
            &v,
            &conn,
            id,
            &who,
            &plan,
            to,
            Some("The plan changed since you read it (TestRail changed meanwhile). Nothing was changed: read this plan and confirm again.".into()),
        );
        *r.status_mut() = StatusCode::CONFLICT;
        return r;
    }
    if !cautions(&plan.deactivate.steps).is_empty() && f.acknowledge.as_deref() != Some("yes") {
        let mut r = render(
            &s,
            &v,
            &conn,
            id,
            &who,
            &plan,
            to,
            Some("This plan deactivates an account that needs its confirmation box ticked. Nothing was changed: read the warning and tick the box to go ahead.".into()),
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return r;
    }
    let report = match offboard::apply(&s.engine, &conn, &plan, &actor).await {
        Ok(r) => r,
        Err(e) => return failure(&s, &v, &heading, e.into(), &back),
    };
    let css = |o: &str| match o {
        "done" => "ok",
        "failed" => "bad",
        "not_run" => "warn",
        _ => "",
    };
    let mut results: Vec<Value> = report
        .steps
        .iter()
        .enumerate()
        .map(|(n, (target, outcome, audit))| {
            context! { step => n + 1, action => plan.steps.get(n).map(|st| st.action.replace('_', " ")), target, outcome, css => css(outcome), audit, audit_link => audit_link(*audit) }
        })
        .collect();
    match &report.deactivation {
        Some(r) => results.extend(r.results.iter().map(|x| {
            let outcome = x.outcome.as_str();
            context! { step => report.steps.len() + x.step, action => x.action.replace('_', " "), target => x.target, outcome, css => css(outcome), message => x.message, audit => x.audit_id, audit_link => audit_link(x.audit_id) }
        })),
        None => results.push(context! {
            step => report.steps.len() + 1, action => "deactivate", target => email, outcome => "not_run", css => "warn",
            message => "not deactivated: a hand-over step failed (see above); it can be run again",
        }),
    }
    page(
        &s,
        &v,
        "confirm.html",
        context! { title => "Result", heading => format!("Offboarded {who}"), results, back },
    )
}

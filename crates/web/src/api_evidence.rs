//! The activity-evidence API: seats (the licence picture from recorded activity), evidence
//! scans, and offboarding (what is still assigned to a person, handed over, then the account
//! deactivated, as one plan: a dry run first, then applied only if it is the plan shown).

use std::sync::Arc;

use accessrail_engine::offboard;
use accessrail_engine::provision::Rails;
use accessrail_engine::time_fmt;
use accessrail_store::Store;
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api_reviews::t;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/api/v1/connections/{name}/seats", get(seats))
        .route(
            "/api/v1/connections/{name}/evidence",
            get(evidence_runs).post(evidence_scan),
        )
        .route("/api/v1/connections/{name}/offboard", post(offboard))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsDto {
    connection: String,
    active_seats: u64,
    /// Activity evidence covers this time on (null: no evidence scan yet).
    evidence_from: Option<String>,
    /// Active accounts with no recorded activity in results, runs, plans or cases in the last
    /// 30 / 60 / 90 days; null when the evidence does not reach that far back.
    without_evidence_30_days: Option<u64>,
    without_evidence_60_days: Option<u64>,
    without_evidence_90_days: Option<u64>,
    leavers_active: u64,
    automation_accounts: u64,
    seat_price: Option<f64>,
    monthly_saving_leavers: Option<f64>,
    monthly_saving_leavers_and_idle_90: Option<f64>,
    /// TestRail bills every user active at any time in a period: deactivations save from the
    /// next one.
    billing_period_end: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeatsQuery {
    /// Price of one seat per month.
    seat_price: Option<f64>,
    /// Day of the month the billing period renews (1-28).
    billing_day: Option<u8>,
}

/// The licence picture: active seats, seats without recorded activity, leavers still active,
/// savings. TestRail has no last-login time: "no recorded activity" is about results, runs,
/// plans and cases only.
#[utoipa::path(get, path = "/api/v1/connections/{name}/seats", params(("name" = String, Path), SeatsQuery), responses((status = 200, body = SeatsDto), (status = 400, body = ErrorBody)))]
async fn seats(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeatsQuery>,
) -> ApiResult<Json<SeatsDto>> {
    if q.seat_price.is_some_and(|p| !p.is_finite() || p < 0.0) {
        return Err(ApiError::invalid("seat_price must be a positive number"));
    }
    if q.billing_day.is_some_and(|d| !(1..=28).contains(&d)) {
        return Err(ApiError::invalid("billing_day must be 1 to 28"));
    }
    let c = crate::api::conn(&s, &name).await?;
    let r = accessrail_engine::evidence::seats(&s.engine, &c, q.seat_price, q.billing_day).await?;
    Ok(Json(SeatsDto {
        connection: r.connection,
        active_seats: r.active_seats,
        evidence_from: t(r.evidence_from),
        without_evidence_30_days: r.without_evidence_30_days,
        without_evidence_60_days: r.without_evidence_60_days,
        without_evidence_90_days: r.without_evidence_90_days,
        leavers_active: r.leavers_active,
        automation_accounts: r.automation_accounts,
        seat_price: r.seat_price,
        monthly_saving_leavers: r.monthly_saving_leavers,
        monthly_saving_leavers_and_idle_90: r.monthly_saving_leavers_and_idle_90,
        billing_period_end: t(r.billing_period_end),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceRunDto {
    id: i64,
    /// `running`, `succeeded` or `failed`.
    status: String,
    started_at: String,
    finished_at: Option<String>,
    /// Artefacts created or updated from this time on were read.
    read_from: String,
    requests: u64,
    /// The requests the scan needed at least (one per page of each list it read).
    estimate: u64,
    evidence: u64,
    error: Option<String>,
}

impl From<accessrail_store::EvidenceRun> for EvidenceRunDto {
    fn from(r: accessrail_store::EvidenceRun) -> Self {
        Self {
            id: r.id,
            status: r.status,
            started_at: time_fmt::rfc3339(r.started_at),
            finished_at: t(r.finished_at),
            read_from: time_fmt::rfc3339(r.read_from),
            requests: r.requests,
            estimate: r.estimate,
            evidence: r.evidence,
            error: r.error,
        }
    }
}

/// The evidence scans of a connection, oldest first.
#[utoipa::path(get, path = "/api/v1/connections/{name}/evidence", params(("name" = String, Path)), responses((status = 200, body = Vec<EvidenceRunDto>)))]
async fn evidence_runs(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<EvidenceRunDto>>> {
    let c = crate::api::conn(&s, &name).await?;
    let runs = s.engine.store().evidence_runs(&c.id).await?;
    Ok(Json(runs.into_iter().map(Into::into).collect()))
}

/// Runs an evidence scan now (from the last good one, less an hour) and answers when done.
#[utoipa::path(post, path = "/api/v1/connections/{name}/evidence", params(("name" = String, Path)), responses((status = 200, body = EvidenceRunDto), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn evidence_scan(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<EvidenceRunDto>> {
    let c = crate::api::conn(&s, &name).await?;
    let o = accessrail_engine::evidence::scan(&s.engine, &c, None).await?;
    let r = s
        .engine
        .store()
        .evidence_runs(&c.id)
        .await?
        .into_iter()
        .find(|r| r.id == o.run_id)
        .ok_or_else(|| ApiError::not_found("the evidence scan's record"))?;
    Ok(Json(r.into()))
}

// ---- offboarding ------------------------------------------------------------------------------

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardBody {
    /// The person's TestRail email.
    email: String,
    /// Hand their open runs and untested or retest tests to this active account first.
    #[serde(default)]
    reassign_to: Option<String>,
    /// A dry run (the default) reads and plans only.
    #[serde(default = "yes")]
    dry_run: bool,
    /// The dry run's fingerprint, required to apply: refused (409) if the plan changed since.
    #[serde(default)]
    fingerprint: Option<String>,
    /// Confirms the deactivation of an administrator or of the connection's own account.
    #[serde(default)]
    acknowledge: bool,
    /// Deactivations allowed (default 10).
    #[serde(default)]
    max_deactivations: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedRunDto {
    id: u64,
    name: String,
    project: String,
    /// Set for a run inside a plan.
    plan_id: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedPlanDto {
    id: u64,
    name: String,
    project: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedTestDto {
    id: u64,
    run_id: u64,
    project: String,
    /// `untested` or `retest`.
    status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImpactDto {
    account_id: u64,
    email: String,
    is_active: bool,
    /// Open runs assigned to them (reassigned by a hand-over).
    runs: Vec<AssignedRunDto>,
    /// Open plans assigned to them: listed only (TestRail's API cannot reassign a plan).
    plans: Vec<AssignedPlanDto>,
    /// Their untested or retest tests in open runs (reassigned by a hand-over).
    tests: Vec<AssignedTestDto>,
    /// Context: cases they created, and cases they updated last.
    cases_created: u64,
    cases_last_updated: u64,
    /// TestRail requests the read took.
    requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HandoverStepDto {
    /// `reassign_run`, `reassign_plan_run` or `reassign_tests`.
    action: String,
    target: String,
    run_id: u64,
    test_ids: Vec<u64>,
    calls: Vec<String>,
    note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeactivateStepDto {
    action: String,
    target: String,
    noop: bool,
    calls: Vec<String>,
    before: Option<String>,
    after: Option<String>,
    /// `administrator` or `own_account`: applying needs `acknowledge`.
    caution: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepOutcomeDto {
    target: String,
    /// `done`, `noop`, `failed` or `not_run`.
    outcome: String,
    audit_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardResultDto {
    /// Each hand-over step, audited before and after and read back.
    steps: Vec<StepOutcomeDto>,
    /// The deactivation ran (only when every hand-over step held).
    deactivation_ran: bool,
    deactivation: Vec<StepOutcomeDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardDto {
    dry_run: bool,
    impact: ImpactDto,
    /// The account taking the work: `[id, email]`.
    reassign_to: Option<(u64, String)>,
    steps: Vec<HandoverStepDto>,
    deactivate: Vec<DeactivateStepDto>,
    /// Deactivations a rail stopped, with the reason.
    skipped: Vec<String>,
    fingerprint: String,
    result: Option<OffboardResultDto>,
}

/// Offboarding: what is still assigned to the person (read fresh from TestRail), the plan that
/// hands it to `reassign_to` and deactivates the account; a dry run unless `dry_run` is false.
#[utoipa::path(post, path = "/api/v1/connections/{name}/offboard", params(("name" = String, Path)), request_body = OffboardBody, responses((status = 200, body = OffboardDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn offboard(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<OffboardBody>,
) -> ApiResult<Json<OffboardDto>> {
    let c = crate::api::conn(&s, &name).await?;
    if !b.dry_run {
        accessrail_engine::provision::ensure_enabled(&c)?;
    }
    let actor = caller.actor();
    let rails = Rails::new(b.max_deactivations, false);
    let to = b
        .reassign_to
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let plan = offboard::plan(&s.engine, &c, b.email.trim(), to, &rails, &actor).await?;
    let fingerprint = plan.fingerprint();
    let result = if b.dry_run {
        None
    } else {
        let Some(shown) = b.fingerprint.as_deref().map(str::trim) else {
            return Err(ApiError::invalid(
                "applying needs the dry run's fingerprint: make the dry run, read its plan, then send dry_run: false with its fingerprint",
            ));
        };
        if shown != fingerprint {
            return Err(ApiError::from(accessrail_engine::EngineError::Conflict(
                "the plan changed since the dry run (TestRail changed meanwhile); nothing was changed: read the new plan and apply it with its fingerprint".into(),
            )));
        }
        let cautions: Vec<&str> = plan
            .deactivate
            .steps
            .iter()
            .filter(|st| !st.is_noop())
            .filter_map(|st| st.caution.map(|c| c.message()))
            .collect();
        if !cautions.is_empty() && !b.acknowledge {
            return Err(ApiError::from(accessrail_engine::EngineError::Conflict(
                format!(
                    "not applied, nothing was changed: {} Pass acknowledge: true to confirm.",
                    cautions.join(" ")
                ),
            )));
        }
        let r = offboard::apply(&s.engine, &c, &plan, &actor).await?;
        Some(OffboardResultDto {
            steps: r
                .steps
                .iter()
                .map(|(target, outcome, audit_id)| StepOutcomeDto {
                    target: target.clone(),
                    outcome: outcome.clone(),
                    audit_id: *audit_id,
                })
                .collect(),
            deactivation_ran: r.deactivation.is_some(),
            deactivation: r
                .deactivation
                .iter()
                .flat_map(|d| d.results.iter())
                .map(|x| StepOutcomeDto {
                    target: x.target.clone(),
                    outcome: x.outcome.as_str().to_string(),
                    audit_id: x.audit_id,
                })
                .collect(),
        })
    };
    let i = &plan.impact;
    Ok(Json(OffboardDto {
        dry_run: b.dry_run,
        impact: ImpactDto {
            account_id: i.account_id,
            email: i.email.clone(),
            is_active: i.is_active,
            runs: i
                .runs
                .iter()
                .map(|r| AssignedRunDto {
                    id: r.id,
                    name: r.name.clone(),
                    project: r.project.clone(),
                    plan_id: r.plan_id,
                })
                .collect(),
            plans: i
                .plans
                .iter()
                .map(|p| AssignedPlanDto {
                    id: p.id,
                    name: p.name.clone(),
                    project: p.project.clone(),
                })
                .collect(),
            tests: i
                .tests
                .iter()
                .map(|t| AssignedTestDto {
                    id: t.id,
                    run_id: t.run_id,
                    project: t.project.clone(),
                    status: t.status.clone(),
                })
                .collect(),
            cases_created: i.cases_created,
            cases_last_updated: i.cases_last_updated,
            requests: i.requests,
        },
        reassign_to: plan.reassign_to.clone(),
        steps: plan
            .steps
            .iter()
            .map(|st| HandoverStepDto {
                action: st.action.to_string(),
                target: st.target.clone(),
                run_id: st.run_id,
                test_ids: st.test_ids.clone(),
                calls: st.calls.clone(),
                note: st.note.clone(),
            })
            .collect(),
        deactivate: plan
            .deactivate
            .steps
            .iter()
            .map(|st| DeactivateStepDto {
                action: st.action.to_string(),
                target: st.target.clone(),
                noop: st.is_noop(),
                calls: st.calls.clone(),
                before: st.before.clone(),
                after: st.after.clone(),
                caution: st.caution.map(|c| c.as_str().to_string()),
            })
            .collect(),
        skipped: plan
            .deactivate
            .skipped
            .iter()
            .map(|x| format!("{} {}: {}", x.action, x.target, x.reason))
            .collect(),
        fingerprint,
        result,
    }))
}

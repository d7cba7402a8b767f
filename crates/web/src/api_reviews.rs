//! The review API under `/api/v1/reviews` (and starting one under a connection). Administrator
//! tokens do everything; a reviewer sign-in (`tokens create NAME --reviewer EMAIL`) lists the
//! reviews it has items in, reads and decides only its own items and submits them. No other
//! API route accepts a reviewer sign-in.

use std::sync::Arc;

use accessrail_domain::review::{Decision, Every, Scope, Undecided};
use accessrail_engine::provision::Rails;
use accessrail_engine::reviews::{
    self, Actor, CloseLine, DecideRequest, ItemView, ReviewView, ReviewerView, StartOptions,
};
use accessrail_engine::time_fmt;
use accessrail_store::Store;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, ReviewCaller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/api/v1/reviews", get(list_reviews))
        .route("/api/v1/connections/{name}/reviews", post(start_review))
        .route(
            "/api/v1/connections/{name}/owners",
            get(list_owners).put(set_owner),
        )
        .route("/api/v1/reviews/{id}", get(get_review))
        .route("/api/v1/reviews/{id}/decisions", post(decide))
        .route("/api/v1/reviews/{id}/submit", post(submit))
        .route("/api/v1/reviews/{id}/approve", post(approve))
        .route("/api/v1/reviews/{id}/close", post(close))
        .route("/api/v1/reviews/{id}/export", get(export))
}

/// A time as RFC 3339, if any.
pub(crate) fn t(x: Option<i64>) -> Option<String> {
    x.map(time_fmt::rfc3339)
}

// ---- DTOs -------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewDto {
    id: i64,
    connection: String,
    /// active, all, role:R, group:G, project:P, admins or unmatched.
    scope: String,
    /// The scan whose accounts were frozen as items.
    snapshot_scan: i64,
    /// `open` or `closed`.
    status: String,
    overdue: bool,
    /// What closing does with undecided (or unapproved) items: `keep` or `revoke`.
    undecided: String,
    every: Option<String>,
    fallback_reviewers: Vec<String>,
    due_at: Option<String>,
    created_at: String,
    created_by: String,
    closed_at: Option<String>,
    closed_by: Option<String>,
    /// Items (a reviewer sign-in: its own).
    items: u64,
    decided: u64,
    previous_review: Option<i64>,
    next_start_at: Option<String>,
}

impl From<ReviewView> for ReviewDto {
    fn from(v: ReviewView) -> Self {
        Self {
            id: v.id,
            connection: v.connection,
            scope: v.scope,
            snapshot_scan: v.snapshot_scan,
            status: v.status,
            overdue: v.overdue,
            undecided: v.undecided,
            every: v.every,
            fallback_reviewers: v.fallback_reviewers,
            due_at: t(v.due_at),
            created_at: time_fmt::rfc3339(v.created_at),
            created_by: v.created_by,
            closed_at: t(v.closed_at),
            closed_by: v.closed_by,
            items: v.items,
            decided: v.decided,
            previous_review: v.previous_review,
            next_start_at: t(v.next_start_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewerDto {
    reviewer: String,
    items: u64,
    decided: u64,
    /// `open` (not submitted), `submitted`, `approved` or `sent_back`.
    submission: String,
    submitted_at: Option<String>,
    /// Who approved or sent it back.
    judged_by: Option<String>,
    judged_at: Option<String>,
    comment: Option<String>,
    /// sha256 of the decisions as submitted (also in the audit log).
    digest: Option<String>,
}

impl From<ReviewerView> for ReviewerDto {
    fn from(v: ReviewerView) -> Self {
        Self {
            reviewer: v.reviewer,
            items: v.items,
            decided: v.decided,
            submission: v.submission,
            submitted_at: t(v.submitted_at),
            judged_by: v.judged_by,
            judged_at: t(v.judged_at),
            comment: v.comment,
            digest: v.digest,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectEntitlementDto {
    id: u64,
    name: String,
    role: Option<String>,
    /// What gave the role: `administrator`, `own project role`, `group G`, `project default`.
    source: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntitlementsDto {
    active: bool,
    is_admin: bool,
    role: Option<String>,
    groups: Vec<String>,
    /// Projects the account could reach; null when project access was not known.
    projects: Option<Vec<ProjectEntitlementDto>>,
    projects_note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemDto {
    item: i64,
    account_id: u64,
    email: String,
    name: String,
    /// What the account had at the snapshot.
    entitlements: EntitlementsDto,
    /// The matched identity (id, name, email, status, manager_email); null when unmatched.
    #[schema(value_type = Option<Object>)]
    identity: Option<serde_json::Value>,
    reviewer: String,
    /// Why this reviewer (manager, owner of group G, fallback, self-review rerouted...).
    route: String,
    decision: Option<String>,
    action: Option<String>,
    comment: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<String>,
    final_decision: Option<String>,
    final_source: Option<String>,
    outcome: Option<String>,
    outcome_audit_id: Option<i64>,
    outcome_at: Option<String>,
}

impl From<ItemView> for ItemDto {
    fn from(i: ItemView) -> Self {
        let e = i.entitlements;
        Self {
            item: i.item,
            account_id: i.account_id,
            email: i.email,
            name: i.name,
            entitlements: EntitlementsDto {
                active: e.active,
                is_admin: e.is_admin,
                role: e.role,
                groups: e.groups,
                projects: e.projects.map(|ps| {
                    ps.into_iter()
                        .map(|p| ProjectEntitlementDto {
                            id: p.id,
                            name: p.name,
                            role: p.role,
                            source: p.source,
                        })
                        .collect()
                }),
                projects_note: e.projects_note,
            },
            identity: i.identity,
            reviewer: i.reviewer,
            route: i.route,
            decision: i.decision,
            action: i.action,
            comment: i.comment,
            decided_by: i.decided_by,
            decided_at: t(i.decided_at),
            final_decision: i.final_decision,
            final_source: i.final_source,
            outcome: i.outcome,
            outcome_audit_id: i.outcome_audit_id,
            outcome_at: t(i.outcome_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewDetailDto {
    review: ReviewDto,
    reviewers: Vec<ReviewerDto>,
    /// Items matching the filter, all pages (a reviewer's, or everyone's for an administrator).
    total: u64,
    items: Vec<ItemDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartReview {
    /// active (default), all, role:R, group:G, project:P, admins or unmatched.
    #[serde(default)]
    scope: Option<String>,
    /// At least one: reviews unmatched accounts and self-reviews (the second takes the first's
    /// own account).
    fallback_reviewers: Vec<String>,
    /// A date (end of that day, UTC) or an RFC 3339 time; default in 14 days.
    #[serde(default)]
    due: Option<String>,
    /// `keep` (default) or `revoke`.
    #[serde(default)]
    undecided: Option<String>,
    /// Recurrence, e.g. `3mo`, `90d`, `1y`.
    #[serde(default)]
    every: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionDto {
    /// The account's email, or `#ITEM`.
    account: String,
    /// keep, revoke, out_of_scope or already_removed.
    decision: String,
    /// With revoke: deactivate (default), remove-group:GROUP or role:ROLE.
    #[serde(default)]
    action: Option<String>,
    /// Required for revoke and out_of_scope.
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    decisions: Vec<DecisionDto>,
    /// The reviewer decided for: an administrator names them; a reviewer sign-in is always
    /// its own reviewer.
    #[serde(default, rename = "as")]
    as_reviewer: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The reviewer submitting (a reviewer sign-in: itself, may be omitted).
    #[serde(default)]
    reviewer: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    reviewer: String,
    /// false sends the submission back (a comment is then required).
    #[serde(default = "yes")]
    approve: bool,
    /// The approving administrator's email: recorded, and never the reviewer's own.
    #[serde(default)]
    approver: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// true (the default) only plans; false applies the plan and closes the review.
    #[serde(default = "yes")]
    dry_run: bool,
    /// Deactivations allowed (default 10).
    #[serde(default)]
    max_deactivations: Option<u32>,
    /// Confirms deactivating a TestRail administrator the plan shows (`cautions`).
    #[serde(default)]
    acknowledge: bool,
    /// The dry run's `fingerprint`: the close refuses (409) when what it would do changed.
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloseLineDto {
    item: i64,
    email: String,
    reviewer: String,
    final_decision: String,
    action: Option<String>,
    /// `reviewer`, or `undecided (review setting: ...)` / `not approved (...)`.
    source: String,
    /// Why a revocation is not sent (a rail).
    refused: Option<String>,
}

impl From<CloseLine> for CloseLineDto {
    fn from(l: CloseLine) -> Self {
        Self {
            item: l.item,
            email: l.email,
            reviewer: l.reviewer,
            final_decision: l.final_decision,
            action: l.action,
            source: l.source,
            refused: l.refused,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloseStepDto {
    action: String,
    target: String,
    noop: bool,
    calls: Vec<String>,
    before: Option<String>,
    after: Option<String>,
    caution: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloseResultDto {
    closed: bool,
    kept: usize,
    revoked: usize,
    failed: usize,
    refused: usize,
    /// The audit entry of the close.
    audit_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloseDto {
    dry_run: bool,
    keep: usize,
    revoke: usize,
    refused: usize,
    lines: Vec<CloseLineDto>,
    /// The provisioning plan of the revocations.
    steps: Vec<CloseStepDto>,
    /// Deactivations of TestRail administrators: applying needs `acknowledge: true`.
    cautions: Vec<String>,
    /// Pass it back with `dry_run: false` to apply exactly what this dry run showed.
    fingerprint: String,
    result: Option<CloseResultDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerDto {
    /// `group` or `project`.
    kind: String,
    id: u64,
    name: String,
    owner: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOwnerBody {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    project: Option<String>,
    /// The owner's email; null removes the owner.
    owner: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this connection's reviews.
    connection: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Only this reviewer's items (a reviewer sign-in always sees only its own).
    reviewer: Option<String>,
    /// Only decided (`true`) or undecided (`false`) items.
    decided: Option<bool>,
    /// Items per page (default 500, at most 5000).
    limit: Option<u64>,
    #[serde(default)]
    offset: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// csv, json or html.
    format: String,
}

// ---- handlers ---------------------------------------------------------------------------------

/// Reviews, newest first: all of them for an administrator; for a reviewer sign-in, those it
/// has items in (with its own counts).
#[utoipa::path(get, path = "/api/v1/reviews", params(ListQuery), responses((status = 200, body = Vec<ReviewDto>), (status = 401, body = ErrorBody)))]
async fn list_reviews(
    ReviewCaller(actor): ReviewCaller,
    State(s): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<ReviewDto>>> {
    let c = match &q.connection {
        Some(n) => Some(crate::api::conn(&s, n).await?),
        None => None,
    };
    let all = reviews::list(&s.engine, c.as_ref(), &actor).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

fn parse_due(d: &str) -> ApiResult<i64> {
    let at = time_fmt::parse_time(d).ok_or_else(|| {
        ApiError::invalid(format!(
            "due {d:?}: give a date (2026-12-31) or an RFC 3339 time"
        ))
    })?;
    Ok(if d.contains('T') { at } else { at + 86_399 })
}

/// Starts a review at the connection's latest successful scan (administrators only).
#[utoipa::path(post, path = "/api/v1/connections/{name}/reviews", params(("name" = String, Path)), request_body = StartReview, responses((status = 201, body = ReviewDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_review(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<StartReview>,
) -> ApiResult<(StatusCode, Json<ReviewDto>)> {
    let c = crate::api::conn(&s, &name).await?;
    let opts = StartOptions {
        scope: Scope::parse(b.scope.as_deref().unwrap_or("active")).map_err(ApiError::invalid)?,
        fallbacks: b.fallback_reviewers,
        due_at: b.due.as_deref().map(parse_due).transpose()?,
        undecided: match b.undecided.as_deref() {
            None => Undecided::Keep,
            Some(u) => Undecided::parse(u)
                .ok_or_else(|| ApiError::invalid(format!("undecided {u:?}: keep or revoke")))?,
        },
        every: b
            .every
            .as_deref()
            .map(Every::parse)
            .transpose()
            .map_err(ApiError::invalid)?,
    };
    let v = reviews::start(&s.engine, &c, opts, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

/// One review: progress per reviewer and its items (a reviewer sign-in: its own only).
#[utoipa::path(get, path = "/api/v1/reviews/{id}", params(("id" = i64, Path), ShowQuery), responses((status = 200, body = ReviewDetailDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_review(
    ReviewCaller(actor): ReviewCaller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<Json<ReviewDetailDto>> {
    let filter = reviews::ItemFilter {
        decided: q.decided,
        offset: q.offset,
        limit: q.limit.unwrap_or(500).clamp(1, 5000),
    };
    let d = reviews::show_page(&s.engine, id, q.reviewer.as_deref(), &filter, &actor).await?;
    Ok(Json(ReviewDetailDto {
        review: d.review.into(),
        reviewers: d.reviewers.into_iter().map(Into::into).collect(),
        total: d.total,
        items: d.items.into_iter().map(Into::into).collect(),
    }))
}

/// Records decisions of one reviewer (all or nothing). Reviewers can change a decision until
/// they submit.
#[utoipa::path(post, path = "/api/v1/reviews/{id}/decisions", params(("id" = i64, Path)), request_body = DecideBody, responses((status = 200, body = Vec<ItemDto>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn decide(
    ReviewCaller(actor): ReviewCaller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<DecideBody>,
) -> ApiResult<Json<Vec<ItemDto>>> {
    let mut requests = Vec::new();
    for d in b.decisions {
        let decision = Decision::parse(&d.decision).ok_or_else(|| {
            ApiError::invalid(format!(
                "decision {:?}: keep, revoke, out_of_scope or already_removed",
                d.decision
            ))
        })?;
        requests.push(DecideRequest {
            account: d.account,
            decision,
            action: d.action,
            comment: d.comment,
            as_reviewer: b.as_reviewer.clone(),
        });
    }
    let done = reviews::decide(&s.engine, id, requests, &actor).await?;
    Ok(Json(done.into_iter().map(Into::into).collect()))
}

/// Submits a reviewer's decisions for approval (every item decided).
#[utoipa::path(post, path = "/api/v1/reviews/{id}/submit", params(("id" = i64, Path)), request_body = SubmitBody, responses((status = 200, body = ReviewerDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn submit(
    ReviewCaller(actor): ReviewCaller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<SubmitBody>,
) -> ApiResult<Json<ReviewerDto>> {
    let v = reviews::submit(&s.engine, id, b.reviewer.as_deref(), &actor).await?;
    Ok(Json(v.into()))
}

/// Approves (or, with `approve: false`, sends back) a reviewer's submission. Administrators
/// only; nobody approves their own.
#[utoipa::path(post, path = "/api/v1/reviews/{id}/approve", params(("id" = i64, Path)), request_body = ApproveBody, responses((status = 200, body = ReviewerDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ApproveBody>,
) -> ApiResult<Json<ReviewerDto>> {
    let actor = Actor::Admin {
        actor: caller.actor(),
    };
    let v = reviews::judge(
        &s.engine,
        id,
        &b.reviewer,
        b.approve,
        b.approver.as_deref(),
        b.comment.as_deref(),
        &actor,
    )
    .await?;
    Ok(Json(v.into()))
}

/// Closes a review: the dry run (the default) shows every item's final decision and the
/// provisioning plan of the revocations; `dry_run: false` applies it (deactivation cap,
/// protected accounts and the connection's own account refused), audits each outcome with the
/// review and item, and closes the review. Administrators only.
#[utoipa::path(post, path = "/api/v1/reviews/{id}/close", params(("id" = i64, Path)), request_body = CloseBody, responses((status = 200, body = CloseDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn close(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<CloseBody>,
) -> ApiResult<Json<CloseDto>> {
    let actor = Actor::Admin {
        actor: caller.actor(),
    };
    let rails = Rails::new(b.max_deactivations, false);
    let (planned, result) = if b.dry_run {
        (
            reviews::plan_close(&s.engine, id, &rails, &actor).await?.0,
            None,
        )
    } else {
        let opts = reviews::CloseOptions {
            acknowledge: b.acknowledge,
            fingerprint: b.fingerprint.clone(),
        };
        let r = reviews::close(&s.engine, id, &rails, &opts, &actor).await?;
        let result = CloseResultDto {
            closed: r.closed,
            kept: r.kept,
            revoked: r.revoked,
            failed: r.failed,
            refused: r.refused,
            audit_id: r.audit_id,
        };
        (r.planned, Some(result))
    };
    let steps = planned
        .plan
        .steps
        .iter()
        .map(|st| CloseStepDto {
            action: st.action.to_string(),
            target: st.target.clone(),
            noop: st.is_noop(),
            calls: st.calls.clone(),
            before: st.before.clone(),
            after: st.after.clone(),
            caution: st.caution.map(|c| c.as_str().to_string()),
        })
        .collect();
    Ok(Json(CloseDto {
        dry_run: b.dry_run,
        keep: planned.keep,
        revoke: planned.revoke,
        refused: planned.refused,
        lines: planned.lines.iter().cloned().map(Into::into).collect(),
        steps,
        cautions: planned.cautions.clone(),
        fingerprint: planned.fingerprint.clone(),
        result,
    }))
}

/// The evidence: every item with its snapshot, reviewer, decision, approval and outcome, and
/// the audit chain's head hash (the export's own audit entry). Administrators only.
#[utoipa::path(get, path = "/api/v1/reviews/{id}/export", params(("id" = i64, Path), ExportQuery), responses((status = 200, description = "text/csv, application/json or text/html"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn export(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let actor = Actor::Admin {
        actor: caller.actor(),
    };
    export_response(&s, id, &q.format, &actor).await
}

/// The export as an HTTP answer (the console's export links use it too).
pub(crate) async fn export_response(
    s: &AppState,
    id: i64,
    format: &str,
    actor: &Actor,
) -> ApiResult<Response> {
    let fmt = format.trim().to_ascii_lowercase();
    if !matches!(fmt.as_str(), "csv" | "json" | "html") {
        return Err(ApiError::invalid(format!(
            "format {format:?}: csv, json or html"
        )));
    }
    let e = reviews::evidence(&s.engine, id, &fmt, actor).await?;
    let (ctype, body) = match fmt.as_str() {
        "csv" => ("text/csv; charset=utf-8", reviews::to_csv(&e)?),
        "json" => (
            "application/json",
            serde_json::to_vec_pretty(&e).map_err(|x| ApiError::internal("internal", x))?,
        ),
        _ => (
            "text/html; charset=utf-8",
            reviews::to_html(&e)?.into_bytes(),
        ),
    };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, ctype)], body).into_response();
    if fmt != "html"
        && let Ok(v) = header::HeaderValue::from_str(&format!(
            "attachment; filename=\"accessrail-review-{id}.{fmt}\""
        ))
    {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&e.audit_head_hash) {
        resp.headers_mut().insert("x-accessrail-audit-head", v);
    }
    Ok(resp)
}

/// Group and project owners (who reviews access to them).
#[utoipa::path(get, path = "/api/v1/connections/{name}/owners", params(("name" = String, Path)), responses((status = 200, body = Vec<OwnerDto>)))]
async fn list_owners(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<OwnerDto>>> {
    let c = crate::api::conn(&s, &name).await?;
    let all = s.engine.store().owners(&c.id).await?;
    Ok(Json(
        all.into_iter()
            .map(|o| OwnerDto {
                kind: o.kind,
                id: o.target_id,
                name: o.target_name,
                owner: o.owner_email,
            })
            .collect(),
    ))
}

/// Sets (or, with `owner: null`, removes) the owner of a group or a project.
#[utoipa::path(put, path = "/api/v1/connections/{name}/owners", params(("name" = String, Path)), request_body = SetOwnerBody, responses((status = 200, body = OwnerDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_owner(
    caller: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<SetOwnerBody>,
) -> ApiResult<Json<OwnerDto>> {
    let c = crate::api::conn(&s, &name).await?;
    let (kind, id, tname) = reviews::set_owner(
        &s.engine,
        &c,
        b.group.as_deref(),
        b.project.as_deref(),
        b.owner.as_deref(),
        &caller.actor(),
    )
    .await?;
    Ok(Json(OwnerDto {
        kind,
        id,
        name: tname,
        owner: b.owner.unwrap_or_default(),
    }))
}

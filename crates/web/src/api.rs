//! The JSON API under `/api/v1/`, described by the OpenAPI document at `/api/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use accessrail_domain::MatchState;
use accessrail_engine::access;
use accessrail_engine::jobs::{self, Job, PLAN_LIFETIME};
use accessrail_engine::provision::{self, Action, Origin, Rails, Request};
use accessrail_engine::report::{self, AccountSort, UserFilter, UserView};
use accessrail_engine::{ApiKey, ConnectRequest, Target, identities, time_fmt};
use accessrail_store::{Connection, Store};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiBody, ApiJson, ApiPath, ApiQuery};
use crate::state::{AppState, StoredPlan, random_id};
use accessrail_store::{PlanClaim, PlanRecord, PlanStatus};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Accessrail API",
        description = "Who has access to TestRail: connections, scans, accounts matched to identities, changes, provisioning and its audit log, access reviews. Every /api/v1 route needs `Authorization: Bearer <token>` (accessrail tokens create NAME). A reviewer sign-in (accessrail tokens create NAME --reviewer EMAIL) reaches only GET /api/v1/reviews, GET /api/v1/reviews/{id} and the decisions and submit routes, for its own items; everything else answers it 403."
    ),
    paths(
        list_connections,
        create_connection,
        delete_connection,
        test_connection,
        list_scans,
        start_scan,
        get_scan,
        list_accounts,
        list_groups,
        list_roles,
        list_changes,
        access_at,
        list_projects,
        project_access,
        account_projects,
        list_identities,
        import_identities,
        list_audit,
        create_plan,
        get_plan,
        apply_plan,
        crate::api_reviews::list_reviews,
        crate::api_reviews::start_review,
        crate::api_reviews::get_review,
        crate::api_reviews::decide,
        crate::api_reviews::submit,
        crate::api_reviews::approve,
        crate::api_reviews::close,
        crate::api_reviews::export,
        crate::api_reviews::list_owners,
        crate::api_reviews::set_owner,
        crate::api_evidence::seats,
        crate::api_evidence::evidence_runs,
        crate::api_evidence::evidence_scan,
        crate::api_evidence::offboard
    ),
    components(schemas(
        ErrorBody,
        ConnectionDto,
        CreateConnection,
        ConnectResult,
        CheckDto,
        TestDto,
        ScanDto,
        Accepted,
        AccountDto,
        AccountPage,
        GroupDto,
        RoleDto,
        ChangeDto,
        ProjectDto,
        AccessSourceDto,
        AccessRowDto,
        ProjectAccessDto,
        AccountProjectsDto,
        IdentityDto,
        ImportResult,
        AuditDto,
        PlanRequest,
        PlanDto,
        StepDto,
        ApplyDto,
        StepResultDto,
        PlanStatusDto,
        crate::api_reviews::ReviewDto,
        crate::api_reviews::ReviewerDto,
        crate::api_reviews::ItemDto,
        crate::api_reviews::EntitlementsDto,
        crate::api_reviews::ProjectEntitlementDto,
        crate::api_reviews::ReviewDetailDto,
        crate::api_reviews::StartReview,
        crate::api_reviews::DecisionDto,
        crate::api_reviews::DecideBody,
        crate::api_reviews::SubmitBody,
        crate::api_reviews::ApproveBody,
        crate::api_reviews::CloseBody,
        crate::api_reviews::CloseLineDto,
        crate::api_reviews::CloseStepDto,
        crate::api_reviews::CloseResultDto,
        crate::api_reviews::CloseDto,
        crate::api_reviews::OwnerDto,
        crate::api_reviews::SetOwnerBody,
        crate::api_evidence::SeatsDto,
        crate::api_evidence::EvidenceRunDto,
        crate::api_evidence::OffboardBody,
        crate::api_evidence::OffboardDto,
        crate::api_evidence::ImpactDto,
        crate::api_evidence::AssignedRunDto,
        crate::api_evidence::AssignedPlanDto,
        crate::api_evidence::AssignedTestDto,
        crate::api_evidence::HandoverStepDto,
        crate::api_evidence::DeactivateStepDto,
        crate::api_evidence::StepOutcomeDto,
        crate::api_evidence::OffboardResultDto
    ))
)]
struct ApiDoc;

/// The OpenAPI document, as served (and checked in CI against `docs/openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

pub fn routes(_state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route(
            "/api/openapi.json",
            get(|| async { ([("content-type", "application/json")], openapi_json()) }),
        )
        .route(
            "/api/v1/connections",
            get(list_connections).post(create_connection),
        )
        .route("/api/v1/connections/{name}", delete(delete_connection))
        .route("/api/v1/connections/{name}/test", post(test_connection))
        .route(
            "/api/v1/connections/{name}/scans",
            get(list_scans).post(start_scan),
        )
        .route("/api/v1/scans/{id}", get(get_scan))
        .route("/api/v1/connections/{name}/accounts", get(list_accounts))
        .route("/api/v1/connections/{name}/groups", get(list_groups))
        .route("/api/v1/connections/{name}/roles", get(list_roles))
        .route("/api/v1/connections/{name}/changes", get(list_changes))
        .route("/api/v1/connections/{name}/access", get(access_at))
        .route("/api/v1/connections/{name}/projects", get(list_projects))
        .route(
            "/api/v1/connections/{name}/projects/{project}/access",
            get(project_access),
        )
        .route(
            "/api/v1/connections/{name}/accounts/{id}/projects",
            get(account_projects),
        )
        .route(
            "/api/v1/identities",
            get(list_identities).post(import_identities),
        )
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/connections/{name}/plans", post(create_plan))
        .route("/api/v1/plans/{id}", get(get_plan))
        .route("/api/v1/plans/{id}/apply", post(apply_plan))
        .merge(crate::api_reviews::routes())
        .merge(crate::api_evidence::routes())
}

// ---- DTOs -------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionDto {
    name: String,
    base_url: String,
    email: String,
    request_budget: Option<u32>,
    groups_supported: Option<bool>,
    provisioning_enabled: bool,
    scan_interval_hours: Option<f64>,
    created_at: String,
}

impl From<&Connection> for ConnectionDto {
    fn from(c: &Connection) -> Self {
        Self {
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            email: c.email.clone(),
            request_budget: c.request_budget,
            groups_supported: c.groups_supported,
            provisioning_enabled: c.provisioning_enabled,
            scan_interval_hours: c.scan_interval_secs.map(|s| s as f64 / 3600.0),
            created_at: time_fmt::rfc3339(c.created_at),
        }
    }
}

/// Give `subdomain` (TestRail Cloud) or `base_url` (TestRail Server). The API key is write-only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    subdomain: Option<String>,
    base_url: Option<String>,
    email: String,
    api_key: String,
    name: Option<String>,
    #[serde(default)]
    replace: bool,
    request_budget: Option<u32>,
    /// Hours between scheduled scans of this connection (default: the service's interval).
    scan_interval_hours: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckDto {
    name: String,
    title: String,
    status: String,
    message: String,
    hint: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestDto {
    base_url: String,
    passed: bool,
    groups_supported: Option<bool>,
    checks: Vec<CheckDto>,
}

impl From<&accessrail_engine::check::TestReport> for TestDto {
    fn from(r: &accessrail_engine::check::TestReport) -> Self {
        Self {
            base_url: r.base_url.clone(),
            passed: r.passed,
            groups_supported: r.groups_supported,
            checks: r
                .checks
                .iter()
                .map(|c| CheckDto {
                    name: c.name.into(),
                    title: c.title.into(),
                    status: c.status.as_str().into(),
                    message: c.message.clone(),
                    hint: c.hint.map(Into::into),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectResult {
    test: TestDto,
    /// Null when the test failed: nothing was saved.
    connection: Option<ConnectionDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanDto {
    id: i64,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    duration_seconds: Option<i64>,
    users: u64,
    groups: u64,
    active_seats: u64,
    requests: u64,
    retries: u64,
    changes: u64,
    error: Option<String>,
    warnings: Vec<String>,
}

impl From<&accessrail_store::ScanRecord> for ScanDto {
    fn from(s: &accessrail_store::ScanRecord) -> Self {
        Self {
            id: s.id,
            status: s.status.as_str().into(),
            started_at: time_fmt::rfc3339(s.started_at),
            finished_at: s.finished_at.map(time_fmt::rfc3339),
            duration_seconds: s.finished_at.map(|f| f - s.started_at),
            users: s.users_seen,
            groups: s.groups_seen,
            active_seats: s.active_seats,
            requests: s.requests,
            retries: s.retries,
            changes: s.changes,
            error: s.error.clone(),
            warnings: s.warnings.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    id: u64,
    email: Option<String>,
    name: Option<String>,
    is_active: bool,
    is_admin: Option<bool>,
    role: Option<String>,
    role_id: Option<u64>,
    groups: Vec<String>,
    group_ids: Vec<u64>,
    identity: Option<String>,
    identity_status: Option<String>,
    /// matched, unmatched, ambiguous or forgotten.
    #[serde(rename = "match")]
    match_state: String,
}

impl From<UserView> for AccountDto {
    fn from(u: UserView) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            is_active: u.is_active,
            is_admin: u.is_admin,
            role: u.role,
            role_id: u.role_id,
            groups: u.groups,
            group_ids: u.group_ids,
            identity: u.identity,
            identity_status: u.identity_status,
            match_state: u.match_state.as_str().into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    total: usize,
    offset: usize,
    limit: usize,
    accounts: Vec<AccountDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDto {
    id: u64,
    name: Option<String>,
    user_ids: Vec<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleDto {
    id: u64,
    name: Option<String>,
    is_default: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeDto {
    id: i64,
    scan: i64,
    at: String,
    kind: String,
    user_id: Option<u64>,
    group_id: Option<u64>,
    subject: Option<String>,
    before: Option<String>,
    after: Option<String>,
    audit_id: Option<i64>,
    /// The project an access change is about.
    project_id: Option<u64>,
    project: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityDto {
    id: String,
    name: String,
    emails: Vec<String>,
    /// active, leaver or gone.
    status: String,
    attributes: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    added: u64,
    updated: u64,
    unchanged: u64,
    marked_gone: u64,
    /// Connections whose flows were queued to run after this import (applied where provisioning
    /// is on, planned only where it is off); follow them in the audit log.
    flows_queued: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    id: i64,
    at: String,
    actor: String,
    connection: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
    calls: Vec<String>,
    outcome: String,
    message: Option<String>,
    hash: String,
}

/// Actions such as `{"action": "deactivate", "email": "a@b.io"}`, `{"action": "create_user",
/// "name": ..., "email": ..., "role": "Tester", "groups": ["QA"], "reconcile": false}`,
/// `reactivate`, `set_role` (`role`), `add_to_group` / `remove_from_group` (`group`),
/// `set_project_role` (`email`, `project`, `role`: a role, `global`, or null to clear) and
/// `set_group_project_role` (`group`, `project`, `role`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Action>,
    max_deactivations: Option<u32>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepDto {
    action: String,
    target: String,
    noop: bool,
    calls: Vec<String>,
    before: Option<String>,
    after: Option<String>,
    note: Option<String>,
    /// Set on a deactivation that needs care: `administrator` (a TestRail administrator) or
    /// `own_account` (the account this connection signs in with: Accessrail loses access).
    #[serde(skip_serializing_if = "Option::is_none")]
    caution: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanDto {
    id: String,
    /// A hash of the state the plan was built from; apply refuses if it has changed.
    fingerprint: String,
    connection: String,
    steps: Vec<StepDto>,
    skipped: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepResultDto {
    step: usize,
    action: String,
    target: String,
    outcome: String,
    message: Option<String>,
    calls_made: Vec<String>,
    audit_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyDto {
    done: usize,
    noop: usize,
    failed: usize,
    not_run: usize,
    results: Vec<StepResultDto>,
}

// ---- handlers ---------------------------------------------------------------------------------

pub(crate) async fn conn(state: &AppState, name: &str) -> ApiResult<Connection> {
    state
        .engine
        .store()
        .connection(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no connection named {name:?}")))
}

#[utoipa::path(get, path = "/api/v1/connections", responses((status = 200, body = Vec<ConnectionDto>), (status = 401, body = ErrorBody)))]
async fn list_connections(
    _c: Caller,
    State(s): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<ConnectionDto>>> {
    Ok(Json(
        s.engine
            .store()
            .connections()
            .await?
            .iter()
            .map(ConnectionDto::from)
            .collect(),
    ))
}

/// Runs Test, then saves only if it passed. The key is never returned.
#[utoipa::path(post, path = "/api/v1/connections", request_body = CreateConnection,
    responses((status = 201, body = ConnectResult), (status = 422, body = ConnectResult), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_connection(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectResult>)> {
    let target = match (body.subdomain, body.base_url) {
        (Some(sd), None) => Target::Subdomain(sd),
        (None, Some(u)) if s.allow_base_urls => Target::BaseUrl(u),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "TestRail Server URLs are not allowed on this server (start it with --allow-base-urls)",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of subdomain and base_url",
            ));
        }
    };
    let key = ApiKey::new(&body.api_key).ok_or_else(|| ApiError::invalid("api_key is empty"))?;
    let (report, saved) = s
        .engine
        .connect(ConnectRequest {
            target,
            email: body.email,
            key,
            name: body.name,
            replace: body.replace,
            request_budget: body.request_budget,
            scan_interval_secs: body
                .scan_interval_hours
                .filter(|h| h.is_finite() && *h > 0.0)
                .map(|h| (h * 3600.0) as i64),
        })
        .await?;
    let status = if saved.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if saved.is_some() {
        s.scan_now.notify_one();
    }
    Ok((
        status,
        Json(ConnectResult {
            test: TestDto::from(&report),
            connection: saved.as_ref().map(ConnectionDto::from),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/connections/{name}", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_connection(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if s.engine.store().remove_connection(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no connection named {name:?}")))
    }
}

#[utoipa::path(post, path = "/api/v1/connections/{name}/test", params(("name" = String, Path)), responses((status = 200, body = TestDto)))]
async fn test_connection(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<TestDto>> {
    conn(&s, &name).await?;
    Ok(Json(TestDto::from(&s.engine.test(Some(&name)).await?)))
}

#[utoipa::path(get, path = "/api/v1/connections/{name}/scans", params(("name" = String, Path)), responses((status = 200, body = Vec<ScanDto>)))]
async fn list_scans(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<ScanDto>>> {
    let c = conn(&s, &name).await?;
    Ok(Json(
        s.engine
            .store()
            .scans(&c.id)
            .await?
            .iter()
            .map(ScanDto::from)
            .collect(),
    ))
}

/// Starts a scan in the background ("scan now"); follow it with the scan list.
#[utoipa::path(post, path = "/api/v1/connections/{name}/scans", params(("name" = String, Path)), responses((status = 202, body = Accepted)))]
async fn start_scan(
    c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let found = conn(&s, &name).await?;
    crate::serve::queue_scan(&s, found.id, c.actor()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: format!("scan of {name} started"),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/scans/{id}", params(("id" = i64, Path)), responses((status = 200, body = ScanDto), (status = 404, body = ErrorBody)))]
async fn get_scan(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ScanDto>> {
    let scan = s
        .engine
        .store()
        .scan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no scan {id}")))?;
    Ok(Json(ScanDto::from(&scan)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// true: active only; false: inactive only.
    active: Option<bool>,
    /// matched, unmatched, ambiguous or forgotten.
    #[serde(rename = "match")]
    match_state: Option<String>,
    role: Option<String>,
    group: Option<String>,
    /// Search in name and email.
    q: Option<String>,
    /// true: leavers only (matched to an identity marked as a leaver).
    leaver: Option<bool>,
    /// true: administrators only.
    admin: Option<bool>,
    /// id (default), name, email, role or active (active accounts first).
    sort: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/connections/{name}/accounts", params(("name" = String, Path), AccountQuery), responses((status = 200, body = AccountPage)))]
async fn list_accounts(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<AccountQuery>,
) -> ApiResult<Json<AccountPage>> {
    let c = conn(&s, &name).await?;
    let match_state = match q.match_state.as_deref() {
        None => None,
        Some("matched") => Some(MatchState::Matched),
        Some("unmatched") => Some(MatchState::Unmatched),
        Some("ambiguous") => Some(MatchState::Ambiguous),
        Some("forgotten") => Some(MatchState::Forgotten),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "match={other:?}: use matched, unmatched, ambiguous or forgotten"
            )));
        }
    };
    let sort = match q.sort.as_deref() {
        None | Some("id") => AccountSort::Id,
        Some("name") => AccountSort::Name,
        Some("email") => AccountSort::Email,
        Some("role") => AccountSort::Role,
        Some("active") => AccountSort::Active,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "sort={other:?}: use id, name, email, role or active"
            )));
        }
    };
    let (limit, offset) = (q.limit.unwrap_or(100).clamp(1, 1000), q.offset.unwrap_or(0));
    let filter = UserFilter {
        role: q.role.clone(),
        group: q.group.clone(),
        active: q.active,
        match_state,
        leaver: q.leaver.unwrap_or(false),
        admins: q.admin.unwrap_or(false),
        q: q.q.clone(),
        sort,
        limit: Some(limit as u64),
        offset: offset as u64,
        ..UserFilter::default()
    };
    let page = report::list(&s.engine, &c, &filter).await.map_err(|e| {
        if e.is_usage() {
            ApiError::invalid(e.to_string())
        } else {
            e.into()
        }
    })?;
    Ok(Json(AccountPage {
        total: usize::try_from(page.total).unwrap_or(usize::MAX),
        offset,
        limit,
        accounts: page.users.into_iter().map(AccountDto::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/connections/{name}/groups", params(("name" = String, Path)), responses((status = 200, body = Vec<GroupDto>)))]
async fn list_groups(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<GroupDto>>> {
    let c = conn(&s, &name).await?;
    Ok(Json(
        s.engine
            .store()
            .current_groups(&c.id)
            .await?
            .into_iter()
            .map(|g| GroupDto {
                id: g.id,
                name: g.name,
                user_ids: g.member_ids,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/connections/{name}/roles", params(("name" = String, Path)), responses((status = 200, body = Vec<RoleDto>)))]
async fn list_roles(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<RoleDto>>> {
    let c = conn(&s, &name).await?;
    Ok(Json(
        s.engine
            .store()
            .current_roles(&c.id)
            .await?
            .into_iter()
            .map(|r| RoleDto {
                id: r.id,
                name: r.name,
                is_default: r.is_default,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangeQuery {
    /// RFC 3339, a date, or an age such as 7d.
    since: Option<String>,
    scan: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/connections/{name}/changes", params(("name" = String, Path), ChangeQuery), responses((status = 200, body = Vec<ChangeDto>)))]
async fn list_changes(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChangeQuery>,
) -> ApiResult<Json<Vec<ChangeDto>>> {
    let c = conn(&s, &name).await?;
    let since = match q.since {
        Some(x) => Some(time_fmt::parse_since(&x, s.engine.now()).ok_or_else(|| {
            ApiError::invalid(format!(
                "since={x:?}: use RFC 3339, a date or an age such as 7d"
            ))
        })?),
        None => None,
    };
    Ok(Json(
        s.engine
            .store()
            .changes(&c.id, since, q.scan)
            .await?
            .into_iter()
            .map(|ch| ChangeDto {
                id: ch.id,
                scan: ch.scan_id,
                at: time_fmt::rfc3339(ch.at),
                kind: ch.kind,
                user_id: ch.tr_user_id,
                group_id: ch.tr_group_id,
                subject: ch.subject,
                before: ch.before,
                after: ch.after,
                audit_id: ch.audit_id,
                project_id: ch.tr_project_id,
                project: ch.project,
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectDto {
    id: u64,
    name: String,
    is_completed: bool,
    /// RFC 3339, when TestRail gave it.
    completed_on: Option<String>,
    /// `known`, `user_roles_unknown` (TestRail Professional does not report users' own project
    /// roles) or `unknown` (before 7.3).
    access: String,
    default_role: Option<String>,
    default_role_id: Option<u64>,
    group_roles: u64,
    user_roles: Option<u64>,
    /// Active accounts that can reach the project (null when unknown).
    active_with_access: Option<u64>,
}

impl From<access::ProjectView> for ProjectDto {
    fn from(p: access::ProjectView) -> Self {
        Self {
            id: p.id,
            name: p.name,
            is_completed: p.is_completed,
            completed_on: p.completed_on.map(time_fmt::rfc3339),
            access: p.access.as_str().into(),
            default_role: p.default_role,
            default_role_id: p.default_role_id,
            group_roles: p.group_roles,
            user_roles: p.user_roles,
            active_with_access: p.active_with_access,
        }
    }
}

/// Where a role comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessSourceDto {
    /// `administrator`, `user_role`, `group_role` or `project_default`.
    kind: String,
    label: String,
    group_id: Option<u64>,
    role_id: Option<u64>,
    role: Option<String>,
    /// The grant said "the user's global role" (TestRail's role 0).
    via_global_role: bool,
}

impl From<access::SourceView> for AccessSourceDto {
    fn from(s: access::SourceView) -> Self {
        Self {
            kind: s.kind.into(),
            label: s.label,
            group_id: s.group_id,
            role_id: s.role_id,
            role: s.role,
            via_global_role: s.via_global_role,
        }
    }
}

/// One account's effective access to one project.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRowDto {
    project_id: u64,
    project: String,
    project_completed: bool,
    account_id: u64,
    email: Option<String>,
    name: Option<String>,
    is_active: bool,
    /// Null when unknown.
    can_access: Option<bool>,
    role_id: Option<u64>,
    role: Option<String>,
    /// The source that decided (null when unknown).
    source: Option<AccessSourceDto>,
    /// Other sources that offered a role.
    also: Vec<AccessSourceDto>,
    /// `known`, `user_roles_unknown` or `unknown`.
    knowledge: String,
}

impl From<access::AccessRow> for AccessRowDto {
    fn from(r: access::AccessRow) -> Self {
        Self {
            project_id: r.project_id,
            project: r.project,
            project_completed: r.project_completed,
            account_id: r.account_id,
            email: r.email,
            name: r.name,
            is_active: r.is_active,
            can_access: r.can_access,
            role_id: r.role_id,
            role: r.role,
            source: r.source.map(Into::into),
            also: r.also.into_iter().map(Into::into).collect(),
            knowledge: r.knowledge.as_str().into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectAccessDto {
    project: ProjectDto,
    /// How effective access is worked out (Accessrail's reading; TestRail does not document it).
    rule: String,
    /// Accounts listed in all pages; this page starts at `offset`.
    total: u64,
    offset: u64,
    accounts: Vec<AccessRowDto>,
}

/// Accounts per page of a project's access, by default and at most.
const DEFAULT_ACCESS_PAGE: u64 = 100;
const MAX_ACCESS_PAGE: u64 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountProjectsDto {
    account_id: u64,
    email: Option<String>,
    rule: String,
    projects: Vec<AccessRowDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// A scan id: the state right after it committed (default: now).
    scan: Option<i64>,
    /// With a project: also accounts without access, and inactive ones.
    #[serde(default)]
    all: bool,
    /// With a project: accounts per page (default 100, at most 1000).
    limit: Option<u64>,
    /// With a project: accounts to skip.
    #[serde(default)]
    offset: u64,
}

/// Refuses a scan that is not a successful scan of this connection.
async fn check_scan(s: &AppState, c: &Connection, scan: Option<i64>) -> ApiResult<()> {
    if let Some(id) = scan {
        let found = s.engine.store().scan(id).await?;
        if found.is_none_or(|x| {
            x.connection_id != c.id || x.status != accessrail_store::ScanStatus::Succeeded
        }) {
            return Err(ApiError::not_found(format!(
                "scan {id} is not a successful scan of {}",
                c.name
            )));
        }
    }
    Ok(())
}

/// The projects with their default role, group and user project roles, and how many active
/// accounts can reach each; now or right after a scan.
#[utoipa::path(get, path = "/api/v1/connections/{name}/projects", params(("name" = String, Path), ProjectQuery), responses((status = 200, body = Vec<ProjectDto>)))]
async fn list_projects(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> ApiResult<Json<Vec<ProjectDto>>> {
    let c = conn(&s, &name).await?;
    check_scan(&s, &c, q.scan).await?;
    let (_, views) = s.access.get(&s.engine, &c, q.scan).await?;
    Ok(Json(views.iter().cloned().map(Into::into).collect()))
}

/// Who can reach a project (by id or name), with role and source: active accounts with access,
/// or (`all=true`) every account.
#[utoipa::path(get, path = "/api/v1/connections/{name}/projects/{project}/access", params(("name" = String, Path), ("project" = String, Path), ProjectQuery), responses((status = 200, body = ProjectAccessDto), (status = 404, body = ErrorBody)))]
async fn project_access(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath((name, project)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> ApiResult<Json<ProjectAccessDto>> {
    let c = conn(&s, &name).await?;
    check_scan(&s, &c, q.scan).await?;
    let (facts, views) = s.access.get(&s.engine, &c, q.scan).await?;
    let p = facts.project(&project)?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_ACCESS_PAGE)
        .clamp(1, MAX_ACCESS_PAGE);
    let page = facts.project_page(
        p,
        q.all,
        usize::try_from(q.offset).unwrap_or(usize::MAX),
        usize::try_from(limit).unwrap_or(usize::MAX),
    );
    let view = views
        .iter()
        .find(|v| v.id == p.id)
        .cloned()
        .unwrap_or_else(|| facts.project_view(p));
    Ok(Json(ProjectAccessDto {
        project: view.into(),
        rule: access::RULE_NOTE.into(),
        total: page.total,
        offset: q.offset,
        accounts: page.rows.into_iter().map(Into::into).collect(),
    }))
}

/// One account's effective access across every project, with sources.
#[utoipa::path(get, path = "/api/v1/connections/{name}/accounts/{id}/projects", params(("name" = String, Path), ("id" = u64, Path), ProjectQuery), responses((status = 200, body = AccountProjectsDto), (status = 404, body = ErrorBody)))]
async fn account_projects(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath((name, id)): ApiPath<(String, u64)>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> ApiResult<Json<AccountProjectsDto>> {
    let c = conn(&s, &name).await?;
    check_scan(&s, &c, q.scan).await?;
    let (facts, _) = s.access.get(&s.engine, &c, q.scan).await?;
    let a =
        facts.accounts.iter().find(|a| a.id == id).ok_or_else(|| {
            ApiError::not_found(format!("no TestRail account {id} in {}", c.name))
        })?;
    Ok(Json(AccountProjectsDto {
        account_id: a.id,
        email: a.email.clone(),
        rule: access::RULE_NOTE.into(),
        projects: facts.for_account(a).into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// A scan (or provisioning revision) id.
    scan: Option<i64>,
    /// A time (RFC 3339 or a date): the state after the last scan finished by then.
    at: Option<String>,
}

/// Who had access at a point in time: every account as of a scan, or as of a date.
#[utoipa::path(get, path = "/api/v1/connections/{name}/access", params(("name" = String, Path), AccessQuery), responses((status = 200, body = Vec<AccountDto>)))]
async fn access_at(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<AccessQuery>,
) -> ApiResult<Json<Vec<AccountDto>>> {
    let c = conn(&s, &name).await?;
    let scan_id = match (q.scan, q.at) {
        (Some(id), None) => id,
        (None, Some(at)) => {
            let t = time_fmt::parse_since(&at, s.engine.now())
                .ok_or_else(|| ApiError::invalid(format!("at={at:?}: use RFC 3339 or a date")))?;
            s.engine
                .store()
                .scans(&c.id)
                .await?
                .into_iter()
                .rev()
                .find(|x| {
                    x.status == accessrail_store::ScanStatus::Succeeded
                        && x.finished_at.is_some_and(|f| f <= t)
                })
                .map(|x| x.id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("no successful scan finished by {at}"))
                })?
        }
        _ => return Err(ApiError::invalid("give scan or at")),
    };
    let accounts = report::filtered_users(
        &s.engine,
        &c,
        &UserFilter {
            at_scan: Some(scan_id),
            sort: AccountSort::Id,
            ..UserFilter::default()
        },
    )
    .await?;
    Ok(Json(accounts.into_iter().map(AccountDto::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/identities", responses((status = 200, body = Vec<IdentityDto>)))]
async fn list_identities(
    _c: Caller,
    State(s): State<Arc<AppState>>,
) -> ApiResult<Json<Vec<IdentityDto>>> {
    Ok(Json(
        s.engine
            .store()
            .identities()
            .await?
            .into_iter()
            .map(|i| IdentityDto {
                status: if i.gone {
                    "gone".into()
                } else {
                    i.status.as_str().into()
                },
                id: i.id,
                name: i.name,
                emails: i.emails,
                attributes: i.attributes,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Only upsert; do not mark missing identities as gone.
    #[serde(default)]
    partial: bool,
    /// Do not run the connections' flows after the import.
    #[serde(default)]
    no_flows: bool,
}

/// Bulk import: a JSON array of identities (`id`, `name`, `email`, `other_emails`, `status`, any
/// further attribute). Any malformed entry rejects the whole import.
#[utoipa::path(post, path = "/api/v1/identities", params(ImportQuery), request_body(content = Vec<Object>), responses((status = 200, body = ImportResult), (status = 400, body = ErrorBody)))]
async fn import_identities(
    c: Caller,
    State(s): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    ApiBody(body): ApiBody,
) -> ApiResult<Json<ImportResult>> {
    let parsed = identities::parse(&body, identities::Format::Json)
        .map_err(|errs| ApiError::invalid(identities::error_lines(&errs).join("; ")))?;
    let r = s
        .engine
        .store()
        .import_identities(parsed, !q.partial, s.engine.now())
        .await?;
    // Each connection with flows runs them next, as a job (on whichever replica takes it).
    let mut flows_queued = Vec::new();
    if !q.no_flows {
        for conn in s.engine.store().connections().await? {
            if s.engine.store().flows(&conn.id).await?.is_none() {
                continue;
            }
            s.enqueue(Job::Flows {
                connection: conn.id.clone(),
                actor: c.actor(),
            })
            .await?;
            flows_queued.push(conn.name);
        }
    }
    Ok(Json(ImportResult {
        added: r.added,
        updated: r.updated,
        unchanged: r.unchanged,
        marked_gone: r.marked_gone,
        flows_queued,
    }))
}

#[utoipa::path(get, path = "/api/v1/audit", responses((status = 200, body = Vec<AuditDto>)))]
async fn list_audit(_c: Caller, State(s): State<Arc<AppState>>) -> ApiResult<Json<Vec<AuditDto>>> {
    Ok(Json(
        s.engine
            .store()
            .audit_log()
            .await?
            .into_iter()
            .map(|e| AuditDto {
                id: e.id,
                at: time_fmt::rfc3339(e.record.at),
                actor: e.record.actor,
                connection: e.record.connection,
                action: e.record.action,
                target: e.record.target,
                before: e.record.before,
                after: e.record.after,
                calls: e.record.calls,
                outcome: e.record.outcome.as_str().into(),
                message: e.record.message,
                hash: e.hash,
            })
            .collect(),
    ))
}

pub fn plan_dto(id: &str, stored: &StoredPlan) -> PlanDto {
    PlanDto {
        id: id.to_string(),
        fingerprint: stored.fingerprint.clone(),
        connection: stored.connection.clone(),
        steps: stored
            .plan
            .steps
            .iter()
            .map(|st| StepDto {
                action: st.action.into(),
                target: st.target.clone(),
                noop: st.is_noop(),
                calls: st.calls.clone(),
                before: st.before.clone(),
                after: st.after.clone(),
                note: st.note.clone(),
                caution: st.caution.map(|c| c.as_str().to_string()),
            })
            .collect(),
        skipped: stored
            .plan
            .skipped
            .iter()
            .map(|x| format!("{} {}: {}", x.action, x.target, x.reason))
            .collect(),
    }
}

/// Plans actions and keeps the plan for `apply`. Nothing is sent to TestRail but reads.
#[utoipa::path(post, path = "/api/v1/connections/{name}/plans", params(("name" = String, Path)), request_body = PlanRequest, responses((status = 201, body = PlanDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_plan(
    c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PlanRequest>,
) -> ApiResult<(StatusCode, Json<PlanDto>)> {
    let conn = conn(&s, &name).await?;
    let requests: Vec<Request> = body
        .actions
        .into_iter()
        .map(|a| Request {
            action: a,
            origin: Origin::Direct { actor: c.actor() },
        })
        .collect();
    let rails = Rails::new(body.max_deactivations, body.force);
    let (id, stored) = make_plan(&s, &conn, requests, &rails, c.actor()).await?;
    Ok((StatusCode::CREATED, Json(plan_dto(&id, &stored))))
}

pub async fn make_plan(
    s: &AppState,
    conn: &Connection,
    requests: Vec<Request>,
    rails: &Rails,
    actor: String,
) -> ApiResult<(String, StoredPlan)> {
    let plan = provision::plan(&s.engine, conn, requests.clone(), rails).await?;
    let now = s.engine.now();
    let stored = StoredPlan {
        connection: conn.name.clone(),
        requests,
        fingerprint: jobs::fingerprint(&plan),
        plan,
        actor,
        max_deactivations: rails.max_deactivations,
        force: rails.force,
    };
    let actions: Vec<&provision::Action> = stored.requests.iter().map(|r| &r.action).collect();
    let id = random_id();
    let record = PlanRecord {
        id: id.clone(),
        connection: stored.connection.clone(),
        actions: serde_json::to_string(&actions).map_err(|e| ApiError::internal("plan", e))?,
        fingerprint: stored.fingerprint.clone(),
        actor: stored.actor.clone(),
        max_deactivations: stored.max_deactivations,
        force: stored.force,
        created_at: now,
        status: PlanStatus::Ready,
        started_at: None,
        outcome: None,
    };
    // Kept in the store, for any replica to apply. Plans (and the record that one was
    // applied) are forgotten an hour after they expire.
    s.engine
        .store()
        .insert_plan(record, now - 2 * PLAN_LIFETIME)
        .await?;
    Ok((id, stored))
}

/// Takes a plan for applying: only one request on any replica can hold it, and an applied
/// plan stays applied.
async fn claim(s: &AppState, id: &str) -> ApiResult<PlanRecord> {
    match s
        .engine
        .store()
        .claim_plan(id, s.engine.now() - PLAN_LIFETIME)
        .await?
    {
        PlanClaim::Claimed(p) => Ok(p),
        PlanClaim::NotFound => Err(ApiError::not_found(format!(
            "no plan {id} (plans are kept for two hours, until applied)"
        ))),
        PlanClaim::AlreadyApplied => Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_already_applied",
            "this plan was already applied; make a new plan to change anything more",
        )),
        PlanClaim::BeingApplied => Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_being_applied",
            "this plan is being applied by another request; see the audit log for its outcome",
        )),
        PlanClaim::Interrupted => Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_interrupted",
            "this plan's apply was cut short and is never run again; scan, then make a new plan",
        )),
        PlanClaim::Stale => Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_plan",
            "this plan is more than an hour old; make a new plan and review it",
        )),
    }
}

/// How long an apply request waits for its job before answering that it is still running.
const APPLY_WAIT: Duration = Duration::from_secs(120);

/// A plan applied: what each step did.
#[derive(Debug, Clone)]
pub struct AppliedPlan {
    pub done: usize,
    pub noop: usize,
    pub failed: usize,
    pub not_run: usize,
    pub results: Vec<jobs::StepOutcome>,
}

/// Applies a kept plan by id, at most once, and only if TestRail is still in the state the plan
/// was built from. The request claims the plan and queues its apply as a job (which any
/// replica's worker may run), then waits for its outcome. A second apply gets 409:
/// `plan_being_applied` while the first runs, `plan_already_applied` after it. A client that
/// goes away does not cut the apply short.
pub async fn apply_stored(
    s: &Arc<AppState>,
    id: &str,
    actor: String,
    acknowledged: bool,
) -> ApiResult<AppliedPlan> {
    // Claim and queue in a task of their own: a request cancelled in between (the client went
    // away) must not leave the plan claimed with no apply queued.
    let (st, plan) = (s.clone(), id.to_string());
    tokio::spawn(async move {
        claim(&st, &plan).await?;
        let queued = st
            .enqueue(Job::ApplyPlan {
                plan: plan.clone(),
                actor,
                acknowledged,
            })
            .await;
        if let Err(e) = queued {
            // Nothing was sent: hand the plan back.
            st.engine
                .store()
                .release_plan(&plan, PlanStatus::Ready)
                .await?;
            return Err(ApiError::internal("queueing the apply", e));
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal("queueing the apply", e))??;
    let deadline = tokio::time::Instant::now() + APPLY_WAIT;
    let kept = loop {
        let kept = s
            .engine
            .store()
            .plan(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no plan {id}")))?;
        if kept.status != PlanStatus::Applying {
            break kept;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "plan_being_applied",
                format!("the apply is still running; follow it with GET /api/v1/plans/{id}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcome: Option<jobs::PlanOutcome> = kept
        .outcome
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    match outcome {
        Some(jobs::PlanOutcome::Applied {
            done,
            noop,
            failed,
            not_run,
            results,
        }) => Ok(AppliedPlan {
            done,
            noop,
            failed,
            not_run,
            results,
        }),
        Some(jobs::PlanOutcome::Refused { code, message }) => {
            let (status, code) = refused(&code);
            Err(ApiError::new(status, code, message))
        }
        Some(jobs::PlanOutcome::Interrupted { message }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_interrupted",
            message,
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "plan_already_applied",
            format!("plan {id} is {}", kept.status.as_str()),
        )),
    }
}

/// The HTTP status and error code of an apply the job refused (nothing was sent to TestRail).
fn refused(code: &str) -> (StatusCode, &'static str) {
    match code {
        "stale_plan" => (StatusCode::CONFLICT, "stale_plan"),
        "needs_acknowledgement" => (StatusCode::CONFLICT, "needs_acknowledgement"),
        "read_only" => (StatusCode::CONFLICT, "read_only"),
        "conflict" => (StatusCode::CONFLICT, "conflict"),
        "busy" => (StatusCode::CONFLICT, "busy"),
        "not_found" => (StatusCode::NOT_FOUND, "not_found"),
        "invalid_input" => (StatusCode::BAD_REQUEST, "invalid_input"),
        "upstream" => (StatusCode::BAD_GATEWAY, "upstream"),
        "test_failed" => (StatusCode::UNPROCESSABLE_ENTITY, "test_failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ApplyQuery {
    /// Confirms the plan's cautions (deactivating a TestRail administrator or Accessrail's own
    /// account); such a plan is refused without it.
    #[serde(default)]
    acknowledge: bool,
}

/// A kept plan and, once its apply ended, how.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanStatusDto {
    id: String,
    connection: String,
    /// `ready`, `applying`, `applied` or `interrupted`.
    status: String,
    created_at: String,
    /// When its apply began sending to TestRail.
    started_at: Option<String>,
    /// How its apply ended: `{"result": "applied", ...}`, `{"result": "refused", "code", "message"}`
    /// or `{"result": "interrupted", "message"}`.
    #[schema(value_type = Option<Object>)]
    outcome: Option<serde_json::Value>,
}

/// A kept plan's state: follow an apply that is still running.
#[utoipa::path(get, path = "/api/v1/plans/{id}", params(("id" = String, Path)), responses((status = 200, body = PlanStatusDto), (status = 404, body = ErrorBody)))]
async fn get_plan(
    _c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<PlanStatusDto>> {
    let p = s.engine.store().plan(&id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no plan {id} (plans are kept for two hours)"))
    })?;
    Ok(Json(PlanStatusDto {
        id: p.id,
        connection: p.connection,
        status: p.status.as_str().into(),
        created_at: time_fmt::rfc3339(p.created_at),
        started_at: p.started_at.map(time_fmt::rfc3339),
        outcome: p
            .outcome
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
    }))
}

/// Applies a kept plan, at most once.
///
/// 409 codes: `read_only`, `stale_plan` (TestRail changed, or the plan is over an hour old),
/// `plan_being_applied` (another request is applying it, or this one is still running after
/// two minutes: follow it with `GET /api/v1/plans/{id}`), `plan_already_applied`,
/// `plan_interrupted` (an apply was cut short; it is never run again), `needs_acknowledgement`
/// (the plan deactivates an administrator or Accessrail's own account: read its `caution`s and
/// apply with `?acknowledge=true`).
#[utoipa::path(post, path = "/api/v1/plans/{id}/apply", params(("id" = String, Path), ApplyQuery), responses((status = 200, body = ApplyDto), (status = 409, body = ErrorBody)))]
async fn apply_plan(
    c: Caller,
    State(s): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
) -> ApiResult<Json<ApplyDto>> {
    let r = apply_stored(&s, &id, c.actor(), q.acknowledge).await?;
    Ok(Json(ApplyDto {
        done: r.done,
        noop: r.noop,
        failed: r.failed,
        not_run: r.not_run,
        results: r
            .results
            .into_iter()
            .map(|x| StepResultDto {
                step: x.step,
                action: x.action,
                target: x.target,
                outcome: x.outcome,
                message: x.message,
                calls_made: x.calls_made,
                audit_id: x.audit_id,
            })
            .collect(),
    }))
}

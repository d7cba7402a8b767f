//! The SCIM 2.0 service provider under `/scim/v2/{connection}/` (RFC 7643 / 7644): discovery
//! (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`), `Users` and `Groups`. Only SCIM
//! tokens (`accessrail tokens create NAME --scim --connection C`) are accepted here, and each
//! only under its own connection; no other route accepts them. The work is in
//! `accessrail_engine::scim`; this module is HTTP: auth, parameters, `application/scim+json`
//! and RFC 7644 error bodies.

use std::sync::Arc;

use accessrail_domain::scim::{CORE_GROUP, CORE_USER, TESTRAIL_USER};
use accessrail_engine::scim::{self, ListQuery, ScimCaller, ScimError};
use accessrail_engine::tokens;
use accessrail_store::Store;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::AppState;

const CONTENT_TYPE: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The public URL the service is reached at, if configured (for `meta.location`).
#[derive(Clone)]
pub struct PublicUrl(pub Option<String>);

pub fn routes(public_url: Option<String>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route(
            "/scim/v2/{connection}/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/{connection}/ResourceTypes", get(resource_types))
        .route(
            "/scim/v2/{connection}/ResourceTypes/{name}",
            get(resource_type),
        )
        .route("/scim/v2/{connection}/Schemas", get(schemas))
        .route("/scim/v2/{connection}/Schemas/{id}", get(schema))
        .route(
            "/scim/v2/{connection}/Users",
            get(list_users).post(create_user),
        )
        .route("/scim/v2/{connection}/.search", post(search_all))
        .route("/scim/v2/{connection}/Users/.search", post(search_users))
        .route("/scim/v2/{connection}/Groups/.search", post(search_groups))
        .route(
            "/scim/v2/{connection}/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/scim/v2/{connection}/Groups",
            get(list_groups).post(create_group),
        )
        .route(
            "/scim/v2/{connection}/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .layer(axum::Extension(PublicUrl(public_url)))
}

/// Is this a SCIM path (its unknown paths and methods answer in SCIM's error body)?
pub fn is_scim(path: &str) -> bool {
    path.starts_with("/scim/")
}

pub async fn not_found() -> Response {
    error(ScimError::new(404, None, "no such SCIM endpoint"))
}

pub fn method_not_allowed() -> Response {
    error(ScimError::new(
        405,
        None,
        "this method is not supported here",
    ))
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// An RFC 7644 §3.12 error body.
pub fn error(e: ScimError) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": e.status.to_string(),
        "detail": e.detail,
    });
    if let Some(t) = e.scim_type {
        body["scimType"] = json!(t);
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = scim_json(status, &body);
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"accessrail-scim\""),
        );
    }
    r
}

/// The caller: a live SCIM token whose connection is the one in the path. Anything else (no
/// token, an administrator's or a reviewer's token, a token of another connection, an unknown
/// connection) is the same 401, so nothing can be probed.
async fn caller(
    s: &AppState,
    headers: &HeaderMap,
    public: &PublicUrl,
    connection: &str,
) -> Result<ScimCaller, Response> {
    let unauthorized = || {
        error(ScimError::new(
            401,
            None,
            "a SCIM token for this connection is required (Authorization: Bearer ...)",
        ))
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(unauthorized());
    };
    let store = s.engine.store();
    let found = match store.scim_token_by_hash(&tokens::hash(token)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("SCIM token lookup: {e}");
            return Err(error(ScimError::new(
                500,
                None,
                "the database did not answer",
            )));
        }
    };
    let Some((name, conn_id)) = found else {
        return Err(unauthorized());
    };
    let conn = match store.connection(connection).await {
        Ok(Some(c)) if c.id == conn_id => c,
        Ok(_) => return Err(unauthorized()),
        Err(e) => {
            tracing::error!("SCIM connection lookup: {e}");
            return Err(error(ScimError::new(
                500,
                None,
                "the database did not answer",
            )));
        }
    };
    let origin = public.0.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    Ok(ScimCaller {
        token: name,
        base: format!("{}/scim/v2/{}", origin.trim_end_matches('/'), conn.name),
        conn,
    })
}

/// A request body as JSON (`application/scim+json` or `application/json`).
fn body_json(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| ScimError::new(400, Some("invalidSyntax"), "the body is not a JSON object"))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

fn split(list: Option<&str>) -> Vec<String> {
    list.map(|l| {
        l.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn list_query(p: &ListParams) -> Result<ListQuery, ScimError> {
    let int = |name: &str, v: &Option<String>| -> Result<Option<i64>, ScimError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(x) => x.parse::<i64>().map(Some).map_err(|_| {
                ScimError::new(
                    400,
                    Some("invalidValue"),
                    format!("{name} must be an integer"),
                )
            }),
        }
    };
    Ok(ListQuery {
        filter: p.filter.clone(),
        start_index: int("startIndex", &p.start_index)?,
        count: int("count", &p.count)?,
        attributes: split(p.attributes.as_deref()),
        excluded: split(p.excluded_attributes.as_deref()),
    })
}

fn respond(r: Result<Value, ScimError>, status: StatusCode) -> Response {
    match r {
        Ok(v) => {
            let location = v
                .pointer("/meta/location")
                .and_then(Value::as_str)
                .and_then(|l| HeaderValue::from_str(l).ok());
            let mut resp = scim_json(status, &v);
            if let Some(l) = location
                && status == StatusCode::CREATED
            {
                resp.headers_mut().insert(header::LOCATION, l);
            }
            resp
        }
        Err(e) => error(e),
    }
}

macro_rules! auth {
    ($s:expr, $h:expr, $p:expr, $c:expr) => {
        match caller(&$s, &$h, &$p, &$c).await {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

// ---- discovery --------------------------------------------------------------------------------

async fn service_provider_config(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/accessrail/accessrail/blob/main/README.md#scim-20",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": scim::MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A SCIM token for this connection: accessrail tokens create NAME --scim --connection CONNECTION",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", c.base) },
        }),
    )
}

fn resource_type_user(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A TestRail account (TestRail cannot delete accounts: DELETE deactivates it)",
        "schema": CORE_USER,
        "schemaExtensions": [{ "schema": TESTRAIL_USER, "required": true }],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
    })
}

fn resource_type_group(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A TestRail group (TestRail 7.5+)",
        "schema": CORE_GROUP,
        "schemaExtensions": [],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
    })
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

async fn resource_types(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    scim_json(
        StatusCode::OK,
        &list_of(vec![
            resource_type_user(&c.base),
            resource_type_group(&c.base),
        ]),
    )
}

async fn resource_type(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, name)): Path<(String, String)>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    match name.as_str() {
        "User" => scim_json(StatusCode::OK, &resource_type_user(&c.base)),
        "Group" => scim_json(StatusCode::OK, &resource_type_group(&c.base)),
        _ => error(ScimError::new(
            404,
            None,
            format!("no resource type {name}"),
        )),
    }
}

fn attr(name: &str, kind: &str, multi: bool, required: bool, extra: Value) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none",
    });
    if let (Some(o), Some(e)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    a
}

fn all_schemas(base: &str, roles: &[String]) -> Vec<Value> {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": CORE_USER, "name": "User", "description": "A TestRail account",
        "attributes": [
            attr("userName", "string", false, true, json!({"uniqueness": "server", "description": "The TestRail email (unique, any case)"})),
            attr("name", "complex", false, true, json!({"description": "Every TestRail account has a name", "subAttributes": [
                attr("givenName", "string", false, true, json!({})),
                attr("familyName", "string", false, true, json!({})),
            ]})),
            attr("displayName", "string", false, false, json!({"mutability": "readOnly", "description": "The TestRail name; written through name (or name.formatted, or displayName when name is absent)"})),
            attr("emails", "complex", true, true, json!({"description": "The TestRail email (one): userName when it is an email, else the primary email", "subAttributes": [
                attr("value", "string", false, true, json!({})),
                attr("type", "string", false, false, json!({"canonicalValues": ["work"]})),
                attr("primary", "boolean", false, false, json!({})),
            ]})),
            attr("active", "boolean", false, true, json!({"description": "Every TestRail account is active or deactivated (true when not given)"})),
            attr("groups", "complex", true, false, json!({"mutability": "readOnly", "subAttributes": [
                attr("value", "string", false, false, json!({"mutability": "readOnly"})),
                attr("display", "string", false, false, json!({"mutability": "readOnly"})),
                attr("$ref", "reference", false, false, json!({"mutability": "readOnly", "referenceTypes": ["Group"]})),
                attr("type", "string", false, false, json!({"mutability": "readOnly"})),
            ]})),
            attr("password", "string", false, false, json!({"mutability": "writeOnly", "returned": "never", "description": "Accepted and ignored: TestRail accounts sign in through TestRail"})),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{CORE_USER}") },
    });
    let ext = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": TESTRAIL_USER, "name": "TestRailUser", "description": "What TestRail adds to a user",
        "attributes": [
            attr("role", "string", false, true, json!({"description": "The global role's name (every TestRail account has one; the default role when not given)", "canonicalValues": roles})),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{TESTRAIL_USER}") },
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": CORE_GROUP, "name": "Group", "description": "A TestRail group",
        "attributes": [
            attr("displayName", "string", false, true, json!({"uniqueness": "server"})),
            attr("members", "complex", true, false, json!({"subAttributes": [
                attr("value", "string", false, false, json!({"mutability": "immutable"})),
                attr("$ref", "reference", false, false, json!({"mutability": "immutable", "referenceTypes": ["User"]})),
                attr("type", "string", false, false, json!({"mutability": "immutable", "canonicalValues": ["User"]})),
            ]})),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{CORE_GROUP}") },
    });
    vec![user, ext, group]
}

/// The connection's global role names, as the last scan read them.
async fn role_names(s: &AppState, c: &ScimCaller) -> Vec<String> {
    s.engine
        .store()
        .current_roles(&c.conn.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.name)
        .collect()
}

async fn schemas(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    scim_json(
        StatusCode::OK,
        &list_of(all_schemas(&c.base, &role_names(&s, &c).await)),
    )
}

async fn schema(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    match all_schemas(&c.base, &role_names(&s, &c).await)
        .into_iter()
        .find(|x| x["id"] == id)
    {
        Some(x) => scim_json(StatusCode::OK, &x),
        None => error(ScimError::new(404, None, format!("no schema {id}"))),
    }
}

/// A SearchRequest body (RFC 7644 §3.4.3): the list parameters, POSTed.
fn search_query(body: &Value) -> Result<ListQuery, ScimError> {
    let text = |k: &str| {
        body.as_object()
            .and_then(|o| o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
            .map(|(_, v)| v)
    };
    let list = |k: &str| -> Vec<String> {
        match text(k) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => split(Some(s)),
            _ => vec![],
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ScimError> {
        match text(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ScimError::new(400, Some("invalidValue"), format!("{k} must be an integer"))
            }),
        }
    };
    Ok(ListQuery {
        filter: text("filter").and_then(Value::as_str).map(str::to_string),
        start_index: int("startIndex")?,
        count: int("count")?,
        attributes: list("attributes"),
        excluded: list("excludedAttributes"),
    })
}

async fn search_users(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let q = match body_json(&body).and_then(|b| search_query(&b)) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    respond(scim::list_users(&s.engine, &c, &q).await, StatusCode::OK)
}

/// `POST /.search`: not supported (501).
async fn search_all(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    body: Bytes,
) -> Response {
    let _c = auth!(s, headers, p, connection);
    let _ = body;
    // Users and groups are both numbered by TestRail (a user and a group can share an id), so
    // one list of both could not be told apart: search /Users/.search or /Groups/.search.
    error(ScimError::new(
        501,
        None,
        "searching users and groups at once is not supported: use /Users/.search or /Groups/.search",
    ))
}

async fn search_groups(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let q = match body_json(&body).and_then(|b| search_query(&b)) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    respond(scim::list_groups(&s.engine, &c, &q).await, StatusCode::OK)
}

// ---- users ------------------------------------------------------------------------------------

async fn list_users(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    Query(q): Query<ListParams>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let q = match list_query(&q) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    respond(scim::list_users(&s.engine, &c, &q).await, StatusCode::OK)
}

async fn get_user(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    Query(q): Query<ListParams>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let (a, x) = (
        split(q.attributes.as_deref()),
        split(q.excluded_attributes.as_deref()),
    );
    respond(
        scim::get_user(&s.engine, &c, &id, &a, &x).await,
        StatusCode::OK,
    )
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::create_user(&s.engine, &c, &body).await,
        StatusCode::CREATED,
    )
}

async fn replace_user(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::replace_user(&s.engine, &c, &id, &body).await,
        StatusCode::OK,
    )
}

async fn patch_user(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::patch_user(&s.engine, &c, &id, &body).await,
        StatusCode::OK,
    )
}

async fn delete_user(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    match scim::delete_user(&s.engine, &c, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

// ---- groups -----------------------------------------------------------------------------------

async fn list_groups(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    Query(q): Query<ListParams>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let q = match list_query(&q) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    respond(scim::list_groups(&s.engine, &c, &q).await, StatusCode::OK)
}

async fn get_group(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    Query(q): Query<ListParams>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let (a, x) = (
        split(q.attributes.as_deref()),
        split(q.excluded_attributes.as_deref()),
    );
    respond(
        scim::get_group(&s.engine, &c, &id, &a, &x).await,
        StatusCode::OK,
    )
}

async fn create_group(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path(connection): Path<String>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::create_group(&s.engine, &c, &body).await,
        StatusCode::CREATED,
    )
}

async fn replace_group(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::replace_group(&s.engine, &c, &id, &body).await,
        StatusCode::OK,
    )
}

async fn patch_group(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let c = auth!(s, headers, p, connection);
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    respond(
        scim::patch_group(&s.engine, &c, &id, &body).await,
        StatusCode::OK,
    )
}

async fn delete_group(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<PublicUrl>,
    Path((connection, id)): Path<(String, String)>,
) -> Response {
    let c = auth!(s, headers, p, connection);
    match scim::delete_group(&s.engine, &c, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

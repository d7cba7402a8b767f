//! SCIM 2.0 (RFC 7643 / 7644) in front of TestRail: identity providers (Okta, Entra, any SCIM
//! client) read and write TestRail users and groups through Accessrail.
//!
//! - Reads come from the store: the last scan, with every change Accessrail made since
//!   recorded at once (so a client reads back what it just wrote). Changes made in TestRail
//!   directly appear after the next scan.
//! - Every write is a provisioning plan (`provision::plan` / `apply`): read back, audited with
//!   the actor `scim:<token>`, protected accounts refused, provisioning-off connections refused,
//!   group memberships through the race-free group write.
//! - Deactivations (PATCH `active=false`, PUT, DELETE) pass the burst cap first: at most
//!   [`DEFAULT_CAP`] per hour per connection; beyond it each is held for an administrator's
//!   approval and the client gets a 503 it retries. Accounts the same token created within the
//!   hour do not count. Deactivating a TestRail administrator always waits for an approval; the
//!   connection's own account is never deactivated through SCIM.
//! - TestRail cannot delete users: DELETE deactivates the account and hides its id (404 from
//!   then on); a later POST with the same userName adopts the account again.
//! - What TestRail has no field for (externalId, who created a resource) is kept in
//!   `scim_resources`. SCIM-managed people become identities (`scim:<token>:<id>`), so matching,
//!   leavers, reviews and activity work for them as for imported ones.

use std::collections::{BTreeMap, BTreeSet};

use accessrail_domain::scim::{self as dscim, CORE_GROUP, CORE_USER, Filter, TESTRAIL_USER};
use accessrail_domain::{Account, EmailKey, Identity, IdentityStatus};
use accessrail_store::{Connection, ScimClaim, ScimResource, Store};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::provision::{self, Action, Origin, Rails, Request};
use crate::time_fmt;

/// Deactivations SCIM may make per connection in [`CAP_WINDOW_SECS`] before holding them.
pub const DEFAULT_CAP: u32 = 10;
/// The cap's window; also how long accounts a token created are exempt from it.
pub const CAP_WINDOW_SECS: i64 = 3600;
/// What the client is told to wait before retrying a held deactivation.
pub const RETRY_AFTER_SECS: u64 = 300;
/// Largest page of a list.
pub const MAX_COUNT: usize = 1000;

/// Who is calling: a SCIM token, valid for this connection only.
#[derive(Debug, Clone)]
pub struct ScimCaller {
    pub token: String,
    pub conn: Connection,
    /// `https://host/scim/v2/<connection>`: what `meta.location` and `$ref` start with.
    pub base: String,
}

impl ScimCaller {
    fn actor(&self) -> String {
        format!("scim:{}", self.token)
    }
}

/// An RFC 7644 §3.12 error.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// For a held deactivation: when to try again.
    pub retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }
    fn not_found(what: &str, id: &str) -> Self {
        Self::new(404, None, format!("{what} {id} not found"))
    }
    fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }
}

impl From<EngineError> for ScimError {
    fn from(e: EngineError) -> Self {
        use crate::ErrorCode as C;
        match e.code() {
            C::InvalidInput => Self::invalid_value(e.to_string()),
            C::NotFound => Self::new(404, None, e.to_string()),
            C::Conflict => {
                let text = e.to_string();
                if text.contains("protected account") {
                    // Who protected it and why stays in Accessrail.
                    Self::new(
                        403,
                        None,
                        "this account is protected in Accessrail: SCIM does not change it",
                    )
                } else if text.contains("exists already")
                    || text.contains("another TestRail account has the email")
                    || text.contains("another TestRail group is named")
                {
                    Self::new(409, Some("uniqueness"), text)
                } else {
                    Self::new(409, None, text)
                }
            }
            C::ReadOnly => Self::new(
                403,
                None,
                "provisioning is off for this connection: SCIM can read but not write (an administrator turns it on with `accessrail provisioning enable`)",
            ),
            C::Busy => {
                let mut err = Self::new(503, None, e.to_string());
                err.retry_after = Some(5);
                err
            }
            C::Forbidden => Self::new(403, None, e.to_string()),
            C::Upstream => Self::new(502, None, format!("TestRail: {e}")),
            C::TestFailed => Self::new(502, None, e.to_string()),
            C::Store | C::Secret => {
                tracing::error!(error = %e, "SCIM request failed");
                Self::new(500, None, "an internal error; see the service log")
            }
        }
    }
}

pub type ScimResult<T> = Result<T, ScimError>;

// ---- resources --------------------------------------------------------------------------------

fn meta(caller: &ScimCaller, kind: &str, id: u64, rec: Option<&ScimResource>) -> Value {
    let path = if kind == "User" { "Users" } else { "Groups" };
    let mut m = json!({
        "resourceType": kind,
        "location": format!("{}/{path}/{id}", caller.base),
    });
    if let Some(r) = rec {
        m["created"] = json!(time_fmt::rfc3339(r.created_at));
        m["lastModified"] = json!(time_fmt::rfc3339(r.updated_at));
    }
    m
}

/// A TestRail account as a SCIM User.
pub fn user_resource(
    caller: &ScimCaller,
    a: &Account,
    rec: Option<&ScimResource>,
    group_names: &BTreeMap<u64, String>,
) -> Value {
    let email = a.email.clone().unwrap_or_default();
    let name = a.name.clone().unwrap_or_default();
    let (given, family) = match name.trim().split_once(char::is_whitespace) {
        Some((g, f)) => (g.to_string(), f.trim().to_string()),
        None => (name.trim().to_string(), String::new()),
    };
    // TestRail has one name: given and family name are its first word and the rest (the whole
    // name is displayName).
    let mut n = json!({});
    if !given.is_empty() {
        n["givenName"] = json!(given);
    }
    if !family.is_empty() {
        n["familyName"] = json!(family);
    }
    let groups: Vec<Value> = a
        .group_ids
        .iter()
        .map(|g| {
            json!({
                "value": g.to_string(),
                "display": group_names.get(g).cloned().unwrap_or_default(),
                "$ref": format!("{}/Groups/{g}", caller.base),
                "type": "direct",
            })
        })
        .collect();
    let user_name = rec
        .and_then(|r| r.user_name.clone())
        .unwrap_or_else(|| email.clone());
    let mut u = json!({
        "schemas": [CORE_USER, TESTRAIL_USER],
        "id": a.id.to_string(),
        "userName": user_name,
        "name": n,
        "displayName": name,
        "emails": [email_entry(&email, rec)],
        "active": a.is_active,
        "groups": groups,
        TESTRAIL_USER: { "role": a.role },
        "meta": meta(caller, "User", a.id, rec),
    });
    if let Some(x) = rec.and_then(|r| r.external_id.clone()) {
        u["externalId"] = json!(x);
    }
    u
}

/// The account's one email, with the sub-attributes the client wrote for it (a work email,
/// primary, when it wrote none).
fn email_entry(email: &str, rec: Option<&ScimResource>) -> Value {
    let mut entry = rec
        .and_then(|r| r.email_meta.as_deref())
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({ "type": "work", "primary": true }));
    entry["value"] = json!(email);
    entry
}

/// A TestRail group as a SCIM Group.
fn group_resource(
    caller: &ScimCaller,
    id: u64,
    name: &str,
    members: &[u64],
    rec: Option<&ScimResource>,
) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "value": m.to_string(),
                "$ref": format!("{}/Users/{m}", caller.base),
                "type": "User",
            })
        })
        .collect();
    let mut g = json!({
        "schemas": [CORE_GROUP],
        "id": id.to_string(),
        "displayName": name,
        "members": members,
        "meta": meta(caller, "Group", id, rec),
    });
    if let Some(x) = rec.and_then(|r| r.external_id.clone()) {
        g["externalId"] = json!(x);
    }
    g
}

/// A key of a JSON object, any case.
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn str_ci(v: &Value, key: &str) -> Option<String> {
    get_ci(v, key)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `active` as a bool: JSON booleans, and Entra's "True" / "False" strings.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// What a client wants a user to be.
#[derive(Debug, Clone, PartialEq)]
struct WantedUser {
    /// The client's userName: the email, or (when it is not one) kept by Accessrail.
    user_name: String,
    /// The email entry's other sub-attributes as the client wrote them.
    email_meta: Option<Value>,
    email: String,
    name: String,
    active: bool,
    external_id: Option<String>,
    role: Option<String>,
}

fn wanted_user(body: &Value) -> ScimResult<WantedUser> {
    let user_name = str_ci(body, "userName")
        .ok_or_else(|| ScimError::invalid_value("userName is required (the TestRail email)"))?;
    // TestRail names accounts by email: userName, or else the primary (or first) email.
    let emails: Vec<&Value> = get_ci(body, "emails")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let chosen = emails
        .iter()
        .find(|e| get_ci(e, "primary").and_then(as_bool) == Some(true))
        .or(emails.first())
        .copied();
    let email_meta = chosen.and_then(Value::as_object).map(|o| {
        Value::Object(
            o.iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("value"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    });
    let email = if EmailKey::parse(&user_name).is_some() {
        user_name.clone()
    } else {
        chosen
            .and_then(|e| str_ci(e, "value"))
            .filter(|e| EmailKey::parse(e).is_some())
            .ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "userName {user_name:?} is not an email address and no email is given: TestRail accounts are named by email"
                ))
            })?
    };
    let n = get_ci(body, "name");
    let formatted = n.and_then(|n| str_ci(n, "formatted"));
    let parts: Vec<String> = ["givenName", "familyName"]
        .iter()
        .filter_map(|k| n.and_then(|n| str_ci(n, k)))
        .collect();
    let name = if !parts.is_empty() {
        parts.join(" ")
    } else if let Some(f) = formatted {
        f
    } else if let Some(d) = str_ci(body, "displayName") {
        d
    } else {
        email.split('@').next().unwrap_or(&email).to_string()
    };
    let active = match get_ci(body, "active") {
        None | Some(Value::Null) => true,
        Some(v) => {
            as_bool(v).ok_or_else(|| ScimError::invalid_value("active must be a boolean"))?
        }
    };
    let role = get_ci(body, TESTRAIL_USER).and_then(|x| str_ci(x, "role"));
    Ok(WantedUser {
        user_name,
        email_meta,
        email,
        name,
        active,
        external_id: str_ci(body, "externalId"),
        role,
    })
}

// ---- reading ----------------------------------------------------------------------------------

/// What SCIM reads of the store, once per request.
struct View {
    accounts: Vec<Account>,
    records: BTreeMap<u64, ScimResource>,
    group_names: BTreeMap<u64, String>,
}

async fn view<S: Store>(engine: &Engine<S>, conn: &Connection) -> ScimResult<View> {
    let store = engine.store();
    let accounts = store
        .current_accounts(&conn.id)
        .await
        .map_err(EngineError::from)?;
    let records = store
        .scim_resources(&conn.id, "user")
        .await
        .map_err(EngineError::from)?
        .into_iter()
        .map(|r| (r.tr_id, r))
        .collect();
    let group_names = store
        .current_group_names(&conn.id)
        .await
        .map_err(EngineError::from)?
        .into_iter()
        .map(|(id, n)| (id, n.unwrap_or_default()))
        .collect();
    Ok(View {
        accounts,
        records,
        group_names,
    })
}

/// Attribute names compared case-exactly (RFC 7643: `id` and `externalId`).
const CASE_EXACT: [&str; 2] = ["id", "externalid"];

/// A list request: filter, paging, attributes.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// A ListResponse of the resources that pass the filter, in id order.
fn list_response(all: Vec<Value>, q: &ListQuery) -> ScimResult<Value> {
    let filter: Option<Filter> = match q.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => Some(
            dscim::parse_filter(f)
                .map_err(|e| ScimError::new(400, Some("invalidFilter"), e.to_string()))?,
        ),
        _ => None,
    };
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r, &CASE_EXACT)))
        .collect();
    let total = matching.len();
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let count = q.count.unwrap_or(100).clamp(0, MAX_COUNT as i64) as usize;
    let page: Vec<Value> = matching
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|r| dscim::project(&r, &q.attributes, &q.excluded))
        .collect();
    Ok(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "itemsPerPage": page.len(),
        "startIndex": start,
        "Resources": page,
    }))
}

pub async fn list_users<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    q: &ListQuery,
) -> ScimResult<Value> {
    list_response(all_users(engine, caller).await?, q)
}

async fn all_users<S: Store>(engine: &Engine<S>, caller: &ScimCaller) -> ScimResult<Vec<Value>> {
    let v = view(engine, &caller.conn).await?;
    let mut all: Vec<&Account> = v
        .accounts
        .iter()
        .filter(|a| v.records.get(&a.id).is_none_or(|r| r.deleted_at.is_none()))
        .collect();
    all.sort_by_key(|a| a.id);
    Ok(all
        .into_iter()
        .map(|a| user_resource(caller, a, v.records.get(&a.id), &v.group_names))
        .collect())
}

pub async fn get_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    attributes: &[String],
    excluded: &[String],
) -> ScimResult<Value> {
    let r = user_by_id(engine, caller, id).await?;
    Ok(dscim::project(&r, attributes, excluded))
}

async fn user_by_id<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
) -> ScimResult<Value> {
    let uid: u64 = id
        .trim()
        .parse()
        .map_err(|_| ScimError::not_found("User", id))?;
    let store = engine.store();
    let conn = &caller.conn;
    let rec = store
        .scim_resource(&conn.id, "user", uid)
        .await
        .map_err(EngineError::from)?;
    if rec.as_ref().is_some_and(|r| r.deleted_at.is_some()) {
        return Err(ScimError::not_found("User", id));
    }
    let listed = store
        .account(&conn.id, uid)
        .await
        .map_err(EngineError::from)?
        .ok_or_else(|| ScimError::not_found("User", id))?;
    let names: BTreeMap<u64, String> = listed
        .groups
        .iter()
        .map(|(g, n)| (*g, n.clone().unwrap_or_default()))
        .collect();
    let mut a = listed.account;
    a.group_ids = listed.groups.iter().map(|g| g.0).collect();
    Ok(user_resource(caller, &a, rec.as_ref(), &names))
}

// ---- writing users ----------------------------------------------------------------------------

fn request(caller: &ScimCaller, action: Action) -> Request {
    Request {
        action,
        origin: Origin::Direct {
            actor: caller.actor(),
        },
    }
}

/// Plans and applies requests; a failed step is an error.
async fn run<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    requests: Vec<Request>,
) -> ScimResult<provision::Plan> {
    run_claiming(engine, caller, requests, None).await
}

/// Plans requests, then (for a deactivation of `claim`) passes the cap, then applies: a
/// request the rails refuse (a protected account) is refused before it counts.
async fn run_claiming<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    requests: Vec<Request>,
    claim: Option<&Account>,
) -> ScimResult<provision::Plan> {
    Ok(run_reporting(engine, caller, requests, claim).await?.0)
}

/// [`run_claiming`], with what the apply did (None when nothing was sent).
async fn run_reporting<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    requests: Vec<Request>,
    claim: Option<&Account>,
) -> ScimResult<(provision::Plan, Option<provision::ApplyReport>)> {
    if requests.is_empty() {
        return Ok((
            provision::Plan {
                connection: caller.conn.name.clone(),
                steps: vec![],
                skipped: vec![],
            },
            None,
        ));
    }
    provision::ensure_enabled(&caller.conn)?;
    let plan = provision::plan(engine, &caller.conn, requests, &Rails::new(None, false)).await?;
    // Only a deactivation TestRail still needs counts against the cap.
    let deactivates = plan
        .steps
        .iter()
        .any(|s| s.action == "deactivate" && !s.is_noop());
    if let (Some(a), true) = (claim, deactivates) {
        claim_deactivation(engine, caller, a).await?;
    }
    if plan.steps.iter().all(provision::Step::is_noop) {
        return Ok((plan, None));
    }
    let report = provision::apply(engine, &caller.conn, &plan).await?;
    if report.failed > 0 {
        let why: Vec<String> = report
            .results
            .iter()
            .filter_map(|r| r.message.clone())
            .collect();
        return Err(ScimError::new(
            502,
            None,
            format!(
                "TestRail did not take every change ({} done, {} failed): {}",
                report.done,
                report.failed,
                why.join("; ")
            ),
        ));
    }
    Ok((plan, Some(report)))
}

/// The deactivation of an account, if the cap (and an administrator) lets it happen now.
async fn claim_deactivation<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    a: &Account,
) -> ScimResult<()> {
    let email = a.email.clone().unwrap_or_default();
    if EmailKey::parse(&email).is_some()
        && EmailKey::parse(&email) == EmailKey::parse(&caller.conn.email)
    {
        return Err(ScimError::new(
            403,
            None,
            "this is the account Accessrail signs in to TestRail with: SCIM never deactivates it",
        ));
    }
    // An administrator's deactivation always waits for a person: a cap of 0.
    let cap = if a.is_admin == Some(true) {
        0
    } else {
        DEFAULT_CAP
    };
    let claim = engine
        .store()
        .scim_claim_deactivation(
            &caller.conn.id,
            &caller.token,
            a.id,
            &email,
            engine.now(),
            cap,
            CAP_WINDOW_SECS,
        )
        .await
        .map_err(EngineError::from)?;
    match claim {
        ScimClaim::Go => Ok(()),
        ScimClaim::Held(id) => {
            let mut e = ScimError::new(
                503,
                None,
                format!(
                    "the deactivation of {email} is held for an administrator's approval (hold #{id}: {}); retry later",
                    if cap == 0 {
                        "a TestRail administrator".to_string()
                    } else {
                        format!("more than {DEFAULT_CAP} SCIM deactivations within an hour")
                    }
                ),
            );
            e.retry_after = Some(RETRY_AFTER_SECS);
            Err(e)
        }
        ScimClaim::Rejected(id) => Err(ScimError::new(
            403,
            None,
            format!("an administrator rejected the deactivation of {email} (hold #{id})"),
        )),
    }
}

/// Brings an existing account to what the client wants: profile, role, then active state.
async fn converge<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    a: &Account,
    want: &WantedUser,
) -> ScimResult<()> {
    let email = a.email.clone().unwrap_or_default();
    let same_email = EmailKey::parse(&email) == EmailKey::parse(&want.email);
    provision::ensure_enabled(&caller.conn)?;
    if !same_email {
        // An administrator's email is the key to their account (password resets go there), and
        // the connection's own account is how Accessrail signs in: never changed through SCIM.
        if EmailKey::parse(&email) == EmailKey::parse(&caller.conn.email) {
            return Err(ScimError::new(
                403,
                Some("mutability"),
                "this is the account Accessrail signs in to TestRail with: its email is not changed through SCIM",
            ));
        }
        if a.is_admin == Some(true) {
            return Err(ScimError::new(
                403,
                Some("mutability"),
                "this account is a TestRail administrator: change its email in TestRail",
            ));
        }
    }
    // The profile first, on its own: the later steps name the account by its new email, which
    // a plan can only find once TestRail has it.
    if a.name.as_deref() != Some(want.name.as_str()) || !same_email {
        run(
            engine,
            caller,
            vec![request(
                caller,
                Action::UpdateProfile {
                    email: email.clone(),
                    name: Some(want.name.clone()),
                    new_email: (!same_email).then(|| want.email.clone()),
                },
            )],
        )
        .await?;
    }
    let mut reqs = Vec::new();
    let current_email = if same_email {
        email.clone()
    } else {
        want.email.clone()
    };
    if let Some(role) = &want.role
        && !a
            .role
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(role))
    {
        reqs.push(request(
            caller,
            Action::SetRole {
                email: current_email.clone(),
                role: role.clone(),
            },
        ));
    }
    // The active state is always asked for: the plan reads TestRail, so a store behind
    // TestRail neither skips a deactivation nor counts one that is already so.
    reqs.push(request(
        caller,
        if want.active {
            Action::Reactivate {
                email: current_email,
            }
        } else {
            Action::Deactivate {
                email: current_email,
            }
        },
    ));
    run_claiming(engine, caller, reqs, (!want.active).then_some(a)).await?;
    Ok(())
}

/// Keeps the SCIM facts of a user and their identity.
async fn remember_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: u64,
    want: &WantedUser,
    created: bool,
    deleted: bool,
) -> ScimResult<()> {
    let store = engine.store();
    let now = engine.now();
    keep_record(
        engine,
        caller,
        "user",
        id,
        Facts {
            external_id: want.external_id.clone(),
            user_name: (EmailKey::parse(&want.user_name) != EmailKey::parse(&want.email))
                .then(|| want.user_name.clone()),
            email_meta: want.email_meta.as_ref().map(Value::to_string),
        },
        created,
        deleted.then_some(now),
    )
    .await?;
    // SCIM-managed people are identities too (one per email, whichever token writes it): an
    // active user is a current person; one the identity provider deactivated or deleted is a
    // leaver. A person the organisation's own identity file already has stays that record
    // (two identities with one email would make the account ambiguous).
    let Some(key) = EmailKey::parse(&want.email) else {
        return Ok(());
    };
    let scim_id = format!("{}{}", crate::identities::SCIM_PREFIX, key.as_str());
    let known = store.identities().await.map_err(EngineError::from)?;
    if known
        .iter()
        .any(|i| i.id != scim_id && !i.gone && i.email_keys().contains(&key))
    {
        return Ok(());
    }
    let ident = Identity {
        id: scim_id,
        name: want.name.clone(),
        emails: vec![want.email.clone()],
        status: if want.active && !deleted {
            IdentityStatus::Active
        } else {
            IdentityStatus::Leaver
        },
        attributes: want
            .external_id
            .iter()
            .map(|x| ("external_id".to_string(), x.clone()))
            .chain([("source".to_string(), format!("scim:{}", caller.token))])
            .collect(),
        gone: false,
    };
    store
        .import_identities(vec![ident], false, now)
        .await
        .map_err(EngineError::from)?;
    Ok(())
}

/// Reads the account with this email from TestRail and records it in the store (audited), for
/// an account the last scan did not see.
async fn record_live_account<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    email: &str,
) -> ScimResult<Option<Account>> {
    let client = engine.client_for(&caller.conn, None)?;
    let user = match client.get_user_by_email(email).await {
        Ok(u) => u,
        Err(e) if e.kind() == testrail_client::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::upstream("looking the account up", e).into()),
    };
    let account = crate::connector::to_account(&user, &mut Default::default());
    let store = engine.store();
    let entry = store
        .append_audit(accessrail_domain::AuditRecord {
            at: engine.now(),
            actor: caller.actor(),
            connection: caller.conn.name.clone(),
            action: "scim_record".into(),
            target: account.email.clone().unwrap_or_else(|| email.to_string()),
            before: None,
            after: Some(format!("TestRail user {}", account.id)),
            calls: vec!["get_user_by_email".into()],
            outcome: accessrail_domain::Outcome::Done,
            message: Some(
                "TestRail has this account and the last scan did not: recorded now".into(),
            ),
        })
        .await
        .map_err(EngineError::from)?;
    let joined = account.group_ids.iter().map(|g| (*g, account.id)).collect();
    store
        .record_provision(
            &caller.conn.id,
            entry.id,
            engine.now(),
            accessrail_store::ProvisionUpdate {
                account: Some(account.clone()),
                joined,
                changes: vec![accessrail_store::NewChange {
                    kind: accessrail_domain::ChangeKind::AccountAdded,
                    user: Some(account.id),
                    group: None,
                    subject: account.email.clone(),
                    before: None,
                    after: account.email.clone(),
                }],
                ..Default::default()
            },
        )
        .await
        .map_err(EngineError::from)?;
    account_by_email(engine, &caller.conn, email).await
}

/// The current account with this email, as the store has it.
async fn account_by_email<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    email: &str,
) -> ScimResult<Option<Account>> {
    let Some(key) = EmailKey::parse(email) else {
        return Ok(None);
    };
    let listing = engine
        .store()
        .list_accounts(
            &conn.id,
            &accessrail_store::AccountQuery {
                q: Some(email.trim().to_string()),
                limit: Some(50),
                ..accessrail_store::AccountQuery::default()
            },
        )
        .await
        .map_err(EngineError::from)?;
    Ok(listing
        .accounts
        .into_iter()
        .find(|l| l.account.email.as_deref().and_then(EmailKey::parse) == Some(key.clone()))
        .map(|l| {
            let mut a = l.account;
            a.group_ids = l.groups.iter().map(|g| g.0).collect();
            a
        }))
}

async fn account_by_id<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
) -> ScimResult<(Account, Option<ScimResource>)> {
    let uid: u64 = id
        .trim()
        .parse()
        .map_err(|_| ScimError::not_found("User", id))?;
    let store = engine.store();
    let rec = store
        .scim_resource(&caller.conn.id, "user", uid)
        .await
        .map_err(EngineError::from)?;
    if rec.as_ref().is_some_and(|r| r.deleted_at.is_some()) {
        return Err(ScimError::not_found("User", id));
    }
    let listed = store
        .account(&caller.conn.id, uid)
        .await
        .map_err(EngineError::from)?
        .ok_or_else(|| ScimError::not_found("User", id))?;
    let mut a = listed.account;
    a.group_ids = listed.groups.iter().map(|g| g.0).collect();
    Ok((a, rec))
}

/// How long a SCIM create waits for another create of the same person (or group name).
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `work` under a lease of the connection named after `key` (lower case): creates of one
/// person, or of one group name, are decided one after the other across replicas.
async fn one_at_a_time<S: Store, T>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    key: &str,
    work: impl std::future::Future<Output = ScimResult<T>>,
) -> ScimResult<T> {
    let name = format!("scim:{}:{}", caller.conn.id, key.trim().to_lowercase());
    let token = crate::lease::wait_for(engine, &name, "scim create", CREATE_WAIT, || {
        format!("another request is creating {key} right now; try again")
    })
    .await?;
    crate::lease::held(engine, std::slice::from_ref(&token), work).await
}

/// POST /Users: creates the account, or adopts the existing account with that email (never a
/// duplicate); one create of a person at a time.
pub async fn create_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    body: &Value,
) -> ScimResult<Value> {
    let want = wanted_user(body)?;
    provision::ensure_enabled(&caller.conn)?;
    // Keyed by the email: a userName that is not one is checked inside too.
    let key = format!("user:{}", want.email);
    one_at_a_time(
        engine,
        caller,
        &key,
        create_user_inner(engine, caller, want),
    )
    .await
}

async fn create_user_inner<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    want: WantedUser,
) -> ScimResult<Value> {
    // A userName that is not the email is unique too (any case) among live SCIM users.
    if EmailKey::parse(&want.user_name).is_none() {
        let taken = engine
            .store()
            .scim_resources(&caller.conn.id, "user")
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .find(|r| {
                r.deleted_at.is_none()
                    && r.user_name
                        .as_deref()
                        .is_some_and(|u| u.to_lowercase() == want.user_name.to_lowercase())
            });
        if let Some(r) = taken {
            let same = r.external_id.is_some() && r.external_id == want.external_id;
            if !same {
                return Err(ScimError::new(
                    409,
                    Some("uniqueness"),
                    format!(
                        "userName {} is already provisioned through SCIM",
                        want.user_name
                    ),
                ));
            }
        }
    }
    if let Some(a) = account_by_email(engine, &caller.conn, &want.email).await? {
        let rec = engine
            .store()
            .scim_resource(&caller.conn.id, "user", a.id)
            .await
            .map_err(EngineError::from)?;
        // Already managed through SCIM (and not DELETEd): the same create again (a retry after
        // a lost answer: same externalId, or none and the same token) answers as before;
        // another is a uniqueness conflict.
        if let Some(r) = rec.as_ref().filter(|r| r.deleted_at.is_none()) {
            let same = match (&r.external_id, &want.external_id) {
                (Some(x), Some(y)) => x == y,
                (None, None) => r.token == caller.token,
                _ => false,
            };
            if !same {
                return Err(ScimError::new(
                    409,
                    Some("uniqueness"),
                    format!(
                        "userName {} is already provisioned through SCIM",
                        want.email
                    ),
                ));
            }
        }
        converge(engine, caller, &a, &want).await?;
        remember_user(engine, caller, a.id, &want, false, false).await?;
        return user_by_id(engine, caller, &a.id.to_string()).await;
    }
    // Not in the store: create (reconciling an account TestRail has and the last scan missed).
    let (_, report) = run_reporting(
        engine,
        caller,
        vec![request(
            caller,
            Action::CreateUser {
                name: want.name.clone(),
                email: want.email.clone(),
                role: want.role.clone(),
                groups: vec![],
                reconcile: true,
            },
        )],
        None,
    )
    .await?;
    // Created here only if this apply's create step was done (a create that found the account
    // made meanwhile reads back as a no-op).
    let created = report.is_some_and(|r| {
        r.results
            .iter()
            .any(|x| x.action == "create_user" && x.outcome == accessrail_domain::Outcome::Done)
    });
    let a = match account_by_email(engine, &caller.conn, &want.email).await? {
        Some(a) => a,
        // TestRail has the account and the last scan did not see it (made in TestRail since,
        // or by a create whose answer was lost): read it and record it now.
        None => record_live_account(engine, caller, &want.email)
            .await?
            .ok_or_else(|| {
                ScimError::new(
                    502,
                    None,
                    format!("TestRail does not show {} after the create", want.email),
                )
            })?,
    };
    remember_user(engine, caller, a.id, &want, created, false).await?;
    if !want.active {
        converge(engine, caller, &a, &want).await?;
    }
    user_by_id(engine, caller, &a.id.to_string()).await
}

/// PUT /Users/{id}: the whole user as given.
pub async fn replace_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    body: &Value,
) -> ScimResult<Value> {
    provision::ensure_enabled(&caller.conn)?;
    let (a, rec) = account_by_id(engine, caller, id).await?;
    let mut want = wanted_user(body)?;
    if want.external_id.is_none() {
        want.external_id = rec.and_then(|r| r.external_id);
    }
    converge(engine, caller, &a, &want).await?;
    remember_user(engine, caller, a.id, &want, false, false).await?;
    user_by_id(engine, caller, id).await
}

/// PATCH /Users/{id}: the operations applied to the user as it is, then converged.
pub async fn patch_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    body: &Value,
) -> ScimResult<Value> {
    provision::ensure_enabled(&caller.conn)?;
    let ops =
        dscim::parse_patch(body).map_err(|e| ScimError::new(400, Some(e.scim_type), e.message))?;
    let mut current = user_by_id(engine, caller, id).await?;
    let (a, _) = account_by_id(engine, caller, id).await?;
    dscim::apply_patch(&mut current, &ops)
        .map_err(|e| ScimError::new(400, Some(e.scim_type), e.message))?;
    let want = wanted_user(&current)?;
    converge(engine, caller, &a, &want).await?;
    remember_user(engine, caller, a.id, &want, false, false).await?;
    user_by_id(engine, caller, id).await
}

/// DELETE /Users/{id}: TestRail cannot delete, so the account is deactivated and its id hidden.
pub async fn delete_user<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
) -> ScimResult<()> {
    provision::ensure_enabled(&caller.conn)?;
    let (a, rec) = account_by_id(engine, caller, id).await?;
    let current = user_by_id(engine, caller, id).await?;
    let mut want = wanted_user(&current)?;
    want.active = false;
    want.external_id = rec.and_then(|r| r.external_id);
    converge(engine, caller, &a, &want).await?;
    remember_user(engine, caller, a.id, &want, false, true).await?;
    Ok(())
}

// ---- groups -----------------------------------------------------------------------------------

async fn groups_view<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
) -> ScimResult<(
    Vec<accessrail_store::GroupRecord>,
    BTreeMap<u64, String>,
    BTreeMap<u64, ScimResource>,
)> {
    let store = engine.store();
    let groups = store
        .current_groups(&conn.id)
        .await
        .map_err(EngineError::from)?;
    let emails = store
        .current_accounts(&conn.id)
        .await
        .map_err(EngineError::from)?
        .into_iter()
        .filter_map(|a| a.email.map(|e| (a.id, e)))
        .collect();
    let records = store
        .scim_resources(&conn.id, "group")
        .await
        .map_err(EngineError::from)?
        .into_iter()
        .map(|r| (r.tr_id, r))
        .collect();
    Ok((groups, emails, records))
}

pub async fn list_groups<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    q: &ListQuery,
) -> ScimResult<Value> {
    list_response(all_groups(engine, caller).await?, q)
}

async fn all_groups<S: Store>(engine: &Engine<S>, caller: &ScimCaller) -> ScimResult<Vec<Value>> {
    let (mut groups, _, records) = groups_view(engine, &caller.conn).await?;
    groups.sort_by_key(|g| g.id);
    Ok(groups
        .iter()
        .filter(|g| records.get(&g.id).is_none_or(|r| r.deleted_at.is_none()))
        .map(|g| {
            group_resource(
                caller,
                g.id,
                g.name.as_deref().unwrap_or_default(),
                &g.member_ids,
                records.get(&g.id),
            )
        })
        .collect())
}

async fn group_by_id<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
) -> ScimResult<(Value, accessrail_store::GroupRecord, BTreeMap<u64, String>)> {
    let gid: u64 = id
        .trim()
        .parse()
        .map_err(|_| ScimError::not_found("Group", id))?;
    let (groups, emails, records) = groups_view(engine, &caller.conn).await?;
    let rec = records.get(&gid);
    if rec.is_some_and(|r| r.deleted_at.is_some()) {
        return Err(ScimError::not_found("Group", id));
    }
    let g = groups
        .into_iter()
        .find(|g| g.id == gid)
        .ok_or_else(|| ScimError::not_found("Group", id))?;
    let v = group_resource(
        caller,
        g.id,
        g.name.as_deref().unwrap_or_default(),
        &g.member_ids,
        rec,
    );
    Ok((v, g, emails))
}

pub async fn get_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    attributes: &[String],
    excluded: &[String],
) -> ScimResult<Value> {
    let (v, _, _) = group_by_id(engine, caller, id).await?;
    Ok(dscim::project(&v, attributes, excluded))
}

/// The members a group resource names (user ids).
fn member_ids(v: &Value) -> ScimResult<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    if let Some(ms) = get_ci(v, "members").and_then(Value::as_array) {
        for m in ms {
            let raw = get_ci(m, "value")
                .map(|x| match x {
                    Value::String(s) => s.trim().to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let id = raw.parse::<u64>().map_err(|_| {
                ScimError::invalid_value(format!("member {raw:?} is not a user id"))
            })?;
            out.insert(id);
        }
    }
    Ok(out)
}

/// Brings a group's name and members to what the client wants (each membership change is its
/// own race-free group write).
async fn converge_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    g: &accessrail_store::GroupRecord,
    emails: &BTreeMap<u64, String>,
    name: &str,
    members: &BTreeSet<u64>,
) -> ScimResult<()> {
    let mut reqs = Vec::new();
    if g.name.as_deref() != Some(name) {
        reqs.push(request(
            caller,
            Action::RenameGroup {
                group: g.id.to_string(),
                name: name.to_string(),
            },
        ));
    }
    let now: BTreeSet<u64> = g.member_ids.iter().copied().collect();
    let email_of = |id: &u64| {
        emails
            .get(id)
            .cloned()
            .ok_or_else(|| ScimError::invalid_value(format!("no TestRail user {id}")))
    };
    for id in members.difference(&now) {
        reqs.push(request(
            caller,
            Action::AddToGroup {
                email: email_of(id)?,
                group: g.id.to_string(),
            },
        ));
    }
    for id in now.difference(members) {
        reqs.push(request(
            caller,
            Action::RemoveFromGroup {
                email: email_of(id)?,
                group: g.id.to_string(),
            },
        ));
    }
    run(engine, caller, reqs).await?;
    Ok(())
}

async fn remember_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: u64,
    external_id: Option<String>,
    created: bool,
) -> ScimResult<()> {
    let facts = Facts {
        external_id,
        user_name: None,
        email_meta: None,
    };
    keep_record(engine, caller, "group", id, facts, created, None).await
}

/// What a client wrote that TestRail has no field for.
struct Facts {
    external_id: Option<String>,
    user_name: Option<String>,
    email_meta: Option<String>,
}

/// Keeps a resource's SCIM facts. The store keeps who created an existing row and when, so
/// `created` only matters for a new one.
async fn keep_record<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    kind: &str,
    id: u64,
    facts: Facts,
    created: bool,
    deleted_at: Option<i64>,
) -> ScimResult<()> {
    let now = engine.now();
    engine
        .store()
        .put_scim_resource(ScimResource {
            connection_id: caller.conn.id.clone(),
            kind: kind.into(),
            tr_id: id,
            external_id: facts.external_id,
            user_name: facts.user_name,
            email_meta: facts.email_meta,
            token: caller.token.clone(),
            created_by: created.then(|| caller.token.clone()),
            created_at: now,
            updated_at: now,
            deleted_at,
        })
        .await
        .map_err(EngineError::from)?;
    Ok(())
}

/// POST /Groups: creates the TestRail group (or adopts the one with that name), then its members.
pub async fn create_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    body: &Value,
) -> ScimResult<Value> {
    let name = str_ci(body, "displayName")
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    provision::ensure_enabled(&caller.conn)?;
    let key = format!("group:{name}");
    one_at_a_time(
        engine,
        caller,
        &key,
        create_group_inner(engine, caller, body, name),
    )
    .await
}

async fn create_group_inner<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    body: &Value,
    name: String,
) -> ScimResult<Value> {
    let members = member_ids(body)?;
    let (groups, _, records) = groups_view(engine, &caller.conn).await?;
    let existing = groups.iter().find(|g| {
        g.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    });
    let created = if let Some(g) = existing {
        // Only a group this token manages is answered again (a retried create); another
        // (TestRail's own, or another token's) keeps its members: displayName is unique.
        if !records
            .get(&g.id)
            .is_some_and(|r| r.deleted_at.is_none() && r.token == caller.token)
        {
            return Err(ScimError::new(
                409,
                Some("uniqueness"),
                format!("group {name:?} is already provisioned through SCIM"),
            ));
        }
        false
    } else {
        run(
            engine,
            caller,
            vec![request(caller, Action::CreateGroup { name: name.clone() })],
        )
        .await?;
        true
    };
    let (groups, emails, _) = groups_view(engine, &caller.conn).await?;
    let g = groups
        .into_iter()
        .find(|g| {
            g.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        })
        .ok_or_else(|| ScimError::new(500, None, "the new group is not recorded"))?;
    remember_group(engine, caller, g.id, str_ci(body, "externalId"), created).await?;
    converge_group(engine, caller, &g, &emails, &name, &members).await?;
    let (v, _, _) = group_by_id(engine, caller, &g.id.to_string()).await?;
    Ok(v)
}

pub async fn replace_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    body: &Value,
) -> ScimResult<Value> {
    provision::ensure_enabled(&caller.conn)?;
    let (_, g, emails) = group_by_id(engine, caller, id).await?;
    let name = str_ci(body, "displayName")
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let members = member_ids(body)?;
    converge_group(engine, caller, &g, &emails, &name, &members).await?;
    remember_group(engine, caller, g.id, str_ci(body, "externalId"), false).await?;
    let (v, _, _) = group_by_id(engine, caller, id).await?;
    Ok(v)
}

pub async fn patch_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
    body: &Value,
) -> ScimResult<Value> {
    provision::ensure_enabled(&caller.conn)?;
    let ops =
        dscim::parse_patch(body).map_err(|e| ScimError::new(400, Some(e.scim_type), e.message))?;
    let (mut current, g, emails) = group_by_id(engine, caller, id).await?;
    dscim::apply_patch(&mut current, &ops)
        .map_err(|e| ScimError::new(400, Some(e.scim_type), e.message))?;
    let name = str_ci(&current, "displayName")
        .ok_or_else(|| ScimError::invalid_value("displayName cannot be removed"))?;
    let members = member_ids(&current)?;
    converge_group(engine, caller, &g, &emails, &name, &members).await?;
    remember_group(engine, caller, g.id, str_ci(&current, "externalId"), false).await?;
    let (v, _, _) = group_by_id(engine, caller, id).await?;
    Ok(v)
}

/// DELETE /Groups/{id}: removes every member (race-free writes) and hides the group; the
/// TestRail group itself stays (its project roles may matter to other groups' owners).
pub async fn delete_group<S: Store>(
    engine: &Engine<S>,
    caller: &ScimCaller,
    id: &str,
) -> ScimResult<()> {
    provision::ensure_enabled(&caller.conn)?;
    let (_, g, emails) = group_by_id(engine, caller, id).await?;
    let name = g.name.clone().unwrap_or_default();
    converge_group(engine, caller, &g, &emails, &name, &BTreeSet::new()).await?;
    let kept = engine
        .store()
        .scim_resource(&caller.conn.id, "group", g.id)
        .await
        .map_err(EngineError::from)?
        .and_then(|r| r.external_id);
    remember_group(engine, caller, g.id, kept, false).await?;
    let store = engine.store();
    if let Some(mut r) = store
        .scim_resource(&caller.conn.id, "group", g.id)
        .await
        .map_err(EngineError::from)?
    {
        r.deleted_at = Some(engine.now());
        store
            .put_scim_resource(r)
            .await
            .map_err(EngineError::from)?;
    }
    Ok(())
}

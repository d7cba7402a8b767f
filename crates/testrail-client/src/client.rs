//! The client: request building, error classification, retries, the request budget and every
//! users / roles / groups / projects method.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{self, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::base_url::BaseUrl;
use crate::clock::{Clock, TokioClock};
use crate::error::{Error, ErrorKind};
use crate::models::{Group, GroupUpdate, NewGroup, NewUser, Project, Role, User, UserUpdate};
use crate::pager::Pager;
use crate::retry::{Budget, Event, EventHook, RetryPolicy, SharedBudget};
use crate::secret::ApiKey;

/// Characters left as they are in a query value; everything else is percent-encoded (so `+`
/// becomes `%2B` and `@` becomes `%40`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one query parameter value.
pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// The default cap on one answer's body: 64 MiB, about 200 times a full page of 250 users.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The default cap on the items of one list walk.
pub const DEFAULT_MAX_LIST_ITEMS: u64 = 1_000_000;

/// How much of an error answer is kept: enough for TestRail's `{"error": ...}` text.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// How a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent writes: any retryable failure.
    Safe,
    /// Writes that could be duplicated: only failures that certainly had no effect.
    NoEffectOnly,
    /// Never: the caller retries itself (a whole-list write must re-read before each try).
    Never,
}

/// What a 400 means for this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On400 {
    Validation,
    /// The id or email in the request does not exist.
    NotFound,
    /// Not found, and a 404 too (`get_user_by_email` documents "400/404 invalid or unknown
    /// email"; the method itself exists on every version).
    NotFoundOr404,
    /// Not found when TestRail names the path's own field (`Field :user ...`), else validation.
    NotFoundIfField(&'static str),
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    base: BaseUrl,
    email: String,
    key: ApiKey,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    budget: Option<u32>,
    shared_budget: Option<Arc<dyn SharedBudget>>,
    clock: Arc<dyn Clock>,
    hook: Option<EventHook>,
    user_agent: String,
    max_response_bytes: u64,
    max_list_items: Option<u64>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("email", &self.email)
            .field("key", &self.key)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_list_items", &self.max_list_items)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Retry policy (default: 5 attempts, 0.5 s doubling to 30 s, with jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Time allowed for a whole request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// At most this many requests in any minute (`None`: no budget). TestRail Cloud's limit is
    /// per instance and shared with the customer's CI, so a scan should leave room.
    pub fn request_budget(mut self, per_minute: Option<u32>) -> Self {
        self.budget = per_minute.filter(|n| *n > 0);
        self
    }

    /// A budget shared with other processes that talk to this TestRail instance: every request
    /// takes a slot from it too (after this process's own budget), waiting as it says.
    pub fn shared_budget(mut self, budget: Option<Arc<dyn SharedBudget>>) -> Self {
        self.shared_budget = budget;
        self
    }

    /// The clock every wait goes through.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Called for every retry, 429 wait and budget wait.
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The largest answer body read (default [`DEFAULT_MAX_RESPONSE_BYTES`], 64 MiB). The body
    /// is read as a stream and reading stops once it passes the cap, so memory is bounded by
    /// the cap whatever the server sends: a successful answer over the cap is
    /// [`ErrorKind::TooLarge`]; an error answer is cut at the cap and classified by its status.
    /// At least 1 byte.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes.max(1);
        self
    }

    /// The default cap on the distinct items of one list walk (default
    /// [`DEFAULT_MAX_LIST_ITEMS`]; `None`: no cap). Each walk also stops after a number of
    /// pages derived from it; see [`Pager::max_items`], which overrides it for one walk.
    pub fn max_list_items(mut self, items: Option<u64>) -> Self {
        self.max_list_items = items;
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.email,
            self.key.expose_secret()
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            Error::new(ErrorKind::Config, "client")
                .with_detail("the email contains characters that cannot be sent")
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::new(ErrorKind::Config, "client").with_source(e))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: self.base,
                email: self.email,
                auth,
                retry: self.retry,
                budget: self.budget.map(Budget::new),
                shared_budget: self.shared_budget,
                clock: self.clock,
                hook: self.hook,
                max_response_bytes: self.max_response_bytes,
                max_list_items: self.max_list_items,
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    base: BaseUrl,
    email: String,
    auth: HeaderValue,
    retry: RetryPolicy,
    budget: Option<Budget>,
    shared_budget: Option<Arc<dyn SharedBudget>>,
    clock: Arc<dyn Clock>,
    hook: Option<EventHook>,
    max_response_bytes: u64,
    max_list_items: Option<u64>,
}

/// A TestRail API v2 client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("email", &self.inner.email)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Parses `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate(v)?;
    let now = std::time::SystemTime::now();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`.
fn httpdate(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|p| p.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days since the epoch (civil-from-days inverse, proleptic Gregorian).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = (y - era * 400) as u64;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe as i64 - 719_468;
    let secs = days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<String>,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error)
}

/// Decodes a JSON body, naming the field path when it does not fit.
pub(crate) fn decode<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, Error> {
    // Some old TestRail Server versions put this line before the JSON.
    let body = body
        .strip_prefix(b"USER AUTHENTICATION SUCCESSFUL!\n")
        .unwrap_or(body);
    // The plain decoder first; only a body that fails is decoded again with path tracking, to
    // say where it went wrong.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            Err(
                Error::new(ErrorKind::UpstreamBug, method).with_detail(format!(
                    "cannot decode the answer at `{path}`: {}",
                    e.inner()
                )),
            )
        }
    }
}

impl Client {
    /// A builder for the instance at `base`, authenticating as `email` with `key`.
    pub fn builder(base: BaseUrl, email: impl Into<String>, key: ApiKey) -> ClientBuilder {
        ClientBuilder {
            base,
            email: email.into().trim().to_string(),
            key,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            budget: None,
            shared_budget: None,
            clock: Arc::new(TokioClock::new()),
            hook: None,
            user_agent: concat!("testrail-client/", env!("CARGO_PKG_VERSION")).to_string(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_list_items: Some(DEFAULT_MAX_LIST_ITEMS),
        }
    }

    pub fn base_url(&self) -> &BaseUrl {
        &self.inner.base
    }

    pub fn email(&self) -> &str {
        &self.inner.email
    }

    /// The default cap on one list walk's items.
    pub(crate) fn max_list_items(&self) -> Option<u64> {
        self.inner.max_list_items
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(h) = &self.inner.hook {
            h(&event);
        }
    }

    /// One HTTP exchange, classified. `route` is the part after `/api/v2/`.
    async fn send_once(
        &self,
        method: &str,
        route: &str,
        body: Option<&[u8]>,
        on400: On400,
    ) -> Result<Bytes, Error> {
        if let Some(b) = &self.inner.budget {
            b.acquire(self.clock(), self.inner.hook.as_ref()).await;
        }
        if let Some(shared) = &self.inner.shared_budget {
            loop {
                match shared.take().await {
                    Ok(None) => break,
                    Ok(Some(wait)) => {
                        self.emit(Event::BudgetWait { wait });
                        self.clock().sleep(wait.max(Duration::from_millis(1))).await;
                    }
                    Err(error) => {
                        self.emit(Event::SharedBudgetUnavailable { error });
                        break;
                    }
                }
            }
        }
        let url = self.inner.base.api_url(route);
        self.emit(Event::RequestSent {
            method: method.to_string(),
        });
        let req = match body {
            None => self.inner.http.get(&url),
            Some(b) => self.inner.http.post(&url).body(b.to_vec()),
        }
        .header(header::AUTHORIZATION, self.inner.auth.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json");
        let resp = req.send().await.map_err(|e| transport_error(method, e))?;
        let status = resp.status().as_u16();
        let announced = resp.content_length();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let ok = (200..300).contains(&status);
        let cap = self.inner.max_response_bytes;
        let bytes = match read_body(resp, if ok { cap } else { cap.min(ERROR_BODY_BYTES) }).await {
            Ok(Body::Whole(b)) => b,
            // An error answer is classified by its status; its text is cut.
            Ok(Body::Cut(b)) if !ok => b,
            Ok(Body::Cut(_)) => return Err(too_large(method, cap, announced)),
            Err(e) => return Err(transport_error(method, e)),
        };
        if ok {
            return Ok(bytes);
        }
        let message = error_message(&bytes);
        let kind = match status {
            400 => match on400 {
                On400::Validation => ErrorKind::Validation,
                On400::NotFound | On400::NotFoundOr404 => ErrorKind::NotFound,
                On400::NotFoundIfField(field) => {
                    if message
                        .as_deref()
                        .is_some_and(|m| m.starts_with(&format!("Field :{field} ")))
                    {
                        ErrorKind::NotFound
                    } else {
                        ErrorKind::Validation
                    }
                }
            },
            401 => ErrorKind::InvalidCredentials,
            403 if message
                .as_deref()
                .is_some_and(|m| m.contains("API is disabled")) =>
            {
                ErrorKind::ApiDisabled
            }
            403 => ErrorKind::NotAdministrator,
            404 if on400 == On400::NotFoundOr404 => ErrorKind::NotFound,
            404 => ErrorKind::Unsupported,
            409 => ErrorKind::Maintenance,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::UpstreamBug,
        };
        let mut err = Error::new(kind, method)
            .with_status(status)
            .with_message(message)
            .with_retry_after(retry_after);
        if (300..400).contains(&status) {
            err = err.with_detail(
                "TestRail answered with a redirect; check the address (TestRail Server may need its sub-path, and https)",
            );
        }
        Err(err)
    }

    /// Sends with retries per the policy.
    pub(crate) async fn execute(
        &self,
        method: &str,
        route: &str,
        body: Option<&[u8]>,
        on400: On400,
        retry: Retry,
    ) -> Result<Bytes, Error> {
        let policy = &self.inner.retry;
        let mut backoff = policy.backoff();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let err = match self.send_once(method, route, body, on400).await {
                Ok(b) => return Ok(b),
                Err(e) => e,
            };
            let may_retry = match retry {
                Retry::Safe => err.is_retryable(),
                Retry::NoEffectOnly => err.is_retryable() && err.had_no_effect(),
                Retry::Never => false,
            };
            if !may_retry || attempt >= policy.max_attempts {
                return Err(err);
            }
            let delay = self.retry_delay(&err, &mut backoff);
            if err.kind() == ErrorKind::RateLimited {
                self.emit(Event::RateLimited {
                    method: method.to_string(),
                    wait: delay,
                });
            } else {
                self.emit(Event::Retrying {
                    method: method.to_string(),
                    attempt,
                    delay,
                    reason: err.to_string(),
                });
            }
            tracing::debug!(method, attempt, ?delay, error = %err, "retrying TestRail request");
            self.clock().sleep(delay).await;
        }
    }

    pub(crate) fn retry_delay(
        &self,
        err: &Error,
        backoff: &mut impl Iterator<Item = Duration>,
    ) -> Duration {
        let policy = &self.inner.retry;
        if err.kind() == ErrorKind::RateLimited {
            return err
                .retry_after()
                .unwrap_or(policy.default_retry_after)
                .min(policy.max_retry_after);
        }
        let next = backoff.next().unwrap_or(policy.max_delay);
        match err.retry_after() {
            Some(ra) => ra.min(policy.max_retry_after).max(next),
            None => next,
        }
    }

    pub(crate) async fn execute_read(
        &self,
        method: &str,
        route: &str,
        on400: On400,
    ) -> Result<Bytes, Error> {
        self.execute(method, route, None, on400, Retry::Safe).await
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        method: &str,
        route: &str,
        on400: On400,
    ) -> Result<T, Error> {
        let bytes = self
            .execute(method, route, None, on400, Retry::Safe)
            .await?;
        decode(method, &bytes)
    }

    pub(crate) async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        route: &str,
        body: &B,
        on400: On400,
        retry: Retry,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::new(ErrorKind::Config, method).with_source(e))?;
        let bytes = self
            .execute(method, route, Some(&body), on400, retry)
            .await?;
        decode(method, &bytes)
    }

    // ---- users ---------------------------------------------------------------------------

    /// `get_user/{id}`. An unknown id is [`ErrorKind::NotFound`].
    pub async fn get_user(&self, user_id: u64) -> Result<User, Error> {
        self.get_json("get_user", &format!("get_user/{user_id}"), On400::NotFound)
            .await
    }

    /// `get_current_user`: the key's own account (6.6+). The natural connection check: it
    /// proves the credentials, that the API is on and, from 7.3, whether the owner is an
    /// administrator.
    pub async fn get_current_user(&self) -> Result<User, Error> {
        self.get_json("get_current_user", "get_current_user", On400::Validation)
            .await
    }

    /// `get_user_by_email`. An unknown email is [`ErrorKind::NotFound`] (TestRail answers 400
    /// with the same text as for a malformed address).
    pub async fn get_user_by_email(&self, email: &str) -> Result<User, Error> {
        let route = format!(
            "get_user_by_email&email={}",
            encode_query_value(email.trim())
        );
        self.get_json("get_user_by_email", &route, On400::NotFoundOr404)
            .await
    }

    /// Every user (administrators only), page by page. Handles both the paged envelope and the
    /// legacy bare array.
    pub fn users(&self) -> Pager<User> {
        Pager::new(
            self.clone(),
            "get_users",
            "get_users".into(),
            "users",
            On400::Validation,
        )
    }

    /// Users with explicit access to a project (active only; project-level roles).
    pub fn project_users(&self, project_id: u64) -> Pager<User> {
        Pager::new(
            self.clone(),
            "get_users",
            format!("get_users/{project_id}"),
            "users",
            On400::NotFound,
        )
    }

    /// All users, collected.
    pub async fn get_users(&self) -> Result<Vec<User>, Error> {
        self.users().collect_all().await
    }

    /// `add_user` (7.3+, administrators). Never creates a duplicate because of a retry: when
    /// the answer is lost (timeout, cut connection, 5xx) the email is looked up with
    /// `get_user_by_email` before the request is sent again, and a user found there is
    /// returned. Callers that must not adopt an account that existed before should look the
    /// email up first.
    pub async fn add_user(&self, user: &NewUser) -> Result<User, Error> {
        let policy = self.inner.retry.clone();
        let mut backoff = policy.backoff();
        let mut attempt = 0u32;
        let mut answer_lost = false;
        loop {
            attempt += 1;
            let result: Result<User, Error> = self
                .post_json(
                    "add_user",
                    "add_user",
                    user,
                    On400::Validation,
                    Retry::NoEffectOnly,
                )
                .await;
            let err = match result {
                Ok(u) => return Ok(u),
                Err(e) => e,
            };
            // After a lost answer, a refusal such as "email already in use" may be our own
            // earlier request having taken effect.
            let ambiguous = err.is_retryable() && !err.had_no_effect();
            if ambiguous || (answer_lost && err.kind() == ErrorKind::Validation) {
                answer_lost = answer_lost || ambiguous;
                match self.get_user_by_email(&user.email).await {
                    Ok(found) => {
                        self.emit(Event::WriteRecovered {
                            method: "add_user".into(),
                            found: true,
                        });
                        return Ok(found);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        self.emit(Event::WriteRecovered {
                            method: "add_user".into(),
                            found: false,
                        });
                    }
                    Err(e) => return Err(e),
                }
                if !ambiguous || attempt >= policy.max_attempts {
                    return Err(err);
                }
                let delay = self.retry_delay(&err, &mut backoff);
                self.emit(Event::Retrying {
                    method: "add_user".into(),
                    attempt,
                    delay,
                    reason: err.to_string(),
                });
                self.clock().sleep(delay).await;
                continue;
            }
            return Err(err);
        }
    }

    /// `update_user/{id}` (7.3+, administrators): a partial update. `is_active: false`
    /// deactivates (TestRail has no delete), `true` reactivates. Idempotent, so retried.
    pub async fn update_user(&self, user_id: u64, update: &UserUpdate) -> Result<User, Error> {
        self.post_json(
            "update_user",
            &format!("update_user/{user_id}"),
            update,
            On400::NotFoundIfField("user"),
            Retry::Safe,
        )
        .await
    }

    // ---- roles ---------------------------------------------------------------------------

    /// `get_roles` (7.3+).
    pub fn roles(&self) -> Pager<Role> {
        Pager::new(
            self.clone(),
            "get_roles",
            "get_roles".into(),
            "roles",
            On400::Validation,
        )
    }

    pub async fn get_roles(&self) -> Result<Vec<Role>, Error> {
        self.roles().collect_all().await
    }

    // ---- groups --------------------------------------------------------------------------

    /// `get_group/{id}` (7.5+).
    pub async fn get_group(&self, group_id: u64) -> Result<Group, Error> {
        self.get_json(
            "get_group",
            &format!("get_group/{group_id}"),
            On400::NotFound,
        )
        .await
    }

    /// `get_groups` (7.5+); [`ErrorKind::Unsupported`] on older versions.
    pub fn groups(&self) -> Pager<Group> {
        Pager::new(
            self.clone(),
            "get_groups",
            "get_groups".into(),
            "groups",
            On400::Validation,
        )
    }

    pub async fn get_groups(&self) -> Result<Vec<Group>, Error> {
        self.groups().collect_all().await
    }

    /// `add_group` (7.5+). Retried only when the failure certainly had no effect (TestRail
    /// allows two groups with one name, so a lost answer cannot be told apart safely).
    pub async fn add_group(&self, group: &NewGroup) -> Result<Group, Error> {
        self.post_json(
            "add_group",
            "add_group",
            group,
            On400::Validation,
            Retry::NoEffectOnly,
        )
        .await
    }

    /// `update_group/{id}` (7.5+). `user_ids` replaces the whole membership: to add or remove
    /// one member, read the group, change the list and write it back, serialised per group.
    /// Never retried here: a retry must re-read the group first (the list it would resend may
    /// be stale by then), so the caller retries the whole read-modify-write.
    pub async fn update_group(&self, group_id: u64, update: &GroupUpdate) -> Result<Group, Error> {
        self.post_json(
            "update_group",
            &format!("update_group/{group_id}"),
            update,
            On400::NotFoundIfField("group_id"),
            Retry::Never,
        )
        .await
    }

    /// `delete_group/{id}` (7.5+): 200 with an empty body. A retry that finds the group gone
    /// after a lost answer counts as done.
    pub async fn delete_group(&self, group_id: u64) -> Result<(), Error> {
        let route = format!("delete_group/{group_id}");
        let policy = self.inner.retry.clone();
        let mut backoff = policy.backoff();
        let mut attempt = 0u32;
        let mut answer_lost = false;
        loop {
            attempt += 1;
            match self
                .send_once(
                    "delete_group",
                    &route,
                    Some(b"{}"),
                    On400::NotFoundIfField("group_id"),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if answer_lost && e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                    answer_lost = answer_lost || !e.had_no_effect();
                    let delay = self.retry_delay(&e, &mut backoff);
                    self.emit(Event::Retrying {
                        method: "delete_group".into(),
                        attempt,
                        delay,
                        reason: e.to_string(),
                    });
                    self.clock().sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ---- projects ------------------------------------------------------------------------

    pub fn projects(&self) -> Pager<Project> {
        Pager::new(
            self.clone(),
            "get_projects",
            "get_projects".into(),
            "projects",
            On400::Validation,
        )
    }

    pub async fn get_projects(&self) -> Result<Vec<Project>, Error> {
        self.projects().collect_all().await
    }

    /// `update_project/{id}` (7.3+, administrators). Never retried here: a body that carries a
    /// whole access list may be stale by the time of a retry; the caller re-reads and decides.
    pub async fn update_project(
        &self,
        project_id: u64,
        update: &crate::models::ProjectUpdate,
    ) -> Result<Project, Error> {
        self.post_json(
            "update_project",
            &format!("update_project/{project_id}"),
            update,
            On400::NotFoundIfField("project_id"),
            Retry::Never,
        )
        .await
    }

    pub async fn get_project(&self, project_id: u64) -> Result<Project, Error> {
        self.get_json(
            "get_project",
            &format!("get_project/{project_id}"),
            On400::NotFound,
        )
        .await
    }
}

/// A body read up to a cap.
enum Body {
    Whole(Bytes),
    /// The body passed the cap; these are its first `cap` bytes at most.
    Cut(Bytes),
}

/// Reads a body as a stream, stopping once it passes `cap` bytes: memory is bounded by the
/// cap, never by what the server announces or sends.
async fn read_body(mut resp: reqwest::Response, cap: u64) -> Result<Body, reqwest::Error> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if resp
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > cap))
    {
        return Ok(Body::Cut(Bytes::new()));
    }
    // Content-Length is only a hint (a server may lie); the loop below enforces the cap.
    let hint = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(cap)
        .min(1024 * 1024);
    let mut body = Vec::with_capacity(hint);
    while let Some(chunk) = resp.chunk().await? {
        if chunk.len() > cap - body.len() {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok(Body::Cut(Bytes::from(body)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(Bytes::from(body)))
}

/// A MiB, KiB or byte count as people read it.
fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

fn too_large(method: &str, cap: u64, announced: Option<u64>) -> Error {
    let announced = announced
        .filter(|n| *n > cap)
        .map(|n| format!(" (TestRail announced {n} bytes)"))
        .unwrap_or_default();
    Error::new(ErrorKind::TooLarge, method).with_detail(format!(
        "the answer is larger than the cap of {} ({cap} bytes){announced}; reading stopped at the cap",
        human_bytes(cap)
    ))
}

fn transport_error(method: &str, e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Unreachable
    } else if e.is_builder() {
        ErrorKind::Config
    } else {
        ErrorKind::ConnectionLost
    };
    // reqwest's own text names the URL; it holds no credentials (they travel in a header).
    Error::new(kind, method)
        .with_detail(e.to_string())
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode_query_value("jane.doe+qa@example.com"),
            "jane.doe%2Bqa%40example.com"
        );
        assert_eq!(encode_query_value("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            httpdate("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }
}

//! One error type that says what happened, keeping TestRail's own message.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401: the email and API key (or password) were not accepted.
    InvalidCredentials,
    /// 403: the key's owner is not a TestRail administrator (or lacks the permission).
    NotAdministrator,
    /// 403: the API is switched off under Administration > Site Settings > API.
    ApiDisabled,
    /// 404: the method does not exist on this TestRail version (e.g. groups before 7.5).
    Unsupported,
    /// The user, group, project or email does not exist (TestRail answers 400 for these).
    NotFound,
    /// 400: TestRail refused the input.
    Validation,
    /// 429: over the instance's rate limit.
    RateLimited,
    /// 409: TestRail Cloud's daily maintenance.
    Maintenance,
    /// 5xx from TestRail.
    Server,
    /// The host could not be reached (DNS, connection refused, TLS).
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The connection was cut before the whole answer arrived.
    ConnectionLost,
    /// TestRail answered something the client cannot understand (unexpected status or body,
    /// an id out of range, one id with two different records).
    UpstreamBug,
    /// An answer's body passed the client's size cap ([`crate::ClientBuilder::max_response_bytes`]);
    /// reading stopped there. Never retried.
    TooLarge,
    /// A list walk passed its cap on items or pages ([`crate::Pager::max_items`]); the walk
    /// stopped there. Never retried.
    ListTooLong,
    /// The client was misconfigured (bad base URL, bad argument).
    Config,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid email or API key",
            Self::NotAdministrator => "the API key does not belong to a TestRail administrator",
            Self::ApiDisabled => "the TestRail API is disabled",
            Self::Unsupported => "not supported by this TestRail version",
            Self::NotFound => "not found",
            Self::Validation => "TestRail rejected the request",
            Self::RateLimited => "TestRail rate limit exceeded",
            Self::Maintenance => "TestRail is undergoing maintenance",
            Self::Server => "TestRail server error",
            Self::Unreachable => "TestRail is unreachable",
            Self::Timeout => "TestRail did not answer in time",
            Self::ConnectionLost => "the connection to TestRail was lost",
            Self::UpstreamBug => "unexpected answer from TestRail",
            Self::TooLarge => "the answer from TestRail is too large",
            Self::ListTooLong => "TestRail's list is longer than allowed",
            Self::Config => "invalid configuration",
        }
    }
}

/// An error from a TestRail call. Never contains the API key.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    method: String,
    status: Option<u16>,
    message: Option<String>,
    retry_after: Option<Duration>,
    detail: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, method: impl Into<String>) -> Self {
        Self {
            kind,
            method: method.into(),
            status: None,
            message: None,
            retry_after: None,
            detail: None,
            source: None,
        }
    }

    /// An answer the caller found inconsistent (e.g. `get_project/5` answering project 6).
    pub fn upstream_bug(method: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::UpstreamBug, method).with_detail(detail)
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_message(mut self, message: Option<String>) -> Self {
        self.message = message;
        self
    }

    pub(crate) fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The TestRail API method, e.g. `get_users`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The HTTP status, when TestRail answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// TestRail's own `{"error": ...}` text.
    pub fn testrail_message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The wait TestRail asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Worth trying again: rate limit, maintenance, server errors, timeouts and lost or
    /// refused connections.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited
                | ErrorKind::Maintenance
                | ErrorKind::Server
                | ErrorKind::Unreachable
                | ErrorKind::Timeout
                | ErrorKind::ConnectionLost
        )
    }

    /// True when the request certainly had no effect (refused before TestRail acted), so even
    /// a non-idempotent write can be sent again.
    pub fn had_no_effect(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited | ErrorKind::Maintenance | ErrorKind::Unreachable
        ) || (self.status.is_some() && !self.is_retryable())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.kind.describe(), self.method)?;
        if let Some(s) = self.status {
            write!(f, ", HTTP {s}")?;
        }
        f.write_str(")")?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

use accessrail_store::StoreError;
use thiserror::Error;

/// A stable, machine-readable error code (used in `--json` error output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidInput,
    NotFound,
    Conflict,
    TestFailed,
    Upstream,
    Busy,
    Store,
    Secret,
    ReadOnly,
    Forbidden,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TestFailed => "test_failed",
            Self::Upstream => "upstream",
            Self::Busy => "busy",
            Self::Store => "store",
            Self::Secret => "secret",
            Self::ReadOnly => "read_only",
            Self::Forbidden => "forbidden",
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request itself is wrong (bad argument, unknown name); exit status 2.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the connection test failed: {0}")]
    TestFailed(String),
    #[error("{context}: {source}")]
    Upstream {
        context: String,
        #[source]
        source: Box<testrail_client::Error>,
    },
    #[error("a scan of connection {0:?} is already running")]
    ScanRunning(String),
    /// Something other than a scan is busy: says what (e.g. another change to a group).
    #[error("{0}")]
    Busy(String),
    /// A lease was lost while its holder was working: it stopped before writing.
    #[error("{0}")]
    LeaseLost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Secret(String),
    /// Provisioning is off for the connection.
    #[error(
        "provisioning is off for connection {0} (read-only); enable it with `accessrail provisioning enable --connection {0}` (--dry-run works without it)"
    )]
    ReadOnly(String),
    /// The caller may not do this (a reviewer acting on another reviewer's items, or on their
    /// own access; approving one's own submission).
    #[error("{0}")]
    Forbidden(String),
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Usage(_) | Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::TestFailed(_) => ErrorCode::TestFailed,
            Self::Upstream { .. } => ErrorCode::Upstream,
            Self::ScanRunning(_) | Self::Busy(_) | Self::LeaseLost(_) => ErrorCode::Busy,
            Self::Store(StoreError::Busy) => ErrorCode::Busy,
            Self::Store(StoreError::Invalid(_)) => ErrorCode::InvalidInput,
            Self::Store(StoreError::Conflict(_)) => ErrorCode::Conflict,
            Self::Store(StoreError::NotFound(_)) => ErrorCode::NotFound,
            Self::Store(_) => ErrorCode::Store,
            Self::Secret(_) => ErrorCode::Secret,
            Self::ReadOnly(_) => ErrorCode::ReadOnly,
            Self::Forbidden(_) => ErrorCode::Forbidden,
        }
    }

    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
    }

    pub(crate) fn upstream(context: impl Into<String>, source: testrail_client::Error) -> Self {
        Self::Upstream {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

//! One JSON error type with a stable machine-readable code, for every answer under `/api/`:
//! handler errors, rejected requests (see `extract`) and unknown paths or methods alike.

use accessrail_engine::{EngineError, ErrorCode};
use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Set on internal errors: the id under which the details were logged.
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: unauthorized, invalid_input, not_found, method_not_allowed, payload_too_large, unsupported_media_type, conflict, test_failed, upstream, busy, store, secret, internal, read_only, forbidden, stale_plan, plan_already_applied, plan_being_applied, plan_interrupted.
    pub code: String,
    pub message: String,
    /// Internal errors (500) only: quote it to the operator, whose log has the details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (accessrail tokens create NAME)",
        )
    }

    /// A reviewer sign-in used outside the review API.
    pub fn reviewer_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a reviewer sign-in reaches only the review API (/api/v1/reviews); an administrator token is needed here",
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method (see /api/openapi.json)",
        )
    }

    /// A 500: the details go to the log under a new request id; the client gets only the id.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        let id = accessrail_engine::tokens::random_hex(8);
        tracing::error!(request_id = %id, code, error = %detail, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message: format!("internal error; request id {id}"),
            request_id: Some(id),
        }
    }

    /// A rejected request body or parameter, by the status axum gives it.
    fn rejected(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "payload_too_large", text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(status, "unsupported_media_type", text),
            s if s.is_server_error() => Self::internal("internal", text),
            _ => Self::invalid(text),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.code() {
            ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::Busy | ErrorCode::ReadOnly => StatusCode::CONFLICT,
            ErrorCode::TestFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Upstream => StatusCode::BAD_GATEWAY,
            ErrorCode::Store | ErrorCode::Secret => {
                return Self::internal(e.code().as_str(), &e);
            }
        };
        Self::new(status, e.code().as_str(), e.to_string())
    }
}

impl From<accessrail_store::StoreError> for ApiError {
    fn from(e: accessrail_store::StoreError) -> Self {
        EngineError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            // Well-formed JSON of the wrong shape (a missing or unknown field, a wrong type):
            // the request is invalid, like any other bad input.
            JsonRejection::JsonDataError(e) => Self::invalid(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::invalid(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => Self::rejected(other.status(), other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the 2 MB this API accepts",
            )
        } else {
            Self::rejected(r.status(), r.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::rejected(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::rejected(r.status(), r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Nothing internal reaches the client, whichever way a 500 was made.
        let (message, request_id) =
            if self.status == StatusCode::INTERNAL_SERVER_ERROR && self.request_id.is_none() {
                let e = Self::internal(self.code, &self.message);
                (e.message, e.request_id)
            } else {
                (self.message, self.request_id)
            };
        (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.to_string(),
                    message,
                    request_id,
                },
            }),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

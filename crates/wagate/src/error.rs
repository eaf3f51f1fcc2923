//! The one error type of the HTTP API and its JSON envelope.
//!
//! Every non-2xx answer has the body `{"error": {"code", "message", "details"}}`. The mapping
//! from an error kind to its HTTP status lives here and nowhere else; internal causes are
//! logged and replaced by a generic message before they leave the process.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// An API failure, mapped to one status code and error code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path or query parameter is missing or malformed (400).
    #[error("{message}")]
    BadParameter {
        message: String,
        details: Map<String, Value>,
    },
    /// The request body is malformed JSON or has invalid fields (422).
    #[error("{message}")]
    BadBody {
        message: String,
        details: Map<String, Value>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method; `allow` lists the methods it takes (sent as
    /// the `Allow` header when not empty).
    #[error("{message}")]
    MethodNotAllowed {
        message: String,
        allow: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests in progress: shed at once, to be retried after `retry_after_secs`
    /// (503 `gateway_unavailable` with `Retry-After`).
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    /// The request took longer than the gateway's time limit (504).
    #[error("{0}")]
    Timeout(String),
    /// Anything else. The cause is logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_parameter(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut details = Map::new();
        details.insert(field.to_owned(), Value::String(message.clone()));
        ApiError::BadParameter {
            message: format!("invalid parameter `{field}`: {message}"),
            details,
        }
    }

    pub fn bad_body(field: Option<&str>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut details = Map::new();
        let text = match field {
            Some(f) => {
                details.insert(f.to_owned(), Value::String(message.clone()));
                format!("invalid field `{f}`: {message}")
            }
            None => format!("invalid request body: {message}"),
        };
        ApiError::BadBody {
            message: text,
            details,
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn session_not_found() -> Self {
        Self::not_found("session")
    }

    pub fn chat_not_found() -> Self {
        Self::not_found("chat")
    }

    pub fn no_client() -> Self {
        ApiError::NotImplemented("the session has no connected WhatsApp client".into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::BadBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadParameter { .. } | ApiError::BadBody { .. } => "validation_error",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => "gateway_unavailable",
            ApiError::Timeout(_) => "gateway_timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// True for the database errors that mean "not reachable right now" (down, overloaded, pool
/// closed) rather than a fault of this request or of the server's code.
fn database_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl ApiError {
    /// An internal error whose cause is an unreachable database becomes a retryable 503,
    /// wherever in the call chain the database error was wrapped.
    fn normalized(self) -> Self {
        match self {
            ApiError::Internal(cause)
                if cause.chain().any(|c| {
                    c.downcast_ref::<sqlx::Error>()
                        .is_some_and(database_unavailable)
                }) =>
            {
                tracing::warn!(error = %format!("{cause:#}"), "database unavailable");
                ApiError::Unavailable(
                    "the database cannot be reached right now; retry later".into(),
                )
            }
            other => other,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// The error envelope: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable error code, e.g. `not_found` or `validation_error`.
    #[schema(example = "not_found")]
    pub code: String,
    /// Human-readable explanation.
    #[schema(example = "session not found")]
    pub message: String,
    /// Extra context; for validation errors, one entry per offending field.
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self.normalized();
        this.respond()
    }
}

impl ApiError {
    fn respond(self) -> Response {
        let status = self.status();
        let (message, details) = match &self {
            ApiError::BadParameter { message, details }
            | ApiError::BadBody { message, details } => (message.clone(), details.clone()),
            ApiError::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed");
                ("internal server error".to_owned(), Map::new())
            }
            other => (other.to_string(), Map::new()),
        };
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code().to_owned(),
                message,
                details,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if !allow.is_empty() {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
        }
        if let ApiError::RateLimited {
            retry_after_secs, ..
        }
        | ApiError::Overloaded {
            retry_after_secs, ..
        } = self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

//! How a hook is answered when it creates nothing: one error type whose variants
//! are the HTTP statuses a sender can act on, each with a sentence that says
//! what was wrong. Causes that are the provider's business (an unreachable API)
//! are logged in full and answered in general terms.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::ConfigError;

/// Largest hook body accepted; GitHub's payloads reach 25 MB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// 401: a missing or wrong signature or token.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: malformed JSON, a missing field or header; says which.
    #[error("{0}")]
    BadRequest(String),
    /// 404: this kind of hook is not configured.
    #[error("{0}")]
    NotConfigured(String),
    /// 413.
    #[error("the body is larger than {} MiB", MAX_BODY_BYTES / (1024 * 1024))]
    TooLarge,
    /// 408: the body did not arrive in time.
    #[error("the body did not arrive within {} s", .0.as_secs_f32())]
    TooSlow(std::time::Duration),
    /// 409: the environment is locked; the API's sentence says by whom and why.
    #[error("{0}")]
    Locked(String),
    /// 422: no application has the repository, or none has the environment.
    #[error("{0}")]
    Unmatched(String),
    /// 502: the API could not be asked (the cause is in the log).
    #[error("the Slipway API could not be reached or failed; nothing was created, try again")]
    ApiUnavailable,
    /// 500: the provider's own failure (the cause is in the log).
    #[error("the provider failed to record the deployment; try again")]
    Internal,
}

impl HookError {
    pub fn status(&self) -> StatusCode {
        match self {
            HookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HookError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HookError::NotConfigured(_) => StatusCode::NOT_FOUND,
            HookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HookError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            HookError::Locked(_) => StatusCode::CONFLICT,
            HookError::Unmatched(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HookError::ApiUnavailable => StatusCode::BAD_GATEWAY,
            HookError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable word for programs.
    pub fn code(&self) -> &'static str {
        match self {
            HookError::Unauthorized(_) => "unauthorized",
            HookError::BadRequest(_) => "bad_request",
            HookError::NotConfigured(_) => "not_configured",
            HookError::TooLarge => "too_large",
            HookError::TooSlow(_) => "too_slow",
            HookError::Locked(_) => "locked",
            HookError::Unmatched(_) => "unmatched",
            HookError::ApiUnavailable => "api_unavailable",
            HookError::Internal => "internal",
        }
    }
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code(), "message": self.to_string()});
        (self.status(), Json(body)).into_response()
    }
}

/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the status journal: {0}")]
    Journal(#[from] crate::statuses::journal::JournalError),
    #[error("cannot serve: {0}")]
    Serve(#[from] std::io::Error),
}

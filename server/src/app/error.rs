//! The one error type of the HTTP layer (the REST API, the sync endpoint's upgrade, the
//! dashboard's session check): each variant has one status and one stable `code`; our own
//! faults are logged in full and answered with a generic message.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::{EnrollmentError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required")]
    Unauthorized,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this device was revoked")]
    DeviceRevoked,
    /// The password was right; the second factor is missing or wrong.
    #[error("a valid second-factor code (or a recovery code) is required in `code`")]
    SecondFactor,
    /// Leitung (or everyone, where the organisation says so) must set up a second
    /// factor in the dashboard before anything else.
    #[error("set up a second factor in the dashboard (Mein Konto) first")]
    SecondFactorSetup,
    /// Only Leitung may do this.
    #[error("only Leitung may {0}")]
    LeitungOnly(&'static str),
    #[error("this endpoint is for {0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: Cow<'static, str>,
    },
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0}")]
    Gone(&'static str),
    /// Someone else won, or the request closed, before this answer.
    #[error("{0}")]
    Taken(&'static str),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported content type: send JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("too many attempts, try again later")]
    TooManyAttempts(Duration),
    #[error("at most {0} sync connections per device; close one first")]
    TooManyConnections(usize),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
    #[error("database error")]
    Store(#[from] StoreError),
}

impl From<crate::ratelimit::Refused> for Error {
    fn from(refused: crate::ratelimit::Refused) -> Self {
        match refused {
            crate::ratelimit::Refused::Wait(wait) => Self::TooManyAttempts(wait),
            crate::ratelimit::Refused::Store(e) => Self::Store(e),
        }
    }
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized
            | Self::DeviceRevoked
            | Self::InvalidCredentials
            | Self::SecondFactor => StatusCode::UNAUTHORIZED,
            Self::SecondFactorSetup | Self::LeitungOnly(_) => StatusCode::FORBIDDEN,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::Taken(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyAttempts(_) | Self::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            Self::Internal(_) | Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::DeviceRevoked => "device_revoked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::SecondFactor => "two_factor_required",
            Self::SecondFactorSetup => "two_factor_setup_required",
            Self::LeitungOnly(_) => "leitung_only",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::Invalid { .. } => "invalid_field",
            Self::Conflict(_) | Self::Store(StoreError::Conflict(_)) => "conflict",
            Self::Gone(_) => "gone",
            Self::Taken(m) if m.starts_with("another") => "already_taken",
            Self::Taken(_) => "request_closed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::Internal(_) | Self::Store(_) => "internal",
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: String,
    /// For the developer of the client; not meant for end users.
    pub message: String,
    /// The request field at fault, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Store(StoreError::Conflict(what)) => format!("{what} already exists"),
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; the server log has details".to_owned()
            }
            Self::Store(e) => {
                tracing::error!(error = %e, "storage error");
                "internal error; the server log has details".to_owned()
            }
            other => other.to_string(),
        };
        let field = match &self {
            Self::Invalid { field, .. } => Some((*field).to_owned()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyAttempts(wait) = self {
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<EnrollmentError> for Error {
    fn from(e: EnrollmentError) -> Self {
        match e {
            EnrollmentError::Unknown => {
                Self::bad_request("invalid_code", "unknown enrollment code; check for typos")
            }
            EnrollmentError::Used => Self::Gone(
                "this enrollment code was already used; ask your coordinator for a new one",
            ),
            EnrollmentError::Expired => {
                Self::Gone("this enrollment code has expired; ask your coordinator for a new one")
            }
            EnrollmentError::Inactive => Self::bad_request(
                "volunteer_inactive",
                "the volunteer of this code is not active",
            ),
            EnrollmentError::Store(e) => Self::Store(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

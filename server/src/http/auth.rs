//! Coordinator login and logout, and `/me` for both kinds of caller.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::app::AppState;
use crate::app::address::ClientAddr;
use crate::app::caller::{Caller, CoordinatorCaller, SESSION_COOKIE};
use crate::app::error::{Error, ErrorBody, Result};
use crate::app::login;
use crate::timefmt::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The six-digit code of the authenticator app, or a recovery code, for a
    /// coordinator with a second factor.
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; the same value is set as a cookie.
    pub token: String,
    pub coordinator_id: String,
    pub organisation_id: String,
    pub expires_at: Timestamp,
}

/// Log a coordinator in.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "Logged in; also sets the session cookie"),
        (status = 401, body = ErrorBody, description = "Wrong email or password (`invalid_credentials`), or the second factor is missing or wrong (`two_factor_required`)"),
        (status = 403, body = ErrorBody, description = "A second factor must be set up in the dashboard first (`two_factor_setup_required`)"),
        (status = 429, body = ErrorBody, description = "Too many failed attempts; see Retry-After"),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<LoginRequest>,
) -> Result<impl IntoResponse> {
    let coordinator = match login::password(&state, &body.email, body.password, client).await? {
        login::Step::Done(c) => c,
        login::Step::NeedsCode(c) => {
            let code = body.code.as_deref().ok_or(Error::SecondFactor)?;
            login::second_factor(&state, &c, code, client).await?;
            c
        }
    };
    // Leitung without a second factor gets no API session: the dashboard leads them
    // through setting one up.
    if !state.config.two_factor_optional && !coordinator.two_factor {
        let all = state
            .store
            .two_factor_for_all(&coordinator.organisation_id)
            .await?;
        if crate::team::needs_second_factor(&coordinator, all) {
            return Err(Error::SecondFactorSetup);
        }
    }
    let (token, expires_at) = login::open_session(&state, &coordinator).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, session_cookie(&state, &token)?);
    Ok((
        headers,
        axum::Json(LoginResponse {
            token,
            coordinator_id: coordinator.id,
            organisation_id: coordinator.organisation_id,
            expires_at: expires_at.into(),
        }),
    ))
}

pub fn session_cookie(state: &AppState, token: &str) -> Result<HeaderValue> {
    let secure = if state.config.insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    let max_age = state.config.session_ttl.as_secs();
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| Error::Internal(e.into()))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("lotse_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// End this session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<impl IntoResponse> {
    let ended = state.store.delete_session(&caller.session_hash).await?;
    state.access_shrank(ended);
    Ok((
        axum::http::StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    ))
}

#[derive(Serialize, ToSchema)]
pub struct LogoutAllResponse {
    pub sessions_ended: u64,
}

/// End every session of the calling coordinator, on all browsers.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth",
    responses((status = 200, body = LogoutAllResponse), (status = 401, body = ErrorBody)))]
async fn logout_all(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<impl IntoResponse> {
    let (sessions_ended, ended) = state.store.delete_sessions_of(caller.id()).await?;
    state.access_shrank(ended);
    Ok((
        [(header::SET_COOKIE, clear_cookie())],
        axum::Json(LogoutAllResponse { sessions_ended }),
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Me {
    Coordinator {
        coordinator_id: String,
        organisation_id: String,
        email: String,
        display_name: String,
        role: crate::store::Role,
        two_factor: bool,
        /// This session waits for a second factor to be set up in the dashboard; the
        /// API answers `two_factor_setup_required` until then.
        two_factor_setup_required: bool,
    },
    Device {
        device_id: String,
        device_name: String,
        volunteer_id: String,
        organisation_id: String,
    },
}

/// Who the caller is: a coordinator or a device.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses(
        (status = 200, body = Me),
        (status = 401, body = ErrorBody, description = "No valid token; `device_revoked` tells a revoked phone to wipe its data"),
    ))]
async fn me(caller: Caller) -> axum::Json<Me> {
    axum::Json(match caller {
        Caller::Coordinator(c) => Me::Coordinator {
            coordinator_id: c.coordinator.id,
            organisation_id: c.coordinator.organisation_id,
            email: c.coordinator.email,
            display_name: c.coordinator.display_name,
            role: c.coordinator.role,
            two_factor: c.coordinator.two_factor,
            two_factor_setup_required: c.second_factor_setup,
        },
        Caller::Device(d) => Me::Device {
            device_id: d.device.id,
            device_name: d.device.name,
            volunteer_id: d.device.volunteer_id,
            organisation_id: d.organisation_id,
        },
    })
}

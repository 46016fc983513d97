//! The team (`/api/v1/coordinators`): Leitung lists, invites, changes roles,
//! deactivates and makes password links; every coordinator changes their own password
//! (`/api/v1/me/password`). A Koordination calling a Leitung route gets 403
//! `leitung_only`. Links are shown once in the answer; with SMTP they are e-mailed too.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::app::AppState;
use crate::app::address::public_base;
use crate::app::caller::CoordinatorCaller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::app::team::IssuedLink;
use crate::store::{Coordinator, Role};
use crate::timefmt::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, invite))
        .routes(routes!(update))
        .routes(routes!(password_link))
        .routes(routes!(change_password))
}

#[derive(Serialize, ToSchema)]
pub struct CoordinatorView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// `active`, `invited` (no password chosen yet) or `deactivated`.
    pub status: &'static str,
    pub two_factor: bool,
}

impl From<Coordinator> for CoordinatorView {
    fn from(c: Coordinator) -> Self {
        let status = if !c.is_active() {
            "deactivated"
        } else if c.is_invited() {
            "invited"
        } else {
            "active"
        };
        Self {
            status,
            two_factor: c.two_factor,
            id: c.id,
            email: c.email,
            display_name: c.display_name,
            role: c.role,
        }
    }
}

/// The organisation's coordinators (Leitung only).
#[utoipa::path(get, path = "/api/v1/coordinators", tag = "team",
    responses((status = 200, body = Vec<CoordinatorView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not Leitung (`leitung_only`)")))]
async fn list(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<axum::Json<Vec<CoordinatorView>>> {
    caller.require_leitung("see the team")?;
    let all = state
        .store
        .coordinators_of(caller.organisation_id())
        .await?;
    Ok(axum::Json(all.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub email: String,
    pub display_name: String,
    /// Default `koordination`.
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct LinkIssued {
    pub coordinator: CoordinatorView,
    /// The one-time link to set a password. Shown once: hand it over in person when
    /// `emailed` is false.
    pub link: String,
    pub expires_at: Timestamp,
    /// The link was also queued for e-mail (SMTP is configured).
    pub emailed: bool,
}

impl From<IssuedLink> for LinkIssued {
    fn from(i: IssuedLink) -> Self {
        Self {
            coordinator: i.coordinator.into(),
            link: i.link,
            expires_at: i.expires_at.into(),
            emailed: i.emailed,
        }
    }
}

/// Invite a coordinator by a one-time link (Leitung only; audited).
#[utoipa::path(post, path = "/api/v1/coordinators", tag = "team", request_body = Invite,
    responses((status = 201, body = LinkIssued), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "The e-mail address has an account"),
        (status = 422, body = ErrorBody)))]
async fn invite(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    headers: HeaderMap,
    Json(body): Json<Invite>,
) -> Result<(StatusCode, axum::Json<LinkIssued>)> {
    let base = public_base(&state.config, &headers);
    let issued = state
        .invite_coordinator(
            &caller,
            &body.email,
            &body.display_name,
            body.role.unwrap_or(Role::Koordination),
            &base,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(issued.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCoordinator {
    pub role: Option<Role>,
    /// `false` deactivates: every session of theirs ends at once.
    pub active: Option<bool>,
    /// `true` removes their second factor (they set up a new one at their next login).
    #[serde(default)]
    pub reset_two_factor: bool,
}

/// Change a coordinator's role, deactivate or reactivate them, or reset their second
/// factor (Leitung only; audited). The organisation keeps at least one active Leitung
/// (409 `last_leitung` otherwise).
#[utoipa::path(patch, path = "/api/v1/coordinators/{id}", tag = "team", request_body = UpdateCoordinator,
    responses((status = 200, body = CoordinatorView), (status = 400, body = ErrorBody, description = "`last_leitung`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(id): Path<String>,
    Json(body): Json<UpdateCoordinator>,
) -> Result<axum::Json<CoordinatorView>> {
    caller.require_leitung("change the team")?;
    if let Some(role) = body.role {
        state.set_coordinator_role(&caller, &id, role).await?;
    }
    if let Some(active) = body.active {
        state.set_coordinator_active(&caller, &id, active).await?;
    }
    if body.reset_two_factor {
        state.reset_second_factor(&caller, &id).await?;
    }
    let c = state
        .store
        .coordinator_by_id(caller.organisation_id(), &id)
        .await?
        .ok_or(Error::NotFound("coordinator"))?;
    Ok(axum::Json(c.into()))
}

/// A new one-time link to set a password (a forgotten one, or an invitation that
/// lapsed); earlier links stop working (Leitung only; audited).
#[utoipa::path(post, path = "/api/v1/coordinators/{id}/password-link", tag = "team",
    responses((status = 201, body = LinkIssued), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn password_link(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<LinkIssued>)> {
    let base = public_base(&state.config, &headers);
    let issued = state.reset_link(&caller, &id, &base).await?;
    Ok((StatusCode::CREATED, axum::Json(issued.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// Change one's own password; every other session of the caller ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "team", request_body = ChangePassword,
    responses((status = 204), (status = 401, body = ErrorBody, description = "Wrong current password"),
        (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode> {
    state
        .change_own_password(&caller, body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

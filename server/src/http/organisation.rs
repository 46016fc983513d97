//! The organisation's own settings (`/api/v1/organisation/settings`), starting with the
//! device lease. Coordinators only; every change is audited.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::app::AppState;
use crate::app::caller::CoordinatorCaller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::store::OrganisationSettings;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
}

/// The settings of the caller's organisation.
#[utoipa::path(get, path = "/api/v1/organisation/settings", tag = "organisation",
    responses((status = 200, body = OrganisationSettings), (status = 401, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<axum::Json<OrganisationSettings>> {
    state
        .store
        .organisation_settings(caller.organisation_id())
        .await?
        .map(axum::Json)
        .ok_or(Error::NotFound("organisation"))
}

/// Fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// 1 to 365. Phones learn a new length at their next sync.
    pub device_lease_days: Option<i64>,
}

/// Change the organisation's settings (audited).
#[utoipa::path(patch, path = "/api/v1/organisation/settings", tag = "organisation",
    request_body = UpdateSettings,
    responses((status = 200, body = OrganisationSettings), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn update_settings(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<UpdateSettings>,
) -> Result<axum::Json<OrganisationSettings>> {
    let mut settings = state
        .store
        .organisation_settings(caller.organisation_id())
        .await?
        .ok_or(Error::NotFound("organisation"))?;
    if let Some(days) = body.device_lease_days {
        settings.device_lease_days = OrganisationSettings::check_lease_days(days)
            .map_err(|e| Error::invalid("device_lease_days", e.to_string()))?;
    }
    state
        .store
        .set_organisation_settings(caller.organisation_id(), caller.id(), &settings)
        .await?;
    tracing::info!(
        lease_days = settings.device_lease_days,
        "organisation settings changed"
    );
    Ok(axum::Json(settings))
}

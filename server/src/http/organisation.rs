//! The organisation's own settings (`/api/v1/organisation/settings`): the device lease and
//! the retention periods the purge job carries out. Coordinators only; every change is
//! audited.

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
    /// 0 to 120 months after closing before a closed case is deleted; 0 deletes closed
    /// cases at the next hourly purge.
    pub case_retention_months: Option<i64>,
    /// 0 to 730 days after a request is done, cancelled or expired before its contact,
    /// address, description and person label are erased; 0 erases at the next purge.
    pub request_retention_days: Option<i64>,
    /// 1 to 120 months the audit trail is kept.
    pub audit_retention_months: Option<i64>,
}

/// Change the organisation's settings (audited).
#[utoipa::path(patch, path = "/api/v1/organisation/settings", tag = "organisation",
    request_body = UpdateSettings,
    responses((status = 200, body = OrganisationSettings), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Leitung only (`leitung_only`)")))]
async fn update_settings(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<UpdateSettings>,
) -> Result<axum::Json<OrganisationSettings>> {
    caller.require_leitung("change the settings")?;
    let mut settings = state
        .store
        .organisation_settings(caller.organisation_id())
        .await?
        .ok_or(Error::NotFound("organisation"))?;
    type Check = fn(i64) -> Result<u32, crate::store::Invalid>;
    let fields: [(&'static str, Option<i64>, Check, &mut u32); 4] = [
        (
            "device_lease_days",
            body.device_lease_days,
            OrganisationSettings::check_lease_days,
            &mut settings.device_lease_days,
        ),
        (
            "case_retention_months",
            body.case_retention_months,
            OrganisationSettings::check_case_months,
            &mut settings.case_retention_months,
        ),
        (
            "request_retention_days",
            body.request_retention_days,
            OrganisationSettings::check_request_days,
            &mut settings.request_retention_days,
        ),
        (
            "audit_retention_months",
            body.audit_retention_months,
            OrganisationSettings::check_audit_months,
            &mut settings.audit_retention_months,
        ),
    ];
    for (name, value, check, field) in fields {
        if let Some(value) = value {
            *field = check(value).map_err(|e| Error::invalid(name, e.to_string()))?;
        }
    }
    state
        .store
        .set_organisation_settings(caller.organisation_id(), caller.id(), &settings)
        .await?;
    tracing::info!(
        lease_days = settings.device_lease_days,
        case_months = settings.case_retention_months,
        request_days = settings.request_retention_days,
        audit_months = settings.audit_retention_months,
        "organisation settings changed"
    );
    Ok(axum::Json(settings))
}

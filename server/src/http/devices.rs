//! Volunteers' phones: enrollment with a one-time code, listing, revocation.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Id, Json};
use super::volunteers::validate_name;
use crate::app::AppState;
use crate::app::address::ClientAddr;
use crate::app::caller::CoordinatorCaller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::auth::{self, DEVICE_PREFIX};
use crate::store::Device;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(list_devices))
        .routes(routes!(revoke))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The code the coordinator handed out, e.g. `7KQ2M-X9D4T`; case and dashes do not matter.
    pub code: String,
    /// Shown to the coordinator, e.g. "Samsung A52 von Amira".
    pub device_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollResponse {
    pub device_id: String,
    /// The device's credential; shown once, stored by the server only as a hash.
    pub token: String,
    pub volunteer_id: String,
}

/// Exchange an enrollment code for a device token (no authentication).
#[utoipa::path(post, path = "/api/v1/devices/enroll", tag = "devices", request_body = EnrollRequest,
    responses(
        (status = 201, body = EnrollResponse),
        (status = 400, body = ErrorBody, description = "Unknown or malformed code"),
        (status = 410, body = ErrorBody, description = "Code already used or expired"),
        (status = 429, body = ErrorBody, description = "Too many wrong codes from this address"),
    ))]
async fn enroll(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<EnrollRequest>,
) -> Result<(StatusCode, axum::Json<EnrollResponse>)> {
    let device_name = validate_name("device_name", &body.device_name)?;
    let key = format!("enroll-address:{}", client);
    // Counted before the code is tried, so that parallel guesses cannot slip through
    // between check and record; a code that works takes its count back.
    state.limits.enroll_address.attempt(&key).await?;
    let Some(code_hash) = auth::code_hash(&body.code) else {
        return Err(Error::bad_request(
            "invalid_code",
            "an enrollment code has 10 letters and digits, like 7KQ2M-X9D4T",
        ));
    };
    let token = auth::new_token(DEVICE_PREFIX);
    let enrolled = match state
        .store
        .enroll_device(&code_hash, &device_name, &auth::token_hash(&token))
        .await
    {
        Ok(d) => d,
        Err(e) => return Err(e.into()),
    };
    state.limits.enroll_address.refund(&key).await;
    tracing::info!(device_id = %enrolled.device.id, volunteer_id = %enrolled.device.volunteer_id, "device enrolled");
    Ok((
        StatusCode::CREATED,
        axum::Json(EnrollResponse {
            device_id: enrolled.device.id,
            token,
            volunteer_id: enrolled.device.volunteer_id,
        }),
    ))
}

/// The devices of a volunteer, with last contact and revocation.
#[utoipa::path(get, path = "/api/v1/volunteers/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "Volunteer id (UUID)")),
    responses((status = 200, body = Vec<Device>), (status = 404, body = ErrorBody)))]
async fn list_devices(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<axum::Json<Vec<Device>>> {
    state
        .store
        .devices_of(caller.organisation_id(), &id)
        .await?
        .map(axum::Json)
        .ok_or(Error::NotFound("volunteer"))
}

/// Revoke a device (a lost phone): its token stops working at once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<axum::Json<Device>> {
    let (device, shrunk) = state
        .store
        .revoke_device(caller.organisation_id(), caller.id(), &id)
        .await?
        .ok_or(Error::NotFound("device"))?;
    state.access_shrank(shrunk);
    tracing::info!(device_id = %device.id, "device revoked");
    Ok(axum::Json(device))
}

//! What a device asks about itself. What it may hold, for clients that do not speak the
//! catch-up extension (the
//! volunteers' web app on the stock automerge-repo client). `lotse-core` learns the same
//! from `lotse-catchup`'s manifest and the `lotse-deleted` notices; here the device names
//! the documents it holds and is told which it may hold, which of them the network
//! deleted, and where a rewritten case lives on. A held document that is neither listed
//! nor gone was withdrawn (or never existed for this device: the two are answered alike,
//! so the list reveals nothing of other volunteers' or organisations' documents); the
//! device drops it unless it created it itself and has not synced it yet, exactly as
//! `lotse-core` does after a catch-up.

use axum::extract::State;
use lotse_protocol::DocumentId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::app::AppState;
use crate::app::error::{Error, ErrorBody, Result};
use crate::store::{Access, EnrolledDevice, Slot, Viewer};

/// Far more than a volunteer's phone holds (their cases and schedule), and within the
/// API's body limit; a longer list is refused rather than checked one by one.
const MAX_HELD: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_documents))
        .routes(routes!(own_availability, set_own_availability))
}

/// The volunteer's weekly availability, as the matching of requests uses it.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    pub availability: Vec<Slot>,
}

/// The calling device's volunteer's weekly availability.
#[utoipa::path(get, path = "/api/v1/device/availability", tag = "devices",
    responses((status = 200, body = Availability), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn own_availability(
    State(state): State<AppState>,
    device: EnrolledDevice,
) -> Result<axum::Json<Availability>> {
    let v = state
        .store
        .volunteer(&device.organisation_id, &device.device.volunteer_id)
        .await?
        .ok_or(Error::NotFound("volunteer"))?;
    Ok(axum::Json(Availability {
        availability: v.availability,
    }))
}

/// The volunteer sets their own weekly availability from their device (audited as the
/// device's); the ranking of candidates for requests uses it at once.
#[utoipa::path(put, path = "/api/v1/device/availability", tag = "devices", request_body = Availability,
    responses((status = 200, body = Availability), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_own_availability(
    State(state): State<AppState>,
    device: EnrolledDevice,
    Json(body): Json<Availability>,
) -> Result<axum::Json<Availability>> {
    let slots = super::volunteers::validate_availability(&body.availability)?;
    let saved = state
        .store
        .set_own_availability(
            &device.organisation_id,
            &device.device.id,
            &device.device.volunteer_id,
            &slots,
        )
        .await?;
    if !saved {
        return Err(Error::NotFound("volunteer"));
    }
    Ok(axum::Json(Availability {
        availability: slots,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Held {
    /// The ids (bs58check) of the documents the device holds now.
    pub held: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceDocuments {
    /// The `schema` version the server reads and writes; an app that knows an older one
    /// updates itself before it writes.
    pub schema_version: u64,
    /// The device lease (ms): a device that has not reached the server for this long
    /// destroys what it holds, as `lotse-core` does with `lotse-lease`. 0: no lease.
    pub lease_ms: u64,
    /// Every document the device may hold, to sync, with the heads the server holds
    /// (so the device can tell what it has not handed over yet).
    pub documents: Vec<Listed>,
    /// Held documents the network deleted or rewrote.
    pub gone: Vec<Gone>,
}

#[derive(Serialize, ToSchema)]
pub struct Listed {
    pub id: String,
    /// Change hashes, hex.
    pub heads: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Gone {
    pub id: String,
    /// `deleted` (the network deleted it: drop it and what was typed into it) or
    /// `replaced` (rewritten as `successor`: replay what was typed offline onto the
    /// successor, then drop this one).
    pub reason: &'static str,
    pub successor: Option<String>,
    /// For `replaced`: the hashes (hex) of the changes of this document the server held
    /// when it rewrote it. The device's other changes were made offline and are replayed
    /// onto the successor (`protocol::schema::generation::replay` is the reference).
    pub known: Option<Vec<String>>,
}

/// The documents this device may hold, and which of those it holds it must drop.
#[utoipa::path(post, path = "/api/v1/device/documents", tag = "devices", request_body = Held,
    responses((status = 200, body = DeviceDocuments), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn device_documents(
    State(state): State<AppState>,
    device: EnrolledDevice,
    Json(body): Json<Held>,
) -> Result<axum::Json<DeviceDocuments>> {
    if body.held.len() > MAX_HELD {
        return Err(Error::invalid("held", format!("at most {MAX_HELD} ids")));
    }
    let held: Vec<DocumentId> = body
        .held
        .iter()
        .map(|raw| raw.parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::invalid("held", "document ids in bs58check"))?;
    let viewer = Viewer {
        organisation_id: device.organisation_id.clone(),
        volunteer_id: Some(device.device.volunteer_id.clone()),
    };
    let allowed = state.store.documents_for(&viewer).await?;
    let listed: std::collections::HashSet<&DocumentId> = allowed.iter().map(|(id, _)| id).collect();
    let lease_ms = state
        .store
        .organisation_settings(&viewer.organisation_id)
        .await?
        .unwrap_or_default()
        .lease_ms();
    let mut gone = Vec::new();
    for id in &held {
        if listed.contains(id) {
            continue;
        }
        let (reason, successor) = match state.store.document_access(&viewer, id).await? {
            // Withdrawn, unknown (perhaps created offline and not synced yet), or shared
            // between the two reads: the device tells these apart itself.
            Access::Allowed(_) | Access::Unknown | Access::Denied => continue,
            Access::Deleted => match state.store.successor(&viewer.organisation_id, id).await? {
                Some(s) => (
                    "replaced",
                    Some((
                        s.document_id.to_string(),
                        s.known.to_bytes().chunks(32).map(hex::encode).collect(),
                    )),
                ),
                None => ("deleted", None),
            },
        };
        let (successor, known) = successor.unzip();
        gone.push(Gone {
            id: id.to_string(),
            reason,
            successor,
            known,
        });
    }
    Ok(axum::Json(DeviceDocuments {
        schema_version: lotse_protocol::schema::SCHEMA_VERSION,
        lease_ms,
        documents: allowed
            .iter()
            .map(|(id, heads)| Listed {
                id: id.to_string(),
                heads: heads.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        gone,
    }))
}

//! `GET /api/v1/cases/{id}/export` and `GET /api/v1/volunteers/{id}/export`: Art. 15
//! DSGVO access exports as JSON (coordinators only). The export's audit line is written
//! before any of it leaves.

use axum::extract::{Path, State};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;
use crate::app::caller::{Caller, CoordinatorCaller};
use crate::app::error::{Error, ErrorBody, Result};
use crate::exports;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(case_export))
        .routes(routes!(volunteer_export))
}

/// Everything the network holds about the person a case helps: notes, appointments and
/// hours (with who wrote them), the request it came from and the case's audit trail.
#[utoipa::path(get, path = "/api/v1/cases/{id}/export", tag = "cases",
    params(("id" = String, Path, description = "Document id (bs58check) or automerge: URL")),
    responses((status = 200, description = "The case export (JSON)"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn case_export(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
) -> Result<axum::Json<exports::CaseExport>> {
    let org = caller.organisation_id().to_owned();
    let id = super::cases::current_document(&state, &org, &raw).await?;
    let export = exports::case(&state, &org, id)
        .await?
        .ok_or(Error::NotFound("case"))?;
    state
        .store
        .audit(&[Caller::Coordinator(caller).audit("document.export", &id.to_string())])
        .await?;
    Ok(axum::Json(export))
}

/// Everything the network holds about a volunteer: profile and trainings, devices, the
/// hours they wrote in any case, their offers, and the audit lines about them and by
/// their devices.
#[utoipa::path(get, path = "/api/v1/volunteers/{id}/export", tag = "volunteers",
    params(("id" = String, Path, description = "Volunteer id")),
    responses((status = 200, description = "The volunteer export (JSON)"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn volunteer_export(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(id): Path<String>,
) -> Result<axum::Json<exports::VolunteerExport>> {
    let org = caller.organisation_id().to_owned();
    let export = exports::volunteer(&state, &org, &id)
        .await?
        .ok_or(Error::NotFound("volunteer"))?;
    let line = Caller::Coordinator(caller).audit_of("volunteer.export", "volunteer", &id);
    state.store.audit(&[line]).await?;
    Ok(axum::Json(export))
}

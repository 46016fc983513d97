//! Erasing one entry from a case's history, and compacting a case: both write the case's
//! next generation (docs/sync.md). Coordinators only. The case keeps its id; the answer
//! names the document that holds it now.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/cases/{id}/notes/{note_id}/erase` | erases a note (text and history) |
//! | `POST /api/v1/cases/{id}/appointments/{appointment_id}/erase` | erases an appointment |
//! | `POST /api/v1/cases/{id}/hours/{hours_id}/erase` | erases an hours entry |
//! | `POST /api/v1/cases/{id}/compact` | drops the history, erases nothing |

use axum::Json;
use axum::extract::{Path, State};
use lotse_protocol::DocumentId;
use lotse_protocol::schema::generation::{EntryKind, EntryRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;
use crate::app::caller::{Caller, CoordinatorCaller};
use crate::app::error::{Error, ErrorBody, Result};
use crate::hub::HubError;
use crate::store::{DeletionReason, GenerationReason};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(erase_note))
        .routes(routes!(erase_appointment))
        .routes(routes!(erase_hours))
        .routes(routes!(compact))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Erase {
    /// `mistake` (written into the wrong case, or wrong: Art. 16 DSGVO), `person-asked`
    /// (Art. 17 DSGVO) or `other`. Kept in the tombstone of the old generation.
    pub reason: Option<String>,
}

/// The case after its rewrite.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// The case's id: the same before and after.
    pub id: String,
    /// The document that holds the case now.
    pub document_id: String,
    /// `automerge:` URL of that document, for automerge-repo clients.
    pub url: String,
}

/// Erase a note from the case and its history: the server writes the case anew without
/// it, phones replace their copy (replaying what they typed offline) and the old
/// document is deleted everywhere.
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes/{note_id}/erase", tag = "cases",
    params(("id" = String, Path, description = "Case id or any generation's document id"),
        ("note_id" = String, Path, description = "The note's id")),
    request_body = Erase,
    responses((status = 200, body = Generation), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn erase_note(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, entry)): Path<(String, String)>,
    Json(body): Json<Erase>,
) -> Result<Json<Generation>> {
    erase(
        &state,
        caller,
        &raw,
        EntryRef::new(EntryKind::Note, entry),
        &body,
    )
    .await
}

/// Erase an appointment from the case and its history (see the note's erasure).
#[utoipa::path(post, path = "/api/v1/cases/{id}/appointments/{appointment_id}/erase", tag = "cases",
    params(("id" = String, Path, description = "Case id or any generation's document id"),
        ("appointment_id" = String, Path, description = "The appointment's id")),
    request_body = Erase,
    responses((status = 200, body = Generation), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn erase_appointment(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, entry)): Path<(String, String)>,
    Json(body): Json<Erase>,
) -> Result<Json<Generation>> {
    let entry = EntryRef::new(EntryKind::Appointment, entry);
    erase(&state, caller, &raw, entry, &body).await
}

/// Erase an hours entry from the case and its history (see the note's erasure). The
/// reports count the case without it from then on.
#[utoipa::path(post, path = "/api/v1/cases/{id}/hours/{hours_id}/erase", tag = "cases",
    params(("id" = String, Path, description = "Case id or any generation's document id"),
        ("hours_id" = String, Path, description = "The hours entry's id")),
    request_body = Erase,
    responses((status = 200, body = Generation), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn erase_hours(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, entry)): Path<(String, String)>,
    Json(body): Json<Erase>,
) -> Result<Json<Generation>> {
    erase(
        &state,
        caller,
        &raw,
        EntryRef::new(EntryKind::Hours, entry),
        &body,
    )
    .await
}

/// Compact a case: the same rewrite with nothing erased, so that phones' first sync of a
/// case with a long history stays small. Every phone of the case fetches it anew.
#[utoipa::path(post, path = "/api/v1/cases/{id}/compact", tag = "cases",
    params(("id" = String, Path, description = "Case id or any generation's document id")),
    responses((status = 200, body = Generation), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn compact(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
) -> Result<Json<Generation>> {
    rewrite(&state, caller, &raw, &[], GenerationReason::Compacted).await
}

async fn erase(
    state: &AppState,
    caller: CoordinatorCaller,
    raw: &str,
    entry: EntryRef,
    body: &Erase,
) -> Result<Json<Generation>> {
    let reason = match body.reason.as_deref() {
        None => DeletionReason::Other,
        Some(code) => DeletionReason::from_code(code)
            .filter(|r| *r != DeletionReason::Retention)
            .ok_or_else(|| Error::invalid("reason", "must be mistake, person-asked or other"))?,
    };
    if entry.id.is_empty() || entry.id.len() > 128 {
        return Err(Error::NotFound(entry.kind.as_str()));
    }
    rewrite(
        state,
        caller,
        raw,
        std::slice::from_ref(&entry),
        GenerationReason::Erased(reason),
    )
    .await
}

/// The document that holds the case `raw` names now, in the caller's organisation.
pub(crate) async fn current(
    state: &AppState,
    organisation_id: &str,
    raw: &str,
) -> Result<DocumentId> {
    let id: DocumentId = DocumentId::from_url(raw)
        .or_else(|_| raw.parse())
        .map_err(|_| Error::NotFound("case"))?;
    state
        .store
        .current_generation(organisation_id, &id)
        .await?
        .ok_or(Error::NotFound("case"))
}

async fn rewrite(
    state: &AppState,
    caller: CoordinatorCaller,
    raw: &str,
    erase: &[EntryRef],
    reason: GenerationReason,
) -> Result<Json<Generation>> {
    let org = caller.organisation_id().to_owned();
    let id = current(state, &org, raw).await?;
    let action = match reason {
        GenerationReason::Erased(_) => "document.erase",
        GenerationReason::Compacted => "document.compact",
    };
    let caller = Caller::Coordinator(caller);
    let rewritten = state
        .hub
        .rewrite(&org, &id, erase, reason, |case| caller.audit(action, case))
        .await
        .map_err(|e| match e {
            HubError::NoSuchEntry(entry) => Error::NotFound(entry.kind.as_str()),
            HubError::Storage(e) => Error::Store(e),
            HubError::NotACase(_) => Error::NotFound("case"),
            other => Error::Internal(anyhow::anyhow!(other.to_string())),
        })?
        .ok_or(Error::NotFound("case"))?;
    Ok(Json(Generation {
        id: rewritten.case_id,
        document_id: rewritten.new.to_string(),
        url: rewritten.new.to_url(),
    }))
}

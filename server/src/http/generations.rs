//! Erasing one entry from a case's history, and compacting a case: both write the case's
//! next generation (docs/sync.md). Coordinators only. The case keeps its id; the answer
//! names the document that holds it now.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/cases/{id}/notes/{note_id}/erase` | erases a note (text and history) |
//! | `POST /api/v1/cases/{id}/appointments/{appointment_id}/erase` | erases an appointment |
//! | `POST /api/v1/cases/{id}/hours/{hours_id}/erase` | erases an hours entry |
//!
//! (one handler: `{entries}` is `notes`, `appointments` or `hours`)
//! | `POST /api/v1/cases/{id}/compact` | drops the history, erases nothing |

use axum::Json;
use axum::extract::{Path, State};
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
        .routes(routes!(erase))
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

/// The entry maps of a case, as the erase route names them.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Entries {
    Notes,
    Appointments,
    Hours,
}

impl From<Entries> for EntryKind {
    fn from(e: Entries) -> Self {
        match e {
            Entries::Notes => EntryKind::Note,
            Entries::Appointments => EntryKind::Appointment,
            Entries::Hours => EntryKind::Hours,
        }
    }
}

/// Erase a note, an appointment or an hours entry from the case and its history: the
/// server writes the case anew without it, phones move onto the new document (replaying
/// what they typed offline) and the old document is deleted everywhere. The reports count
/// the case without it from then on.
#[utoipa::path(post, path = "/api/v1/cases/{id}/{entries}/{entry_id}/erase", tag = "cases",
    params(("id" = String, Path, description = "Case id or any generation's document id"),
        ("entries" = Entries, Path, description = "notes, appointments or hours"),
        ("entry_id" = String, Path, description = "The entry's id")),
    request_body = Erase,
    responses((status = 200, body = Generation), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Leitung only (`leitung_only`)")))]
async fn erase(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, entries, entry)): Path<(String, Entries, String)>,
    Json(body): Json<Erase>,
) -> Result<Json<Generation>> {
    caller.require_leitung("erase entries")?;
    let reason = match body.reason.as_deref() {
        None => DeletionReason::Other,
        Some(code) => DeletionReason::from_code(code)
            .filter(|r| *r != DeletionReason::Retention)
            .ok_or_else(|| Error::invalid("reason", "must be mistake, person-asked or other"))?,
    };
    let entry = EntryRef::new(entries.into(), entry);
    if entry.id.is_empty() || entry.id.len() > 128 {
        return Err(Error::NotFound(entry.kind.as_str()));
    }
    rewrite(
        &state,
        caller,
        &raw,
        std::slice::from_ref(&entry),
        GenerationReason::Erased(reason),
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

async fn rewrite(
    state: &AppState,
    caller: CoordinatorCaller,
    raw: &str,
    erase: &[EntryRef],
    reason: GenerationReason,
) -> Result<Json<Generation>> {
    let org = caller.organisation_id().to_owned();
    let id = super::cases::current_document(state, &org, raw).await?;
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

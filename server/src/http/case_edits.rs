//! What a coordinator writes into a case (issue 18): notes and appointments, as automerge
//! changes the server makes on the coordinator's behalf (`Hub::edit_case`), so they merge
//! with what phones typed offline and reach them like any other change. Coordinators
//! only; every edit writes its audit line (`document.change`, naming the case, never the
//! content) once the change is stored.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/cases/{id}/notes` `{text}` | adds a coordinator's note |
//! | `PATCH /api/v1/cases/{id}/notes/{note_id}` `{text}` | replaces a note's text (only what differs is written) |
//! | `POST /api/v1/cases/{id}/appointments` | adds an appointment |
//! | `PATCH /api/v1/cases/{id}/appointments/{appointment_id}` | moves, renames or cancels one |
//! | `PATCH /api/v1/cases/{id}/hours/{hours_id}` | corrects an hours entry, with a reason |
//! | `DELETE /api/v1/cases/{id}/hours/{hours_id}?reason=` | removes one, with a reason |

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::schema::{
    AppointmentId, AppointmentUpdate, Correction, HoursChange, HoursId, NewAppointment, NoteId,
};
use lotse_protocol::{CaseDoc, NewNote, SchemaError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::AppState;
use crate::app::caller::{Caller, CoordinatorCaller};
use crate::app::error::{Error, ErrorBody, Result};
use crate::hub::HubError;
use crate::store::now_ms;
use crate::timefmt::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_note))
        .routes(routes!(edit_note))
        .routes(routes!(add_appointment))
        .routes(routes!(change_appointment))
        .routes(routes!(correct_hours, remove_hours))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteText {
    /// Up to 100,000 characters.
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppointmentBody {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Where (up to 200 characters), e.g. "Ausländerbehörde, Zimmer 3".
    #[serde(default)]
    pub place: String,
    /// What for (up to 200 characters).
    #[serde(default)]
    pub purpose: String,
}

/// Fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentChange {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub place: Option<String>,
    pub purpose: Option<String>,
    pub cancelled: Option<bool>,
}

/// The id of what was added.
#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    pub id: String,
}

/// Add a coordinator's note to a case; it reaches the phones of the case like any note.
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", request_body = NoteText,
    params(("id" = String, Path, description = "Case id or any of its document ids")),
    responses((status = 201, body = Added), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn add_note(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
    Json(body): Json<NoteText>,
) -> Result<(StatusCode, Json<Added>)> {
    let note = NewNote {
        author: caller.id().to_owned(),
        text: body.text,
    };
    let id = edit(&state, caller, &raw, |doc| {
        CaseDoc::add_note(doc, &note, now_ms())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Added { id: id.to_string() })))
}

/// Replace a note's text. Only the characters that differ are written, so an edit of the
/// same note on a phone at the same time keeps its own changes.
#[utoipa::path(patch, path = "/api/v1/cases/{id}/notes/{note_id}", tag = "cases", request_body = NoteText,
    params(("id" = String, Path, description = "Case id or any of its document ids"),
        ("note_id" = String, Path, description = "The note's id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn edit_note(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, note)): Path<(String, String)>,
    Json(body): Json<NoteText>,
) -> Result<StatusCode> {
    let note = NoteId::new(note);
    edit(&state, caller, &raw, |doc| {
        CaseDoc::set_note_text(doc, &note, &body.text, now_ms())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add an appointment to a case.
#[utoipa::path(post, path = "/api/v1/cases/{id}/appointments", tag = "cases",
    request_body = NewAppointmentBody,
    params(("id" = String, Path, description = "Case id or any of its document ids")),
    responses((status = 201, body = Added), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn add_appointment(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
    Json(body): Json<NewAppointmentBody>,
) -> Result<(StatusCode, Json<Added>)> {
    let new = NewAppointment {
        start: body.start.ms(),
        end: body.end.ms(),
        place: body.place,
        purpose: body.purpose,
        case_id: None,
    };
    let id = edit(&state, caller, &raw, |doc| {
        CaseDoc::add_appointment(doc, &new, now_ms())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Added { id: id.to_string() })))
}

/// Move, rename or cancel an appointment.
#[utoipa::path(patch, path = "/api/v1/cases/{id}/appointments/{appointment_id}", tag = "cases",
    request_body = AppointmentChange,
    params(("id" = String, Path, description = "Case id or any of its document ids"),
        ("appointment_id" = String, Path, description = "The appointment's id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn change_appointment(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, appointment)): Path<(String, String)>,
    Json(body): Json<AppointmentChange>,
) -> Result<StatusCode> {
    let id = AppointmentId::new(appointment);
    let update = AppointmentUpdate {
        start: body.start.map(Timestamp::ms),
        end: body.end.map(Timestamp::ms),
        place: body.place,
        purpose: body.purpose,
        cancelled: body.cancelled,
    };
    edit(&state, caller, &raw, |doc| {
        CaseDoc::update_appointment(doc, &id, &update, now_ms())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why a coordinator corrects or removes hours: `duplicate`, `wrong-amount`,
/// `wrong-date`, `wrong-case` or `other`. Kept in the entry, so the volunteer sees it.
const HOURS_REASONS: [&str; 5] = [
    "duplicate",
    "wrong-amount",
    "wrong-date",
    "wrong-case",
    "other",
];

fn hours_reason(reason: &str) -> Result<String> {
    HOURS_REASONS
        .contains(&reason)
        .then(|| reason.to_owned())
        .ok_or_else(|| {
            Error::invalid(
                "reason",
                "must be duplicate, wrong-amount, wrong-date, wrong-case or other",
            )
        })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursCorrection {
    /// `YYYY-MM-DD`.
    pub date: Option<String>,
    /// 1 to 1440.
    pub minutes: Option<u32>,
    /// 0 to 1440.
    pub travel_minutes: Option<u32>,
    pub kind: Option<String>,
    /// `duplicate`, `wrong-amount`, `wrong-date`, `wrong-case` or `other`.
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveHours {
    /// `duplicate`, `wrong-amount`, `wrong-date`, `wrong-case` or `other`.
    pub reason: String,
}

/// Correct an hours entry (coordinators), with a reason the volunteer sees in the entry.
/// The statements and reports count the corrected figures.
#[utoipa::path(patch, path = "/api/v1/cases/{id}/hours/{hours_id}", tag = "cases",
    request_body = HoursCorrection,
    params(("id" = String, Path, description = "Case id or any of its document ids"),
        ("hours_id" = String, Path, description = "The hours entry's id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn correct_hours(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, hours)): Path<(String, String)>,
    Json(body): Json<HoursCorrection>,
) -> Result<StatusCode> {
    let why = Correction {
        reason: hours_reason(&body.reason)?,
        by: caller.id().to_owned(),
        at: now_ms(),
    };
    let change = HoursChange {
        date: body.date,
        minutes: body.minutes,
        travel_minutes: body.travel_minutes,
        kind: body.kind,
    };
    let id = HoursId::new(hours);
    edit(&state, caller, &raw, |doc| {
        CaseDoc::correct_hours(doc, &id, &change, &why, now_ms())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove an hours entry (coordinators), with a reason: it stays in the case marked as
/// removed, so the volunteer sees what was removed and why; statements and reports leave
/// it out.
#[utoipa::path(delete, path = "/api/v1/cases/{id}/hours/{hours_id}", tag = "cases",
    params(("id" = String, Path, description = "Case id or any of its document ids"),
        ("hours_id" = String, Path, description = "The hours entry's id"), RemoveHours),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn remove_hours(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path((raw, hours)): Path<(String, String)>,
    Query(q): Query<RemoveHours>,
) -> Result<StatusCode> {
    let why = Correction {
        reason: hours_reason(&q.reason)?,
        by: caller.id().to_owned(),
        at: now_ms(),
    };
    let id = HoursId::new(hours);
    edit(&state, caller, &raw, |doc| {
        CaseDoc::remove_hours(doc, &id, &why, now_ms())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Writes `change` into the case `raw` names, as the calling coordinator, and its audit
/// line.
pub(super) async fn edit<T>(
    state: &AppState,
    caller: CoordinatorCaller,
    raw: &str,
    change: impl FnOnce(&mut Automerge) -> std::result::Result<T, SchemaError>,
) -> Result<T> {
    let org = caller.organisation_id().to_owned();
    let id = super::cases::current_document(state, &org, raw).await?;
    let caller = Caller::Coordinator(caller);
    let out = state
        .hub
        .edit_case(&org, &id, &caller.writer(), change)
        .await
        .map_err(|e| match e {
            HubError::Invalid(SchemaError::NotFound { kind, .. }) => Error::NotFound(kind),
            HubError::Invalid(e) => Error::invalid("body", e.to_string()),
            HubError::Storage(e) => Error::Store(e),
            other => Error::Internal(anyhow::anyhow!(other.to_string())),
        })?
        .ok_or(Error::NotFound("case"))?;
    state
        .store
        .audit(&[caller.audit("document.change", &id.to_string())])
        .await?;
    Ok(out)
}

//! Cases (Begleitungen): created by a coordinator as automerge documents, synced with the
//! assigned volunteers' phones, read back as JSON as the server holds them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use lotse_protocol::{CaseDoc, DocumentId, NewCase, Status, Topic};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use super::volunteers::{validate_languages, validate_name};
use crate::app::AppState;
use crate::app::caller::{Caller, CoordinatorCaller};
use crate::app::error::{Error, ErrorBody, Result};
use crate::hub::HubError;
use crate::store::{Access, CaseRow, DeletionReason, ReassignError, SubjectAuditEvent, Viewer};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_case, list_cases))
        .routes(routes!(get_case, delete_case, change_case))
        .routes(routes!(set_volunteers))
        .routes(routes!(case_audit))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    /// Pseudonymous label of the person helped: initials or a code, never a full name.
    pub label: String,
    /// One of gesundheit, bildung, erziehung, arbeit, beruf, soziales, wohnen, behoerden.
    pub topic: String,
    pub languages: Vec<String>,
    /// Volunteers whose devices may sync the case.
    #[serde(default)]
    pub volunteer_ids: Vec<String>,
    /// `einzelbegleitung` (the default), `patenschaft` (long-term mentoring) or
    /// `sprachmittlung` (language mediation).
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedCase {
    /// The automerge document id (bs58check).
    pub id: String,
    /// `automerge:<id>`, as automerge-repo clients address documents.
    pub url: String,
}

/// A document id from the path: bs58check or an `automerge:` URL.
pub(super) fn document_id(raw: &str) -> Result<DocumentId> {
    DocumentId::from_url(raw)
        .or_else(|_| raw.parse())
        .map_err(|_| Error::bad_request("invalid_id", format!("{raw:?} is not a document id")))
}

/// The document that holds the case `raw` names now: a case keeps its id across its
/// generations (docs/sync.md), and any earlier generation's id leads to the newest.
/// Another organisation's or an unknown id stays as asked (its access check says 404).
pub(super) async fn current_document(
    state: &AppState,
    organisation_id: &str,
    raw: &str,
) -> Result<DocumentId> {
    let asked = document_id(raw)?;
    Ok(state
        .store
        .current_generation(organisation_id, &asked)
        .await?
        .unwrap_or(asked))
}

fn hub_error(e: HubError) -> Error {
    match e {
        HubError::Storage(e) => Error::Store(e),
        other => Error::Internal(anyhow::anyhow!(other.to_string())),
    }
}

/// Create a case document and share it with volunteers.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = CreateCase,
    responses((status = 201, body = CreatedCase), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_case(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<CreateCase>,
) -> Result<(StatusCode, axum::Json<CreatedCase>)> {
    let label = validate_name("label", &body.label)?;
    if label.chars().count() > 40 {
        return Err(Error::invalid(
            "label",
            "a short pseudonymous label (at most 40 characters), e.g. initials",
        ));
    }
    let topic: Topic = body.topic.trim().to_lowercase().parse().map_err(|_| {
        Error::invalid(
            "topic",
            format!(
                "{:?} is not a topic; use one of {}",
                body.topic,
                super::TOPICS.join(", ")
            ),
        )
    })?;
    let languages = validate_languages("languages", &body.languages)?;
    let mut volunteers: Vec<String> = Vec::new();
    for raw in &body.volunteer_ids {
        let id = uuid::Uuid::parse_str(raw)
            .map_err(|_| Error::invalid("volunteer_ids", format!("{raw:?} is not a volunteer id")))?
            .hyphenated()
            .to_string();
        if !volunteers.contains(&id) {
            volunteers.push(id);
        }
    }
    let new = NewCase {
        organisation_id: caller.organisation_id().to_owned(),
        label,
        languages,
        topic,
        status: Status::Active,
    };
    let kind = body.kind.as_deref().unwrap_or("einzelbegleitung");
    let id = state
        .create_case(&caller, new, kind, &volunteers)
        .await?
        .map_err(|id| {
            Error::invalid(
                "volunteer_ids",
                format!("no active volunteer {id} in your organisation"),
            )
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedCase {
            id: id.to_string(),
            url: id.to_url(),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseVolunteers {
    /// Every volunteer who works on the case from now on (the full list; `[]` takes
    /// everybody off).
    pub volunteer_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseVolunteersChanged {
    /// Now on the case, sorted.
    pub volunteer_ids: Vec<String>,
    /// Their phones receive the case as with a new share.
    pub added: Vec<String>,
    /// Their connected devices stop receiving the case at once; their phones delete it
    /// and its key at their next contact.
    pub removed: Vec<String>,
}

/// Take volunteers off a case and add others: replaces the case's volunteers.
#[utoipa::path(put, path = "/api/v1/cases/{id}/volunteers", tag = "cases", request_body = CaseVolunteers,
    params(("id" = String, Path, description = "Document id (bs58check) or automerge: URL")),
    responses((status = 200, body = CaseVolunteersChanged), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn set_volunteers(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
    Json(body): Json<CaseVolunteers>,
) -> Result<axum::Json<CaseVolunteersChanged>> {
    let id = current_document(&state, caller.organisation_id(), &raw).await?;
    let mut volunteers = Vec::with_capacity(body.volunteer_ids.len());
    for raw in &body.volunteer_ids {
        let v = uuid::Uuid::parse_str(raw).map_err(|_| {
            Error::invalid("volunteer_ids", format!("{raw:?} is not a volunteer id"))
        })?;
        volunteers.push(v.hyphenated().to_string());
    }
    let done = state
        .set_case_volunteers(caller.organisation_id(), caller.id(), &id, &volunteers)
        .await
        .map_err(|e| match e {
            ReassignError::NotFound => Error::NotFound("case"),
            ReassignError::NotAVolunteer(_) => Error::invalid("volunteer_ids", e.to_string()),
            ReassignError::Store(e) => Error::Store(e),
        })?;
    Ok(axum::Json(CaseVolunteersChanged {
        volunteer_ids: done.volunteer_ids,
        added: done.added,
        removed: done.removed,
    }))
}

/// The cases of the caller's organisation, as the dashboard index holds them.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases",
    responses((status = 200, body = Vec<CaseRow>), (status = 401, body = ErrorBody)))]
async fn list_cases(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<axum::Json<Vec<CaseRow>>> {
    Ok(axum::Json(
        state.store.cases(caller.organisation_id()).await?,
    ))
}

/// A case's current content (notes, appointments, hours) as the server holds it after
/// sync. `id` is the case's id, which stays the same when the case is rewritten (an entry
/// erased from its history); `documentId` and `url` name the document holding it now. Any
/// earlier document id of the case answers with the case as well.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases",
    params(("id" = String, Path, description = "Case id, any of its document ids (bs58check) or automerge: URL")),
    responses((status = 200, description = "The case document as JSON (camelCase, as in the document)"),
        (status = 404, body = ErrorBody)))]
async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<axum::Json<serde_json::Value>> {
    let viewer = match &caller {
        Caller::Coordinator(c) => Viewer {
            organisation_id: c.coordinator.organisation_id.clone(),
            volunteer_id: None,
        },
        Caller::Device(d) => Viewer {
            organisation_id: d.organisation_id.clone(),
            volunteer_id: Some(d.device.volunteer_id.clone()),
        },
    };
    let id = current_document(&state, &viewer.organisation_id, &raw).await?;
    let Access::Allowed(_) = state.store.document_access(&viewer, &id).await? else {
        return Err(Error::NotFound("case"));
    };
    let case_id = state.store.case_of(&id).await?;
    // Written before the content leaves: no read without its audit line.
    state
        .store
        .audit(&[caller.audit("document.read", &id.to_string())])
        .await?;
    let (view, by) = crate::exports::read_attributed(&state, &viewer.organisation_id, id)
        .await?
        .ok_or(Error::NotFound("case"))?;
    let mut json = serde_json::to_value(&view).map_err(|e| Error::Internal(e.into()))?;
    if let Some(obj) = json.as_object_mut() {
        // The case's id for good, and the document that holds it now (for automerge-repo
        // clients: a rewritten case lives on in a new document).
        obj.insert("id".into(), serde_json::Value::String(case_id));
        obj.insert("documentId".into(), id.to_string().into());
        obj.insert("url".into(), id.to_url().into());
        attribute_entries(obj.get_mut("notes"), |id, claimed| by.note(id, claimed));
        attribute_entries(obj.get_mut("hours"), |id, claimed| by.hours(id, claimed));
    }
    Ok(axum::Json(json))
}

/// Fields left out stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseChange {
    /// `active`, `paused` or `closed`.
    #[schema(value_type = Option<String>)]
    pub status: Option<lotse_protocol::Status>,
    /// Pseudonymous (initials or a code), 1 to 40 characters.
    pub label: Option<String>,
    /// One of the topics (`gesundheit`, `bildung`, ..., `behoerden`).
    #[schema(value_type = Option<String>)]
    pub topic: Option<lotse_protocol::Topic>,
    /// ISO 639-1 codes; replaces the list (a phone's concurrent additions survive).
    pub languages: Option<Vec<String>>,
    /// `einzelbegleitung`, `patenschaft` or `sprachmittlung`.
    pub kind: Option<String>,
}

/// Change a case's status, label, topic or languages (coordinators): automerge changes
/// written on the coordinator's behalf, merged with what phones wrote meanwhile.
#[utoipa::path(patch, path = "/api/v1/cases/{id}", tag = "cases", request_body = CaseChange,
    params(("id" = String, Path, description = "Case id or any of its document ids")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn change_case(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
    Json(body): Json<CaseChange>,
) -> Result<StatusCode> {
    let now = crate::store::now_ms();
    super::case_edits::edit(&state, caller, &raw, |doc| {
        if let Some(status) = body.status {
            CaseDoc::set_status(doc, status, now)?;
        }
        if let Some(label) = &body.label {
            CaseDoc::set_label(doc, label, now)?;
        }
        if let Some(topic) = body.topic {
            CaseDoc::set_topic(doc, topic, now)?;
        }
        if let Some(languages) = &body.languages {
            CaseDoc::set_languages(doc, languages, now)?;
        }
        if let Some(kind) = &body.kind {
            CaseDoc::set_kind(doc, kind, now)?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Each entry's `author` becomes who wrote it (the actor's device's volunteer, or the
/// coordinator), never only what the entry claims: `authorVerified` says whether the
/// writer is known, and where the claim differs it stays visible as `claimedAuthor`
/// with `authorMismatch: true`.
fn attribute_entries(
    entries: Option<&mut serde_json::Value>,
    attribution: impl Fn(&str, &str) -> crate::store::Attribution,
) {
    let Some(serde_json::Value::Array(entries)) = entries else {
        return;
    };
    for entry in entries {
        let Some(obj) = entry.as_object_mut() else {
            continue;
        };
        let id = obj.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        let claimed = obj
            .get("author")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let a = attribution(id, claimed);
        let author = a.author().to_owned();
        obj.insert("authorVerified".into(), a.verified().into());
        obj.insert("authorMismatch".into(), a.mismatch().into());
        if a.mismatch() {
            obj.insert("claimedAuthor".into(), a.claimed.clone().into());
        }
        obj.insert("author".into(), author.into());
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteCase {
    /// Why: `mistake` (created by mistake), `person-asked` (the person asked for erasure,
    /// Art. 17 DSGVO) or `other`. Kept in the tombstone and the audit trail.
    pub reason: Option<String>,
}

/// Delete a case for good (coordinators only): its notes, appointments and hours leave
/// the server, connected phones delete it at once and offline phones at their next
/// contact, and no client can ever bring it back. What stays is a tombstone (id, time,
/// reason; no content) and the audit trail.
#[utoipa::path(delete, path = "/api/v1/cases/{id}", tag = "cases",
    params(("id" = String, Path, description = "Document id (bs58check) or automerge: URL"), DeleteCase),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Leitung only (`leitung_only`)")))]
async fn delete_case(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
    Query(q): Query<DeleteCase>,
) -> Result<StatusCode> {
    caller.require_leitung("delete cases")?;
    let id = current_document(&state, caller.organisation_id(), &raw).await?;
    let reason = match q.reason.as_deref() {
        None => DeletionReason::Other,
        Some(code) => DeletionReason::from_code(code)
            .filter(|r| *r != DeletionReason::Retention)
            .ok_or_else(|| Error::invalid("reason", "must be mistake, person-asked or other"))?,
    };
    match state.store.document(&id).await? {
        Some(d) if d.organisation_id == caller.organisation_id() && d.kind == "case" => {}
        _ => return Err(Error::NotFound("case")),
    }
    // The reason is kept in the tombstone.
    let audit = Caller::Coordinator(caller.clone()).audit("document.delete", &id.to_string());
    if !state
        .hub
        .delete(caller.organisation_id(), &id, reason, &audit)
        .await
        .map_err(hub_error)?
    {
        return Err(Error::NotFound("case"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Who read and changed a case (coordinators only): creation, reads through the API and
/// the dashboard, syncs and changes by devices and coordinators, newest first (at most
/// 200). Names come from the current records; content never appears here.
#[utoipa::path(get, path = "/api/v1/cases/{id}/audit", tag = "cases",
    params(("id" = String, Path, description = "Document id (bs58check) or automerge: URL")),
    responses((status = 200, body = Vec<SubjectAuditEvent>), (status = 404, body = ErrorBody)))]
async fn case_audit(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Path(raw): Path<String>,
) -> Result<axum::Json<Vec<SubjectAuditEvent>>> {
    let org = caller.organisation_id();
    let id = current_document(&state, org, &raw).await?;
    let viewer = Viewer {
        organisation_id: org.to_owned(),
        volunteer_id: None,
    };
    let Access::Allowed(_) = state.store.document_access(&viewer, &id).await? else {
        return Err(Error::NotFound("case"));
    };
    let case_id = state.store.case_of(&id).await?;
    Ok(axum::Json(
        state.store.case_audit_trail(org, &case_id).await?,
    ))
}

//! Requests (Einsatzanfragen) for coordinators: create, list, edit, rank candidates,
//! offer to volunteers. Decisions are the server's, in SQL.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Id, Json, Query};
use crate::app::AppState;
use crate::app::caller::CoordinatorCaller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::matching::{self, Candidate};
use crate::store::{
    Actor, Invalid, NewRequest, OfferStatus, Request, RequestDraft, RequestError, RequestEvent,
    RequestPatch, Volunteer, now_ms,
};
use crate::timefmt::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_request, list_requests))
        .routes(routes!(get_request, update_request))
        .routes(routes!(candidates))
        .routes(routes!(offer))
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Transition { .. } => {
                Error::bad_request("invalid_transition", e.to_string())
            }
            RequestError::Closed(_) => Error::bad_request("request_closed", e.to_string()),
            RequestError::NotAVolunteer(_) => Error::invalid("volunteer_ids", e.to_string()),
            RequestError::Window(_) => Error::invalid("ends_at", e.to_string()),
            RequestError::Erased => Error::Conflict(
                "the request's personal data was erased after its retention period; it can no longer be changed",
            ),
            RequestError::Store(e) => Error::Store(e),
        }
    }
}

fn time(field: &'static str, s: &str) -> Result<i64> {
    crate::timefmt::parse_ms(s)
        .ok_or_else(|| Error::invalid(field, "an RFC 3339 time such as 2026-03-04T14:00:00+01:00"))
}

/// The store's rules (`Request::check_*`) as the API's `invalid_field` answer.
fn checked<T>(field: &'static str, r: std::result::Result<T, Invalid>) -> Result<T> {
    r.map_err(|e| Error::invalid(field, e.to_string()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// behoerde, jobcenter, auslaenderbehoerde, beratungsstelle, schule, kita, arztpraxis, migrantin, sonstige.
    pub institution_kind: String,
    pub institution_name: String,
    pub contact: Option<String>,
    /// Pseudonymous label (initials or a code); never a full name.
    #[serde(default)]
    pub person_label: Option<String>,
    pub topic: String,
    pub languages: Vec<String>,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    /// Coarse area (e.g. district) shown in offers.
    pub place_area: String,
    /// Exact address, shown only to the volunteer who gets the request.
    pub place_address: Option<String>,
    #[serde(default = "normal")]
    pub urgency: String,
    #[serde(default)]
    pub description: String,
}

fn normal() -> String {
    "normal".into()
}

/// A new request from the API, by the store's rules; the first refusal is the answer.
pub fn validate_new(body: CreateRequest) -> Result<NewRequest> {
    let draft = RequestDraft {
        starts_at: Some(time("starts_at", &body.starts_at)?),
        ends_at: Some(time("ends_at", &body.ends_at)?),
        institution_kind: body.institution_kind,
        institution_name: body.institution_name,
        contact: body.contact.unwrap_or_default(),
        person_label: body.person_label.unwrap_or_default(),
        topic: body.topic,
        languages: body.languages,
        place_area: body.place_area,
        place_address: body.place_address.unwrap_or_default(),
        urgency: body.urgency,
        description: body.description,
    };
    NewRequest::check(draft, "coordinator", Some(now_ms())).map_err(|refused| {
        match refused.first() {
            Some((field, e)) => Error::invalid(field, e.to_string()),
            None => Error::invalid("body", "refused"),
        }
    })
}

/// Create a request.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", request_body = CreateRequest,
    responses((status = 201, body = Request), (status = 422, body = ErrorBody)))]
async fn create_request(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<CreateRequest>,
) -> Result<(StatusCode, axum::Json<Request>)> {
    let new = validate_new(body)?;
    let r = state
        .store
        .create_request(
            caller.organisation_id(),
            Actor {
                kind: "coordinator",
                id: caller.id(),
            },
            new,
        )
        .await?;
    tracing::info!(request_id = %r.id, "request created");
    Ok((StatusCode::CREATED, axum::Json(r)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// open, offered, assigned, done, cancelled, expired.
    pub status: Option<String>,
}

/// Requests of the caller's organisation, soonest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", params(ListParams),
    responses((status = 200, body = Vec<Request>)))]
async fn list_requests(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Vec<Request>>> {
    let status = params
        .status
        .map(|s| checked("status", Request::check_status(&s)))
        .transpose()?;
    Ok(axum::Json(
        state
            .store
            .requests(caller.organisation_id(), status.as_deref())
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: Request,
    pub offers: Vec<OfferStatus>,
    /// Who did what, when.
    pub history: Vec<RequestEvent>,
}

/// One request with its offers and full history.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses((status = 200, body = RequestDetail), (status = 404, body = ErrorBody)))]
async fn get_request(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<axum::Json<RequestDetail>> {
    let request = state
        .store
        .request(caller.organisation_id(), &id)
        .await?
        .ok_or(Error::NotFound("request"))?;
    // A request holds a contact and an address: no read without its audit line first.
    let line =
        crate::app::caller::Caller::Coordinator(caller).audit_of("request.read", "request", &id);
    state.store.audit(&[line]).await?;
    Ok(axum::Json(RequestDetail {
        offers: state.store.request_offers(&id).await?,
        history: state.store.request_history(&id).await?,
        request,
    }))
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Every field optional; `status` may be `cancelled`, `done` (after assignment) or `open`
/// (reopen a cancelled or expired request).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub institution_kind: Option<String>,
    pub institution_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub contact: Option<Option<String>>,
    pub person_label: Option<String>,
    pub topic: Option<String>,
    pub languages: Option<Vec<String>>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub place_area: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub place_address: Option<Option<String>>,
    pub urgency: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
}

/// Edit a request or change its status (cancel, done, reopen).
#[utoipa::path(patch, path = "/api/v1/requests/{id}", tag = "requests", request_body = UpdateRequest,
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_request(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
    Json(b): Json<UpdateRequest>,
) -> Result<axum::Json<Request>> {
    let patch = RequestPatch {
        institution_kind: b
            .institution_kind
            .map(|v| checked("institution_kind", Request::check_institution_kind(&v)))
            .transpose()?,
        institution_name: b
            .institution_name
            .map(|v| checked("institution_name", Request::check_institution_name(&v)))
            .transpose()?,
        contact: b
            .contact
            .map(|v| {
                checked(
                    "contact",
                    Request::check_contact(v.as_deref().unwrap_or("")),
                )
            })
            .transpose()?,
        person_label: b
            .person_label
            .map(|v| checked("person_label", Request::check_person_label(&v)))
            .transpose()?,
        topic: b
            .topic
            .map(|v| checked("topic", Request::check_topic(&v)))
            .transpose()?,
        languages: b
            .languages
            .map(|v| checked("languages", Volunteer::check_languages(&v)))
            .transpose()?,
        starts_at: b
            .starts_at
            .map(|v| time("starts_at", &v).map(Timestamp::from))
            .transpose()?,
        ends_at: b
            .ends_at
            .map(|v| time("ends_at", &v).map(Timestamp::from))
            .transpose()?,
        place_area: b
            .place_area
            .map(|v| checked("place_area", Request::check_place_area(&v)))
            .transpose()?,
        place_address: b
            .place_address
            .map(|v| {
                checked(
                    "place_address",
                    Request::check_place_address(v.as_deref().unwrap_or("")),
                )
            })
            .transpose()?,
        urgency: b
            .urgency
            .map(|v| checked("urgency", Request::check_urgency(&v)))
            .transpose()?,
        description: b
            .description
            .map(|v| checked("description", Request::check_description(&v)))
            .transpose()?,
        status: b
            .status
            .map(|v| checked("status", Request::check_status(&v)))
            .transpose()?,
    };
    let r = state
        .store
        .update_request(
            caller.organisation_id(),
            Actor {
                kind: "coordinator",
                id: caller.id(),
            },
            &id,
            patch,
        )
        .await?
        .ok_or(Error::NotFound("request"))?;
    state.push.wake();
    Ok(axum::Json(r))
}

async fn ranked(
    state: &AppState,
    caller: &CoordinatorCaller,
    id: &str,
) -> Result<(Request, Vec<Candidate>)> {
    let request = state
        .store
        .request(caller.organisation_id(), id)
        .await?
        .ok_or(Error::NotFound("request"))?;
    let volunteers = state.store.volunteers(caller.organisation_id()).await?;
    let loads = state
        .store
        .volunteer_loads(caller.organisation_id())
        .await?;
    let ranked = matching::rank(&request, &volunteers, &|v| {
        loads.get(v).copied().unwrap_or(0)
    });
    Ok((request, ranked))
}

/// Active volunteers ranked for the request, with the reasons.
#[utoipa::path(get, path = "/api/v1/requests/{id}/candidates", tag = "requests",
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses((status = 200, body = Vec<Candidate>), (status = 404, body = ErrorBody)))]
async fn candidates(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<axum::Json<Vec<Candidate>>> {
    Ok(axum::Json(ranked(&state, &caller, &id).await?.1))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferBody {
    /// Offer to these volunteers...
    pub volunteer_ids: Option<Vec<String>>,
    /// ...or to the best N eligible candidates.
    pub top: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Offered {
    pub request: Request,
    /// Volunteers offered now (not those offered before).
    pub offered_to: Vec<String>,
}

/// Offer the request to chosen volunteers or the top N; their phones get a push.
#[utoipa::path(post, path = "/api/v1/requests/{id}/offer", tag = "requests", request_body = OfferBody,
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses((status = 200, body = Offered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn offer(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
    Json(body): Json<OfferBody>,
) -> Result<axum::Json<Offered>> {
    let chosen: Vec<String> = match (body.volunteer_ids, body.top) {
        (Some(ids), None) if !ids.is_empty() && ids.len() <= 100 => ids
            .iter()
            .map(|raw| {
                uuid::Uuid::parse_str(raw)
                    .map(|u| u.hyphenated().to_string())
                    .map_err(|_| {
                        Error::invalid("volunteer_ids", format!("{raw:?} is not a volunteer id"))
                    })
            })
            .collect::<Result<_>>()?,
        (None, Some(n)) if (1..=50).contains(&n) => {
            let (_, ranked) = ranked(&state, &caller, &id).await?;
            ranked
                .into_iter()
                .filter(|c| c.eligible)
                .take(n as usize)
                .map(|c| c.volunteer_id)
                .collect()
        }
        _ => {
            return Err(Error::invalid(
                "volunteer_ids",
                "give either volunteer_ids (1 to 100) or top (1 to 50)",
            ));
        }
    };
    if chosen.is_empty() {
        return Err(Error::invalid(
            "top",
            "no volunteer speaks a language of this request",
        ));
    }
    let (request, offered_to) = state
        .store
        .offer_request(
            caller.organisation_id(),
            Actor {
                kind: "coordinator",
                id: caller.id(),
            },
            &id,
            &chosen,
        )
        .await?
        .ok_or(Error::NotFound("request"))?;
    state.push.wake();
    tracing::info!(request_id = %request.id, offered = offered_to.len(), "request offered");
    Ok(axum::Json(Offered {
        request,
        offered_to,
    }))
}

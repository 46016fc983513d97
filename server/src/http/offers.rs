//! Offers as a volunteer's device sees them: open offers, accept (first valid accept
//! wins; retries get the same answer), decline. The winner's case is created and shared.

use axum::extract::State;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, NewAppointment, NewCase, OfferStatus, Status, Topic};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Id;
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::store::{AcceptOutcome, EnrolledDevice, Request, now_ms};
use crate::timefmt::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_offers))
        .routes(routes!(accept))
        .routes(routes!(decline))
}

/// An offer without the exact address or the requester's contact: those are for the
/// volunteer who gets the request.
///
/// The phone reads this with `lotse_protocol::offer::Offer`. The two structs stay apart
/// because `ToSchema` must be derived here (utoipa is not the protocol's dependency) and
/// times are written with `crate::timefmt`; the test below reads this one's JSON with the
/// protocol's and compares its keys with `lotse_protocol::offer::OFFER_FIELDS`, so a field
/// renamed on either side fails it.
#[derive(Serialize, ToSchema)]
pub struct Offer {
    /// The request id; also the offer's id in `/api/v1/offers/{id}/...`.
    pub id: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub place_area: String,
    pub urgency: String,
    pub institution_kind: String,
    pub description: String,
    /// offered, accepted, declined, taken, withdrawn.
    #[schema(value_type = String)]
    pub status: OfferStatus,
    /// For the volunteer who got it: the exact place and the case document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
}

#[derive(Serialize, ToSchema)]
pub struct Assignment {
    pub place_address: Option<String>,
    pub institution_name: String,
    pub contact: Option<String>,
    pub case_id: Option<String>,
}

fn offer_of(r: Request, status: OfferStatus, volunteer_id: &str) -> Offer {
    let assignment =
        (r.assigned_volunteer_id.as_deref() == Some(volunteer_id)).then(|| Assignment {
            place_address: r.place_address.clone(),
            institution_name: r.institution_name.clone(),
            contact: r.contact.clone(),
            case_id: r.case_document_id.clone(),
        });
    Offer {
        id: r.id,
        topic: r.topic,
        languages: r.languages,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        place_area: r.place_area,
        urgency: r.urgency,
        institution_kind: r.institution_kind,
        description: r.description,
        status,
        assignment,
    }
}

/// The calling device's offers: open ones and those answered in the last 14 days.
#[utoipa::path(get, path = "/api/v1/offers", tag = "offers",
    responses((status = 200, body = Vec<Offer>), (status = 401, body = ErrorBody)))]
async fn list_offers(
    State(state): State<AppState>,
    device: EnrolledDevice,
) -> Result<axum::Json<Vec<Offer>>> {
    let volunteer = &device.device.volunteer_id;
    let offers = state.store.offers_for(volunteer).await?;
    Ok(axum::Json(
        offers
            .into_iter()
            .map(|(r, o)| offer_of(r, OfferStatus::from_code(&o.status), volunteer))
            .collect(),
    ))
}

/// Creates the winner's case once: a retried accept finds it linked already.
async fn ensure_case(
    state: &AppState,
    request: &Request,
    volunteer_id: &str,
    by: &Caller,
) -> Result<String> {
    let _one_at_a_time = state.case_creation.lock().await;
    if let Some(id) = state
        .store
        .request(&request.organisation_id, &request.id)
        .await?
        .and_then(|r| r.case_document_id)
    {
        return Ok(id);
    }
    let topic: Topic = request
        .topic
        .parse()
        .map_err(|_| Error::Internal(anyhow::anyhow!("stored topic unknown")))?;
    let mut doc = Automerge::new();
    let now = now_ms();
    CaseDoc::create(
        &mut doc,
        &NewCase {
            organisation_id: request.organisation_id.clone(),
            label: request.person_label.clone(),
            languages: request.languages.clone(),
            topic,
            status: Status::Active,
        },
        now,
    )
    .map_err(|e| Error::Internal(e.into()))?;
    CaseDoc::add_appointment(
        &mut doc,
        &NewAppointment {
            start: request.starts_at.ms(),
            end: request.ends_at.ms(),
            place: request
                .place_address
                .clone()
                .unwrap_or_else(|| request.place_area.clone()),
            purpose: request.institution_name.clone(),
            case_id: None,
        },
        now,
    )
    .map_err(|e| Error::Internal(e.into()))?;
    let id = state
        .hub
        .create_case(
            doc,
            &request.organisation_id,
            &[volunteer_id.to_owned()],
            &by.writer(),
            |id| by.audit("document.create", &id.to_string()),
        )
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!(e.to_string())))?;
    state.store.link_case(&request.id, &id.to_string()).await?;
    Ok(id.to_string())
}

/// Accept an offer. The first valid accept wins; a retry after a lost answer gets the
/// same result; a late one gets 409 `already_taken`. A volunteer who declined may still
/// accept while nobody else has (a changed mind, or a decline pressed by mistake); the
/// request's history keeps both answers.
#[utoipa::path(post, path = "/api/v1/offers/{id}/accept", tag = "offers",
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses(
        (status = 200, body = Offer, description = "You have the request; `assignment` holds the address and case"),
        (status = 409, body = ErrorBody, description = "`already_taken` or `request_closed`"),
        (status = 404, body = ErrorBody, description = "No offer to you"),
    ))]
async fn accept(
    State(state): State<AppState>,
    device: EnrolledDevice,
    Id(id): Id,
) -> Result<axum::Json<Offer>> {
    let volunteer = device.device.volunteer_id.clone();
    let outcome = state
        .store
        .accept_offer(&device.organisation_id, &volunteer, &device.device.id, &id)
        .await?;
    state.push.wake();
    match outcome {
        AcceptOutcome::Won(r) => {
            let case_id =
                ensure_case(&state, &r, &volunteer, &Caller::Device(device.clone())).await?;
            let mut offer = offer_of(*r, OfferStatus::Accepted, &volunteer);
            if let Some(a) = offer.assignment.as_mut() {
                a.case_id = Some(case_id);
            }
            tracing::info!(request_id = %id, device_id = %device.device.id, "offer accepted");
            Ok(axum::Json(offer))
        }
        AcceptOutcome::Taken => Err(Error::Taken(
            "another volunteer accepted this request first; thank you all the same",
        )),
        AcceptOutcome::Closed(status) => Err(Error::Taken(match status.as_str() {
            "cancelled" => "the request was cancelled",
            "expired" => "the request has expired",
            _ => "the request is closed",
        })),
        AcceptOutcome::NotOffered => Err(Error::NotFound("offer")),
    }
}

/// Read by the phone with `lotse_protocol::offer::Declined`.
#[derive(Serialize, ToSchema)]
pub struct Declined {
    /// The offer's status after the call (declined, or what it already was).
    #[schema(value_type = String)]
    pub status: OfferStatus,
}

/// Decline an offer. Not final: until someone accepts, the same volunteer may still
/// accept it.
#[utoipa::path(post, path = "/api/v1/offers/{id}/decline", tag = "offers",
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses((status = 200, body = Declined), (status = 404, body = ErrorBody)))]
async fn decline(
    State(state): State<AppState>,
    device: EnrolledDevice,
    Id(id): Id,
) -> Result<axum::Json<Declined>> {
    let status = state
        .store
        .decline_offer(
            &device.organisation_id,
            &device.device.volunteer_id,
            &device.device.id,
            &id,
        )
        .await?
        .ok_or(Error::NotFound("offer"))?;
    Ok(axum::Json(Declined {
        status: OfferStatus::from_code(&status),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lotse_protocol::offer::{self, ASSIGNMENT_FIELDS, OFFER_FIELDS};

    use super::*;

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    fn sorted<const N: usize>(mut fields: [&'static str; N]) -> [&'static str; N] {
        fields.sort_unstable();
        fields
    }

    #[test]
    fn the_phone_reads_what_the_server_writes() {
        let sent = Offer {
            id: "6f1c2d3e-0000-4000-8000-000000000001".into(),
            topic: "behoerden".into(),
            languages: vec!["ar".into()],
            starts_at: Timestamp::from_ms(1_772_633_400_123),
            ends_at: Timestamp::from_ms(1_772_640_600_000),
            place_area: "Nordstadt".into(),
            urgency: "dringend".into(),
            institution_kind: "jobcenter".into(),
            description: "Termin".into(),
            status: OfferStatus::Accepted,
            assignment: Some(Assignment {
                place_address: Some("Hauptstr. 1".into()),
                institution_name: "Jobcenter Nord".into(),
                contact: Some("0123".into()),
                case_id: Some("2dKhP2bUGKFa87U5RquAXHtyfVfM".into()),
            }),
        };
        let json = serde_json::to_value(&sent).unwrap();
        assert_eq!(keys(&json), sorted(OFFER_FIELDS));
        assert_eq!(keys(&json["assignment"]), sorted(ASSIGNMENT_FIELDS));
        let read: offer::Offer = serde_json::from_value(json).unwrap();
        let a = sent.assignment.unwrap();
        assert_eq!(
            read,
            offer::Offer {
                id: sent.id,
                topic: sent.topic,
                languages: sent.languages,
                starts_at: sent.starts_at.ms(),
                ends_at: sent.ends_at.ms(),
                place_area: sent.place_area,
                urgency: sent.urgency,
                institution_kind: sent.institution_kind,
                description: sent.description,
                status: sent.status,
                assignment: Some(offer::Assignment {
                    place_address: a.place_address,
                    institution_name: a.institution_name,
                    contact: a.contact,
                    case_id: a.case_id,
                }),
            }
        );

        let declined = serde_json::to_value(Declined {
            status: OfferStatus::Taken,
        })
        .unwrap();
        let read: offer::Declined = serde_json::from_value(declined).unwrap();
        assert_eq!(read.status, OfferStatus::Taken);
    }
}

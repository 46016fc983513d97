//! Art. 15 DSGVO: everything the network holds about one person, gathered in one place
//! for the API's JSON and the dashboard's printable page. A case export is about the
//! person helped (the case's notes, appointments and hours, the request it came from, its
//! audit trail); a volunteer export about the volunteer (profile, trainings, devices,
//! the hours they wrote in any case, their offers and their audit trail). The caller
//! writes the export's own audit line before any of it leaves.

use lotse_protocol::{AppointmentView, CaseDoc, CaseView, DocumentId, HoursView, NoteView};
use serde::Serialize;

use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::store::{
    Access, Attributions, AuditEvent, Device, Request, SubjectAuditEvent, Viewer, Volunteer, now_ms,
};
use crate::timefmt::Timestamp;

/// A note or an hours entry with who really wrote it (see `store::authorship`).
#[derive(Debug, Serialize)]
pub struct Written<T> {
    #[serde(flatten)]
    pub entry: T,
    /// The writer's volunteer or coordinator id, where the actor is bound; else the claim.
    pub written_by: String,
    pub author_verified: bool,
    pub author_mismatch: bool,
}

#[derive(Debug, Serialize)]
pub struct CaseExport {
    pub exported_at: Timestamp,
    pub id: String,
    pub label: String,
    pub topic: String,
    pub status: String,
    pub languages: Vec<String>,
    pub created_at: Timestamp,
    pub notes: Vec<Written<NoteView>>,
    pub appointments: Vec<AppointmentView>,
    pub hours: Vec<Written<HoursView>>,
    /// The request the case came from, if any.
    pub request: Option<Request>,
    /// Who created, read, synced, changed and exported the case (newest first).
    pub audit: Vec<SubjectAuditEvent>,
}

/// One hours entry a volunteer wrote, with its case.
#[derive(Debug, Serialize)]
pub struct VolunteerHours {
    pub case_id: String,
    pub case_label: String,
    #[serde(flatten)]
    pub hours: HoursView,
}

#[derive(Debug, Serialize)]
pub struct OfferExport {
    pub request_id: String,
    pub topic: String,
    pub status: String,
    pub starts_at: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct VolunteerExport {
    pub exported_at: Timestamp,
    pub volunteer: Volunteer,
    pub devices: Vec<Device>,
    pub hours: Vec<VolunteerHours>,
    pub offers: Vec<OfferExport>,
    /// Lines about the volunteer's record, and lines written by their devices.
    pub audit: Vec<AuditEvent>,
}

fn coordinator_view(organisation_id: &str) -> Viewer {
    Viewer {
        organisation_id: organisation_id.to_owned(),
        volunteer_id: None,
    }
}

/// A case's content with who wrote each note and hours entry; `None` if the document
/// does not read as a case. Access is the caller's to check first.
pub async fn read_attributed(
    state: &AppState,
    organisation_id: &str,
    id: DocumentId,
) -> Result<Option<(CaseView, Attributions)>> {
    let read = state
        .hub
        .read(id, |doc| {
            CaseDoc::read(doc).map(|view| {
                let created = lotse_protocol::schema::creators(doc, &view);
                (view, created)
            })
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!(e.to_string())))?;
    let Ok((view, created)) = read else {
        return Ok(None);
    };
    let by = state
        .store
        .attribute(organisation_id, &id, &created, &view)
        .await?;
    Ok(Some((view, by)))
}

/// `None`: no such case in the organisation.
pub async fn case(
    state: &AppState,
    organisation_id: &str,
    id: DocumentId,
) -> Result<Option<CaseExport>> {
    let Access::Allowed(_) = state
        .store
        .document_access(&coordinator_view(organisation_id), &id)
        .await?
    else {
        return Ok(None);
    };
    let Some((view, by)) = read_attributed(state, organisation_id, id).await? else {
        return Ok(None);
    };
    let id_text = id.to_string();
    let request = state
        .store
        .requests(organisation_id, None)
        .await?
        .into_iter()
        .find(|r| r.case_document_id.as_deref() == Some(id_text.as_str()));
    // The trail of the case over every document it has been held in.
    let case_id = state.store.case_of(&id).await?;
    let audit = state
        .store
        .case_audit_trail(organisation_id, &case_id)
        .await?;
    let notes = view
        .notes
        .iter()
        .map(|n| {
            let a = by.note(n.id.as_str(), &n.author);
            Written {
                written_by: a.author().to_owned(),
                author_verified: a.verified(),
                author_mismatch: a.mismatch(),
                entry: n.clone(),
            }
        })
        .collect();
    let hours = view
        .hours
        .iter()
        .map(|h| {
            let a = by.hours(h.id.as_str(), &h.author);
            Written {
                written_by: a.author().to_owned(),
                author_verified: a.verified(),
                author_mismatch: a.mismatch(),
                entry: h.clone(),
            }
        })
        .collect();
    Ok(Some(CaseExport {
        exported_at: Timestamp::from(now_ms()),
        // The case's id, which stays when the case is rewritten.
        id: case_id,
        label: view.label.clone(),
        topic: view.topic.as_str().to_owned(),
        status: view.status.as_str().to_owned(),
        languages: view.languages.clone(),
        created_at: Timestamp::from(view.created_at),
        notes,
        appointments: view.appointments.clone(),
        hours,
        request,
        audit,
    }))
}

/// How many of the organisation's audit lines a volunteer export looks through for the
/// ones their devices wrote.
const AUDIT_SCAN: i64 = 100_000;

/// `None`: no such volunteer in the organisation.
pub async fn volunteer(
    state: &AppState,
    organisation_id: &str,
    volunteer_id: &str,
) -> Result<Option<VolunteerExport>> {
    let Some(volunteer) = state.store.volunteer(organisation_id, volunteer_id).await? else {
        return Ok(None);
    };
    let devices = state
        .store
        .devices_of(organisation_id, volunteer_id)
        .await?
        .unwrap_or_default();
    let mut hours = Vec::new();
    for row in state.store.cases(organisation_id).await? {
        let Ok(id) = row.id.parse::<DocumentId>() else {
            continue;
        };
        let Some((view, by)) = read_attributed(state, organisation_id, id).await? else {
            continue;
        };
        for h in &view.hours {
            if by.hours(h.id.as_str(), &h.author).author() == volunteer_id {
                hours.push(VolunteerHours {
                    case_id: row.id.clone(),
                    case_label: view.label.clone(),
                    hours: h.clone(),
                });
            }
        }
    }
    let offers = state
        .store
        .offers_for(volunteer_id)
        .await?
        .into_iter()
        .filter(|(r, _)| r.organisation_id == organisation_id)
        .map(|(r, offer)| OfferExport {
            request_id: r.id,
            topic: r.topic,
            status: offer.status,
            starts_at: r.starts_at,
        })
        .collect();
    let device_ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let audit = state
        .store
        .audit_events(organisation_id, AUDIT_SCAN)
        .await?
        .into_iter()
        .filter(|e| {
            (e.subject_kind == "volunteer" && e.subject_id == volunteer_id)
                || (e.actor_kind == "device" && device_ids.contains(&e.actor_id.as_str()))
        })
        .collect();
    Ok(Some(VolunteerExport {
        exported_at: Timestamp::from(now_ms()),
        volunteer,
        devices,
        hours,
        offers,
        audit,
    }))
}

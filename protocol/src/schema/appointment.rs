//! Appointments, kept the same way in a case and in a volunteer's schedule: a map from a
//! random id to `{start, end, place, purpose, cancelled, caseId?}`. Fields are written one
//! by one so that a concurrent move and cancel of the same appointment both survive.

use automerge::transaction::{Transactable, Transaction};
use automerge::{ObjId, ObjType, ReadDoc};
use serde::{Deserialize, Serialize};

use super::ChangeKind;
use super::access;
use super::{Millis, SchemaError, entry_id, new_entry_key, validate_len};
use crate::docid::DocumentId;

entry_id!(
    /// The key of an appointment in its document's `appointments` map.
    AppointmentId
);

const MAX_PLACE: usize = 200;
const MAX_PURPOSE: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAppointment {
    pub start: Millis,
    pub end: Millis,
    pub place: String,
    pub purpose: String,
    /// In a schedule: the case the appointment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<DocumentId>,
}

/// Fields left `None` stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentUpdate {
    #[serde(default)]
    pub start: Option<Millis>,
    #[serde(default)]
    pub end: Option<Millis>,
    #[serde(default)]
    pub place: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub cancelled: Option<bool>,
}

/// As read back. `end < start` can appear when two devices moved the two ends
/// concurrently; readers show it rather than fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    pub id: AppointmentId,
    pub start: Millis,
    pub end: Millis,
    pub place: String,
    pub purpose: String,
    pub cancelled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<DocumentId>,
}

fn validate_range(start: Millis, end: Millis) -> Result<(), SchemaError> {
    if end < start {
        Err(SchemaError::EndBeforeStart { start, end })
    } else {
        Ok(())
    }
}

pub(crate) fn validate_new(new: &NewAppointment) -> Result<(), SchemaError> {
    validate_range(new.start, new.end)?;
    validate_len("place", &new.place, MAX_PLACE)?;
    validate_len("purpose", &new.purpose, MAX_PURPOSE)
}

pub(crate) fn add(
    tx: &mut Transaction<'_>,
    appointments: &ObjId,
    new: &NewAppointment,
) -> Result<AppointmentId, SchemaError> {
    let key = new_entry_key();
    let a = tx.put_object(appointments, key.as_str(), ObjType::Map)?;
    tx.put(&a, "start", new.start)?;
    tx.put(&a, "end", new.end)?;
    tx.put(&a, "place", new.place.as_str())?;
    tx.put(&a, "purpose", new.purpose.as_str())?;
    tx.put(&a, "cancelled", false)?;
    if let Some(case_id) = &new.case_id {
        tx.put(&a, "caseId", case_id.to_string())?;
    }
    Ok(AppointmentId(key))
}

pub(crate) fn update(
    tx: &mut Transaction<'_>,
    appointments: &ObjId,
    id: &AppointmentId,
    update: &AppointmentUpdate,
) -> Result<(), SchemaError> {
    let prefix = format!("appointments.{id}.");
    let a = access::entry(
        tx,
        appointments,
        id.as_str(),
        "appointment",
        "appointments.",
    )?;
    // A move is checked against the range this device will see after the edit. Other
    // edits are not: concurrent moves of the two ends can leave a range inverted, and that
    // must not block cancelling the appointment or fixing its place.
    if update.start.is_some() || update.end.is_some() {
        let start = match update.start {
            Some(s) => s,
            None => access::int(tx, &a, "start", &prefix)?,
        };
        let end = match update.end {
            Some(e) => e,
            None => access::int(tx, &a, "end", &prefix)?,
        };
        validate_range(start, end)?;
    }
    if let Some(place) = &update.place {
        validate_len("place", place, MAX_PLACE)?;
    }
    if let Some(purpose) = &update.purpose {
        validate_len("purpose", purpose, MAX_PURPOSE)?;
    }
    // Only changed fields are written: an unchanged put would still win over a concurrent
    // real change on another device.
    if let Some(s) = update.start
        && access::opt_int(tx, &a, "start", &prefix)? != Some(s)
    {
        tx.put(&a, "start", s)?;
    }
    if let Some(e) = update.end
        && access::opt_int(tx, &a, "end", &prefix)? != Some(e)
    {
        tx.put(&a, "end", e)?;
    }
    if let Some(place) = &update.place
        && access::opt_string(tx, &a, "place", &prefix)?.as_ref() != Some(place)
    {
        tx.put(&a, "place", place.as_str())?;
    }
    if let Some(purpose) = &update.purpose
        && access::opt_string(tx, &a, "purpose", &prefix)?.as_ref() != Some(purpose)
    {
        tx.put(&a, "purpose", purpose.as_str())?;
    }
    if let Some(cancelled) = update.cancelled
        && access::opt_bool(tx, &a, "cancelled", &prefix)? != Some(cancelled)
    {
        tx.put(&a, "cancelled", cancelled)?;
    }
    Ok(())
}

pub(crate) fn read_all<R: ReadDoc>(
    doc: &R,
    appointments: Option<&ObjId>,
) -> Result<Vec<AppointmentView>, SchemaError> {
    let Some(appointments) = appointments else {
        return Ok(Vec::new());
    };
    let mut out = access::map_entries(doc, appointments, "appointments.")?
        .into_iter()
        .map(|(key, a)| {
            let prefix = format!("appointments.{key}.");
            let case_id = access::opt_string(doc, &a, "caseId", &prefix)?
                .map(|s| {
                    s.parse().map_err(|_| SchemaError::Malformed {
                        path: format!("{prefix}caseId"),
                        expected: "a document id",
                    })
                })
                .transpose()?;
            Ok(AppointmentView {
                start: access::int(doc, &a, "start", &prefix)?,
                end: access::int(doc, &a, "end", &prefix)?,
                place: access::opt_string(doc, &a, "place", &prefix)?.unwrap_or_default(),
                purpose: access::opt_string(doc, &a, "purpose", &prefix)?.unwrap_or_default(),
                cancelled: access::opt_bool(doc, &a, "cancelled", &prefix)?.unwrap_or(false),
                case_id,
                id: AppointmentId(key),
            })
        })
        .collect::<Result<Vec<_>, SchemaError>>()?;
    out.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    Ok(out)
}

/// The first appointment that is not cancelled and starts at or after `now`.
pub fn next_after(appointments: &[AppointmentView], now: Millis) -> Option<&AppointmentView> {
    appointments
        .iter()
        .filter(|a| !a.cancelled && a.start >= now)
        .min_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)))
}

/// Adds an appointment to the document of type `doc_type` (case or schedule).
pub(super) fn add_in(
    doc: &mut automerge::Automerge,
    doc_type: &'static str,
    new: &NewAppointment,
    now: Millis,
) -> Result<AppointmentId, SchemaError> {
    validate_new(new)?;
    access::check_doc(doc, doc_type)?;
    access::change(doc, now, ChangeKind::AddAppointment, |tx| {
        let map = access::obj(tx, &automerge::ROOT, "appointments", "", ObjType::Map)?;
        add(tx, &map, new)
    })
}

pub(super) fn update_in(
    doc: &mut automerge::Automerge,
    doc_type: &'static str,
    id: &AppointmentId,
    update_fields: &AppointmentUpdate,
    now: Millis,
) -> Result<(), SchemaError> {
    access::check_doc(doc, doc_type)?;
    access::change(doc, now, ChangeKind::UpdateAppointment, |tx| {
        let map = access::obj(tx, &automerge::ROOT, "appointments", "", ObjType::Map)?;
        update(tx, &map, id, update_fields)
    })
}

pub(super) fn cancel_in(
    doc: &mut automerge::Automerge,
    doc_type: &'static str,
    id: &AppointmentId,
    now: Millis,
) -> Result<(), SchemaError> {
    let cancel = AppointmentUpdate {
        cancelled: Some(true),
        ..AppointmentUpdate::default()
    };
    update_in(doc, doc_type, id, &cancel, now)
}

//! A volunteer's schedule document: weekly availability (what coordinators match requests
//! against) and the volunteer's appointments across cases.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use super::ChangeKind;
use super::appointment::{self, AppointmentId, AppointmentUpdate, AppointmentView, NewAppointment};
use super::{Millis, SCHEMA_VERSION, SchemaError, access, validate_non_empty, validate_time};

const TYPE: &str = "schedule";
const MAX_ID: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSchedule {
    pub volunteer_id: String,
}

/// A weekly window in local time. Ordered by weekday, then times.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilitySlot {
    /// 1 = Monday ... 7 = Sunday (ISO 8601).
    pub weekday: u8,
    /// `HH:MM`.
    pub from: String,
    /// `HH:MM`, after `from`; `24:00` for "until midnight".
    pub to: String,
}

impl AvailabilitySlot {
    pub fn validate(&self) -> Result<(), SchemaError> {
        if !(1..=7).contains(&self.weekday) {
            return Err(SchemaError::InvalidWeekday(self.weekday));
        }
        validate_time(&self.from, false)?;
        validate_time(&self.to, true)?;
        // Fixed-width HH:MM compares correctly as text.
        if self.to <= self.from {
            return Err(SchemaError::EmptySlot {
                from: self.from.clone(),
                to: self.to.clone(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub schema: u64,
    pub volunteer_id: String,
    /// Sorted and without duplicates (concurrent edits on two devices can add the same
    /// slot twice; it means the same thing once).
    pub availability: Vec<AvailabilitySlot>,
    /// Earliest start first.
    pub appointments: Vec<AppointmentView>,
}

/// Reads and edits schedule documents. Every edit is one automerge change stamped with `now`.
pub struct ScheduleDoc;

impl ScheduleDoc {
    /// Writes a new schedule into an empty document (on one device only; see
    /// [`super::CaseDoc::create`]).
    pub fn create(doc: &mut Automerge, new: &NewSchedule, now: Millis) -> Result<(), SchemaError> {
        validate_non_empty("volunteerId", &new.volunteer_id, MAX_ID)?;
        if let Some(ty) = access::opt_string(doc, &ROOT, "type", "")? {
            return Err(SchemaError::AlreadyCreated(ty));
        }
        access::change(doc, now, ChangeKind::CreateSchedule, |tx| {
            tx.put(ROOT, "schema", SCHEMA_VERSION as i64)?;
            tx.put(ROOT, "type", TYPE)?;
            tx.put(ROOT, "volunteerId", new.volunteer_id.as_str())?;
            tx.put_object(ROOT, "availability", ObjType::List)?;
            tx.put_object(ROOT, "appointments", ObjType::Map)?;
            Ok(())
        })
    }

    pub fn read(doc: &Automerge) -> Result<ScheduleView, SchemaError> {
        let schema = access::check_doc(doc, TYPE)?;
        let mut availability: Vec<AvailabilitySlot> =
            read_slots(doc)?.into_iter().map(|(_, slot)| slot).collect();
        availability.sort();
        availability.dedup();
        let appointments = access::opt_obj(doc, &ROOT, "appointments", "", ObjType::Map)?;
        Ok(ScheduleView {
            schema,
            volunteer_id: access::string(doc, &ROOT, "volunteerId", "")?,
            availability,
            appointments: appointment::read_all(doc, appointments.as_ref())?,
        })
    }

    /// Makes the availability equal to `slots`, deleting and inserting only what differs,
    /// so that a concurrent edit on another device keeps its own additions.
    pub fn set_availability(
        doc: &mut Automerge,
        slots: &[AvailabilitySlot],
        now: Millis,
    ) -> Result<(), SchemaError> {
        for slot in slots {
            slot.validate()?;
        }
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetAvailability, |tx| {
            let list = access::obj(tx, &ROOT, "availability", "", ObjType::List)?;
            let current = read_slots(tx)?;
            let mut kept: Vec<AvailabilitySlot> = Vec::new();
            // Back to front, so deleting does not shift the indexes still to visit; the
            // first copy of a slot is the one kept.
            for (i, slot) in current.iter().rev() {
                let first_copy = !current.iter().any(|(j, s)| j < i && s == slot);
                if slots.contains(slot) && first_copy {
                    kept.push(slot.clone());
                } else {
                    tx.delete(&list, *i)?;
                }
            }
            let mut added: Vec<&AvailabilitySlot> = Vec::new();
            for slot in slots {
                if kept.contains(slot) || added.contains(&slot) {
                    continue;
                }
                let end = tx.length(&list);
                let s = tx.insert_object(&list, end, ObjType::Map)?;
                tx.put(&s, "weekday", i64::from(slot.weekday))?;
                tx.put(&s, "from", slot.from.as_str())?;
                tx.put(&s, "to", slot.to.as_str())?;
                added.push(slot);
            }
            Ok(())
        })
    }

    super::case::appointment_edits!(TYPE);

    /// The volunteer's next appointment that is not cancelled and starts at or after `now`.
    pub fn next_appointment(
        doc: &Automerge,
        now: Millis,
    ) -> Result<Option<AppointmentView>, SchemaError> {
        let view = Self::read(doc)?;
        Ok(appointment::next_after(&view.appointments, now).cloned())
    }
}

/// The slots with their list positions, in list order.
fn read_slots<R: ReadDoc>(doc: &R) -> Result<Vec<(usize, AvailabilitySlot)>, SchemaError> {
    let Some(list) = access::opt_obj(doc, &ROOT, "availability", "", ObjType::List)? else {
        return Ok(Vec::new());
    };
    (0..doc.length(&list))
        .map(|i| {
            let prefix = format!("availability.{i}.");
            let slot = match doc.get(&list, i)? {
                Some((Value::Object(ObjType::Map), s)) => s,
                _ => {
                    return Err(SchemaError::Malformed {
                        path: format!("availability.{i}"),
                        expected: "a map",
                    });
                }
            };
            Ok((
                i,
                AvailabilitySlot {
                    weekday: access::count(doc, &slot, "weekday", &prefix)?,
                    from: access::string(doc, &slot, "from", &prefix)?,
                    to: access::string(doc, &slot, "to", &prefix)?,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slot(weekday: u8, from: &str, to: &str) -> AvailabilitySlot {
        AvailabilitySlot {
            weekday,
            from: from.into(),
            to: to.into(),
        }
    }

    fn schedule() -> Automerge {
        let mut doc = Automerge::new();
        ScheduleDoc::create(
            &mut doc,
            &NewSchedule {
                volunteer_id: "vol-1".into(),
            },
            1_000,
        )
        .unwrap();
        doc
    }

    #[test]
    fn create_and_read() {
        let doc = schedule();
        let view = ScheduleDoc::read(&doc).unwrap();
        assert_eq!(view.volunteer_id, "vol-1");
        assert_eq!(view.schema, 1);
        assert!(view.availability.is_empty() && view.appointments.is_empty());
        assert!(matches!(
            super::super::CaseDoc::read(&doc),
            Err(SchemaError::WrongDocType {
                expected: "case",
                ..
            })
        ));
        assert_eq!(
            super::super::doc_kind(&doc).unwrap(),
            super::super::DocKind::Schedule
        );
    }

    #[test]
    fn availability_is_validated() {
        let mut doc = schedule();
        for (bad, expect) in [
            (slot(0, "09:00", "10:00"), "weekday"),
            (slot(8, "09:00", "10:00"), "weekday"),
            (slot(1, "9:00", "10:00"), "time"),
            (slot(1, "10:00", "10:00"), "ends"),
            (slot(1, "24:00", "24:00"), "time"),
        ] {
            let err = ScheduleDoc::set_availability(&mut doc, &[bad], 2_000).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
        }
        ScheduleDoc::set_availability(&mut doc, &[slot(7, "18:00", "24:00")], 2_000).unwrap();
    }

    #[test]
    fn availability_edits_in_place_and_merges() {
        let mut a = schedule();
        let monday = slot(1, "09:00", "12:00");
        let tuesday = slot(2, "14:00", "16:00");
        let friday = slot(5, "08:00", "09:30");
        ScheduleDoc::set_availability(&mut a, &[tuesday.clone(), monday.clone()], 2_000).unwrap();
        assert_eq!(
            ScheduleDoc::read(&a).unwrap().availability,
            [monday.clone(), tuesday.clone()]
        );

        let mut b = a.fork();
        // a drops Tuesday; b concurrently adds Friday.
        ScheduleDoc::set_availability(&mut a, std::slice::from_ref(&monday), 3_000).unwrap();
        ScheduleDoc::set_availability(&mut b, &[monday.clone(), tuesday, friday.clone()], 3_000)
            .unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let merged = ScheduleDoc::read(&a).unwrap();
        assert_eq!(merged, ScheduleDoc::read(&b).unwrap());
        assert_eq!(merged.availability, [monday.clone(), friday]);

        // Same slot added on both sides shows once.
        let mut c = a.fork();
        let saturday = slot(6, "10:00", "11:00");
        ScheduleDoc::set_availability(&mut a, &[monday.clone(), saturday.clone()], 4_000).unwrap();
        ScheduleDoc::set_availability(&mut c, &[monday.clone(), saturday.clone()], 4_000).unwrap();
        a.merge(&mut c).unwrap();
        assert_eq!(
            ScheduleDoc::read(&a)
                .unwrap()
                .availability
                .iter()
                .filter(|s| **s == saturday)
                .count(),
            1
        );
        // And setting it again cleans up the duplicate in the document.
        ScheduleDoc::set_availability(&mut a, std::slice::from_ref(&saturday), 5_000).unwrap();
        let list = access::obj(&a, &ROOT, "availability", "", ObjType::List).unwrap();
        assert_eq!(a.length(&list), 1);
    }

    #[test]
    fn appointments_and_next() {
        let mut doc = schedule();
        let case_id = crate::DocumentId::random();
        let first = ScheduleDoc::add_appointment(
            &mut doc,
            &NewAppointment {
                start: 10_000,
                end: 20_000,
                place: "Jobcenter".into(),
                purpose: "Termin".into(),
                case_id: Some(case_id),
            },
            1_000,
        )
        .unwrap();
        let second = ScheduleDoc::add_appointment(
            &mut doc,
            &NewAppointment {
                start: 30_000,
                end: 30_000,
                place: String::new(),
                purpose: String::new(),
                case_id: None,
            },
            1_000,
        )
        .unwrap();
        assert_eq!(
            ScheduleDoc::next_appointment(&doc, 5_000)
                .unwrap()
                .unwrap()
                .id,
            first
        );
        ScheduleDoc::cancel_appointment(&mut doc, &first, 2_000).unwrap();
        let next = ScheduleDoc::next_appointment(&doc, 5_000).unwrap().unwrap();
        assert_eq!(next.id, second);
        assert_eq!(ScheduleDoc::next_appointment(&doc, 30_001).unwrap(), None);
        let view = ScheduleDoc::read(&doc).unwrap();
        assert_eq!(view.appointments[0].case_id, Some(case_id));
        assert!(view.appointments[0].cancelled);
    }
}

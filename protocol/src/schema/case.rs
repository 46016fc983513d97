//! The case document: one accompanied person (pseudonymous), with case notes, appointments
//! and hours. Notes, appointments and hours are maps keyed by random ids so that entries
//! added on different devices never collide; note text is automerge Text so that two
//! people editing the same note merge character by character.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};

use super::ChangeKind;
use super::appointment::{self, AppointmentId, AppointmentUpdate, AppointmentView, NewAppointment};
use super::{
    Millis, SCHEMA_VERSION, SchemaError, Status, Topic, access, entry_id, new_entry_key,
    normalise_languages, validate_date, validate_len, validate_minutes, validate_non_empty,
    validate_token,
};

const TYPE: &str = "case";
/// The kinds of accompaniment a case can be.
pub const CASE_KINDS: [&str; 3] = ["einzelbegleitung", "patenschaft", "sprachmittlung"];
const MAX_LABEL: usize = 40;
const MAX_ID: usize = 128;
pub(crate) const MAX_NOTE: usize = 100_000;
const MINUTES_PER_DAY: u32 = 1440;

/// `add_appointment`, `update_appointment` and `cancel_appointment` for the `impl` of a
/// document that keeps an `appointments` map as a case does (the schedule too), each
/// checking that the document is of type `$type`. The names are the caller's imports.
macro_rules! appointment_edits {
    ($type:expr) => {
        pub fn add_appointment(
            doc: &mut Automerge,
            new: &NewAppointment,
            now: Millis,
        ) -> Result<AppointmentId, SchemaError> {
            appointment::add_in(doc, $type, new, now)
        }

        pub fn update_appointment(
            doc: &mut Automerge,
            id: &AppointmentId,
            update: &AppointmentUpdate,
            now: Millis,
        ) -> Result<(), SchemaError> {
            appointment::update_in(doc, $type, id, update, now)
        }

        pub fn cancel_appointment(
            doc: &mut Automerge,
            id: &AppointmentId,
            now: Millis,
        ) -> Result<(), SchemaError> {
            appointment::cancel_in(doc, $type, id, now)
        }
    };
}
pub(super) use appointment_edits;

entry_id!(
    /// The key of a note in the case's `notes` map.
    NoteId
);
entry_id!(
    /// The key of an hours entry in the case's `hours` map.
    HoursId
);

/// What a case starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCase {
    pub organisation_id: String,
    /// Pseudonymous: initials or a code, never a name.
    pub label: String,
    /// ISO 639-1 codes.
    pub languages: Vec<String>,
    pub topic: Topic,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewNote {
    /// The volunteer or coordinator id of the writer.
    pub author: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewHours {
    /// The volunteer id whose time this is.
    pub author: String,
    /// `YYYY-MM-DD`, the day the time was spent.
    pub date: String,
    /// 1 to 1440.
    pub minutes: u32,
    /// 0 to 1440.
    pub travel_minutes: u32,
    /// A short word the apps agree on, e.g. `begleitung`, `uebersetzung`, `telefonat`.
    pub kind: String,
}

/// A whole case as read back; what the server returns as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseView {
    pub schema: u64,
    pub organisation_id: String,
    pub label: String,
    pub languages: Vec<String>,
    pub topic: Topic,
    pub status: Status,
    /// `einzelbegleitung`, `patenschaft` or `sprachmittlung` (`CASE_KINDS`); `None` for a
    /// case written before cases had a kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub created_at: Millis,
    /// Oldest first.
    pub notes: Vec<NoteView>,
    /// Earliest start first.
    pub appointments: Vec<AppointmentView>,
    /// Earliest date first.
    pub hours: Vec<HoursView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoteView {
    pub id: NoteId,
    pub author: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoursView {
    pub id: HoursId,
    pub author: String,
    pub date: String,
    pub minutes: u32,
    pub travel_minutes: u32,
    pub kind: String,
    /// The last correction by a coordinator, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<Correction>,
}

/// Who changed or removed an hours entry, when and why (a short reason code such as
/// `duplicate`, `wrong-amount`, `wrong-case`, `other`; never free text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    pub reason: String,
    /// The coordinator's id.
    pub by: String,
    pub at: Millis,
}

/// A correction of an hours entry: fields left `None` stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoursChange {
    pub date: Option<String>,
    pub minutes: Option<u32>,
    pub travel_minutes: Option<u32>,
    pub kind: Option<String>,
}

/// One row of the coordinators' dashboard index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseSummary {
    pub label: String,
    pub topic: Topic,
    pub status: Status,
    pub languages: Vec<String>,
    pub created_at: Millis,
    /// From the change metadata (see [`super::last_change`]) unless the caller knows better.
    pub last_change: Option<Millis>,
    pub next_appointment: Option<AppointmentView>,
    pub note_count: usize,
    pub hours_minutes: u64,
    pub travel_minutes: u64,
}

impl CaseSummary {
    /// For callers that keep their own last-change time (e.g. the server's database).
    pub fn from_view(view: &CaseView, now: Millis, last_change: Option<Millis>) -> Self {
        Self {
            label: view.label.clone(),
            topic: view.topic,
            status: view.status,
            languages: view.languages.clone(),
            created_at: view.created_at,
            last_change,
            next_appointment: appointment::next_after(&view.appointments, now).cloned(),
            note_count: view.notes.len(),
            hours_minutes: view.hours.iter().map(|h| u64::from(h.minutes)).sum(),
            travel_minutes: view.hours.iter().map(|h| u64::from(h.travel_minutes)).sum(),
        }
    }
}

/// Reads and edits case documents. Every edit is one automerge change stamped with `now`.
pub struct CaseDoc;

impl CaseDoc {
    /// Writes a new case into an empty document. Create a case on one device only and let
    /// the others sync it: two devices creating the same document's maps concurrently
    /// would each get their own `notes` map, and one of them would hide the other.
    pub fn create(doc: &mut Automerge, new: &NewCase, now: Millis) -> Result<(), SchemaError> {
        validate_non_empty("organisationId", &new.organisation_id, MAX_ID)?;
        validate_non_empty("label", &new.label, MAX_LABEL)?;
        let languages = normalise_languages(&new.languages)?;
        if let Some(ty) = access::opt_string(doc, &ROOT, "type", "")? {
            return Err(SchemaError::AlreadyCreated(ty));
        }
        access::change(doc, now, ChangeKind::CreateCase, |tx| {
            tx.put(ROOT, "schema", SCHEMA_VERSION as i64)?;
            tx.put(ROOT, "type", TYPE)?;
            tx.put(ROOT, "organisationId", new.organisation_id.as_str())?;
            tx.put(ROOT, "label", new.label.trim())?;
            let list = tx.put_object(ROOT, "languages", ObjType::List)?;
            for (i, code) in languages.iter().enumerate() {
                tx.insert(&list, i, code.as_str())?;
            }
            tx.put(ROOT, "topic", new.topic.as_str())?;
            tx.put(ROOT, "status", new.status.as_str())?;
            tx.put(ROOT, "createdAt", now)?;
            tx.put_object(ROOT, "notes", ObjType::Map)?;
            tx.put_object(ROOT, "appointments", ObjType::Map)?;
            tx.put_object(ROOT, "hours", ObjType::Map)?;
            Ok(())
        })
    }

    pub fn read(doc: &Automerge) -> Result<CaseView, SchemaError> {
        let schema = access::check_doc(doc, TYPE)?;
        let languages = match access::opt_obj(doc, &ROOT, "languages", "", ObjType::List)? {
            Some(list) => access::string_list(doc, &list, "languages")?,
            None => Vec::new(),
        };
        Ok(CaseView {
            schema,
            organisation_id: access::string(doc, &ROOT, "organisationId", "")?,
            label: access::string(doc, &ROOT, "label", "")?,
            languages,
            topic: access::string(doc, &ROOT, "topic", "")?.parse()?,
            status: access::string(doc, &ROOT, "status", "")?.parse()?,
            kind: access::opt_string(doc, &ROOT, "kind", "")?,
            created_at: access::int(doc, &ROOT, "createdAt", "")?,
            notes: read_notes(doc)?,
            appointments: appointment::read_all(doc, map(doc, "appointments")?.as_ref())?,
            hours: read_hours(doc)?,
        })
    }

    /// The dashboard row, with the last change time taken from the change metadata.
    pub fn summary(doc: &Automerge, now: Millis) -> Result<CaseSummary, SchemaError> {
        let view = Self::read(doc)?;
        Ok(CaseSummary::from_view(&view, now, super::last_change(doc)))
    }

    pub fn set_status(doc: &mut Automerge, status: Status, now: Millis) -> Result<(), SchemaError> {
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetStatus, |tx| {
            tx.put(ROOT, "status", status.as_str())?;
            Ok(())
        })
    }

    /// The kind of accompaniment (`CASE_KINDS`): one-to-one, a long-term mentoring
    /// (Patenschaft), or language mediation.
    pub fn set_kind(doc: &mut Automerge, kind: &str, now: Millis) -> Result<(), SchemaError> {
        if !CASE_KINDS.contains(&kind) {
            return Err(SchemaError::InvalidToken {
                field: "kind",
                expected: "einzelbegleitung, patenschaft or sprachmittlung",
            });
        }
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetKind, |tx| {
            tx.put(ROOT, "kind", kind)?;
            Ok(())
        })
    }

    pub fn set_topic(doc: &mut Automerge, topic: Topic, now: Millis) -> Result<(), SchemaError> {
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetTopic, |tx| {
            tx.put(ROOT, "topic", topic.as_str())?;
            Ok(())
        })
    }

    pub fn set_label(doc: &mut Automerge, label: &str, now: Millis) -> Result<(), SchemaError> {
        validate_non_empty("label", label, MAX_LABEL)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetLabel, |tx| {
            tx.put(ROOT, "label", label.trim())?;
            Ok(())
        })
    }

    /// Replaces the language list. The list is edited in place (removals and additions
    /// only), so a concurrent change on another device keeps its own additions.
    pub fn set_languages(
        doc: &mut Automerge,
        languages: &[String],
        now: Millis,
    ) -> Result<(), SchemaError> {
        let wanted = normalise_languages(languages)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::SetLanguages, |tx| {
            let list = access::obj(tx, &ROOT, "languages", "", ObjType::List)?;
            let current = access::string_list(tx, &list, "languages")?;
            let mut kept: Vec<String> = Vec::new();
            for (i, code) in current.iter().enumerate().rev() {
                if wanted.contains(code) && !current[..i].contains(code) {
                    kept.push(code.clone());
                } else {
                    tx.delete(&list, i)?;
                }
            }
            for code in wanted.iter().filter(|c| !kept.contains(c)) {
                let end = tx.length(&list);
                tx.insert(&list, end, code.as_str())?;
            }
            Ok(())
        })
    }

    pub fn add_note(
        doc: &mut Automerge,
        note: &NewNote,
        now: Millis,
    ) -> Result<NoteId, SchemaError> {
        validate_non_empty("author", &note.author, MAX_ID)?;
        validate_len("text", &note.text, MAX_NOTE)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::AddNote, |tx| {
            let notes = access::obj(tx, &ROOT, "notes", "", ObjType::Map)?;
            let key = new_entry_key();
            let n = tx.put_object(&notes, key.as_str(), ObjType::Map)?;
            tx.put(&n, "author", note.author.as_str())?;
            tx.put(&n, "createdAt", now)?;
            tx.put(&n, "updatedAt", now)?;
            let text = tx.put_object(&n, "text", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, &note.text)?;
            Ok(NoteId(key))
        })
    }

    /// One keystroke-sized edit: delete `del` characters at `pos`, then insert `insert`
    /// there. Positions count Unicode code points (automerge's default text encoding).
    /// Capturing edits like this merges best with concurrent edits of the same note.
    pub fn edit_note(
        doc: &mut Automerge,
        id: &NoteId,
        pos: usize,
        del: usize,
        insert: &str,
        now: Millis,
    ) -> Result<(), SchemaError> {
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::EditNote, |tx| {
            let (note, text) = note_text(tx, id)?;
            let len = tx.length(&text);
            let end = pos.checked_add(del).filter(|end| *end <= len);
            if end.is_none() {
                return Err(SchemaError::EditOutOfRange { pos, del, len });
            }
            if len - del + insert.chars().count() > MAX_NOTE {
                return Err(SchemaError::TooLong {
                    field: "text",
                    max: MAX_NOTE,
                });
            }
            let del =
                isize::try_from(del).map_err(|_| SchemaError::EditOutOfRange { pos, del, len })?;
            tx.splice_text(&text, pos, del, insert)?;
            tx.put(&note, "updatedAt", now)?;
            Ok(())
        })
    }

    /// Replaces the note's text with `text`, written as the smallest set of splices
    /// (automerge's `update_text`), so concurrent edits elsewhere in the note survive. Use
    /// when the app only has the new full text, not the individual edits.
    pub fn set_note_text(
        doc: &mut Automerge,
        id: &NoteId,
        text: &str,
        now: Millis,
    ) -> Result<(), SchemaError> {
        validate_len("text", text, MAX_NOTE)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::EditNote, |tx| {
            let (note, obj) = note_text(tx, id)?;
            if tx.text(&obj)? != text {
                tx.update_text(&obj, text)?;
                tx.put(&note, "updatedAt", now)?;
            }
            Ok(())
        })
    }

    pub fn delete_note(doc: &mut Automerge, id: &NoteId, now: Millis) -> Result<(), SchemaError> {
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::DeleteNote, |tx| {
            let notes = access::obj(tx, &ROOT, "notes", "", ObjType::Map)?;
            access::entry(tx, &notes, id.as_str(), "note", "notes.")?;
            tx.delete(&notes, id.as_str())?;
            Ok(())
        })
    }

    appointment_edits!(TYPE);

    pub fn log_hours(
        doc: &mut Automerge,
        hours: &NewHours,
        now: Millis,
    ) -> Result<HoursId, SchemaError> {
        validate_non_empty("author", &hours.author, MAX_ID)?;
        validate_date(&hours.date)?;
        validate_minutes("minutes", hours.minutes, 1, MINUTES_PER_DAY)?;
        validate_minutes("travelMinutes", hours.travel_minutes, 0, MINUTES_PER_DAY)?;
        validate_token("kind", &hours.kind)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::LogHours, |tx| {
            let map = access::obj(tx, &ROOT, "hours", "", ObjType::Map)?;
            let key = new_entry_key();
            let h = tx.put_object(&map, key.as_str(), ObjType::Map)?;
            tx.put(&h, "author", hours.author.as_str())?;
            tx.put(&h, "date", hours.date.as_str())?;
            tx.put(&h, "minutes", i64::from(hours.minutes))?;
            tx.put(&h, "travelMinutes", i64::from(hours.travel_minutes))?;
            tx.put(&h, "kind", hours.kind.as_str())?;
            Ok(HoursId(key))
        })
    }

    /// A coordinator corrects an hours entry: the fields that differ, and the correction
    /// (reason, who, when) kept in the entry so the volunteer sees why.
    pub fn correct_hours(
        doc: &mut Automerge,
        id: &HoursId,
        change: &HoursChange,
        why: &Correction,
        now: Millis,
    ) -> Result<(), SchemaError> {
        if let Some(date) = &change.date {
            validate_date(date)?;
        }
        if let Some(m) = change.minutes {
            validate_minutes("minutes", m, 1, MINUTES_PER_DAY)?;
        }
        if let Some(m) = change.travel_minutes {
            validate_minutes("travelMinutes", m, 0, MINUTES_PER_DAY)?;
        }
        if let Some(kind) = &change.kind {
            validate_token("kind", kind)?;
        }
        validate_token("reason", &why.reason)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::CorrectHours, |tx| {
            let map = access::obj(tx, &ROOT, "hours", "", ObjType::Map)?;
            let h = access::entry(tx, &map, id.as_str(), "hours entry", "hours.")?;
            if let Some(date) = &change.date {
                tx.put(&h, "date", date.as_str())?;
            }
            if let Some(m) = change.minutes {
                tx.put(&h, "minutes", i64::from(m))?;
            }
            if let Some(m) = change.travel_minutes {
                tx.put(&h, "travelMinutes", i64::from(m))?;
            }
            if let Some(kind) = &change.kind {
                tx.put(&h, "kind", kind.as_str())?;
            }
            put_correction(tx, &h, "correction", why)
        })
    }

    /// A coordinator removes an hours entry with a reason: it stays in the document,
    /// marked, so the volunteer sees what was removed and why; readers and reports leave
    /// it out.
    pub fn remove_hours(
        doc: &mut Automerge,
        id: &HoursId,
        why: &Correction,
        now: Millis,
    ) -> Result<(), SchemaError> {
        validate_token("reason", &why.reason)?;
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::RemoveHours, |tx| {
            let map = access::obj(tx, &ROOT, "hours", "", ObjType::Map)?;
            let h = access::entry(tx, &map, id.as_str(), "hours entry", "hours.")?;
            put_correction(tx, &h, "removed", why)
        })
    }

    pub fn delete_hours(doc: &mut Automerge, id: &HoursId, now: Millis) -> Result<(), SchemaError> {
        access::check_doc(doc, TYPE)?;
        access::change(doc, now, ChangeKind::DeleteHours, |tx| {
            let map = access::obj(tx, &ROOT, "hours", "", ObjType::Map)?;
            access::entry(tx, &map, id.as_str(), "hours entry", "hours.")?;
            tx.delete(&map, id.as_str())?;
            Ok(())
        })
    }
}

fn put_correction(
    tx: &mut automerge::transaction::Transaction<'_>,
    entry: &ObjId,
    key: &str,
    why: &Correction,
) -> Result<(), SchemaError> {
    let c = tx.put_object(entry, key, ObjType::Map)?;
    tx.put(&c, "reason", why.reason.as_str())?;
    tx.put(&c, "by", why.by.as_str())?;
    tx.put(&c, "at", why.at)?;
    Ok(())
}

fn read_correction<R: ReadDoc>(
    doc: &R,
    entry: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<Option<Correction>, SchemaError> {
    let Some(c) = access::opt_obj(doc, entry, key, prefix, ObjType::Map)? else {
        return Ok(None);
    };
    let prefix = format!("{prefix}{key}.");
    Ok(Some(Correction {
        reason: access::string(doc, &c, "reason", &prefix)?,
        by: access::opt_string(doc, &c, "by", &prefix)?.unwrap_or_default(),
        at: access::opt_int(doc, &c, "at", &prefix)?.unwrap_or(0),
    }))
}

fn map(doc: &Automerge, key: &str) -> Result<Option<ObjId>, SchemaError> {
    access::opt_obj(doc, &ROOT, key, "", ObjType::Map)
}

/// The note's map and its text object.
fn note_text<R: ReadDoc>(doc: &R, id: &NoteId) -> Result<(ObjId, ObjId), SchemaError> {
    let notes = access::obj(doc, &ROOT, "notes", "", ObjType::Map)?;
    let note = access::entry(doc, &notes, id.as_str(), "note", "notes.")?;
    let text = access::obj(doc, &note, "text", &format!("notes.{id}."), ObjType::Text)?;
    Ok((note, text))
}

fn read_notes(doc: &Automerge) -> Result<Vec<NoteView>, SchemaError> {
    let Some(notes) = map(doc, "notes")? else {
        return Ok(Vec::new());
    };
    let mut out = access::map_entries(doc, &notes, "notes.")?
        .into_iter()
        .map(|(key, n)| {
            let prefix = format!("notes.{key}.");
            let created_at = access::int(doc, &n, "createdAt", &prefix)?;
            Ok(NoteView {
                author: access::string(doc, &n, "author", &prefix)?,
                created_at,
                updated_at: access::opt_int(doc, &n, "updatedAt", &prefix)?.unwrap_or(created_at),
                text: access::opt_string(doc, &n, "text", &prefix)?.unwrap_or_default(),
                id: NoteId(key),
            })
        })
        .collect::<Result<Vec<_>, SchemaError>>()?;
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

fn read_hours(doc: &Automerge) -> Result<Vec<HoursView>, SchemaError> {
    let Some(hours) = map(doc, "hours")? else {
        return Ok(Vec::new());
    };
    let mut out = access::map_entries(doc, &hours, "hours.")?
        .into_iter()
        .map(|(key, h)| {
            let prefix = format!("hours.{key}.");
            // Removed by a coordinator: kept in the document for the record only.
            if access::opt_obj(doc, &h, "removed", &prefix, ObjType::Map)?.is_some() {
                return Ok(None);
            }
            Ok(Some(HoursView {
                author: access::opt_string(doc, &h, "author", &prefix)?.unwrap_or_default(),
                date: access::string(doc, &h, "date", &prefix)?,
                minutes: access::count(doc, &h, "minutes", &prefix)?,
                travel_minutes: access::opt_int(doc, &h, "travelMinutes", &prefix)?
                    .map(|_| access::count(doc, &h, "travelMinutes", &prefix))
                    .transpose()?
                    .unwrap_or(0),
                kind: access::string(doc, &h, "kind", &prefix)?,
                correction: read_correction(doc, &h, "correction", &prefix)?,
                id: HoursId(key),
            }))
        })
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, SchemaError>>()?;
    out.sort_by(|a, b| (&a.date, &a.id).cmp(&(&b.date, &b.id)));
    Ok(out)
}

#[cfg(test)]
mod tests;

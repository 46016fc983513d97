//! What a document's history says: the kind of each change (its automerge message, which
//! our edits write and readers such as the dashboard's history and its review of closed
//! cases interpret), and which device created which note and hours entry. Kept beside
//! the edits that write the messages, so that a renamed message cannot leave a reader
//! behind.

use std::collections::HashMap;

use automerge::{ActorId, Automerge, ObjId, ROOT, ReadDoc};

use super::{CaseView, Millis};

/// The message of every change our edits make. Messages never carry personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    CreateCase,
    SetStatus,
    SetTopic,
    SetLabel,
    SetLanguages,
    AddNote,
    EditNote,
    DeleteNote,
    AddAppointment,
    UpdateAppointment,
    LogHours,
    DeleteHours,
    CreateSchedule,
    SetAvailability,
    SetKind,
    /// A coordinator corrected an hours entry, or removed one (with a reason).
    CorrectHours,
    RemoveHours,
    /// A case written anew as its next generation (an entry erased, or compacted).
    NewGeneration,
    /// A phone's offline edits to an earlier generation, replayed onto this one.
    ReplayEdits,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 19] = [
        Self::CreateCase,
        Self::SetStatus,
        Self::SetTopic,
        Self::SetLabel,
        Self::SetLanguages,
        Self::AddNote,
        Self::EditNote,
        Self::DeleteNote,
        Self::AddAppointment,
        Self::UpdateAppointment,
        Self::LogHours,
        Self::DeleteHours,
        Self::CreateSchedule,
        Self::SetAvailability,
        Self::SetKind,
        Self::CorrectHours,
        Self::RemoveHours,
        Self::NewGeneration,
        Self::ReplayEdits,
    ];

    /// The automerge change message (stable: stored in every document's history).
    pub fn message(self) -> &'static str {
        match self {
            Self::CreateCase => "create case",
            Self::SetStatus => "set status",
            Self::SetTopic => "set topic",
            Self::SetLabel => "set label",
            Self::SetLanguages => "set languages",
            Self::AddNote => "add note",
            Self::EditNote => "edit note",
            Self::DeleteNote => "delete note",
            Self::AddAppointment => "add appointment",
            Self::UpdateAppointment => "update appointment",
            Self::LogHours => "log hours",
            Self::DeleteHours => "delete hours",
            Self::CreateSchedule => "create schedule",
            Self::SetAvailability => "set availability",
            Self::SetKind => "set kind",
            Self::CorrectHours => "correct hours",
            Self::RemoveHours => "remove hours",
            Self::NewGeneration => super::generation::NEW_GENERATION_MESSAGE,
            Self::ReplayEdits => super::generation::REPLAY_MESSAGE,
        }
    }

    /// `None` for a message our edits do not write (another client's, or none).
    pub fn of_message(message: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.message() == message)
    }

    /// Whether the change writes what a volunteer did for the person (a note, hours), as
    /// opposed to bookkeeping; work written after a case was closed is worth a look.
    pub fn writes_work(self) -> bool {
        matches!(
            self,
            Self::AddNote | Self::EditNote | Self::LogHours | Self::ReplayEdits
        )
    }
}

/// One change of a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// By the writing device's clock, in whole seconds (as automerge stores it), as ms;
    /// 0 where the writer gave no time.
    pub at: Millis,
    pub kind: Option<ChangeKind>,
    pub actor: ActorId,
}

/// Every change, in causal order and then by time (a stable sort, so causal order
/// breaks ties).
pub fn history(doc: &Automerge) -> Vec<HistoryEntry> {
    let mut out: Vec<HistoryEntry> = doc
        .get_changes(&[])
        .iter()
        .map(|c| HistoryEntry {
            at: c.timestamp().saturating_mul(1000),
            kind: c.message().and_then(ChangeKind::of_message),
            actor: c.actor_id().clone(),
        })
        .collect();
    out.sort_by_key(|c| c.at);
    out
}

/// The automerge actor that created each note and hours entry of `view`, mapped to the
/// `author` written into the entry (the first one seen per actor).
pub fn authors_by_actor(doc: &Automerge, view: &CaseView) -> HashMap<ActorId, String> {
    let notes = view
        .notes
        .iter()
        .map(|n| ("notes", n.id.as_str(), &n.author));
    let hours = view
        .hours
        .iter()
        .map(|h| ("hours", h.id.as_str(), &h.author));
    let mut out = HashMap::new();
    for (map, key, author) in notes.chain(hours) {
        if let Some(actor) = creator(doc, map, key) {
            out.entry(actor).or_insert_with(|| author.clone());
        }
    }
    out
}

/// The automerge actor whose change created each note and hours entry, by entry id:
/// who really wrote it, whatever its `author` field says. Servers bind actors to writers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creators {
    pub notes: HashMap<String, ActorId>,
    pub hours: HashMap<String, ActorId>,
}

impl Creators {
    /// Every actor that created an entry, each once.
    pub fn actors(&self) -> Vec<ActorId> {
        let mut out: Vec<ActorId> = self
            .notes
            .values()
            .chain(self.hours.values())
            .cloned()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub fn creators(doc: &Automerge, view: &CaseView) -> Creators {
    let of = |map: &str, ids: Vec<&str>| {
        ids.into_iter()
            .filter_map(|id| creator(doc, map, id).map(|a| (id.to_owned(), a)))
            .collect()
    };
    Creators {
        notes: of("notes", view.notes.iter().map(|n| n.id.as_str()).collect()),
        hours: of("hours", view.hours.iter().map(|h| h.id.as_str()).collect()),
    }
}

fn creator(doc: &Automerge, map: &str, key: &str) -> Option<ActorId> {
    let (_, obj) = doc.get(ROOT, map).ok()??;
    match doc.get(&obj, key).ok()??.1 {
        ObjId::Id(_, actor, _) => Some(actor),
        ObjId::Root => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_its_kind() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::of_message(kind.message()), Some(kind));
        }
        assert_eq!(ChangeKind::of_message("rewrite everything"), None);
    }

    #[test]
    fn the_history_names_what_the_edits_did_and_who_created_what() {
        use crate::schema::{CaseDoc, NewHours, NewNote};
        let mut doc = crate::testing::sample_case();
        let mut phone = doc.fork();
        let note = NewNote {
            author: "vol-1".into(),
            text: "Termin vereinbart".into(),
        };
        CaseDoc::add_note(&mut phone, &note, 2_000).unwrap();
        let hours = NewHours {
            author: "vol-1".into(),
            date: "2026-03-04".into(),
            minutes: 90,
            travel_minutes: 20,
            kind: "begleitung".into(),
        };
        CaseDoc::log_hours(&mut phone, &hours, 3_000).unwrap();
        doc.merge(&mut phone).unwrap();

        let kinds: Vec<_> = history(&doc).into_iter().map(|c| c.kind).collect();
        use ChangeKind::*;
        assert_eq!(kinds, [Some(CreateCase), Some(AddNote), Some(LogHours)]);
        let view = CaseDoc::read(&doc).unwrap();
        let authors = authors_by_actor(&doc, &view);
        assert_eq!(authors.len(), 1, "only the phone wrote notes and hours");
        assert_eq!(authors.get(phone.get_actor()), Some(&"vol-1".to_owned()));
        let created = creators(&doc, &view);
        assert_eq!(
            created.notes.values().collect::<Vec<_>>(),
            [phone.get_actor()]
        );
        assert_eq!(
            created.hours.values().collect::<Vec<_>>(),
            [phone.get_actor()]
        );
        assert_eq!(created.actors(), [phone.get_actor().clone()]);
    }
}

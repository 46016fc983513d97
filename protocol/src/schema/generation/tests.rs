#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, Automerge};
use proptest::prelude::*;

use super::*;
use crate::schema::{CaseDoc, NewHours, NewNote, NoteId};
use crate::testing::sample_case;

const OLD_ID: &str = "2gdTnAQTjSJg2w1DSsE8SPaDoVd";

fn note(doc: &mut Automerge, text: &str) -> NoteId {
    let new = NewNote {
        author: "vol-1".into(),
        text: text.into(),
    };
    CaseDoc::add_note(doc, &new, 2_000).unwrap()
}

fn hours(doc: &mut Automerge, kind: &str) {
    let new = NewHours {
        author: "vol-1".into(),
        date: "2026-03-04".into(),
        minutes: 60,
        travel_minutes: 15,
        kind: kind.into(),
    };
    CaseDoc::log_hours(doc, &new, 3_000).unwrap();
}

fn texts(doc: &Automerge) -> Vec<String> {
    CaseDoc::read(doc)
        .unwrap()
        .notes
        .into_iter()
        .map(|n| n.text)
        .collect()
}

/// Whether `needle` is anywhere in the document, history included (uncompressed, so a
/// deflated column cannot hide it).
fn in_history(doc: &Automerge, needle: &str) -> bool {
    let bytes = doc.save_nocompress();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_new_generation_holds_the_case_without_the_erased_note_or_its_history() {
    let mut old = sample_case();
    let secret = note(&mut old, "Diagnose-QX7");
    CaseDoc::edit_note(&mut old, &secret, 8, 0, " (vertraulich)", 2_500).unwrap();
    let kept = note(&mut old, "Termin beim Amt");
    hours(&mut old, "begleitung");
    let typo = note(&mut old, "Tippfehler-ZZ9");
    CaseDoc::delete_note(&mut old, &typo, 2_600).unwrap();
    // The insert split the first note's text in the history: look for its parts.
    for part in ["Diagnose", "-QX7", "vertraulich", "Tippfehler-ZZ9"] {
        assert!(in_history(&old, part), "{part} is in the old history");
    }

    let erase = [EntryRef::new(EntryKind::Note, secret.as_str())];
    let new = next_generation(&old, OLD_ID, &erase, ActorId::random(), 9_000).unwrap();
    let (before, after) = (CaseDoc::read(&old).unwrap(), CaseDoc::read(&new).unwrap());
    assert_eq!(after.notes.len(), 1);
    assert_eq!(after.notes[0].id, kept);
    assert_eq!(after.hours, before.hours);
    assert_eq!((after.label, after.topic), (before.label, before.topic));
    for gone in ["Diagnose", "-QX7", "vertraulich", "Tippfehler-ZZ9"] {
        assert!(!in_history(&new, gone), "{gone} left in the history");
    }
    assert_eq!(new.get_changes_meta(&[]).len(), 1, "one change, no history");
    let line = lineage(&new).unwrap();
    assert_eq!(line.case_id.as_deref(), Some(OLD_ID));
    assert_eq!(line.generation, 2);
    assert_eq!(line.erased, erase);
    assert_eq!(case_id(&new, "other").unwrap(), OLD_ID);
    assert_eq!(case_id(&old, OLD_ID).unwrap(), OLD_ID);

    // The next generation keeps the case id and every earlier erasure; compacting erases
    // nothing more.
    let third = next_generation(&new, "gen-2-id", &[], ActorId::random(), 10_000).unwrap();
    let line = lineage(&third).unwrap();
    assert_eq!(
        (line.case_id.as_deref(), line.generation),
        (Some(OLD_ID), 3)
    );
    assert_eq!(line.erased, erase);
    assert_eq!(CaseDoc::read(&third).unwrap().notes.len(), 1);

    let missing = [EntryRef::new(EntryKind::Hours, "no-such-entry")];
    assert!(matches!(
        next_generation(&old, OLD_ID, &missing, ActorId::random(), 9_000),
        Err(SchemaError::NotFound { kind: "hours", .. })
    ));
}

#[test]
fn offline_edits_are_replayed_and_an_edit_to_the_erased_note_is_dropped() {
    let mut server = sample_case();
    let secret = note(&mut server, "Diagnose-QX7");
    let other = note(&mut server, "Wohnung besichtigt");
    let mut phone = server.fork();

    // Offline on the phone: a new note, an edit of another note, hours, an edit of the
    // note that is about to be erased, a new label.
    note(&mut phone, "offline geschrieben");
    CaseDoc::edit_note(&mut phone, &other, 0, 0, "Neue ", 3_000).unwrap();
    hours(&mut phone, "telefonat");
    CaseDoc::edit_note(&mut phone, &secret, 0, 0, "NOCHMAL-", 3_000).unwrap();
    CaseDoc::set_label(&mut phone, "B.K.", 3_000).unwrap();

    let known = KnownChanges::of(&server);
    let erase = [EntryRef::new(EntryKind::Note, secret.as_str())];
    let mut next = next_generation(&server, OLD_ID, &erase, ActorId::random(), 4_000).unwrap();
    let replayed = replay(&phone, &known, &mut next, 5_000).unwrap();
    assert_eq!(replayed.dropped, erase);
    assert!(replayed.edits >= 4, "{replayed:?}");

    let view = CaseDoc::read(&next).unwrap();
    let mut got = texts(&next);
    got.sort();
    assert_eq!(got, ["Neue Wohnung besichtigt", "offline geschrieben"]);
    assert_eq!(view.hours.len(), 1);
    assert_eq!(view.label, "B.K.");
    assert!(!in_history(&next, "NOCHMAL") && !in_history(&next, "Diagnose"));

    // Again: nothing more to write.
    let heads = next.get_heads();
    let again = replay(&phone, &known, &mut next, 6_000).unwrap();
    assert_eq!(again.edits, 0);
    assert_eq!(next.get_heads(), heads, "no empty change");
}

#[test]
fn a_replica_in_step_with_the_server_replays_nothing() {
    let mut server = sample_case();
    note(&mut server, "alles synchron");
    let phone = server.fork();
    let known = KnownChanges::of(&server);
    let mut next = next_generation(&server, OLD_ID, &[], ActorId::random(), 4_000).unwrap();
    let heads = next.get_heads();
    assert_eq!(
        replay(&phone, &known, &mut next, 5_000).unwrap(),
        Replayed::default()
    );
    assert_eq!(next.get_heads(), heads);
}

#[test]
fn a_replayed_splice_lands_between_other_peoples_edits() {
    let mut server = sample_case();
    let id = note(&mut server, "Anna ruft an. Termin am Montag.");
    let mut phone = server.fork();
    // Offline: the phone changes the day.
    CaseDoc::set_note_text(&mut phone, &id, "Anna ruft an. Termin am Dienstag.", 3_000).unwrap();
    let known = KnownChanges::of(&server);
    let mut next = next_generation(&server, OLD_ID, &[], ActorId::random(), 4_000).unwrap();
    // Meanwhile on the new generation: someone adds to the start and the end.
    CaseDoc::edit_note(&mut next, &id, 0, 0, "Heute: ", 4_500).unwrap();
    let len = CaseDoc::read(&next).unwrap().notes[0].text.chars().count();
    CaseDoc::edit_note(&mut next, &id, len, 0, " Dolmetscherin kommt.", 4_500).unwrap();
    replay(&phone, &known, &mut next, 5_000).unwrap();
    assert_eq!(
        texts(&next),
        ["Heute: Anna ruft an. Termin am Dienstag. Dolmetscherin kommt."]
    );
}

#[test]
fn known_changes_travel_as_bytes() {
    let mut doc = sample_case();
    note(&mut doc, "eins");
    let known = KnownChanges::of(&doc);
    assert_eq!(known.len(), 2);
    let bytes = known.to_bytes();
    assert_eq!(bytes.len(), 64);
    assert_eq!(KnownChanges::from_bytes(&bytes), Some(known));
    assert_eq!(KnownChanges::from_bytes(&bytes[..40]), None);
    assert_eq!(KnownChanges::from_bytes(&[]), Some(KnownChanges::default()));
}

// The property: several replicas edit offline, the server erases a note at some point,
// syncs happen in any order; every replica ends on the newest generation with every
// edit except those to the erased note, and the erased note's text is in no history.

#[derive(Debug, Clone)]
enum Step {
    /// A replica adds a note with a fresh token.
    AddNote(usize),
    /// A replica inserts a fresh token into one of the notes it sees (by index), at a
    /// position given as a fraction of the text's length.
    EditNote(usize, usize, u8),
    /// A replica logs hours (a fresh token as the kind).
    LogHours(usize),
    /// A replica and the server exchange everything.
    Sync(usize),
    /// The server erases one of its notes (by index), if it has any and has not yet.
    Erase(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize).prop_map(Step::AddNote),
        (0..3usize, 0..8usize, any::<u8>()).prop_map(|(r, n, p)| Step::EditNote(r, n, p)),
        (0..3usize).prop_map(Step::LogHours),
        (0..3usize).prop_map(Step::Sync),
        (0..8usize).prop_map(Step::Erase),
    ]
}

/// A replica's copy and the generation it is on.
struct Replica {
    doc: Automerge,
    generation: u64,
}

struct World {
    server: Automerge,
    generation: u64,
    /// What the server held when it wrote each generation after the first.
    known: BTreeMap<u64, KnownChanges>,
    replicas: Vec<Replica>,
    /// Token -> the note it was written into (None for an hours kind).
    tokens: BTreeMap<String, Option<String>>,
    erased: Option<String>,
    next_token: usize,
    now: Millis,
}

impl World {
    fn new() -> Self {
        let server = sample_case();
        let replicas = (0..3)
            .map(|_| Replica {
                doc: server.fork(),
                generation: 1,
            })
            .collect();
        Self {
            server,
            generation: 1,
            known: BTreeMap::new(),
            replicas,
            tokens: BTreeMap::new(),
            erased: None,
            next_token: 0,
            now: 10_000,
        }
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        self.now += 1_000;
        format!("tok{:04}x", self.next_token)
    }

    fn sync(&mut self, r: usize) {
        let replica = &mut self.replicas[r];
        if replica.generation < self.generation {
            // Told of the newer generation: replay onto the server's copy of it.
            let known = &self.known[&(replica.generation + 1)];
            let mut next = self.server.fork();
            replay(&replica.doc, known, &mut next, self.now).unwrap();
            replica.doc = next;
            replica.generation = self.generation;
        }
        self.server.merge(&mut replica.doc).unwrap();
        replica.doc.merge(&mut self.server).unwrap();
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::AddNote(r) => {
                let token = self.token();
                let id = note(&mut self.replicas[r].doc, &token);
                self.tokens.insert(token, Some(id.to_string()));
            }
            Step::EditNote(r, n, at) => {
                let notes = CaseDoc::read(&self.replicas[r].doc).unwrap().notes;
                if notes.is_empty() {
                    return;
                }
                let target = &notes[n % notes.len()];
                let len = target.text.chars().count();
                let pos = len * usize::from(at) / 255;
                // Inside a token would split it; tokens end in 'x', so go to a boundary.
                let chars: Vec<char> = target.text.chars().collect();
                let pos = (pos..=len)
                    .find(|&p| p == 0 || p == len || chars[p - 1] == 'x' || chars[p] == ' ')
                    .unwrap_or(len);
                let token = format!(" {} ", self.token());
                let doc = &mut self.replicas[r].doc;
                CaseDoc::edit_note(doc, &target.id, pos, 0, &token, self.now).unwrap();
                self.tokens
                    .insert(token.trim().to_owned(), Some(target.id.to_string()));
            }
            Step::LogHours(r) => {
                let token = self.token();
                hours(&mut self.replicas[r].doc, &token);
                self.tokens.insert(token, None);
            }
            Step::Sync(r) => self.sync(r),
            Step::Erase(n) => {
                let notes = CaseDoc::read(&self.server).unwrap().notes;
                if self.erased.is_some() || notes.is_empty() {
                    return;
                }
                let id = notes[n % notes.len()].id.to_string();
                let erase = [EntryRef::new(EntryKind::Note, id.clone())];
                self.known
                    .insert(self.generation + 1, KnownChanges::of(&self.server));
                self.now += 1_000;
                self.server =
                    next_generation(&self.server, OLD_ID, &erase, ActorId::random(), self.now)
                        .unwrap();
                self.generation += 1;
                self.erased = Some(id);
            }
        }
    }
}

/// Every replica on the newest generation, converged with the server; every token in
/// place except the erased note's, which is in no history.
fn check(w: &World) -> Result<(), TestCaseError> {
    let server = CaseDoc::read(&w.server).unwrap();
    for r in &w.replicas {
        prop_assert_eq!(r.generation, w.generation);
        prop_assert_eq!(&CaseDoc::read(&r.doc).unwrap(), &server);
        prop_assert_eq!(r.doc.get_heads(), w.server.get_heads());
    }
    let notes: BTreeMap<String, String> = server
        .notes
        .iter()
        .map(|n| (n.id.to_string(), n.text.clone()))
        .collect();
    let kinds: BTreeSet<&str> = server.hours.iter().map(|h| h.kind.as_str()).collect();
    for (token, target) in &w.tokens {
        match target {
            None => prop_assert!(kinds.contains(token.as_str()), "hours {} lost", token),
            Some(id) if Some(id) == w.erased.as_ref() => {
                prop_assert!(!notes.contains_key(id));
                prop_assert!(!in_history(&w.server, token), "{} survived", token);
                for r in &w.replicas {
                    prop_assert!(
                        !in_history(&r.doc, token),
                        "{} survived on a replica",
                        token
                    );
                }
            }
            Some(id) => {
                let text = notes.get(id);
                prop_assert!(
                    text.is_some_and(|t| t.contains(token.as_str())),
                    "{} lost from note {}: {:?}",
                    token,
                    id,
                    text
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_replica_ends_on_the_newest_generation_with_every_edit_but_the_erased(
        steps in proptest::collection::vec(step(), 1..40),
        order in proptest::collection::vec(0..3usize, 3..9),
    ) {
        let mut w = World::new();
        for s in &steps {
            w.apply(s);
        }
        // Everyone comes back, in some order, then once more so all have all.
        for &r in order.iter().chain(&[0, 1, 2, 0, 1, 2]) {
            w.sync(r);
        }
        check(&w)?;
    }
}

/// The checker is not blind: a replica that throws its offline note away instead of
/// replaying it fails the check, and so does a replay that keeps the erased text.
#[test]
fn the_check_catches_a_lost_edit_and_a_kept_erasure() {
    let world = || {
        let mut w = World::new();
        w.apply(&Step::AddNote(0));
        w.apply(&Step::Sync(0));
        w.apply(&Step::EditNote(0, 0, 255));
        w.apply(&Step::AddNote(1));
        w.apply(&Step::Erase(0));
        w
    };
    let finish = |w: &mut World| {
        for r in [0, 1, 2, 0, 1, 2] {
            w.sync(r);
        }
    };
    let mut honest = world();
    finish(&mut honest);
    assert!(check(&honest).is_ok());

    let mut lossy = world();
    lossy.replicas[1].doc = lossy.server.fork();
    lossy.replicas[1].generation = lossy.generation;
    finish(&mut lossy);
    let err = check(&lossy).unwrap_err().to_string();
    assert!(err.contains("lost from note"), "{err}");

    // Replica 0 merges the old generation in instead of replaying it: the erased text
    // comes back with it.
    let mut leaky = world();
    let mut old = std::mem::replace(&mut leaky.replicas[0].doc, leaky.server.fork());
    leaky.replicas[0].generation = leaky.generation;
    leaky.replicas[0].doc.merge(&mut old).unwrap();
    finish(&mut leaky);
    assert!(check(&leaky).is_err());
}

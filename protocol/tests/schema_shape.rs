//! `schema/case.json` is the shape of everything this crate's case edits write (issue 17:
//! the description other clients check their writes against). Regenerate it after a
//! schema change with `LOTSE_WRITE_SCHEMA=1 cargo test -p lotse-protocol --test
//! schema_shape`, and review the diff: it is what the web app must now write.
#![allow(clippy::unwrap_used)]

use lotse_protocol::automerge::{
    ActorId, Automerge, ObjType, ROOT, ReadDoc, transaction::Transactable,
};
use lotse_protocol::schema::generation::{EntryKind, EntryRef, next_generation};
use lotse_protocol::schema::shape::{misfits, shape, union};
use lotse_protocol::schema::{
    AppointmentUpdate, CaseDoc, Correction, HoursChange, NewAppointment, NewCase, NewHours,
    NewNote, Status, Topic,
};
use serde_json::Value;

const NOW: i64 = 1_772_633_400_000;
const PUBLISHED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/case.json");

/// A case through every edit this crate makes, and its next generation.
fn every_write() -> Value {
    let mut doc = Automerge::new();
    let new = NewCase {
        organisation_id: "org".into(),
        label: "F.K.".into(),
        languages: vec!["ar".into(), "de".into()],
        topic: Topic::Gesundheit,
        status: Status::Active,
    };
    CaseDoc::create(&mut doc, &new, NOW).unwrap();
    let note = |text: &str| NewNote {
        author: "volunteer".into(),
        text: text.into(),
    };
    let kept = CaseDoc::add_note(&mut doc, &note("Hausarzt gefunden"), NOW).unwrap();
    CaseDoc::edit_note(&mut doc, &kept, 0, 0, "Neu: ", NOW).unwrap();
    let gone = CaseDoc::add_note(&mut doc, &note("falsch"), NOW).unwrap();
    CaseDoc::delete_note(&mut doc, &gone, NOW).unwrap();
    let appointment = NewAppointment {
        start: NOW,
        end: NOW + 3_600_000,
        place: "Jobcenter".into(),
        purpose: "Termin".into(),
        case_id: None,
    };
    let a = CaseDoc::add_appointment(&mut doc, &appointment, NOW).unwrap();
    let moved = AppointmentUpdate {
        start: Some(NOW + 86_400_000),
        end: Some(NOW + 90_000_000),
        place: Some("Rathaus".into()),
        purpose: Some("Anmeldung".into()),
        cancelled: None,
    };
    CaseDoc::update_appointment(&mut doc, &a, &moved, NOW).unwrap();
    CaseDoc::cancel_appointment(&mut doc, &a, NOW).unwrap();
    let hours = |minutes| NewHours {
        author: "volunteer".into(),
        date: "2026-11-30".into(),
        minutes,
        travel_minutes: 15,
        kind: "begleitung".into(),
    };
    let why = Correction {
        reason: "wrong-amount".into(),
        by: "coordinator".into(),
        at: NOW,
    };
    let h = CaseDoc::log_hours(&mut doc, &hours(90), NOW).unwrap();
    let change = HoursChange {
        minutes: Some(60),
        ..HoursChange::default()
    };
    CaseDoc::correct_hours(&mut doc, &h, &change, &why, NOW).unwrap();
    let h2 = CaseDoc::log_hours(&mut doc, &hours(30), NOW).unwrap();
    CaseDoc::remove_hours(&mut doc, &h2, &why, NOW).unwrap();
    CaseDoc::set_status(&mut doc, Status::Paused, NOW).unwrap();
    CaseDoc::set_kind(&mut doc, "patenschaft", NOW).unwrap();
    CaseDoc::set_topic(&mut doc, Topic::Wohnen, NOW).unwrap();
    CaseDoc::set_label(&mut doc, "Z.Z.", NOW).unwrap();
    CaseDoc::set_languages(&mut doc, &["uk".into()], NOW).unwrap();
    let next = next_generation(
        &doc,
        "the-first-generation",
        &[EntryRef::new(EntryKind::Note, kept.to_string())],
        ActorId::random(),
        NOW,
    )
    .unwrap();
    union(shape(&doc), shape(&next))
}

#[test]
fn the_published_shape_is_what_this_crate_writes() {
    let written = every_write();
    if std::env::var_os("LOTSE_WRITE_SCHEMA").is_some() {
        let pretty = serde_json::to_string_pretty(&written).unwrap();
        std::fs::write(PUBLISHED, pretty + "\n").unwrap();
    }
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(PUBLISHED).unwrap()).unwrap();
    assert_eq!(
        written, published,
        "schema/case.json is not what this crate writes; run LOTSE_WRITE_SCHEMA=1 cargo test -p lotse-protocol --test schema_shape and review the diff"
    );
    assert_eq!(misfits(&written, &published, ""), Vec::<String>::new());
    let clashes = written.to_string();
    assert!(!clashes.contains('|'), "one type per field: {clashes}");
}

#[test]
fn a_field_of_another_type_or_unknown_is_named() {
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(PUBLISHED).unwrap()).unwrap();
    let mut doc = Automerge::new();
    let new = NewCase {
        organisation_id: "org".into(),
        label: "F.K.".into(),
        languages: vec!["ar".into()],
        topic: Topic::Gesundheit,
        status: Status::Active,
    };
    CaseDoc::create(&mut doc, &new, NOW).unwrap();
    // As a careless JavaScript client would write: the author as text, a float time and
    // a field nobody reads.
    let mut tx = doc.transaction();
    let notes = match tx.get(ROOT, "notes").unwrap() {
        Some((_, id)) => id,
        None => unreachable!("create makes the notes map"),
    };
    let n = tx.put_object(&notes, "abc", ObjType::Map).unwrap();
    tx.put_object(&n, "author", ObjType::Text).unwrap();
    tx.put(&n, "createdAt", 1.5).unwrap();
    tx.put(&n, "colour", "blau").unwrap();
    tx.commit();
    let found = misfits(&shape(&doc), &published, "");
    assert_eq!(
        found,
        [
            "/notes/*/author: \"text\" where the schema has \"str\"",
            "/notes/*/colour: not in the schema",
            "/notes/*/createdAt: \"f64\" where the schema has \"int\"",
        ],
        "{found:?}"
    );
}

#![allow(clippy::unwrap_used)]

use super::*;
use crate::schema::{DocKind, doc_kind, last_change};

const T0: Millis = 1_750_000_000_000;

fn new_case() -> NewCase {
    NewCase {
        organisation_id: "org-1".into(),
        label: "A.K.".into(),
        languages: vec!["ar".into(), "de".into()],
        topic: Topic::Behoerden,
        status: Status::Active,
    }
}

fn case() -> Automerge {
    let mut doc = Automerge::new();
    CaseDoc::create(&mut doc, &new_case(), T0).unwrap();
    doc
}

fn note(text: &str) -> NewNote {
    NewNote {
        author: "vol-1".into(),
        text: text.into(),
    }
}

fn appointment(start: Millis, end: Millis) -> NewAppointment {
    NewAppointment {
        start,
        end,
        place: "Ausländerbehörde, Zimmer 12".into(),
        purpose: "Aufenthaltstitel".into(),
        case_id: None,
    }
}

fn hours(minutes: u32) -> NewHours {
    NewHours {
        author: "vol-1".into(),
        date: "2025-06-15".into(),
        minutes,
        travel_minutes: 20,
        kind: "begleitung".into(),
    }
}

#[test]
fn create_and_read_back() {
    let doc = case();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(
        view,
        CaseView {
            schema: 1,
            organisation_id: "org-1".into(),
            label: "A.K.".into(),
            languages: vec!["ar".into(), "de".into()],
            topic: Topic::Behoerden,
            status: Status::Active,
            kind: None,
            created_at: T0,
            notes: vec![],
            appointments: vec![],
            hours: vec![],
        }
    );
    assert_eq!(doc_kind(&doc).unwrap(), DocKind::Case);
    assert_eq!(last_change(&doc), Some(T0));
    assert!(matches!(
        CaseDoc::create(&mut case(), &new_case(), T0),
        Err(SchemaError::AlreadyCreated(_))
    ));
}

#[test]
fn view_serialises_as_camel_case_json() {
    let mut doc = case();
    CaseDoc::add_note(&mut doc, &note("Hallo"), T0).unwrap();
    CaseDoc::log_hours(&mut doc, &hours(60), T0).unwrap();
    let json = serde_json::to_value(CaseDoc::read(&doc).unwrap()).unwrap();
    assert_eq!(json["organisationId"], "org-1");
    assert_eq!(json["topic"], "behoerden");
    assert_eq!(json["createdAt"], T0);
    assert_eq!(json["notes"][0]["text"], "Hallo");
    assert_eq!(json["hours"][0]["travelMinutes"], 20);
    let back: CaseView = serde_json::from_value(json).unwrap();
    assert_eq!(back, CaseDoc::read(&doc).unwrap());
}

#[test]
fn inputs_are_validated() {
    let mut doc = Automerge::new();
    let bad_cases = [
        (
            NewCase {
                languages: vec!["DE".into()],
                ..new_case()
            },
            "ISO 639-1",
        ),
        (
            NewCase {
                languages: vec!["deu".into()],
                ..new_case()
            },
            "ISO 639-1",
        ),
        (
            NewCase {
                label: " ".into(),
                ..new_case()
            },
            "label",
        ),
        (
            NewCase {
                label: "x".repeat(41),
                ..new_case()
            },
            "label",
        ),
        (
            NewCase {
                organisation_id: String::new(),
                ..new_case()
            },
            "organisationId",
        ),
    ];
    for (bad, expect) in bad_cases {
        let err = CaseDoc::create(&mut doc, &bad, T0).unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
    assert!(doc.get_heads().is_empty(), "refused edits leave no change");

    let mut doc = case();
    let heads = doc.get_heads();
    assert!(matches!(
        CaseDoc::add_appointment(&mut doc, &appointment(T0 + 10, T0), T0),
        Err(SchemaError::EndBeforeStart { .. })
    ));
    for (m, t) in [(0, 0), (1441, 0), (60, 1441)] {
        let h = NewHours {
            travel_minutes: t,
            ..hours(m)
        };
        assert!(matches!(
            CaseDoc::log_hours(&mut doc, &h, T0),
            Err(SchemaError::MinutesOutOfRange { .. })
        ));
    }
    assert!(matches!(
        CaseDoc::log_hours(
            &mut doc,
            &NewHours {
                date: "2025-02-30".into(),
                ..hours(5)
            },
            T0
        ),
        Err(SchemaError::InvalidDate(_))
    ));
    assert!(matches!(
        CaseDoc::log_hours(
            &mut doc,
            &NewHours {
                kind: "Begleitung!".into(),
                ..hours(5)
            },
            T0
        ),
        Err(SchemaError::InvalidToken { .. })
    ));
    assert!(matches!(
        CaseDoc::set_languages(&mut doc, &["e".into()], T0),
        Err(SchemaError::InvalidLanguage(_))
    ));
    assert!(matches!(
        CaseDoc::edit_note(&mut doc, &NoteId::new("nope"), 0, 0, "x", T0),
        Err(SchemaError::NotFound { kind: "note", .. })
    ));
    assert!(matches!(
        CaseDoc::cancel_appointment(&mut doc, &AppointmentId::new("nope"), T0),
        Err(SchemaError::NotFound {
            kind: "appointment",
            ..
        })
    ));
    assert_eq!(doc.get_heads(), heads, "refused edits leave no change");
}

#[test]
fn notes() {
    let mut doc = case();
    let id = CaseDoc::add_note(&mut doc, &note("Termin wahrgenommen."), T0 + 1).unwrap();
    CaseDoc::edit_note(&mut doc, &id, 6, 0, " gemeinsam", T0 + 2).unwrap();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.notes[0].text, "Termin gemeinsam wahrgenommen.");
    assert_eq!(view.notes[0].created_at, T0 + 1);
    assert_eq!(view.notes[0].updated_at, T0 + 2);
    assert_eq!(view.notes[0].author, "vol-1");

    assert!(matches!(
        CaseDoc::edit_note(&mut doc, &id, 31, 0, "x", T0),
        Err(SchemaError::EditOutOfRange { .. })
    ));
    assert!(matches!(
        CaseDoc::edit_note(&mut doc, &id, 30, 1, "", T0),
        Err(SchemaError::EditOutOfRange { .. })
    ));
    // Positions are code points, not bytes.
    CaseDoc::set_note_text(&mut doc, &id, "Übersetzung", T0 + 3).unwrap();
    CaseDoc::edit_note(&mut doc, &id, 1, 0, "-", T0 + 4).unwrap();
    assert_eq!(CaseDoc::read(&doc).unwrap().notes[0].text, "Ü-bersetzung");

    // Setting the same text again is not a change.
    let heads = doc.get_heads();
    CaseDoc::set_note_text(&mut doc, &id, "Ü-bersetzung", T0 + 5).unwrap();
    assert_eq!(doc.get_heads(), heads);

    let second = CaseDoc::add_note(&mut doc, &note("zweite"), T0 + 6).unwrap();
    CaseDoc::delete_note(&mut doc, &id, T0 + 7).unwrap();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.notes.len(), 1);
    assert_eq!(view.notes[0].id, second);
}

#[test]
fn concurrent_note_edits_merge() {
    let mut a = case();
    let id = CaseDoc::add_note(&mut a, &note("Wir treffen uns am Montag."), T0).unwrap();
    let mut b = a.fork();
    // a fixes the day with keystroke edits, b appends with a whole-text update.
    CaseDoc::edit_note(&mut a, &id, 19, 6, "Dienstag", T0 + 1).unwrap();
    CaseDoc::set_note_text(
        &mut b,
        &id,
        "Wir treffen uns am Montag. Bitte Pass mitbringen.",
        T0 + 2,
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    let text = CaseDoc::read(&a).unwrap().notes[0].text.clone();
    assert_eq!(text, "Wir treffen uns am Dienstag. Bitte Pass mitbringen.");
    assert_eq!(CaseDoc::read(&a).unwrap(), CaseDoc::read(&b).unwrap());
}

#[test]
fn status_topic_label_languages() {
    let mut doc = case();
    CaseDoc::set_status(&mut doc, Status::Paused, T0 + 1).unwrap();
    CaseDoc::set_topic(&mut doc, Topic::Wohnen, T0 + 1).unwrap();
    CaseDoc::set_label(&mut doc, "  K-17 ", T0 + 1).unwrap();
    CaseDoc::set_languages(&mut doc, &["de".into(), "fa".into(), "de".into()], T0 + 1).unwrap();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.status, Status::Paused);
    assert_eq!(view.topic, Topic::Wohnen);
    assert_eq!(view.label, "K-17");
    assert_eq!(view.languages, ["de", "fa"]);

    // Concurrent language edits keep each side's additions.
    let mut other = doc.fork();
    CaseDoc::set_languages(&mut doc, &["de".into(), "fa".into(), "tr".into()], T0 + 2).unwrap();
    CaseDoc::set_languages(&mut other, &["fa".into(), "uk".into()], T0 + 2).unwrap();
    doc.merge(&mut other).unwrap();
    let mut langs = CaseDoc::read(&doc).unwrap().languages;
    langs.sort();
    assert_eq!(langs, ["fa", "tr", "uk"]);
}

#[test]
fn appointments_and_hours() {
    let mut doc = case();
    let early = CaseDoc::add_appointment(&mut doc, &appointment(T0 + 1000, T0 + 2000), T0).unwrap();
    let late = CaseDoc::add_appointment(&mut doc, &appointment(T0 + 5000, T0 + 6000), T0).unwrap();
    CaseDoc::update_appointment(
        &mut doc,
        &late,
        &AppointmentUpdate {
            place: Some("Jobcenter".into()),
            end: Some(T0 + 9000),
            ..Default::default()
        },
        T0 + 1,
    )
    .unwrap();
    // The merged range is what is checked: moving the start past the end is refused.
    assert!(matches!(
        CaseDoc::update_appointment(
            &mut doc,
            &late,
            &AppointmentUpdate {
                start: Some(T0 + 9001),
                ..Default::default()
            },
            T0 + 1
        ),
        Err(SchemaError::EndBeforeStart { .. })
    ));
    // An update that changes nothing makes no change.
    let heads = doc.get_heads();
    CaseDoc::update_appointment(
        &mut doc,
        &late,
        &AppointmentUpdate {
            place: Some("Jobcenter".into()),
            ..Default::default()
        },
        T0 + 2,
    )
    .unwrap();
    assert_eq!(doc.get_heads(), heads);

    CaseDoc::log_hours(&mut doc, &hours(90), T0).unwrap();
    let removed = CaseDoc::log_hours(&mut doc, &hours(30), T0).unwrap();
    CaseDoc::log_hours(&mut doc, &hours(15), T0).unwrap();
    CaseDoc::add_note(&mut doc, &note("x"), T0).unwrap();
    CaseDoc::delete_hours(&mut doc, &removed, T0 + 3_000).unwrap();

    let summary = CaseDoc::summary(&doc, T0 + 500).unwrap();
    assert_eq!(summary.next_appointment.as_ref().unwrap().id, early);
    assert_eq!(summary.hours_minutes, 105);
    assert_eq!(summary.travel_minutes, 40);
    assert_eq!(summary.note_count, 1);
    assert_eq!(summary.status, Status::Active);
    assert_eq!(summary.last_change, Some(T0 + 3_000));

    CaseDoc::cancel_appointment(&mut doc, &early, T0 + 4_000).unwrap();
    let summary = CaseDoc::summary(&doc, T0 + 500).unwrap();
    let next = summary.next_appointment.unwrap();
    assert_eq!(next.id, late);
    assert_eq!(next.place, "Jobcenter");
    assert_eq!(next.end, T0 + 9000);
    assert!(
        CaseDoc::summary(&doc, T0 + 5001)
            .unwrap()
            .next_appointment
            .is_none()
    );
}

#[test]
fn readers_ignore_unknown_fields_and_accept_js_shapes() {
    use automerge::ScalarValue;
    let mut doc = case();
    let id = CaseDoc::add_note(&mut doc, &note("x"), T0).unwrap();
    let mut tx = doc.transaction();
    tx.put(ROOT, "futureField", "whatever").unwrap();
    // JavaScript writes strings as Text and may write numbers as floats.
    let label = tx.put_object(ROOT, "label", ObjType::Text).unwrap();
    tx.splice_text(&label, 0, 0, "JS").unwrap();
    tx.put(ROOT, "createdAt", ScalarValue::F64(T0 as f64))
        .unwrap();
    let notes = access::obj(&tx, &ROOT, "notes", "", ObjType::Map).unwrap();
    let n = access::obj(&tx, &notes, id.as_str(), "", ObjType::Map).unwrap();
    tx.put(&n, "reactions", 3).unwrap();
    tx.commit();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.label, "JS");
    assert_eq!(view.created_at, T0);
    // An older writer's edit leaves the unknown field alone.
    CaseDoc::set_status(&mut doc, Status::Closed, T0).unwrap();
    assert!(doc.get(ROOT, "futureField").unwrap().is_some());
}

#[test]
fn newer_schemas_and_other_documents_are_refused() {
    let mut doc = case();
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", 2).unwrap();
    tx.commit();
    assert!(matches!(
        CaseDoc::read(&doc),
        Err(SchemaError::UnsupportedSchema {
            found: 2,
            supported: 1
        })
    ));
    assert!(matches!(
        CaseDoc::set_status(&mut doc, Status::Closed, T0),
        Err(SchemaError::UnsupportedSchema { .. })
    ));

    assert!(matches!(
        CaseDoc::read(&Automerge::new()),
        Err(SchemaError::WrongDocType { found: None, .. })
    ));
    assert!(matches!(
        doc_kind(&Automerge::new()),
        Err(SchemaError::Missing { .. })
    ));

    let mut doc = case();
    let mut tx = doc.transaction();
    tx.put(ROOT, "topic", "sport").unwrap();
    tx.put(ROOT, "createdAt", "yesterday").unwrap();
    tx.commit();
    let err = CaseDoc::read(&doc).unwrap_err();
    assert!(
        matches!(&err, SchemaError::Malformed { path, .. } if path == "createdAt")
            || matches!(&err, SchemaError::UnknownTopic(_)),
        "{err}"
    );
}

#[test]
fn a_coordinator_corrects_and_removes_hours_with_a_reason() {
    let mut doc = crate::testing::sample_case();
    let hours = NewHours {
        author: "vol-1".into(),
        date: "2026-10-02".into(),
        minutes: 90,
        travel_minutes: 20,
        kind: "begleitung".into(),
    };
    let first = CaseDoc::log_hours(&mut doc, &hours, 2_000).unwrap();
    let second = CaseDoc::log_hours(&mut doc, &hours, 2_000).unwrap();
    let why = |reason: &str| Correction {
        reason: reason.into(),
        by: "coord-1".into(),
        at: 5_000,
    };
    let change = HoursChange {
        minutes: Some(60),
        ..HoursChange::default()
    };
    CaseDoc::correct_hours(&mut doc, &first, &change, &why("wrong-amount"), 5_000).unwrap();
    // A phone offline meanwhile edits the entry the coordinator removes: it stays removed.
    let mut phone = doc.fork();
    CaseDoc::remove_hours(&mut doc, &second, &why("duplicate"), 6_000).unwrap();
    let bad = HoursChange {
        minutes: Some(0),
        ..HoursChange::default()
    };
    assert!(CaseDoc::correct_hours(&mut phone, &second, &bad, &why("x"), 6_000).is_err());
    let phone_change = HoursChange {
        travel_minutes: Some(5),
        ..HoursChange::default()
    };
    CaseDoc::correct_hours(&mut phone, &second, &phone_change, &why("other"), 6_500).unwrap();
    doc.merge(&mut phone).unwrap();

    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.hours.len(), 1, "the removed entry is left out");
    let h = &view.hours[0];
    assert_eq!((h.id.clone(), h.minutes, h.travel_minutes), (first, 60, 20));
    assert_eq!(h.correction, Some(why("wrong-amount")));
    assert!(matches!(
        CaseDoc::remove_hours(&mut doc, &HoursId::new("nonesuch"), &why("other"), 7_000),
        Err(SchemaError::NotFound { .. })
    ));
    assert!(matches!(
        CaseDoc::remove_hours(&mut doc, &h.id, &why("Doppelt!"), 7_000),
        Err(SchemaError::InvalidToken { .. })
    ));
}

#[test]
fn a_case_has_a_kind() {
    let mut doc = case();
    CaseDoc::set_kind(&mut doc, "patenschaft", T0 + 1).unwrap();
    assert_eq!(
        CaseDoc::read(&doc).unwrap().kind.as_deref(),
        Some("patenschaft")
    );
    assert!(CaseDoc::set_kind(&mut doc, "freundschaft", T0 + 2).is_err());
    assert_eq!(
        CaseDoc::read(&doc).unwrap().kind.as_deref(),
        Some("patenschaft")
    );
}

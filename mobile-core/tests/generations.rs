//! Erasing a note from a case's history (issue 16), as three phones live it: two online
//! move onto the case's new generation and keep nothing of the note, history included;
//! one offline comes back with a new note, hours and an edit of the erased note, and ends
//! on the new generation with its note and hours, its edit dropped and reported. Against
//! a real lotse-server on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lotse_core::lotse_protocol::schema::generation;
use lotse_core::lotse_protocol::{CaseDoc, DocumentId};
use lotse_core::{Client, HoursInput};
use lotse_testkit::on_both_backends;
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const DISTINCTIVE: &str = "Diagnose-QX7Z-im-falschen-Fall";

async fn device(
    server: &TestServer,
    coordinator: &str,
    volunteer: &str,
    name: &str,
) -> (Client, TempDir) {
    let code = server.enrollment_code(coordinator, volunteer).await;
    let dir = TempDir::new(name);
    let client = Client::open(config(dir.path(), &server.base, rand_key()))
        .await
        .unwrap();
    client.enroll(&code, name).await.unwrap();
    within(T, client.sync_now()).await.unwrap();
    (client, dir)
}

async fn texts(client: &Client, case: &DocumentId) -> Vec<String> {
    match client.list_notes(case).await {
        Ok(notes) => notes.into_iter().map(|n| n.text).collect(),
        Err(_) => Vec::new(),
    }
}

async fn holds(client: &Client, case: &DocumentId, text: &str) -> bool {
    texts(client, case).await.iter().any(|t| t.contains(text))
}

/// The case as the server holds it now.
async fn on_server(
    server: &TestServer,
    organisation: &str,
    case: &DocumentId,
) -> lotse_core::lotse_protocol::CaseView {
    let current = server
        .store
        .current_generation(organisation, case)
        .await
        .unwrap()
        .unwrap();
    let chunks = server.store.document_chunks(&current).await.unwrap();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    CaseDoc::read(&lotse_core::lotse_protocol::load_doc(&refs).unwrap()).unwrap()
}

async fn an_erased_note_leaves_every_phone_and_offline_work_survives(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (org, coordinator) = server.new_org("Lotsen Radieren").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let volunteer = phone.volunteer.clone();
    let (tablet, _tablet_dir) = device(&server, &coordinator, &volunteer, "tablet").await;
    let (laptop, laptop_dir) = device(&server, &coordinator, &volunteer, "laptop").await;
    let case = server
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&volunteer])
        .await;
    let a = &phone.client;
    eventually("the case on the phone", T, || async {
        a.get_case(&case).await.is_ok()
    })
    .await;
    let secret = a.add_note(&case, DISTINCTIVE).await.unwrap();
    a.add_note(&case, "Wohnung besichtigt").await.unwrap();
    for c in [&tablet, &laptop] {
        eventually("both notes on every device", T, || async {
            holds(c, &case, DISTINCTIVE).await && holds(c, &case, "Wohnung").await
        })
        .await;
    }

    // The laptop goes offline and works on the case.
    laptop.set_network_available(false);
    laptop.add_note(&case, "offline geschrieben").await.unwrap();
    laptop
        .log_hours(
            &case,
            &HoursInput {
                date: "2026-11-30".into(),
                minutes: 75,
                travel_minutes: 20,
                kind: "begleitung".into(),
            },
        )
        .await
        .unwrap();
    laptop
        .edit_note(&case, &secret, &format!("{DISTINCTIVE} NACHTRAG-ZK4"))
        .await
        .unwrap();

    let (heard_a, _sa) = listen(a);
    let (heard_b, _sb) = listen(&tablet);
    let (heard_c, _sc) = listen(&laptop);
    let (status, body) = server
        .post(
            &format!("/api/v1/cases/{case}/notes/{secret}/erase"),
            Some(&coordinator),
            json!({"reason": "mistake"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], case.to_string());
    let successor: DocumentId = body["documentId"].as_str().unwrap().parse().unwrap();

    // The two online devices move over at once and keep nothing of the note.
    for (c, heard) in [(a, &heard_a), (&tablet, &heard_b)] {
        eventually("moved onto the new generation", T, || async {
            heard
                .replaced
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.case_id == case)
        })
        .await;
        let replaced = heard.replaced.lock().unwrap()[0].clone();
        assert_eq!(replaced.document_id, successor);
        assert!(replaced.dropped.is_empty(), "nothing of theirs was lost");
        assert!(!holds(c, &case, DISTINCTIVE).await);
        assert!(
            holds(c, &case, "Wohnung").await,
            "the case keeps its id and the rest"
        );
        assert!(
            !in_history(c, DISTINCTIVE).await,
            "not in the history either"
        );
        let listed: Vec<DocumentId> = c.list_cases().await.unwrap().iter().map(|i| i.id).collect();
        assert_eq!(listed, [case], "one case, under its old id");
    }

    // The laptop comes back: its note and hours reach the new generation, its edit of the
    // erased note is dropped and reported.
    laptop.set_network_available(true);
    within(T, laptop.sync_now()).await.unwrap();
    eventually("the laptop moved over", T, || async {
        heard_c
            .replaced
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.case_id == case)
    })
    .await;
    let replaced = heard_c.replaced.lock().unwrap()[0].clone();
    assert_eq!(replaced.document_id, successor);
    assert_eq!(replaced.dropped.len(), 1, "{replaced:?}");
    assert_eq!(replaced.dropped[0].kind, "note");
    assert_eq!(replaced.dropped[0].id, secret.to_string());
    eventually("the offline work on the server", T, || async {
        let view = on_server(&server, &org, &case).await;
        view.notes.iter().any(|n| n.text == "offline geschrieben") && view.hours.len() == 1
    })
    .await;
    for c in [a, &tablet, &laptop] {
        eventually("the offline work on every device", T, || async {
            holds(c, &case, "offline geschrieben").await
                && c.list_hours(&case).await.map(|h| h.len()).unwrap_or(0) == 1
        })
        .await;
        assert!(!holds(c, &case, DISTINCTIVE).await);
        assert!(!in_history(c, DISTINCTIVE).await);
        assert!(!in_history(c, "NACHTRAG-ZK4").await);
    }
    let view = on_server(&server, &org, &case).await;
    assert!(view.notes.iter().all(|n| !n.text.contains(DISTINCTIVE)));
    assert_eq!(view.notes.len(), 2, "{:?}", view.notes);
    let held = laptop.saved_documents().await.unwrap();
    assert_eq!(held.iter().filter(|(id, _)| *id == successor).count(), 1);
    assert!(
        held.iter().all(|(id, _)| *id != case),
        "the old copy is gone"
    );
    let line = {
        let bytes = &held.iter().find(|(id, _)| *id == successor).unwrap().1;
        generation::lineage(&lotse_core::lotse_protocol::automerge::Automerge::load(bytes).unwrap())
            .unwrap()
    };
    assert_eq!(line.case_id, Some(case.to_string()));
    // Encrypted at rest: the raw files never held the words.
    assert!(!contains(
        &store_bytes(laptop_dir.path()),
        DISTINCTIVE.as_bytes()
    ));

    for c in [phone.client, tablet, laptop] {
        c.close().await.unwrap();
    }
    server.stop().await;
}

on_both_backends!(an_erased_note_leaves_every_phone_and_offline_work_survives);

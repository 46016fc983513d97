//! Erasing an entry from a case's history (issue 16): the server writes the case's next
//! generation, the old document leaves the server like a deleted case, the case keeps
//! its id, its page, its audit trail and its figures, and a connected phone is told
//! where the case lives on. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::erasure::{found_in_database, rows_of};
use common::sync_client::SyncClient;
use lotse_protocol::schema::generation;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewHours, NewNote};
use lotse_server::dashboard::{Period, compute};
use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::{Value, json};

const DISTINCTIVE: &str = "Diagnose-QX7Z-falscher-Fall";

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn today() -> String {
    jiff::Zoned::now()
        .in_tz("Europe/Berlin")
        .unwrap()
        .date()
        .to_string()
}

async fn write(
    phone: &mut SyncClient,
    s: &TestServer,
    case: DocumentId,
    edit: impl FnOnce(&mut lotse_protocol::automerge::Automerge),
) {
    edit(phone.docs.get_mut(&case).unwrap());
    phone.offer(case).await;
    phone.wait_until_stored(&s.store, case).await;
}

fn note_id(case: &Value, text: &str) -> String {
    case["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["text"].as_str().unwrap().contains(text))
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .unwrap()
}

async fn erasing_a_note_rewrites_the_case(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Radieren").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let (_, token) = s.device(&coordinator, &amira, "Telefon").await;
    let mut phone = SyncClient::connect(s.addr, &token, "phone").await;
    phone.catch_up().await;
    phone.fetch(case).await;
    let author = amira.clone();
    write(&mut phone, &s, case, |doc| {
        let note = NewNote {
            author: author.clone(),
            text: DISTINCTIVE.into(),
        };
        let id = CaseDoc::add_note(doc, &note, now_ms()).unwrap();
        // An edit, so the text sits in more than one change.
        CaseDoc::edit_note(doc, &id, 0, 0, "Vertraulich: ", now_ms()).unwrap();
        let kept = NewNote {
            author: author.clone(),
            text: "Wohnung besichtigt".into(),
        };
        CaseDoc::add_note(doc, &kept, now_ms()).unwrap();
        let hours = NewHours {
            author: author.clone(),
            date: today(),
            minutes: 90,
            travel_minutes: 20,
            kind: "begleitung".into(),
        };
        CaseDoc::log_hours(doc, &hours, now_ms()).unwrap();
    })
    .await;
    assert!(found_in_database(&s, DISTINCTIVE).await, "stored before");

    let path = format!("/api/v1/cases/{case}");
    let (status, before) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(status, 200, "{before}");
    let secret = note_id(&before, DISTINCTIVE);
    // The case came from a request (as an accepted offer makes it).
    let (starts, ends) = lotse_testkit::fixtures::window(3);
    let request = s
        .create_request(&coordinator, "gesundheit", &["ar"], &starts, &ends)
        .await;
    sqlx::query("UPDATE requests SET case_document_id = $1 WHERE id = $2")
        .bind(case.to_string())
        .bind(&request)
        .execute(s.store.pool())
        .await
        .unwrap();
    let period = Period::from_query("", now_ms());
    let report_before = compute(&s.state, &org, period).await.unwrap();

    // Bad input first: nothing happens.
    let erase = format!("{path}/notes/{secret}/erase");
    let (status, body) = s
        .post(&erase, Some(&coordinator), json!({"reason": "whim"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = s
        .post(
            &format!("{path}/notes/no-such-note/erase"),
            Some(&coordinator),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, stranger) = s.new_org("Andere Lotsen").await;
    let (status, _) = s.post(&erase, Some(&stranger), json!({})).await;
    assert_eq!(
        status, 404,
        "another organisation cannot tell the case exists"
    );
    let (status, _) = s.post(&erase, Some(&token), json!({})).await;
    assert!(
        status == 401 || status == 403,
        "a device cannot erase: {status}"
    );
    assert!(found_in_database(&s, DISTINCTIVE).await);

    let (status, body) = s
        .post(&erase, Some(&coordinator), json!({"reason": "mistake"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], case.to_string(), "the case keeps its id");
    let successor: DocumentId = body["documentId"].as_str().unwrap().parse().unwrap();
    assert_ne!(successor, case);

    // The connected phone hears where the case lives on.
    let mut told = None;
    while let Ok(Some(m)) = phone.recv_within(Duration::from_secs(5)).await {
        if let Message::Deleted {
            document_id,
            superseded,
            ..
        } = m
            && document_id == case
        {
            told = Some(superseded);
            break;
        }
    }
    let told = told.expect("the connected phone heard lotse-deleted");
    let told = told.expect("naming the successor");
    assert_eq!(told.successor, successor);
    assert!(!told.known.is_empty());

    // The old generation is gone like a deleted case, and the text with it.
    assert_eq!(rows_of(&s, &case).await, 0);
    assert_eq!(
        s.store.tombstone(&case).await.unwrap().unwrap().reason,
        "erased:mistake"
    );
    assert!(
        !found_in_database(&s, DISTINCTIVE).await,
        "erased from the files"
    );
    assert!(!found_in_database(&s, "Vertraulich").await);

    // The new generation holds the rest, and says which case it is.
    let chunks = s.store.document_chunks(&successor).await.unwrap();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let doc = lotse_protocol::load_doc(&refs).unwrap();
    let view = CaseDoc::read(&doc).unwrap();
    assert_eq!(view.notes.len(), 1);
    assert_eq!(view.notes[0].text, "Wohnung besichtigt");
    assert_eq!(view.hours.len(), 1);
    let line = generation::lineage(&doc).unwrap();
    assert_eq!(line.case_id, Some(case.to_string()));
    assert_eq!(line.generation, 2);

    // The request now leads to the new generation.
    let (status, r) = s
        .get(&format!("/api/v1/requests/{request}"), Some(&coordinator))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["case_document_id"], successor.to_string(), "{r}");

    // The report counts the same hours.
    let report_after = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(report_after.total, report_before.total);
    assert_eq!(report_after.by_topic, report_before.by_topic);

    // Erasing it again finds nothing; the case itself is still there to erase from.
    let (status, _) = s
        .post(&erase, Some(&coordinator), json!({"reason": "mistake"}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = s
        .post(&format!("{path}/compact"), Some(&coordinator), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], case.to_string());
    let third: DocumentId = body["documentId"].as_str().unwrap().parse().unwrap();
    assert!(s.store.tombstone(&successor).await.unwrap().is_some());
    assert_eq!(
        s.store.current_generation(&org, &case).await.unwrap(),
        Some(third)
    );
    assert_eq!(
        s.store.current_generation(&org, &successor).await.unwrap(),
        Some(third),
        "an earlier generation's id leads to the newest"
    );
    s.stop().await;
}

on_both_backends!(erasing_a_note_rewrites_the_case);

//! Deleting a case for good (issue 15): through the API, a connected phone hears it at
//! once, an offline one at its next contact with its unsynced notes refused, and the
//! content is gone from the database files. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::erasure::{found_in_database, rows_of};
use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use lotse_testkit::{Backend, TestServer, on_both_backends};

const DISTINCTIVE: &str = "Zahnarzttermin-QX7Z-Bergstrasse";

fn add_note(c: &mut SyncClient, id: DocumentId, author: &str, text: &str) {
    let doc = c.docs.get_mut(&id).unwrap();
    let note = NewNote {
        author: author.into(),
        text: text.into(),
    };
    CaseDoc::add_note(doc, &note, 1_772_633_400_000).unwrap();
}

async fn a_deleted_case_is_gone_everywhere(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Loeschen").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let (_, phone_token) = s.device(&coordinator, &amira, "Telefon").await;
    let (_, tablet_token) = s.device(&coordinator, &amira, "Tablet").await;

    // The tablet takes the case and goes offline.
    let mut tablet = SyncClient::connect(s.addr, &tablet_token, "tablet").await;
    tablet.fetch(case).await;
    drop(tablet.ws);
    let mut tablet_docs = tablet.docs;

    // The phone writes a distinctive note and stays connected, speaking our extension.
    let mut phone = SyncClient::connect(s.addr, &phone_token, "phone").await;
    phone.catch_up().await;
    phone.fetch(case).await;
    add_note(&mut phone, case, &amira, DISTINCTIVE);
    phone.offer(case).await;
    phone.wait_until_stored(&s.store, case).await;
    // Several syncs leave the text in more than one chunk, and the text is in the files:
    // the check below can fail.
    for i in 0..3 {
        add_note(&mut phone, case, &amira, &format!("{DISTINCTIVE} {i}"));
        phone.offer(case).await;
        phone.wait_until_stored(&s.store, case).await;
    }
    assert!(
        found_in_database(&s, DISTINCTIVE).await,
        "the text is stored before"
    );

    // Another organisation cannot delete it, nor tell it from a missing one.
    let (_, stranger) = s.new_org("Andere Lotsen").await;
    let path = format!("/api/v1/cases/{case}");
    let (status, _) = s
        .request(reqwest::Method::DELETE, &path, Some(&stranger), None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = s
        .request(
            reqwest::Method::DELETE,
            &format!("{path}?reason=nonsense"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = s
        .request(
            reqwest::Method::DELETE,
            &format!("{path}?reason=person-asked"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // The connected phone is told at once.
    let mut told = false;
    while let Ok(Some(m)) = phone.recv_within(Duration::from_secs(5)).await {
        if matches!(m, Message::Deleted { document_id, .. } if document_id == case) {
            told = true;
            break;
        }
    }
    assert!(told, "the connected phone heard lotse-deleted");

    assert_eq!(rows_of(&s, &case).await, 0, "no row of the case is left");
    let tomb = s.store.tombstone(&case).await.unwrap().unwrap();
    assert_eq!(tomb.reason, "person-asked");
    assert!(
        !found_in_database(&s, DISTINCTIVE).await,
        "the text is gone from the database files"
    );
    let (status, _) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .request(reqwest::Method::DELETE, &path, Some(&coordinator), None)
        .await;
    assert_eq!(status, 404, "deleting twice finds nothing");

    // The tablet comes back with an unsynced note: told, refused, nothing stored.
    add_note_to(&mut tablet_docs, case, &amira, "offline geschrieben");
    let mut tablet = SyncClient::connect(s.addr, &tablet_token, "tablet").await;
    tablet.docs = tablet_docs;
    let (verdict, before) = tablet.catch_up().await;
    assert!(matches!(verdict, Message::Manifest { .. }), "{verdict:?}");
    let others = tablet.sync_docs(&[case], Duration::from_millis(500)).await;
    assert!(
        before
            .iter()
            .chain(&others)
            .any(|m| matches!(m, Message::Deleted { document_id, .. } if *document_id == case)),
        "the returning tablet heard lotse-deleted: {before:?} {others:?}"
    );
    assert_eq!(rows_of(&s, &case).await, 0, "its notes were refused");
    assert!(!found_in_database(&s, "offline geschrieben").await);
    s.stop().await;
}

fn add_note_to(
    docs: &mut std::collections::BTreeMap<DocumentId, lotse_protocol::automerge::Automerge>,
    id: DocumentId,
    author: &str,
    text: &str,
) {
    let note = NewNote {
        author: author.into(),
        text: text.into(),
    };
    CaseDoc::add_note(docs.get_mut(&id).unwrap(), &note, 1_772_633_500_000).unwrap();
}

on_both_backends!(a_deleted_case_is_gone_everywhere);

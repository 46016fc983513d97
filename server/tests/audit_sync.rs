//! The audit trail of `/sync` (DSGVO): a peer that syncs a document it may see leaves one
//! `document.sync` line per connection, changes one `document.change`, a case started on a
//! phone `document.create`; denied documents and the in-sync reconnect leave nothing. On
//! SQLite and PostgreSQL.
//!
//! Lines are written in batches, up to a second late. "Nothing more was written" is
//! checked with a marker: the same connection then syncs another document, and once that
//! line is stored, everything the connection noted before it is stored too (a connection
//! writes its lines in the order it noted them, each batch in one transaction).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::sync_client::SyncClient;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use lotse_server::store::SubjectAuditEvent;
use lotse_testkit::fixtures::mentoring_case;
use lotse_testkit::{Backend, TestServer, on_both_backends};

const SYNC: &str = "document.sync";
const CHANGE: &str = "document.change";
const CREATE: &str = "document.create";
const WAIT: Duration = Duration::from_secs(20);
const COORDINATOR_EMAIL: &str = "koordination@lotsen-protokoll.example";

struct World {
    s: TestServer,
    org: String,
    coordinator: String,
    coordinator_id: String,
    volunteer: String,
    /// Shared with the volunteer; what the checks are about.
    case: DocumentId,
    /// Shared with the volunteer too; synced last, as the marker.
    marker: DocumentId,
}

async fn world(backend: Backend) -> World {
    let s = TestServer::start(backend).await;
    let password = "ein langes Passwort 42";
    let (org, coordinator_id) = s
        .coordinator("Lotsen Protokoll", COORDINATOR_EMAIL, password)
        .await;
    let coordinator = s.login(COORDINATOR_EMAIL, password).await;
    let volunteer = s.volunteer(&coordinator, "Amira", &["ar", "de"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&volunteer])
        .await;
    let marker = s
        .create_case(&coordinator, "M.M.", "gesundheit", &["ar"], &[&volunteer])
        .await;
    World {
        s,
        org: org.id,
        coordinator,
        coordinator_id,
        volunteer,
        case,
        marker,
    }
}

async fn trail(w: &World, doc: DocumentId) -> Vec<SubjectAuditEvent> {
    w.s.store
        .audit_of_subject(&w.org, "document", &doc.to_string())
        .await
        .unwrap()
}

/// The lines of `doc` by `actor` with `action`.
async fn lines(w: &World, doc: DocumentId, actor: &str, action: &str) -> Vec<SubjectAuditEvent> {
    trail(w, doc)
        .await
        .into_iter()
        .filter(|e| e.actor_id == actor && e.action == action)
        .collect()
}

/// Waits until `doc` has `count` lines by `actor` with `action`, and returns them.
async fn wait_for_lines(
    w: &World,
    doc: DocumentId,
    actor: &str,
    action: &str,
    count: usize,
) -> Vec<SubjectAuditEvent> {
    lotse_testkit::eventually(
        &format!("{count} {action} line(s) of {doc} by {actor}"),
        WAIT,
        || async {
            let found = lines(w, doc, actor, action).await;
            (found.len() >= count).then_some(found)
        },
    )
    .await
}

/// The deterministic end of a "nothing more" check: `client` syncs `marker` (not synced
/// on its connection yet) and we wait for that line. Every line the connection noted
/// before is stored by then.
async fn settle(w: &World, client: &mut SyncClient, actor: &str, marker: DocumentId) {
    let before = lines(w, marker, actor, SYNC).await.len();
    client.fetch_afresh(marker).await;
    let after = wait_for_lines(w, marker, actor, SYNC, before + 1).await;
    assert_eq!(after.len(), before + 1, "{after:?}");
}

fn add_note(doc: &mut Automerge, text: &str) {
    CaseDoc::add_note(
        doc,
        &NewNote {
            author: "amira".into(),
            text: text.into(),
        },
        1_772_633_400_000,
    )
    .unwrap();
}

async fn a_device_sync_is_recorded_once_per_connection(backend: Backend) {
    let w = world(backend).await;
    let (device, token) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut phone = SyncClient::connect(w.s.addr, &token, "phone").await;
    phone.fetch(w.case).await;
    let found = wait_for_lines(&w, w.case, &device, SYNC, 1).await;
    assert_eq!(found[0].actor_kind, "device");
    assert_eq!(found[0].actor_name, "Amira (Handy)");

    // The same document again on the same connection (a sync message from a fresh sync
    // state, as after the app reopened it): no second line.
    phone.syncs.remove(&w.case);
    phone.offer(w.case).await;
    settle(&w, &mut phone, &device, w.marker).await;
    assert_eq!(lines(&w, w.case, &device, SYNC).await.len(), 1);
    assert!(
        lines(&w, w.case, &device, CHANGE).await.is_empty(),
        "reading changes nothing"
    );

    // A new connection is a new access.
    let mut phone = phone.reconnect(w.s.addr, &token).await;
    phone.fetch_afresh(w.case).await;
    wait_for_lines(&w, w.case, &device, SYNC, 2).await;
    w.s.stop().await;
}

async fn a_device_change_is_recorded_once_per_connection(backend: Backend) {
    let w = world(backend).await;
    let (device, token) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut phone = SyncClient::connect(w.s.addr, &token, "phone").await;
    phone.fetch(w.case).await;
    add_note(phone.docs.get_mut(&w.case).unwrap(), "Termin vereinbart");
    phone.offer(w.case).await;
    phone.wait_until_stored(&w.s.store, w.case).await;
    let found = wait_for_lines(&w, w.case, &device, CHANGE, 1).await;
    assert_eq!(found[0].actor_kind, "device");

    add_note(phone.docs.get_mut(&w.case).unwrap(), "Unterlagen kopiert");
    phone.offer(w.case).await;
    phone.wait_until_stored(&w.s.store, w.case).await;
    settle(&w, &mut phone, &device, w.marker).await;
    assert_eq!(lines(&w, w.case, &device, CHANGE).await.len(), 1);
    assert_eq!(lines(&w, w.case, &device, SYNC).await.len(), 1);
    assert!(lines(&w, w.case, &device, CREATE).await.is_empty());
    // The marker was only read.
    assert!(lines(&w, w.marker, &device, CHANGE).await.is_empty());
    w.s.stop().await;
}

async fn a_stranger_is_refused_and_leaves_no_line(backend: Backend) {
    let w = world(backend).await;
    let olena = w.s.volunteer(&w.coordinator, "Olena", &["uk"]).await;
    let own =
        w.s.create_case(&w.coordinator, "O.O.", "gesundheit", &["ar"], &[&olena])
            .await;
    let (stranger, token) = w.s.device(&w.coordinator, &olena, "Fremdes Handy").await;
    let mut x = SyncClient::connect(w.s.addr, &token, "stranger").await;
    x.expect_unavailable(w.case).await;
    // Writing is refused the same way.
    let mut forged = Automerge::new();
    {
        use lotse_protocol::automerge::transaction::Transactable;
        let mut tx = forged.transaction();
        tx.put(lotse_protocol::automerge::ROOT, "notes", "überschrieben")
            .unwrap();
        tx.commit();
    }
    x.docs.insert(w.case, forged);
    x.syncs.clear();
    x.expect_unavailable(w.case).await;
    // A document nobody has: nothing to read either.
    let unknown = DocumentId::random();
    x.expect_unavailable(unknown).await;

    settle(&w, &mut x, &stranger, own).await;
    assert!(trail(&w, unknown).await.is_empty());
    let by_stranger: Vec<_> = trail(&w, w.case)
        .await
        .into_iter()
        .filter(|e| e.actor_id == stranger)
        .collect();
    assert!(by_stranger.is_empty(), "{by_stranger:?}");
    w.s.stop().await;
}

async fn an_in_sync_reconnect_writes_nothing(backend: Backend) {
    let w = world(backend).await;
    let (device, token) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut phone = SyncClient::connect(w.s.addr, &token, "phone").await;
    phone.fetch(w.case).await;
    phone.fetch(w.marker).await;
    let (verdict, _) = phone.catch_up().await;
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
    wait_for_lines(&w, w.case, &device, SYNC, 1).await;
    wait_for_lines(&w, w.marker, &device, SYNC, 1).await;
    let case_before = trail(&w, w.case).await.len();
    let marker_before = trail(&w, w.marker).await.len();

    let mut phone = phone.reconnect(w.s.addr, &token).await;
    let (verdict, before) = phone.catch_up().await;
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
    assert!(before.is_empty(), "{before:?}");

    settle(&w, &mut phone, &device, w.marker).await;
    assert_eq!(trail(&w, w.case).await.len(), case_before);
    assert_eq!(
        trail(&w, w.marker).await.len(),
        marker_before + 1,
        "only the marker's own line"
    );
    w.s.stop().await;
}

async fn a_coordinator_session_is_recorded_by_name(backend: Backend) {
    let w = world(backend).await;
    let mut desk = SyncClient::connect(w.s.addr, &w.coordinator, "desk").await;
    desk.fetch(w.case).await;
    let found = wait_for_lines(&w, w.case, &w.coordinator_id, SYNC, 1).await;
    assert_eq!(found[0].actor_kind, "coordinator");
    assert_eq!(found[0].actor_name, COORDINATOR_EMAIL);

    add_note(desk.docs.get_mut(&w.case).unwrap(), "Rückruf");
    desk.offer(w.case).await;
    desk.wait_until_stored(&w.s.store, w.case).await;
    let found = wait_for_lines(&w, w.case, &w.coordinator_id, CHANGE, 1).await;
    assert_eq!(found[0].actor_kind, "coordinator");
    assert_eq!(found[0].actor_name, COORDINATOR_EMAIL);
    w.s.stop().await;
}

async fn a_case_started_on_a_phone_is_recorded_as_created(backend: Backend) {
    let w = world(backend).await;
    let (device, token) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut phone = SyncClient::connect(w.s.addr, &token, "phone").await;
    let id = DocumentId::random();
    let mut doc = mentoring_case(w.org.clone());
    add_note(&mut doc, "Erstes Treffen im Café");
    phone.docs.insert(id, doc);
    phone.offer(id).await;
    phone.wait_until_stored(&w.s.store, id).await;
    wait_for_lines(&w, id, &device, CREATE, 1).await;

    settle(&w, &mut phone, &device, w.marker).await;
    let mut actions: Vec<String> = trail(&w, id).await.into_iter().map(|e| e.action).collect();
    actions.sort();
    assert_eq!(
        actions,
        [CHANGE, CREATE],
        "no sync line for its own creation"
    );
    w.s.stop().await;
}

on_both_backends!(
    a_device_sync_is_recorded_once_per_connection,
    a_device_change_is_recorded_once_per_connection,
    a_stranger_is_refused_and_leaves_no_line,
    an_in_sync_reconnect_writes_nothing,
    a_coordinator_session_is_recorded_by_name,
    a_case_started_on_a_phone_is_recorded_as_created,
);

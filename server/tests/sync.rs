//! `/sync` over real WebSockets: convergence of concurrent edits, access control,
//! revocation, protocol errors, and the catch-up extension. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::sync_client::SyncClient;
use futures_util::StreamExt;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use lotse_testkit::fixtures::mentoring_case;
use lotse_testkit::{Backend, TestServer, connect_sync, on_both_backends};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

const QUIET: Duration = Duration::from_millis(300);

struct World {
    s: TestServer,
    coordinator: String,
    volunteer: String,
    case: DocumentId,
}

async fn world(backend: Backend) -> World {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Sync").await;
    let volunteer = s.volunteer(&coordinator, "Amira", &["ar", "de"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&volunteer])
        .await;
    World {
        s,
        coordinator,
        volunteer,
        case,
    }
}

fn note(doc: &mut Automerge, author: &str, text: &str) {
    CaseDoc::add_note(
        doc,
        &NewNote {
            author: author.into(),
            text: text.into(),
        },
        1_772_633_400_000,
    )
    .unwrap();
}

fn notes(doc: &Automerge) -> Vec<String> {
    let mut texts: Vec<String> = CaseDoc::read(doc)
        .unwrap()
        .notes
        .into_iter()
        .map(|n| n.text)
        .collect();
    texts.sort();
    texts
}

async fn concurrent_edits_converge(backend: Backend) {
    let w = world(backend).await;
    let (_, phone_a) = w.s.device(&w.coordinator, &w.volunteer, "Handy A").await;
    let (_, phone_b) = w.s.device(&w.coordinator, &w.volunteer, "Tablet B").await;
    let mut a = SyncClient::connect(w.s.addr, &phone_a, "phone-a").await;
    let mut b = SyncClient::connect(w.s.addr, &phone_b, "phone-b").await;
    let mut c = SyncClient::connect(w.s.addr, &w.coordinator, "coordinator").await;
    for client in [&mut a, &mut b, &mut c] {
        client.fetch(w.case).await;
        assert_eq!(CaseDoc::read(&client.docs[&w.case]).unwrap().label, "F.K.");
    }

    // Offline: each edits its own copy without talking to the server.
    note(
        a.docs.get_mut(&w.case).unwrap(),
        "a",
        "Termin beim Jobcenter vereinbart",
    );
    note(b.docs.get_mut(&w.case).unwrap(), "b", "Unterlagen kopiert");
    note(
        c.docs.get_mut(&w.case).unwrap(),
        "c",
        "Rückruf der Ausländerbehörde",
    );
    CaseDoc::set_status(
        c.docs.get_mut(&w.case).unwrap(),
        lotse_protocol::Status::Paused,
        1_772_633_500_000,
    )
    .unwrap();

    // Online again, one after the other; live fan-out brings the others' changes.
    a.sync_docs(&[w.case], QUIET).await;
    b.sync_docs(&[w.case], QUIET).await;
    c.sync_docs(&[w.case], QUIET).await;
    let expected = vec![
        "Rückruf der Ausländerbehörde".to_owned(),
        "Termin beim Jobcenter vereinbart".to_owned(),
        "Unterlagen kopiert".to_owned(),
    ];
    for client in [&mut a, &mut b, &mut c] {
        client
            .wait_for(w.case, Duration::from_secs(10), |d| notes(d) == expected)
            .await;
    }
    // Every replica ends at the server's heads.
    let server_heads = {
        let mut heads = w.s.store.document(&w.case).await.unwrap().unwrap().heads;
        heads.sort();
        heads
    };
    for client in [&mut a, &mut b, &mut c] {
        let expected = server_heads.clone();
        client
            .wait_for(w.case, Duration::from_secs(10), move |d| {
                let mut h = d.get_heads();
                h.sort();
                h == expected
            })
            .await;
    }

    // Online edits reach the others live, without a reconnect.
    note(a.docs.get_mut(&w.case).unwrap(), "a", "live");
    a.sync_docs(&[w.case], QUIET).await;
    b.wait_for(w.case, Duration::from_secs(20), |d| {
        notes(d).contains(&"live".to_owned())
    })
    .await;
    c.wait_for(w.case, Duration::from_secs(20), |d| {
        notes(d).contains(&"live".to_owned())
    })
    .await;

    // The server's JSON view and its dashboard index have it all.
    let (status, view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&w.coordinator))
            .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["notes"].as_array().unwrap().len(), 4);
    assert_eq!(view["status"], "paused");
    let (_, device_view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&phone_a))
            .await;
    assert_eq!(device_view, view, "an assigned device reads the same");
    let (_, list) = w.s.get("/api/v1/cases", Some(&w.coordinator)).await;
    assert_eq!(list[0]["note_count"], 4);
    assert_eq!(list[0]["status"], "paused");
    assert_eq!(list[0]["volunteer_ids"], json!([w.volunteer]));
    w.s.stop().await;
}

async fn others_cannot_read_or_write(backend: Backend) {
    let w = world(backend).await;
    let other = w.s.volunteer(&w.coordinator, "Olena", &["uk"]).await;
    let (_, stranger) = w.s.device(&w.coordinator, &other, "Fremdes Handy").await;
    let mut x = SyncClient::connect(w.s.addr, &stranger, "stranger").await;
    // The answer may take a while (a new connection checks access in the database), so
    // wait for it; then nothing else may follow.
    x.expect_unavailable(w.case).await;
    let seen = x.drain(QUIET).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        x.docs[&w.case].get_heads().is_empty(),
        "nothing of the case leaked"
    );

    // Writing: a sync with changes for the case is refused the same way.
    let mut forged = Automerge::new();
    note_into_empty(&mut forged);
    x.docs.insert(w.case, forged);
    x.syncs.clear();
    x.expect_unavailable(w.case).await;
    let seen = x.drain(QUIET).await;
    assert!(seen.is_empty(), "{seen:?}");
    let (_, view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&w.coordinator))
            .await;
    assert_eq!(view["notes"].as_array().unwrap().len(), 0);
    assert_eq!(
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&stranger))
            .await
            .0,
        404
    );

    // A coordinator of another organisation sees nothing either.
    let (_, foreign) = w.s.new_org("Andere Stadt").await;
    let mut f = SyncClient::connect(w.s.addr, &foreign, "foreign").await;
    f.expect_unavailable(w.case).await;
    let seen = f.drain(QUIET).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&foreign))
            .await
            .0,
        404
    );

    // A revoked device cannot connect, and its open socket is closed at once.
    let (device, token) = w.s.device(&w.coordinator, &w.volunteer, "Verloren").await;
    let mut open = SyncClient::connect(w.s.addr, &token, "lost").await;
    open.fetch(w.case).await;
    let (status, _) =
        w.s.request(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{device}/revoke"),
            Some(&w.coordinator),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut saw_error = false;
    loop {
        match open.recv().await {
            Some(Message::Error { message, .. }) => {
                assert!(message.contains("revoked"));
                saw_error = true;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(saw_error);
    let refused = connect_sync(w.s.addr, &token).await;
    assert!(refused.is_err(), "a revoked token cannot open a socket");
    assert!(connect_sync(w.s.addr, "ltd_nonsense").await.is_err());
    w.s.stop().await;
}

fn note_into_empty(doc: &mut Automerge) {
    use lotse_protocol::automerge::transaction::Transactable;
    let mut tx = doc.transaction();
    tx.put(lotse_protocol::automerge::ROOT, "notes", "overwritten")
        .unwrap();
    tx.commit();
}

async fn expect_protocol_error(
    s: &TestServer,
    token: &str,
    frame: Frame,
    join_first: bool,
    needle: &str,
) {
    let mut ws = connect_sync(s.addr, token).await.unwrap();
    if join_first {
        let join = Message::Join {
            sender_id: "p".into(),
            peer_metadata: Default::default(),
            supported_protocol_versions: vec!["1".into()],
        };
        futures_util::SinkExt::send(&mut ws, Frame::Binary(join.encode().into()))
            .await
            .unwrap();
        let _peer = ws.next().await.unwrap().unwrap();
    }
    futures_util::SinkExt::send(&mut ws, frame).await.unwrap();
    let mut message = None;
    while let Ok(Some(Ok(f))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Frame::Binary(b) = f
            && let Ok(Message::Error { message: m, .. }) = Message::decode(&b)
        {
            message = Some(m);
        }
    }
    let message = message.unwrap_or_else(|| panic!("no error message for {needle}"));
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
}

async fn protocol_errors_are_answered_and_others_keep_going(backend: Backend) {
    let w = world(backend).await;
    let mut c = SyncClient::connect(w.s.addr, &w.coordinator, "steady").await;
    c.fetch(w.case).await;

    expect_protocol_error(
        &w.s,
        &w.coordinator,
        Frame::Binary(vec![0xff, 0x00, 0x13].into()),
        true,
        "malformed",
    )
    .await;
    expect_protocol_error(
        &w.s,
        &w.coordinator,
        Frame::Text("{\"type\":\"join\"}".into()),
        false,
        "text frames",
    )
    .await;
    expect_protocol_error(
        &w.s,
        &w.coordinator,
        Frame::Binary(vec![0u8; 9 * 1024 * 1024].into()),
        true,
        "exceeds",
    )
    .await;
    let sync = Message::Sync {
        sender_id: "x".into(),
        target_id: "y".into(),
        document_id: w.case,
        data: vec![0x42],
    };
    expect_protocol_error(
        &w.s,
        &w.coordinator,
        Frame::Binary(sync.encode().into()),
        false,
        "before join",
    )
    .await;
    // A bad document id, encoded by hand since our encoder cannot produce one.
    let mut bad = Vec::new();
    ciborium_like_map(&mut bad);
    expect_protocol_error(
        &w.s,
        &w.coordinator,
        Frame::Binary(bad.into()),
        true,
        "malformed",
    )
    .await;

    // The steady client is unaffected.
    note(c.docs.get_mut(&w.case).unwrap(), "c", "still here");
    c.offer(w.case).await;
    c.wait_until_stored(&w.s.store, w.case).await;
    let (_, view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&w.coordinator))
            .await;
    assert_eq!(view["notes"][0]["text"], "still here");
    w.s.stop().await;
}

/// `{"type": "request", "senderId": "p", "targetId": "s", "documentId": "not-an-id", "data": h'00'}`.
fn ciborium_like_map(out: &mut Vec<u8>) {
    out.push(0xa5);
    for (k, v) in [
        ("type", "request"),
        ("senderId", "p"),
        ("targetId", "s"),
        ("documentId", "not-an-id"),
    ] {
        out.push(0x60 + k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.push(0x60 + v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out.push(0x64);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&[0x41, 0x00]);
}

async fn a_case_created_offline_becomes_the_volunteers(backend: Backend) {
    let w = world(backend).await;
    let (device_id, token) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut phone = SyncClient::connect(w.s.addr, &token, "phone").await;
    // A mentoring pair starts on the phone, without a request.
    let id = DocumentId::random();
    let (_, me) = w.s.get("/api/v1/me", Some(&token)).await;
    let mut doc = mentoring_case(me["organisation_id"].as_str().unwrap().to_owned());
    note(&mut doc, "amira", "Erstes Treffen im Café");
    phone.offer_new_until_stored(&w.s.store, id, doc).await;

    let (status, view) =
        w.s.get(&format!("/api/v1/cases/{id}"), Some(&w.coordinator))
            .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["label"], "Patenschaft R.");
    assert_eq!(
        w.s.get(&format!("/api/v1/cases/{id}"), Some(&token))
            .await
            .0,
        200
    );
    let (_, list) = w.s.get("/api/v1/cases", Some(&w.coordinator)).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.to_string().as_str() && c["note_count"] == 1),
        "{list}"
    );

    // Another volunteer's device cannot see it.
    let other = w.s.volunteer(&w.coordinator, "Olena", &["uk"]).await;
    let (_, other_token) = w.s.device(&w.coordinator, &other, "Fremd").await;
    assert_eq!(
        w.s.get(&format!("/api/v1/cases/{id}"), Some(&other_token))
            .await
            .0,
        404
    );

    // The dashboard knows when this phone last synced.
    let (_, devices) =
        w.s.get(
            &format!("/api/v1/volunteers/{}/devices", w.volunteer),
            Some(&w.coordinator),
        )
        .await;
    let row = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device_id.as_str())
        .unwrap();
    assert!(row["last_sync_at"].is_string(), "{row}");
    w.s.stop().await;
}

async fn ephemeral_messages_are_relayed_once(backend: Backend) {
    let w = world(backend).await;
    let (_, t1) = w.s.device(&w.coordinator, &w.volunteer, "A").await;
    let (_, t2) = w.s.device(&w.coordinator, &w.volunteer, "B").await;
    let mut a = SyncClient::connect(w.s.addr, &t1, "a").await;
    let mut b = SyncClient::connect(w.s.addr, &t2, "b").await;
    a.fetch(w.case).await;
    b.fetch(w.case).await;
    for count in [1u64, 1, 2, 3] {
        let m = Message::Ephemeral {
            sender_id: "a".into(),
            target_id: a.server_id.clone(),
            document_id: w.case,
            session_id: "s1".into(),
            count,
            data: vec![7, count as u8],
        };
        a.send(m).await;
    }
    let mut counts = Vec::new();
    while counts.len() < 3 {
        match b.recv().await.expect("b stays connected") {
            Message::Ephemeral {
                sender_id,
                target_id,
                count,
                data,
                ..
            } => {
                assert_eq!(sender_id, "a");
                assert_eq!(target_id, "b");
                assert_eq!(data, [7, count as u8]);
                counts.push(count);
            }
            other => {
                b.handle(other).await;
            }
        }
    }
    assert_eq!(
        counts,
        [1, 2, 3],
        "the repeat of count 1 is dropped, in order"
    );
    assert!(
        a.drain(QUIET).await.is_empty(),
        "the sender does not hear its own"
    );
    w.s.stop().await;
}

async fn idle_documents_are_evicted_and_reload(backend: Backend) {
    let w = world(backend).await;
    let mut c = SyncClient::connect(w.s.addr, &w.coordinator, "c").await;
    c.fetch(w.case).await;
    assert!(w.s.state.hub.resident() >= 1);
    drop(c);
    // The server may still be finishing the last message of the closed connection; an
    // entry in use is never evicted, so wait until nothing holds it any more.
    let hub = &w.s.state.hub;
    lotse_testkit::eventually(
        "the document to leave memory once its peer is gone",
        Duration::from_secs(10),
        || async {
            hub.evict_idle(Duration::ZERO);
            (hub.resident() == 0).then_some(())
        },
    )
    .await;
    // Loaded again on demand, from the database.
    let (status, view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&w.coordinator))
            .await;
    assert_eq!(status, 200);
    assert_eq!(view["label"], "F.K.");
    w.s.stop().await;
}

async fn storage_errors_end_the_session_and_acknowledge_nothing(backend: Backend) {
    let w = world(backend).await;
    let mut c = SyncClient::connect(w.s.addr, &w.coordinator, "c").await;
    c.fetch(w.case).await;
    sqlx::query("ALTER TABLE document_chunks RENAME TO document_chunks_away")
        .execute(w.s.store.pool())
        .await
        .unwrap();
    note(c.docs.get_mut(&w.case).unwrap(), "c", "geht verloren?");
    let unsaved = c.heads(&w.case);
    c.offer(w.case).await;
    let mut error = None;
    while let Some(m) = c.recv().await {
        match m {
            Message::Error { message, .. } => error = Some(message),
            Message::Sync { data, .. } => {
                let advertised = lotse_protocol::automerge::sync::Message::decode(&data)
                    .unwrap()
                    .heads;
                assert!(
                    !unsaved.iter().any(|h| advertised.contains(h)),
                    "unsaved heads were advertised"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        error.unwrap().contains("could not store"),
        "the peer is told"
    );

    // Once storage works again, the same changes go through on a new connection.
    sqlx::query("ALTER TABLE document_chunks_away RENAME TO document_chunks")
        .execute(w.s.store.pool())
        .await
        .unwrap();
    assert_ne!(
        w.s.store.document(&w.case).await.unwrap().unwrap().heads,
        unsaved
    );
    let mut again = SyncClient::connect(w.s.addr, &w.coordinator, "c2").await;
    again.docs.insert(w.case, c.docs[&w.case].clone());
    again.offer(w.case).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while w.s.store.document(&w.case).await.unwrap().unwrap().heads != unsaved {
        assert!(tokio::time::Instant::now() < deadline, "retry never stored");
        if let Ok(Some(m)) = again.recv_within(Duration::from_millis(100)).await {
            again.handle(m).await;
        }
    }
    let (_, view) =
        w.s.get(&format!("/api/v1/cases/{}", w.case), Some(&w.coordinator))
            .await;
    assert_eq!(view["notes"][0]["text"], "geht verloren?");
    w.s.stop().await;
}

/// Two server instances on one PostgreSQL: a change made through one reaches a device
/// connected to the other at once (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_fan_out_to_each_other() {
    let w = world(Backend::Postgres).await;
    let other = TestServer::start_on(w.s.db.shared()).await;
    // A notification sent before an instance listens is lost to it, so wait for both.
    common::wait_until_instances_listen(&w.s.store, 2).await;
    let (_, phone) = w.s.device(&w.coordinator, &w.volunteer, "Handy").await;
    let mut on_a = SyncClient::connect(w.s.addr, &phone, "phone-on-a").await;
    on_a.fetch(w.case).await;
    let mut on_b = SyncClient::connect(other.addr, &w.coordinator, "coordinator-on-b").await;
    on_b.fetch(w.case).await;
    note(on_b.docs.get_mut(&w.case).unwrap(), "c", "über Instanz B");
    on_b.offer(w.case).await;
    on_a.wait_for(w.case, Duration::from_secs(20), |d| {
        notes(d) == ["über Instanz B"]
    })
    .await;
    other.stop().await;
    w.s.stop().await;
}

/// A peer that passed the access check only because the id was unknown may create that
/// document, nothing else: if it exists by the time the hub takes the document's lock
/// (someone else created it in between), the message is refused before anything is read
/// or merged.
async fn a_peer_allowed_only_to_create_cannot_touch_an_existing_document(backend: Backend) {
    use lotse_protocol::DocSync;
    use lotse_server::hub::{Creator, HubError};
    let w = world(backend).await;
    let mine = mentoring_case("someone-else".into());
    let stranger = Creator {
        organisation_id: "someone-else".into(),
        volunteer_id: Some("someone".into()),
        writer: lotse_server::store::Writer::Volunteer {
            volunteer_id: "someone".into(),
        },
    };
    let message = DocSync::new().generate(&mine).expect("a first message");
    let heads_before = w.s.store.document(&w.case).await.unwrap().unwrap().heads;
    match w
        .s
        .state
        .hub
        .receive(
            w.case,
            &mut DocSync::new(),
            message.clone(),
            0,
            &stranger,
            true,
        )
        .await
    {
        Err(HubError::NotYours(id)) => assert_eq!(id, w.case),
        other => panic!("expected NotYours, got {other:?}"),
    }
    assert_eq!(
        w.s.store.document(&w.case).await.unwrap().unwrap().heads,
        heads_before,
        "nothing was merged"
    );
    // The same message from a peer with access is an ordinary sync step.
    assert!(
        w.s.state
            .hub
            .receive(w.case, &mut DocSync::new(), message, 0, &stranger, false)
            .await
            .is_ok()
    );
    w.s.stop().await;
}

/// A device that asks for a document before another device of its volunteer has uploaded
/// it gets it when it arrives, without asking again (as from the reference server); a
/// device of another volunteer that asked the same learns nothing, then or later.
async fn a_document_asked_for_early_reaches_only_those_allowed(backend: Backend) {
    let w = world(backend).await;
    let (_, first) =
        w.s.device(&w.coordinator, &w.volunteer, "Erstes Handy")
            .await;
    let (_, second) =
        w.s.device(&w.coordinator, &w.volunteer, "Zweites Handy")
            .await;
    let other = w.s.volunteer(&w.coordinator, "Olena", &["uk"]).await;
    let (_, strangers) = w.s.device(&w.coordinator, &other, "Fremdes Handy").await;
    let id = DocumentId::random();

    let mut early = SyncClient::connect(w.s.addr, &second, "second").await;
    early.expect_unavailable(id).await;
    let mut stranger = SyncClient::connect(w.s.addr, &strangers, "stranger").await;
    stranger.expect_unavailable(id).await;

    let mut doc = Automerge::new();
    note_into_empty(&mut doc);
    let heads = doc.get_heads();
    let mut uploader = SyncClient::connect(w.s.addr, &first, "first").await;
    uploader.offer_new_until_stored(&w.s.store, id, doc).await;

    early
        .wait_for(id, Duration::from_secs(20), |d| d.get_heads() == heads)
        .await;
    // The connection handles the hub's news before frames read after it, so the stranger's
    // second question is answered after the document's arrival was weighed for it: still
    // doc-unavailable, and nothing came before. (A fresh sync state: the first request is
    // still in flight for automerge, which would send nothing.)
    stranger.syncs.clear();
    stranger.expect_unavailable(id).await;
    assert!(stranger.docs[&id].get_heads().is_empty());
    w.s.stop().await;
}

on_both_backends!(
    a_document_asked_for_early_reaches_only_those_allowed,
    storage_errors_end_the_session_and_acknowledge_nothing,
    concurrent_edits_converge,
    others_cannot_read_or_write,
    protocol_errors_are_answered_and_others_keep_going,
    a_case_created_offline_becomes_the_volunteers,
    ephemeral_messages_are_relayed_once,
    idle_documents_are_evicted_and_reload,
    a_peer_allowed_only_to_create_cannot_touch_an_existing_document,
);

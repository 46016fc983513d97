//! The catch-up extension (DESIGN.md decision 2), measured on the wire: a reconnect of a
//! phone holding 1,000 in-sync cases costs one round trip and under 1 KB; after edits to
//! 100 of them, at most 3 round trips. A `lotse-catchup` sent behind each batch is the
//! barrier: the server answers in order, so its reply closes the flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::sync_client::SyncClient;
use lotse_protocol::automerge::ChangeHash;
use lotse_protocol::{CaseDoc, DocSync, DocumentId, Message, NewNote, PeerMetadata};
use lotse_testkit::{Backend, TestServer, on_both_backends};

fn holdings(c: &SyncClient) -> BTreeMap<DocumentId, Vec<ChangeHash>> {
    c.docs.iter().map(|(id, d)| (*id, d.get_heads())).collect()
}

fn catchup(c: &SyncClient) -> Message {
    let held = holdings(c);
    Message::Catchup {
        sender_id: c.peer_id.clone(),
        target_id: c.server_id.clone(),
        digest: lotse_protocol::digest(held.iter().map(|(id, h)| (id, h.as_slice()))),
        count: held.len() as u64,
    }
}

/// Sends our sync message for each of `ids` (if any) plus a catch-up barrier, then reads
/// the answers up to the barrier's reply, which it returns.
async fn flight(c: &mut SyncClient, ids: &[DocumentId]) -> Message {
    for id in ids {
        let doc = c.docs[id].clone();
        let sync = c.syncs.entry(*id).or_default();
        if let Some(data) = sync.generate(&doc) {
            let (sender_id, target_id) = (c.peer_id.clone(), c.server_id.clone());
            let m = if doc.get_heads().is_empty() {
                Message::Request {
                    sender_id,
                    target_id,
                    document_id: *id,
                    data,
                }
            } else {
                Message::Sync {
                    sender_id,
                    target_id,
                    document_id: *id,
                    data,
                }
            };
            c.send(m).await;
        }
    }
    c.send(catchup(c)).await;
    loop {
        match c.recv().await.expect("server stays connected") {
            Message::Sync {
                document_id, data, ..
            } => {
                let mut doc = c.docs.remove(&document_id).unwrap_or_default();
                c.syncs
                    .entry(document_id)
                    .or_default()
                    .receive(&mut doc, &data)
                    .unwrap();
                c.docs.insert(document_id, doc);
            }
            m @ (Message::InSync { .. } | Message::Manifest { .. }) => return m,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reconnects as the same phone: documents and persisted sync states carry over, as they
/// would from the phone's store.
async fn reconnect(
    s: &TestServer,
    token: &str,
    old: SyncClient,
) -> (SyncClient, Message, usize, usize) {
    drop(old.ws);
    let ws = lotse_testkit::connect_sync(s.addr, token).await.unwrap();
    let mut c = SyncClient {
        ws,
        peer_id: old.peer_id.clone(),
        server_id: old.server_id.clone(),
        syncs: old
            .syncs
            .iter()
            .map(|(id, s)| (*id, DocSync::from_persisted(&s.persist()).unwrap()))
            .collect(),
        docs: old.docs,
        frames_sent: 0,
        frames_received: 0,
        bytes_sent: 0,
        bytes_received: 0,
        lease_ms: None,
    };
    // One flight: join and catch-up go out together, peer and the verdict come back.
    c.send(Message::Join {
        sender_id: c.peer_id.clone(),
        peer_metadata: PeerMetadata {
            storage_id: Some("phone-storage".into()),
            is_ephemeral: Some(false),
        },
        supported_protocol_versions: vec!["1".into()],
    })
    .await;
    c.send(catchup(&c)).await;
    assert!(matches!(c.recv().await, Some(Message::Peer { .. })));
    let verdict = c.recv().await.unwrap();
    let (sent, received) = (c.bytes_sent, c.bytes_received);
    (c, verdict, sent, received)
}

async fn reconnect_costs_follow_changes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Catchup").await;
    let volunteer = s.volunteer(&coordinator, "Farid", &["fa"]).await;
    let (_, token) = s.device(&coordinator, &volunteer, "Handy").await;
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(
            s.create_case(
                &coordinator,
                &format!("C{i}"),
                "behoerden",
                &["fa"],
                &[&volunteer],
            )
            .await,
        );
    }

    // First contact: fetch everything, flight by flight, until the server says in sync.
    let mut c = SyncClient::connect(s.addr, &token, "phone").await;
    for id in &ids {
        c.docs.insert(*id, Default::default());
    }
    let mut verdict = flight(&mut c, &ids).await;
    let mut flights = 1;
    while !matches!(verdict, Message::InSync { .. }) {
        verdict = flight(&mut c, &ids).await;
        flights += 1;
        assert!(flights < 10, "initial fetch does not converge");
    }
    assert_eq!(
        c.docs
            .values()
            .filter(|d| !d.get_heads().is_empty())
            .count(),
        1000
    );

    // Nothing changed: one round trip, under 1 KB on the wire both ways.
    let (c, verdict, sent, received) = reconnect(&s, &token, c).await;
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
    assert_eq!((c.frames_sent, c.frames_received), (2, 2));
    assert!(sent + received < 1024, "{sent} + {received} bytes");
    println!(
        "in-sync reconnect with 1000 documents: 1 round trip, {sent} bytes up, {received} bytes down"
    );
    let mut c = c;

    // Offline edits to 100 cases, then reconnect: at most 3 round trips.
    let mut edited: Vec<DocumentId> = ids.iter().step_by(10).copied().collect();
    edited.sort();
    for id in &edited {
        CaseDoc::add_note(
            c.docs.get_mut(id).unwrap(),
            &NewNote {
                author: "farid".into(),
                text: "offline notiert".into(),
            },
            1_772_633_400_000,
        )
        .unwrap();
    }
    let (mut c, verdict, _, _) = reconnect(&s, &token, c).await;
    let Message::Manifest { entries, .. } = verdict else {
        panic!("expected a manifest, got {verdict:?}")
    };
    let plan = lotse_protocol::plan(&holdings(&c), &entries);
    assert_eq!(plan.differ, edited);
    assert!(plan.missing_locally.is_empty() && plan.only_local.is_empty());
    let mut round_trips = 1;
    loop {
        let verdict = flight(&mut c, &plan.differ).await;
        round_trips += 1;
        if matches!(verdict, Message::InSync { .. }) {
            break;
        }
        assert!(round_trips < 10, "catch-up does not converge");
    }
    assert!(round_trips <= 3, "{round_trips} round trips");
    println!("reconnect after edits to 100 of 1000 documents: {round_trips} round trips");
    for id in &edited {
        let row = s.store.document(id).await.unwrap().unwrap();
        assert_eq!(
            row.heads,
            c.docs[id].get_heads(),
            "server has the offline note"
        );
    }
    s.stop().await;
}

on_both_backends!(reconnect_costs_follow_changes);

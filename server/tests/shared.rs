//! `lotse-shared`: a connected phone hears at once when a case is shared with its
//! volunteer (created by a coordinator, won through an offer, or created on another of the
//! volunteer's phones), instead of at its next periodic catch-up. Only devices of that
//! volunteer that speak our extension hear it; other volunteers, coordinators, plain
//! automerge-repo peers and revoked devices do not. On SQLite and PostgreSQL, plus across
//! two instances on one PostgreSQL.
//!
//! "Heard nothing" is checked with a barrier that travels through the hub behind the
//! share (a relayed ephemeral message), not with a socket round trip alone: a connection
//! may read the next frame before an announcement already waiting for it.
#![allow(clippy::unwrap_used)]

mod common;

use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, DocumentId, Message};
use lotse_testkit::fixtures::{mentoring_case, request_body, window, with_fields};
use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::json;

/// A phone that fetched `docs` and then caught up: it spoke our extension and holds
/// everything the server has for it.
async fn caught_up_phone(
    s: &TestServer,
    token: &str,
    peer: &str,
    docs: &[DocumentId],
) -> SyncClient {
    let mut phone = SyncClient::connect(s.addr, token, peer).await;
    for id in docs {
        phone.fetch(*id).await;
    }
    let (verdict, before) = phone.catch_up().await;
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
    assert!(before.is_empty(), "{before:?}");
    phone
}

/// Waits (with a deadline) for the next message, which must be `lotse-shared` to `phone`.
async fn expect_shared(phone: &mut SyncClient) {
    loop {
        match phone.recv().await {
            Some(Message::Shared {
                sender_id,
                target_id,
            }) => {
                assert_eq!(sender_id, phone.server_id);
                assert_eq!(target_id, phone.peer_id);
                return;
            }
            // Acknowledgements of earlier fetches may still trickle in.
            Some(m @ Message::Sync { .. }) => {
                phone.handle(m).await;
            }
            other => panic!("expected lotse-shared, got {other:?}"),
        }
    }
}

/// Proves that `phone`'s connection has handled every hub event announced before this
/// call: `relay` (anyone who may see `doc`) sends an ephemeral message on `doc`, which
/// `phone` synced, and the hub delivers events to a connection in order. Returns what
/// `phone` received before the relayed message.
async fn barrier(
    phone: &mut SyncClient,
    relay: &mut SyncClient,
    doc: DocumentId,
    count: u64,
) -> Vec<Message> {
    relay
        .send(Message::Ephemeral {
            sender_id: relay.peer_id.clone(),
            target_id: relay.server_id.clone(),
            document_id: doc,
            session_id: "barrier".into(),
            count,
            data: vec![1],
        })
        .await;
    let mut before = Vec::new();
    loop {
        match phone.recv().await {
            Some(Message::Ephemeral {
                session_id,
                count: seen,
                document_id,
                ..
            }) if session_id == "barrier" && seen == count && document_id == doc => {
                return before;
            }
            Some(m) => {
                let m = phone.handle(m).await;
                if !matches!(m, Message::Sync { .. }) {
                    before.push(m);
                }
            }
            None => panic!("the server closed the socket before the barrier"),
        }
    }
}

/// What a volunteer's phone learns from its catch-up after `lotse-shared`: a manifest
/// listing `case`, which it then fetches; afterwards it is in sync again.
async fn catch_up_finds(phone: &mut SyncClient, case: DocumentId, label: &str) {
    let (verdict, before) = phone.catch_up().await;
    assert!(before.is_empty(), "{before:?}");
    let Message::Manifest { entries, .. } = verdict else {
        panic!("expected a manifest, got {verdict:?}")
    };
    assert!(entries.iter().any(|(id, _)| *id == case), "{entries:?}");
    phone.fetch(case).await;
    let view = CaseDoc::read(&phone.docs[&case]).unwrap();
    assert_eq!(view.label, label);
    let (verdict, _) = phone.catch_up().await;
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
}

fn no_shared(messages: &[Message], who: &str) {
    assert!(
        !messages.iter().any(|m| matches!(m, Message::Shared { .. })),
        "{who} heard lotse-shared: {messages:?}"
    );
}

/// `phone` has handled every announcement so far (see `barrier`) and none was
/// `lotse-shared`.
async fn heard_nothing(
    phone: &mut SyncClient,
    relay: &mut SyncClient,
    doc: DocumentId,
    count: u64,
    who: &str,
) {
    no_shared(&barrier(phone, relay, doc, count).await, who);
}

/// A catch-up of `phone` that finds it in sync, without `lotse-shared` on the way.
async fn still_in_sync(phone: &mut SyncClient, who: &str) {
    let (verdict, before) = phone.catch_up().await;
    no_shared(&before, who);
    assert!(matches!(verdict, Message::InSync { .. }), "{verdict:?}");
}

/// An organisation with two Arabic-speaking volunteers, Amira (`v`) and Sami (`w`), each
/// with a phone. Sami's phone holds a case, so that a relayed message on it can serve as
/// a barrier.
struct Two {
    org: String,
    coordinator: String,
    v: String,
    w: String,
    v_phone: String,
    w_phone: String,
    held_by_w: DocumentId,
}

async fn two_volunteers(s: &TestServer, org: &str) -> Two {
    let (org, coordinator) = s.new_org(org).await;
    let v = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let w = s.volunteer(&coordinator, "Sami", &["ar"]).await;
    let (_, v_phone) = s.device(&coordinator, &v, "Handy").await;
    let (_, w_phone) = s.device(&coordinator, &w, "Handy").await;
    let held_by_w = s
        .create_case(&coordinator, "W.0", "behoerden", &["ar"], &[&w])
        .await;
    Two {
        org,
        coordinator,
        v,
        w,
        v_phone,
        w_phone,
        held_by_w,
    }
}

async fn a_case_created_for_a_volunteer_reaches_its_phones(backend: Backend) {
    let s = TestServer::start(backend).await;
    let t = two_volunteers(&s, "Lotsen Geteilt").await;
    let (_, v_tablet) = s.device(&t.coordinator, &t.v, "Tablet").await;

    let mut v1 = caught_up_phone(&s, &t.v_phone, "v-phone", &[]).await;
    let mut v2 = caught_up_phone(&s, &v_tablet, "v-tablet", &[]).await;
    let mut w1 = caught_up_phone(&s, &t.w_phone, "w-phone", &[t.held_by_w]).await;
    let mut office = caught_up_phone(&s, &t.coordinator, "office", &[t.held_by_w]).await;

    let case = s
        .create_case(&t.coordinator, "F.K.", "behoerden", &["ar"], &[&t.v])
        .await;
    expect_shared(&mut v1).await;
    expect_shared(&mut v2).await;

    // Sami's phone has handled the announcement by now, and said nothing to Sami.
    let other = "another volunteer's phone";
    heard_nothing(&mut w1, &mut office, t.held_by_w, 1, other).await;
    still_in_sync(&mut w1, other).await;
    // The coordinator's session sees the new case in its catch-up, but was not told.
    let (verdict, before) = office.catch_up().await;
    no_shared(&before, "the coordinator");
    assert!(matches!(verdict, Message::Manifest { .. }), "{verdict:?}");

    catch_up_finds(&mut v1, case, "F.K.").await;
    catch_up_finds(&mut v2, case, "F.K.").await;
    s.stop().await;
}

async fn winning_an_offer_reaches_the_winners_phone(backend: Backend) {
    let s = TestServer::start(backend).await;
    let t = two_volunteers(&s, "Lotsen Angebot").await;
    let (start, end) = window(3);
    let request = s
        .post_request(
            &t.coordinator,
            with_fields(
                request_body("arbeit", &["ar"], &start, &end),
                json!({"urgency": "dringend", "description": "Termin zur Eingliederungsvereinbarung"}),
            ),
        )
        .await;
    s.offer_to(&t.coordinator, &request, &[&t.v, &t.w]).await;

    let mut v1 = caught_up_phone(&s, &t.v_phone, "v-phone", &[]).await;
    let mut w1 = caught_up_phone(&s, &t.w_phone, "w-phone", &[t.held_by_w]).await;
    let mut office = SyncClient::connect(s.addr, &t.coordinator, "office").await;

    let (status, won) = s.accept(&t.v_phone, &request).await;
    assert_eq!(status, 200, "{won}");
    let case: DocumentId = won["assignment"]["case_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    expect_shared(&mut v1).await;

    let loser = "the loser's phone";
    heard_nothing(&mut w1, &mut office, t.held_by_w, 1, loser).await;
    still_in_sync(&mut w1, loser).await;
    // The loser's late accept shares nothing either.
    let (status, _) = s.accept(&t.w_phone, &request).await;
    assert_eq!(status, 409);
    // A retried accept by the winner finds the case already there.
    let (status, again) = s.accept(&t.v_phone, &request).await;
    assert_eq!(status, 200, "{again}");
    still_in_sync(&mut w1, loser).await;

    catch_up_finds(&mut v1, case, "A.K.").await;
    // The retry shared nothing a second time.
    heard_nothing(&mut v1, &mut office, case, 1, "the winner's phone").await;
    s.stop().await;
}

async fn plain_automerge_peers_and_revoked_devices_hear_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Still").await;
    let v = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (_, v_phone) = s.device(&coordinator, &v, "Handy").await;
    let (_, v_browser) = s.device(&coordinator, &v, "Browser").await;
    let (lost_id, v_lost) = s.device(&coordinator, &v, "Verloren").await;
    let held = s
        .create_case(&coordinator, "V.0", "behoerden", &["ar"], &[&v])
        .await;

    let mut extended = caught_up_phone(&s, &v_phone, "v-phone", &[held]).await;
    // A plain automerge-repo peer never sends lotse-catchup.
    let mut plain = SyncClient::connect(s.addr, &v_browser, "v-browser").await;
    plain.fetch(held).await;
    let mut lost = caught_up_phone(&s, &v_lost, "v-lost", &[held]).await;
    let mut office = SyncClient::connect(s.addr, &coordinator, "office").await;
    // Revoked in the database while the event that closes its socket is still on its
    // way (here: never sent), as in a race between revocation and a new case.
    s.store
        .revoke_device(&org, "test", &lost_id)
        .await
        .unwrap()
        .unwrap();

    let case = s
        .create_case(&coordinator, "F.K.", "behoerden", &["ar"], &[&v])
        .await;
    expect_shared(&mut extended).await;
    catch_up_finds(&mut extended, case, "F.K.").await;

    heard_nothing(&mut plain, &mut office, held, 1, "a plain peer").await;
    // And its own round trip shows nothing else in between.
    plain.expect_unavailable(DocumentId::random()).await;
    // A plain peer still gets the case when it asks, as automerge-repo peers do.
    plain.fetch(case).await;

    heard_nothing(&mut lost, &mut office, held, 2, "a revoked device").await;
    s.stop().await;
}

async fn a_case_created_on_one_phone_reaches_the_volunteers_other_phones(backend: Backend) {
    let s = TestServer::start(backend).await;
    let t = two_volunteers(&s, "Lotsen Offline").await;
    let (_, v_tablet) = s.device(&t.coordinator, &t.v, "Tablet").await;
    let mut phone = caught_up_phone(&s, &t.v_phone, "v-phone", &[]).await;
    let mut tablet = caught_up_phone(&s, &v_tablet, "v-tablet", &[]).await;
    let mut w1 = caught_up_phone(&s, &t.w_phone, "w-phone", &[t.held_by_w]).await;
    let mut office = SyncClient::connect(s.addr, &t.coordinator, "office").await;

    // A mentoring pair starts on the phone, without a request, and reaches the server.
    let case = DocumentId::random();
    phone
        .offer_new_until_stored(&s.store, case, mentoring_case(t.org))
        .await;
    expect_shared(&mut tablet).await;

    // The phone that created it already has it; other volunteers have nothing new.
    heard_nothing(&mut phone, &mut office, case, 1, "the creating phone").await;
    let other = "another volunteer's phone";
    heard_nothing(&mut w1, &mut office, t.held_by_w, 1, other).await;
    catch_up_finds(&mut tablet, case, "Patenschaft R.").await;
    s.stop().await;
}

/// Two server instances on one PostgreSQL: a case created through one reaches a phone
/// connected to the other at once (LISTEN lotse_shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shares_cross_instances() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = TestServer::start_on(a.db.shared()).await;
    // Notifications sent before an instance listens are lost, so wait for both.
    common::wait_until_instances_listen(&a.store, 2).await;
    let t = two_volunteers(&a, "Lotsen Verteilt").await;
    let mut v_on_b = caught_up_phone(&b, &t.v_phone, "v-on-b", &[]).await;
    let mut w_on_b = caught_up_phone(&b, &t.w_phone, "w-on-b", &[t.held_by_w]).await;
    let mut office_on_b = SyncClient::connect(b.addr, &t.coordinator, "office-on-b").await;

    let case = a
        .create_case(&t.coordinator, "F.K.", "behoerden", &["ar"], &[&t.v])
        .await;
    expect_shared(&mut v_on_b).await;
    let other = "another volunteer's phone";
    heard_nothing(&mut w_on_b, &mut office_on_b, t.held_by_w, 1, other).await;
    catch_up_finds(&mut v_on_b, case, "F.K.").await;
    b.stop().await;
    a.stop().await;
}

on_both_backends!(
    a_case_created_for_a_volunteer_reaches_its_phones,
    winning_an_offer_reaches_the_winners_phone,
    plain_automerge_peers_and_revoked_devices_hear_nothing,
    a_case_created_on_one_phone_reaches_the_volunteers_other_phones,
);

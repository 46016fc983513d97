//! Issue 5 on the phone, against a real lotse-server on loopback: a coordinator offers a
//! request to two volunteers; one phone accepts in a dead spot, reconnects and wins; the
//! other's accept loses with "already taken"; the case appears on the winner's phone.
//! Answers survive a restart of the app while queued. Push keys register with the server
//! and decrypt what the server's Web Push library encrypts for them; the offer push reaches
//! the offered phone, and the "taken" push the losing phone, never the winner's.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lotse_core::lotse_protocol::DocumentId;
use lotse_core::{
    Client, Error, Listener, OfferAction, OfferAnswer, OfferOutcome, PushError, PushEvent,
    PushKind, SyncState,
};
use lotse_server::push::{Notice, NoticeKind};
use lotse_testkit::now_ms;
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const HOUR: i64 = 3_600_000;

/// A request for tomorrow, offered to `volunteers`: its id.
async fn offered_request(server: &TestServer, coordinator: &str, volunteers: &[&str]) -> String {
    let start = now_ms() + 26 * HOUR;
    let id = server
        .post_request(
            coordinator,
            json!({
                "institution_kind": "jobcenter",
                "institution_name": "Jobcenter Neuss",
                "person_label": "K.M.",
                "topic": "behoerden",
                "languages": ["ar"],
                "starts_at": lotse_server::timefmt::format_ms(start),
                "ends_at": lotse_server::timefmt::format_ms(start + HOUR),
                "place_area": "Neuss-Mitte",
                "place_address": "Rheinstraße 1",
                "description": "Begleitung zum Termin",
            }),
        )
        .await;
    server.offer_to(coordinator, &id, volunteers).await;
    id
}

#[derive(Default)]
struct Answers(Mutex<Vec<OfferAnswer>>);

impl Listener for Answers {
    fn on_sync_state(&self, _: SyncState) {}
    fn on_documents_changed(&self, _: Vec<DocumentId>) {}
    fn on_offer_answered(&self, answer: OfferAnswer) {
        self.0.lock().unwrap().push(answer);
    }
}

impl Answers {
    async fn wait_for(&self, request_id: &str) -> OfferAnswer {
        eventually("the offer's outcome reaches the listener", T, || {
            let found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.request_id == request_id)
                .cloned();
            async move { found }
        })
        .await
    }
}

async fn settled(client: &Client, request_id: &str) -> OfferAnswer {
    let what = format!("the answer for {request_id} to settle");
    eventually(&what, T, || async {
        let answer = client.offer_answer(request_id).await.unwrap();
        answer.filter(|a| a.outcome.is_some())
    })
    .await
}

async fn has_case(client: &Client, id: &DocumentId) -> bool {
    client
        .list_cases()
        .await
        .unwrap()
        .iter()
        .any(|c| c.id == *id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_accept_wins_the_other_loses_and_the_case_arrives() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Neuss").await;
    let a = enrolled_phone(&server, &coordinator).await;
    let b = enrolled_phone(&server, &coordinator).await;
    let request = offered_request(&server, &coordinator, &[&a.volunteer, &b.volunteer]).await;

    // Both phones see the offer; the list is kept for offline use.
    let list = a.client.list_offers().await.unwrap();
    assert!(list.fresh);
    let offer = list.offers.iter().find(|o| o.id == request).unwrap();
    assert_eq!(offer.status, "offered");
    assert_eq!(offer.place_area, "Neuss-Mitte");
    assert!(offer.assignment.is_none(), "no address before accepting");
    assert!(offer.answer.is_none());
    assert!(offer.ends_at - offer.starts_at == HOUR);
    assert!(
        b.client
            .list_offers()
            .await
            .unwrap()
            .offers
            .iter()
            .any(|o| o.id == request)
    );

    // Phone A in a dead spot: the stored list shows, the accept is queued.
    let answers_a = Arc::new(Answers::default());
    let _sub_a = a.client.subscribe(answers_a.clone());
    a.client.set_network_available(false);
    eventually("offline", T, || async {
        a.client.sync_state() == SyncState::Offline
    })
    .await;
    let offline = a.client.list_offers().await.unwrap();
    assert!(!offline.fresh);
    assert_eq!(offline.offers, list.offers);
    let queued = a.client.accept_offer(&request).await.unwrap();
    assert_eq!(queued.action, OfferAction::Accept);
    assert_eq!(queued.outcome, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.client
            .offer_answer(&request)
            .await
            .unwrap()
            .unwrap()
            .outcome,
        None,
        "still queued while offline"
    );
    let cached = a.client.cached_offers().await.unwrap();
    let mine = cached.offers.iter().find(|o| o.id == request).unwrap();
    assert_eq!(mine.answer.as_ref().unwrap().outcome, None);
    assert!(answers_a.0.lock().unwrap().is_empty());

    // Back online: the queued accept goes out on reconnect and wins.
    a.client.set_network_available(true);
    let won = answers_a.wait_for(&request).await;
    let Some(OfferOutcome::Won {
        case_id: Some(case_id),
    }) = won.outcome.clone()
    else {
        panic!("phone A should have won: {won:?}");
    };
    let case_id: DocumentId = case_id.parse().unwrap();
    // The case the server created for the winner reaches the phone by itself.
    eventually("the won case on phone A", T, || {
        has_case(&a.client, &case_id)
    })
    .await;
    let case = a.client.get_case(&case_id).await.unwrap();
    assert_eq!(case.case.label, "K.M.");
    assert_eq!(case.case.appointments.len(), 1);
    // Settled answers are final and queryable; answering again returns the same.
    assert_eq!(a.client.offer_answer(&request).await.unwrap().unwrap(), won);
    assert_eq!(a.client.accept_offer(&request).await.unwrap(), won);
    assert_eq!(a.client.decline_offer(&request).await.unwrap(), won);
    let fresh = a.client.list_offers().await.unwrap();
    let mine = fresh.offers.iter().find(|o| o.id == request).unwrap();
    assert_eq!(mine.status, "accepted");
    let assignment = mine.assignment.as_ref().unwrap();
    assert_eq!(assignment.place_address.as_deref(), Some("Rheinstraße 1"));
    assert_eq!(
        assignment.case_id.as_deref(),
        Some(case_id.to_string().as_str())
    );

    // Phone B, online, accepts too late.
    let answers_b = Arc::new(Answers::default());
    let _sub_b = b.client.subscribe(answers_b.clone());
    b.client.accept_offer(&request).await.unwrap();
    let lost = answers_b.wait_for(&request).await;
    assert_eq!(lost.outcome, Some(OfferOutcome::AlreadyTaken));
    assert_eq!(settled(&b.client, &request).await, lost);
    let b_offers = b.client.list_offers().await.unwrap();
    let theirs = b_offers.offers.iter().find(|o| o.id == request).unwrap();
    assert!(theirs.assignment.is_none());
    assert!(!has_case(&b.client, &case_id).await);

    // A decline, online.
    let second = offered_request(&server, &coordinator, &[&b.volunteer]).await;
    b.client.decline_offer(&second).await.unwrap();
    assert_eq!(
        settled(&b.client, &second).await.outcome,
        Some(OfferOutcome::Declined)
    );
    // An id with no offer to this volunteer is a final answer too, not a retry loop.
    let stranger = uuid::Uuid::new_v4().to_string();
    b.client.accept_offer(&stranger).await.unwrap();
    assert_eq!(
        settled(&b.client, &stranger).await.outcome,
        Some(OfferOutcome::NotOffered)
    );
    assert!(matches!(
        b.client.accept_offer("../devices").await,
        Err(Error::InvalidInput { .. })
    ));

    a.client.close().await.unwrap();
    b.client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_accept_survives_an_app_restart() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Neuss").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let request = offered_request(&server, &coordinator, &[&phone.volunteer]).await;
    phone.client.list_offers().await.unwrap();

    phone.client.set_network_available(false);
    phone.client.accept_offer(&request).await.unwrap();
    phone.client.close().await.unwrap();
    drop(phone.client);

    // The app is started again (with the network): the accept goes out by itself.
    let client = Client::open(config(phone.dir.path(), &server.base, phone.key))
        .await
        .unwrap();
    let cached = client.cached_offers().await.unwrap();
    assert!(
        cached.offers.iter().any(|o| o.id == request),
        "offers stored"
    );
    let answer = settled(&client, &request).await;
    let Some(OfferOutcome::Won {
        case_id: Some(case_id),
    }) = answer.outcome
    else {
        panic!("should have won: {answer:?}");
    };
    let case_id: DocumentId = case_id.parse().unwrap();
    eventually("the won case", T, || has_case(&client, &case_id)).await;

    // Nothing of the offer is readable in the store's files.
    client.close().await.unwrap();
    let bytes = store_bytes(phone.dir.path());
    for secret in [
        "Neuss-Mitte",
        "Begleitung zum Termin",
        "Rheinstraße",
        "jobcenter",
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret} in plaintext"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_keys_register_and_decrypt_what_the_server_library_encrypts() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Neuss").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let client = &phone.client;
    let endpoint = "http://127.0.0.1:9/push/phone-a";

    assert!(matches!(
        client.register_push(endpoint).await,
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        client.decrypt_push(b"anything").await,
        Err(Error::Push(PushError::NoKeys))
    ));
    assert_eq!(client.push_subscription_keys().await.unwrap(), None);
    let keys = client.create_push_subscription_keys().await.unwrap();
    assert_eq!(
        client.push_subscription_keys().await.unwrap(),
        Some(keys.clone())
    );
    let id = client.register_push(endpoint).await.unwrap();
    assert_eq!(
        client.register_push(endpoint).await.unwrap(),
        id,
        "same endpoint"
    );
    // The server checked and stored the keys.
    assert!(matches!(
        client.register_push("not a url").await,
        Err(Error::Server { status: 422, .. })
    ));

    // The server's notice, encrypted by the server's Web Push library for these keys.
    let notice = Notice {
        kind: NoticeKind::Offer,
        request_id: uuid::Uuid::new_v4().to_string(),
        topic: "behoerden".into(),
        languages: vec!["ar".into(), "de".into()],
        window_start: 1_772_633_400_000,
        window_end: 1_772_637_000_000,
    };
    let payload = serde_json::to_vec(&notice.payload()).unwrap();
    let info = web_push::SubscriptionInfo::new(endpoint, &keys.p256dh, &keys.auth);
    let mut builder = web_push::WebPushMessageBuilder::new(&info);
    builder.set_payload(web_push::ContentEncoding::Aes128Gcm, &payload);
    let body = builder.build().unwrap().payload.unwrap().content;
    let event = client.decrypt_push(&body).await.unwrap();
    assert_eq!(event.kind, PushKind::Offer);
    assert_eq!(event.request_id, notice.request_id);
    assert_eq!(event.topic, "behoerden");
    assert_eq!(event.languages, ["ar", "de"]);
    assert_eq!(
        (event.window_start, event.window_end),
        (notice.window_start, notice.window_end)
    );
    assert_eq!(event.version, 1);

    // Truncated, tampered, or for other keys: typed errors.
    assert!(matches!(
        client.decrypt_push(&body[..body.len() - 1]).await,
        Err(Error::Push(PushError::Decrypt | PushError::Truncated))
    ));
    let mut tampered = body.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        client.decrypt_push(&tampered).await,
        Err(Error::Push(PushError::Decrypt))
    ));
    client.create_push_subscription_keys().await.unwrap();
    assert!(matches!(
        client.decrypt_push(&body).await,
        Err(Error::Push(PushError::Decrypt))
    ));
    client.close().await.unwrap();
    server.stop().await;
}

/// Enrolled phones, each with push keys registered at a new test push service under its
/// name, and what that service receives.
async fn subscribed_phones<const N: usize>(
    server: &TestServer,
    coordinator: &str,
    names: [&str; N],
) -> (Received, [Phone; N]) {
    let (base, seen) = push_service().await;
    let mut phones = Vec::with_capacity(N);
    for name in names {
        let phone = enrolled_phone(server, coordinator).await;
        phone.client.create_push_subscription_keys().await.unwrap();
        let endpoint = format!("{base}/push/{name}");
        phone.client.register_push(&endpoint).await.unwrap();
        phones.push(phone);
    }
    let Ok(phones) = phones.try_into() else {
        unreachable!("one phone per name")
    };
    (seen, phones)
}

/// What the test push service received: (subscription name, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A push service on loopback: records the body of every POST and answers 201.
async fn push_service() -> (String, Received) {
    let seen: Received = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/push/{name}",
        axum::routing::post(
            move |axum::extract::Path(name): axum::extract::Path<String>,
                  body: axum::body::Bytes| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((name, body.to_vec()));
                    axum::http::StatusCode::CREATED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_push_reaches_the_phone_and_decrypts() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Neuss").await;
    let (seen, [a, other]) = subscribed_phones(&server, &coordinator, ["a", "other"]).await;
    let request = offered_request(&server, &coordinator, &[&a.volunteer]).await;
    eventually("the offer push at the push service", T, || {
        let done = !seen.lock().unwrap().is_empty();
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushes = seen.lock().unwrap().clone();
    assert!(
        pushes.iter().all(|(name, _)| name == "a"),
        "only the offered volunteer's phone"
    );
    let event = a.client.decrypt_push(&pushes[0].1).await.unwrap();
    assert_eq!(event.kind, PushKind::Offer);
    assert_eq!(event.request_id, request);
    assert_eq!(event.topic, "behoerden");
    assert_eq!(event.languages, ["ar"]);
    assert!(matches!(
        other.client.decrypt_push(&pushes[0].1).await,
        Err(Error::Push(PushError::Decrypt))
    ));
    a.client.close().await.unwrap();
    other.client.close().await.unwrap();
    server.stop().await;
}

/// Everything the push service received at endpoint `name`, decrypted by `client`; every
/// body there must decrypt with that phone's keys.
async fn pushes_to(seen: &Received, client: &Client, name: &str) -> Vec<PushEvent> {
    let bodies: Vec<Vec<u8>> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, body)| body.clone())
        .collect();
    let mut events = Vec::new();
    for body in bodies {
        events.push(client.decrypt_push(&body).await.unwrap());
    }
    events
}

/// Waits until endpoint `name` has received a push that `client` decrypts to a `kind`
/// notice for `request_id`; returns everything that endpoint received, decrypted.
async fn await_push(
    seen: &Received,
    client: &Client,
    name: &str,
    request_id: &str,
    kind: PushKind,
) -> Vec<PushEvent> {
    let until = tokio::time::Instant::now() + T;
    loop {
        let events = pushes_to(seen, client, name).await;
        if events
            .iter()
            .any(|e| e.kind == kind && e.request_id == request_id)
        {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no {kind:?} push for {request_id} at {name:?} within {T:?}; it got {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The acceptance, push side: the second volunteer's accept loses and that
/// volunteer's phone gets the "taken" push; the winner's phone gets none. The server
/// queues "taken" when the first accept wins, for every volunteer still holding the offer
/// (in the winner's transaction), not in answer to the late accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_gets_the_taken_push_and_the_winner_does_not() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Neuss").await;
    let (seen, [a, b]) = subscribed_phones(&server, &coordinator, ["a", "b"]).await;
    let request = offered_request(&server, &coordinator, &[&a.volunteer, &b.volunteer]).await;

    // Each phone is told of the offer at its own endpoint.
    for (phone, name) in [(&a, "a"), (&b, "b")] {
        let events = await_push(&seen, &phone.client, name, &request, PushKind::Offer).await;
        let offer = events.iter().find(|e| e.kind == PushKind::Offer).unwrap();
        assert_eq!(offer.topic, "behoerden");
        assert_eq!(offer.languages, ["ar"]);
    }

    // Phone A accepts and wins.
    a.client.accept_offer(&request).await.unwrap();
    let won = settled(&a.client, &request).await;
    assert!(
        matches!(won.outcome, Some(OfferOutcome::Won { case_id: Some(_) })),
        "phone A should have won: {won:?}"
    );

    // Phone B accepts too late and loses ...
    b.client.accept_offer(&request).await.unwrap();
    assert_eq!(
        settled(&b.client, &request).await.outcome,
        Some(OfferOutcome::AlreadyTaken)
    );
    // ... and its endpoint receives the "taken" push, which phone B decrypts.
    let at_b = await_push(&seen, &b.client, "b", &request, PushKind::Taken).await;
    let taken = at_b.iter().find(|e| e.kind == PushKind::Taken).unwrap();
    assert_eq!(taken.request_id, request);
    assert_eq!(taken.topic, "behoerden");
    assert_eq!(taken.languages, ["ar"]);
    assert_eq!(taken.version, 1);
    assert_eq!(taken.window_end - taken.window_start, HOUR);

    // Every decision above has committed (each answer settled on the server's reply), so
    // once the outbox is empty every push the server queued has reached the push service.
    eventually("the push outbox drained", T, || async {
        server.store.pending_pushes().await.unwrap() == 0
    })
    .await;
    let pushes = seen.lock().unwrap().clone();
    assert!(
        pushes.iter().all(|(name, _)| name == "a" || name == "b"),
        "only the two phones' endpoints"
    );
    // Phone A got the offer and nothing else: no "taken" for the request it won. (The
    // worker delivers at least once, so a repeat of the offer would be allowed.)
    let at_a = pushes_to(&seen, &a.client, "a").await;
    assert!(!at_a.is_empty());
    assert!(
        at_a.iter()
            .all(|e| e.kind == PushKind::Offer && e.request_id == request),
        "phone A: only the offer, got {at_a:?}"
    );
    // Phone B got the offer and the "taken", nothing more.
    let at_b = pushes_to(&seen, &b.client, "b").await;
    assert!(
        at_b.iter()
            .all(|e| e.request_id == request
                && (e.kind == PushKind::Offer || e.kind == PushKind::Taken)),
        "phone B: the offer and \"taken\", got {at_b:?}"
    );
    assert!(at_b.iter().any(|e| e.kind == PushKind::Offer));
    // The "taken" push is for phone B's keys alone.
    for (_, body) in pushes.iter().filter(|(name, _)| name == "b") {
        if b.client.decrypt_push(body).await.unwrap().kind == PushKind::Taken {
            assert!(
                matches!(
                    a.client.decrypt_push(body).await,
                    Err(Error::Push(PushError::Decrypt))
                ),
                "phone A must not read phone B's \"taken\" push"
            );
        }
    }

    a.client.close().await.unwrap();
    b.client.close().await.unwrap();
    server.stop().await;
}

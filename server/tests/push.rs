//! Web Push end to end on loopback: subscriptions over the REST API, the outbox and its
//! worker against a scripted test push service (a small axum server in the test), with
//! the payload decrypted by an independent RFC 8291 implementation here and, for the
//! independent check, by Python's `http-ece` and `cryptography` (tests/push/).
//! Every test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::push_service::{Answer, PushService, Received};
use common::webpush::Subscriber;
use lotse_server::push::{self, Notice, NoticeKind};
use lotse_server::store::PushOwner;
use lotse_testkit::fixtures::{intake_fields, request_body, window, with_fields};
use lotse_testkit::{Backend, TestServer, eventually, now_ms, on_both_backends};
use p256::ecdsa::signature::Verifier;
use reqwest::Method;
use serde_json::{Value, json};

const SUBJECT: &str = "mailto:admin@lotse.invalid";
const HOUR_MS: i64 = 3_600_000;

// ---- helpers ------------------------------------------------------------------------

fn notice(kind: NoticeKind, request_id: &str) -> Notice {
    let start = now_ms() + 2 * HOUR_MS;
    Notice {
        kind,
        request_id: request_id.into(),
        topic: "behoerden".into(),
        languages: vec!["ar".into(), "fa".into()],
        window_start: start,
        window_end: start + HOUR_MS,
    }
}

/// A write transaction as the store begins them: on SQLite `BEGIN IMMEDIATE`, so it
/// queues behind the worker's instead of failing to upgrade a read lock.
async fn begin_write(s: &TestServer) -> sqlx::Transaction<'static, sqlx::Any> {
    match s.store.backend() {
        lotse_server::store::Backend::Sqlite => {
            s.store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap()
        }
        lotse_server::store::Backend::Postgres => s.store.pool().begin().await.unwrap(),
    }
}

/// Queues a notice in a transaction of our own, as the requests code does in its own.
async fn enqueue(s: &TestServer, volunteers: &[&str], notice: &Notice) -> u64 {
    let ids: Vec<String> = volunteers.iter().map(|v| (*v).to_owned()).collect();
    let mut tx = begin_write(s).await;
    let n = push::enqueue(&mut tx, &ids, notice).await.unwrap();
    tx.commit().await.unwrap();
    s.state.push.wake();
    n
}

async fn pending(s: &TestServer) -> i64 {
    s.store.pending_pushes().await.unwrap()
}

/// A volunteer with an enrolled device: (volunteer id, device id, device token).
async fn volunteer_with_device(
    s: &TestServer,
    token: &str,
    name: &str,
) -> (String, String, String) {
    let v = s.volunteer(token, name, &["ar", "de"]).await;
    let (d, t) = s.device(token, &v, &format!("Telefon von {name}")).await;
    (v, d, t)
}

async fn subscribe(s: &TestServer, token: &str, body: Value) -> String {
    let (status, res) = s
        .post("/api/v1/push/subscriptions", Some(token), body)
        .await;
    assert_eq!(status, 201, "{res}");
    res["id"].as_str().unwrap().to_owned()
}

/// Subscribes a new browser or phone at the push service's endpoint `name`, for a test
/// that counts what arrives there without reading it.
async fn subscribe_at(s: &TestServer, token: &str, service: &PushService, name: &str) -> String {
    subscribe(
        s,
        token,
        Subscriber::new().subscription(&service.endpoint(name)),
    )
    .await
}

/// Removes a subscription as a phone or browser does (`{"endpoint"}` or `{"id"}`): the
/// status.
async fn unsubscribe(s: &TestServer, token: &str, body: Value) -> u16 {
    let path = "/api/v1/push/subscriptions";
    s.request(Method::DELETE, path, Some(token), Some(body))
        .await
        .0
}

/// Checks the VAPID `Authorization` header: `vapid t=<JWT>, k=<our key>`, an ES256
/// signature by that key, the push service's origin (with port) as audience, our
/// subject, and an expiry within 24 hours.
fn check_vapid(header: &str, server_key: &str, origin: &str) {
    let params = header.strip_prefix("vapid ").expect("vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in params.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    let (t, k) = (t.expect("t="), k.expect("k="));
    assert_eq!(k, server_key);
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    let head: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(head["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        claims["aud"], origin,
        "audience is the origin with its port"
    );
    assert_eq!(claims["sub"], SUBJECT);
    let now = now_ms() / 1000;
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp} now {now}");
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
    let sig =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("JWT signed with the server's VAPID key");
}

async fn vapid_key(s: &TestServer) -> String {
    let (status, body) = s.get("/api/v1/push/vapid-public-key", None).await;
    assert_eq!(status, 200, "{body}");
    body["public_key"].as_str().unwrap().to_owned()
}

// ---- the tests ----------------------------------------------------------------------

async fn vapid_key_is_public_and_kept(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let key = vapid_key(&s).await;
    let point = URL_SAFE_NO_PAD.decode(&key).unwrap();
    assert_eq!(point.len(), 65);
    assert_eq!(point[0], 4);
    p256::PublicKey::from_sec1_bytes(&point).unwrap();
    let db = s.stop_keeping_db().await;
    let s = TestServer::start_on(db).await;
    assert_eq!(
        vapid_key(&s).await,
        key,
        "the key pair is kept in the database"
    );
    s.stop().await;
}

async fn subscriptions_are_checked_and_owned(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let (_, coordinator) = s.new_org("Lotsen Dormagen").await;
    let (_, other_org) = s.new_org("Lotsen Grevenbroich").await;
    let (_, device_id, device) = volunteer_with_device(&s, &coordinator, "Amira").await;
    let phone = Subscriber::new();
    let endpoint = service.endpoint("phone");
    let path = "/api/v1/push/subscriptions";

    let (status, _) = s.post(path, None, phone.subscription(&endpoint)).await;
    assert_eq!(status, 401);
    let id = subscribe(&s, &device, phone.subscription(&endpoint)).await;
    // Registering again refreshes it.
    let (status, again) = s
        .post(path, Some(&device), phone.subscription(&endpoint))
        .await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));

    // Bad input: clear 4xx errors naming the field.
    let bad = |endpoint: &str, p256dh: &str, auth: &str| json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}});
    let good = phone.subscription(&endpoint);
    let (p256dh, auth) = (
        good["keys"]["p256dh"].as_str().unwrap(),
        good["keys"]["auth"].as_str().unwrap(),
    );
    let long = format!("{}/{}", service.endpoint("x"), "a".repeat(2100));
    let off_curve = URL_SAFE_NO_PAD.encode([&[4u8][..], &[7u8; 64][..]].concat());
    for (body, field) in [
        (bad("ftp://127.0.0.1/push/x", p256dh, auth), "endpoint"),
        (bad("kein Link", p256dh, auth), "endpoint"),
        (bad(&long, p256dh, auth), "endpoint"),
        (bad("http://user:pw@127.0.0.1/x", p256dh, auth), "endpoint"),
        (bad(&endpoint, &p256dh[..40], auth), "keys.p256dh"),
        (bad(&endpoint, &off_curve, auth), "keys.p256dh"),
        (bad(&endpoint, p256dh, "AAAA"), "keys.auth"),
        (bad(&endpoint, p256dh, "n!cht base64"), "keys.auth"),
    ] {
        let (status, res) = s.post(path, Some(&device), body).await;
        assert_eq!(status, 422, "{res}");
        assert_eq!(res["error"]["field"], field, "{res}");
    }
    let (status, res) = s
        .post(path, Some(&device), json!({"endpoint": endpoint}))
        .await;
    assert_eq!(
        (status, res["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );

    // A coordinator's browser posts PushSubscription.toJSON() as it is.
    let browser = Subscriber::new();
    let mut body = browser.subscription(&service.endpoint("browser"));
    body["expirationTime"] = Value::Null;
    let browser_id = subscribe(&s, &coordinator, body).await;

    // Nobody removes someone else's subscription; it looks like a missing one.
    for token in [&coordinator, &other_org] {
        assert_eq!(
            unsubscribe(&s, token, json!({"endpoint": endpoint})).await,
            404
        );
        let (status, _) = s
            .request(
                reqwest::Method::DELETE,
                &format!("{path}/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 404);
    }
    // In order: both ways at once, the phone's own, that again, the browser's by id.
    for (token, body, status) in [
        (&device, json!({"endpoint": endpoint, "id": id}), 400),
        (&device, json!({"endpoint": endpoint}), 204),
        (&device, json!({"endpoint": endpoint}), 404),
        (&coordinator, json!({"id": browser_id}), 204),
    ] {
        assert_eq!(unsubscribe(&s, token, body.clone()).await, status, "{body}");
    }

    // A device keeps its newest subscriptions only.
    for i in 0..lotse_server::store::MAX_SUBSCRIPTIONS_PER_OWNER + 3 {
        subscribe(
            &s,
            &device,
            phone.subscription(&service.endpoint(&format!("n{i}"))),
        )
        .await;
    }
    assert_eq!(
        s.store
            .push_subscription_count(PushOwner::Device(&device_id))
            .await
            .unwrap(),
        lotse_server::store::MAX_SUBSCRIPTIONS_PER_OWNER as i64
    );

    let (_, openapi) = s.get("/openapi.json", None).await;
    for p in [
        "/api/v1/push/vapid-public-key",
        "/api/v1/push/subscriptions",
        "/api/v1/push/subscriptions/{id}",
    ] {
        assert!(
            openapi["paths"][p].is_object(),
            "{p} missing in openapi.json"
        );
    }
    s.stop().await;
}

async fn outbox_retries_delivers_once_and_forgets_gone_subscriptions(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let worker = s.state.push.clone().spawn_worker();
    let server_key = vapid_key(&s).await;
    let (_, coordinator) = s.new_org("Lotsen Kaarst").await;
    let (amira, _, amira_token) = volunteer_with_device(&s, &coordinator, "Amira").await;
    let (bilal, bilal_device, bilal_token) = volunteer_with_device(&s, &coordinator, "Bilal").await;
    let (carla, _, _) = volunteer_with_device(&s, &coordinator, "Carla").await;
    let phone = Subscriber::new();
    subscribe(
        &s,
        &amira_token,
        phone.subscription(&service.endpoint("amira")),
    )
    .await;
    subscribe_at(&s, &bilal_token, &service, "bilal").await;
    // A revoked device gets nothing; a volunteer without a subscription neither.
    let (status, _) = s
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{bilal_device}/revoke"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // The push service fails once, then accepts.
    service.script(&[Answer::Status(500), Answer::Status(201)]);
    let request_id = uuid::Uuid::new_v4().to_string();
    let offer = notice(NoticeKind::Offer, &request_id);
    let queued_at = now_ms();
    assert_eq!(enqueue(&s, &[&amira, &bilal, &carla], &offer).await, 1);
    eventually(
        "the retried offer to be delivered",
        Duration::from_secs(30),
        || async { (pending(&s).await == 0).then_some(()) },
    )
    .await;
    let got = service.received();
    assert_eq!(
        got.len(),
        2,
        "one failure, one delivery, nothing more: {got:?}"
    );
    assert_eq!(got[0].answered, Some(500));
    assert_eq!(got[1].answered, Some(201));
    assert!(got.iter().all(|r| r.path == "/push/amira"));
    for r in &got {
        assert_eq!(r.header("content-encoding"), "aes128gcm");
        assert_eq!(r.header("urgency"), "high");
        assert_eq!(
            r.header("topic"),
            push::push_topic(&request_id, NoticeKind::Offer)
        );
        assert!(r.header("topic").len() <= 32);
        // The offer lives until the request starts (two hours from now).
        let ttl: i64 = r.header("ttl").parse().unwrap();
        let until_start = (offer.window_start - queued_at) / 1000;
        assert!(
            ttl <= until_start + 1 && ttl > until_start - 60,
            "ttl {ttl}"
        );
        assert!(r.body.len() < 4096);
        check_vapid(r.header("authorization"), &server_key, &service.origin());
        let payload: Value = serde_json::from_slice(&phone.decrypt(&r.body)).unwrap();
        assert_eq!(
            payload,
            json!({
                "v": 1,
                "kind": "offer",
                "request_id": request_id,
                "topic": "behoerden",
                "languages": ["ar", "fa"],
                "window_start": offer.window_start,
                "window_end": offer.window_end,
            })
        );
    }

    // The subscription is gone at the push service: it is removed, nothing is retried.
    service.script(&[Answer::Status(410)]);
    let taken = notice(NoticeKind::Taken, &request_id);
    assert_eq!(enqueue(&s, &[&amira], &taken).await, 1);
    let amira_device = {
        let (_, devices) = s
            .get(
                &format!("/api/v1/volunteers/{amira}/devices"),
                Some(&coordinator),
            )
            .await;
        devices[0]["id"].as_str().unwrap().to_owned()
    };
    eventually(
        "the gone subscription to be removed",
        Duration::from_secs(30),
        || async {
            let left = s
                .store
                .push_subscription_count(PushOwner::Device(&amira_device))
                .await
                .unwrap();
            (left == 0 && pending(&s).await == 0).then_some(())
        },
    )
    .await;
    let got = service.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2].answered, Some(410));
    assert_eq!(got[2].header("urgency"), "normal");
    let ttl: i64 = got[2].header("ttl").parse().unwrap();
    assert!(ttl <= 3600 && ttl > 3500, "ttl {ttl}");
    let payload: Value = serde_json::from_slice(&phone.decrypt(&got[2].body)).unwrap();
    assert_eq!(payload["kind"], "taken");
    assert_eq!(
        enqueue(&s, &[&amira], &notice(NoticeKind::Cancelled, &request_id)).await,
        0,
        "nothing is queued for a removed subscription"
    );
    worker.abort();
    s.stop().await;
}

async fn a_repeated_notice_replaces_the_pending_one(backend: Backend) {
    // No worker runs: the rows stay pending.
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let (_, coordinator) = s.new_org("Lotsen Meerbusch").await;
    let (v, _, token) = volunteer_with_device(&s, &coordinator, "Dilan").await;
    subscribe_at(&s, &token, &service, "a").await;
    subscribe_at(&s, &token, &service, "b").await;
    let request_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        enqueue(&s, &[&v], &notice(NoticeKind::Offer, &request_id)).await,
        2
    );
    assert_eq!(
        enqueue(&s, &[&v], &notice(NoticeKind::Offer, &request_id)).await,
        2
    );
    assert_eq!(pending(&s).await, 2, "one row per subscription and topic");
    assert_eq!(
        enqueue(&s, &[&v], &notice(NoticeKind::Taken, &request_id)).await,
        2
    );
    assert_eq!(pending(&s).await, 4);
    assert_eq!(
        enqueue(&s, &[], &notice(NoticeKind::Taken, &request_id)).await,
        0
    );
    // A rolled-back decision queues nothing.
    let mut tx = begin_write(&s).await;
    let other = notice(NoticeKind::Offer, "another-request");
    assert_eq!(
        push::enqueue(&mut tx, std::slice::from_ref(&v), &other)
            .await
            .unwrap(),
        2
    );
    tx.rollback().await.unwrap();
    assert_eq!(pending(&s).await, 4);
    s.stop().await;
}

async fn a_send_cut_short_by_a_restart_is_delivered_after_it(backend: Backend) {
    let service = PushService::start().await;
    let s = TestServer::start_without_push_worker(backend).await;
    let worker = s.state.push.clone().spawn_worker();
    let (_, coordinator) = s.new_org("Lotsen Jüchen").await;
    let (v, _, token) = volunteer_with_device(&s, &coordinator, "Emre").await;
    let phone = Subscriber::new();
    subscribe(&s, &token, phone.subscription(&service.endpoint("emre"))).await;

    // The push service takes the request and never answers; the server goes down.
    service.script(&[Answer::Hang]);
    let request_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        enqueue(&s, &[&v], &notice(NoticeKind::Offer, &request_id)).await,
        1
    );
    eventually("the send to start", Duration::from_secs(10), || async {
        (!service.received().is_empty()).then_some(())
    })
    .await;
    worker.abort();
    let db = s.stop_keeping_db().await;

    // A new server on the same database sends it again (on PostgreSQL once the first
    // claim's lease has lapsed, since another instance might still be sending it).
    let s = TestServer::start_on(db).await;
    let worker = s.state.push.clone().spawn_worker();
    eventually(
        "the interrupted push to be delivered",
        Duration::from_secs(90),
        || async { (pending(&s).await == 0).then_some(()) },
    )
    .await;
    let got = service.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].answered, None);
    assert_eq!(got[1].answered, Some(201));
    assert_eq!(
        got[0].header("topic"),
        got[1].header("topic"),
        "a repeat replaces"
    );
    assert_eq!(phone.decrypt(&got[0].body), phone.decrypt(&got[1].body));
    worker.abort();
    s.stop().await;
}

/// Many decisions queueing notices for the same people at once, while the worker
/// claims and sends: none of them fails (no lock waits that turn into deadlocks on
/// PostgreSQL), and every subscription gets every notice.
async fn notices_queued_concurrently_never_fail_the_decision(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let worker = s.state.push.clone().spawn_worker();
    let (_, coordinator) = s.new_org("Lotsen Rommerskirchen").await;
    let (a, _, a_token) = volunteer_with_device(&s, &coordinator, "Gül").await;
    let (b, _, b_token) = volunteer_with_device(&s, &coordinator, "Hanna").await;
    for (token, name) in [
        (&a_token, "a1"),
        (&a_token, "a2"),
        (&b_token, "b1"),
        (&b_token, "b2"),
    ] {
        subscribe_at(&s, token, &service, name).await;
    }
    let requests: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let kinds = [NoticeKind::Offer, NoticeKind::Taken, NoticeKind::Cancelled];
    let runs = (0..24).map(|i| {
        let (s, requests, a, b) = (&s, &requests, &a, &b);
        async move {
            let people = if i % 2 == 0 {
                vec![a.clone(), b.clone()]
            } else {
                vec![b.clone(), a.clone()]
            };
            let n = notice(kinds[i % 3], &requests[(i / 3) % 3]);
            let mut tx = begin_write(s).await;
            let queued = push::enqueue(&mut tx, &people, &n).await?;
            // Hold the rows a moment, as a real decision does with more work to do.
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.commit().await?;
            s.state.push.wake();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(queued)
        }
    });
    for result in futures_util::future::join_all(runs).await {
        assert_eq!(result.unwrap(), 4);
    }
    eventually(
        "every notice to be delivered",
        Duration::from_secs(60),
        || async { (pending(&s).await == 0).then_some(()) },
    )
    .await;
    let delivered: std::collections::BTreeSet<(String, String)> = service
        .received()
        .iter()
        .filter(|r| r.answered == Some(201))
        .map(|r| (r.path.clone(), r.header("topic").to_owned()))
        .collect();
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..24 {
        for name in ["a1", "a2", "b1", "b2"] {
            expected.insert((
                format!("/push/{name}"),
                push::push_topic(&requests[(i / 3) % 3], kinds[i % 3]),
            ));
        }
    }
    assert_eq!(delivered, expected);
    worker.abort();
    s.stop().await;
}

/// A notice queued while its subscription was being deleted leaves an outbox row
/// without a subscription; the worker discards it without sending anything.
async fn a_row_whose_subscription_vanished_is_discarded_unsent(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let (_, coordinator) = s.new_org("Lotsen Willich").await;
    let (v, _, token) = volunteer_with_device(&s, &coordinator, "Ivana").await;
    subscribe_at(&s, &token, &service, "ivana").await;
    let request_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        enqueue(&s, &[&v], &notice(NoticeKind::Offer, &request_id)).await,
        1
    );
    sqlx::query("DELETE FROM push_subscriptions")
        .execute(s.store.pool())
        .await
        .unwrap();
    assert_eq!(pending(&s).await, 1);
    let worker = s.state.push.clone().spawn_worker();
    eventually(
        "the orphan to be discarded",
        Duration::from_secs(30),
        || async { (pending(&s).await == 0).then_some(()) },
    )
    .await;
    assert!(service.received().is_empty());
    worker.abort();
    s.stop().await;
}

/// The independent check: Python's `http-ece` decrypts what the server sent and
/// `cryptography` verifies the VAPID JWT (tests/push/check_push.py).
async fn python_decrypts_and_verifies_what_was_sent(backend: Backend) {
    let s = TestServer::start_without_push_worker(backend).await;
    let service = PushService::start().await;
    let worker = s.state.push.clone().spawn_worker();
    let (_, coordinator) = s.new_org("Lotsen Korschenbroich").await;
    let (v, _, token) = volunteer_with_device(&s, &coordinator, "Farah").await;
    let phone = Subscriber::new();
    subscribe(&s, &token, phone.subscription(&service.endpoint("farah"))).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let notices = [
        notice(NoticeKind::Offer, &request_id),
        notice(NoticeKind::Cancelled, &request_id),
    ];
    for n in &notices {
        assert_eq!(enqueue(&s, &[&v], n).await, 1);
    }
    eventually("both pushes", Duration::from_secs(30), || async {
        (pending(&s).await == 0).then_some(())
    })
    .await;
    worker.abort();
    let mut got = service.received();
    assert_eq!(got.len(), 2);
    // Arrival order is the sender's business; the check compares kinds in this order.
    got.sort_by_key(|r| {
        let payload: Value = serde_json::from_slice(&phone.decrypt(&r.body)).unwrap();
        payload["kind"] != "offer"
    });
    let requests: Vec<Value> = got
        .iter()
        .map(|r| {
            let payload: Value = serde_json::from_slice(&phone.decrypt(&r.body)).unwrap();
            json!({"headers": r.headers, "body": URL_SAFE_NO_PAD.encode(&r.body), "expected": payload})
        })
        .collect();
    let capture = json!({
        "vapid_public_key": vapid_key(&s).await,
        "subject": SUBJECT,
        "push_origin": service.origin(),
        "subscriber": {
            "private_key": URL_SAFE_NO_PAD.encode(phone.secret.to_bytes()),
            "public_key": URL_SAFE_NO_PAD.encode(phone.public_bytes()),
            "auth": URL_SAFE_NO_PAD.encode(phone.auth),
        },
        "requests": requests,
        "expected_kinds": ["offer", "cancelled"],
    });
    let file =
        std::env::temp_dir().join(format!("lotse-push-capture-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec_pretty(&capture).unwrap()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("LOTSE_PUSH_PYTHON").unwrap_or_else(|_| {
        let venv = root.join("tests/push/.venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let out = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/push/check_push.py",
        ])
        .current_dir(&root)
        .env("LOTSE_PUSH_CAPTURE", &file)
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {python} (see tests/push/README.md): {e}"));
    let _ = std::fs::remove_file(&file);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Python check failed (install: see tests/push/README.md):\n{report}"
    );
    assert!(
        report.contains(" passed") && !report.contains("skipped"),
        "{report}"
    );
    s.stop().await;
}

/// The desk hears of what happens without it: a request from the intake form and a
/// request a volunteer accepted reach the browsers of that organisation's coordinators,
/// decryptable and without names or places. What a coordinator entered themselves, and
/// anything of another organisation, does not.
async fn coordinators_hear_of_intake_requests_and_accepts(backend: Backend) {
    let s = TestServer::start(backend).await;
    let svc = PushService::start().await;
    let (_, desk) = s.new_org("Integrationslotsen Neuss").await;
    let (_, elsewhere) = s.new_org("Lotsen Anderswo").await;
    let desk_browser = Subscriber::new();
    subscribe(&s, &desk, desk_browser.subscription(&svc.endpoint("desk"))).await;
    let other_browser = Subscriber::new();
    subscribe(
        &s,
        &elsewhere,
        other_browser.subscription(&svc.endpoint("elsewhere")),
    )
    .await;
    let (volunteer, _, phone) = volunteer_with_device(&s, &desk, "Amira").await;
    subscribe_at(&s, &phone, &svc, "phone").await;

    // Entered at the desk: no notice for the desk.
    let (starts, ends) = window(3);
    let entered = s
        .post_request(
            &desk,
            with_fields(
                request_body("arbeit", &["ar"], &starts, &ends),
                json!({
                    "place_address": "Hauptstraße 1",
                    "urgency": "normal", "description": "Eingliederungsvereinbarung"
                }),
            ),
        )
        .await;

    // From the intake form: news for the desk.
    let res = s
        .post_intake_form("integrationslotsen-neuss", &intake_fields(&["uk"]))
        .await;
    assert_eq!(res.status(), 200);
    let (_, list) = s.get("/api/v1/requests", Some(&desk)).await;
    let intake = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "intake")
        .expect("the intake request")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A volunteer accepts the desk's request: news for the desk again.
    s.offer_to(&desk, &entered, &[&volunteer]).await;
    let (status, _) = s.accept(&phone, &entered).await;
    assert_eq!(status, 200);

    // Everything queued has gone out; then what each one got is final.
    eventually("the outbox to empty", Duration::from_secs(20), || async {
        (pending(&s).await == 0 && svc.received().len() >= 3).then_some(())
    })
    .await;
    let received = svc.received();
    let to = |name: &str| -> Vec<&Received> {
        received
            .iter()
            .filter(|r| r.path == format!("/push/{name}"))
            .collect()
    };
    assert!(to("elsewhere").is_empty(), "another organisation's desk");
    assert_eq!(to("phone").len(), 1, "the volunteer's offer");
    let desk_got: Vec<Value> = to("desk")
        .iter()
        .map(|r| {
            assert_eq!(r.header("urgency"), "normal");
            let plain = desk_browser.decrypt(&r.body);
            let text = String::from_utf8(plain).unwrap();
            for private in [
                "Grundschule",
                "Nordstadt",
                "Schulweg",
                "M.S.",
                "Jobcenter",
                "Hauptstraße",
                "A.K.",
            ] {
                assert!(!text.contains(private), "{private} in {text}");
            }
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    // Sorted by kind: two queued in the same millisecond may go out in either order.
    let mut kinds: Vec<(&str, &str, &str)> = desk_got
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap(),
                p["request_id"].as_str().unwrap(),
                p["topic"].as_str().unwrap(),
            )
        })
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("accepted", entered.as_str(), "arbeit"),
            ("new_request", intake.as_str(), "bildung")
        ],
        "only the intake request and the accept"
    );
    s.stop().await;
}

/// Waits until the outbox is empty and `name` heard at least `count` notices, then
/// asserts exactly `count`. The outbox is drained in order, so once it is empty and the
/// newest notice arrived, anything wrongly queued before it would have arrived too.
async fn heard_exactly(s: &TestServer, svc: &PushService, name: &str, count: usize, why: &str) {
    let path = format!("/push/{name}");
    let heard = || svc.received().iter().filter(|r| r.path == path).count();
    eventually(why, Duration::from_secs(20), || async {
        (pending(s).await == 0 && heard() >= count).then_some(())
    })
    .await;
    assert_eq!(heard(), count, "{why}");
}

/// A coordinator's browser hears of requests only while the login that turned
/// notifications on lasts: after logging out (a shared office computer) nothing more
/// arrives and the subscription is gone; the next login in that browser registers it
/// again and it is heard again; logging out everywhere ends it too, and so does a
/// login that expires without a logout.
async fn a_coordinators_notices_end_with_the_login(backend: Backend) {
    let s = TestServer::start(backend).await;
    let svc = PushService::start().await;
    let (org, _) = s
        .coordinator(
            "Integrationslotsen Grevenbroich",
            "desk@grevenbroich.example",
            "ein langes Passwort 42",
        )
        .await;
    let slug = org.slug.clone();
    let login = || s.login("desk@grevenbroich.example", "ein langes Passwort 42");
    let browser = Subscriber::new();
    let body = browser.subscription(&svc.endpoint("desk"));
    let (_, me) = s.get("/api/v1/me", Some(&login().await)).await;
    let coordinator_id = me["coordinator_id"].as_str().unwrap().to_owned();
    let subscriptions = || async {
        s.store
            .push_subscription_count(PushOwner::Coordinator {
                id: &coordinator_id,
                session: "",
            })
            .await
            .unwrap()
    };
    let intake = || async {
        let res = s.post_intake_form(&slug, &intake_fields(&["uk"])).await;
        assert_eq!(res.status(), 200);
    };

    // On, and heard.
    let first = login().await;
    subscribe(&s, &first, body.clone()).await;
    intake().await;
    heard_exactly(&s, &svc, "desk", 1, "the first notice").await;

    // Logged out: the subscription goes with the login, and a new request is queued for
    // nobody.
    let (status, _) = s
        .request(Method::POST, "/api/v1/auth/logout", Some(&first), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(subscriptions().await, 0);
    intake().await;
    assert_eq!(pending(&s).await, 0, "nothing queued after the logout");

    // Another login in the same browser registers the same endpoint again: heard again.
    let second = login().await;
    subscribe(&s, &second, body.clone()).await;
    intake().await;
    heard_exactly(
        &s,
        &svc,
        "desk",
        2,
        "one notice before the logout, one after the new login",
    )
    .await;

    // A second browser of the same coordinator, then logout everywhere: both silent.
    let elsewhere = login().await;
    subscribe_at(&s, &elsewhere, &svc, "desk-home").await;
    assert_eq!(subscriptions().await, 2);
    let (status, _) = s
        .request(Method::POST, "/api/v1/auth/logout-all", Some(&second), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(subscriptions().await, 0);
    intake().await;
    assert_eq!(
        pending(&s).await,
        0,
        "nothing queued after logging out everywhere"
    );

    // The home browser logs in again; its notice comes, the office browser stays silent.
    let home = login().await;
    subscribe_at(&s, &home, &svc, "desk-home").await;
    intake().await;
    heard_exactly(&s, &svc, "desk-home", 1, "the home browser's notice").await;
    heard_exactly(
        &s,
        &svc,
        "desk",
        2,
        "the office browser heard nothing after logout-all",
    )
    .await;

    // The home login expires without a logout: its subscription row stays (nobody swept
    // it), but nothing is queued for it any more.
    sqlx::query("UPDATE coordinator_sessions SET expires_at = 0 WHERE coordinator_id = $1")
        .bind(&coordinator_id)
        .execute(s.store.pool())
        .await
        .unwrap();
    assert_eq!(subscriptions().await, 1);
    intake().await;
    assert_eq!(pending(&s).await, 0, "nothing queued for an expired login");
    let fresh = login().await;
    // The same browser's endpoint, known already: refreshed (200) and moved to this login.
    let (status, res) = s
        .post(
            "/api/v1/push/subscriptions",
            Some(&fresh),
            Subscriber::new().subscription(&svc.endpoint("desk-home")),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    intake().await;
    heard_exactly(
        &s,
        &svc,
        "desk-home",
        2,
        "nothing while expired, then the fresh login's notice",
    )
    .await;
    s.stop().await;
}

on_both_backends!(
    vapid_key_is_public_and_kept,
    subscriptions_are_checked_and_owned,
    outbox_retries_delivers_once_and_forgets_gone_subscriptions,
    a_repeated_notice_replaces_the_pending_one,
    a_send_cut_short_by_a_restart_is_delivered_after_it,
    notices_queued_concurrently_never_fail_the_decision,
    a_row_whose_subscription_vanished_is_discarded_unsent,
    python_decrypts_and_verifies_what_was_sent,
    coordinators_hear_of_intake_requests_and_accepts,
    a_coordinators_notices_end_with_the_login,
);

//! Access that shrinks: a volunteer who leaves, a volunteer taken off a case, a
//! coordinator who logs out, and the same across two server instances; `/sync` takes no
//! session cookie and no foreign page; the organisation's settings and the device lease.
//! On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::sync_client::SyncClient;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use lotse_testkit::fixtures::{request_body, window};
use lotse_testkit::{Backend, TestServer, connect_sync, on_both_backends};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An organisation whose case "F.K." Amira works on; Olena is on no case yet.
struct World {
    s: TestServer,
    org: String,
    coordinator: String,
    amira: String,
    olena: String,
    case: DocumentId,
}

async fn world(backend: Backend) -> World {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Zugang").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar", "de"]).await;
    let olena = s.volunteer(&coordinator, "Olena", &["uk", "de"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    World {
        s,
        org,
        coordinator,
        amira,
        olena,
        case,
    }
}

/// What the issue promises: an open socket closes within 2 s of the change.
const CLOSED_WITHIN: Duration = Duration::from_secs(2);
/// How long a socket stays silent before a test believes nothing more is coming: far
/// longer than a frame already sent takes on loopback.
const QUIET: Duration = Duration::from_millis(400);

fn add_note(doc: &mut Automerge, text: &str) {
    let note = NewNote {
        author: "coordinator".into(),
        text: text.into(),
    };
    CaseDoc::add_note(doc, &note, 1_772_633_400_000).unwrap();
}

/// Reads until the server closes the socket, which must happen within `limit`; returns
/// the messages seen before.
async fn closed_within(c: &mut SyncClient, limit: Duration) -> Vec<Message> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match c.recv_within(left).await {
            Ok(Some(m)) => seen.push(m),
            Ok(None) => return seen,
            Err(()) => panic!("the socket was still open after {limit:?}; saw {seen:?}"),
        }
    }
}

async fn me(s: &TestServer, token: &str) -> (u16, Value) {
    s.get("/api/v1/me", Some(token)).await
}

async fn put_volunteers(
    s: &TestServer,
    coordinator: &str,
    case: DocumentId,
    ids: &[&str],
) -> Value {
    let (status, body) = s
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{case}/volunteers"),
            Some(coordinator),
            Some(json!({ "volunteer_ids": ids })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn a_volunteer_who_leaves_is_gone_at_once(backend: Backend) {
    let w = world(backend).await;
    let (_, phone) = w.s.device(&w.coordinator, &w.amira, "Amiras Handy").await;
    let (_, second) = w.s.device(&w.coordinator, &w.amira, "Amiras Tablet").await;
    let mut open = SyncClient::connect(w.s.addr, &phone, "amira-phone").await;
    open.fetch(w.case).await;
    // An open offer to her, withdrawn when she leaves.
    let (starts, ends) = window(3);
    let request =
        w.s.post_request(
            &w.coordinator,
            request_body("arbeit", &["ar"], &starts, &ends),
        )
        .await;
    w.s.offer_to(&w.coordinator, &request, &[&w.amira]).await;

    let (status, body) =
        w.s.patch(
            &format!("/api/v1/volunteers/{}", w.amira),
            Some(&w.coordinator),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = closed_within(&mut open, CLOSED_WITHIN).await;
    assert!(
        seen.iter()
            .any(|m| matches!(m, Message::Error { message, .. } if message.contains("revoked"))),
        "the phone is told to wipe itself: {seen:?}"
    );
    for token in [&phone, &second] {
        let (status, body) = me(&w.s, token).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("device_revoked")),
            "{body}"
        );
        assert!(
            connect_sync(w.s.addr, token).await.is_err(),
            "/sync refuses the token"
        );
    }
    let (_, detail) =
        w.s.get(&format!("/api/v1/requests/{request}"), Some(&w.coordinator))
            .await;
    assert_eq!(detail["offers"][0]["status"], "withdrawn", "{detail}");
    assert_eq!(
        detail["status"], "open",
        "nobody else was offered it: {detail}"
    );

    // Even a device whose revocation was missed is refused while she is inactive.
    sqlx::query("UPDATE devices SET revoked_at = NULL")
        .execute(w.s.store.pool())
        .await
        .unwrap();
    let (status, body) = me(&w.s, &phone).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("device_revoked"))
    );
    assert!(connect_sync(w.s.addr, &phone).await.is_err());
    w.s.stop().await;
}

/// Waits until the server told this (extended) device to catch up: the sign that its
/// connection has taken in a change of its rights.
async fn told_to_catch_up(c: &mut SyncClient) {
    loop {
        match c.recv_within(CLOSED_WITHIN).await {
            Ok(Some(Message::Shared { .. })) => return,
            Ok(Some(m)) => {
                c.handle(m).await;
            }
            Ok(None) => panic!("closed instead"),
            Err(()) => panic!("no lotse-shared within {CLOSED_WITHIN:?}"),
        }
    }
}

fn syncs_of(seen: &[Message], case: DocumentId) -> usize {
    seen.iter()
        .filter(|m| matches!(m, Message::Sync { document_id, .. } if *document_id == case))
        .count()
}

async fn a_volunteer_taken_off_a_case_receives_nothing_more(backend: Backend) {
    let w = world(backend).await;
    let (_, amira_phone) = w.s.device(&w.coordinator, &w.amira, "Amiras Handy").await;
    let (_, olena_phone) = w.s.device(&w.coordinator, &w.olena, "Olenas Handy").await;
    let mut amira = SyncClient::connect(w.s.addr, &amira_phone, "amira").await;
    amira.fetch(w.case).await;
    amira.catch_up().await;
    let mut olena = SyncClient::connect(w.s.addr, &olena_phone, "olena").await;
    olena.expect_unavailable(w.case).await;
    let mut desk = SyncClient::connect(w.s.addr, &w.coordinator, "desk").await;
    desk.fetch(w.case).await;

    let changed = put_volunteers(&w.s, &w.coordinator, w.case, &[&w.olena]).await;
    assert_eq!(changed["added"], json!([w.olena]));
    assert_eq!(changed["removed"], json!([w.amira]));
    assert_eq!(changed["volunteer_ids"], json!([w.olena]));
    told_to_catch_up(&mut amira).await;

    add_note(desk.docs.get_mut(&w.case).unwrap(), "nach der Abgabe");
    desk.offer(w.case).await;
    let seen = amira.drain(QUIET).await;
    assert_eq!(
        syncs_of(&seen, w.case),
        0,
        "nothing of the case after the unshare: {seen:?}"
    );
    // Her phone's catch-up no longer lists the case (it deletes it), and asking for it
    // is answered as for a missing one.
    let (verdict, _) = amira.catch_up().await;
    match verdict {
        Message::Manifest { entries, .. } => {
            assert!(entries.iter().all(|(id, _)| *id != w.case), "{entries:?}")
        }
        other => panic!("expected a manifest, got {other:?}"),
    }
    amira.docs.remove(&w.case);
    amira.syncs.remove(&w.case);
    amira.expect_unavailable(w.case).await;

    // Olena's phone gets the case as with a new share, with the note.
    olena.syncs.clear();
    olena.fetch_afresh(w.case).await;
    let view = CaseDoc::read(&olena.docs[&w.case]).unwrap();
    assert_eq!(view.notes.len(), 1);

    // The trail names both changes; replacing with the same list changes nothing.
    let again = put_volunteers(&w.s, &w.coordinator, w.case, &[&w.olena]).await;
    assert_eq!(
        (again["added"].clone(), again["removed"].clone()),
        (json!([]), json!([]))
    );
    let trail = w.s.store.audit_events(&w.org, 50).await.unwrap();
    let mut lines: Vec<(&str, &str)> = trail
        .iter()
        .filter(|e| e.action.starts_with("case."))
        .map(|e| (e.action.as_str(), e.subject_id.as_str()))
        .collect();
    lines.sort();
    let (shared, unshared) = (
        format!("{}:{}", w.case, w.olena),
        format!("{}:{}", w.case, w.amira),
    );
    assert_eq!(
        lines,
        [
            ("case.share", shared.as_str()),
            ("case.unshare", unshared.as_str())
        ]
    );

    // Wrong input: a stranger, an unknown case, a malformed id.
    let (_, other_org) = w.s.new_org("Andere Stadt").await;
    let stranger = w.s.volunteer(&other_org, "Fremd", &["de"]).await;
    let (status, _) =
        w.s.request(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{}/volunteers", w.case),
            Some(&w.coordinator),
            Some(json!({"volunteer_ids": [stranger]})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) =
        w.s.request(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{}/volunteers", w.case),
            Some(&other_org),
            Some(json!({"volunteer_ids": []})),
        )
        .await;
    assert_eq!(
        status, 404,
        "another organisation's case does not exist for them"
    );
    w.s.stop().await;
}

async fn a_coordinators_socket_ends_with_the_session(backend: Backend) {
    let w = world(backend).await;
    let mut desk = SyncClient::connect(w.s.addr, &w.coordinator, "desk").await;
    desk.fetch(w.case).await;
    let (status, _) =
        w.s.post("/api/v1/auth/logout", Some(&w.coordinator), json!({}))
            .await;
    assert_eq!(status, 204);
    let seen = closed_within(&mut desk, CLOSED_WITHIN).await;
    assert!(
        seen.iter()
            .any(|m| matches!(m, Message::Error { message, .. } if message.contains("session"))),
        "{seen:?}"
    );
    assert!(connect_sync(w.s.addr, &w.coordinator).await.is_err());

    // Logout everywhere ends every socket of the coordinator.
    let (email, password) = ("zweite@lotse.test", "ein langes Passwort 1");
    w.s.coordinator("Lotsen Zugang", email, password).await;
    let (one, two) = (
        w.s.login(email, password).await,
        w.s.login(email, password).await,
    );
    let mut a = SyncClient::connect(w.s.addr, &one, "a").await;
    let mut b = SyncClient::connect(w.s.addr, &two, "b").await;
    let (status, _) =
        w.s.post("/api/v1/auth/logout-all", Some(&one), json!({}))
            .await;
    assert_eq!(status, 200);
    closed_within(&mut a, CLOSED_WITHIN).await;
    closed_within(&mut b, CLOSED_WITHIN).await;
    w.s.stop().await;
}

async fn sync_takes_no_cookie_and_no_foreign_page(backend: Backend) {
    let w = world(backend).await;
    let addr = w.s.addr;
    let upgrade = move |headers: Vec<(&'static str, String)>| {
        let mut req = format!("ws://{addr}/sync").into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let refused = upgrade(vec![("cookie", format!("lotse_session={}", w.coordinator))]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!(
            "the session cookie alone must not open /sync: {:?}",
            other.map(|_| ())
        ),
    }
    let bearer = format!("Bearer {}", w.coordinator);
    let foreign = upgrade(vec![
        ("authorization", bearer.clone()),
        ("origin", "https://evil.example".into()),
    ])
    .await;
    match foreign {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!(
            "a foreign page must not open /sync: {:?}",
            other.map(|_| ())
        ),
    }
    let own = upgrade(vec![
        ("authorization", bearer),
        ("origin", format!("http://{}", w.s.addr)),
    ])
    .await;
    assert!(own.is_ok(), "a page of this server may");
    let query = format!("ws://{}/sync?token={}", w.s.addr, w.coordinator);
    assert!(
        tokio_tungstenite::connect_async(query).await.is_ok(),
        "the query token works"
    );
    w.s.stop().await;
}

async fn settings_and_the_lease(backend: Backend) {
    let w = world(backend).await;
    let path = "/api/v1/organisation/settings";
    let (status, settings) = w.s.get(path, Some(&w.coordinator)).await;
    assert_eq!(
        (status, settings["device_lease_days"].as_i64()),
        (200, Some(30))
    );
    for bad in [
        json!({"device_lease_days": 0}),
        json!({"device_lease_days": 366}),
    ] {
        let (status, body) = w.s.patch(path, Some(&w.coordinator), bad).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("device_lease_days"))
        );
    }
    let (status, body) =
        w.s.patch(path, Some(&w.coordinator), json!({"device_lease_days": 7}))
            .await;
    assert_eq!(
        (status, body["device_lease_days"].as_i64()),
        (200, Some(7)),
        "{body}"
    );
    let (_, phone) = w.s.device(&w.coordinator, &w.amira, "Amiras Handy").await;
    assert_eq!(
        w.s.get(path, Some(&phone)).await.0,
        403,
        "coordinators only"
    );
    let trail = w.s.store.audit_events(&w.org, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "organisation.settings"));

    // The catch-up verdict carries the lease: 7 days, as a duration.
    let mut c = SyncClient::connect(w.s.addr, &phone, "amira").await;
    assert_eq!(c.lease_ms, None);
    c.catch_up().await;
    // Sent with the verdict, in the same batch.
    c.drain(QUIET).await;
    let lease = c.lease_ms;
    assert_eq!(lease, Some(7 * 24 * 3_600_000));
    w.s.stop().await;
}

on_both_backends!(
    a_volunteer_who_leaves_is_gone_at_once,
    a_volunteer_taken_off_a_case_receives_nothing_more,
    a_coordinators_socket_ends_with_the_session,
    sync_takes_no_cookie_and_no_foreign_page,
    settings_and_the_lease,
);

/// Two instances on one PostgreSQL: a revocation, a volunteer leaving, an unshare and a
/// logout made through one reach the sockets held by the other within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_take_access_away_on_each_other() {
    let w = world(Backend::Postgres).await;
    let b = TestServer::start_on(w.s.db.shared()).await;
    common::wait_until_instances_listen(&w.s.store, 2).await;

    let (lost, lost_token) = w.s.device(&w.coordinator, &w.amira, "Verloren").await;
    let mut on_b = SyncClient::connect(b.addr, &lost_token, "lost").await;
    on_b.fetch(w.case).await;
    let (status, _) =
        w.s.post(
            &format!("/api/v1/devices/{lost}/revoke"),
            Some(&w.coordinator),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    closed_within(&mut on_b, CLOSED_WITHIN).await;

    let (_, olena_phone) = w.s.device(&w.coordinator, &w.olena, "Olenas Handy").await;
    let mut olena_on_b = SyncClient::connect(b.addr, &olena_phone, "olena").await;
    let (status, _) =
        w.s.patch(
            &format!("/api/v1/volunteers/{}", w.olena),
            Some(&w.coordinator),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, 200);
    closed_within(&mut olena_on_b, CLOSED_WITHIN).await;

    let (_, amira_phone) = w.s.device(&w.coordinator, &w.amira, "Amiras Handy").await;
    let mut amira_on_b = SyncClient::connect(b.addr, &amira_phone, "amira").await;
    amira_on_b.fetch(w.case).await;
    amira_on_b.catch_up().await;
    let mut desk_on_a = SyncClient::connect(w.s.addr, &w.coordinator, "desk").await;
    desk_on_a.fetch(w.case).await;
    put_volunteers(&w.s, &w.coordinator, w.case, &[]).await;
    // Instance B took the unshare in (it tells the phone to catch up) within 2 s; a
    // change made after it does not reach her.
    told_to_catch_up(&mut amira_on_b).await;
    add_note(desk_on_a.docs.get_mut(&w.case).unwrap(), "nach der Abgabe");
    desk_on_a.offer(w.case).await;
    let seen = amira_on_b.drain(Duration::from_secs(1)).await;
    assert_eq!(syncs_of(&seen, w.case), 0, "{seen:?}");

    let mut coordinator_on_b = SyncClient::connect(b.addr, &w.coordinator, "desk-b").await;
    let (status, _) =
        w.s.post("/api/v1/auth/logout", Some(&w.coordinator), json!({}))
            .await;
    assert_eq!(status, 204);
    closed_within(&mut coordinator_on_b, CLOSED_WITHIN).await;
    b.stop().await;
    w.s.stop().await;
}

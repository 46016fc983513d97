//! Art. 15 access exports (issue 15): a case's export holds every note, appointment and
//! hours entry of that case and nothing of another; a volunteer's holds the hours they
//! wrote; both are coordinators' only and leave an audit line. Art. 17 for a volunteer
//! erases profile and devices and keeps their hours in the report. On SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::erasure::found_in_database;
use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, DocumentId, NewHours, NewNote};
use lotse_server::dashboard::{Period, compute};
use lotse_server::store::ERASED_NAME;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::Value;

async fn write(c: &mut SyncClient, s: &TestServer, case: DocumentId, author: &str, text: &str) {
    c.fetch(case).await;
    let doc = c.docs.get_mut(&case).unwrap();
    let note = NewNote {
        author: author.into(),
        text: text.into(),
    };
    CaseDoc::add_note(doc, &note, 1_772_633_400_000).unwrap();
    let hours = NewHours {
        author: author.into(),
        date: "2026-11-30".into(),
        minutes: 75,
        travel_minutes: 15,
        kind: "begleitung".into(),
    };
    CaseDoc::log_hours(doc, &hours, 1_772_633_400_000).unwrap();
    c.offer(case).await;
    c.wait_until_stored(&s.store, case).await;
}

fn texts(export: &Value) -> Vec<String> {
    export["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn exports_hold_what_the_network_holds_and_nothing_else(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Auskunft").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let mine = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let other = s
        .create_case(&coordinator, "Z.Z.", "wohnen", &["ar"], &[&amira])
        .await;
    let (_, token) = s.device(&coordinator, &amira, "Telefon").await;
    let mut phone = SyncClient::connect(s.addr, &token, "phone").await;
    write(&mut phone, &s, mine, &amira, "Hausarzt gefunden").await;
    write(&mut phone, &s, other, &amira, "Wohnung besichtigt").await;

    let (status, export) = s
        .get(&format!("/api/v1/cases/{mine}/export"), Some(&coordinator))
        .await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(texts(&export), ["Hausarzt gefunden"]);
    assert_eq!(export["hours"].as_array().unwrap().len(), 1);
    assert_eq!(export["hours"][0]["written_by"], amira.as_str());
    assert_eq!(export["label"], "F.K.");
    assert!(
        !export.to_string().contains("Wohnung besichtigt"),
        "nothing of another case"
    );
    let case = s.case(&coordinator, &mine).await;
    assert_eq!(
        export["appointments"].as_array().unwrap().len(),
        case["appointments"].as_array().unwrap().len()
    );

    // The export itself is in the case's audit trail.
    let (_, trail) = s
        .get(&format!("/api/v1/cases/{mine}/audit"), Some(&coordinator))
        .await;
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "document.export"),
        "{trail}"
    );

    let (status, export) = s
        .get(
            &format!("/api/v1/volunteers/{amira}/export"),
            Some(&coordinator),
        )
        .await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["volunteer"]["id"], amira.as_str());
    assert_eq!(export["devices"].as_array().unwrap().len(), 1);
    let cases: Vec<&str> = export["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(cases.len(), 2, "{export}");
    assert!(
        export["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor_kind"] == "device"),
        "the device's syncs are among the lines: {export}"
    );

    // Another organisation and a device get nothing.
    let (_, stranger) = s.new_org("Andere").await;
    let (status, _) = s
        .get(&format!("/api/v1/cases/{mine}/export"), Some(&stranger))
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get(
            &format!("/api/v1/volunteers/{amira}/export"),
            Some(&stranger),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get(&format!("/api/v1/cases/{mine}/export"), Some(&token))
        .await;
    assert_eq!(status, 403, "coordinators only");
    s.stop().await;
}

/// Reading a request (contact, address) or a volunteer's profile through the API leaves
/// its audit line (the dashboard's pages write the same lines).
async fn reads_of_requests_and_profiles_are_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Protokoll").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (starts, ends) = lotse_testkit::fixtures::window(3);
    let request = s
        .create_request(&coordinator, "behoerden", &["ar"], &starts, &ends)
        .await;
    let lines = |action: &'static str, subject: String| {
        let store = s.store.clone();
        let org = org.clone();
        async move {
            store
                .audit_events(&org, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == action && e.subject_id == subject)
                .count()
        }
    };
    assert_eq!(lines("request.read", request.clone()).await, 0);
    let (status, _) = s
        .get(&format!("/api/v1/requests/{request}"), Some(&coordinator))
        .await;
    assert_eq!(status, 200);
    assert_eq!(lines("request.read", request.clone()).await, 1);
    let (status, _) = s
        .get(&format!("/api/v1/volunteers/{amira}"), Some(&coordinator))
        .await;
    assert_eq!(status, 200);
    assert_eq!(lines("volunteer.read", amira.clone()).await, 1);
    s.stop().await;
}

/// Art. 17 for a volunteer: profile, contact and device data are gone from the API and
/// the database, the phone is shut out and off the case, and the hours they wrote stay
/// in the report, under no name.
async fn an_erased_volunteer_leaves_their_hours_and_nothing_else(backend: Backend) {
    const NAME: &str = "Amira Unverwechselbar";
    const PHONE: &str = "Amiras Diensthandy 4711";
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Loeschung").await;
    let amira = s.volunteer(&coordinator, NAME, &["ar", "de"]).await;
    let (status, body) = s
        .patch(
            &format!("/api/v1/volunteers/{amira}"),
            Some(&coordinator),
            serde_json::json!({
                "topics": ["gesundheit"],
                "pledge_signed_on": "2026-01-15",
                "trainings": [{"name": "Basislehrgang", "completed_on": "2026-02-01"}],
                "availability": [{"weekday": 2, "from": "14:00", "to": "18:00"}],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let case = s
        .create_case(&coordinator, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let (device, token) = s.device(&coordinator, &amira, PHONE).await;
    let mut phone = SyncClient::connect(s.addr, &token, "phone").await;
    write(&mut phone, &s, case, &amira, "Hausarzt gefunden").await;
    let period = Period::from_query("", now_ms());
    let before = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(before.total.minutes, 75);

    let path = format!("/api/v1/volunteers/{amira}");
    let erase = |who: String| {
        let (s, path) = (&s, &path);
        async move {
            s.request(reqwest::Method::DELETE, path, Some(&who), None)
                .await
        }
    };
    for needle in [NAME, PHONE] {
        assert!(
            found_in_database(&s, needle).await,
            "the search finds {needle}"
        );
    }
    let (status, body) = erase(coordinator.clone()).await;
    assert_eq!(status, 204, "{body}");

    // The phone is shut out at once and cannot come back.
    let closed = loop {
        match phone.recv_within(Duration::from_secs(10)).await {
            Ok(Some(_)) => continue,
            Ok(None) => break true,
            Err(()) => break false,
        }
    };
    assert!(closed, "the socket closed");
    assert!(lotse_testkit::connect_sync(s.addr, &token).await.is_err());

    // What the API still says of them: an id, no name, no contact, no devices.
    let (status, v) = s
        .get(&format!("/api/v1/volunteers/{amira}"), Some(&coordinator))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["display_name"], ERASED_NAME);
    assert!(
        v["erased_at"].is_string() || v["erased_at"].is_number(),
        "{v}"
    );
    for field in ["languages", "topics", "availability", "trainings"] {
        assert_eq!(v[field], serde_json::json!([]), "{field}: {v}");
    }
    assert_eq!(v["pledge_signed_on"], Value::Null);
    assert_eq!(v["active"], false);
    let (_, export) = s
        .get(
            &format!("/api/v1/volunteers/{amira}/export"),
            Some(&coordinator),
        )
        .await;
    assert_eq!(export["devices"][0]["id"], device.as_str());
    assert_eq!(export["devices"][0]["name"], "", "{export}");
    let c = s.case(&coordinator, &case).await;
    assert!(
        !c["volunteer_ids"].to_string().contains(&amira),
        "off the case: {c}"
    );
    for needle in [NAME, PHONE] {
        assert!(
            !found_in_database(&s, needle).await,
            "{needle} is still stored"
        );
    }

    // Their hours stay in the figures.
    let after = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(
        (
            after.total.minutes,
            after.total.travel,
            after.by_topic.clone()
        ),
        (
            before.total.minutes,
            before.total.travel,
            before.by_topic.clone()
        )
    );

    // Nothing brings them back; erasing again is harmless; others get nothing.
    let (status, _) = s
        .patch(
            &format!("/api/v1/volunteers/{amira}"),
            Some(&coordinator),
            serde_json::json!({"active": true, "display_name": NAME}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = s
        .post(
            &format!("/api/v1/volunteers/{amira}/enrollment-codes"),
            Some(&coordinator),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 404, "no new phone");
    assert_eq!(erase(coordinator.clone()).await.0, 204);
    let (_, stranger) = s.new_org("Andere").await;
    assert_eq!(erase(stranger).await.0, 404);
    let other = s.volunteer(&coordinator, "Olena", &["uk"]).await;
    let (_, other_phone) = s.device(&coordinator, &other, "Olenas Handy").await;
    let (status, _) = s
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/volunteers/{other}"),
            Some(&other_phone),
            None,
        )
        .await;
    assert_eq!(status, 403, "coordinators only");
    let trail = s.store.audit_events(&org, 500).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "volunteer.erase" && e.subject_id == amira)
            .count(),
        2
    );
    s.stop().await;
}

/// Days and figures as the store keeps them: ms since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

on_both_backends!(
    exports_hold_what_the_network_holds_and_nothing_else,
    reads_of_requests_and_profiles_are_audited,
    an_erased_volunteer_leaves_their_hours_and_nothing_else,
);

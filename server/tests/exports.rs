//! Art. 15 access exports (issue 15): a case's export holds every note, appointment and
//! hours entry of that case and nothing of another; a volunteer's holds the hours they
//! wrote; both are coordinators' only and leave an audit line. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, DocumentId, NewHours, NewNote};
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

on_both_backends!(
    exports_hold_what_the_network_holds_and_nothing_else,
    reads_of_requests_and_profiles_are_audited,
);

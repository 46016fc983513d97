//! The audit trail of cases over the REST API (DSGVO: who read and changed what): a
//! case's creation, every read of its content through the API, and the list of it all
//! for the organisation's coordinators, on both backends. The sync side is in
//! audit_sync.rs, the dashboard's page view in dashboard.rs.
#![allow(clippy::unwrap_used)]

use lotse_testkit::fixtures::window;
use lotse_testkit::{Backend, TestServer, on_both_backends};

/// (action, actor kind, actor name), sorted: two lines written in the same millisecond
/// have no order of their own.
async fn trail(s: &TestServer, token: &str, case: &str) -> Vec<(String, String, String)> {
    let (status, body) = s
        .get(&format!("/api/v1/cases/{case}/audit"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut events: Vec<(String, String, String)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor_kind"].as_str().unwrap().to_owned(),
                e["actor_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

async fn case_reads_and_creations_are_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, desk) = s.new_org("Lotsen Protokoll").await;
    let coordinator = "koordination@lotsen-protokoll.example";
    let amira = s.volunteer(&desk, "Amira", &["ar"]).await;
    let (_, phone) = s.device(&desk, &amira, "Amiras Handy").await;
    let olena = s.volunteer(&desk, "Olena", &["uk"]).await;
    let (_, stranger) = s.device(&desk, &olena, "Olenas Handy").await;

    let case = s
        .create_case(&desk, "K.M.", "gesundheit", &["ar"], &[&amira])
        .await
        .to_string();
    assert_eq!(
        trail(&s, &desk, &case).await,
        [(
            "document.create".to_owned(),
            "coordinator".to_owned(),
            coordinator.to_owned()
        )]
    );

    // The assigned phone reads it; a phone of someone else gets 404 and leaves no line.
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}"), Some(&phone))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}"), Some(&stranger))
            .await
            .0,
        404
    );
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}"), Some(&desk)).await.0,
        200
    );
    let lines = trail(&s, &desk, &case).await;
    assert_eq!(
        lines,
        [
            (
                "document.create".to_owned(),
                "coordinator".to_owned(),
                coordinator.to_owned()
            ),
            (
                "document.read".to_owned(),
                "coordinator".to_owned(),
                coordinator.to_owned()
            ),
            (
                "document.read".to_owned(),
                "device".to_owned(),
                "Amira (Amiras Handy)".to_owned()
            ),
        ]
    );
    // The trail holds no content.
    let (_, raw) = s
        .get(&format!("/api/v1/cases/{case}/audit"), Some(&desk))
        .await;
    assert!(!raw.to_string().contains("K.M."), "{raw}");

    // Only coordinators of the organisation see the trail.
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}/audit"), Some(&phone))
            .await
            .0,
        403
    );
    let (_, elsewhere) = s.new_org("Lotsen Anderswo").await;
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}/audit"), Some(&elsewhere))
            .await
            .0,
        404
    );
    assert_eq!(
        s.get("/api/v1/cases/nicht-da/audit", Some(&desk)).await.0,
        400
    );
    s.stop().await;
}

async fn a_won_offer_audits_the_case_it_creates(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, desk) = s.new_org("Lotsen Zusage").await;
    let amira = s.volunteer(&desk, "Amira", &["ar"]).await;
    let (_, phone) = s.device(&desk, &amira, "Amiras Handy").await;
    let (starts, ends) = window(3);
    let id = s
        .create_request(&desk, "arbeit", &["ar"], &starts, &ends)
        .await;
    s.offer_to(&desk, &id, &[&amira]).await;
    let (status, accepted) = s.accept(&phone, &id).await;
    assert_eq!(status, 200, "{accepted}");
    let case = accepted["assignment"]["case_id"].as_str().unwrap();
    // A retried accept finds the case and writes no second creation.
    let (status, _) = s.accept(&phone, &id).await;
    assert_eq!(status, 200);
    assert_eq!(
        trail(&s, &desk, case).await,
        [(
            "document.create".to_owned(),
            "device".to_owned(),
            "Amira (Amiras Handy)".to_owned()
        )]
    );
    s.stop().await;
}

on_both_backends!(
    case_reads_and_creations_are_audited,
    a_won_offer_audits_the_case_it_creates,
);

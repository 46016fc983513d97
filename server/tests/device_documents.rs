//! `POST /api/v1/device/documents` (issue 17): what a device on the stock automerge-repo
//! client learns instead of the catch-up. It lists what the device may hold, names held
//! documents the network deleted or rewrote (with the successor), and says nothing of a
//! withdrawn document that it would not also say of another organisation's or an
//! unknown one. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use lotse_protocol::DocumentId;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::{Value, json};

const PATH: &str = "/api/v1/device/documents";

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_device_learns_what_to_hold_and_what_to_drop(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Web").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let olena = s.volunteer(&coordinator, "Olena", &["uk"]).await;
    let case = |label: &'static str| {
        let (s, coordinator, amira) = (&s, &coordinator, &amira);
        async move {
            s.create_case(coordinator, label, "wohnen", &["ar"], &[amira])
                .await
        }
    };
    let (kept, withdrawn, deleted, rewritten) = (
        case("A.A.").await,
        case("B.B.").await,
        case("C.C.").await,
        case("D.D.").await,
    );
    let (_, phone) = s.device(&coordinator, &amira, "Browser").await;
    let (_, other_org) = s.new_org("Andere Stadt").await;
    let stranger = s.volunteer(&other_org, "Fremd", &["de"]).await;
    let foreign = s
        .create_case(&other_org, "X.X.", "arbeit", &["de"], &[&stranger])
        .await;
    let unknown = DocumentId::random();

    let (status, body) = s
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{withdrawn}/volunteers"),
            Some(&coordinator),
            Some(json!({"volunteer_ids": [olena]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{deleted}?reason=mistake"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .post(
            &format!("/api/v1/cases/{rewritten}/compact"),
            Some(&coordinator),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let successor = body["documentId"].as_str().unwrap().to_owned();

    let held: Vec<String> = [kept, withdrawn, deleted, rewritten, foreign, unknown]
        .iter()
        .map(ToString::to_string)
        .collect();
    let (status, answer) = s.post(PATH, Some(&phone), json!({ "held": held })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["schema_version"], 1);
    let lease_days = s
        .get("/api/v1/organisation/settings", Some(&coordinator))
        .await
        .1["device_lease_days"]
        .as_u64()
        .unwrap();
    assert_eq!(answer["lease_ms"], lease_days * 24 * 3_600_000);
    assert_eq!(
        ids(&answer["documents"]),
        BTreeSet::from([kept.to_string(), successor.clone()]),
        "{answer}"
    );
    let listed = answer["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == kept.to_string())
        .unwrap();
    let stored = s.store.document(&kept).await.unwrap().unwrap().heads;
    let heads: Vec<String> = stored.iter().map(ToString::to_string).collect();
    assert_eq!(listed["heads"], json!(heads), "the server's heads, hex");
    let gone: Vec<(String, String, Value)> = answer["gone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap().to_owned(),
                g["reason"].as_str().unwrap().to_owned(),
                g["successor"].clone(),
            )
        })
        .collect();
    assert_eq!(
        gone,
        [
            (deleted.to_string(), "deleted".to_owned(), Value::Null),
            (
                rewritten.to_string(),
                "replaced".to_owned(),
                json!(successor)
            ),
        ],
        "withdrawn, foreign and unknown ids are answered alike: not at all"
    );

    // Only devices ask; the input is checked.
    let (status, _) = s.post(PATH, Some(&coordinator), json!({"held": []})).await;
    assert_eq!(status, 403);
    let (status, _) = s.post(PATH, None, json!({"held": []})).await;
    assert_eq!(status, 401);
    let (status, body) = s
        .post(PATH, Some(&phone), json!({"held": ["nicht-base58"]}))
        .await;
    assert_eq!(status, 422, "{body}");
    let many: Vec<String> = (0..1_001).map(|_| unknown.to_string()).collect();
    let (status, _) = s.post(PATH, Some(&phone), json!({ "held": many })).await;
    assert_eq!(status, 422);
    s.stop().await;
}

/// A volunteer sets their own availability from their device; the coordinators see it,
/// the matching uses it, the trail names the device.
async fn a_volunteer_sets_their_own_availability(backend: Backend) {
    const OWN: &str = "/api/v1/device/availability";
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Verfuegbar").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (device, phone) = s.device(&coordinator, &amira, "Browser").await;
    let slots = json!([{"weekday": 2, "from": "14:00", "to": "18:00"}, {"weekday": 6, "from": "09:00", "to": "12:00"}]);
    let (status, body) = s
        .request(
            reqwest::Method::PUT,
            OWN,
            Some(&phone),
            Some(json!({ "availability": slots })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get(OWN, Some(&phone)).await.1["availability"], slots);
    let (_, v) = s
        .get(&format!("/api/v1/volunteers/{amira}"), Some(&coordinator))
        .await;
    assert_eq!(v["availability"], slots, "the coordinators see it");
    let trail = s.store.audit_events(&org, 50).await.unwrap();
    assert!(
        trail.iter().any(|e| e.action == "volunteer.availability"
            && e.actor_kind == "device"
            && e.actor_id == device
            && e.subject_id == amira),
        "{trail:?}"
    );

    // Bad input and the wrong caller.
    for (bad, expected) in [
        (
            json!({"availability": [{"weekday": 8, "from": "14:00", "to": "18:00"}]}),
            422,
        ),
        (
            json!({"availability": [{"weekday": 1, "from": "18:00", "to": "14:00"}]}),
            422,
        ),
        (json!({"slots": []}), 400),
    ] {
        let (status, body) = s
            .request(reqwest::Method::PUT, OWN, Some(&phone), Some(bad))
            .await;
        assert_eq!(status, expected, "{body}");
    }
    let (status, _) = s
        .request(
            reqwest::Method::PUT,
            OWN,
            Some(&coordinator),
            Some(json!({"availability": []})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        s.get(OWN, Some(&phone)).await.1["availability"],
        slots,
        "unchanged"
    );
    s.stop().await;
}

on_both_backends!(
    a_device_learns_what_to_hold_and_what_to_drop,
    a_volunteer_sets_their_own_availability,
);

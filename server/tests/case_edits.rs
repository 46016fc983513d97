//! A coordinator writes into a case through the API (issue 18): notes, appointments,
//! status and label become automerge changes by that coordinator, merge with what a
//! phone typed offline, and reach the phone. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, NewNote, Status};
use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::{Value, json};

fn texts(case: &Value) -> Vec<String> {
    let mut out: Vec<String> = case["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

async fn a_coordinator_writes_into_a_case(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Leitstelle").await;
    let (_, me) = s.get("/api/v1/me", Some(&coordinator)).await;
    let coordinator_id = me["coordinator_id"].as_str().unwrap().to_owned();
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "wohnen", &["ar"], &[&amira])
        .await;
    let (_, device) = s.device(&coordinator, &amira, "Telefon").await;

    // The phone takes the case and goes offline with a note of its own.
    let mut phone = SyncClient::connect(s.addr, &device, "phone").await;
    phone.fetch(case).await;
    drop(phone.ws);
    let mut offline = phone.docs;
    let note = NewNote {
        author: amira.clone(),
        text: "offline beim Amt gewesen".into(),
    };
    CaseDoc::add_note(offline.get_mut(&case).unwrap(), &note, 1_772_633_400_000).unwrap();
    let hours = lotse_protocol::NewHours {
        author: amira.clone(),
        date: "2026-11-30".into(),
        minutes: 90,
        travel_minutes: 20,
        kind: "begleitung".into(),
    };
    let hours_id =
        CaseDoc::log_hours(offline.get_mut(&case).unwrap(), &hours, 1_772_633_400_000).unwrap();

    let path = format!("/api/v1/cases/{case}");
    let (status, added) = s
        .post(
            &format!("{path}/notes"),
            Some(&coordinator),
            json!({"text": "Rückruf Jobcenter"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let note_id = added["id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .patch(
            &format!("{path}/notes/{note_id}"),
            Some(&coordinator),
            json!({"text": "Rückruf Jobcenter erledigt"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, appointment) = s
        .post(
            &format!("{path}/appointments"),
            Some(&coordinator),
            json!({"start": "2026-12-07T09:00:00Z", "end": "2026-12-07T10:00:00Z",
                   "place": "Ausländerbehörde", "purpose": "Aufenthaltstitel"}),
        )
        .await;
    assert_eq!(status, 201, "{appointment}");
    let (status, body) = s
        .patch(
            &path,
            Some(&coordinator),
            json!({"status": "closed", "label": "F.K.2", "kind": "patenschaft"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // Bad input changes nothing.
    for (method_path, body, want) in [
        (format!("{path}/notes/nonesuch"), json!({"text": "x"}), 404),
        (path.clone(), json!({"status": "done"}), 400),
        (path.clone(), json!({"label": ""}), 422),
        (path.clone(), json!({"kind": "freundschaft"}), 422),
        (
            format!("{path}/appointments"),
            json!({"start": "2026-12-07T10:00:00Z", "end": "2026-12-07T09:00:00Z"}),
            422,
        ),
    ] {
        let (status, body) = if method_path.ends_with("appointments") {
            s.post(&method_path, Some(&coordinator), body).await
        } else {
            s.patch(&method_path, Some(&coordinator), body).await
        };
        assert_eq!(status, want, "{method_path}: {body}");
    }
    let (_, stranger) = s.new_org("Andere Lotsen").await;
    let (status, _) = s
        .post(
            &format!("{path}/notes"),
            Some(&stranger),
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(
        status, 404,
        "another organisation cannot tell the case exists"
    );
    let (status, _) = s
        .post(
            &format!("{path}/notes"),
            Some(&device),
            json!({"text": "x"}),
        )
        .await;
    assert!(
        status == 401 || status == 403,
        "a device is no coordinator: {status}"
    );

    // The phone comes back: its note and the coordinator's merge, both ways.
    let mut phone = SyncClient::connect(s.addr, &device, "phone").await;
    phone.docs = offline;
    phone.offer(case).await;
    phone.wait_until_stored(&s.store, case).await;
    phone.fetch_afresh(case).await;
    let view = CaseDoc::read(phone.docs.get(&case).unwrap()).unwrap();
    let mut on_phone: Vec<String> = view.notes.iter().map(|n| n.text.clone()).collect();
    on_phone.sort();
    assert_eq!(
        on_phone,
        ["Rückruf Jobcenter erledigt", "offline beim Amt gewesen"]
    );
    assert_eq!(view.status, Status::Closed);
    assert_eq!(view.label, "F.K.2");
    assert_eq!(view.appointments.len(), 1);

    let (status, got) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        texts(&got),
        ["Rückruf Jobcenter erledigt", "offline beim Amt gewesen"]
    );
    let by_coordinator = got["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == note_id.as_str())
        .unwrap();
    assert_eq!(by_coordinator["authorVerified"], true, "{by_coordinator}");
    assert_eq!(by_coordinator["author"], coordinator_id.as_str());
    assert_eq!(got["status"], "closed");
    assert_eq!(got["kind"], "patenschaft");

    // The coordinator corrects the phone's hours, then removes them, each with a reason.
    let hours_path = format!("{path}/hours/{hours_id}");
    let (status, body) = s
        .patch(
            &hours_path,
            Some(&coordinator),
            json!({"minutes": 60, "reason": "because"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = s
        .patch(
            &hours_path,
            Some(&coordinator),
            json!({"minutes": 60, "reason": "wrong-amount"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, got) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(got["hours"][0]["minutes"], 60);
    assert_eq!(got["hours"][0]["correction"]["reason"], "wrong-amount");
    assert_eq!(got["hours"][0]["correction"]["by"], coordinator_id.as_str());
    assert_eq!(
        got["hours"][0]["author"],
        amira.as_str(),
        "still the volunteer's time"
    );
    let (status, _) = s
        .request(
            reqwest::Method::DELETE,
            &format!("{hours_path}?reason=duplicate"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, got) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(got["hours"].as_array().unwrap().len(), 0, "removed: {got}");
    let (status, _) = s
        .request(
            reqwest::Method::DELETE,
            &format!("{path}/hours/nonesuch?reason=duplicate"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, trail) = s.get(&format!("{path}/audit"), Some(&coordinator)).await;
    let changes = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "document.change" && e["actor_kind"] == "coordinator")
        .count();
    assert_eq!(changes, 6, "one line per edit: {trail}");
    s.stop().await;
}

on_both_backends!(a_coordinator_writes_into_a_case);

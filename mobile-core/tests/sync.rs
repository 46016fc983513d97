//! Acceptance 1 against a real lotse-server on loopback: enroll, go offline, create a case
//! with notes, appointments and hours, come back, and the coordinator's API shows it all;
//! a coordinator's edit made meanwhile merges into the phone's copy; a case counts as
//! synced only once the server holds it. Also revocation, reconnect and the listener.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use lotse_core::lotse_protocol::{CaseDoc, DocumentId, NoteId, Status, Topic};
use lotse_core::{
    AppointmentInput, Client, Error, HoursInput, NewCaseInput, SyncState, SyncStatus,
};
use serde_json::json;

const T: Duration = Duration::from_secs(30);
/// 2026-03-04 09:30 UTC.
const MORNING: i64 = 1_772_616_600_000;
const HOUR: i64 = 3_600_000;

fn new_case(label: &str, topic: Topic, languages: &[&str]) -> NewCaseInput {
    NewCaseInput {
        label: label.into(),
        topic,
        languages: languages.iter().map(|l| (*l).into()).collect(),
    }
}

/// Waits until the client is connected and has nothing left to do.
async fn until_idle(client: &Client, what: &str) {
    eventually(what, T, || async { client.sync_state() == SyncState::Idle }).await;
}

async fn status(client: &Client, id: &DocumentId) -> SyncStatus {
    client.case_sync_status(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_work_reaches_the_coordinator_and_merges_with_theirs() {
    let (server, coordinator, phone) = server_with_phone("Integrationslotsen Neuss").await;
    let client = &phone.client;
    assert_eq!(client.sync_state(), SyncState::Idle);

    // A case the coordinator assigned; the phone fetches it on its next sync.
    let shared = server
        .create_case(
            &coordinator,
            "K.M.",
            "gesundheit",
            &["ar"],
            &[&phone.volunteer],
        )
        .await;
    within(T, client.sync_now()).await.unwrap();
    let first = client
        .add_note(&shared, "Erstgespräch im Café Mitte")
        .await
        .unwrap();
    within(T, client.sync_now()).await.unwrap();
    assert_eq!(status(client, &shared).await, SyncStatus::Synced);

    // Offline: edit the shared note, start a new case with notes, appointments and hours.
    client.set_network_available(false);
    eventually("offline", T, || async {
        client.sync_state() == SyncState::Offline
    })
    .await;
    client
        .edit_note(
            &shared,
            &first,
            "Erstgespräch im Café Mitte, Dolmetschen Arabisch",
        )
        .await
        .unwrap();
    let case = client
        .create_case(&new_case("F.A.", Topic::Behoerden, &["fa", "de"]))
        .await
        .unwrap();
    let notes = [
        "Antrag Aufenthaltstitel vorbereitet",
        "Termin Ausländerbehörde vereinbart",
    ];
    for n in notes {
        client.add_note(&case, n).await.unwrap();
    }
    let mut appointments = Vec::new();
    for (start, end, place, purpose) in [
        (
            MORNING,
            MORNING + HOUR,
            "Ausländerbehörde Neuss, Zimmer 114",
            "Verlängerung",
        ),
        (
            MORNING + 24 * HOUR,
            MORNING + 25 * HOUR,
            "Jobcenter Neuss",
            "Beratung",
        ),
        // Same start modulo anything small: ids must still be distinct.
        (
            MORNING + 3,
            MORNING + HOUR,
            "Bürgerbüro",
            "Meldebescheinigung",
        ),
    ] {
        let input = AppointmentInput {
            start,
            end,
            place: place.into(),
            purpose: purpose.into(),
        };
        appointments.push(client.add_appointment(&case, &input).await.unwrap());
    }
    let appointment = appointments[0].clone();
    client
        .log_hours(
            &case,
            &HoursInput {
                date: "2026-03-04".into(),
                minutes: 90,
                travel_minutes: 20,
                kind: "begleitung".into(),
            },
        )
        .await
        .unwrap();
    client.set_case_status(&case, Status::Active).await.unwrap();
    assert_eq!(status(client, &case).await, SyncStatus::Pending);
    assert_eq!(status(client, &shared).await, SyncStatus::Pending);
    let listed = client.list_cases().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.sync == SyncStatus::Pending));
    // Nothing reached the server.
    assert!(server.store.document(&case).await.unwrap().is_none());

    // Meanwhile the coordinator edits the same note at its start, through /sync.
    let mut desk = CoordinatorPeer::connect(&server, &coordinator).await;
    desk.sync(shared).await;
    let doc = desk.doc_mut(&shared).unwrap();
    let note_id = NoteId::new(first.as_str());
    CaseDoc::edit_note(doc, &note_id, 0, 0, "[geprüft] ", MORNING).unwrap();
    desk.sync(shared).await;

    // Back online: pending turns synced only once the server holds every change.
    client.set_network_available(true);
    let until = tokio::time::Instant::now() + T;
    loop {
        if status(client, &case).await == SyncStatus::Synced {
            // At the moment the phone says synced, the server must have all of it.
            let on_server = server.case(&coordinator, &case).await;
            assert_eq!(on_server["notes"].as_array().unwrap().len(), notes.len());
            assert_eq!(on_server["appointments"].as_array().unwrap().len(), 3);
            break;
        }
        assert!(tokio::time::Instant::now() < until, "case never synced");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    within(T, client.sync_now()).await.unwrap();
    assert_eq!(status(client, &shared).await, SyncStatus::Synced);

    // The coordinator sees everything written offline.
    let on_server = server.case(&coordinator, &case).await;
    assert_eq!(on_server["label"], "F.A.");
    assert_eq!(on_server["topic"], "behoerden");
    assert_eq!(on_server["languages"], json!(["fa", "de"]));
    let texts: Vec<&str> = on_server["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, notes);
    assert!(
        on_server["notes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["author"] == phone.volunteer.as_str())
    );
    let places: Vec<&str> = on_server["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["place"].as_str().unwrap())
        .collect();
    assert_eq!(
        places,
        [
            "Ausländerbehörde Neuss, Zimmer 114",
            "Bürgerbüro",
            "Jobcenter Neuss"
        ]
    );
    assert_eq!(on_server["hours"][0]["minutes"], 90);
    assert_eq!(on_server["hours"][0]["travelMinutes"], 20);
    assert_eq!(on_server["hours"][0]["kind"], "begleitung");
    // The offline case became this volunteer's on the server.
    let row = server.store.document(&case).await.unwrap().unwrap();
    assert_eq!(
        row.owner_volunteer_id.as_deref(),
        Some(phone.volunteer.as_str())
    );

    // Both edits of the same note survive, on the server and on the phone.
    let merged = "[geprüft] Erstgespräch im Café Mitte, Dolmetschen Arabisch";
    let on_server = server.case(&coordinator, &shared).await;
    assert_eq!(on_server["notes"][0]["text"], merged);
    eventually("coordinator edit on the phone", T, || async {
        client.list_notes(&shared).await.unwrap()[0].text == merged
    })
    .await;

    // The schedule across cases, and the hours of the month.
    let week = client
        .appointments_between(MORNING - HOUR, MORNING + 7 * 24 * HOUR)
        .await
        .unwrap();
    assert_eq!(week.len(), 3);
    assert!(week.iter().all(|a| a.case_id == Some(case)));
    client
        .cancel_appointment(&case, &appointment)
        .await
        .unwrap();
    let week = client
        .appointments_between(MORNING - HOUR, MORNING + 7 * 24 * HOUR)
        .await
        .unwrap();
    assert!(
        week.iter()
            .find(|a| a.appointment.id == appointment)
            .unwrap()
            .appointment
            .cancelled
    );
    let months = client.monthly_hours(2026).await.unwrap();
    assert_eq!(months[2].minutes, 90);
    assert_eq!(months[2].travel_minutes, 20);
    assert_eq!(months.iter().map(|m| m.entries).sum::<u32>(), 1);
    within(T, client.sync_now()).await.unwrap();
    let on_server = server.case(&coordinator, &case).await;
    let cancelled: Vec<bool> = on_server["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["cancelled"].as_bool().unwrap())
        .collect();
    assert_eq!(cancelled, [true, false, false]);

    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_flow_both_ways_and_listeners_hear_them() {
    let (server, coordinator, phone) = server_with_phone("Lotsen Live").await;
    let client = &phone.client;
    let (heard, subscription) = listen(client);
    eventually("current state delivered", T, || async {
        heard.states.lock().unwrap().first() == Some(&SyncState::Idle)
    })
    .await;

    // A local edit goes out without sync_now.
    let case = client
        .create_case(&new_case("L1", Topic::Bildung, &["uk"]))
        .await
        .unwrap();
    client.add_note(&case, "Schulanmeldung").await.unwrap();
    eventually("live upload", T, || async {
        status(client, &case).await == SyncStatus::Synced
    })
    .await;
    assert!(heard.changed.lock().unwrap().contains(&case));

    // A coordinator's edit comes in without sync_now.
    let mut desk = CoordinatorPeer::connect(&server, &coordinator).await;
    desk.sync(case).await;
    CaseDoc::set_status(desk.doc_mut(&case).unwrap(), Status::Paused, MORNING).unwrap();
    desk.sync(case).await;
    eventually("live download", T, || async {
        client.get_case(&case).await.unwrap().case.status == Status::Paused
    })
    .await;

    // Availability lives in the volunteer's schedule document.
    let slots = vec![lotse_core::lotse_protocol::AvailabilitySlot {
        weekday: 2,
        from: "14:00".into(),
        to: "18:00".into(),
    }];
    client.set_availability(&slots).await.unwrap();
    assert_eq!(client.availability().await.unwrap(), slots);
    within(T, client.sync_now()).await.unwrap();

    // Dropping the handle ends the subscription: once the events queued before the drop
    // are delivered, the listener thread ends and lets go of the listener (the test's
    // handle is then the only one), so no later state can reach it.
    drop(subscription);
    eventually("listener released", T, || async {
        std::sync::Arc::strong_count(&heard) == 1
    })
    .await;

    // Reopening keeps everything, and an in-sync reconnect is immediate.
    let dir = phone.dir.path().to_owned();
    client.close().await.unwrap();
    assert!(matches!(client.list_cases().await, Err(Error::Closed)));
    let reopened = Client::open(config(&dir, &server.base, phone.key))
        .await
        .unwrap();
    within(T, reopened.sync_now()).await.unwrap();
    let case_now = reopened.get_case(&case).await.unwrap();
    assert_eq!(case_now.case.notes[0].text, "Schulanmeldung");
    assert_eq!(case_now.sync, SyncStatus::Synced);
    assert_eq!(reopened.availability().await.unwrap(), slots);
    reopened.close().await.unwrap();
    server.stop().await;
}

/// Cases the coordinator shares while the phone is connected arrive by themselves: the
/// server announces each share (`lotse-shared`) and the phone catches up at once, not at
/// its next periodic check (five minutes away). A burst of announcements is coalesced
/// into as few catch-ups as the phone needs; every case arrives, synced, and the
/// listener hears of each.
async fn shared_cases_arrive_without_asking(org: &str, labels: &[&str]) {
    let (server, coordinator, phone) = server_with_phone(org).await;
    let client = &phone.client;
    let (heard, _subscription) = listen(client);
    until_idle(client, "idle and connected").await;

    let volunteer = [phone.volunteer.as_str()];
    let cases = futures_util::future::join_all(
        labels
            .iter()
            .map(|label| server.create_case(&coordinator, label, "wohnen", &["fa"], &volunteer)),
    )
    .await;
    eventually("the shared cases on the phone", T, || async {
        let held = client.list_cases().await.unwrap();
        cases
            .iter()
            .zip(labels)
            .all(|(id, label)| held.iter().any(|c| c.id == *id && c.label == *label))
    })
    .await;
    eventually("the listener told", T, || async {
        let changed = heard.changed.lock().unwrap();
        cases.iter().all(|id| changed.contains(id))
    })
    .await;
    for id in &cases {
        assert_eq!(status(client, id).await, SyncStatus::Synced);
    }
    until_idle(client, "idle again").await;
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_shared_while_connected_arrives_without_asking() {
    shared_cases_arrive_without_asking("Integrationslotsen Neuss", &["R.S."]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_shared_cases_all_arrive_without_asking() {
    let labels = ["B.1.", "B.2.", "B.3.", "B.4.", "B.5."];
    shared_cases_arrive_without_asking("Integrationslotsen Kaarst", &labels).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_wipes_the_phone() {
    let (server, coordinator, phone) = server_with_phone("Lotsen Widerruf").await;
    let client = &phone.client;
    let case = client
        .create_case(&new_case("W.R.", Topic::Wohnen, &[]))
        .await
        .unwrap();
    client
        .add_note(&case, "Wohnungsbesichtigung Nordstadt")
        .await
        .unwrap();
    within(T, client.sync_now()).await.unwrap();
    let (heard, _subscription) = listen(client);

    let (code, body) = server.revoke_device(&coordinator, &phone.device_id).await;
    assert_eq!(code, 200, "{body}");
    // The open connection is told at once.
    eventually("revoked", T, || async {
        client.sync_state() == SyncState::Revoked
    })
    .await;
    assert!(client.list_cases().await.unwrap().is_empty());
    assert_eq!(client.enrollment().await.unwrap(), None);
    assert!(matches!(client.sync_now().await, Err(Error::Revoked)));
    // The wipe reports the state, then the documents that went away.
    eventually("listener told", T, || async {
        heard.states.lock().unwrap().contains(&SyncState::Revoked)
            && heard.changed.lock().unwrap().contains(&case)
    })
    .await;
    client.close().await.unwrap();
    let reopened = Client::open(config(phone.dir.path(), &server.base, phone.key))
        .await
        .unwrap();
    assert!(reopened.list_cases().await.unwrap().is_empty());
    assert_eq!(reopened.enrollment().await.unwrap(), None);
    reopened.close().await.unwrap();
    server.stop().await;
}

/// How a phone loses its right to the data while it is offline.
enum Gone {
    /// The coordinator revoked the device (a lost phone).
    Revoked,
    /// The volunteer left: every device of theirs is revoked.
    Left,
}

/// Either way, the phone wipes itself at its next contact: the upgrade is refused with
/// 401 device_revoked.
async fn an_offline_phone_wipes_on_next_contact(gone: Gone) {
    let (server, coordinator, phone) = server_with_phone("Lotsen Offline Widerruf").await;
    let client = &phone.client;
    client.set_network_available(false);
    client
        .create_case(&new_case("O.W.", Topic::Arbeit, &[]))
        .await
        .unwrap();
    let (code, body) = match gone {
        Gone::Revoked => server.revoke_device(&coordinator, &phone.device_id).await,
        Gone::Left => {
            let path = format!("/api/v1/volunteers/{}", phone.volunteer);
            let inactive = json!({"active": false});
            server.patch(&path, Some(&coordinator), inactive).await
        }
    };
    assert_eq!(code, 200, "{body}");
    client.set_network_available(true);
    assert!(matches!(
        within(T, client.sync_now()).await,
        Err(Error::Revoked)
    ));
    assert_eq!(client.sync_state(), SyncState::Revoked);
    assert!(client.list_cases().await.unwrap().is_empty());
    assert_eq!(client.enrollment().await.unwrap(), None);
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_phone_that_was_offline_wipes_on_next_contact() {
    an_offline_phone_wipes_on_next_contact(Gone::Revoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_whose_volunteer_left_wipes_at_next_contact() {
    an_offline_phone_wipes_on_next_contact(Gone::Left).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_reports_errors_and_cancel_works() {
    // The phone enrolls through a loopback door that later hangs up every connection at
    // once: its pinned server address stays the same, only the server is gone. The door
    // stays bound for the whole test, so no other test's server can take its port over.
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Fehler").await;
    let door = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = door.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(true));
    let target = server.addr;
    let is_open = open.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = door.accept().await {
            if !is_open.load(Ordering::SeqCst) {
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let volunteer = server.volunteer(&coordinator, "Amira", &["ar"]).await;
    let code = server.enrollment_code(&coordinator, &volunteer).await;
    let dir = TempDir::new("phone");
    let key = rand_key();
    let url = format!("http://{addr}");
    let client = Client::open(config(dir.path(), &url, key)).await.unwrap();
    client.enroll(&code, "Testhandy").await.unwrap();
    within(T, client.sync_now()).await.unwrap();
    client.close().await.unwrap();
    open.store(false, Ordering::SeqCst);

    let client = Client::open(config(dir.path(), &url, key)).await.unwrap();
    let err = within(T, client.sync_now()).await.unwrap_err();
    assert!(matches!(err, Error::Network(_)), "{err:?}");
    eventually("error state", T, || async {
        matches!(client.sync_state(), SyncState::Error { .. })
    })
    .await;
    client.set_network_available(false);
    assert!(matches!(
        within(T, client.sync_now()).await,
        Err(Error::Offline)
    ));

    // cancel_sync ends a pending sync_now.
    client.set_network_available(true);
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.sync_now().await })
    };
    client.cancel_sync();
    let result = within(T, pending).await.unwrap();
    assert!(
        matches!(result, Err(Error::Cancelled) | Err(Error::Network(_))),
        "{result:?}"
    );
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_errors_are_typed() {
    let server = TestServer::start(Backend::Sqlite).await;
    let dir = TempDir::new("enroll");
    let client = Client::open(config(dir.path(), &server.base, rand_key()))
        .await
        .unwrap();
    let err = client.enroll("AAAAA-BBBBB", "Handy").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Server {
                status: 400 | 410,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        client.enroll("", "Handy").await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        client.enroll("AAAAA-BBBBB", " ").await,
        Err(Error::InvalidInput { .. })
    ));
    // Not enrolled: nothing to sync, nothing to create.
    assert!(matches!(
        client.sync_now().await,
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        client.create_case(&new_case("X", Topic::Beruf, &[])).await,
        Err(Error::InvalidState(_))
    ));
    client.close().await.unwrap();
    server.stop().await;
}

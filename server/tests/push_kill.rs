//! A push cut short by a real crash: the `lotse-server` binary is killed with SIGKILL
//! while its push worker waits for the push service's answer; a new process on the same
//! database sends the pending pushes again (at least once, with the same Web Push
//! `Topic`, so the repeat replaces the first copy at the push service), and nothing
//! stays behind in the outbox.
//!
//! `tests/push.rs` (`a_send_cut_short_by_a_restart_is_delivered_after_it`) shows the same
//! in-process, by aborting the worker's task, on SQLite and on PostgreSQL. This test runs
//! on SQLite only: what a real process kill adds is that nothing of the dying process
//! (no destructor, no graceful shutdown, no in-memory state) can help, and on SQLite the
//! successor must find the interrupted claim in the file and release it at start
//! (`Store::release_push_claims`). On PostgreSQL the successor relies on the claim's
//! lease lapsing instead, which does not depend on how the predecessor ended and is
//! covered by the in-process test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::push_service::{Answer, PushService, Received};
use common::webpush::Subscriber;
use lotse_server::push::{NoticeKind, push_topic};
use lotse_server::store::Store;
use lotse_testkit::process::{Process, create_coordinator, listening_addr, serve_command};
use lotse_testkit::{Backend, Client, TestDb, eventually, now_ms};
use serde_json::{Value, json};

const EMAIL: &str = "leitung@push-kill.example";
const PASSWORD: &str = "ein langes Passwort 42";

// ---- the lotse-server process -----------------------------------------------------

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lotse-server"))
}

/// `lotse-server serve` with loopback push endpoints allowed and the push worker's debug
/// log; every line it writes is copied into the test's output (shown when it fails).
fn start_server(name: &'static str, database_url: &str) -> Process {
    let mut cmd = serve_command(bin(), database_url);
    cmd.arg("--allow-insecure-push-endpoints")
        .env("RUST_LOG", "warn,lotse_server::push=debug");
    Process::spawn(
        name,
        cmd,
        Duration::from_secs(60),
        listening_addr,
        move |stream, line| eprintln!("[{name} {stream:?}] {line}"),
    )
    .unwrap()
}

/// SIGKILL: no destructor, no graceful shutdown of the dying process can help.
fn kill(server: &Process) {
    let status = server.kill().unwrap();
    assert!(!status.success(), "killed, not exited: {status}");
}

/// A client whose calls cannot hang the test on a dying server.
fn client(server: &Process) -> Client {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Client::with_http(server.addr, http)
}

// ---- helpers ------------------------------------------------------------------------

/// The `k=` of a VAPID `Authorization` header (`vapid t=<JWT>, k=<key>`).
fn vapid_k(header: &str) -> &str {
    header
        .strip_prefix("vapid ")
        .expect("vapid scheme")
        .split(',')
        .find_map(|p| p.trim().strip_prefix("k="))
        .expect("k=")
}

/// A volunteer speaking Arabic with one enrolled phone subscribed at `endpoint`:
/// returns the volunteer's id.
async fn volunteer_with_phone(
    api: &Client,
    token: &str,
    name: &str,
    phone: &Subscriber,
    endpoint: &str,
) -> String {
    let volunteer = api.volunteer(token, name, &["ar", "de"]).await;
    let (_, device_token) = api
        .device(token, &volunteer, &format!("Telefon von {name}"))
        .await;
    let (status, sub) = api
        .post(
            "/api/v1/push/subscriptions",
            Some(&device_token),
            phone.subscription(endpoint),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    volunteer
}

/// Pending outbox rows, read through a connection of our own on the same file.
async fn pending(store: &Store) -> i64 {
    store.pending_pushes().await.unwrap()
}

// ---- the test -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_send_sends_the_pending_pushes_after_restart() {
    let service = PushService::start().await;
    service.answer_from_now_on(Answer::Hang);
    let db = TestDb::new(Backend::Sqlite).await;
    let url = format!("{}?mode=rwc", db.url);
    create_coordinator(bin(), &url, "Lotsen Kaarst", EMAIL, PASSWORD).unwrap();

    let first = start_server("server 1", &url);
    let api = client(&first);
    let token = api.login(EMAIL, PASSWORD).await;
    let (status, key) = api.get("/api/v1/push/vapid-public-key", None).await;
    assert_eq!(status, 200, "{key}");
    let vapid_key = key["public_key"].as_str().unwrap().to_owned();

    // Two phones, so that more than one send is in flight when the server dies.
    let names = ["amira", "bilal"];
    let phones = [Subscriber::new(), Subscriber::new()];
    let mut volunteers = Vec::new();
    for (name, phone) in names.iter().zip(&phones) {
        volunteers
            .push(volunteer_with_phone(&api, &token, name, phone, &service.endpoint(name)).await);
    }

    // A request two hours ahead (the offer's TTL runs until it starts), offered to both.
    let starts = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let ends = starts
        .checked_add(jiff::SignedDuration::from_mins(90))
        .unwrap();
    let request_id = api
        .post_request(
            &token,
            json!({
                "institution_kind": "jobcenter",
                "institution_name": "Jobcenter Kaarst",
                "contact": "02131 123456",
                "person_label": "A.K.",
                "topic": "arbeit",
                "languages": ["ar"],
                "starts_at": starts.to_string(),
                "ends_at": ends.to_string(),
                "place_area": "Innenstadt",
                "place_address": "Am Neumarkt 2",
                "urgency": "dringend",
                "description": "Termin zur Eingliederungsvereinbarung"
            }),
        )
        .await;
    let offered_at = now_ms();
    let (status, offered) = api
        .post(
            &format!("/api/v1/requests/{request_id}/offer"),
            Some(&token),
            json!({"top": 5}),
        )
        .await;
    assert_eq!(status, 200, "{offered}");
    let mut offered_to: Vec<&str> = offered["offered_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    offered_to.sort_unstable();
    let mut expected: Vec<&str> = volunteers.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(offered_to, expected);

    // The worker claims both rows in one round and sends them side by side; the push
    // service takes both and answers neither. Then the process dies mid-send.
    eventually(
        "both pushes to reach the push service",
        Duration::from_secs(30),
        || async { (service.received().len() >= 2).then_some(()) },
    )
    .await;
    kill(&first);
    service.answer_from_now_on(Answer::Status(201));
    let before = service.received();
    assert_eq!(before.len(), 2, "one send per phone: {before:?}");
    assert!(before.iter().all(|r| r.answered.is_none()));
    {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(
            pending(&store).await,
            2,
            "the interrupted sends are still in the outbox"
        );
        store.close().await;
    }

    // A new process on the same file sends them again, and the push service accepts.
    let second = start_server("server 2", &url);
    let store = Store::connect(&url).await.unwrap();
    // Under the worker's 30 s lease: the new process must release the cut-short claims
    // when it starts, not merely wait for them to lapse.
    eventually(
        "the interrupted pushes to be delivered and forgotten",
        Duration::from_secs(20),
        || async {
            let delivered = service
                .received()
                .iter()
                .filter(|r| r.answered == Some(201))
                .count();
            (delivered >= 2 && pending(&store).await == 0).then_some(())
        },
    )
    .await;
    store.close().await;
    kill(&second);
    // After the second process is gone: nothing left to send, nothing sent twice.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(pending(&store).await, 0, "no push is left in the outbox");
    store.close().await;
    let got = service.received();
    assert_eq!(
        got.len(),
        4,
        "each push once before the kill, once after: {got:?}"
    );

    let topic = push_topic(&request_id, NoticeKind::Offer);
    for (name, phone) in names.iter().zip(&phones) {
        let path = format!("/push/{name}");
        let mine: Vec<&Received> = got.iter().filter(|r| r.path == path).collect();
        assert_eq!(mine.len(), 2, "{name}: {mine:?}");
        let (cut, repeat) = (mine[0], mine[1]);
        assert!(cut.answered.is_none(), "the service hung on it: {cut:?}");
        assert_eq!(repeat.answered, Some(201), "{repeat:?}");

        // The repeat replaces the first copy at the push service: the same Topic.
        assert_eq!(cut.header("topic"), topic);
        assert_eq!(
            repeat.header("topic"),
            cut.header("topic"),
            "a repeat replaces"
        );
        for r in [cut, repeat] {
            assert_eq!(r.header("content-encoding"), "aes128gcm");
            assert_eq!(r.header("urgency"), "high");
            assert_eq!(vapid_k(r.header("authorization")), vapid_key);
            assert!(!r.body.is_empty() && r.body.len() < 4096);
        }
        // The TTL still runs until the request starts: counted down, not restarted.
        let ttl = |r: &Received| r.header("ttl").parse::<i64>().unwrap();
        let until_start = (starts.as_millisecond() - offered_at) / 1000;
        assert!(
            ttl(cut) <= until_start + 1 && ttl(cut) > until_start - 120,
            "ttl {} until start {until_start}",
            ttl(cut)
        );
        assert!(
            ttl(repeat) <= ttl(cut) && ttl(repeat) > 0,
            "{} then {}",
            ttl(cut),
            ttl(repeat)
        );

        // Encrypted anew (fresh salt and sender key), the same message inside.
        assert_ne!(cut.body, repeat.body);
        let first_payload: Value = serde_json::from_slice(&phone.decrypt(&cut.body)).unwrap();
        let second_payload: Value = serde_json::from_slice(&phone.decrypt(&repeat.body)).unwrap();
        assert_eq!(first_payload, second_payload);
        assert_eq!(first_payload["v"], 1);
        assert_eq!(first_payload["kind"], "offer");
        assert_eq!(first_payload["request_id"], request_id.as_str());
        assert_eq!(first_payload["topic"], "arbeit");
        assert_eq!(first_payload["languages"], json!(["ar"]));
        let window_start = first_payload["window_start"].as_i64().unwrap();
        assert!(
            (window_start - starts.as_millisecond()).abs() < 1000,
            "window_start {window_start}"
        );
    }
}

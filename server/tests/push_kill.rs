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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::webpush::Subscriber;
use common::{Backend, TestDb, call_json, eventually, now_ms};
use lotse_server::push::{NoticeKind, push_topic};
use lotse_server::store::Store;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const EMAIL: &str = "leitung@push-kill.example";
const PASSWORD: &str = "ein langes Passwort 42";

// ---- the lotse-server process -----------------------------------------------------

/// A running `lotse-server serve`; killed (SIGKILL) and reaped when dropped, so no path
/// through the test, a failing assertion included, leaves it behind.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    reaped: bool,
}

impl ServerProcess {
    /// Starts the binary on a free loopback port and waits (bounded) for the address it
    /// prints. Its stdout and stderr are drained for its whole life by two threads that
    /// copy every line into the test's output (shown when the test fails).
    async fn start(name: &'static str, database_url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lotse-server"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--database-url",
                database_url,
                "--allow-insecure-push-endpoints",
            ])
            .env_remove("DATABASE_URL")
            .env_remove("LOTSE_BIND")
            .env("RUST_LOG", "warn,lotse_server::push=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // From here on the guard owns the child: any panic below still kills it.
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reaped: false,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let mut tx = Some(tx);
        std::thread::spawn(move || {
            drain(name, "stdout", stdout, |line| {
                if let Some(addr) = line.split("listening on http://").nth(1)
                    && let Ok(addr) = addr.trim().parse()
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
            });
        });
        std::thread::spawn(move || drain(name, "stderr", stderr, |_| {}));
        server.addr = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("{name} did not print its address within 60 s"))
            .unwrap_or_else(|_| panic!("{name} exited before printing its address"));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap it.
    fn kill(&mut self) {
        if !self.reaped {
            self.child.kill().unwrap();
            let status = self.child.wait().unwrap();
            assert!(!status.success(), "killed, not exited: {status}");
            self.reaped = true;
        }
    }
}

/// Copies a child's output into the test's output line by line until the pipe closes,
/// so the child never blocks on a full pipe. Lines are read as bytes: one cut short by
/// the kill need not be valid UTF-8, and must not stop the draining.
fn drain(name: &str, stream: &str, from: impl Read, mut each: impl FnMut(&str)) {
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    while let Ok(n) = from.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        eprintln!("[{name} {stream}] {}", text.trim_end());
        each(&text);
        line.clear();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `lotse-server create-coordinator`, the password on stdin.
async fn create_coordinator(database_url: &str) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args([
            "create-coordinator",
            "--org",
            "Lotsen Kaarst",
            "--email",
            EMAIL,
            "--password-stdin",
            "--database-url",
            database_url,
        ])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(PASSWORD.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("create-coordinator finished within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "create-coordinator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- the REST API -------------------------------------------------------------------

struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn post(&self, url: String, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        call_json(&self.http, reqwest::Method::POST, url, token, body).await
    }

    async fn get(&self, url: String, token: Option<&str>) -> (u16, Value) {
        call_json(&self.http, reqwest::Method::GET, url, token, None).await
    }
}

// ---- the test push service ----------------------------------------------------------

#[derive(Debug, Clone)]
struct Received {
    path: String,
    /// Whether the push service was still hanging up on every request (before the kill).
    before_kill: bool,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    answered: Option<u16>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

struct Recorder {
    /// Take every request and never answer it (the sender is about to die mid-send).
    hang: bool,
    received: Vec<Received>,
}

/// Records every push; hangs on all of them until `answer_from_now_on`, then answers 201.
struct PushService {
    addr: SocketAddr,
    state: Arc<Mutex<Recorder>>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<Mutex<Recorder>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let (index, hang) = {
        let mut s = state.lock().unwrap();
        let hang = s.hang;
        s.received.push(Received {
            path: format!("/push/{name}"),
            before_kill: hang,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect(),
            body: body.to_vec(),
            answered: None,
        });
        (s.received.len() - 1, hang)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    state.lock().unwrap().received[index].answered = Some(201);
    let mut h = HeaderMap::new();
    h.insert("location", format!("/m/{index}").parse().unwrap());
    (StatusCode::CREATED, h)
}

impl PushService {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorder {
            hang: true,
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/push/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("http://{}/push/{name}", self.addr)
    }

    fn answer_from_now_on(&self) {
        self.state.lock().unwrap().hang = false;
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.task.abort();
    }
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

async fn login(api: &Api, s: &ServerProcess) -> String {
    let (status, body) = api
        .post(
            s.url("/api/v1/auth/login"),
            None,
            Some(json!({"email": EMAIL, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A volunteer speaking Arabic with one enrolled phone subscribed at `endpoint`:
/// returns the volunteer's id.
async fn volunteer_with_phone(
    api: &Api,
    s: &ServerProcess,
    token: &str,
    name: &str,
    phone: &Subscriber,
    endpoint: &str,
) -> String {
    let (status, v) = api
        .post(
            s.url("/api/v1/volunteers"),
            Some(token),
            Some(json!({"display_name": name, "languages": ["ar", "de"], "topics": ["behoerden"]})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let volunteer = v["id"].as_str().unwrap().to_owned();
    let (status, code) = api
        .post(
            s.url(&format!("/api/v1/volunteers/{volunteer}/enrollment-codes")),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 201, "{code}");
    let (status, device) = api
        .post(
            s.url("/api/v1/devices/enroll"),
            None,
            Some(json!({"code": code["code"], "device_name": format!("Telefon von {name}")})),
        )
        .await;
    assert_eq!(status, 201, "{device}");
    let device_token = device["token"].as_str().unwrap();
    let (status, sub) = api
        .post(
            s.url("/api/v1/push/subscriptions"),
            Some(device_token),
            Some(phone.subscription(endpoint)),
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
    let db = TestDb::new(Backend::Sqlite).await;
    let url = format!("{}?mode=rwc", db.url);
    create_coordinator(&url).await;
    let api = Api::new();

    let mut first = ServerProcess::start("server 1", &url).await;
    let token = login(&api, &first).await;
    let (status, key) = api
        .get(first.url("/api/v1/push/vapid-public-key"), None)
        .await;
    assert_eq!(status, 200, "{key}");
    let vapid_key = key["public_key"].as_str().unwrap().to_owned();

    // Two phones, so that more than one send is in flight when the server dies.
    let names = ["amira", "bilal"];
    let phones = [Subscriber::new(), Subscriber::new()];
    let mut volunteers = Vec::new();
    for (name, phone) in names.iter().zip(&phones) {
        volunteers.push(
            volunteer_with_phone(&api, &first, &token, name, phone, &service.endpoint(name)).await,
        );
    }

    // A request two hours ahead (the offer's TTL runs until it starts), offered to both.
    let starts = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let ends = starts
        .checked_add(jiff::SignedDuration::from_mins(90))
        .unwrap();
    let (status, request) = api
        .post(
            first.url("/api/v1/requests"),
            Some(&token),
            Some(json!({
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
            })),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    let request_id = request["id"].as_str().unwrap().to_owned();
    let offered_at = now_ms();
    let (status, offered) = api
        .post(
            first.url(&format!("/api/v1/requests/{request_id}/offer")),
            Some(&token),
            Some(json!({"top": 5})),
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
    first.kill();
    service.answer_from_now_on();
    let before = service.received();
    assert_eq!(before.len(), 2, "one send per phone: {before:?}");
    assert!(before.iter().all(|r| r.before_kill && r.answered.is_none()));
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
    let mut second = ServerProcess::start("server 2", &url).await;
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
    second.kill();
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
        assert!(cut.before_kill && cut.answered.is_none(), "{cut:?}");
        assert!(
            !repeat.before_kill && repeat.answered == Some(201),
            "{repeat:?}"
        );

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

//! Test harness: a real lotse-server on a free loopback port over a fresh SQLite file, a
//! coordinator of a fresh organisation, enrolled phones, and a coordinator's sync peer
//! (the coordinator editing a case through `/sync`, as the dashboard's editor would).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lotse_core::lotse_protocol::automerge::Automerge;
use lotse_core::lotse_protocol::peer::memory::{MemoryDocs, Outcome, settle};
use lotse_core::lotse_protocol::peer::{ClientConfig, ClientEvent};
use lotse_core::lotse_protocol::{ClientPeer, DocumentId};
use lotse_core::{Client, Config};
use lotse_server::config::{HttpConfig, PushConfig};
use lotse_server::store::{NewCoordinator, Store};
use lotse_server::{AppState, auth};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const PASSWORD: &str = "ein langes Passwort 42";

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lotse-core-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub store: Store,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(PushConfig::default()).await
    }

    /// A server that accepts loopback push endpoints (a push service inside the test).
    pub async fn start_with_loopback_push() -> Self {
        Self::start_with(PushConfig {
            allow_insecure_push_endpoints: true,
            ..PushConfig::default()
        })
        .await
    }

    pub async fn start_with(push: PushConfig) -> Self {
        let dir = TempDir::new("server");
        let url = format!("sqlite://{}/lotse.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(store.clone(), HttpConfig::default(), push)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lotse_server::serve(state, listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            store,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// A coordinator of a new organisation, logged in: its session token.
    pub async fn coordinator(&self, org: &str) -> String {
        let org = self.store.ensure_organisation(org).await.unwrap();
        let email = format!(
            "koordination-{}@lotse.example",
            uuid::Uuid::new_v4().simple()
        );
        let hash = auth::hash_password(PASSWORD).unwrap();
        self.store
            .create_coordinator(NewCoordinator {
                organisation_id: &org.id,
                email: &email,
                display_name: "Koordination",
                password_hash: &hash,
            })
            .await
            .unwrap();
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn volunteer(&self, coordinator: &str, name: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/volunteers",
                coordinator,
                json!({"display_name": name, "languages": ["ar", "de"], "topics": ["behoerden"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn enrollment_code(&self, coordinator: &str, volunteer: &str) -> String {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/volunteers/{volunteer}/enrollment-codes"),
                Some(coordinator),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// The case as the server holds it (GET /api/v1/cases/{id}).
    pub async fn case(&self, coordinator: &str, id: &DocumentId) -> Value {
        let (status, body) = self.get(&format!("/api/v1/cases/{id}"), coordinator).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.store.close().await;
    }
}

pub fn config(dir: &Path, server: &str, key: [u8; 32]) -> Config {
    Config {
        data_dir: dir.to_owned(),
        server_url: server.to_owned(),
        key,
        trusted_certificates_pem: None,
    }
}

/// An enrolled phone that has completed its first sync.
pub struct Phone {
    pub client: Client,
    pub dir: TempDir,
    pub key: [u8; 32],
    pub volunteer: String,
    pub device_id: String,
}

pub async fn enrolled_phone(server: &TestServer, coordinator: &str) -> Phone {
    let volunteer = server.volunteer(coordinator, "Amira").await;
    let code = server.enrollment_code(coordinator, &volunteer).await;
    let dir = TempDir::new("phone");
    let key = rand_key();
    let client = Client::open(config(dir.path(), &server.base, key))
        .await
        .unwrap();
    let enrolled = client.enroll(&code, "Testhandy").await.unwrap();
    assert_eq!(enrolled.volunteer_id, volunteer);
    within(Duration::from_secs(20), client.sync_now())
        .await
        .unwrap();
    Phone {
        client,
        dir,
        key,
        volunteer,
        device_id: enrolled.device_id,
    }
}

pub fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// Awaits `f`, failing the test after `d`.
pub async fn within<T>(d: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| panic!("not done within {d:?}"))
}

/// Polls `check` until it holds, failing after `d`.
pub async fn eventually<F, Fut>(d: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + d;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The coordinator's side of `/sync`: fetches, edits and pushes documents. A plain
/// automerge-repo peer (no catch-up), driven by `ClientPeer` over documents in memory.
pub struct CoordinatorPeer {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    peer: ClientPeer,
    store: MemoryDocs,
}

impl CoordinatorPeer {
    pub async fn connect(server: &TestServer, token: &str) -> Self {
        let mut req = format!("ws://{}/sync", server.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut cfg = ClientConfig::new(format!("coordinator-{}", uuid::Uuid::new_v4().simple()));
        cfg.ephemeral = true;
        cfg.catch_up = false;
        Self {
            ws,
            peer: ClientPeer::new(cfg, Instant::now()),
            store: MemoryDocs::new(),
        }
    }

    /// The coordinator's copy of `id`, to edit before the next `sync`.
    pub fn doc_mut(&mut self, id: &DocumentId) -> Option<&mut Automerge> {
        self.store.docs.get_mut(id).map(|d| &mut d.doc)
    }

    /// Exchanges sync messages for `id` until the server's heads equal ours.
    pub async fn sync(&mut self, id: DocumentId) {
        if self.store.docs.contains_key(&id) {
            self.peer.local_change(vec![id]);
        } else {
            self.peer.fetch(id);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert_eq!(settle(&mut self.peer, &mut self.store), Outcome::Done);
            while let Some(m) = self.peer.poll_transmit() {
                self.ws
                    .send(Frame::Binary(m.encode().into()))
                    .await
                    .unwrap();
            }
            while let Some(event) = self.peer.poll_event() {
                match event {
                    ClientEvent::Unavailable(gone) if gone == id => {
                        panic!("server does not have {id}")
                    }
                    ClientEvent::Failed(e) => panic!("coordinator sync failed: {e}"),
                    _ => {}
                }
            }
            if let Some(d) = self.store.docs.get(&id)
                && !d.doc.get_heads().is_empty()
                && d.sync.in_sync(&d.doc)
            {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "coordinator sync of {id} does not converge"
            );
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("server answers")
                .expect("socket open")
                .unwrap();
            if let Frame::Binary(b) = frame {
                self.peer.handle_binary(&b, Instant::now());
            }
        }
    }
}

/// A listener that records what it hears.
#[derive(Default)]
pub struct Recorder {
    pub states: std::sync::Mutex<Vec<lotse_core::SyncState>>,
    pub changed: std::sync::Mutex<Vec<DocumentId>>,
}

impl lotse_core::Listener for Recorder {
    fn on_sync_state(&self, state: lotse_core::SyncState) {
        self.states.lock().unwrap().push(state);
    }
    fn on_documents_changed(&self, ids: Vec<DocumentId>) {
        self.changed.lock().unwrap().extend(ids);
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// Every byte of the store's files (database, WAL, shared memory).
pub fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

//! The phone's side of the tests: enrolled phones, and a coordinator's sync peer (the
//! coordinator editing a case through `/sync`, as the dashboard's editor would). The
//! server, its database and the HTTP calls that set things up come from `lotse_testkit`,
//! re-exported here for the tests' `use common::*`.
// Each test binary uses a part of this module and of what it re-exports.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lotse_core::lotse_protocol::automerge::Automerge;
use lotse_core::lotse_protocol::peer::memory::{MemoryDocs, Outcome, settle};
use lotse_core::lotse_protocol::peer::{ClientConfig, ClientEvent};
use lotse_core::lotse_protocol::{ClientPeer, DocumentId};
use lotse_core::{Client, Config};
pub use lotse_testkit::{Backend, TempDir, TestServer, eventually, within};
use tokio_tungstenite::tungstenite::Message as Frame;

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
    let volunteer = server.volunteer(coordinator, "Amira", &["ar", "de"]).await;
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

/// A server on SQLite with a new organisation `org` and one phone enrolled there: the
/// server, the coordinator's token and the phone.
pub async fn server_with_phone(org: &str) -> (TestServer, String, Phone) {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org(org).await;
    let phone = enrolled_phone(&server, &coordinator).await;
    (server, coordinator, phone)
}

pub fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// The coordinator's side of `/sync`: fetches, edits and pushes documents. A plain
/// automerge-repo peer (no catch-up), driven by `ClientPeer` over documents in memory.
pub struct CoordinatorPeer {
    ws: lotse_testkit::http::Socket,
    peer: ClientPeer,
    store: MemoryDocs,
}

impl CoordinatorPeer {
    pub async fn connect(server: &TestServer, token: &str) -> Self {
        let ws = lotse_testkit::connect_sync(server.addr, token)
            .await
            .unwrap();
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
    pub deleted: std::sync::Mutex<Vec<DocumentId>>,
    pub replaced: std::sync::Mutex<Vec<lotse_core::CaseReplaced>>,
}

impl lotse_core::Listener for Recorder {
    fn on_sync_state(&self, state: lotse_core::SyncState) {
        self.states.lock().unwrap().push(state);
    }
    fn on_documents_changed(&self, ids: Vec<DocumentId>) {
        self.changed.lock().unwrap().extend(ids);
    }
    fn on_case_deleted(&self, id: DocumentId) {
        self.deleted.lock().unwrap().push(id);
    }
    fn on_case_replaced(&self, replaced: lotse_core::CaseReplaced) {
        self.replaced.lock().unwrap().push(replaced);
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// A recorder subscribed to `client`, and the subscription, which ends when dropped.
pub fn listen(client: &Client) -> (Arc<Recorder>, lotse_core::Subscription) {
    let heard = recorder();
    let subscription = client.subscribe(heard.clone());
    (heard, subscription)
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

/// Whether `needle` is anywhere in the phone's documents, decrypted, history included.
pub async fn in_history(client: &Client, needle: &str) -> bool {
    client
        .saved_documents()
        .await
        .unwrap()
        .iter()
        .any(|(_, bytes)| contains(bytes, needle.as_bytes()))
}

/// A case created on the phone with one note: what most tests need written before
/// they sync, lose or wipe it.
pub async fn case_with_note(
    client: &Client,
    label: &str,
    topic: lotse_core::lotse_protocol::Topic,
    languages: &[&str],
    note: &str,
) -> DocumentId {
    let input = lotse_core::NewCaseInput {
        label: label.into(),
        topic,
        languages: languages.iter().map(|l| (*l).to_owned()).collect(),
    };
    let case = client.create_case(&input).await.unwrap();
    client.add_note(&case, note).await.unwrap();
    case
}

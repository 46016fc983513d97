//! A test peer for `/sync`, built on the protocol crate: holds documents, runs the
//! automerge sync per document, and counts frames and bytes both ways.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::{Automerge, ChangeHash};
use lotse_protocol::{DocSync, DocumentId, Message, PeerMetadata};
use tokio_tungstenite::tungstenite::Message as Frame;

pub use lotse_testkit::http::Socket;

pub struct SyncClient {
    pub ws: Socket,
    pub peer_id: String,
    pub server_id: String,
    pub docs: BTreeMap<DocumentId, Automerge>,
    pub syncs: HashMap<DocumentId, DocSync>,
    pub frames_sent: usize,
    pub frames_received: usize,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    /// The last `lotse-lease` heard (ms). Taken in by `recv`, which never returns it, so
    /// that tests of other steps need not expect it after every verdict.
    pub lease_ms: Option<u64>,
}

impl SyncClient {
    pub async fn connect(addr: std::net::SocketAddr, token: &str, peer_id: &str) -> Self {
        let ws = lotse_testkit::connect_sync(addr, token).await.unwrap();
        let mut c = Self {
            ws,
            peer_id: peer_id.to_owned(),
            server_id: String::new(),
            docs: BTreeMap::new(),
            syncs: HashMap::new(),
            frames_sent: 0,
            frames_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            lease_ms: None,
        };
        c.join().await;
        c
    }

    /// The same peer on a new socket: the old one is closed first, the documents it holds
    /// carry over, its sync states start afresh, and it has joined.
    pub async fn reconnect(self, addr: std::net::SocketAddr, token: &str) -> Self {
        let Self {
            ws, peer_id, docs, ..
        } = self;
        drop(ws);
        let mut c = Self::connect(addr, token, &peer_id).await;
        c.docs = docs;
        c
    }

    /// Fetches `id` as if for the first time: forgets this client's copy and sync state,
    /// asks, and waits until the content has arrived. Only for a document without a sync
    /// session on this connection (not synced on it yet, or `join` sent again since): in
    /// one session the server does not send the same changes twice.
    pub async fn fetch_afresh(&mut self, id: DocumentId) {
        self.docs.remove(&id);
        self.syncs.remove(&id);
        self.fetch(id).await;
    }

    pub async fn join(&mut self) {
        self.send(Message::Join {
            sender_id: self.peer_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(format!("{}-storage", self.peer_id)),
                is_ephemeral: Some(false),
            },
            supported_protocol_versions: vec!["1".into()],
        })
        .await;
        match self.recv().await {
            Some(Message::Peer {
                sender_id,
                target_id,
                ..
            }) => {
                assert_eq!(target_id, self.peer_id);
                self.server_id = sender_id;
            }
            other => panic!("expected peer, got {other:?}"),
        }
    }

    pub async fn send(&mut self, m: Message) {
        let bytes = m.encode();
        self.frames_sent += 1;
        self.bytes_sent += bytes.len();
        self.ws.send(Frame::Binary(bytes.into())).await.unwrap();
    }

    /// Like `send`, for tests where the server may vanish mid-way.
    pub async fn try_send(&mut self, m: Message) -> bool {
        let bytes = m.encode();
        self.frames_sent += 1;
        self.bytes_sent += bytes.len();
        self.ws.send(Frame::Binary(bytes.into())).await.is_ok()
    }

    pub async fn send_frame(&mut self, f: Frame) {
        self.ws.send(f).await.unwrap();
    }

    /// The next protocol message; `None` when the server closed the socket.
    pub async fn recv(&mut self) -> Option<Message> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("server answered within 10 s")
    }

    /// `Err` on timeout, `Ok(None)` on close.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Message>, ()> {
        loop {
            let frame = tokio::time::timeout(d, self.ws.next())
                .await
                .map_err(|_| ())?;
            match frame {
                Some(Ok(Frame::Binary(b))) => {
                    self.frames_received += 1;
                    self.bytes_received += b.len();
                    match Message::decode(&b).unwrap() {
                        Message::Lease { lease_ms, .. } => self.lease_ms = Some(lease_ms),
                        m => return Ok(Some(m)),
                    }
                }
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    pub fn heads(&self, id: &DocumentId) -> Vec<ChangeHash> {
        self.docs[id].get_heads()
    }

    fn sync_for(&mut self, id: DocumentId) -> &mut DocSync {
        self.syncs.entry(id).or_default()
    }

    /// Sends our side of the sync for `id` (a `request` when we hold nothing).
    pub async fn offer(&mut self, id: DocumentId) {
        let doc = self.docs.entry(id).or_default();
        let empty = doc.get_heads().is_empty();
        let doc = self.docs.get(&id).unwrap().clone();
        if let Some(data) = self.sync_for(id).generate(&doc) {
            let (sender_id, target_id) = (self.peer_id.clone(), self.server_id.clone());
            let m = if empty {
                Message::Request {
                    sender_id,
                    target_id,
                    document_id: id,
                    data,
                }
            } else {
                Message::Sync {
                    sender_id,
                    target_id,
                    document_id: id,
                    data,
                }
            };
            self.send(m).await;
        }
    }

    /// Handles one incoming message; returns it for the caller to inspect.
    pub async fn handle(&mut self, m: Message) -> Message {
        if let Message::Sync {
            document_id, data, ..
        } = &m
        {
            let id = *document_id;
            let mut doc = self.docs.remove(&id).unwrap_or_default();
            self.sync_for(id).receive(&mut doc, data).unwrap();
            self.docs.insert(id, doc);
            self.offer_existing(id).await;
        }
        m
    }

    async fn offer_existing(&mut self, id: DocumentId) {
        let doc = self.docs.get(&id).unwrap().clone();
        if let Some(data) = self.sync_for(id).generate(&doc) {
            let m = Message::Sync {
                sender_id: self.peer_id.clone(),
                target_id: self.server_id.clone(),
                document_id: id,
                data,
            };
            self.send(m).await;
        }
    }

    /// Syncs the given documents until the server stays quiet for `quiet`; returns the
    /// non-sync messages seen (e.g. doc-unavailable).
    pub async fn sync_docs(&mut self, ids: &[DocumentId], quiet: Duration) -> Vec<Message> {
        for id in ids {
            self.offer(*id).await;
        }
        self.drain(quiet).await
    }

    pub async fn drain(&mut self, quiet: Duration) -> Vec<Message> {
        let mut other = Vec::new();
        while let Ok(Some(m)) = self.recv_within(quiet).await {
            let m = self.handle(m).await;
            if !matches!(m, Message::Sync { .. }) {
                other.push(m);
            }
        }
        other
    }

    /// `lotse-catchup` over everything this client holds.
    pub fn catchup_message(&self) -> Message {
        let held: Vec<(DocumentId, Vec<ChangeHash>)> = self
            .docs
            .iter()
            .map(|(id, d)| (*id, d.get_heads()))
            .collect();
        Message::Catchup {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            digest: lotse_protocol::digest(held.iter().map(|(id, h)| (id, h.as_slice()))),
            count: held.len() as u64,
        }
    }

    /// Sends `lotse-catchup` and reads up to the server's verdict (`lotse-in-sync` or
    /// `lotse-manifest`), applying sync messages on the way. Returns the verdict and the
    /// other messages that came before it; the server answers in order, so the verdict
    /// closes everything it sent before reading the catch-up.
    pub async fn catch_up(&mut self) -> (Message, Vec<Message>) {
        self.send(self.catchup_message()).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Some(m @ (Message::InSync { .. } | Message::Manifest { .. })) => {
                    return (m, before);
                }
                Some(m) => {
                    let m = self.handle(m).await;
                    if !matches!(m, Message::Sync { .. }) {
                        before.push(m);
                    }
                }
                None => panic!("the server closed the socket during catch-up"),
            }
        }
    }

    /// Asks for `id` and expects `doc-unavailable` (missing or denied), nothing else.
    pub async fn expect_unavailable(&mut self, id: DocumentId) {
        self.offer(id).await;
        match self.recv().await {
            Some(Message::DocUnavailable { document_id, .. }) => assert_eq!(document_id, id),
            other => panic!("expected doc-unavailable for {id}, got {other:?}"),
        }
    }

    /// Fetches a document the server holds: asks, then waits (with a deadline) until
    /// its content has arrived.
    pub async fn fetch(&mut self, id: DocumentId) {
        self.offer(id).await;
        self.wait_for(id, Duration::from_secs(20), |d| !d.get_heads().is_empty())
            .await;
    }

    /// Keeps the sync of `id` going (answering the server's messages) until the server
    /// has stored exactly the heads this client holds: proof that what we sent is the
    /// server's state, for checks that read it another way (REST, dashboard).
    pub async fn wait_until_stored(&mut self, store: &lotse_server::store::Store, id: DocumentId) {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut ours = self.heads(&id);
            ours.sort();
            if let Some(row) = store.document(&id).await.unwrap() {
                let mut stored = row.heads;
                stored.sort();
                if stored == ours {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the server never stored {id} at this client's heads"
            );
            if let Ok(Some(m)) = self.recv_within(Duration::from_millis(100)).await {
                self.handle(m).await;
            }
        }
    }

    /// Hands the server `doc`, a document this client has just created as `id`: offers it
    /// and keeps the sync going until the server has stored it at exactly the heads it
    /// was created with. Anything but a sync message on the way fails the test.
    pub async fn offer_new_until_stored(
        &mut self,
        store: &lotse_server::store::Store,
        id: DocumentId,
        doc: Automerge,
    ) {
        let heads = doc.get_heads();
        self.docs.insert(id, doc);
        self.offer(id).await;
        // The automerge exchange takes a few messages before the changes travel. The
        // server stores before it answers, so its answer means the document is durable.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.document(&id).await.unwrap().map(|d| d.heads) != Some(heads.clone()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server never stored the case"
            );
            if let Ok(Some(m)) = self.recv_within(Duration::from_millis(100)).await {
                assert!(matches!(m, Message::Sync { .. }), "{m:?}");
                self.handle(m).await;
            }
        }
    }

    /// Waits until the server's sync messages bring `id` to a state where `pred` holds.
    pub async fn wait_for(
        &mut self,
        id: DocumentId,
        deadline: Duration,
        pred: impl Fn(&Automerge) -> bool,
    ) {
        let until = tokio::time::Instant::now() + deadline;
        while !self.docs.get(&id).is_some_and(&pred) {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "condition on {id} not reached in {deadline:?}"
            );
            if let Ok(Some(m)) = self.recv_within(left).await {
                self.handle(m).await;
            }
        }
    }
}

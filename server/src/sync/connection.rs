//! One WebSocket peer: the automerge-repo handshake, per-document sync with access
//! checks, our catch-up extension, live fan-out of other peers' changes and of newly
//! shared documents, revocation, and the connection's part of the audit trail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket};
use lotse_protocol::{DocSync, DocumentId, Message, PROTOCOL_VERSION, PeerMetadata};
use tokio::sync::broadcast;

use crate::app::Event;
use crate::hub::{Creator, DocChanged, Hub, HubError, HubEvent, Received, Relay, Shared};
use crate::store::{Access, AuditEntry, Store, Viewer};

/// Frames above this are refused with a protocol error (the socket layer allows a bit
/// more, so that the peer gets our explanation rather than a bare close code).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
const PING_EVERY: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);

/// A full batch of audit entries is written at once, without waiting for the timer.
const AUDIT_BATCH: usize = 64;
/// Pending audit entries are written at the latest this long after the first of them.
const AUDIT_EVERY: Duration = Duration::from_secs(1);
/// After a failed write, the next try waits this long (not for the next full batch).
const AUDIT_RETRY: Duration = Duration::from_secs(5);
/// While writes fail, at most this many entries wait; older ones are given up.
const AUDIT_KEEP: usize = 10_000;

const SYNCED: &str = "document.sync";
const CHANGED: &str = "document.change";
const CREATED: &str = "document.create";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The authenticated peer behind a socket.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub viewer: Viewer,
    pub device_id: Option<String>,
    /// Coordinator id or device id: scopes persisted sync states.
    pub principal: String,
    /// Who the audit trail names: `coordinator` or `device`, and that id.
    pub actor_kind: &'static str,
    pub actor_id: String,
}

struct Conn {
    id: u64,
    hub: Arc<Hub>,
    store: Store,
    who: PeerIdentity,
    creator: Creator,
    peer_id: Option<String>,
    /// Where this peer's sync states persist; `None` for ephemeral peers.
    peer_key: Option<String>,
    syncs: HashMap<DocumentId, DocSync>,
    allowed: HashSet<DocumentId>,
    denied: HashSet<DocumentId>,
    /// The peer spoke our extension first, so we may send ours.
    extended: bool,
    touched: bool,
    /// When this device's last sync was last written (at most once a minute).
    recorded: Option<Instant>,
    audit: AuditTrail,
}

/// Why a connection ends with an `error` message.
struct Violation(String);

enum Step {
    Continue,
    Close,
}

pub async fn run(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    store: Store,
    who: PeerIdentity,
    mut events: broadcast::Receiver<Event>,
) {
    let mut changes = hub.subscribe();
    let audit = AuditTrail::new(store.clone(), &who);
    let mut conn = Conn {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        creator: Creator {
            organisation_id: who.viewer.organisation_id.clone(),
            volunteer_id: who.viewer.volunteer_id.clone(),
        },
        hub,
        store,
        who,
        peer_id: None,
        peer_key: None,
        syncs: HashMap::new(),
        allowed: HashSet::new(),
        denied: HashSet::new(),
        extended: false,
        touched: false,
        recorded: None,
        audit,
    };
    let span = tracing::info_span!("sync", conn = conn.id, principal = %conn.who.principal);
    let _enter = span.enter();
    tracing::debug!("sync connection opened");
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = Instant::now();
    loop {
        let step = tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(frame)) => conn.on_frame(&mut socket, frame).await,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "socket error");
                        Step::Close
                    }
                    None => Step::Close,
                }
            }
            changed = changes.recv() => match changed {
                Ok(HubEvent::Changed(c)) => conn.on_changed(&mut socket, c).await,
                Ok(HubEvent::Ephemeral(r)) => conn.on_relay(&mut socket, &r).await,
                Ok(HubEvent::Shared(s)) => conn.on_shared(&mut socket, &s).await,
                Err(broadcast::error::RecvError::Lagged(_)) => conn.on_lagged(&mut socket).await,
                Err(broadcast::error::RecvError::Closed) => Step::Close,
            },
            event = events.recv() => match event {
                Ok(Event::DeviceRevoked { device_id }) if conn.who.device_id.as_deref() == Some(device_id.as_str()) => {
                    conn.revoked(&mut socket).await;
                    Step::Close
                }
                _ => Step::Continue,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > DEAD_AFTER {
                    tracing::debug!("peer stopped answering");
                    Step::Close
                } else if socket.send(Frame::Ping(Vec::new().into())).await.is_err() {
                    Step::Close
                } else {
                    Step::Continue
                }
            }
            () = until(conn.audit.due), if conn.audit.due.is_some() => {
                conn.audit.flush().await;
                Step::Continue
            }
        };
        if let Step::Close = step {
            break;
        }
        if conn.audit.batch_full() {
            conn.audit.flush().await;
        }
    }
    conn.finish().await;
    tracing::debug!("sync connection closed");
}

impl Conn {
    async fn on_frame(&mut self, socket: &mut WebSocket, frame: Frame) -> Step {
        let result = match frame {
            Frame::Binary(bytes) if bytes.len() > MAX_FRAME_BYTES => Err(Violation(format!(
                "frame of {} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes",
                bytes.len()
            ))),
            Frame::Binary(bytes) => match Message::decode(&bytes) {
                Ok(message) => self.on_message(socket, message).await,
                Err(e) => Err(Violation(format!("malformed message: {e}"))),
            },
            Frame::Text(_) => Err(Violation(
                "text frames are not part of the protocol; send CBOR in binary frames".into(),
            )),
            Frame::Close(_) => return Step::Close,
            Frame::Ping(_) | Frame::Pong(_) => Ok(Step::Continue),
        };
        match result {
            Ok(step) => step,
            Err(Violation(reason)) => {
                tracing::info!(%reason, "protocol violation; closing");
                self.send_error(socket, &reason).await;
                Step::Close
            }
        }
    }

    async fn send(&self, socket: &mut WebSocket, message: Message) -> Result<(), Violation> {
        socket
            .send(Frame::Binary(message.encode().into()))
            .await
            .map_err(|_| Violation("socket closed".into()))
    }

    async fn send_error(&self, socket: &mut WebSocket, reason: &str) {
        let message = Message::Error {
            sender_id: self.hub.peer_id.clone(),
            target_id: self.peer_id.clone(),
            message: reason.to_owned(),
        };
        let _ = socket.send(Frame::Binary(message.encode().into())).await;
        let _ = socket
            .send(Frame::Close(Some(CloseFrame {
                code: 1008,
                reason: "protocol error".into(),
            })))
            .await;
    }

    fn target(&self) -> String {
        self.peer_id.clone().unwrap_or_default()
    }

    async fn on_message(
        &mut self,
        socket: &mut WebSocket,
        message: Message,
    ) -> Result<Step, Violation> {
        if let Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions,
        } = &message
        {
            return self
                .on_join(
                    socket,
                    sender_id,
                    peer_metadata,
                    supported_protocol_versions,
                )
                .await;
        }
        let Some(peer_id) = &self.peer_id else {
            return Err(Violation(format!(
                "{} before join: the first message must be join",
                message.type_name()
            )));
        };
        if message.sender_id() != peer_id {
            return Err(Violation(
                "senderId does not match the one given in join".into(),
            ));
        }
        match message {
            Message::Request {
                document_id, data, ..
            } => {
                self.on_sync(socket, document_id, &data, true).await?;
            }
            Message::Sync {
                document_id, data, ..
            } => {
                self.on_sync(socket, document_id, &data, false).await?;
            }
            Message::Catchup { digest, .. } => self.on_catchup(socket, digest).await?,
            Message::Leave { .. } => return Ok(Step::Close),
            Message::Error { message, .. } => {
                tracing::info!(reason = %message.chars().take(200).collect::<String>(), "peer reported an error");
                return Ok(Step::Close);
            }
            Message::Ephemeral {
                sender_id,
                document_id,
                session_id,
                count,
                data,
                ..
            } => {
                if session_id.len() > 200 || data.len() > 64 * 1024 {
                    return Err(Violation("ephemeral message too large".into()));
                }
                // Only to a document the peer may see; otherwise dropped silently, as a
                // missing document would be.
                if matches!(self.access(document_id).await?, Access::Allowed(_)) {
                    self.hub.relay(Relay {
                        id: document_id,
                        origin: self.id,
                        sender_id,
                        session_id,
                        count,
                        data,
                    });
                }
            }
            Message::DocUnavailable { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::RemoteHeadsChanged { .. } => {}
            Message::Peer { .. }
            | Message::InSync { .. }
            | Message::Manifest { .. }
            | Message::Revoked { .. }
            | Message::Shared { .. }
            | Message::Join { .. } => {
                return Err(Violation(format!(
                    "{} is a server message",
                    message.type_name()
                )));
            }
        }
        Ok(Step::Continue)
    }

    async fn on_join(
        &mut self,
        socket: &mut WebSocket,
        sender_id: &str,
        metadata: &PeerMetadata,
        versions: &[String],
    ) -> Result<Step, Violation> {
        if sender_id.is_empty() || sender_id.len() > 200 {
            return Err(Violation("senderId must be 1 to 200 characters".into()));
        }
        if let Some(bound) = &self.peer_id
            && bound != sender_id
        {
            return Err(Violation("a connection cannot change its senderId".into()));
        }
        if !versions.iter().any(|v| v == PROTOCOL_VERSION) {
            return Err(Violation(format!(
                "unsupported protocol versions {versions:?}; this server speaks \"{PROTOCOL_VERSION}\""
            )));
        }
        // A second join restarts the peer's sync, as automerge-repo does.
        self.syncs.clear();
        self.peer_id = Some(sender_id.to_owned());
        self.peer_key = match (metadata.is_ephemeral, &metadata.storage_id) {
            (Some(true), _) => None,
            (_, Some(storage)) if storage.len() <= 200 => {
                Some(format!("{}:{storage}", self.who.principal))
            }
            // Our devices have one storage each; their principal names it.
            (_, _) if self.who.device_id.is_some() => Some(self.who.principal.clone()),
            _ => None,
        };
        self.send(
            socket,
            Message::Peer {
                sender_id: self.hub.peer_id.clone(),
                target_id: sender_id.to_owned(),
                peer_metadata: PeerMetadata {
                    storage_id: Some(self.hub.storage_id.clone()),
                    is_ephemeral: Some(false),
                },
                selected_protocol_version: PROTOCOL_VERSION.to_owned(),
            },
        )
        .await?;
        Ok(Step::Continue)
    }

    async fn access(&mut self, id: DocumentId) -> Result<Access, Violation> {
        if self.allowed.contains(&id) {
            return Ok(Access::Allowed(Vec::new()));
        }
        if self.denied.contains(&id) {
            return Ok(Access::Denied);
        }
        let access = self
            .store
            .document_access(&self.who.viewer, &id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "access check failed");
                Violation("the server could not check access; try again later".into())
            })?;
        match &access {
            Access::Allowed(_) => {
                self.allowed.insert(id);
            }
            Access::Denied => {
                self.denied.insert(id);
            }
            Access::Unknown => {}
        }
        Ok(access)
    }

    async fn sync_state(&mut self, id: DocumentId) -> DocSync {
        if let Some(key) = &self.peer_key
            && let Ok(Some(bytes)) = self.store.sync_state(&id, key).await
            && let Ok(state) = DocSync::from_persisted(&bytes)
        {
            return state;
        }
        DocSync::new()
    }

    async fn unavailable(&self, socket: &mut WebSocket, id: DocumentId) -> Result<(), Violation> {
        self.send(
            socket,
            Message::DocUnavailable {
                sender_id: self.hub.peer_id.clone(),
                target_id: self.target(),
                document_id: id,
            },
        )
        .await
    }

    async fn on_sync(
        &mut self,
        socket: &mut WebSocket,
        id: DocumentId,
        data: &[u8],
        is_request: bool,
    ) -> Result<(), Violation> {
        let create_only = match self.access(id).await? {
            Access::Denied => return self.unavailable(socket, id).await,
            Access::Unknown if is_request => return self.unavailable(socket, id).await,
            Access::Unknown => true,
            Access::Allowed(_) => false,
        };
        if !self.syncs.contains_key(&id) {
            let state = self.sync_state(id).await;
            self.syncs.insert(id, state);
        }
        let sync = self.syncs.get_mut(&id).expect("inserted above");
        let received = match self
            .hub
            .receive(id, sync, data, self.id, &self.creator, create_only)
            .await
        {
            Ok(received) => received,
            Err(HubError::NotYours(_)) => {
                self.syncs.remove(&id);
                self.denied.insert(id);
                return self.unavailable(socket, id).await;
            }
            Err(HubError::Session(e)) => {
                return Err(Violation(format!("invalid sync data for {id}: {e}")));
            }
            Err(e) => {
                tracing::error!(document_id = %id, error = %e, "could not apply changes");
                return Err(Violation(
                    "the server could not store your changes; nothing was acknowledged, retry later".into(),
                ));
            }
        };
        // A document the peer just created is theirs from now on. A message that created
        // nothing (no changes for an unknown id) grants nothing: the next one is checked
        // again.
        if !create_only || received.created {
            self.denied.remove(&id);
            self.allowed.insert(id);
        }
        self.touched = true;
        self.audit.received(id, received);
        self.record_sync().await;
        self.reply(socket, id).await?;
        if is_request {
            // A load error is no proof of absence: the peer must not write the document
            // off, so it hears "try again" instead of doc-unavailable.
            let empty = self.hub.is_empty(id).await.map_err(|e| {
                tracing::error!(document_id = %id, error = %e, "could not load document");
                Violation("the server could not load a document; try again later".into())
            })?;
            if empty {
                self.unavailable(socket, id).await?;
            }
        }
        Ok(())
    }

    async fn reply(&mut self, socket: &mut WebSocket, id: DocumentId) -> Result<(), Violation> {
        let Some(sync) = self.syncs.get_mut(&id) else {
            return Ok(());
        };
        let message = self.hub.generate(id, sync).await.map_err(|e| {
            tracing::error!(document_id = %id, error = %e, "could not load document");
            Violation("the server could not load a document; try again later".into())
        })?;
        if let Some(data) = message {
            self.send(
                socket,
                Message::Sync {
                    sender_id: self.hub.peer_id.clone(),
                    target_id: self.target(),
                    document_id: id,
                    data,
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn on_catchup(
        &mut self,
        socket: &mut WebSocket,
        digest: [u8; 32],
    ) -> Result<(), Violation> {
        self.extended = true;
        let docs = self
            .store
            .documents_for(&self.who.viewer)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not list documents");
                Violation("the server could not list your documents; try again later".into())
            })?;
        for (id, _) in &docs {
            self.allowed.insert(*id);
        }
        let ours = lotse_protocol::digest(docs.iter().map(|(id, heads)| (id, heads.as_slice())));
        self.touched = true;
        let message = if ours == digest {
            Message::InSync {
                sender_id: self.hub.peer_id.clone(),
                target_id: self.target(),
            }
        } else {
            Message::Manifest {
                sender_id: self.hub.peer_id.clone(),
                target_id: self.target(),
                entries: docs
                    .iter()
                    .map(|(id, heads)| (*id, lotse_protocol::heads_digest(heads)))
                    .collect(),
            }
        };
        self.send(socket, message).await
    }

    async fn on_changed(&mut self, socket: &mut WebSocket, changed: DocChanged) -> Step {
        if changed.origin == self.id || self.peer_id.is_none() {
            return Step::Continue;
        }
        // Peers that synced the document in this connection, and our own clients for every
        // document they may hold, hear about changes at once.
        let follows = self.syncs.contains_key(&changed.id)
            || (self.extended && self.allowed.contains(&changed.id));
        if !follows {
            return Step::Continue;
        }
        if !self.syncs.contains_key(&changed.id) {
            let state = self.sync_state(changed.id).await;
            self.syncs.insert(changed.id, state);
        }
        match self.reply(socket, changed.id).await {
            Ok(()) => Step::Continue,
            Err(Violation(reason)) => {
                self.send_error(socket, &reason).await;
                Step::Close
            }
        }
    }

    async fn on_relay(&mut self, socket: &mut WebSocket, relay: &Relay) -> Step {
        if relay.origin == self.id || !self.syncs.contains_key(&relay.id) {
            return Step::Continue;
        }
        let message = Message::Ephemeral {
            sender_id: relay.sender_id.clone(),
            target_id: self.target(),
            document_id: relay.id,
            session_id: relay.session_id.clone(),
            count: relay.count,
            data: relay.data.clone(),
        };
        match self.send(socket, message).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close,
        }
    }

    async fn on_shared(&mut self, socket: &mut WebSocket, shared: &Shared) -> Step {
        if shared.origin == self.id {
            return Step::Continue;
        }
        let Some(volunteer) = &self.who.viewer.volunteer_id else {
            return Step::Continue;
        };
        if !shared.volunteer_ids.iter().any(|v| v == volunteer) {
            return Step::Continue;
        }
        self.tell_shared(socket).await
    }

    /// Missed announcements: offer everything this peer syncs, and since a missed one may
    /// have been a share, ask our clients to catch up.
    async fn on_lagged(&mut self, socket: &mut WebSocket) -> Step {
        if let Step::Close = self.resync_all(socket).await {
            return Step::Close;
        }
        self.tell_shared(socket).await
    }

    /// Sends `lotse-shared` to a device that spoke our extension first. Only devices: a
    /// coordinator's session may sync the whole organisation and has nothing to be
    /// granted.
    async fn tell_shared(&mut self, socket: &mut WebSocket) -> Step {
        if !self.extended {
            return Step::Continue;
        }
        let Some(device) = &self.who.device_id else {
            return Step::Continue;
        };
        // The revocation that closes this socket comes through another channel and may
        // still be on its way; a revoked device learns nothing more.
        match self.store.device_is_active(device).await {
            Ok(true) => {}
            Ok(false) => return Step::Continue,
            Err(e) => {
                // Only news is lost: the device catches up on its own schedule.
                tracing::warn!(error = %e, "could not check the device before telling it of shared documents");
                return Step::Continue;
            }
        }
        let message = Message::Shared {
            sender_id: self.hub.peer_id.clone(),
            target_id: self.target(),
        };
        match self.send(socket, message).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close,
        }
    }

    async fn resync_all(&mut self, socket: &mut WebSocket) -> Step {
        let ids: Vec<DocumentId> = self.syncs.keys().copied().collect();
        for id in ids {
            if self.reply(socket, id).await.is_err() {
                return Step::Close;
            }
        }
        Step::Continue
    }

    async fn revoked(&mut self, socket: &mut WebSocket) {
        tracing::info!("device revoked; closing its sync connection");
        if self.extended {
            let _ = self
                .send(
                    socket,
                    Message::Revoked {
                        sender_id: self.hub.peer_id.clone(),
                        target_id: self.target(),
                    },
                )
                .await;
        }
        self.send_error(socket, "this device was revoked").await;
        // Nothing of this device's sync state is worth keeping.
        self.peer_key = None;
        self.touched = false;
    }

    /// Keeps the dashboard's "last sync" of the device current while it syncs.
    async fn record_sync(&mut self) {
        if self
            .recorded
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        if let Some(device) = &self.who.device_id {
            match self.store.record_sync(device).await {
                Ok(()) => self.recorded = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "could not record last sync"),
            }
        }
    }

    /// Persists sync states, the device's last sync and the pending audit entries;
    /// failures cost bytes next time or audit lines, never data, so they are logged rather
    /// than raised.
    async fn finish(&mut self) {
        if let Some(key) = &self.peer_key {
            let states: Vec<(DocumentId, Vec<u8>)> = self
                .syncs
                .iter()
                .map(|(id, s)| (*id, s.persist()))
                .collect();
            if let Err(e) = self.store.save_sync_states(key, &states).await {
                tracing::warn!(error = %e, "could not persist sync states");
            }
        }
        if self.touched
            && let Some(device) = &self.who.device_id
            && let Err(e) = self.store.record_sync(device).await
        {
            tracing::warn!(error = %e, "could not record last sync");
        }
        self.audit.finish().await;
    }
}

/// Resolves at `at`; the run loop polls it only while audit entries are pending.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection's part of the audit trail (DSGVO): which documents its peer synced,
/// changed and created, once per (connection, document, action). Entries are collected
/// here and written in batches between messages (one short transaction at most about
/// once a second, not one per sync step); the in-sync reconnect syncs no document and so
/// writes none.
struct AuditTrail {
    store: Store,
    organisation_id: String,
    actor_kind: &'static str,
    actor_id: String,
    /// What this connection has already noted.
    noted: HashSet<(DocumentId, &'static str)>,
    /// Noted, not yet written, oldest first.
    pending: Vec<AuditEntry>,
    /// When the pending entries are written at the latest; `None` while nothing is pending.
    due: Option<tokio::time::Instant>,
    /// The last write failed: the next try waits for `due`, not for a full batch.
    failing: bool,
    /// Entries given up since the last warning about them.
    dropped: usize,
}

impl AuditTrail {
    fn new(store: Store, who: &PeerIdentity) -> Self {
        Self {
            store,
            organisation_id: who.viewer.organisation_id.clone(),
            actor_kind: who.actor_kind,
            actor_id: who.actor_id.clone(),
            noted: HashSet::new(),
            pending: Vec::new(),
            due: None,
            failing: false,
            dropped: 0,
        }
    }

    /// Notes what a sync message of the peer did to `id`, which it passed the access
    /// check for. A stored document is read from now on (the server answers with its
    /// content): `document.sync`, unless this connection created it, which its
    /// `document.create` already says. Changes the hub committed: `document.change`.
    /// Nothing for a document that is not stored yet (nothing could be read).
    fn received(&mut self, id: DocumentId, received: Received) {
        if received.created {
            self.note(id, CREATED);
            self.noted.insert((id, SYNCED));
        } else if received.stored {
            self.note(id, SYNCED);
        }
        if received.changed {
            self.note(id, CHANGED);
        }
    }

    fn note(&mut self, id: DocumentId, action: &'static str) {
        if !self.noted.insert((id, action)) {
            return;
        }
        self.pending.push(AuditEntry::document(
            &self.organisation_id,
            self.actor_kind,
            &self.actor_id,
            action,
            &id.to_string(),
        ));
        if self.pending.len() > AUDIT_KEEP {
            let excess = self.pending.len() - AUDIT_KEEP;
            self.pending.drain(..excess);
            self.dropped += excess;
        }
        if self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + AUDIT_EVERY);
        }
    }

    /// A full batch waits for no timer, unless writes are failing.
    fn batch_full(&self) -> bool {
        !self.failing && self.pending.len() >= AUDIT_BATCH
    }

    /// Writes what is pending in one transaction. On failure the entries stay for the
    /// next try; the connection goes on.
    async fn flush(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                kept = self.pending.len(),
                "gave up the oldest audit entries of this connection; the database refused them for too long"
            );
            self.dropped = 0;
        }
        if self.pending.is_empty() {
            self.due = None;
            return;
        }
        match self.store.audit(&self.pending).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!(
                        entries = self.pending.len(),
                        "audit entries written after an earlier failure"
                    );
                }
                self.pending.clear();
                self.due = None;
                self.failing = false;
            }
            Err(e) => {
                // Once per run of failures, not once per try.
                if self.failing {
                    tracing::debug!(error = %e, pending = self.pending.len(), "could not write audit entries yet");
                } else {
                    tracing::warn!(
                        error = %e,
                        pending = self.pending.len(),
                        "could not write audit entries; keeping them for the next try"
                    );
                }
                self.failing = true;
                self.due = Some(tokio::time::Instant::now() + AUDIT_RETRY);
            }
        }
    }

    /// The connection ends: one last try, then what could not be written is lost.
    async fn finish(&mut self) {
        self.flush().await;
        if !self.pending.is_empty() {
            tracing::warn!(
                lost = self.pending.len(),
                "could not write the audit entries of a closed connection; they are lost"
            );
            self.pending.clear();
        }
    }
}

impl Drop for AuditTrail {
    /// `finish` leaves nothing behind. Entries are only still pending when the
    /// connection's task ended without it (cancelled at shutdown, or a panic): write them
    /// from a task of their own if the runtime still runs one.
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(lost = entries.len(), "audit entries lost at shutdown");
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.audit(&entries).await {
                tracing::warn!(error = %e, lost = entries.len(), "could not write the audit entries of an aborted connection");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn store() -> (Store, std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("lotse-audit-{}", uuid::Uuid::new_v4()));
        let store = Store::connect(&format!("sqlite://{}/lotse.db", dir.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let org = store.ensure_organisation("Lotsen Test").await.unwrap();
        (store, dir, org.id)
    }

    fn trail(store: &Store, org: &str) -> AuditTrail {
        AuditTrail::new(
            store.clone(),
            &PeerIdentity {
                viewer: Viewer {
                    organisation_id: org.to_owned(),
                    volunteer_id: Some("v".into()),
                },
                device_id: Some("d".into()),
                principal: "device:d".into(),
                actor_kind: "device",
                actor_id: "d".into(),
            },
        )
    }

    async fn stored(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT subject_id FROM audit_events")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn lines_are_noted_once_and_written_in_batches() {
        let (store, dir, org) = store().await;
        let mut audit = trail(&store, &org);
        let id = DocumentId::random();
        audit.note(id, SYNCED);
        audit.note(id, SYNCED);
        audit.note(id, CHANGED);
        assert_eq!(audit.pending.len(), 2);
        assert!(audit.due.is_some());
        assert!(!audit.batch_full());
        for _ in 0..AUDIT_BATCH {
            audit.note(DocumentId::random(), SYNCED);
        }
        assert!(audit.batch_full());
        audit.flush().await;
        assert!(audit.pending.is_empty() && audit.due.is_none());
        assert_eq!(stored(&store).await.len(), AUDIT_BATCH + 2);
        // Noted once per connection, also after the write.
        audit.note(id, SYNCED);
        assert!(audit.pending.is_empty());
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn failed_writes_keep_the_newest_lines_for_the_next_try() {
        let (store, dir, org) = store().await;
        let mut audit = trail(&store, &org);
        sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_away")
            .execute(store.pool())
            .await
            .unwrap();
        let first: Vec<DocumentId> = (0..3).map(|_| DocumentId::random()).collect();
        for id in &first {
            audit.note(*id, SYNCED);
        }
        audit.flush().await;
        assert_eq!(audit.pending.len(), 3, "kept for the next try");
        assert!(audit.failing && audit.due.is_some());
        for _ in 0..AUDIT_KEEP {
            audit.note(DocumentId::random(), SYNCED);
        }
        assert!(!audit.batch_full(), "a failing store waits for the timer");
        assert_eq!(audit.pending.len(), AUDIT_KEEP);
        assert_eq!(audit.dropped, 3, "the oldest are given up");

        sqlx::query("ALTER TABLE audit_events_away RENAME TO audit_events")
            .execute(store.pool())
            .await
            .unwrap();
        audit.flush().await;
        assert!(audit.pending.is_empty() && !audit.failing && audit.dropped == 0);
        let ids = stored(&store).await;
        assert_eq!(ids.len(), AUDIT_KEEP);
        assert!(first.iter().all(|id| !ids.contains(&id.to_string())));
        audit.finish().await;
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

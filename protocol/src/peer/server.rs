//! The server's side of one connection: the automerge-repo handshake, per-document sync
//! behind an access check, the catch-up extension, live fan-out of other peers' changes,
//! relayed ephemeral messages, announcements of new shares, revocation, and remembering
//! who asked for a document that did not exist yet.
//!
//! The machine owns the connection's automerge sync state per document and lends it to the
//! driver in a [`DocTask`], because only the driver can hold the document's lock, apply,
//! commit and generate in one go (DESIGN.md decision 3: persist, then advertise).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use automerge::{Automerge, ChangeHash};

use super::{Ephemeral, Queues};
use crate::catchup::{digest, heads_digest};
use crate::docid::DocumentId;
use crate::quota::Refusal;
use crate::session::{DocSync, SessionError};
use crate::wire::{Message, PROTOCOL_VERSION, PeerMetadata, Superseded};

/// Frames above this are refused with a protocol error (the socket layer allows a bit
/// more, so that the peer gets our explanation rather than a bare close code).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// The largest ephemeral payload relayed; presence and cursors are far smaller.
pub const MAX_EPHEMERAL_BYTES: usize = 64 * 1024;
/// Sender, storage and session ids longer than this are refused.
const MAX_ID_CHARS: usize = 200;
/// How many ids of documents a peer asked for before they existed are remembered.
const MAX_WANTED: usize = 1024;
/// Access decisions kept per connection; beyond, the cache starts afresh (and asks the
/// database again), so a peer asking for endless random ids cannot grow it.
const MAX_CACHED_DECISIONS: usize = 16_384;
/// Documents one connection may sync; far above any volunteer's or network's holdings.
pub const MAX_SYNCED_DOCUMENTS: usize = 100_000;
/// Ephemeral messages (presence, cursors) taken from one connection per second; more are
/// dropped unseen, so that one client cannot flood every other peer of a document.
pub const EPHEMERAL_PER_SECOND: u32 = 20;
const PING_EVERY: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);

/// Sync states to persist, by document.
pub type PersistedStates = Vec<(DocumentId, Vec<u8>)>;

/// Who is on the other end, as authenticated by the driver before the first frame.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our `senderId` in every message.
    pub server_id: String,
    /// Our storage id, announced in `peer`.
    pub storage_id: String,
    /// Coordinator id or device id: scopes persisted sync states.
    pub principal: String,
    /// A device (one storage each; may hear `lotse-shared`), not a coordinator's session.
    pub is_device: bool,
    /// How long a device keeps its documents readable without contact (`lotse-lease`,
    /// sent with every catch-up verdict); `None`: no lease is announced.
    pub lease_ms: Option<u64>,
}

/// The access decision for one document and this peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The peer may sync it.
    Allowed,
    /// It does not exist: a `sync` with changes may create it, a `request` finds nothing.
    Unknown,
    /// It exists and is not the peer's. Answered exactly like [`Access::Unknown`].
    Denied,
    /// The network deleted it (a tombstone): it can never be created again. Our clients
    /// that may have held it hear `lotse-deleted` (naming where the case lives on, if it
    /// was rewritten into a newer generation); anyone else `doc-unavailable`.
    Deleted(Option<Box<Superseded>>),
}

/// One sync step on one document, lent to the driver: apply the peer's message (if any)
/// under the document's lock, commit what it changed, then generate our reply with
/// [`DocTask::finish`], and hand the task back with [`ServerPeer::handle_exchange`].
#[derive(Debug)]
pub struct DocTask {
    pub id: DocumentId,
    /// The peer's sync message; `None` when we only announce our own changes.
    pub data: Option<Vec<u8>>,
    /// The peer may only create the document: refuse with [`ExchangeError::NotYours`] if it
    /// exists by the time the lock is held.
    pub create_only: bool,
    sync: DocSync,
    is_request: bool,
}

impl DocTask {
    /// The sync state to apply `data` with (`automerge` needs it mutably).
    pub fn sync_mut(&mut self) -> &mut DocSync {
        &mut self.sync
    }

    /// Applies `data` to `doc`: `Ok(true)` if the document changed and must be committed
    /// before [`Self::finish`] is called.
    pub fn apply(&mut self, doc: &mut Automerge) -> Result<bool, SessionError> {
        match &self.data {
            Some(data) => self.sync.receive(doc, data),
            None => Ok(false),
        }
    }

    /// Our next message for the peer from the committed document.
    pub fn finish(&mut self, doc: &Automerge) -> Exchanged {
        Exchanged {
            reply: self.sync.generate(doc),
            empty: doc.get_heads().is_empty(),
            created: false,
        }
    }
}

/// What a [`DocTask`] came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchanged {
    /// Our next sync message, if there is anything to say.
    pub reply: Option<Vec<u8>>,
    /// The server holds no content for the document (a `request` is then answered
    /// `doc-unavailable` as well).
    pub empty: bool,
    /// The peer's changes created the document: it is theirs from now on.
    pub created: bool,
}

/// Why a [`DocTask`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The peer was only allowed to create the document, and it exists by now.
    NotYours,
    /// The sync message is not valid; the text is for the peer.
    Invalid(String),
    /// The changes could not be committed; nothing was acknowledged.
    Storage,
    /// The stored document could not be loaded.
    Load,
    /// The changes would break a quota (or borrow another writer's actor): nothing of them
    /// was stored, and the driver dropped what it had applied in memory. Only this
    /// document is refused; the connection goes on.
    Refused(Refusal),
    /// The network deleted the document meanwhile: nothing was stored.
    Deleted,
}

/// What the driver must do for the machine. The ones marked "answer" stop the machine
/// until the answer arrives through the named `handle_*` call.
#[derive(Debug)]
pub enum ServerEffect {
    /// Answer: [`ServerPeer::handle_access`].
    CheckAccess(DocumentId),
    /// Answer: [`ServerPeer::handle_sync_state`] with what is persisted for
    /// (`document`, `peer_key`).
    LoadSyncState { id: DocumentId, peer_key: String },
    /// Answer: [`ServerPeer::handle_exchange`].
    Exchange(DocTask),
    /// Answer: [`ServerPeer::handle_documents`] with every document the peer may hold and
    /// the heads the server has stored for it.
    ListDocuments,
    /// Answer: [`ServerPeer::handle_device_active`].
    CheckDeviceActive,
    /// Relay an ephemeral message to the document's other connections.
    Relay(Ephemeral),
    /// Send a transport-level ping.
    Ping,
    /// Close the socket, after sending what [`ServerPeer::poll_transmit`] still holds;
    /// `protocol_error` asks for close code 1008.
    Close { protocol_error: bool },
}

/// What the machine tells the driver, for its own bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The peer joined (again); its sync states persist under `peer_key` (none: ephemeral).
    Joined { peer_key: Option<String> },
    /// The peer sent a sync message (the device's "last sync" is worth recording).
    Touched,
    /// The connection ends because the peer broke the protocol; the reason went to it.
    Violation(String),
    /// The peer reported an error and left (first 200 characters).
    PeerError(String),
    /// The device was revoked; the connection closes.
    Revoked,
    /// The session ended ([`ServerPeer::handle_ended`]); the connection closes.
    Ended,
}

/// Where the machine waits for an answer.
#[derive(Debug)]
enum Waiting {
    Access { id: DocumentId, then: AfterAccess },
    SyncState { id: DocumentId, then: Step },
    Exchange { id: DocumentId },
    Documents { digest: [u8; 32] },
    DeviceActive,
}

#[derive(Debug)]
enum AfterAccess {
    Sync {
        data: Vec<u8>,
        is_request: bool,
    },
    Ephemeral(Box<Ephemeral>),
    /// A document the peer asked for before it existed has changed: send it if allowed.
    Wanted,
    /// A document the peer follows changed: send it if still allowed, else stop following.
    Push,
    /// Another peer's ephemeral message: relay it if still allowed.
    Relay(Box<Ephemeral>),
}

/// One exchange to run once the document's sync state is at hand.
#[derive(Debug)]
struct Step {
    data: Option<Vec<u8>>,
    create_only: bool,
    is_request: bool,
}

/// An exchange that only tells the peer what we have.
const ANNOUNCE: Step = Step {
    data: None,
    create_only: false,
    is_request: false,
};

#[derive(Debug)]
enum Job {
    Message(Message),
    Changed(DocumentId),
    Relay(Box<Ephemeral>),
    Shared,
    Revoke,
    End(String),
    Deleted(DocumentId),
}

/// The server's side of one connection.
#[derive(Debug)]
pub struct ServerPeer {
    cfg: ServerConfig,
    peer_id: Option<String>,
    peer_key: Option<String>,
    syncs: HashMap<DocumentId, DocSync>,
    allowed: HashSet<DocumentId>,
    denied: HashSet<DocumentId>,
    /// Asked for (`request`) while the server had nothing; told when it arrives.
    wanted: VecDeque<DocumentId>,
    /// Refused in this connection: what the peer sends for them is not applied again (it
    /// would be the same changes), and their news is not sent (the reply would bring them).
    refused: HashSet<DocumentId>,
    /// Deleted documents answered `doc-unavailable` before the peer spoke our extension:
    /// told `lotse-deleted` once it does, ahead of its catch-up verdict.
    deleted_untold: Vec<(DocumentId, Option<Box<Superseded>>)>,
    /// The peer spoke our extension first, so we may send ours.
    extended: bool,
    touched: bool,
    closed: bool,
    q: Queues<Job, Waiting, ServerEffect, ServerEvent>,
    last_heard: Instant,
    next_ping: Instant,
    /// The current second of ephemeral messages and how many came in it.
    ephemeral_window: (Instant, u32),
}

impl ServerPeer {
    pub fn new(cfg: ServerConfig, now: Instant) -> Self {
        Self {
            cfg,
            peer_id: None,
            peer_key: None,
            syncs: HashMap::new(),
            allowed: HashSet::new(),
            denied: HashSet::new(),
            wanted: VecDeque::new(),
            refused: HashSet::new(),
            deleted_untold: Vec::new(),
            extended: false,
            touched: false,
            closed: false,
            q: Queues::default(),
            last_heard: now,
            next_ping: now + PING_EVERY,
            ephemeral_window: (now, 0),
        }
    }

    // ---- input -------------------------------------------------------------------

    /// A binary frame from the peer.
    pub fn handle_binary(&mut self, frame: &[u8], now: Instant) {
        self.last_heard = now;
        if self.closed {
            return;
        }
        if frame.len() > MAX_FRAME_BYTES {
            return self.violate(format!(
                "frame of {} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes",
                frame.len()
            ));
        }
        match Message::decode(frame) {
            Ok(message) => self.take(message, now),
            Err(e) => self.violate(format!("malformed message: {e}")),
        }
    }

    /// Queues a decoded message, unless it is an ephemeral one beyond this second's share.
    fn take(&mut self, message: Message, now: Instant) {
        if matches!(message, Message::Ephemeral { .. }) {
            let (start, count) = &mut self.ephemeral_window;
            if now.duration_since(*start) >= Duration::from_secs(1) {
                (*start, *count) = (now, 0);
            }
            *count += 1;
            if *count > EPHEMERAL_PER_SECOND {
                return;
            }
        }
        self.push(Job::Message(message));
    }

    /// A text frame: not part of the protocol.
    pub fn handle_text(&mut self, now: Instant) {
        self.last_heard = now;
        self.violate("text frames are not part of the protocol; send CBOR in binary frames".into());
    }

    /// Any other sign of life from the peer (a pong).
    pub fn handle_heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A decoded message (for drivers and tests that decode themselves).
    pub fn handle_message(&mut self, message: Message, now: Instant) {
        self.last_heard = now;
        self.take(message, now);
    }

    /// Another connection (or instance) changed the document.
    pub fn handle_doc_changed(&mut self, id: DocumentId) {
        self.push(Job::Changed(id));
    }

    /// An ephemeral message from another connection of the document.
    pub fn handle_relay(&mut self, relay: &Ephemeral) {
        if self.syncs.contains_key(&relay.id) {
            self.push(Job::Relay(Box::new(relay.clone())));
        }
    }

    /// Who may see what changed (a share withdrawn, a volunteer taken off a case): forget
    /// the cached decisions for `id` (or all, `None`), so that every later send asks
    /// again. A document the peer may no longer see is then neither synced nor relayed.
    pub fn handle_access_changed(&mut self, id: Option<DocumentId>) {
        match id {
            Some(id) => {
                self.allowed.remove(&id);
                self.denied.remove(&id);
            }
            None => {
                self.allowed.clear();
                self.denied.clear();
            }
        }
    }

    /// The network deleted the document: a peer that follows it is told at once; the
    /// rest learn when they next ask (the access check answers [`Access::Deleted`]).
    pub fn handle_doc_deleted(&mut self, id: DocumentId) {
        self.push(Job::Deleted(id));
    }

    /// Documents were shared with this peer's volunteer.
    pub fn handle_shared(&mut self) {
        self.push(Job::Shared);
    }

    /// The driver missed announcements: offer everything this peer syncs, and since a
    /// missed one may have been a share, tell the peer to catch up.
    pub fn handle_lagged(&mut self) {
        let mut ids: Vec<DocumentId> = self.syncs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.push(Job::Changed(id));
        }
        self.push(Job::Shared);
    }

    /// The device was revoked: tell it (if it speaks our extension) and close.
    pub fn handle_revoked(&mut self) {
        // Ahead of anything queued: a revoked device learns nothing more.
        self.q.jobs.clear();
        self.q.jobs.push_back(Job::Revoke);
        self.pump();
    }

    /// The peer's right to this connection ended otherwise than by revocation (a
    /// coordinator logged out, or the session expired): tell it why and close, with
    /// nothing queued sent first. Its sync states stay: the same person may come back.
    pub fn handle_ended(&mut self, reason: &str) {
        self.q.jobs.clear();
        self.q.jobs.push_back(Job::End(reason.to_owned()));
        self.pump();
    }

    /// The time has come that [`Self::poll_timeout`] asked for.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed || now < self.next_ping {
            return;
        }
        if now.duration_since(self.last_heard) > DEAD_AFTER {
            self.closed = true;
            self.q.effects.push_back(ServerEffect::Close {
                protocol_error: false,
            });
            return;
        }
        self.q.effects.push_back(ServerEffect::Ping);
        self.next_ping = now + PING_EVERY;
    }

    // ---- answers -----------------------------------------------------------------

    pub fn handle_access(&mut self, id: DocumentId, access: Result<Access, ()>) {
        let Some(Waiting::Access { id: asked, then }) = self.q.waiting.take() else {
            return;
        };
        debug_assert_eq!(asked, id);
        let access = match access {
            Ok(access) => access,
            Err(()) => {
                return self.violate("the server could not check access; try again later".into());
            }
        };
        if self.allowed.len().max(self.denied.len()) >= MAX_CACHED_DECISIONS {
            self.allowed.clear();
            self.denied.clear();
        }
        match access {
            Access::Allowed => {
                self.allowed.insert(id);
                self.denied.remove(&id);
            }
            Access::Denied | Access::Deleted(_) => {
                self.denied.insert(id);
                self.allowed.remove(&id);
            }
            Access::Unknown => {}
        }
        self.after_access(id, access, then);
        self.pump();
    }

    pub fn handle_sync_state(&mut self, id: DocumentId, persisted: Option<Vec<u8>>) {
        let Some(Waiting::SyncState { id: asked, then }) = self.q.waiting.take() else {
            return;
        };
        debug_assert_eq!(asked, id);
        // An unreadable state costs bytes, never data: start afresh.
        let state = persisted
            .and_then(|bytes| DocSync::from_persisted(&bytes).ok())
            .unwrap_or_default();
        self.syncs.insert(id, state);
        self.exchange(id, then);
        self.pump();
    }

    pub fn handle_exchange(&mut self, task: DocTask, result: Result<Exchanged, ExchangeError>) {
        let DocTask {
            id,
            sync,
            create_only,
            is_request,
            ..
        } = task;
        if !matches!(self.q.waiting, Some(Waiting::Exchange { id: asked }) if asked == id) {
            return;
        }
        self.q.waiting = None;
        // No `join` can come between lending and return: jobs wait while an answer is out.
        self.syncs.insert(id, sync);
        match result {
            Err(ExchangeError::NotYours) => {
                self.syncs.remove(&id);
                self.denied.insert(id);
                self.allowed.remove(&id);
                self.unavailable(id, is_request);
            }
            Err(ExchangeError::Invalid(e)) => {
                return self.violate(format!("invalid sync data for {id}: {e}"));
            }
            Err(ExchangeError::Storage) => {
                return self.violate(
                    "the server could not store your changes; nothing was acknowledged, retry later"
                        .into(),
                );
            }
            Err(ExchangeError::Load) => {
                return self
                    .violate("the server could not load a document; try again later".into());
            }
            Err(ExchangeError::Deleted) => {
                // Asked again, for the answer to say where a rewritten case lives on.
                self.allowed.remove(&id);
                self.denied.remove(&id);
                self.with_access(id, AfterAccess::Push);
            }
            Err(ExchangeError::Refused(refusal)) => {
                // What the peer's state says we received was dropped: start afresh, so a
                // later exchange (next connection) does not assume we hold it.
                self.syncs.insert(id, DocSync::new());
                if self.refused.len() < MAX_WANTED {
                    self.refused.insert(id);
                }
                if self.extended {
                    self.q.transmit.push_back(Message::Refused {
                        sender_id: self.cfg.server_id.clone(),
                        target_id: self.target(),
                        document_id: id,
                        rule: refusal.rule.code().to_owned(),
                        limit: refusal.limit,
                    });
                } else {
                    self.unavailable(id, false);
                }
            }
            Ok(done) => {
                // A document the peer just created is theirs from now on. A message that
                // created nothing (no changes for an unknown id) grants nothing: the next
                // one is checked again.
                if !create_only || done.created {
                    self.denied.remove(&id);
                    self.allowed.insert(id);
                }
                if let Some(data) = done.reply {
                    let m = Message::Sync {
                        sender_id: self.cfg.server_id.clone(),
                        target_id: self.target(),
                        document_id: id,
                        data,
                    };
                    self.q.transmit.push_back(m);
                }
                if is_request && done.empty {
                    self.unavailable(id, true);
                } else if is_request || create_only {
                    self.forget_wanted(id);
                }
            }
        }
        self.pump();
    }

    pub fn handle_documents(&mut self, docs: Result<Vec<(DocumentId, Vec<ChangeHash>)>, ()>) {
        let Some(Waiting::Documents { digest: theirs }) = self.q.waiting.take() else {
            return;
        };
        let Ok(docs) = docs else {
            return self
                .violate("the server could not list your documents; try again later".into());
        };
        for (id, _) in &docs {
            self.allowed.insert(*id);
            self.denied.remove(id);
        }
        let ours = digest(docs.iter().map(|(id, heads)| (id, heads.as_slice())));
        // A catch-up counts as contact (the device's "last sync" at the end), though it
        // read no document.
        self.touched = true;
        let (sender_id, target_id) = (self.cfg.server_id.clone(), self.target());
        let message = if ours == theirs {
            Message::InSync {
                sender_id,
                target_id,
            }
        } else {
            Message::Manifest {
                sender_id,
                target_id,
                entries: docs
                    .iter()
                    .map(|(id, heads)| (*id, heads_digest(heads)))
                    .collect(),
            }
        };
        self.q.transmit.push_back(message);
        // The verdict is the device's contact with the server: its lease starts again.
        if self.cfg.is_device
            && let Some(lease_ms) = self.cfg.lease_ms
        {
            self.q.transmit.push_back(Message::Lease {
                sender_id: self.cfg.server_id.clone(),
                target_id: self.target(),
                lease_ms,
            });
        }
        self.pump();
    }

    /// `Err` (the check failed): only news is lost; the device catches up on its own.
    pub fn handle_device_active(&mut self, active: Result<bool, ()>) {
        let Some(Waiting::DeviceActive) = self.q.waiting.take() else {
            return;
        };
        if active == Ok(true) {
            let m = Message::Shared {
                sender_id: self.cfg.server_id.clone(),
                target_id: self.target(),
            };
            self.q.transmit.push_back(m);
        }
        self.pump();
    }

    // ---- output ------------------------------------------------------------------

    drained_by_the_driver!(ServerEffect, ServerEvent);

    /// When to call [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.next_ping)
    }

    // ---- state the driver reads --------------------------------------------------

    /// Where the peer's sync states persist (`None`: ephemeral, not joined, or revoked).
    pub fn peer_key(&self) -> Option<&str> {
        self.peer_key.as_deref()
    }

    /// The sync states worth persisting when the connection ends, with their key.
    pub fn sync_states(&self) -> Option<(&str, PersistedStates)> {
        let key = self.peer_key.as_deref()?;
        let mut states: Vec<(DocumentId, Vec<u8>)> = self
            .syncs
            .iter()
            .map(|(id, s)| (*id, s.persist()))
            .collect();
        states.sort_unstable_by_key(|(id, _)| *id);
        Some((key, states))
    }

    /// The peer synced anything in this connection.
    pub fn touched(&self) -> bool {
        self.touched
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The peer's `senderId`, once it joined.
    pub fn peer_id(&self) -> Option<&str> {
        self.peer_id.as_deref()
    }

    // ---- the work ----------------------------------------------------------------

    fn push(&mut self, job: Job) {
        if self.closed {
            return;
        }
        self.q.jobs.push_back(job);
        self.pump();
    }

    /// The next job, unless the machine waits for an answer or is closed.
    fn next_job(&mut self) -> Option<Job> {
        if self.q.waiting.is_some() || self.closed {
            return None;
        }
        self.q.jobs.pop_front()
    }

    fn pump(&mut self) {
        while let Some(job) = self.next_job() {
            match job {
                Job::Message(m) => self.on_message(m),
                Job::Changed(id) => self.on_changed(id),
                Job::Relay(r) => self.on_relay(*r),
                Job::Shared => self.on_shared(),
                Job::Revoke => self.on_revoke(),
                Job::Deleted(id) => self.on_deleted(id),
                Job::End(reason) => {
                    self.q.events.push_back(ServerEvent::Ended);
                    self.send_error(reason);
                }
            }
        }
    }

    fn target(&self) -> String {
        self.peer_id.clone().unwrap_or_default()
    }

    fn touch(&mut self) {
        self.touched = true;
        self.q.events.push_back(ServerEvent::Touched);
    }

    fn violate(&mut self, reason: String) {
        if self.closed {
            return;
        }
        self.q
            .events
            .push_back(ServerEvent::Violation(reason.clone()));
        self.send_error(reason);
    }

    /// `error`, then close with 1008: the peer hears why before the socket goes.
    fn send_error(&mut self, reason: String) {
        self.q.transmit.push_back(Message::Error {
            sender_id: self.cfg.server_id.clone(),
            target_id: self.peer_id.clone(),
            message: reason,
        });
        self.close(true);
    }

    fn close(&mut self, protocol_error: bool) {
        self.closed = true;
        self.q.jobs.clear();
        self.q.waiting = None;
        self.q
            .effects
            .push_back(ServerEffect::Close { protocol_error });
    }

    fn on_message(&mut self, message: Message) {
        if let Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions,
        } = message
        {
            return self.on_join(sender_id, peer_metadata, &supported_protocol_versions);
        }
        let Some(peer_id) = &self.peer_id else {
            return self.violate(format!(
                "{} before join: the first message must be join",
                message.type_name()
            ));
        };
        if message.sender_id() != peer_id {
            return self.violate("senderId does not match the one given in join".into());
        }
        match message {
            Message::Request {
                document_id, data, ..
            } => self.on_sync(document_id, data, true),
            Message::Sync {
                document_id, data, ..
            } => self.on_sync(document_id, data, false),
            Message::Catchup { digest, .. } => {
                self.extended = true;
                for (id, superseded) in std::mem::take(&mut self.deleted_untold) {
                    self.tell_deleted(id, superseded);
                }
                self.q.waiting = Some(Waiting::Documents { digest });
                self.q.effects.push_back(ServerEffect::ListDocuments);
            }
            Message::Leave { .. } => self.close(false),
            Message::Error { message, .. } => {
                self.q
                    .events
                    .push_back(ServerEvent::PeerError(message.chars().take(200).collect()));
                self.close(false);
            }
            m @ Message::Ephemeral { .. } => {
                let Some(e) = Ephemeral::from_message(m) else {
                    return;
                };
                if e.session_id.len() > MAX_ID_CHARS || e.data.len() > MAX_EPHEMERAL_BYTES {
                    return self.violate("ephemeral message too large".into());
                }
                self.with_access(e.id, AfterAccess::Ephemeral(Box::new(e)));
            }
            Message::DocUnavailable { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::RemoteHeadsChanged { .. } => {}
            Message::Peer { .. }
            | Message::InSync { .. }
            | Message::Manifest { .. }
            | Message::Revoked { .. }
            | Message::Shared { .. }
            | Message::Lease { .. }
            | Message::Refused { .. }
            | Message::Deleted { .. }
            | Message::Join { .. } => {
                self.violate(format!("{} is a server message", message.type_name()));
            }
        }
    }

    fn on_join(&mut self, sender_id: String, metadata: PeerMetadata, versions: &[String]) {
        if sender_id.is_empty() || sender_id.len() > MAX_ID_CHARS {
            return self.violate("senderId must be 1 to 200 characters".into());
        }
        if let Some(bound) = &self.peer_id
            && *bound != sender_id
        {
            return self.violate("a connection cannot change its senderId".into());
        }
        if !versions.iter().any(|v| v == PROTOCOL_VERSION) {
            return self.violate(format!(
                "unsupported protocol versions {versions:?}; this server speaks \"{PROTOCOL_VERSION}\""
            ));
        }
        // A second join restarts the peer's sync, as automerge-repo does.
        self.syncs.clear();
        self.peer_key = match (metadata.is_ephemeral, &metadata.storage_id) {
            (Some(true), _) => None,
            (_, Some(storage)) if storage.len() <= MAX_ID_CHARS => {
                Some(format!("{}:{storage}", self.cfg.principal))
            }
            // Our devices have one storage each; their principal names it.
            _ if self.cfg.is_device => Some(self.cfg.principal.clone()),
            _ => None,
        };
        self.q.transmit.push_back(Message::Peer {
            sender_id: self.cfg.server_id.clone(),
            target_id: sender_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(self.cfg.storage_id.clone()),
                is_ephemeral: Some(false),
            },
            selected_protocol_version: PROTOCOL_VERSION.to_owned(),
        });
        self.peer_id = Some(sender_id);
        self.q.events.push_back(ServerEvent::Joined {
            peer_key: self.peer_key.clone(),
        });
    }

    /// Decides from the cache, or asks.
    fn with_access(&mut self, id: DocumentId, then: AfterAccess) {
        if self.allowed.contains(&id) {
            return self.after_access(id, Access::Allowed, then);
        }
        if self.denied.contains(&id) {
            return self.after_access(id, Access::Denied, then);
        }
        self.q.waiting = Some(Waiting::Access { id, then });
        self.q.effects.push_back(ServerEffect::CheckAccess(id));
    }

    fn after_access(&mut self, id: DocumentId, access: Access, then: AfterAccess) {
        match then {
            AfterAccess::Sync { data, is_request } => {
                let create_only = match access {
                    Access::Denied => {
                        self.syncs.remove(&id);
                        return self.unavailable(id, is_request);
                    }
                    Access::Deleted(superseded) => return self.tell_deleted(id, superseded),
                    Access::Unknown if is_request => return self.unavailable(id, true),
                    Access::Unknown => true,
                    Access::Allowed => false,
                };
                let step = Step {
                    data: Some(data),
                    create_only,
                    is_request,
                };
                self.with_state(id, step);
            }
            AfterAccess::Ephemeral(e) => {
                // Only to a document the peer may see; otherwise dropped silently, as a
                // missing document would be.
                if access == Access::Allowed {
                    self.q.effects.push_back(ServerEffect::Relay(*e));
                }
            }
            AfterAccess::Push => {
                if access == Access::Allowed {
                    self.with_state(id, ANNOUNCE);
                } else if let Access::Deleted(superseded) = access {
                    self.tell_deleted(id, superseded);
                } else {
                    self.syncs.remove(&id);
                }
            }
            AfterAccess::Relay(e) => {
                if access == Access::Allowed {
                    self.q.transmit.push_back(Message::Ephemeral {
                        sender_id: e.sender_id,
                        target_id: self.target(),
                        document_id: id,
                        session_id: e.session_id,
                        count: e.count,
                        data: e.data,
                    });
                }
            }
            AfterAccess::Wanted => {
                if access == Access::Allowed {
                    self.forget_wanted(id);
                    self.with_state(id, ANNOUNCE);
                }
            }
        }
    }

    fn with_state(&mut self, id: DocumentId, then: Step) {
        if self.syncs.contains_key(&id) {
            return self.exchange(id, then);
        }
        if self.syncs.len() >= MAX_SYNCED_DOCUMENTS {
            return self.violate(format!(
                "more than {MAX_SYNCED_DOCUMENTS} documents on one connection"
            ));
        }
        match &self.peer_key {
            Some(key) => {
                let peer_key = key.clone();
                self.q.waiting = Some(Waiting::SyncState { id, then });
                self.q
                    .effects
                    .push_back(ServerEffect::LoadSyncState { id, peer_key });
            }
            None => {
                self.syncs.insert(id, DocSync::new());
                self.with_state(id, then);
            }
        }
    }

    fn exchange(&mut self, id: DocumentId, step: Step) {
        let sync = self.syncs.remove(&id).unwrap_or_default();
        if step.data.is_some() {
            self.touch();
        }
        self.q.waiting = Some(Waiting::Exchange { id });
        self.q.effects.push_back(ServerEffect::Exchange(DocTask {
            id,
            data: step.data,
            create_only: step.create_only,
            sync,
            is_request: step.is_request,
        }));
    }

    fn on_sync(&mut self, id: DocumentId, data: Vec<u8>, is_request: bool) {
        if self.refused.contains(&id) {
            return;
        }
        self.with_access(id, AfterAccess::Sync { data, is_request });
    }

    fn unavailable(&mut self, id: DocumentId, asked: bool) {
        self.q.transmit.push_back(Message::DocUnavailable {
            sender_id: self.cfg.server_id.clone(),
            target_id: self.target(),
            document_id: id,
        });
        if asked && !self.wanted.contains(&id) {
            if self.wanted.len() >= MAX_WANTED {
                self.wanted.pop_front();
            }
            self.wanted.push_back(id);
        }
    }

    fn forget_wanted(&mut self, id: DocumentId) {
        self.wanted.retain(|w| *w != id);
    }

    fn on_changed(&mut self, id: DocumentId) {
        if self.peer_id.is_none() || self.refused.contains(&id) {
            return;
        }
        // Peers that synced the document in this connection, and our own clients for every
        // document they may hold, hear about changes at once.
        let follows = self.syncs.contains_key(&id) || (self.extended && self.allowed.contains(&id));
        if follows {
            return self.with_access(id, AfterAccess::Push);
        }
        if self.wanted.contains(&id) {
            // Asked for before it existed. Access is checked afresh (not from the cache):
            // the document exists now, and only a peer allowed to see it hears of it, so a
            // request for a denied id stays indistinguishable from one for a missing id.
            self.handle_access_changed(Some(id));
            self.with_access(id, AfterAccess::Wanted);
        }
    }

    /// A deleted document the peer follows: our clients delete their copy; a plain
    /// automerge-repo peer hears `doc-unavailable`, all the protocol lets us say. Access
    /// is asked once more, for the answer to say where a rewritten case lives on; only
    /// peers that follow the document cost that question.
    fn on_deleted(&mut self, id: DocumentId) {
        let follows = self.syncs.contains_key(&id) || (self.extended && self.allowed.contains(&id));
        self.allowed.remove(&id);
        self.denied.remove(&id);
        self.forget_wanted(id);
        if follows && self.peer_id.is_some() {
            self.with_access(id, AfterAccess::Push);
        } else {
            self.denied.insert(id);
        }
    }

    fn tell_deleted(&mut self, id: DocumentId, superseded: Option<Box<Superseded>>) {
        self.syncs.remove(&id);
        if self.extended {
            self.q.transmit.push_back(Message::Deleted {
                sender_id: self.cfg.server_id.clone(),
                target_id: self.target(),
                document_id: id,
                superseded: superseded.map(|s| *s),
            });
        } else {
            if self.deleted_untold.len() < MAX_WANTED
                && !self.deleted_untold.iter().any(|(d, _)| *d == id)
            {
                self.deleted_untold.push((id, superseded));
            }
            self.unavailable(id, false);
        }
    }

    fn on_relay(&mut self, relay: Ephemeral) {
        if self.syncs.contains_key(&relay.id) {
            self.with_access(relay.id, AfterAccess::Relay(Box::new(relay)));
        }
    }

    /// `lotse-shared` goes only to a device that spoke our extension first: a
    /// coordinator's session may sync the whole organisation and has nothing to be granted.
    /// The revocation that closes this socket may still be on its way, so the device is
    /// checked first; a revoked device learns nothing more.
    fn on_shared(&mut self) {
        if !self.extended || !self.cfg.is_device {
            return;
        }
        self.q.waiting = Some(Waiting::DeviceActive);
        self.q.effects.push_back(ServerEffect::CheckDeviceActive);
    }

    fn on_revoke(&mut self) {
        if self.extended {
            self.q.transmit.push_back(Message::Revoked {
                sender_id: self.cfg.server_id.clone(),
                target_id: self.target(),
            });
        }
        // Nothing of this device's sync state is worth keeping.
        self.peer_key = None;
        self.touched = false;
        self.q.events.push_back(ServerEvent::Revoked);
        self.send_error("this device was revoked".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device's connection after `join`.
    fn joined(now: Instant) -> ServerPeer {
        let cfg = ServerConfig {
            server_id: "server".into(),
            storage_id: "storage".into(),
            principal: "device:d".into(),
            is_device: true,
            lease_ms: None,
        };
        let mut peer = ServerPeer::new(cfg, now);
        let join = Message::Join {
            sender_id: "phone".into(),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: vec![PROTOCOL_VERSION.into()],
        };
        peer.handle_message(join, now);
        peer
    }

    #[test]
    fn a_flood_of_ephemeral_messages_is_cut_to_a_few_a_second() {
        let start = Instant::now();
        let mut peer = joined(start);
        let id = DocumentId::from_bytes([3; 16]);
        let cursor = |count: u64| Message::Ephemeral {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: id,
            session_id: "s".into(),
            count,
            data: vec![0xa0],
        };
        // A second's flood, then one message a second later.
        for count in 0..100 {
            peer.handle_message(cursor(count), start);
        }
        peer.handle_message(cursor(100), start + Duration::from_secs(1));
        let mut relayed = 0;
        while let Some(effect) = peer.poll_effect() {
            match effect {
                ServerEffect::CheckAccess(asked) => peer.handle_access(asked, Ok(Access::Allowed)),
                ServerEffect::Relay(_) => relayed += 1,
                _ => {}
            }
        }
        assert_eq!(relayed, EPHEMERAL_PER_SECOND + 1);
        assert!(!peer.is_closed(), "dropped, not punished");
    }

    /// A refusal names the rule to our clients, keeps the socket open, and the refused
    /// document is neither applied again nor announced in this connection.
    #[test]
    fn a_refused_document_is_refused_alone() {
        use crate::quota::{Refusal, Rule};
        let now = Instant::now();
        let mut peer = joined(now);
        peer.handle_message(
            Message::Catchup {
                sender_id: "phone".into(),
                target_id: "server".into(),
                digest: [0; 32],
                count: 0,
            },
            now,
        );
        assert!(matches!(
            peer.poll_effect(),
            Some(ServerEffect::ListDocuments)
        ));
        peer.handle_documents(Ok(vec![]));
        while peer.poll_transmit().is_some() {}

        let id = DocumentId::from_bytes([7; 16]);
        let sync = || Message::Sync {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: id,
            data: vec![0x42],
        };
        peer.handle_message(sync(), now);
        let refusal = Refusal {
            rule: Rule::DocumentBytes,
            limit: 8,
        };
        loop {
            match peer.poll_effect() {
                Some(ServerEffect::CheckAccess(asked)) => {
                    peer.handle_access(asked, Ok(Access::Allowed))
                }
                Some(ServerEffect::LoadSyncState { id, .. }) => peer.handle_sync_state(id, None),
                Some(ServerEffect::Exchange(task)) => {
                    peer.handle_exchange(task, Err(ExchangeError::Refused(refusal.clone())))
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
        let sent: Vec<Message> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        assert_eq!(
            sent,
            vec![Message::Refused {
                sender_id: "server".into(),
                target_id: "phone".into(),
                document_id: id,
                rule: "document-bytes".into(),
                limit: 8,
            }]
        );
        assert!(!peer.is_closed());
        // The same changes again, and news of the document: nothing to do.
        peer.handle_message(sync(), now);
        peer.handle_doc_changed(id);
        assert!(peer.poll_effect().is_none());
        assert!(peer.poll_transmit().is_none());
        // Another document still syncs.
        let other = DocumentId::from_bytes([8; 16]);
        peer.handle_message(
            Message::Sync {
                sender_id: "phone".into(),
                target_id: "server".into(),
                document_id: other,
                data: vec![0x42],
            },
            now,
        );
        assert!(
            matches!(peer.poll_effect(), Some(ServerEffect::CheckAccess(asked)) if asked == other)
        );
    }
}

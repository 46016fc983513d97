//! A client's side of the connection: the handshake, the catch-up (DESIGN.md decision 2),
//! live sync of what changes on either side, requests for documents it lacks, and what to
//! do when the server withdraws a document or revokes the device.
//!
//! The driver owns the documents and their automerge sync states (the phone keeps them
//! encrypted, together, in one write); the machine decides what to send and when, and asks
//! the driver to generate or apply one document's sync message at a time.
//!
//! The catch-up costs what changed: the client knows which documents it changed since the
//! server last confirmed them, so their changes go out in the first flight, ahead of the
//! digest, with sync states seeded from the heads the server is known to hold (so the
//! first message already carries the changes). When only the client changed, the server's
//! verdict to that first flight is `lotse-in-sync`: one round trip.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use automerge::ChangeHash;

use super::{Ephemeral, Queues};
use crate::catchup::{digest, heads_digest, plan};
use crate::docid::DocumentId;
use crate::quota::{Refusal, Rule};
use crate::wire::{Message, PROTOCOL_VERSION, PeerMetadata, WireError};

/// How a client behaves; [`ClientConfig::new`] gives our clients' defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our `senderId`.
    pub peer_id: String,
    /// Names our storage (the server keys our persisted sync states by it).
    pub storage_id: Option<String>,
    /// Ask the server not to persist sync states for us.
    pub ephemeral: bool,
    /// Speak the catch-up extension. Without it the machine is a plain automerge-repo peer.
    pub catch_up: bool,
    /// While connected and idle, catch up this often (finds documents shared meanwhile).
    pub recheck_every: Option<Duration>,
    /// No frame for this long means the connection is dead.
    pub silence_limit: Option<Duration>,
    /// Manifest rounds of one catch-up before it counts as stuck.
    pub max_rounds: u32,
}

impl ClientConfig {
    pub fn new(peer_id: impl Into<String>) -> Self {
        Self {
            peer_id: peer_id.into(),
            storage_id: None,
            ephemeral: false,
            catch_up: true,
            recheck_every: None,
            silence_limit: None,
            max_rounds: 50,
        }
    }
}

/// One document the driver holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub heads: Vec<ChangeHash>,
    /// The heads the server was last known to hold (`None`: never confirmed).
    pub server_heads: Option<Vec<ChangeHash>>,
}

impl Holding {
    pub fn new(heads: Vec<ChangeHash>, server_heads: Option<&Vec<ChangeHash>>) -> Self {
        Self {
            heads,
            server_heads: server_heads.cloned(),
        }
    }

    /// The server is not known to hold everything we have.
    pub fn unconfirmed(&self) -> bool {
        match &self.server_heads {
            None => true,
            Some(server) => !same_heads(server, &self.heads),
        }
    }
}

pub type Holdings = BTreeMap<DocumentId, Holding>;

/// The driver's answer for one document of a [`ClientEffect::Offer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offered {
    /// Our next sync message, if there is anything to say.
    pub data: Option<Vec<u8>>,
    /// The driver holds no content for it: the message goes out as a `request`.
    pub empty: bool,
}

/// The driver's answer to a [`ClientEffect::Apply`], after it stored what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Our next sync message, if there is anything to say.
    pub reply: Option<Vec<u8>>,
    /// The document's heads now.
    pub heads: Vec<ChangeHash>,
    /// The heads the server announced in the message (the sync state's peer heads).
    pub server_heads: Option<Vec<ChangeHash>>,
}

/// What the driver must do for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEffect {
    /// Answer: [`ClientPeer::handle_holdings`] with every document held.
    Holdings,
    /// Answer: [`ClientPeer::handle_offers`] with our next sync message for each document.
    /// A hint names heads the server is known to hold: if the document's sync state knows
    /// nothing of the server yet, seed it with them ([`crate::DocSync::assume_peer_has`]),
    /// so that the message carries the changes instead of only asking.
    Offer(Vec<(DocumentId, Option<Vec<ChangeHash>>)>),
    /// Answer: [`ClientPeer::handle_applied`]. Apply the server's sync message and store
    /// what changed (a document new to us gets created) before answering.
    Apply { id: DocumentId, data: Vec<u8> },
    /// The server holds exactly these heads: these documents are synced.
    ServerHas(Vec<(DocumentId, Vec<ChangeHash>)>),
    /// The server no longer lets us sync the document: delete it and its key.
    Forget(DocumentId),
    /// The server refused a document we hold: one it never had (created here), answered
    /// `doc-unavailable` (`rule: None`), or changes it would not take (`lotse-refused`,
    /// naming the rule). Show the document as failed; the others keep syncing.
    Refused {
        id: DocumentId,
        rule: Option<Refusal>,
    },
    /// The network deleted the document: delete it and its key, and tell the app.
    Deleted(DocumentId),
    /// The case lives on in a newer generation (docs/sync.md): keep the document out of
    /// what is offered until `successor` is held, then replay onto it what the server did
    /// not have (`crate::schema::generation::replay` with `known`), announce the successor
    /// as changed ([`ClientPeer::local_change`]), and delete this document and its key.
    /// The successor is asked for already.
    Superseded {
        id: DocumentId,
        successor: DocumentId,
        known: crate::schema::generation::KnownChanges,
    },
    /// The device was revoked: wipe every local document.
    Wipe,
    /// The server renewed the lease: the documents stay readable for this long (ms) from
    /// now without further contact.
    RenewLease(u64),
    /// Close the connection.
    Close,
}

/// Why the machine gave up on the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("the server reported: {0}")]
    Server(String),
    #[error("malformed message from the server: {0}")]
    Malformed(String),
    #[error("the server went silent")]
    Silent,
    #[error("catch-up does not converge; retrying later")]
    NoConvergence,
    #[error("document {0}: {1}")]
    Document(DocumentId, String),
}

/// What the machine tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Joined {
        server_id: String,
    },
    /// The server answered a catch-up.
    Verdict {
        in_sync: bool,
    },
    /// Documents of the current catch-up that are done, of how many.
    Progress {
        done: u32,
        total: u32,
    },
    /// Every catch-up is answered `in-sync` and none is owed: all is synced.
    CaughtUp,
    /// A document we asked for does not exist for us (or is not ours).
    Unavailable(DocumentId),
    /// Another peer's ephemeral message (presence, cursors) for a document.
    Ephemeral(Ephemeral),
    /// The connection ends; the driver closes it and reconnects later.
    Failed(ClientError),
}

#[derive(Debug)]
enum Job {
    Message(Message),
    LocalChange(Vec<DocumentId>),
    CatchUp,
    Fetch(DocumentId),
}

#[derive(Debug)]
enum Waiting {
    Holdings(ForHoldings),
    Offers(AfterOffers),
    Apply(DocumentId),
}

#[derive(Debug)]
enum ForHoldings {
    CatchUp,
    Manifest(Vec<(DocumentId, [u8; 8])>),
}

#[derive(Debug)]
enum AfterOffers {
    /// Then send `lotse-catchup` over these holdings.
    Barrier(Holdings),
    Nothing,
}

/// A client's side of one connection.
#[derive(Debug)]
pub struct ClientPeer {
    cfg: ClientConfig,
    server_id: Option<String>,
    /// What the driver last said it holds, kept current by what we apply.
    known: Holdings,
    /// Asked for with `request`, not held yet.
    requested: HashSet<DocumentId>,
    /// The holdings each outstanding `lotse-catchup` was computed over, oldest first.
    barriers: VecDeque<Holdings>,
    /// A share was announced while a catch-up was under way: one more follows it.
    owed: bool,
    rounds: u32,
    differing: BTreeSet<DocumentId>,
    /// Refused by the server in this connection: not offered again until the next one,
    /// and left out of the catch-up's verdict (it cannot match while the server refuses).
    refused: HashSet<DocumentId>,
    /// Answered `doc-unavailable` while a catch-up was under way: withdrawn, unless the
    /// server says `lotse-deleted` before its verdict (it says so only once it knows we
    /// speak the extension, which our catch-up tells it).
    withdrawn: Vec<DocumentId>,
    closed: bool,
    q: Queues<Job, Waiting, ClientEffect, ClientEvent>,
    last_heard: Instant,
    next_recheck: Option<Instant>,
}

impl ClientPeer {
    /// Queues `join` and, for our clients, the first catch-up.
    pub fn new(cfg: ClientConfig, now: Instant) -> Self {
        let next_recheck = cfg.recheck_every.map(|d| now + d);
        let mut peer = Self {
            cfg,
            server_id: None,
            known: Holdings::new(),
            requested: HashSet::new(),
            barriers: VecDeque::new(),
            owed: false,
            rounds: 0,
            differing: BTreeSet::new(),
            refused: HashSet::new(),
            withdrawn: Vec::new(),
            closed: false,
            q: Queues::default(),
            last_heard: now,
            next_recheck,
        };
        peer.q.transmit.push_back(Message::Join {
            sender_id: peer.cfg.peer_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: peer.cfg.storage_id.clone(),
                is_ephemeral: Some(peer.cfg.ephemeral),
            },
            supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
        });
        if peer.cfg.catch_up {
            peer.push(Job::CatchUp);
        }
        peer
    }

    // ---- input -------------------------------------------------------------------

    /// A binary frame from the server. A message type we do not know (an extension of a
    /// newer server) is skipped; anything else that does not decode ends the connection.
    pub fn handle_binary(&mut self, frame: &[u8], now: Instant) {
        self.last_heard = now;
        match Message::decode(frame) {
            Ok(message) => self.push(Job::Message(message)),
            Err(WireError::UnknownType(_)) => {}
            Err(e) => self.fail(ClientError::Malformed(e.to_string())),
        }
    }

    pub fn handle_message(&mut self, message: Message, now: Instant) {
        self.last_heard = now;
        self.push(Job::Message(message));
    }

    /// Any other sign of life (a ping).
    pub fn handle_heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The application changed these documents (or created them).
    pub fn local_change(&mut self, ids: Vec<DocumentId>) {
        self.push(Job::LocalChange(ids));
    }

    /// Ask the server for a document we do not hold.
    pub fn fetch(&mut self, id: DocumentId) {
        self.push(Job::Fetch(id));
    }

    /// Catch up now (`sync_now`). Coalesced with one under way.
    pub fn catch_up(&mut self) {
        self.queue_catch_up();
        self.pump();
    }

    fn queue_catch_up(&mut self) {
        if !self.cfg.catch_up {
            return;
        }
        if self.idle_for_catch_up() {
            self.enqueue(Job::CatchUp);
        } else {
            self.owed = true;
        }
    }

    /// No catch-up is outstanding or queued.
    fn idle_for_catch_up(&self) -> bool {
        self.barriers.is_empty() && !self.pending_catch_up()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(limit) = self.cfg.silence_limit
            && now.duration_since(self.last_heard) >= limit
        {
            return self.fail(ClientError::Silent);
        }
        if let (Some(at), Some(every)) = (self.next_recheck, self.cfg.recheck_every)
            && now >= at
        {
            self.next_recheck = Some(now + every);
            if self.cfg.catch_up && self.idle_for_catch_up() {
                self.push(Job::CatchUp);
            }
        }
    }

    // ---- answers -----------------------------------------------------------------

    pub fn handle_holdings(&mut self, holdings: Holdings) {
        let Some(Waiting::Holdings(purpose)) = self.q.waiting.take() else {
            return;
        };
        self.known = holdings;
        match purpose {
            ForHoldings::CatchUp => self.start_catch_up(),
            ForHoldings::Manifest(entries) => self.after_manifest(&entries),
        }
        self.pump();
    }

    pub fn handle_offers(&mut self, offers: Vec<(DocumentId, Offered)>) {
        let Some(Waiting::Offers(then)) = self.q.waiting.take() else {
            return;
        };
        for (id, offered) in offers {
            let Some(data) = offered.data else { continue };
            let message = if offered.empty {
                self.requested.insert(id);
                Message::Request {
                    sender_id: self.cfg.peer_id.clone(),
                    target_id: self.target(),
                    document_id: id,
                    data,
                }
            } else {
                self.sync_message(id, data)
            };
            self.q.transmit.push_back(message);
        }
        if let AfterOffers::Barrier(holdings) = then {
            self.send_barrier(holdings);
        }
        self.pump();
    }

    pub fn handle_applied(&mut self, id: DocumentId, result: Result<Applied, String>) {
        let Some(Waiting::Apply(asked)) = self.q.waiting.take() else {
            return;
        };
        debug_assert_eq!(asked, id);
        let applied = match result {
            Ok(applied) => applied,
            Err(e) => return self.fail(ClientError::Document(id, e)),
        };
        if !applied.heads.is_empty() {
            self.requested.remove(&id);
            let known = self.known.entry(id).or_default();
            known.heads = applied.heads;
            // So that progress counts the document as done once the server holds it all.
            if applied.server_heads.is_some() {
                known.server_heads = applied.server_heads;
            }
        }
        if let Some(data) = applied.reply {
            let m = self.sync_message(id, data);
            self.q.transmit.push_back(m);
        }
        if self.differing.contains(&id) {
            self.report_progress();
        }
        self.pump();
    }

    // ---- output ------------------------------------------------------------------

    drained_by_the_driver!(ClientEffect, ClientEvent);

    /// When to call [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let silence = self.cfg.silence_limit.map(|d| self.last_heard + d);
        match (silence, self.next_recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn server_id(&self) -> Option<&str> {
        self.server_id.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// No catch-up is outstanding or queued and the last one ended in sync.
    pub fn is_caught_up(&self) -> bool {
        self.idle_for_catch_up() && !self.owed && self.q.waiting.is_none()
    }

    // ---- the work ----------------------------------------------------------------

    fn push(&mut self, job: Job) {
        self.enqueue(job);
        self.pump();
    }

    /// Queues without working: for use while the machine is already working.
    fn enqueue(&mut self, job: Job) {
        if !self.closed {
            self.q.jobs.push_back(job);
        }
    }

    fn pump(&mut self) {
        while !self.closed && self.q.waiting.is_none() {
            let Some(job) = self.q.jobs.pop_front() else {
                break;
            };
            match job {
                Job::Message(m) => self.on_message(m),
                Job::LocalChange(ids) => {
                    let hints = ids
                        .into_iter()
                        .filter(|id| !self.refused.contains(id))
                        .map(|id| (id, self.hint(&id)))
                        .collect();
                    self.offer(hints, AfterOffers::Nothing);
                }
                Job::Fetch(id) => {
                    self.requested.insert(id);
                    self.offer(vec![(id, None)], AfterOffers::Nothing);
                }
                Job::CatchUp => self.ask_holdings(ForHoldings::CatchUp),
            }
        }
    }

    fn pending_catch_up(&self) -> bool {
        self.q.jobs.iter().any(|j| matches!(j, Job::CatchUp))
            || matches!(
                self.q.waiting,
                Some(Waiting::Holdings(ForHoldings::CatchUp))
            )
    }

    fn target(&self) -> String {
        self.server_id.clone().unwrap_or_default()
    }

    fn sync_message(&self, id: DocumentId, data: Vec<u8>) -> Message {
        Message::Sync {
            sender_id: self.cfg.peer_id.clone(),
            target_id: self.target(),
            document_id: id,
            data,
        }
    }

    fn hint(&self, id: &DocumentId) -> Option<Vec<ChangeHash>> {
        self.known.get(id).and_then(|h| h.server_heads.clone())
    }

    fn fail(&mut self, error: ClientError) {
        if self.closed {
            return;
        }
        self.q.events.push_back(ClientEvent::Failed(error));
        self.close();
    }

    fn close(&mut self) {
        self.closed = true;
        self.q.jobs.clear();
        self.q.waiting = None;
        self.q.effects.push_back(ClientEffect::Close);
    }

    fn ask_holdings(&mut self, purpose: ForHoldings) {
        self.q.waiting = Some(Waiting::Holdings(purpose));
        self.q.effects.push_back(ClientEffect::Holdings);
    }

    fn offer(&mut self, docs: Vec<(DocumentId, Option<Vec<ChangeHash>>)>, then: AfterOffers) {
        if docs.is_empty() {
            if let AfterOffers::Barrier(holdings) = then {
                self.send_barrier(holdings);
            }
            return;
        }
        self.q.waiting = Some(Waiting::Offers(then));
        self.q.effects.push_back(ClientEffect::Offer(docs));
    }

    /// What we changed since the server last confirmed it goes out first, then the digest.
    fn start_catch_up(&mut self) {
        let unconfirmed: Vec<(DocumentId, Option<Vec<ChangeHash>>)> = self
            .known
            .iter()
            .filter(|(id, h)| h.unconfirmed() && !self.refused.contains(id))
            .map(|(id, h)| (*id, h.server_heads.clone()))
            .collect();
        let holdings = self.known.clone();
        self.offer(unconfirmed, AfterOffers::Barrier(holdings));
    }

    fn send_barrier(&mut self, holdings: Holdings) {
        let message = Message::Catchup {
            sender_id: self.cfg.peer_id.clone(),
            target_id: self.target(),
            digest: digest(holdings.iter().map(|(id, h)| (id, h.heads.as_slice()))),
            count: holdings.len() as u64,
        };
        self.q.transmit.push_back(message);
        self.barriers.push_back(holdings);
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Peer { sender_id, .. } => {
                self.server_id = Some(sender_id.clone());
                self.q.events.push_back(ClientEvent::Joined {
                    server_id: sender_id,
                });
            }
            Message::InSync { .. } => self.on_in_sync(),
            Message::Manifest { entries, .. } => {
                self.settle_withdrawn();
                self.barriers.pop_front();
                self.q
                    .events
                    .push_back(ClientEvent::Verdict { in_sync: false });
                self.rounds += 1;
                if self.rounds > self.cfg.max_rounds {
                    return self.fail(ClientError::NoConvergence);
                }
                self.ask_holdings(ForHoldings::Manifest(entries));
            }
            Message::Sync {
                document_id, data, ..
            } => {
                self.q.waiting = Some(Waiting::Apply(document_id));
                self.q.effects.push_back(ClientEffect::Apply {
                    id: document_id,
                    data,
                });
            }
            Message::DocUnavailable { document_id, .. } => self.on_unavailable(document_id),
            Message::Revoked { .. } => {
                self.q.effects.push_back(ClientEffect::Wipe);
                self.close();
            }
            // Something was shared with this volunteer while connected: catch up now rather
            // than at the next periodic check. While a catch-up is under way (it may have
            // left before the share), one more follows it: a burst of announcements costs
            // one catch-up, not one each.
            Message::Shared { .. } => self.queue_catch_up(),
            Message::Lease { lease_ms, .. } => {
                self.q.effects.push_back(ClientEffect::RenewLease(lease_ms));
            }
            Message::Deleted {
                document_id,
                superseded,
                ..
            } => {
                self.withdrawn.retain(|w| *w != document_id);
                self.known.remove(&document_id);
                self.requested.remove(&document_id);
                self.differing.remove(&document_id);
                match superseded {
                    None => self.q.effects.push_back(ClientEffect::Deleted(document_id)),
                    Some(s) => {
                        self.q.effects.push_back(ClientEffect::Superseded {
                            id: document_id,
                            successor: s.successor,
                            known: s.known,
                        });
                        self.enqueue(Job::Fetch(s.successor));
                    }
                }
            }
            Message::Refused {
                document_id,
                rule,
                limit,
                ..
            } => {
                self.refused.insert(document_id);
                self.differing.remove(&document_id);
                self.q.effects.push_back(ClientEffect::Refused {
                    id: document_id,
                    rule: Some(Refusal {
                        rule: Rule::from_code(&rule),
                        limit,
                    }),
                });
            }
            // Never a wipe on the wording of an error: a phone with unsynced notes must not
            // lose them to a message that happens to contain "revoked". Revocation comes as
            // `lotse-revoked`, or as the typed 401 `device_revoked` when reconnecting.
            Message::Error { message, .. } => {
                self.fail(ClientError::Server(message.chars().take(300).collect()));
            }
            m @ Message::Ephemeral { .. } => {
                if let Some(e) = Ephemeral::from_message(m) {
                    self.q.events.push_back(ClientEvent::Ephemeral(e));
                }
            }
            Message::Join { .. }
            | Message::Request { .. }
            | Message::Leave { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::RemoteHeadsChanged { .. }
            | Message::Catchup { .. } => {}
        }
    }

    /// The server's recorded heads equal what we held when we asked.
    fn on_in_sync(&mut self) {
        self.settle_withdrawn();
        self.q
            .events
            .push_back(ClientEvent::Verdict { in_sync: true });
        let Some(asked) = self.barriers.pop_front() else {
            return;
        };
        let synced: Vec<(DocumentId, Vec<ChangeHash>)> =
            asked.into_iter().map(|(id, h)| (id, h.heads)).collect();
        for (id, heads) in &synced {
            if let Some(known) = self.known.get_mut(id) {
                known.server_heads = Some(heads.clone());
            }
        }
        if !synced.is_empty() {
            self.q.effects.push_back(ClientEffect::ServerHas(synced));
        }
        if !self.barriers.is_empty() {
            // A later barrier is on its way (sync_now during a catch-up).
            return;
        }
        self.settled();
    }

    /// The last outstanding catch-up ended: caught up, unless another one is owed.
    fn settled(&mut self) {
        if !self.barriers.is_empty() {
            return;
        }
        if self.owed {
            self.owed = false;
            return self.enqueue(Job::CatchUp);
        }
        self.rounds = 0;
        self.differing.clear();
        self.q.events.push_back(ClientEvent::CaughtUp);
    }

    fn after_manifest(&mut self, entries: &[(DocumentId, [u8; 8])]) {
        let local: BTreeMap<DocumentId, Vec<ChangeHash>> = self
            .known
            .iter()
            .map(|(id, h)| (*id, h.heads.clone()))
            .collect();
        let plan = plan(&local, entries);
        // Documents whose heads match the manifest are on the server as they are here.
        let mut same = Vec::new();
        for (id, entry) in entries {
            if let Some(h) = self.known.get_mut(id)
                && heads_digest(&h.heads) == *entry
            {
                h.server_heads = Some(h.heads.clone());
                same.push((*id, h.heads.clone()));
            }
        }
        if !same.is_empty() {
            self.q.effects.push_back(ClientEffect::ServerHas(same));
        }
        let mut work: Vec<(DocumentId, Option<Vec<ChangeHash>>)> = Vec::new();
        for id in plan.differ.iter().chain(&plan.only_local) {
            if !self.refused.contains(id) {
                work.push((*id, self.hint(id)));
            }
        }
        for id in &plan.missing_locally {
            self.requested.insert(*id);
            work.push((*id, None));
        }
        if work.is_empty() && !self.refused.is_empty() {
            // Only refused documents differ: another round would get the same manifest.
            // Everything else is in sync, which is what this catch-up can achieve.
            return self.settled();
        }
        if self.differing.is_empty() {
            self.differing = work.iter().map(|(id, _)| *id).collect();
        } else {
            self.differing.extend(work.iter().map(|(id, _)| *id));
        }
        self.report_progress();
        let holdings = self.known.clone();
        self.offer(work, AfterOffers::Barrier(holdings));
    }

    fn report_progress(&mut self) {
        let total = self.differing.len() as u32;
        let done = self
            .differing
            .iter()
            .filter(|id| self.known.get(id).is_some_and(|h| !h.unconfirmed()))
            .count() as u32;
        self.q
            .events
            .push_back(ClientEvent::Progress { done, total });
    }

    /// The verdict came: what was answered `doc-unavailable` and not `lotse-deleted`
    /// since is withdrawn.
    fn settle_withdrawn(&mut self) {
        for id in std::mem::take(&mut self.withdrawn) {
            if self.known.remove(&id).is_some() {
                self.q.effects.push_back(ClientEffect::Forget(id));
            }
        }
    }

    fn on_unavailable(&mut self, id: DocumentId) {
        if self.requested.remove(&id) && self.known.get(&id).is_none_or(|h| h.heads.is_empty()) {
            self.q.events.push_back(ClientEvent::Unavailable(id));
            return;
        }
        let Some(held) = self.known.get(&id) else {
            return;
        };
        if held.server_heads.as_ref().is_some_and(|h| !h.is_empty()) {
            // The server had it and no longer lets us sync it: access was withdrawn, or
            // the document deleted, which the verdict of the catch-up under way tells.
            if self.barriers.is_empty() {
                self.known.remove(&id);
                self.q.effects.push_back(ClientEffect::Forget(id));
            } else if !self.withdrawn.contains(&id) {
                self.withdrawn.push(id);
            }
        } else {
            self.q
                .effects
                .push_back(ClientEffect::Refused { id, rule: None });
        }
    }
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a.dedup();
    b.dedup();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pairs: &[(&str, &str)]) -> Vec<u8> {
        let map = pairs
            .iter()
            .map(|(k, v)| {
                (
                    ciborium::value::Value::Text((*k).to_owned()),
                    ciborium::value::Value::Text((*v).to_owned()),
                )
            })
            .collect();
        let mut out = Vec::new();
        ciborium::ser::into_writer(&ciborium::value::Value::Map(map), &mut out)
            .expect("a CBOR map");
        out
    }

    fn failed(peer: &mut ClientPeer) -> Option<ClientError> {
        let mut failure = None;
        while let Some(event) = peer.poll_event() {
            if let ClientEvent::Failed(e) = event {
                failure = Some(e);
            }
        }
        failure
    }

    /// A message type of a newer server is skipped; a frame that does not decode ends the
    /// connection.
    #[test]
    fn unknown_types_are_skipped_and_malformed_frames_end_the_connection() {
        let now = Instant::now();
        let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
        let from_the_future = frame(&[
            ("type", "lotse-something"),
            ("senderId", "server"),
            ("targetId", "phone"),
        ]);
        peer.handle_binary(&from_the_future, now);
        assert_eq!(failed(&mut peer), None);
        assert!(!peer.is_closed());
        for malformed in [
            vec![0xff],
            frame(&[("type", "sync"), ("senderId", "server")]),
            frame(&[("senderId", "server")]),
        ] {
            let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
            peer.handle_binary(&malformed, now);
            assert!(
                matches!(failed(&mut peer), Some(ClientError::Malformed(_))),
                "{malformed:02x?}"
            );
            assert!(peer.is_closed());
        }
    }

    /// Shares announced while a catch-up is under way cost one more catch-up, not one each.
    #[test]
    fn only_lotse_revoked_wipes_never_the_wording_of_an_error() {
        let now = Instant::now();
        let started = || {
            let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
            assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
            peer.handle_holdings(Holdings::new());
            peer
        };
        let mut peer = started();
        let said = |message: &str| Message::Error {
            sender_id: "server".into(),
            target_id: Some("phone".into()),
            message: message.into(),
        };
        peer.handle_message(said("the note about the revoked permit is too long"), now);
        let effects: Vec<ClientEffect> = std::iter::from_fn(|| peer.poll_effect()).collect();
        assert!(!effects.contains(&ClientEffect::Wipe), "{effects:?}");
        assert!(failed(&mut peer).is_some());

        let mut peer = started();
        let revoked = Message::Revoked {
            sender_id: "server".into(),
            target_id: "phone".into(),
        };
        peer.handle_message(revoked, now);
        let effects: Vec<ClientEffect> = std::iter::from_fn(|| peer.poll_effect()).collect();
        assert!(effects.contains(&ClientEffect::Wipe), "{effects:?}");
    }

    #[test]
    fn a_burst_of_shares_costs_one_catch_up() {
        let now = Instant::now();
        let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(Holdings::new());
        let sent: Vec<Message> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        assert!(matches!(
            sent.as_slice(),
            [Message::Join { .. }, Message::Catchup { .. }]
        ));
        let shared = Message::Shared {
            sender_id: "server".into(),
            target_id: "phone".into(),
        };
        for _ in 0..5 {
            peer.handle_message(shared.clone(), now);
        }
        let in_sync = Message::InSync {
            sender_id: "server".into(),
            target_id: "phone".into(),
        };
        peer.handle_message(in_sync.clone(), now);
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(Holdings::new());
        let sent: Vec<Message> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        assert!(
            matches!(sent.as_slice(), [Message::Catchup { .. }]),
            "{sent:?}"
        );
        peer.handle_message(in_sync, now);
        assert_eq!(peer.poll_effect(), None);
        assert!(peer.is_caught_up());
        let events: Vec<ClientEvent> = std::iter::from_fn(|| peer.poll_event()).collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| **e == ClientEvent::CaughtUp)
                .count(),
            1,
            "caught up once, after the second verdict: {events:?}"
        );
    }

    /// A document fetched during a catch-up counts as done once the server's heads in its
    /// sync message equal ours, not only at the next verdict.
    #[test]
    fn progress_counts_a_document_once_the_server_holds_it_all() {
        let now = Instant::now();
        let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(Holdings::new());
        let id = DocumentId::from_bytes([7; 16]);
        let heads = vec![ChangeHash([1; 32])];
        peer.handle_message(
            Message::Manifest {
                sender_id: "server".into(),
                target_id: "phone".into(),
                entries: vec![(id, heads_digest(&heads))],
            },
            now,
        );
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(Holdings::new());
        assert_eq!(
            peer.poll_effect(),
            Some(ClientEffect::Offer(vec![(id, None)]))
        );
        let offered = Offered {
            data: Some(vec![0x42]),
            empty: true,
        };
        peer.handle_offers(vec![(id, offered)]);
        let progress = |peer: &mut ClientPeer| {
            std::iter::from_fn(|| peer.poll_event())
                .filter_map(|e| match e {
                    ClientEvent::Progress { done, total } => Some((done, total)),
                    _ => None,
                })
                .last()
        };
        assert_eq!(progress(&mut peer), Some((0, 1)));
        peer.handle_message(
            Message::Sync {
                sender_id: "server".into(),
                target_id: "phone".into(),
                document_id: id,
                data: vec![0x42],
            },
            now,
        );
        assert!(matches!(
            peer.poll_effect(),
            Some(ClientEffect::Apply { .. })
        ));
        let applied = Applied {
            reply: None,
            heads: heads.clone(),
            server_heads: Some(heads),
        };
        peer.handle_applied(id, Ok(applied));
        assert_eq!(progress(&mut peer), Some((1, 1)));
    }

    /// A document the server refuses fails alone: it is not offered again in this
    /// connection, and the catch-up ends caught up over the others instead of asking round
    /// after round for a verdict that cannot come.
    #[test]
    fn a_refused_document_fails_alone_and_the_catch_up_settles() {
        use automerge::transaction::Transactable;
        let now = Instant::now();
        let held = |text: &str| {
            let mut doc = automerge::Automerge::new();
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "x", text).expect("a put");
            tx.commit();
            doc.get_heads()
        };
        let (big, small) = (
            DocumentId::from_bytes([1; 16]),
            DocumentId::from_bytes([2; 16]),
        );
        let (big_heads, small_heads) = (held("big"), held("small"));
        let mut holdings = Holdings::new();
        holdings.insert(big, Holding::new(big_heads.clone(), None));
        holdings.insert(small, Holding::new(small_heads.clone(), Some(&small_heads)));

        let mut peer = ClientPeer::new(ClientConfig::new("phone"), now);
        peer.handle_message(
            Message::Peer {
                sender_id: "server".into(),
                target_id: "phone".into(),
                peer_metadata: PeerMetadata::default(),
                selected_protocol_version: PROTOCOL_VERSION.into(),
            },
            now,
        );
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(holdings.clone());
        assert_eq!(
            peer.poll_effect(),
            Some(ClientEffect::Offer(vec![(big, None)]))
        );
        let offered = Offered {
            data: Some(vec![0x42]),
            empty: false,
        };
        peer.handle_offers(vec![(big, offered)]);
        let sent: Vec<Message> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        assert!(
            matches!(sent.last(), Some(Message::Catchup { .. })),
            "{sent:?}"
        );

        peer.handle_message(
            Message::Refused {
                sender_id: "server".into(),
                target_id: "phone".into(),
                document_id: big,
                rule: "document-bytes".into(),
                limit: 8,
            },
            now,
        );
        assert_eq!(
            peer.poll_effect(),
            Some(ClientEffect::Refused {
                id: big,
                rule: Some(Refusal {
                    rule: Rule::DocumentBytes,
                    limit: 8
                })
            })
        );
        // The server never took the big one: its manifest differs there only.
        peer.handle_message(
            Message::Manifest {
                sender_id: "server".into(),
                target_id: "phone".into(),
                entries: vec![(small, heads_digest(&small_heads))],
            },
            now,
        );
        assert_eq!(peer.poll_effect(), Some(ClientEffect::Holdings));
        peer.handle_holdings(holdings);
        let events: Vec<ClientEvent> = std::iter::from_fn(|| peer.poll_event()).collect();
        assert!(events.contains(&ClientEvent::CaughtUp), "{events:?}");
        let sent: Vec<Message> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        assert!(sent.is_empty(), "no further round: {sent:?}");
        // A local edit of the refused document is not offered in this connection.
        while peer.poll_effect().is_some() {}
        peer.local_change(vec![big]);
        assert_eq!(peer.poll_effect(), None);
        assert!(!peer.is_closed());
    }
}

//! The sync client: one background task on the crate's runtime that connects to the
//! server's `/sync`, runs the catch-up (DESIGN.md decision 2) and then live sync, and
//! reconnects with exponential backoff and jitter. Commands from the API (a local change,
//! `sync_now`, `cancel_sync`, the network flag) reach it through a channel and act at once.
//!
//! The catch-up: `join` and `lotse-catchup` go out together; the server answers `peer` and
//! either `lotse-in-sync` (done) or `lotse-manifest`. Then the documents that differ are
//! synced, pipelined, with another `lotse-catchup` behind them as a barrier, until the
//! server says in sync. Changes received are stored before anything acknowledging them is
//! sent; a document counts as synced only once the server's heads include it.
//!
//! A message type this app does not know (an extension of a newer server) is skipped; any
//! other frame that does not decode ends the connection. Announcements of new shares
//! (`lotse-shared`) that arrive while a catch-up is under way are answered by one more
//! catch-up once it is done, however many arrived.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{
    DocKind, DocSync, DocumentId, Message, PROTOCOL_VERSION, PeerMetadata, WireError,
};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::events::SyncState;
use crate::repo::{Repo, SyncStatus};
use crate::shared::{Command, Shared, is_revoked_body};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// While connected, a catch-up now and then finds documents newly shared with us.
const RECHECK_EVERY: Duration = Duration::from_secs(300);
/// Rounds of one catch-up before we call it stuck.
const MAX_ROUNDS: u32 = 50;
/// No frame for this long (the server pings every 15 s) means the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Frames above this are refused, as the server refuses ours.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How a session ended.
enum Ended {
    Shutdown,
    Revoked,
    NetworkOff,
    Cancelled,
    Failed(Error),
}

/// The delay before reconnect attempt `attempt` (0-based): exponential, capped, with full
/// jitter between half and all of it so that phones do not reconnect in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(BACKOFF_MAX);
    cap.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

pub async fn run(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut waiters: Vec<oneshot::Sender<Result<()>>> = Vec::new();
    let mut attempt: u32 = 0;
    loop {
        let enrolled = match shared.repo.lock().await.as_ref() {
            None => return,
            Some(repo) => repo.identity.is_some(),
        };
        if !shared.network_available() || !enrolled {
            if shared.events.state() != SyncState::Revoked || enrolled {
                shared.events.set_state(SyncState::Offline);
            }
            let reason = if enrolled {
                Error::Offline
            } else if shared.events.state() == SyncState::Revoked {
                // Until enrolled again, keep telling why there is nothing to sync.
                Error::Revoked
            } else {
                Error::InvalidState("not enrolled".into())
            };
            fail(&mut waiters, || clone_error(&reason));
            match commands.recv().await {
                None | Some(Command::Shutdown) => return,
                Some(Command::SyncNow(tx)) => {
                    let _ = tx.send(Err(clone_error(&reason)));
                }
                Some(_) => {}
            }
            continue;
        }
        let ended = match shared.transport() {
            // Server settings that rule the network out: said as the state and to every
            // `sync_now`, and asked again only after the backoff (the settings of an open
            // client do not change, but the app may be waiting on `sync_now`).
            Err(e) => Ended::Failed(e),
            Ok(_) => {
                shared.events.set_state(SyncState::Connecting);
                session(&shared, &mut commands, &mut waiters, &mut attempt).await
            }
        };
        let error = match ended {
            Ended::Shutdown => return,
            Ended::NetworkOff => continue,
            Ended::Revoked => {
                wipe(&shared).await;
                fail(&mut waiters, || Error::Revoked);
                continue;
            }
            Ended::Cancelled => Error::Cancelled,
            Ended::Failed(e) => e,
        };
        tracing::info!(error = %error, attempt, "sync connection ended");
        if !matches!(error, Error::Cancelled) {
            shared.events.set_state(SyncState::Error {
                reason: error.to_string(),
            });
        } else {
            shared.events.set_state(SyncState::Offline);
        }
        fail(&mut waiters, || clone_error(&error));
        // Wait out the backoff; commands cut it short or end it.
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => return,
                    Some(Command::SyncNow(tx)) => {
                        waiters.push(tx);
                        attempt = 0;
                        break;
                    }
                    Some(Command::Network(true)) | Some(Command::Enrolled) => {
                        attempt = 0;
                        break;
                    }
                    Some(Command::Network(false)) => break,
                    Some(Command::LocalChange(_)) | Some(Command::Cancel) => {}
                },
            }
        }
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Offline => Error::Offline,
        Error::Cancelled => Error::Cancelled,
        Error::Revoked => Error::Revoked,
        Error::Network(r) => Error::Network(r.clone()),
        Error::Untrusted(r) => Error::Untrusted(r.clone()),
        Error::InvalidState(r) => Error::InvalidState(r.clone()),
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field: field.clone(),
            reason: reason.clone(),
        },
        Error::Server {
            status,
            code,
            reason,
        } => Error::Server {
            status: *status,
            code: code.clone(),
            reason: reason.clone(),
        },
        other => Error::Network(other.to_string()),
    }
}

fn fail(waiters: &mut Vec<oneshot::Sender<Result<()>>>, error: impl Fn() -> Error) {
    for tx in waiters.drain(..) {
        let _ = tx.send(Err(error()));
    }
}

async fn wipe(shared: &Shared) {
    let ids: Vec<DocumentId> = {
        let mut guard = shared.repo.lock().await;
        let Some(repo) = guard.as_mut() else { return };
        let ids = repo.docs.keys().copied().collect();
        if let Err(e) = repo.wipe().await {
            tracing::error!(error = %e, "wiping the local store after revocation failed");
        }
        ids
    };
    tracing::warn!("device revoked by the server; local data wiped");
    shared.events.set_state(SyncState::Revoked);
    shared.events.changed(ids);
}

async fn connect(shared: &Shared, token: &str) -> Result<Socket, Ended> {
    let tls = shared.transport().map_err(Ended::Failed)?.ws_tls.clone();
    let url = shared.ws_url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Ended::Failed(Error::Network(format!("sync address: {e}"))))?;
    let header = format!("Bearer {token}")
        .parse()
        .map_err(|_| Ended::Failed(Error::Internal("token is not a header value".into())))?;
    request.headers_mut().insert("authorization", header);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(Ended::Failed(Error::Network("connecting timed out".into()))),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            if status == 401 && is_revoked_body(body) {
                Err(Ended::Revoked)
            } else {
                let code = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                Err(Ended::Failed(Error::Server {
                    status,
                    code,
                    reason: "the server refused the sync connection".into(),
                }))
            }
        }
        Ok(Err(e)) => Err(Ended::Failed(match crate::tls::failure_in(&e) {
            Some(reason) => Error::Untrusted(reason),
            None => Error::Network(e.to_string()),
        })),
    }
}

/// One connection's state.
struct Session<'a> {
    shared: &'a Shared,
    socket: Socket,
    peer_id: String,
    server_id: String,
    /// Documents we asked the server for and hold nothing of yet.
    requested: HashMap<DocumentId, (Automerge, DocSync)>,
    /// Catch-up barriers sent whose verdict has not arrived.
    barriers: u32,
    /// `lotse-shared` arrived after the last catch-up was sent: one more is owed once the
    /// ones in flight are answered.
    catchup_owed: bool,
    rounds: u32,
    /// The documents the current catch-up found different, for progress counts.
    differing: BTreeSet<DocumentId>,
    in_sync: bool,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

async fn session(
    shared: &Shared,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    waiters: &mut Vec<oneshot::Sender<Result<()>>>,
    attempt: &mut u32,
) -> Ended {
    let token = {
        let guard = shared.repo.lock().await;
        match guard.as_ref().and_then(|r| r.identity.clone()) {
            Some(identity) => identity.token,
            None => return Ended::Failed(Error::InvalidState("not enrolled".into())),
        }
    };
    if let Err(e) = shared.complete_identity().await {
        return match e {
            Error::Revoked => Ended::Revoked,
            e => Ended::Failed(e),
        };
    }
    let socket = tokio::select! {
        connected = connect(shared, &token) => match connected {
            Ok(s) => s,
            Err(ended) => return ended,
        },
        ended = interrupted(commands, waiters) => return ended,
    };
    // Connected: queued offer answers go out now.
    shared.offers_wake.notify_one();
    let mut s = Session {
        shared,
        socket,
        peer_id: format!("lotse-core-{}", uuid::Uuid::new_v4().simple()),
        server_id: String::new(),
        requested: HashMap::new(),
        barriers: 0,
        catchup_owed: false,
        rounds: 0,
        differing: BTreeSet::new(),
        in_sync: false,
        waiters: std::mem::take(waiters),
    };
    let ended = s.drive(commands, attempt).await;
    *waiters = std::mem::take(&mut s.waiters);
    let _ = s.socket.close(None).await;
    if let Some(repo) = shared.repo.lock().await.as_mut()
        && let Err(e) = repo.flush_sync().await
    {
        tracing::warn!(error = %e, "could not store sync states");
    }
    ended
}

/// Commands that matter while a connection is being opened.
async fn interrupted(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    waiters: &mut Vec<oneshot::Sender<Result<()>>>,
) -> Ended {
    loop {
        match commands.recv().await {
            None | Some(Command::Shutdown) => return Ended::Shutdown,
            Some(Command::Cancel) => return Ended::Cancelled,
            Some(Command::Network(false)) => return Ended::NetworkOff,
            Some(Command::SyncNow(tx)) => waiters.push(tx),
            Some(_) => {}
        }
    }
}

impl Session<'_> {
    async fn drive(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        attempt: &mut u32,
    ) -> Ended {
        // Every in-flight flag of the last connection is stale.
        {
            let mut guard = self.shared.repo.lock().await;
            let Some(repo) = guard.as_mut() else {
                return Ended::Shutdown;
            };
            for doc in repo.docs.values_mut() {
                doc.reset_sync();
            }
        }
        let join = Message::Join {
            sender_id: self.peer_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(self.storage_id().await),
                is_ephemeral: Some(false),
            },
            supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
        };
        if let Err(e) = self.send(join).await {
            return Ended::Failed(e);
        }
        if let Err(e) = self.send_catchup().await {
            return Ended::Failed(e);
        }
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        recheck.tick().await;
        loop {
            let step = tokio::select! {
                frame = tokio::time::timeout(SILENCE_LIMIT, self.socket.next()) => match frame {
                    Err(_) => Err(Ended::Failed(Error::Network("the server went silent".into()))),
                    Ok(None) => Err(Ended::Failed(Error::Network("the server closed the connection".into()))),
                    Ok(Some(Err(e))) => Err(Ended::Failed(Error::Network(e.to_string()))),
                    Ok(Some(Ok(Frame::Binary(bytes)))) => match read_frame(&bytes) {
                        Ok(Some(m)) => self.on_message(m, attempt).await,
                        Ok(None) => Ok(()),
                        Err(e) => Err(Ended::Failed(Error::Network(format!("malformed message from the server: {e}")))),
                    },
                    Ok(Some(Ok(Frame::Close(_)))) => Err(Ended::Failed(Error::Network("the server closed the connection".into()))),
                    Ok(Some(Ok(_))) => Ok(()),
                },
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => Err(Ended::Shutdown),
                    Some(Command::Cancel) => Err(Ended::Cancelled),
                    Some(Command::Network(false)) => Err(Ended::NetworkOff),
                    Some(Command::Network(true)) | Some(Command::Enrolled) => Ok(()),
                    Some(Command::LocalChange(ids)) => self.offer_all(&ids).await.map_err(Ended::Failed),
                    Some(Command::SyncNow(tx)) => {
                        self.waiters.push(tx);
                        self.send_catchup().await.map_err(Ended::Failed)
                    }
                },
                _ = recheck.tick() => {
                    if self.barriers == 0 {
                        self.send_catchup().await.map_err(Ended::Failed)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    async fn storage_id(&self) -> String {
        self.shared
            .repo
            .lock()
            .await
            .as_ref()
            .map(|r| r.storage_id.clone())
            .unwrap_or_default()
    }

    async fn send(&mut self, message: Message) -> Result<()> {
        self.socket
            .send(Frame::Binary(message.encode().into()))
            .await
            .map_err(|e| Error::Network(e.to_string()))
    }

    async fn send_all(&mut self, messages: Vec<Message>) -> Result<()> {
        for m in messages {
            self.socket
                .feed(Frame::Binary(m.encode().into()))
                .await
                .map_err(|e| Error::Network(e.to_string()))?;
        }
        self.socket
            .flush()
            .await
            .map_err(|e| Error::Network(e.to_string()))
    }

    async fn send_catchup(&mut self) -> Result<()> {
        let message = {
            let guard = self.shared.repo.lock().await;
            let repo = guard.as_ref().ok_or(Error::Closed)?;
            let held = repo.holdings();
            Message::Catchup {
                sender_id: self.peer_id.clone(),
                target_id: self.server_id.clone(),
                digest: lotse_protocol::digest(held.iter().map(|(id, h)| (id, h.as_slice()))),
                count: held.len() as u64,
            }
        };
        self.barriers += 1;
        // The server answers this one after everything it announced before reading it.
        self.catchup_owed = false;
        self.send(message).await
    }

    fn sync_message(&self, id: DocumentId, data: Vec<u8>, request: bool) -> Message {
        let (sender_id, target_id) = (self.peer_id.clone(), self.server_id.clone());
        if request {
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
        }
    }

    /// Our next sync message for each document, if we have something to say.
    async fn offer_all(&mut self, ids: &[DocumentId]) -> Result<()> {
        if self.server_id.is_empty() {
            // Not joined yet; the catch-up will cover these.
            return Ok(());
        }
        let mut out = Vec::new();
        {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            for id in ids {
                if let Some(doc) = repo.docs.get_mut(id) {
                    if let Some(data) = doc.sync.generate(&doc.doc) {
                        out.push(self.sync_message(*id, data, false));
                    }
                } else {
                    let (doc, sync) = self.requested.entry(*id).or_default();
                    if let Some(data) = sync.generate(doc) {
                        out.push(self.sync_message(*id, data, true));
                    }
                }
            }
        }
        self.send_all(out).await
    }

    async fn on_message(&mut self, message: Message, attempt: &mut u32) -> Result<(), Ended> {
        match message {
            Message::Peer { sender_id, .. } => {
                self.server_id = sender_id;
                Ok(())
            }
            Message::InSync { .. } => {
                self.barriers = self.barriers.saturating_sub(1);
                self.on_in_sync(attempt).await.map_err(Ended::Failed)
            }
            Message::Manifest { entries, .. } => {
                self.barriers = self.barriers.saturating_sub(1);
                self.on_manifest(&entries).await.map_err(Ended::Failed)
            }
            Message::Sync {
                document_id, data, ..
            } => self
                .on_sync(document_id, &data)
                .await
                .map_err(Ended::Failed),
            Message::DocUnavailable { document_id, .. } => self
                .on_unavailable(document_id)
                .await
                .map_err(Ended::Failed),
            Message::Revoked { .. } => Err(Ended::Revoked),
            // Something was shared with this volunteer while connected: catch up now rather
            // than at the next periodic check. While a catch-up is under way (it may have
            // left before the share), one more follows when it is answered: a burst of
            // announcements costs one catch-up, not one each.
            Message::Shared { .. } => {
                if self.barriers > 0 {
                    self.catchup_owed = true;
                    Ok(())
                } else {
                    self.send_catchup().await.map_err(Ended::Failed)
                }
            }
            Message::Error { message, .. } => {
                if message.contains("revoked") {
                    Err(Ended::Revoked)
                } else {
                    Err(Ended::Failed(Error::Server {
                        status: 0,
                        code: "sync_error".into(),
                        reason: message.chars().take(300).collect(),
                    }))
                }
            }
            _ => Ok(()),
        }
    }

    /// The server's recorded heads equal ours for every document: all synced.
    async fn on_in_sync(&mut self, attempt: &mut u32) -> Result<()> {
        let (changed, needs_schedule) = {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            let mut changed = Vec::new();
            for (id, doc) in repo.docs.iter_mut() {
                let before = doc.status();
                let heads = doc.heads();
                doc.set_server_heads(heads);
                if doc.status() != before {
                    changed.push(*id);
                }
            }
            repo.flush_sync().await?;
            (changed, !has_schedule(repo))
        };
        self.shared.events.changed(changed);
        if self.barriers > 0 {
            // A later barrier is on its way (sync_now during a catch-up).
            return Ok(());
        }
        if self.catchup_owed {
            // Shares were announced while the catch-up just answered was under way.
            return self.send_catchup().await;
        }
        if needs_schedule {
            // First full sync and the server holds no schedule of ours: start one, so that
            // availability has a home. Created only after a full catch-up, so a second
            // device of the same volunteer receives the first one's instead.
            if let Some(id) = self.shared.ensure_schedule().await? {
                self.offer_all(&[id]).await?;
                return self.send_catchup().await;
            }
        }
        self.in_sync = true;
        self.rounds = 0;
        self.differing.clear();
        *attempt = 0;
        self.shared.events.set_state(SyncState::Idle);
        for tx in self.waiters.drain(..) {
            let _ = tx.send(Ok(()));
        }
        Ok(())
    }

    async fn on_manifest(&mut self, entries: &[(DocumentId, [u8; 8])]) -> Result<()> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(Error::Network(
                "catch-up does not converge; retrying later".into(),
            ));
        }
        let (plan, changed) = {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            let held = repo.holdings();
            let plan = lotse_protocol::plan(&held, entries);
            // Documents whose heads match the manifest are on the server as they are here.
            let mut changed = Vec::new();
            for (id, digest) in entries {
                if let (Some(doc), Some(heads)) = (repo.docs.get_mut(id), held.get(id))
                    && lotse_protocol::heads_digest(heads) == *digest
                {
                    let before = doc.status();
                    doc.set_server_heads(heads.clone());
                    if doc.status() != before {
                        changed.push(*id);
                    }
                }
            }
            (plan, changed)
        };
        self.shared.events.changed(changed);
        let mut work: Vec<DocumentId> = plan.differ.clone();
        work.extend(&plan.only_local);
        work.extend(&plan.missing_locally);
        if self.in_sync || self.differing.is_empty() {
            self.in_sync = false;
            self.differing = work.iter().copied().collect();
        } else {
            self.differing.extend(work.iter().copied());
        }
        self.report_progress(&work);
        self.offer_all(&work).await?;
        self.send_catchup().await
    }

    fn report_progress(&self, remaining: &[DocumentId]) {
        let total = self.differing.len() as u32;
        let left = remaining
            .iter()
            .filter(|id| self.differing.contains(id))
            .count() as u32;
        self.shared.events.set_state(SyncState::Syncing {
            done: total.saturating_sub(left),
            total,
        });
    }

    async fn on_sync(&mut self, id: DocumentId, data: &[u8]) -> Result<()> {
        let mut changed = false;
        let reply = {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            if repo.docs.contains_key(&id) {
                let before = repo.docs.get(&id).map(|d| d.status());
                changed |= repo.receive(&id, data).await?;
                let doc = repo.docs.get_mut(&id).ok_or(Error::Closed)?;
                changed |= before.as_ref() != Some(&doc.status());
                doc.sync.generate(&doc.doc)
            } else {
                let (mut doc, mut sync) = self.requested.remove(&id).unwrap_or_default();
                sync.receive(&mut doc, data)
                    .map_err(|e| Error::Network(format!("sync message for {id}: {e}")))?;
                if doc.get_heads().is_empty() {
                    let reply = sync.generate(&doc);
                    self.requested.insert(id, (doc, sync));
                    reply
                } else {
                    // First content of a document new to us: store it (with a key of its
                    // own) before acknowledging.
                    repo.insert(id, doc, sync).await?;
                    changed = true;
                    let held = repo.docs.get_mut(&id).ok_or(Error::Closed)?;
                    held.sync.generate(&held.doc)
                }
            }
        };
        if changed {
            self.shared.events.changed(vec![id]);
        }
        if !self.in_sync && self.differing.contains(&id) {
            self.progress_from_docs().await;
        }
        if let Some(data) = reply {
            let m = self.sync_message(id, data, false);
            self.send(m).await?;
        }
        Ok(())
    }

    async fn progress_from_docs(&self) {
        let guard = self.shared.repo.lock().await;
        let Some(repo) = guard.as_ref() else { return };
        let done = self
            .differing
            .iter()
            .filter(|id| {
                repo.docs
                    .get(id)
                    .is_some_and(|d| d.sync.in_sync(&d.doc) || d.status() == SyncStatus::Synced)
            })
            .count() as u32;
        self.shared.events.set_state(SyncState::Syncing {
            done,
            total: self.differing.len() as u32,
        });
    }

    async fn on_unavailable(&mut self, id: DocumentId) -> Result<()> {
        if self.requested.remove(&id).is_some() {
            return Ok(());
        }
        {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            let Some(doc) = repo.docs.get(&id) else {
                return Ok(());
            };
            if doc.server_heads.as_ref().is_some_and(|h| !h.is_empty()) {
                // The server had it and no longer lets us sync it: access was withdrawn.
                tracing::info!(document_id = %id, "access withdrawn; removing the local copy");
                repo.remove(&id).await?;
            } else {
                repo.set_error(&id, Some("the server refused this document".into()));
                repo.flush_sync().await?;
            }
        }
        self.shared.events.changed(vec![id]);
        Ok(())
    }
}

/// Decodes a binary frame from the server. A message type this app does not know (an
/// extension of a newer server) is skipped: `Ok(None)`. Anything else that does not
/// decode is `Err`, and ends the connection.
fn read_frame(bytes: &[u8]) -> Result<Option<Message>, WireError> {
    match Message::decode(bytes) {
        Ok(message) => Ok(Some(message)),
        Err(WireError::UnknownType(ty)) => {
            let ty: String = ty.chars().take(64).collect();
            tracing::debug!(message_type = %ty, "skipping a message type this app does not know");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn has_schedule(repo: &Repo) -> bool {
    repo.docs
        .values()
        .any(|d| d.kind() == Some(DocKind::Schedule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            let cap = BACKOFF_FIRST
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_MAX);
            assert!(d >= cap / 2 && d <= cap, "{attempt}: {d:?}");
        }
        assert!(backoff(30) <= BACKOFF_MAX);
        let samples: BTreeSet<Duration> = (0..20).map(|_| backoff(5)).collect();
        assert!(samples.len() > 1, "jitter");
    }

    /// A CBOR map of text keys to text values, as cbor-x writes one.
    fn cbor_map(pairs: &[(&str, &str)]) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, s: &str) {
            match s.len() {
                n @ 0..24 => out.push(0x60 | n as u8),
                n @ 24..256 => out.extend([0x78, n as u8]),
                n => panic!("{n} bytes is too long for this helper"),
            }
            out.extend_from_slice(s.as_bytes());
        }
        assert!(pairs.len() < 24);
        let mut out = vec![0xa0 | pairs.len() as u8];
        for (k, v) in pairs {
            text(&mut out, k);
            text(&mut out, v);
        }
        out
    }

    fn unknown_extension() -> Vec<u8> {
        cbor_map(&[
            ("type", "lotse-something"),
            ("senderId", "server"),
            ("targetId", "phone"),
            ("flavour", "from a newer server"),
        ])
    }

    #[test]
    fn unknown_message_types_are_skipped_and_malformed_frames_are_not() {
        let shared = Message::Shared {
            sender_id: "server".into(),
            target_id: "phone".into(),
        };
        assert_eq!(
            read_frame(&shared.encode()).expect("a known message"),
            Some(shared)
        );
        // The hand-made frames decode as the protocol crate reads frames.
        let in_sync = cbor_map(&[
            ("type", "lotse-in-sync"),
            ("senderId", "server"),
            ("targetId", "phone"),
        ]);
        assert!(matches!(
            read_frame(&in_sync),
            Ok(Some(Message::InSync { .. }))
        ));
        for unknown in [
            unknown_extension(),
            cbor_map(&[("type", "some-future-automerge-type")]),
        ] {
            assert!(matches!(
                Message::decode(&unknown),
                Err(WireError::UnknownType(_))
            ));
            assert_eq!(read_frame(&unknown).expect("skipped"), None);
        }
        let mut trailing = unknown_extension();
        trailing.push(0x00);
        for malformed in [
            vec![0xff],
            vec![0x82, 0x01, 0x02],
            trailing,
            // Known type, required field missing.
            cbor_map(&[("type", "sync"), ("senderId", "server")]),
            // Unknown type, but not a well-formed frame.
            cbor_map(&[("type", "lotse-something"), ("type", "lotse-other")]),
            cbor_map(&[("senderId", "server")]),
        ] {
            assert!(read_frame(&malformed).is_err(), "{malformed:02x?}");
        }
    }

    type ServerSide = WebSocketStream<TcpStream>;

    /// The next message from the phone, `None` after `wait` of silence; panics when the
    /// phone drops the connection.
    async fn next_message(ws: &mut ServerSide, wait: Duration) -> Option<Message> {
        loop {
            match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Frame::Binary(bytes)))) => {
                    return Some(Message::decode(&bytes).expect("the phone's frame decodes"));
                }
                Ok(Some(Ok(Frame::Close(_)) | Err(_)) | None) => {
                    panic!("the phone ended the connection")
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn send_frame(ws: &mut ServerSide, bytes: Vec<u8>) {
        ws.send(Frame::Binary(bytes.into()))
            .await
            .expect("sending to the phone");
    }

    async fn wait_for_state(client: &crate::Client, what: impl Fn(&SyncState) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !what(&client.sync_state()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "state stayed {:?}",
                client.sync_state()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A scripted server on loopback: it announces an extension message the phone does
    /// not know and five shares while the phone's first catch-up is unanswered. The
    /// connection survives the unknown message, the five shares cost one more catch-up,
    /// and a malformed frame still ends the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_shares_costs_one_catchup_and_extensions_are_skipped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding");
        let addr = listener.local_addr().expect("address");
        let dir = std::env::temp_dir().join(format!(
            "lotse-core-sync-unit-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let client = crate::Client::open(crate::Config {
            data_dir: dir.clone(),
            server_url: format!("http://{addr}"),
            key: [7; 32],
            trusted_certificates_pem: None,
        })
        .await
        .expect("open");
        let shared = client.shared();
        shared
            .repo
            .lock()
            .await
            .as_mut()
            .expect("open store")
            .set_identity(crate::repo::Identity {
                device_id: uuid::Uuid::new_v4().to_string(),
                volunteer_id: uuid::Uuid::new_v4().to_string(),
                organisation_id: Some(uuid::Uuid::new_v4().to_string()),
                token: "device-token".into(),
            })
            .await
            .expect("identity");
        // A schedule exists, so the first complete sync does not start one.
        shared.ensure_schedule().await.expect("schedule");
        shared.command(Command::Enrolled);

        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the phone connects")
            .expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        let wait = Duration::from_secs(5);
        let Some(Message::Join {
            sender_id: phone, ..
        }) = next_message(&mut ws, wait).await
        else {
            panic!("expected join first");
        };
        let Some(Message::Catchup { .. }) = next_message(&mut ws, wait).await else {
            panic!("expected a catch-up with the join");
        };
        let mut catchups = 1;
        let server = "lotse-server".to_owned();
        let peer = Message::Peer {
            sender_id: server.clone(),
            target_id: phone.clone(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: PROTOCOL_VERSION.into(),
        };
        send_frame(&mut ws, peer.encode()).await;
        send_frame(&mut ws, unknown_extension()).await;
        let shared_message = Message::Shared {
            sender_id: server.clone(),
            target_id: phone.clone(),
        };
        for _ in 0..5 {
            send_frame(&mut ws, shared_message.encode()).await;
        }
        let in_sync = Message::InSync {
            sender_id: server.clone(),
            target_id: phone.clone(),
        };
        send_frame(&mut ws, in_sync.encode()).await;
        // Answer every catch-up until the phone has nothing more to say.
        while let Some(message) = next_message(&mut ws, Duration::from_millis(1500)).await {
            if let Message::Catchup { .. } = message {
                catchups += 1;
                send_frame(&mut ws, in_sync.encode()).await;
            }
        }
        assert_eq!(catchups, 2, "one catch-up for the join, one for the burst");
        wait_for_state(&client, |s| *s == SyncState::Idle).await;

        // Still connected: an unknown type again changes nothing, a broken frame ends it.
        send_frame(&mut ws, unknown_extension()).await;
        assert!(
            next_message(&mut ws, Duration::from_millis(300))
                .await
                .is_none()
        );
        assert_eq!(client.sync_state(), SyncState::Idle);
        send_frame(&mut ws, cbor_map(&[("type", "sync"), ("senderId", "x")])).await;
        wait_for_state(
            &client,
            |s| matches!(s, SyncState::Error { reason } if reason.contains("malformed")),
        )
        .await;

        client.close().await.expect("close");
        drop(client);
        let _ = std::fs::remove_dir_all(dir);
    }
}

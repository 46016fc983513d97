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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{DocKind, DocSync, DocumentId, Message, PROTOCOL_VERSION, PeerMetadata};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Shared;
use crate::error::{Error, Result};
use crate::events::SyncState;
use crate::repo::{Repo, SyncStatus};

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

pub enum Command {
    LocalChange(Vec<DocumentId>),
    SyncNow(oneshot::Sender<Result<()>>),
    Cancel,
    Network(bool),
    Enrolled,
    Shutdown,
}

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
        shared.events.set_state(SyncState::Connecting);
        let ended = session(&shared, &mut commands, &mut waiters, &mut attempt).await;
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

/// Whether an HTTP error answer from the server says the device was revoked.
pub fn is_revoked_body(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(|c| c == "device_revoked"))
        .unwrap_or(false)
}

async fn connect(shared: &Shared, token: &str) -> Result<Socket, Ended> {
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
        Some(tokio_tungstenite::Connector::Rustls(shared.ws_tls.clone())),
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
                    Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::decode(&bytes) {
                        Ok(m) => self.on_message(m, attempt).await,
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
            // than at the next periodic check. A catch-up already under way is fine; its
            // barrier is answered first and this one picks up the rest.
            Message::Shared { .. } => self.send_catchup().await.map_err(Ended::Failed),
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

    #[test]
    fn revoked_bodies_are_recognised() {
        assert!(is_revoked_body(
            br#"{"error":{"code":"device_revoked","message":"x"}}"#
        ));
        assert!(!is_revoked_body(
            br#"{"error":{"code":"unauthorized","message":"x"}}"#
        ));
        assert!(!is_revoked_body(b"not json"));
    }
}

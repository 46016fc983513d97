//! The sync client: one background task on the crate's runtime that connects to the
//! server's `/sync`, runs the catch-up (DESIGN.md decision 2) and then live sync, and
//! reconnects with exponential backoff and jitter. Commands from the API (a local change,
//! `sync_now`, `cancel_sync`, the network flag) reach it through a channel and act at once.
//!
//! What to send and when is decided by `lotse_protocol::ClientPeer` (the catch-up, live
//! sync, shares, withdrawn access, revocation; see `docs/sync.md`). This task owns the
//! socket and the encrypted store: it feeds the machine frames, commands and the time, and
//! carries out what it asks. Changes received are stored before anything acknowledging
//! them is sent; a document counts as synced only once the server's heads include it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::Automerge;
use lotse_protocol::peer::{
    Applied, ClientConfig, ClientEffect, ClientError, ClientEvent, Offered,
};
use lotse_protocol::{ClientPeer, DocKind, DocSync, DocumentId, Message};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::events::{CaseReplaced, DroppedEdit, SyncState};
use crate::generations;
use crate::repo::Repo;
use crate::shared::{Command, Shared, is_revoked_body, now};

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
        let enrolled = match shared.repo.lock().await.as_mut() {
            None => return,
            // A lapsed lease wipes the store here, before the token could be used.
            Some(repo) => {
                shared.enforce_lease(repo, now()).await.is_ok() && repo.identity.is_some()
            }
        };
        if !shared.network_available() || !enrolled {
            let wiped = matches!(
                shared.events.state(),
                SyncState::Revoked | SyncState::LeaseLapsed
            );
            if !wiped || enrolled {
                shared.events.set_state(SyncState::Offline);
            }
            let reason = if enrolled {
                Error::Offline
            } else if shared.events.state() == SyncState::Revoked {
                // Until enrolled again, keep telling why there is nothing to sync.
                Error::Revoked
            } else if shared.events.state() == SyncState::LeaseLapsed {
                Error::LeaseLapsed
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
        Error::LeaseLapsed => Error::LeaseLapsed,
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

/// One connection: the socket and the protocol machine that decides what goes over it.
struct Session<'a> {
    shared: &'a Shared,
    socket: Socket,
    peer: ClientPeer,
    /// Old generations of rewritten cases wait for their successor (`generations`).
    superseded: bool,
    /// Documents we asked the server for and hold nothing of yet.
    requested: HashMap<DocumentId, (Automerge, DocSync)>,
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
    // Every in-flight flag of the last connection is stale.
    let storage_id = {
        let mut guard = shared.repo.lock().await;
        let Some(repo) = guard.as_mut() else {
            return Ended::Shutdown;
        };
        for doc in repo.docs.values_mut() {
            doc.reset_sync();
        }
        repo.storage_id.clone()
    };
    let mut cfg = ClientConfig::new(format!("lotse-core-{}", uuid::Uuid::new_v4().simple()));
    cfg.storage_id = Some(storage_id);
    cfg.recheck_every = Some(RECHECK_EVERY);
    cfg.silence_limit = Some(SILENCE_LIMIT);
    cfg.max_rounds = MAX_ROUNDS;
    let mut s = Session {
        shared,
        socket,
        // Checked once at the start: a successor may have arrived before a restart.
        superseded: true,
        peer: ClientPeer::new(cfg, std::time::Instant::now()),
        requested: HashMap::new(),
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
    /// Feeds the machine frames, commands and the time, and carries out what it asks.
    async fn drive(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        attempt: &mut u32,
    ) -> Ended {
        loop {
            if let Err(ended) = self.work(attempt).await {
                return ended;
            }
            let wake = self.peer.poll_timeout().map(tokio::time::Instant::from_std);
            let step = tokio::select! {
                frame = self.socket.next() => match frame {
                    None => Err(Ended::Failed(Error::Network("the server closed the connection".into()))),
                    Some(Err(e)) => Err(Ended::Failed(Error::Network(e.to_string()))),
                    Some(Ok(Frame::Binary(bytes))) => {
                        self.peer.handle_binary(&bytes, std::time::Instant::now());
                        Ok(())
                    }
                    Some(Ok(Frame::Close(_))) => Err(Ended::Failed(Error::Network("the server closed the connection".into()))),
                    Some(Ok(_)) => {
                        self.peer.handle_heard(std::time::Instant::now());
                        Ok(())
                    }
                },
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => Err(Ended::Shutdown),
                    Some(Command::Cancel) => Err(Ended::Cancelled),
                    Some(Command::Network(false)) => Err(Ended::NetworkOff),
                    Some(Command::Network(true)) | Some(Command::Enrolled) => Ok(()),
                    Some(Command::LocalChange(ids)) => {
                        self.peer.local_change(ids);
                        Ok(())
                    }
                    Some(Command::SyncNow(tx)) => {
                        self.waiters.push(tx);
                        self.peer.catch_up();
                        Ok(())
                    }
                },
                () = until(wake) => {
                    self.peer.handle_timeout(std::time::Instant::now());
                    Ok(())
                }
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    /// Carries out effects, sends what the machine wants sent and reacts to its events,
    /// until it waits for the server or the app.
    async fn work(&mut self, attempt: &mut u32) -> Result<(), Ended> {
        loop {
            let mut idle = true;
            while let Some(effect) = self.peer.poll_effect() {
                idle = false;
                self.carry_out(effect).await?;
            }
            let mut out = Vec::new();
            while let Some(m) = self.peer.poll_transmit() {
                out.push(m);
            }
            if !out.is_empty() {
                // The app said the network is gone: nothing more leaves, not even the
                // reply to a frame that came in just before (it would carry edits made
                // after the app said so).
                if !self.shared.network.load(Ordering::SeqCst) {
                    return Err(Ended::NetworkOff);
                }
                idle = false;
                self.send_all(out).await.map_err(Ended::Failed)?;
            }
            while let Some(event) = self.peer.poll_event() {
                idle = false;
                self.on_event(event, attempt).await?;
            }
            if idle {
                return Ok(());
            }
        }
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

    async fn carry_out(&mut self, effect: ClientEffect) -> Result<(), Ended> {
        match effect {
            ClientEffect::Holdings => {
                let holdings = {
                    let guard = self.shared.repo.lock().await;
                    let repo = guard.as_ref().ok_or(Ended::Shutdown)?;
                    let mut holdings = repo.holdings();
                    // Old generations wait for their successor; the server holds nothing
                    // of them any more.
                    for old in generations::waiting(repo).await.map_err(Ended::Failed)? {
                        holdings.remove(&old);
                    }
                    holdings
                };
                self.peer.handle_holdings(holdings);
            }
            ClientEffect::Offer(docs) => {
                let mut offers = Vec::with_capacity(docs.len());
                {
                    let mut guard = self.shared.repo.lock().await;
                    let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                    for (id, hint) in docs {
                        let offered = match repo.docs.get_mut(&id) {
                            Some(doc) => {
                                if let Some(heads) = &hint {
                                    doc.sync.assume_peer_has(heads);
                                }
                                Offered {
                                    data: doc.sync.generate(&doc.doc),
                                    empty: doc.doc.get_heads().is_empty(),
                                }
                            }
                            None => {
                                let (doc, sync) = self.requested.entry(id).or_default();
                                Offered {
                                    data: sync.generate(doc),
                                    empty: doc.get_heads().is_empty(),
                                }
                            }
                        };
                        offers.push((id, offered));
                    }
                }
                self.peer.handle_offers(offers);
            }
            ClientEffect::Apply { id, data } => {
                let applied = self.apply(id, &data).await;
                self.peer
                    .handle_applied(id, applied.map_err(|e| e.to_string()));
                if self.superseded {
                    self.replay_ready().await.map_err(Ended::Failed)?;
                }
            }
            ClientEffect::Superseded {
                id,
                successor,
                known,
            } => {
                {
                    let guard = self.shared.repo.lock().await;
                    let repo = guard.as_ref().ok_or(Ended::Shutdown)?;
                    generations::superseded(repo, id, successor, &known)
                        .await
                        .map_err(Ended::Failed)?;
                }
                tracing::info!(document_id = %id, successor = %successor, "case rewritten by the network");
                self.superseded = true;
                self.replay_ready().await.map_err(Ended::Failed)?;
            }
            ClientEffect::ServerHas(docs) => {
                let changed = {
                    let mut guard = self.shared.repo.lock().await;
                    let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                    let mut changed = Vec::new();
                    for (id, heads) in docs {
                        if let Some(doc) = repo.docs.get_mut(&id) {
                            let before = doc.status();
                            doc.set_server_heads(heads);
                            if doc.status() != before {
                                changed.push(id);
                            }
                        }
                    }
                    repo.flush_sync().await.map_err(Ended::Failed)?;
                    changed
                };
                self.shared.events.changed(changed);
            }
            ClientEffect::Forget(id) => {
                {
                    let mut guard = self.shared.repo.lock().await;
                    let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                    // The server had it and no longer lets us sync it: access was withdrawn.
                    tracing::info!(document_id = %id, "access withdrawn; removing the local copy");
                    repo.remove(&id).await.map_err(Ended::Failed)?;
                }
                self.shared.events.changed(vec![id]);
            }
            ClientEffect::Refused { id, rule } => {
                {
                    let mut guard = self.shared.repo.lock().await;
                    let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                    let reason = match &rule {
                        Some(refusal) => {
                            tracing::warn!(document_id = %id, rule = %refusal.rule, "the server refused changes");
                            crate::repo::refusal_reason(refusal)
                        }
                        None => "the server refused this document".into(),
                    };
                    repo.set_error(&id, Some(reason));
                    repo.flush_sync().await.map_err(Ended::Failed)?;
                }
                self.shared.events.changed(vec![id]);
            }
            ClientEffect::Deleted(id) => {
                let held = {
                    let mut guard = self.shared.repo.lock().await;
                    let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                    let held = repo.docs.contains_key(&id);
                    // Its key goes with it: what is left in the file cannot be read.
                    repo.remove(&id).await.map_err(Ended::Failed)?;
                    held
                };
                if held {
                    tracing::info!(document_id = %id, "deleted by the network; removed with its key");
                    self.shared.events.changed(vec![id]);
                    self.shared.events.case_deleted(id);
                }
            }
            ClientEffect::Wipe => return Err(Ended::Revoked),
            ClientEffect::RenewLease(lease_ms) => {
                let mut guard = self.shared.repo.lock().await;
                let repo = guard.as_mut().ok_or(Ended::Shutdown)?;
                repo.renew_lease(now(), lease_ms)
                    .await
                    .map_err(Ended::Failed)?;
            }
            // The reason arrives as an event; a close without one is the server's doing.
            ClientEffect::Close => {
                while let Some(event) = self.peer.poll_event() {
                    if let ClientEvent::Failed(e) = event {
                        return Err(Ended::Failed(sync_error(e)));
                    }
                }
                return Err(Ended::Failed(Error::Network(
                    "the server closed the connection".into(),
                )));
            }
        }
        Ok(())
    }

    /// Applies a sync message of the server and stores what changed before anything
    /// acknowledging it can go out.
    async fn apply(&mut self, id: DocumentId, data: &[u8]) -> Result<Applied> {
        let mut changed = false;
        let applied = {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            if repo.docs.contains_key(&id) {
                let before = repo.docs.get(&id).map(|d| d.status());
                changed |= repo.receive(&id, data).await?;
                let doc = repo.docs.get_mut(&id).ok_or(Error::Closed)?;
                changed |= before.as_ref() != Some(&doc.status());
                Applied {
                    reply: doc.sync.generate(&doc.doc),
                    heads: doc.heads(),
                    server_heads: doc.server_heads.clone(),
                }
            } else {
                let (mut doc, mut sync) = self.requested.remove(&id).unwrap_or_default();
                sync.receive(&mut doc, data)
                    .map_err(|e| Error::Network(format!("sync message for {id}: {e}")))?;
                if doc.get_heads().is_empty() {
                    let reply = sync.generate(&doc);
                    self.requested.insert(id, (doc, sync));
                    Applied {
                        reply,
                        heads: Vec::new(),
                        server_heads: None,
                    }
                } else {
                    // First content of a document new to us: store it (with a key of its
                    // own) before acknowledging.
                    repo.insert(id, doc, sync).await?;
                    changed = true;
                    let held = repo.docs.get_mut(&id).ok_or(Error::Closed)?;
                    Applied {
                        reply: held.sync.generate(&held.doc),
                        heads: held.heads(),
                        server_heads: held.server_heads.clone(),
                    }
                }
            }
        };
        if changed {
            self.shared.events.changed(vec![id]);
        }
        Ok(applied)
    }

    /// Moves every waiting old generation whose successor arrived onto it, and tells the
    /// machine and the app.
    async fn replay_ready(&mut self) -> Result<()> {
        let (replaced, left) = {
            let mut guard = self.shared.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            let replaced = generations::replay_ready(repo, now()).await?;
            let left = !generations::waiting(repo).await?.is_empty();
            (replaced, left)
        };
        self.superseded = left;
        for r in replaced {
            tracing::info!(
                document_id = %r.old,
                successor = %r.new,
                edits = r.edits,
                dropped = r.dropped.len(),
                "moved onto the case's new generation"
            );
            if r.edits > 0 {
                self.peer.local_change(vec![r.new]);
            }
            self.shared.events.changed(vec![r.old, r.new]);
            self.shared.events.case_replaced(CaseReplaced {
                case_id: r.case_id,
                document_id: r.new,
                dropped: r
                    .dropped
                    .into_iter()
                    .map(|e| DroppedEdit {
                        kind: e.kind.as_str().to_owned(),
                        id: e.id,
                    })
                    .collect(),
            });
        }
        Ok(())
    }

    async fn on_event(&mut self, event: ClientEvent, attempt: &mut u32) -> Result<(), Ended> {
        match event {
            ClientEvent::Progress { done, total } => {
                self.shared
                    .events
                    .set_state(SyncState::Syncing { done, total });
            }
            ClientEvent::CaughtUp => self.caught_up(attempt).await.map_err(Ended::Failed)?,
            ClientEvent::Failed(e) => return Err(Ended::Failed(sync_error(e))),
            ClientEvent::Joined { .. }
            | ClientEvent::Verdict { .. }
            | ClientEvent::Unavailable(_)
            | ClientEvent::Ephemeral(_) => {}
        }
        Ok(())
    }

    /// Every catch-up is answered in sync: all synced.
    async fn caught_up(&mut self, attempt: &mut u32) -> Result<()> {
        let needs_schedule = {
            let guard = self.shared.repo.lock().await;
            let repo = guard.as_ref().ok_or(Error::Closed)?;
            !has_schedule(repo)
        };
        if needs_schedule {
            // First full sync and the server holds no schedule of ours: start one, so that
            // availability has a home. Created only after a full catch-up, so a second
            // device of the same volunteer receives the first one's instead.
            if let Some(id) = self.shared.ensure_schedule().await? {
                self.peer.local_change(vec![id]);
                self.peer.catch_up();
                return Ok(());
            }
        }
        *attempt = 0;
        self.shared.events.set_state(SyncState::Idle);
        for tx in self.waiters.drain(..) {
            let _ = tx.send(Ok(()));
        }
        Ok(())
    }
}

fn sync_error(e: ClientError) -> Error {
    match e {
        ClientError::Server(reason) => Error::Server {
            status: 0,
            code: "sync_error".into(),
            reason,
        },
        ClientError::Malformed(reason) => {
            Error::Network(format!("malformed message from the server: {reason}"))
        }
        ClientError::Silent => Error::Network("the server went silent".into()),
        ClientError::NoConvergence => {
            Error::Network("catch-up does not converge; retrying later".into())
        }
        ClientError::Document(id, reason) => {
            Error::Network(format!("sync message for {id}: {reason}"))
        }
    }
}

/// Resolves at `at`, or never.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
    use lotse_protocol::{PROTOCOL_VERSION, PeerMetadata};
    use std::collections::BTreeSet;

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
        // The schedule the phone holds and the server has never confirmed goes out first,
        // then the catch-up, all before the phone heard `peer`.
        loop {
            match next_message(&mut ws, wait).await {
                Some(Message::Sync { .. }) => continue,
                Some(Message::Catchup { .. }) => break,
                other => panic!("expected a catch-up with the join, got {other:?}"),
            }
        }
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

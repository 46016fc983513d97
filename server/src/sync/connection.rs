//! One WebSocket peer, driven by `lotse_protocol::ServerPeer`: this task feeds it frames,
//! the hub's and the application's events and the time, and carries out what it asks
//! (access checks, sync states, the hub's exchange under the document's lock, relays). Every
//! protocol decision is the machine's; what stays here is the socket, the store, the
//! device's "last sync" and the connection's part of the audit trail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket};
use lotse_protocol::peer::{
    Access, DocTask, ExchangeError, ServerConfig, ServerEffect, ServerEvent,
};
use lotse_protocol::{DocumentId, ServerPeer};
use tokio::sync::broadcast;

use super::audit::AuditTrail;
use crate::hub::{Creator, Hub, HubError, HubEvent, Relay};
use crate::store::{self, AccessChange, Store, Viewer};

pub use lotse_protocol::peer::server::MAX_FRAME_BYTES;

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
    /// A coordinator's session: its token hash and when it expires (ms); the socket
    /// closes with the session.
    pub session: Option<(String, i64)>,
    /// A device's lease, from its organisation's settings.
    pub lease_ms: Option<u64>,
}

impl PeerIdentity {
    /// Whom the actors of this connection's changes are bound to.
    fn writer(&self) -> store::Writer {
        match (&self.device_id, &self.viewer.volunteer_id) {
            (Some(device_id), Some(volunteer_id)) => store::Writer::Device {
                device_id: device_id.clone(),
                volunteer_id: volunteer_id.clone(),
            },
            _ => store::Writer::Coordinator {
                coordinator_id: self.actor_id.clone(),
            },
        }
    }

    /// Whether a right taken away concerns this connection, and how.
    fn affected_by(&self, change: &AccessChange) -> Affected {
        match change {
            AccessChange::DeviceRevoked { device_id } => {
                if self.device_id.as_ref() == Some(device_id) {
                    return Affected::Revoked;
                }
            }
            AccessChange::Unshared {
                volunteer_id,
                document_id,
            } => {
                if self.viewer.volunteer_id.as_ref() == Some(volunteer_id)
                    && let Ok(id) = document_id.parse()
                {
                    return Affected::Document(id);
                }
            }
            AccessChange::SessionEnded { session_hash } => {
                if self
                    .session
                    .as_ref()
                    .is_some_and(|(h, _)| h == session_hash)
                {
                    return Affected::SessionEnded;
                }
            }
            AccessChange::SessionsEnded { coordinator_id } => {
                if self.session.is_some() && self.actor_id == *coordinator_id {
                    return Affected::SessionEnded;
                }
            }
            // Every connection hears it; the machine tells only peers that follow it.
            AccessChange::Deleted { document_id } => {
                if let Ok(id) = document_id.parse() {
                    return Affected::Deleted(id);
                }
            }
        }
        Affected::No
    }
}

enum Affected {
    No,
    Revoked,
    Document(DocumentId),
    Deleted(DocumentId),
    SessionEnded,
}

struct Conn {
    id: u64,
    hub: Arc<Hub>,
    store: Store,
    who: PeerIdentity,
    creator: Creator,
    peer: ServerPeer,
    /// When this device's last sync was last written (at most once a minute).
    recorded: Option<Instant>,
    audit: AuditTrail,
    /// Messages the machine produced that wait for their audit lines to be written.
    outbox: std::collections::VecDeque<lotse_protocol::Message>,
}

/// Effects carried out before what they produced is sent: one audit transaction covers
/// them, and a catch-up of many documents does not hold much back at a time.
const EFFECTS_PER_SEND: usize = 32;

/// A message that may hold something of a document's content.
fn carries_content(m: &lotse_protocol::Message) -> bool {
    use lotse_protocol::Message;
    matches!(
        m,
        Message::Sync { .. } | Message::Request { .. } | Message::Ephemeral { .. }
    )
}

/// The socket is gone or the machine closed the connection.
struct Closed;

/// `place` is the device's counted place among the open connections: freed as soon as
/// the socket is done, before the bookkeeping at the end, so a phone that reconnects at
/// once finds it free.
pub async fn run(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    store: Store,
    who: PeerIdentity,
    place: Option<crate::app::Socket>,
    mut running: crate::app::lifecycle::Running,
) {
    let mut changes = hub.subscribe();
    let audit = AuditTrail::new(store.clone(), &who);
    let peer = ServerPeer::new(
        ServerConfig {
            server_id: hub.peer_id.clone(),
            storage_id: hub.storage_id.clone(),
            principal: who.principal.clone(),
            is_device: who.device_id.is_some(),
            lease_ms: who.lease_ms,
        },
        Instant::now(),
    );
    let mut conn = Conn {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        creator: Creator {
            organisation_id: who.viewer.organisation_id.clone(),
            volunteer_id: who.viewer.volunteer_id.clone(),
            writer: who.writer(),
        },
        hub,
        store,
        who,
        peer,
        recorded: None,
        audit,
        outbox: Default::default(),
    };
    let session_end = conn.who.session.as_ref().map(|(_, expires_at)| {
        let left = u64::try_from(expires_at - store::now_ms()).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_millis(left)
    });
    let span = tracing::info_span!("sync", conn = conn.id, principal = %conn.who.principal);
    let _enter = span.enter();
    tracing::debug!("sync connection opened");
    loop {
        // The work between two waits is boxed: its futures (database queries, the hub's
        // exchange) are large, and an idle connection should not carry their space.
        if Box::pin(conn.drive(&mut socket)).await.is_err() {
            break;
        }
        let wake = conn.peer.poll_timeout().map(tokio::time::Instant::from_std);
        // Biased: the hub's news (rights taken away among them) first, then timers, and
        // the peer last. So news that came before a frame is weighed before that frame is
        // answered (a revoked device learns nothing more; a document that arrived is
        // considered before the next question about it).
        tokio::select! {
            biased;
            changed = changes.recv() => match changed {
                Ok(HubEvent::Access(change)) => match conn.who.affected_by(&change) {
                    Affected::Revoked => {
                        tracing::info!("device revoked; closing its sync connection");
                        conn.peer.handle_revoked();
                    }
                    Affected::Document(id) => {
                        // Asked again before anything more of it is sent; the phone's
                        // catch-up then finds it withdrawn and deletes it.
                        conn.peer.handle_access_changed(Some(id));
                        conn.peer.handle_shared();
                    }
                    Affected::Deleted(id) => conn.peer.handle_doc_deleted(id),
                    Affected::SessionEnded => {
                        tracing::info!("session ended; closing its sync connection");
                        conn.peer.handle_ended("the session ended");
                    }
                    Affected::No => {}
                },
                Ok(HubEvent::Changed(c)) if c.origin != conn.id => {
                    // Who may see it is decided again for every live change, not only
                    // when the document was first loaded.
                    conn.peer.handle_access_changed(Some(c.id));
                    conn.peer.handle_doc_changed(c.id);
                }
                Ok(HubEvent::Ephemeral(r)) if r.origin != conn.id => conn.peer.handle_relay(&r.message),
                Ok(HubEvent::Shared(s)) if s.origin != conn.id => {
                    let ours = conn.who.viewer.volunteer_id.as_ref()
                        .is_some_and(|v| s.volunteer_ids.contains(v));
                    if ours {
                        conn.peer.handle_shared();
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // A missed message may have taken a right away: check everything again.
                    conn.peer.handle_access_changed(None);
                    conn.peer.handle_lagged();
                    if !Box::pin(conn.still_allowed()).await {
                        conn.peer.handle_ended("access ended");
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = until(session_end), if session_end.is_some() => {
                tracing::info!("session expired; closing its sync connection");
                conn.peer.handle_ended("the session expired");
            }
            () = until(wake) => conn.peer.handle_timeout(Instant::now()),
            () = running.stopping() => {
                // Like a dropped network to the phone, which comes back to another
                // instance or this one restarted; 1012: "service restart".
                let _ = socket
                    .send(Frame::Close(Some(CloseFrame {
                        code: 1012,
                        reason: "the server is restarting".into(),
                    })))
                    .await;
                break;
            }
            () = until(conn.audit.due), if conn.audit.due.is_some() => Box::pin(conn.audit.flush()).await,
            frame = socket.recv() => {
                let now = Instant::now();
                match frame {
                    Some(Ok(Frame::Binary(bytes))) => conn.peer.handle_binary(&bytes, now),
                    Some(Ok(Frame::Text(_))) => conn.peer.handle_text(now),
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => conn.peer.handle_heard(now),
                    Some(Ok(Frame::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "socket error");
                        break;
                    }
                }
            }
        }
        if conn.audit.batch_full() {
            Box::pin(conn.audit.flush()).await;
        }
    }
    drop(socket);
    drop(place);
    Box::pin(conn.finish()).await;
    drop(running);
    tracing::debug!("sync connection closed");
}

impl Conn {
    /// Carries out what the machine wants done and sends what it wants sent, until it
    /// waits for the peer or the world. Effects go first, a batch at a time, so that
    /// the audit lines they note are written in one transaction before any of the
    /// content they produced leaves; while the lines cannot be written the messages wait
    /// in `outbox` (the select loop retries at `audit.due`).
    async fn drive(&mut self, socket: &mut WebSocket) -> Result<(), Closed> {
        loop {
            let mut carried = 0;
            loop {
                while let Some(event) = self.peer.poll_event() {
                    self.on_event(event).await;
                }
                if carried == EFFECTS_PER_SEND {
                    break;
                }
                let Some(effect) = self.peer.poll_effect() else {
                    break;
                };
                self.carry_out(socket, effect).await?;
                carried += 1;
            }
            self.outbox
                .extend(std::iter::from_fn(|| self.peer.poll_transmit()));
            if !self.outbox.is_empty() {
                if !self.audit.ready_to_send().await {
                    return Ok(());
                }
                while let Some(message) = self.outbox.pop_front() {
                    socket
                        .send(Frame::Binary(message.encode().into()))
                        .await
                        .map_err(|_| Closed)?;
                }
            }
            if carried < EFFECTS_PER_SEND {
                return Ok(());
            }
        }
    }

    async fn carry_out(
        &mut self,
        socket: &mut WebSocket,
        effect: ServerEffect,
    ) -> Result<(), Closed> {
        match effect {
            ServerEffect::CheckAccess(id) => {
                let access = match self.store.document_access(&self.who.viewer, &id).await {
                    Ok(store::Access::Allowed(_)) => Ok(Access::Allowed),
                    Ok(store::Access::Unknown) => Ok(Access::Unknown),
                    Ok(store::Access::Denied) => Ok(Access::Denied),
                    Ok(store::Access::Deleted) => {
                        // Where a rewritten case lives on, for the peer to replay onto.
                        let org = &self.who.viewer.organisation_id;
                        match self.store.successor(org, &id).await {
                            Ok(s) => Ok(Access::Deleted(s.map(|s| {
                                Box::new(lotse_protocol::Superseded {
                                    successor: s.document_id,
                                    known: s.known,
                                })
                            }))),
                            Err(e) => {
                                tracing::error!(error = %e, "successor lookup failed");
                                Err(())
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "access check failed");
                        Err(())
                    }
                };
                self.peer.handle_access(id, access);
            }
            ServerEffect::LoadSyncState { id, peer_key } => {
                // An unreadable state costs bytes next time, never data.
                let state = self.store.sync_state(&id, &peer_key).await.ok().flatten();
                self.peer.handle_sync_state(id, state);
            }
            ServerEffect::Exchange(task) => {
                if !self.exchange(task).await {
                    return Err(Closed);
                }
            }
            ServerEffect::ListDocuments => {
                let docs = self
                    .store
                    .documents_for(&self.who.viewer)
                    .await
                    .map_err(|e| tracing::error!(error = %e, "could not list documents"));
                self.peer.handle_documents(docs);
            }
            ServerEffect::CheckDeviceActive => {
                let active = match &self.who.device_id {
                    Some(device) => self.store.device_is_active(device).await.map_err(|e| {
                        tracing::warn!(error = %e, "could not check the device before telling it of shared documents");
                    }),
                    None => Ok(false),
                };
                self.peer.handle_device_active(active);
            }
            ServerEffect::Relay(message) => self.hub.relay(Relay {
                origin: self.id,
                message,
            }),
            ServerEffect::Ping => {
                socket
                    .send(Frame::Ping(Vec::new().into()))
                    .await
                    .map_err(|_| Closed)?;
            }
            ServerEffect::Close { protocol_error } => {
                self.outbox
                    .extend(std::iter::from_fn(|| self.peer.poll_transmit()));
                // One try for the lines; without them only what carries no content goes.
                let accounted = self.audit.ready_to_send().await;
                for message in self.outbox.drain(..) {
                    if accounted || !carries_content(&message) {
                        let _ = socket.send(Frame::Binary(message.encode().into())).await;
                    }
                }
                if protocol_error {
                    let _ = socket
                        .send(Frame::Close(Some(CloseFrame {
                            code: 1008,
                            reason: "protocol error".into(),
                        })))
                        .await;
                }
                while let Some(event) = self.peer.poll_event() {
                    self.on_event(event).await;
                }
                return Err(Closed);
            }
        }
        Ok(())
    }

    /// Applies the peer's message under the document's lock and commits it before the
    /// reply is generated from the stored document (DESIGN.md decision 3). `false`: the
    /// task was lost with its worker (the runtime is going down); the connection ends.
    async fn exchange(&mut self, mut task: DocTask) -> bool {
        let id = task.id;
        let mut created = false;
        if let Some(data) = task.data.take() {
            let create_only = task.create_only;
            let received = self
                .hub
                .receive(
                    id,
                    task.sync_mut(),
                    data,
                    self.id,
                    &self.creator,
                    create_only,
                )
                .await;
            match received {
                Ok(received) => {
                    created = received.created;
                    self.audit.received(id, received);
                }
                Err(e) => {
                    let failure = match e {
                        HubError::NotYours(_) => ExchangeError::NotYours,
                        HubError::Deleted => ExchangeError::Deleted,
                        HubError::Session(e) => ExchangeError::Invalid(e.to_string()),
                        HubError::Refused(refusal) => {
                            tracing::warn!(
                                document_id = %id,
                                principal = %self.who.principal,
                                rule = %refusal.rule,
                                "refused a document's changes"
                            );
                            ExchangeError::Refused(refusal)
                        }
                        e => {
                            tracing::error!(document_id = %id, error = %e, "could not apply changes");
                            ExchangeError::Storage
                        }
                    };
                    self.peer.handle_exchange(task, Err(failure));
                    return true;
                }
            }
        }
        let Ok((task, result)) = self.hub.finish(id, task).await else {
            return false;
        };
        let result = match result {
            Ok(mut done) => {
                done.created = created;
                if done.reply.is_some() && !done.empty {
                    self.audit.read(id);
                }
                Ok(done)
            }
            Err(e) => {
                tracing::error!(document_id = %id, error = %e, "could not load document");
                Err(ExchangeError::Load)
            }
        };
        self.peer.handle_exchange(task, result);
        true
    }

    async fn on_event(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Joined { .. } => tracing::debug!("peer joined"),
            ServerEvent::Touched => self.record_sync().await,
            ServerEvent::Violation(reason) => {
                tracing::info!(%reason, "protocol violation; closing");
            }
            ServerEvent::PeerError(reason) => tracing::info!(%reason, "peer reported an error"),
            ServerEvent::Revoked | ServerEvent::Ended => {}
        }
    }

    /// Whether the device, or the coordinator's session, may still be here (after missed
    /// news); a failed check keeps the connection, as the next news will tell.
    async fn still_allowed(&mut self) -> bool {
        let allowed = match (&self.who.device_id, &self.who.session) {
            (Some(device), _) => self.store.device_is_active(device).await,
            (None, Some((hash, _))) => self
                .store
                .coordinator_by_session(hash)
                .await
                .map(|c| c.is_some()),
            (None, None) => Ok(true),
        };
        allowed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not check the connection's rights again");
            true
        })
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
        if let Some((key, states)) = self.peer.sync_states()
            && let Err(e) = self.store.save_sync_states(key, &states).await
        {
            tracing::warn!(error = %e, "could not persist sync states");
        }
        if self.peer.touched()
            && let Some(device) = &self.who.device_id
            && let Err(e) = self.store.record_sync(device).await
        {
            tracing::warn!(error = %e, "could not record last sync");
        }
        self.audit.finish().await;
    }
}

/// Resolves at `at`, or never.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! The documents the server holds in memory, loaded on demand and evicted when idle, and
//! the one place where a peer's changes are applied: persisted in a transaction first,
//! announced to other connections after. The sync endpoint, the REST API and the
//! dashboard all go through it, so it belongs to none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lotse_protocol::automerge::{Automerge, ChangeHash};
use lotse_protocol::peer::{DocTask, Ephemeral, Exchanged};
use lotse_protocol::{CaseDoc, CaseSummary, DocKind, DocSync, DocumentId, SessionError};
use tokio::sync::broadcast;

use crate::store::{
    ACCESS_CHANNEL, AccessChange, CHANGES_CHANNEL, NewDocument, SHARES_CHANNEL, Store, StoreError,
    now_ms,
};

/// A document changed; connections that share it send their peers a sync message.
#[derive(Debug, Clone)]
pub struct DocChanged {
    pub id: DocumentId,
    /// The connection whose peer made the change (it needs no announcement).
    pub origin: u64,
}

/// An `ephemeral` message (presence, cursors) to relay to the document's other peers.
#[derive(Debug, Clone)]
pub struct Relay {
    pub origin: u64,
    pub message: Ephemeral,
}

/// Documents were shared with these volunteers (a case created for them, or a document
/// one of their devices created). Their devices' connections that speak our extension
/// send `lotse-shared`, so the phone catches up now instead of at its next periodic
/// catch-up. Which documents is not said: the catch-up that follows finds them.
#[derive(Debug, Clone)]
pub struct Shared {
    pub volunteer_ids: Vec<String>,
    /// The connection whose peer created the document and so holds it already; 0 for
    /// none (the API, another instance).
    pub origin: u64,
}

/// What connections hear from the hub.
#[derive(Debug, Clone)]
pub enum HubEvent {
    Changed(DocChanged),
    Ephemeral(Arc<Relay>),
    Shared(Arc<Shared>),
    /// A right was taken away (here or on another instance): connections it concerns
    /// close or check again.
    Access(Arc<AccessChange>),
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error("sync message rejected: {0}")]
    Session(#[from] SessionError),
    #[error("stored document {0} cannot be loaded")]
    Load(DocumentId),
    /// The peer was only allowed to create the document, and it exists by now.
    #[error("document {0} exists and is not the peer's")]
    NotYours(DocumentId),
}

/// What one peer's sync message did to a document (`Hub::receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// It brought changes the server did not have, and they are committed.
    pub changed: bool,
    /// Those changes created the document (it had no row before).
    pub created: bool,
    /// The document is in the database (now, after this message): there is something to
    /// read. `false` while a peer is still on its way to creating it.
    pub stored: bool,
}

/// Who creates a document that did not exist, when a peer's first changes arrive.
#[derive(Debug, Clone)]
pub struct Creator {
    pub organisation_id: String,
    pub volunteer_id: Option<String>,
}

struct Loaded {
    doc: Automerge,
    /// Heads up to which the document is in the database.
    saved_heads: Vec<ChangeHash>,
    chunks: usize,
    /// `false` for a document a peer is creating: no row yet.
    persisted: bool,
}

pub struct DocEntry {
    id: DocumentId,
    state: tokio::sync::Mutex<Option<Loaded>>,
    last_used: Mutex<Instant>,
}

pub struct Hub {
    store: Store,
    docs: Mutex<HashMap<DocumentId, Arc<DocEntry>>>,
    changes: broadcast::Sender<HubEvent>,
    /// Highest `count` relayed per (document, sender, session): ephemeral messages are
    /// never stored, only deduplicated.
    seen_ephemeral: Mutex<HashMap<(DocumentId, String, String), u64>>,
    pub peer_id: String,
    pub storage_id: String,
    /// Seconds a document stays in memory after its last use (`--doc-idle-secs`).
    doc_idle_secs: std::sync::atomic::AtomicU64,
}

/// How long an unused document stays in memory unless configured otherwise.
pub const DEFAULT_DOC_IDLE: Duration = Duration::from_secs(120);

fn kind_of(doc: &Automerge) -> &'static str {
    match lotse_protocol::doc_kind(doc) {
        Ok(DocKind::Case) => "case",
        Ok(DocKind::Schedule) => "schedule",
        Err(_) => "other",
    }
}

fn summary_of(doc: &Automerge) -> Option<CaseSummary> {
    CaseDoc::summary(doc, now_ms()).ok()
}

impl Hub {
    pub async fn new(store: Store) -> Result<Self, StoreError> {
        let storage_id = store
            .setting_or_insert("sync.storage_id", || uuid::Uuid::new_v4().to_string())
            .await?;
        let (changes, _) = broadcast::channel(4096);
        Ok(Self {
            store,
            docs: Mutex::new(HashMap::new()),
            changes,
            seen_ephemeral: Mutex::new(HashMap::new()),
            peer_id: format!("lotse-server-{}", &storage_id[..8]),
            storage_id,
            doc_idle_secs: DEFAULT_DOC_IDLE.as_secs().into(),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.changes.subscribe()
    }

    /// Relays an ephemeral message once per (sender, session, count); repeats and older
    /// counts are dropped, as automerge-repo peers do.
    pub fn relay(&self, relay: Relay) {
        let m = &relay.message;
        let key = (m.id, m.sender_id.clone(), m.session_id.clone());
        {
            let mut seen = self
                .seen_ephemeral
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if seen.get(&key).is_some_and(|last| *last >= m.count) {
                return;
            }
            if seen.len() > 10_000 {
                seen.clear();
            }
            seen.insert(key, m.count);
        }
        let _ = self.changes.send(HubEvent::Ephemeral(Arc::new(relay)));
    }

    /// Announces, after the commit that granted access, that documents were shared with
    /// `volunteer_ids`.
    fn shared(&self, volunteer_ids: Vec<String>, origin: u64) {
        if volunteer_ids.is_empty() {
            return;
        }
        // No receiver just means nobody is connected.
        let _ = self.changes.send(HubEvent::Shared(Arc::new(Shared {
            volunteer_ids,
            origin,
        })));
    }

    /// Tells this instance's connections of rights taken away; the store told the other
    /// instances when it committed them.
    pub fn access_shrank(&self, changes: impl IntoIterator<Item = AccessChange>) {
        for change in changes {
            // No receiver just means nobody is connected.
            let _ = self.changes.send(HubEvent::Access(Arc::new(change)));
        }
    }

    /// Tells this instance's connections that documents were shared with these
    /// volunteers (the API's shares; the store told the other instances).
    pub fn shared_with(&self, volunteer_ids: Vec<String>) {
        self.shared(volunteer_ids, 0);
    }

    pub fn doc_idle(&self) -> Duration {
        Duration::from_secs(
            self.doc_idle_secs
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn set_doc_idle(&self, idle: Duration) {
        self.doc_idle_secs
            .store(idle.as_secs().max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn resident(&self) -> usize {
        self.docs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn entry(&self, id: DocumentId) -> Arc<DocEntry> {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let entry = docs
            .entry(id)
            .or_insert_with(|| {
                Arc::new(DocEntry {
                    id,
                    state: tokio::sync::Mutex::new(None),
                    last_used: Mutex::new(Instant::now()),
                })
            })
            .clone();
        *entry.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        entry
    }

    async fn ensure_loaded<'a>(
        &self,
        entry: &DocEntry,
        slot: &'a mut Option<Loaded>,
    ) -> Result<&'a mut Loaded, HubError> {
        if slot.is_none() {
            let chunks = self.store.document_chunks(&entry.id).await?;
            let persisted = !chunks.is_empty();
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let doc = lotse_protocol::load_doc(&refs).map_err(|e| {
                tracing::error!(document_id = %entry.id, error = %e, "stored chunks do not load");
                HubError::Load(entry.id)
            })?;
            *slot = Some(Loaded {
                saved_heads: doc.get_heads(),
                doc,
                chunks: chunks.len(),
                persisted,
            });
        }
        Ok(slot.as_mut().expect("just loaded"))
    }

    /// Applies a peer's sync message and, if it brought changes, commits them to the
    /// database before returning. Only then may anyone advertise the new heads. On a
    /// storage error the in-memory copy is dropped so it cannot run ahead of the database.
    pub async fn receive(
        &self,
        id: DocumentId,
        sync: &mut DocSync,
        data: &[u8],
        origin: u64,
        creator: &Creator,
        create_only: bool,
    ) -> Result<Received, HubError> {
        let entry = self.entry(id);
        let mut slot = entry.state.lock().await;
        let loaded = self.ensure_loaded(&entry, &mut slot).await?;
        // Checked under the document's lock: a peer that passed the access check only
        // because the id was unknown must not write into (or read) a document someone
        // else created meanwhile.
        if create_only && loaded.persisted {
            return Err(HubError::NotYours(id));
        }
        let changed = match sync.receive(&mut loaded.doc, data) {
            Ok(changed) => changed,
            Err(e) => {
                if matches!(e, SessionError::Panicked) {
                    *slot = None;
                }
                return Err(e.into());
            }
        };
        if !changed {
            return Ok(Received {
                changed: false,
                created: false,
                stored: loaded.persisted,
            });
        }
        let heads = loaded.doc.get_heads();
        let created = !loaded.persisted;
        let kind = kind_of(&loaded.doc);
        let summary = (kind == "case").then(|| summary_of(&loaded.doc)).flatten();
        let result = if loaded.persisted {
            let compact = lotse_protocol::session::compact_now(loaded.chunks);
            let chunk = lotse_protocol::save_incremental(&loaded.doc, &loaded.saved_heads)
                .unwrap_or_default();
            let snapshot = compact.then(|| lotse_protocol::save_snapshot(&loaded.doc));
            self.store
                .append_changes(
                    &id,
                    &chunk,
                    snapshot.as_deref(),
                    &heads,
                    kind,
                    summary.as_ref(),
                )
                .await
                .map(|()| if compact { 1 } else { loaded.chunks + 1 })
        } else {
            let snapshot = lotse_protocol::save_snapshot(&loaded.doc);
            self.store
                .create_document(NewDocument {
                    id,
                    organisation_id: &creator.organisation_id,
                    kind,
                    owner_volunteer_id: creator.volunteer_id.as_deref(),
                    chunk: &snapshot,
                    heads: &heads,
                    shared_with: &[],
                    summary: summary.as_ref(),
                    created_by: None,
                })
                .await
                .map(|()| 1)
        };
        match result {
            Ok(chunks) => {
                loaded.chunks = chunks;
                loaded.saved_heads = heads;
                loaded.persisted = true;
                drop(slot);
                let _ = self
                    .changes
                    .send(HubEvent::Changed(DocChanged { id, origin }));
                // The creator's volunteer may now sync it on every device of theirs.
                if created && let Some(volunteer) = &creator.volunteer_id {
                    self.shared(vec![volunteer.clone()], origin);
                }
                Ok(Received {
                    changed: true,
                    created,
                    stored: true,
                })
            }
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
    }

    /// Ends a peer's sync step under the document's lock: our next message from what is
    /// durably stored, and whether there is anything stored at all.
    pub async fn finish(&self, id: DocumentId, task: &mut DocTask) -> Result<Exchanged, HubError> {
        let entry = self.entry(id);
        let mut slot = entry.state.lock().await;
        let loaded = self.ensure_loaded(&entry, &mut slot).await?;
        Ok(task.finish(&loaded.doc))
    }

    /// Reads a document under its lock.
    pub async fn read<T>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&Automerge) -> T,
    ) -> Result<T, HubError> {
        let entry = self.entry(id);
        let mut slot = entry.state.lock().await;
        let loaded = self.ensure_loaded(&entry, &mut slot).await?;
        Ok(f(&loaded.doc))
    }

    /// Stores a document the server itself created (e.g. a case from the API), then tells
    /// the devices of the volunteers it is shared with.
    pub async fn create(&self, new: NewDocument<'_>, doc: Automerge) -> Result<(), HubError> {
        let id = new.id;
        let grantees = new.grantees();
        self.store.create_document(new).await?;
        let entry = self.entry(id);
        *entry.state.lock().await = Some(Loaded {
            saved_heads: doc.get_heads(),
            doc,
            chunks: 1,
            persisted: true,
        });
        self.shared(grantees, 0);
        Ok(())
    }

    /// Another server instance changed `id`: forget our copy (the next use loads it from
    /// the database) and let connected peers sync the news.
    pub async fn changed_elsewhere(&self, id: DocumentId) {
        let entry = self.entry(id);
        *entry.state.lock().await = None;
        let _ = self
            .changes
            .send(HubEvent::Changed(DocChanged { id, origin: 0 }));
    }

    /// Follows other instances' changes, shares and rights taken away on PostgreSQL
    /// (LISTEN lotse_docs, lotse_shared and lotse_access) until the process ends. On SQLite there is only one instance, and
    /// nothing to do.
    pub async fn follow_other_instances(self: Arc<Self>) {
        if self.store.backend() != crate::store::Backend::Postgres {
            return;
        }
        loop {
            match sqlx::postgres::PgListener::connect(self.store.url()).await {
                Ok(mut listener) => {
                    if let Err(e) = listener
                        .listen_all([CHANGES_CHANNEL, SHARES_CHANNEL, ACCESS_CHANNEL])
                        .await
                    {
                        tracing::warn!(error = %e, "cannot LISTEN for other instances");
                    } else {
                        loop {
                            match listener.recv().await {
                                Ok(n) => {
                                    let Some((instance, subject)) = n.payload().split_once(':')
                                    else {
                                        continue;
                                    };
                                    if instance == self.store.instance() {
                                        continue;
                                    }
                                    if n.channel() == ACCESS_CHANNEL {
                                        match AccessChange::parse(subject) {
                                            Some(change) => self.access_shrank([change]),
                                            None => {
                                                tracing::warn!("unreadable access notification")
                                            }
                                        }
                                    } else if n.channel() == SHARES_CHANNEL {
                                        self.shared(vec![subject.to_owned()], 0);
                                    } else if let Ok(id) = subject.parse::<DocumentId>() {
                                        self.changed_elsewhere(id).await;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "lost the notification connection");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to listen for other instances")
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Drops documents nobody touched for `idle`; they load again on demand.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let before = docs.len();
        docs.retain(|_, entry| {
            let last = *entry.last_used.lock().unwrap_or_else(|e| e.into_inner());
            // An entry someone holds right now (strong count > 1) stays.
            Arc::strong_count(entry) > 1 || now.duration_since(last) < idle
        });
        before - docs.len()
    }
}

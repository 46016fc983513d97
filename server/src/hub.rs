//! The documents the server holds in memory, loaded on demand and evicted when idle, and
//! the one place where a peer's changes are applied: persisted in a transaction first,
//! announced to other connections after. The sync endpoint, the REST API and the
//! dashboard all go through it, so it belongs to none of them.

mod edits;
mod generations;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lotse_protocol::automerge::{ActorId, Automerge, ChangeHash};
use lotse_protocol::peer::{DocTask, Ephemeral, Exchanged};
use lotse_protocol::quota::{Quotas, Refusal};
use lotse_protocol::{CaseDoc, CaseSummary, DocKind, DocSync, DocumentId, SessionError};
use tokio::sync::broadcast;

use crate::store::{
    ACCESS_CHANNEL, AccessChange, Authored, CHANGES_CHANNEL, CaseFigures, Deleted, Deleting,
    NewDocument, SHARES_CHANNEL, Store, StoreError, Writer, now_ms,
};

pub use generations::Rewritten;

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
    Storage(StoreError),
    #[error("sync message rejected: {0}")]
    Session(#[from] SessionError),
    #[error("stored document {0} cannot be loaded")]
    Load(DocumentId),
    /// The peer was only allowed to create the document, and it exists by now.
    #[error("document {0} exists and is not the peer's")]
    NotYours(DocumentId),
    /// The changes would break a quota or borrow another writer's actor; nothing of them
    /// was stored or announced.
    #[error("refused: {}", .0.rule)]
    Refused(Refusal),
    /// What the server was to store as a case does not read as one (our own bug).
    #[error("not a case: {0}")]
    NotACase(String),
    /// The network deleted the document; nothing of it is written again.
    #[error("the document was deleted")]
    Deleted,
    /// The automerge work panicked on its worker; the document reloads on next use.
    #[error("the document's worker failed")]
    Worker,
    /// An edit the server was to write on someone's behalf does not fit the schema (or
    /// names an entry the case does not have); nothing was written.
    #[error("{0}")]
    Invalid(lotse_protocol::SchemaError),
    /// An entry to erase is not in the case.
    #[error("the case has no {} {}", .0.kind.as_str(), .0.id)]
    NoSuchEntry(lotse_protocol::schema::generation::EntryRef),
}

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(refusal) => Self::Refused(refusal),
            StoreError::Tombstoned => Self::Deleted,
            e => Self::Storage(e),
        }
    }
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

/// Who is writing through a connection: the owner of a document its first changes
/// create, and the writer its actors are bound to.
#[derive(Debug, Clone)]
pub struct Creator {
    pub organisation_id: String,
    pub volunteer_id: Option<String>,
    pub writer: Writer,
}

struct Loaded {
    doc: Automerge,
    /// Heads up to which the document is in the database.
    saved_heads: Vec<ChangeHash>,
    chunks: usize,
    /// Bytes stored for it (its chunks), what the `document-bytes` quota counts.
    bytes: u64,
    /// `false` for a document a peer is creating: no row yet.
    persisted: bool,
}

/// What applying a peer's message prepared for the database.
struct Prepared {
    /// Incremental chunk, or the snapshot that replaces every chunk (`compact`), or the
    /// first snapshot of a new document.
    data: Vec<u8>,
    compact: bool,
    /// Bytes the new changes add (what a device is charged).
    added: u64,
    heads: Vec<ChangeHash>,
    kind: &'static str,
    summary: Option<CaseSummary>,
    /// Actors of the new changes, to bind to the writer.
    actors: Vec<ActorId>,
}

enum Applied {
    Unchanged,
    Changed(Box<Prepared>),
    Refused(Refusal),
    Invalid(SessionError),
}

/// The automerge side of a peer's message, on a blocking worker: apply it, check the
/// quotas, and prepare what the database stores. Runs without the async workers so that
/// one peer's large change cannot stall everyone else's sockets.
fn apply(loaded: &mut Loaded, sync: &mut DocSync, data: &[u8], quotas: &Quotas) -> Applied {
    let changed = match sync.receive(&mut loaded.doc, data) {
        Ok(changed) => changed,
        Err(e) => return Applied::Invalid(e),
    };
    if !changed {
        return Applied::Unchanged;
    }
    prepare(loaded, quotas)
}

/// What storing the changes made since `saved_heads` takes: the chunk (or the snapshot
/// that replaces every chunk), the new heads and index row, the actors to bind; or the
/// quota they break.
fn prepare(loaded: &Loaded, quotas: &Quotas) -> Applied {
    let mut actors: Vec<ActorId> = loaded
        .doc
        .get_changes(&loaded.saved_heads)
        .iter()
        .map(|c| c.actor_id().clone())
        .collect();
    actors.sort_unstable();
    actors.dedup();
    if let Err(refusal) = quotas.check_content(&loaded.doc) {
        return Applied::Refused(refusal);
    }
    let (data, compact, added, bytes) = if loaded.persisted {
        let chunk =
            lotse_protocol::save_incremental(&loaded.doc, &loaded.saved_heads).unwrap_or_default();
        let added = chunk.len() as u64;
        let grown = loaded.bytes + added;
        if lotse_protocol::session::compact_now(loaded.chunks)
            || quotas.check_document_bytes(grown).is_err()
        {
            // Near the limit, the document counts as it compacts: incremental chunks
            // repeat what a snapshot says once.
            let snapshot = lotse_protocol::save_snapshot(&loaded.doc);
            let bytes = snapshot.len() as u64;
            (snapshot, true, added, bytes)
        } else {
            (chunk, false, added, grown)
        }
    } else {
        let snapshot = lotse_protocol::save_snapshot(&loaded.doc);
        let bytes = snapshot.len() as u64;
        (snapshot, false, bytes, bytes)
    };
    if let Err(refusal) = quotas.check_document_bytes(bytes) {
        return Applied::Refused(refusal);
    }
    let kind = kind_of(&loaded.doc);
    let summary = (kind == "case").then(|| summary_of(&loaded.doc)).flatten();
    Applied::Changed(Box::new(Prepared {
        data,
        compact,
        added,
        heads: loaded.doc.get_heads(),
        kind,
        summary,
        actors,
    }))
}

/// The distinct actors of every change of `doc`: what a document the server writes binds.
pub fn actors_of(doc: &Automerge) -> Vec<ActorId> {
    let mut actors: Vec<ActorId> = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.actor_id().clone())
        .collect();
    actors.sort_unstable();
    actors.dedup();
    actors
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
    quotas: Mutex<Quotas>,
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
            quotas: Mutex::new(Quotas::default()),
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
            if let AccessChange::Deleted { document_id } = &change
                && let Ok(id) = document_id.parse::<DocumentId>()
            {
                // Nothing of it stays in memory either.
                self.docs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
            // No receiver just means nobody is connected.
            let _ = self.changes.send(HubEvent::Access(Arc::new(change)));
        }
    }

    /// Deletes a document of the organisation for good (its tombstone stays) and tells
    /// the connections that follow it; `false`: no such document there. A case's
    /// de-identified figures are kept in the same transaction.
    pub async fn delete(
        &self,
        organisation_id: &str,
        id: &DocumentId,
        reason: crate::store::DeletionReason,
        audit: &crate::store::AuditEntry,
    ) -> Result<bool, HubError> {
        let deleted = self
            .delete_if(organisation_id, id, reason, audit, None)
            .await?;
        Ok(matches!(deleted, Deleted::Done(_)))
    }

    /// `delete`, and with `closed_before` only a case that is still closed and was closed
    /// at or before that time (the purge; checked in the deleting transaction).
    ///
    /// The figures are read from the document under its lock, so no change on this
    /// instance slips between reading and deleting; a change another instance made
    /// meanwhile shows as other heads in the transaction, and the figures are read again.
    pub async fn delete_if(
        &self,
        organisation_id: &str,
        id: &DocumentId,
        reason: crate::store::DeletionReason,
        audit: &crate::store::AuditEntry,
        closed_before: Option<i64>,
    ) -> Result<Deleted, HubError> {
        const ATTEMPTS: usize = 3;
        let entry = self.entry(*id);
        let mut slot = entry.state.lock().await;
        for _ in 0..ATTEMPTS {
            let (heads, figures) = self.figures(organisation_id, &entry, &mut slot).await?;
            let deleting = Deleting {
                figures: figures.as_ref(),
                heads: heads.as_deref(),
                closed_before,
            };
            let deleted = self
                .store
                .delete_document(organisation_id, id, reason, audit, deleting)
                .await?;
            // Whatever happened, the next use reads what the database holds.
            *slot = None;
            match &deleted {
                Deleted::Done(change) => {
                    drop(slot);
                    self.access_shrank([change.clone()]);
                    tracing::info!(document_id = %id, reason = reason.code(), "document deleted");
                    return Ok(deleted);
                }
                Deleted::Changed => continue,
                Deleted::Missing | Deleted::NotDue => return Ok(deleted),
            }
        }
        Err(HubError::Storage(StoreError::Conflict(
            "the document kept changing while it was being deleted",
        )))
    }

    /// The heads and, for a case, the figures to keep of the document in `slot`. A case
    /// whose stored chunks do not load is deleted without figures (the reports could not
    /// count it either); `None` heads then skip the check that nothing changed.
    async fn figures(
        &self,
        organisation_id: &str,
        entry: &DocEntry,
        slot: &mut Option<Loaded>,
    ) -> Result<(Option<Vec<ChangeHash>>, Option<CaseFigures>), HubError> {
        let loaded = match self.ensure_loaded(entry, slot).await {
            Ok(loaded) => loaded,
            Err(HubError::Load(_)) => return Ok((None, None)),
            Err(e) => return Err(e),
        };
        let heads = loaded.doc.get_heads();
        if kind_of(&loaded.doc) != "case" {
            return Ok((Some(heads), None));
        }
        let view = match CaseDoc::read(&loaded.doc) {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(document_id = %entry.id, error = %e, "deleting a case that does not read: no figures kept");
                return Ok((Some(heads), None));
            }
        };
        let created = lotse_protocol::schema::creators(&loaded.doc, &view);
        let authors = self
            .store
            .attribute(organisation_id, &entry.id, &created, &view)
            .await?;
        let figures = CaseFigures::of(&view, |h| {
            authors.hours(h.id.as_str(), &h.author).author().to_owned()
        });
        Ok((Some(heads), Some(figures)))
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

    pub fn quotas(&self) -> Quotas {
        *self.quotas.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_quotas(&self, quotas: Quotas) {
        *self.quotas.lock().unwrap_or_else(|e| e.into_inner()) = quotas;
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
            let count = chunks.len();
            let bytes = chunks.iter().map(|c| c.len() as u64).sum();
            let loaded = tokio::task::spawn_blocking(move || {
                let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                lotse_protocol::load_doc(&refs)
            })
            .await
            .map_err(|_| HubError::Worker)?;
            let doc = loaded.map_err(|e| {
                tracing::error!(document_id = %entry.id, error = %e, "stored chunks do not load");
                HubError::Load(entry.id)
            })?;
            *slot = Some(Loaded {
                saved_heads: doc.get_heads(),
                doc,
                chunks: count,
                bytes,
                persisted,
            });
        }
        Ok(slot.as_mut().expect("just loaded"))
    }

    /// Applies a peer's sync message and, if it brought changes, commits them to the
    /// database before returning. Only then may anyone advertise the new heads. On a
    /// storage error or a refusal the in-memory copy is dropped so it cannot run ahead of
    /// the database. The automerge work runs on a blocking worker while the document's
    /// lock is held, so other documents' peers never wait for it.
    pub async fn receive(
        &self,
        id: DocumentId,
        sync: &mut DocSync,
        data: Vec<u8>,
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
        let mut loaded = slot.take().expect("loaded above");
        let mut owned_sync = std::mem::take(sync);
        let quotas = self.quotas();
        let worked = tokio::task::spawn_blocking(move || {
            let applied = apply(&mut loaded, &mut owned_sync, &data, &quotas);
            (loaded, owned_sync, applied)
        })
        .await;
        // A panic leaves the slot empty: the document reloads from the database.
        let (loaded, owned_sync, applied) = worked.map_err(|_| HubError::Worker)?;
        *sync = owned_sync;
        let prepared = match applied {
            Applied::Unchanged => {
                let stored = loaded.persisted;
                *slot = Some(loaded);
                return Ok(Received {
                    changed: false,
                    created: false,
                    stored,
                });
            }
            Applied::Invalid(e) => {
                if !matches!(e, SessionError::Panicked) {
                    // Nothing was applied: the copy is still what the database holds.
                    *slot = Some(loaded);
                }
                return Err(e.into());
            }
            Applied::Refused(refusal) => return Err(HubError::Refused(refusal)),
            Applied::Changed(prepared) => prepared,
        };
        self.store_prepared(id, slot, loaded, *prepared, creator, origin)
            .await
    }

    /// Stores what `prepare` made of a document's new changes, bound to `creator`'s
    /// writer, then tells the other connections. On a storage error the slot stays empty:
    /// the next use loads what the database holds.
    async fn store_prepared(
        &self,
        id: DocumentId,
        mut slot: tokio::sync::MutexGuard<'_, Option<Loaded>>,
        mut loaded: Loaded,
        prepared: Prepared,
        creator: &Creator,
        origin: u64,
    ) -> Result<Received, HubError> {
        let quotas = self.quotas();
        let created = !loaded.persisted;
        let authored = Authored {
            writer: &creator.writer,
            actors: &prepared.actors,
        };
        let device_limit = Some(quotas.device_bytes);
        let result = if loaded.persisted {
            let (chunk, snapshot) = if prepared.compact {
                (&[][..], Some(prepared.data.as_slice()))
            } else {
                (prepared.data.as_slice(), None)
            };
            self.store
                .append_changes(
                    &id,
                    chunk,
                    snapshot,
                    &prepared.heads,
                    prepared.kind,
                    prepared.summary.as_ref(),
                    &authored,
                    device_limit,
                    prepared.added,
                )
                .await
                .map(|()| {
                    if prepared.compact {
                        (1, prepared.data.len() as u64)
                    } else {
                        (loaded.chunks + 1, loaded.bytes + prepared.data.len() as u64)
                    }
                })
        } else {
            self.store
                .create_document(NewDocument {
                    id,
                    organisation_id: &creator.organisation_id,
                    kind: prepared.kind,
                    owner_volunteer_id: creator.volunteer_id.as_deref(),
                    chunk: &prepared.data,
                    heads: &prepared.heads,
                    shared_with: &[],
                    summary: prepared.summary.as_ref(),
                    created_by: None,
                    authored: Some(authored),
                    device_limit,
                })
                .await
                .map(|()| (1, prepared.data.len() as u64))
        };
        match result {
            Ok((chunks, bytes)) => {
                loaded.chunks = chunks;
                loaded.bytes = bytes;
                loaded.saved_heads = prepared.heads;
                loaded.persisted = true;
                *slot = Some(loaded);
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
            // The slot stays empty: the next use loads what the database holds.
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a peer's sync step under the document's lock: our next message from what is
    /// durably stored, and whether there is anything stored at all.
    /// Generating a message for a large document is real work too, so it runs on a
    /// blocking worker like applying one. The outer `Err` means the task is lost (the
    /// runtime is shutting down): the connection can only end.
    pub async fn finish(
        &self,
        id: DocumentId,
        mut task: DocTask,
    ) -> Result<(DocTask, Result<Exchanged, HubError>), HubError> {
        let entry = self.entry(id);
        let mut slot = entry.state.lock().await;
        if let Err(e) = self.ensure_loaded(&entry, &mut slot).await {
            return Ok((task, Err(e)));
        }
        let Some(loaded) = slot.take() else {
            return Ok((task, Err(HubError::Load(id))));
        };
        let (loaded, task, done) = tokio::task::spawn_blocking(move || {
            let done =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.finish(&loaded.doc)));
            (loaded, task, done)
        })
        .await
        .map_err(|_| HubError::Worker)?;
        match done {
            Ok(done) => {
                *slot = Some(loaded);
                Ok((task, Ok(done)))
            }
            // The copy may be broken: it reloads from the database on next use.
            Err(_) => {
                tracing::error!(document_id = %id, "generating a sync message panicked");
                Ok((task, Err(HubError::Worker)))
            }
        }
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
        let bytes = new.chunk.len() as u64;
        self.store.create_document(new).await?;
        let entry = self.entry(id);
        *entry.state.lock().await = Some(Loaded {
            saved_heads: doc.get_heads(),
            bytes,
            doc,
            chunks: 1,
            persisted: true,
        });
        self.shared(grantees, 0);
        Ok(())
    }

    /// A case the server writes on someone's behalf (a coordinator creating it, a
    /// device accepting an offer): stored with its index row, its actors bound to
    /// `writer`, the audit line `created_by(id)` in the same transaction, then shared.
    pub async fn create_case(
        &self,
        doc: Automerge,
        organisation_id: &str,
        shared_with: &[String],
        writer: &Writer,
        created_by: impl FnOnce(&DocumentId) -> crate::store::AuditEntry,
    ) -> Result<DocumentId, HubError> {
        let summary =
            CaseDoc::summary(&doc, now_ms()).map_err(|e| HubError::NotACase(e.to_string()))?;
        let id = DocumentId::random();
        let snapshot = lotse_protocol::save_snapshot(&doc);
        let heads = doc.get_heads();
        let actors = actors_of(&doc);
        let created = created_by(&id);
        let new = NewDocument {
            id,
            organisation_id,
            kind: "case",
            owner_volunteer_id: None,
            chunk: &snapshot,
            heads: &heads,
            shared_with,
            summary: Some(&summary),
            created_by: Some(&created),
            authored: Some(Authored {
                writer,
                actors: &actors,
            }),
            device_limit: None,
        };
        self.create(new, doc).await?;
        Ok(id)
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

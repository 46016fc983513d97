//! The documents the phone holds: automerge documents in memory, each stored as encrypted
//! chunks under its own random key, with its sync state and the heads the server last
//! acknowledged. Every edit goes through [`Repo::edit`], which stores the change before it
//! returns; a failed write drops the in-memory copy and reloads it, so memory never runs
//! ahead of the disk.

use std::collections::BTreeMap;

use lotse_protocol::automerge::{Automerge, ChangeHash};
use lotse_protocol::peer::{Holding, Holdings};
use lotse_protocol::{DocKind, DocSync, DocumentId, Millis, SchemaError};

use crate::crypto::{self, SecretKey, aad};
use crate::db::Db;
use crate::error::{Error, Result};

const META_KEY_CHECK: &str = "key_check";
const META_STORAGE_ID: &str = "storage_id";
const META_DEVICE_ID: &str = "device_id";
const META_VOLUNTEER_ID: &str = "volunteer_id";
const META_ORGANISATION_ID: &str = "organisation_id";
const META_TOKEN: &str = "device_token";
const META_LEASE: &str = "lease_until";
const META_SERVER: &str = "server_url";

/// The enrolled device, as the server named it.
#[derive(Clone)]
pub struct Identity {
    pub device_id: String,
    pub volunteer_id: String,
    pub organisation_id: Option<String>,
    pub token: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("volunteer_id", &self.volunteer_id)
            .field("organisation_id", &self.organisation_id)
            .finish_non_exhaustive()
    }
}

/// Per-document sync status as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// The server's heads include every local change.
    Synced,
    /// Local changes the server has not confirmed yet.
    Pending,
    /// The server refused the document; the reason names no content. `rule` is the
    /// quota code (`document-bytes`, `entries`, `text-length`, `device-bytes`,
    /// `foreign-actor`) when the server named one, for the app to explain in its words.
    Error {
        reason: String,
        rule: Option<String>,
    },
}

/// How a named refusal is kept in the document's `error` column: the rule's code and
/// limit, readable back by [`SyncStatus`] after a restart.
const RULE_PREFIX: &str = "rule:";

pub fn refusal_reason(refusal: &lotse_protocol::quota::Refusal) -> String {
    format!("{RULE_PREFIX}{}:{}", refusal.rule.code(), refusal.limit)
}

fn error_status(stored: &str) -> SyncStatus {
    let Some(rest) = stored.strip_prefix(RULE_PREFIX) else {
        return SyncStatus::Error {
            reason: stored.to_owned(),
            rule: None,
        };
    };
    let (code, limit) = rest.split_once(':').unwrap_or((rest, ""));
    let rule = lotse_protocol::quota::Rule::from_code(code);
    SyncStatus::Error {
        reason: format!("{} (limit {limit})", rule.explain()),
        rule: Some(rule.code().to_owned()),
    }
}

pub struct Doc {
    key: SecretKey,
    pub doc: Automerge,
    /// Heads up to which the document is on disk.
    saved_heads: Vec<ChangeHash>,
    next_seq: i64,
    chunk_count: usize,
    pub sync: DocSync,
    /// What the server last said it has; `None`: never heard from the server.
    pub server_heads: Option<Vec<ChangeHash>>,
    pub error: Option<String>,
    /// Sync bookkeeping changed since it was last written.
    sync_dirty: bool,
}

impl Doc {
    pub fn kind(&self) -> Option<DocKind> {
        lotse_protocol::doc_kind(&self.doc).ok()
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn status(&self) -> SyncStatus {
        if let Some(stored) = &self.error {
            return error_status(stored);
        }
        match &self.server_heads {
            Some(server) if covers(&self.doc, server) => SyncStatus::Synced,
            _ => SyncStatus::Pending,
        }
    }

    /// Notes what the server said it has (from a sync message or the catch-up verdict).
    pub fn set_server_heads(&mut self, heads: Vec<ChangeHash>) {
        if self.server_heads.as_ref() != Some(&heads) {
            // The server took what it refused before (a limit was raised): no longer failed.
            if self.error.is_some() && covers(&self.doc, &heads) {
                self.error = None;
            }
            self.server_heads = Some(heads);
            self.sync_dirty = true;
        }
    }

    /// Forgets in-flight sync bookkeeping, keeping what persists (a new connection).
    pub fn reset_sync(&mut self) {
        self.sync = DocSync::from_persisted(&self.sync.persist()).unwrap_or_default();
    }
}

/// Whether every local change is an ancestor of (or one of) the server's heads. Heads we
/// do not know yet are changes we have not received; they are skipped, which can only make
/// the answer "not yet".
fn covers(doc: &Automerge, server: &[ChangeHash]) -> bool {
    let local = doc.get_heads();
    if local.iter().all(|h| server.contains(h)) {
        return true;
    }
    let known: Vec<ChangeHash> = server
        .iter()
        .copied()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .collect();
    !known.is_empty() && doc.get_changes_meta(&known).is_empty()
}

pub struct Repo {
    db: Db,
    app_key: SecretKey,
    pub docs: BTreeMap<DocumentId, Doc>,
    pub identity: Option<Identity>,
    pub storage_id: String,
    /// See [`Repo::lease_until`]; kept here so every call can check it cheaply.
    lease_until: Option<Millis>,
    /// The lease had lapsed when the store was opened: it was wiped before any document
    /// was decrypted.
    pub lapsed_at_open: bool,
}

fn text(bytes: Option<Vec<u8>>) -> Result<Option<String>> {
    bytes
        .map(|b| String::from_utf8(b).map_err(|_| Error::Corrupt("stored text".into())))
        .transpose()
}

impl Repo {
    /// Checks the key and the lease at `now`, then loads and decrypts every document; a
    /// lapsed lease wipes the store first (see [`Repo::lease_lapsed`]).
    pub async fn open(db: Db, app_key: SecretKey, now: Millis) -> Result<Self> {
        match db.meta(META_KEY_CHECK).await? {
            Some(check) => crypto::verify_key_check(&app_key, &check)?,
            None => {
                if !db.load_all().await?.is_empty() {
                    return Err(Error::Corrupt("the key check is missing".into()));
                }
                let check = crypto::key_check(&app_key)?;
                let storage_id = uuid::Uuid::new_v4().to_string();
                db.set_meta(&[
                    (META_KEY_CHECK, &check),
                    (META_STORAGE_ID, storage_id.as_bytes()),
                ])
                .await?;
            }
        }
        let mut repo = Self {
            db,
            app_key,
            docs: BTreeMap::new(),
            identity: None,
            storage_id: String::new(),
            lease_until: None,
            lapsed_at_open: false,
        };
        repo.lease_until = repo.stored_lease().await?;
        if repo.lease_lapsed(now) {
            repo.wipe().await?;
            repo.lapsed_at_open = true;
        }
        repo.load().await?;
        Ok(repo)
    }

    async fn load(&mut self) -> Result<()> {
        self.storage_id = match text(self.db.meta(META_STORAGE_ID).await?)? {
            Some(s) => s,
            None => {
                let s = uuid::Uuid::new_v4().to_string();
                self.db.set_meta(&[(META_STORAGE_ID, s.as_bytes())]).await?;
                s
            }
        };
        self.identity = self.load_identity().await?;
        self.docs.clear();
        for row in self.db.load_all().await? {
            let key = crypto::unwrap_doc_key(&self.app_key, &row.id, &row.wrapped_key)?;
            let mut plain = Vec::with_capacity(row.chunks.len());
            for (seq, blob) in &row.chunks {
                plain.push(key.open(blob, &aad::chunk(&row.id, *seq)).map_err(|_| {
                    Error::Corrupt(format!(
                        "chunk {seq} of document {} does not decrypt",
                        row.id
                    ))
                })?);
            }
            let refs: Vec<&[u8]> = plain.iter().map(Vec::as_slice).collect();
            let doc = lotse_protocol::load_doc(&refs)
                .map_err(|e| Error::Corrupt(format!("document {}: {e}", row.id)))?;
            let sync = match &row.sync_state {
                Some(blob) => key
                    .open(blob, &aad::sync_state(&row.id))
                    .ok()
                    .and_then(|b| DocSync::from_persisted(&b).ok())
                    .unwrap_or_default(),
                None => DocSync::new(),
            };
            self.docs.insert(
                row.id,
                Doc {
                    saved_heads: doc.get_heads(),
                    doc,
                    key,
                    next_seq: row.chunks.last().map_or(0, |(seq, _)| seq + 1),
                    chunk_count: row.chunks.len(),
                    sync,
                    server_heads: row.server_heads,
                    error: row.error,
                    sync_dirty: false,
                },
            );
        }
        Ok(())
    }

    async fn load_identity(&self) -> Result<Option<Identity>> {
        let Some(sealed) = self.db.meta(META_TOKEN).await? else {
            return Ok(None);
        };
        let token = self
            .app_key
            .open(&sealed, aad::DEVICE_TOKEN)
            .map_err(|_| Error::Corrupt("the device token does not decrypt".into()))?;
        let token = String::from_utf8(token)
            .map_err(|_| Error::Corrupt("the device token is not text".into()))?;
        let (Some(device_id), Some(volunteer_id)) = (
            text(self.db.meta(META_DEVICE_ID).await?)?,
            text(self.db.meta(META_VOLUNTEER_ID).await?)?,
        ) else {
            return Err(Error::Corrupt("device identity is incomplete".into()));
        };
        Ok(Some(Identity {
            device_id,
            volunteer_id,
            organisation_id: text(self.db.meta(META_ORGANISATION_ID).await?)?,
            token,
        }))
    }

    /// Stores the device's identity; the token encrypted with the app's key.
    pub async fn set_identity(&mut self, identity: Identity) -> Result<()> {
        let sealed = self
            .app_key
            .seal(identity.token.as_bytes(), aad::DEVICE_TOKEN)?;
        let mut entries: Vec<(&str, &[u8])> = vec![
            (META_TOKEN, &sealed),
            (META_DEVICE_ID, identity.device_id.as_bytes()),
            (META_VOLUNTEER_ID, identity.volunteer_id.as_bytes()),
        ];
        if let Some(org) = &identity.organisation_id {
            entries.push((META_ORGANISATION_ID, org.as_bytes()));
        }
        self.db.set_meta(&entries).await?;
        self.identity = Some(identity);
        Ok(())
    }

    /// Remembers the server the phone enrolled with (sealed: changing it in the file
    /// makes it unreadable, which no address matches).
    pub async fn pin_server(&self, url: &str) -> Result<()> {
        self.set_sealed_meta(META_SERVER, aad::SERVER_URL, url.as_bytes())
            .await
    }

    /// Whether `url` is the server this phone enrolled with. A phone that is not
    /// enrolled may use any; one enrolled before servers were pinned is pinned to `url`
    /// now.
    pub async fn pinned_server(&self, url: &str) -> Result<bool> {
        if self.identity.is_none() {
            return Ok(true);
        }
        match self.sealed_meta(META_SERVER, aad::SERVER_URL).await {
            Ok(Some(pinned)) => Ok(pinned == url.as_bytes()),
            Ok(None) => self.pin_server(url).await.map(|()| true),
            Err(Error::Corrupt(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Until when (ms, this device's clock) the documents may stay readable without
    /// contact with the server; `None`: the server never announced a lease. Sealed, so
    /// that moving the date by editing the file makes it unreadable, which counts as
    /// lapsed.
    pub fn lease_until(&self) -> Option<Millis> {
        self.lease_until
    }

    async fn stored_lease(&self) -> Result<Option<Millis>> {
        match self.sealed_meta(META_LEASE, aad::LEASE).await {
            Ok(None) => Ok(None),
            Ok(Some(plain)) => Ok(Some(
                plain
                    .try_into()
                    .map(i64::from_be_bytes)
                    .unwrap_or(Millis::MIN),
            )),
            Err(Error::Corrupt(_)) => Ok(Some(Millis::MIN)),
            Err(e) => Err(e),
        }
    }

    /// Whether the documents must not be read any more at `now`: the lease the server
    /// gave has run out without contact. A clock turned back defeats this (see the
    /// README's threat model).
    pub fn lease_lapsed(&self, now: Millis) -> bool {
        self.lease_until.is_some_and(|until| now >= until)
    }

    /// The server renewed the lease at `now` for `lease_ms`.
    pub async fn renew_lease(&mut self, now: Millis, lease_ms: u64) -> Result<()> {
        let until = now.saturating_add(Millis::try_from(lease_ms).unwrap_or(Millis::MAX));
        self.set_sealed_meta(META_LEASE, aad::LEASE, &until.to_be_bytes())
            .await?;
        self.lease_until = Some(until);
        Ok(())
    }

    /// A small blob stored sealed with the app key under `key` in the meta table (push
    /// keys, offers). `None`: never written (or wiped).
    pub async fn sealed_meta(&self, key: &str, aad: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(sealed) = self.db.meta(key).await? else {
            return Ok(None);
        };
        self.app_key
            .open(&sealed, aad)
            .map(Some)
            .map_err(|_| Error::Corrupt(format!("stored {key} does not decrypt")))
    }

    pub async fn set_sealed_meta(&self, key: &str, aad: &[u8], plain: &[u8]) -> Result<()> {
        let sealed = self.app_key.seal(plain, aad)?;
        self.db.set_meta(&[(key, &sealed)]).await
    }

    pub fn doc(&self, id: &DocumentId, kind: &'static str) -> Result<&Doc> {
        self.docs.get(id).ok_or_else(|| Error::NotFound {
            kind,
            id: id.to_string(),
        })
    }

    /// A new document, written by `init`, stored with a fresh key before this returns.
    pub async fn create(
        &mut self,
        init: impl FnOnce(&mut Automerge) -> Result<(), SchemaError>,
    ) -> Result<DocumentId> {
        let id = DocumentId::random();
        let mut doc = Automerge::new();
        init(&mut doc)?;
        self.insert(id, doc, DocSync::new()).await?;
        Ok(id)
    }

    /// Stores a document that is not held yet (created here, or first received).
    pub async fn insert(&mut self, id: DocumentId, doc: Automerge, sync: DocSync) -> Result<()> {
        let key = SecretKey::random();
        let wrapped = crypto::wrap_doc_key(&self.app_key, &id, &key)?;
        let snapshot = lotse_protocol::save_snapshot(&doc);
        let chunk = key.seal(&snapshot, &aad::chunk(&id, 0))?;
        let state = key.seal(&sync.persist(), &aad::sync_state(&id))?;
        let server_heads = sync.peer_heads().map(<[ChangeHash]>::to_vec);
        let heads = doc.get_heads();
        self.db
            .insert_doc(
                &id,
                &wrapped,
                &heads,
                Some(&chunk),
                Some(&state),
                server_heads.as_deref(),
            )
            .await?;
        self.docs.insert(
            id,
            Doc {
                key,
                saved_heads: heads,
                doc,
                next_seq: 1,
                chunk_count: 1,
                sync,
                server_heads,
                error: None,
                sync_dirty: false,
            },
        );
        Ok(())
    }

    /// Applies `edit` to a held document and stores the change before returning. A
    /// refused edit (schema validation) leaves no trace: automerge rolls its transaction
    /// back.
    pub async fn edit<T>(
        &mut self,
        id: &DocumentId,
        kind: &'static str,
        edit: impl FnOnce(&mut Automerge) -> Result<T, SchemaError>,
    ) -> Result<T> {
        let doc = self.docs.get_mut(id).ok_or_else(|| Error::NotFound {
            kind,
            id: id.to_string(),
        })?;
        let out = edit(&mut doc.doc)?;
        self.persist(id, false).await?;
        Ok(out)
    }

    /// Applies a sync message from the server to a held document; stores new changes
    /// together with the sync state before returning. Returns whether the content changed.
    pub async fn receive(&mut self, id: &DocumentId, data: &[u8]) -> Result<bool> {
        let doc = self.docs.get_mut(id).ok_or_else(|| Error::NotFound {
            kind: "document",
            id: id.to_string(),
        })?;
        let received = doc.sync.receive(&mut doc.doc, data);
        if let Some(theirs) = doc.sync.peer_heads().map(<[ChangeHash]>::to_vec) {
            doc.set_server_heads(theirs);
        }
        match received {
            Ok(true) => {
                self.persist(id, true).await?;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                if matches!(e, lotse_protocol::SessionError::Panicked) {
                    // The in-memory copy may be half-updated: take the stored one.
                    self.load().await?;
                }
                Err(Error::Network(format!("sync message for {id}: {e}")))
            }
        }
    }

    async fn persist(&mut self, id: &DocumentId, with_sync: bool) -> Result<()> {
        let result = self.try_persist(id, with_sync).await;
        if result.is_err() {
            // Memory must not run ahead of the disk: reload what is stored.
            if let Err(e) = self.load().await {
                tracing::error!(error = %e, "reloading after a failed write failed");
            }
        }
        result
    }

    async fn try_persist(&mut self, id: &DocumentId, with_sync: bool) -> Result<()> {
        let Some(doc) = self.docs.get_mut(id) else {
            return Ok(());
        };
        let Some(incremental) = lotse_protocol::save_incremental(&doc.doc, &doc.saved_heads) else {
            return Ok(());
        };
        let compact = lotse_protocol::session::compact_now(doc.chunk_count);
        let plain = if compact {
            lotse_protocol::save_snapshot(&doc.doc)
        } else {
            incremental
        };
        let seq = doc.next_seq;
        let chunk = doc.key.seal(&plain, &aad::chunk(id, seq))?;
        let heads = doc.doc.get_heads();
        let state = if with_sync {
            Some(doc.key.seal(&doc.sync.persist(), &aad::sync_state(id))?)
        } else {
            None
        };
        let sync = state.as_deref().map(|s| (s, doc.server_heads.as_deref()));
        self.db
            .append_chunk(id, seq, &chunk, &heads, compact, sync)
            .await?;
        doc.saved_heads = heads;
        doc.next_seq = seq + 1;
        doc.chunk_count = if compact { 1 } else { doc.chunk_count + 1 };
        if with_sync {
            doc.sync_dirty = false;
        }
        Ok(())
    }

    /// Writes the sync bookkeeping (sync states, server heads, errors) that changed.
    pub async fn flush_sync(&mut self) -> Result<()> {
        let mut entries = Vec::new();
        for (id, doc) in &self.docs {
            if doc.sync_dirty {
                let state = doc.key.seal(&doc.sync.persist(), &aad::sync_state(id))?;
                entries.push((*id, state, doc.server_heads.clone(), doc.error.clone()));
            }
        }
        self.db.save_sync(&entries).await?;
        for (id, ..) in &entries {
            if let Some(doc) = self.docs.get_mut(id) {
                doc.sync_dirty = false;
            }
        }
        Ok(())
    }

    pub fn set_error(&mut self, id: &DocumentId, error: Option<String>) {
        if let Some(doc) = self.docs.get_mut(id)
            && doc.error != error
        {
            doc.error = error;
            doc.sync_dirty = true;
        }
    }

    /// Every held document with its heads and what the server is known to hold: what the
    /// catch-up covers.
    pub fn holdings(&self) -> Holdings {
        self.docs
            .iter()
            .map(|(id, d)| (*id, Holding::new(d.heads(), d.server_heads.as_ref())))
            .collect()
    }

    pub async fn remove(&mut self, id: &DocumentId) -> Result<()> {
        self.db.delete_doc(id).await?;
        self.docs.remove(id);
        Ok(())
    }

    /// Deletes every document, the identity, the token and the lease (revocation, a
    /// lapsed lease).
    pub async fn wipe(&mut self) -> Result<()> {
        self.db.wipe().await?;
        self.docs.clear();
        self.identity = None;
        self.lease_until = None;
        Ok(())
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lotse_protocol::automerge::transaction::Transactable;
    use lotse_protocol::automerge::{ROOT, ReadDoc};

    fn put(doc: &mut Automerge, key: &str, value: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
    }

    #[test]
    fn covers_follows_history() {
        let mut doc = Automerge::new();
        put(&mut doc, "a", "1");
        let first = doc.get_heads();
        put(&mut doc, "b", "2");
        let second = doc.get_heads();
        assert!(covers(&doc, &second));
        assert!(!covers(&doc, &first));
        assert!(!covers(&doc, &[]));
        // The server is ahead with a change we do not have yet: ours are included only
        // if we can see it, so "not yet".
        assert!(!covers(&doc, &[ChangeHash([9; 32])]));
        let mut other = doc.fork();
        put(&mut other, "c", "3");
        doc.merge(&mut other).unwrap();
        // After merging, the server's single head covers our history.
        assert!(covers(&doc, &other.get_heads()));
        assert_eq!(doc.get(ROOT, "c").unwrap().unwrap().0.as_str(), Some("3"));
    }
}

//! The connection's part of the audit trail (DSGVO): which documents its peer synced,
//! changed and created, batched between messages (see `docs/sync.md`).

use std::collections::HashSet;
use std::time::Duration;

use lotse_protocol::DocumentId;

use super::connection::PeerIdentity;
use crate::hub::Received;
use crate::store::{AuditEntry, Store};

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

/// The connection's part of the audit trail (DSGVO): which documents its peer synced,
/// changed and created, once per (connection, document, action). Entries are collected
/// here and written in batches between messages (one short transaction at most about
/// once a second, not one per sync step); the in-sync reconnect syncs no document and so
/// writes none.
pub struct AuditTrail {
    store: Store,
    organisation_id: String,
    actor_kind: &'static str,
    actor_id: String,
    /// What this connection has already noted.
    noted: HashSet<(DocumentId, &'static str)>,
    /// Noted, not yet written, oldest first.
    pending: Vec<AuditEntry>,
    /// When the pending entries are written at the latest; `None` while nothing is pending.
    pub due: Option<tokio::time::Instant>,
    /// The last write failed: the next try waits for `due`, not for a full batch.
    failing: bool,
    /// Entries given up since the last warning about them.
    dropped: usize,
}

impl AuditTrail {
    pub fn new(store: Store, who: &PeerIdentity) -> Self {
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
    pub fn received(&mut self, id: DocumentId, received: Received) {
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
    pub fn batch_full(&self) -> bool {
        !self.failing && self.pending.len() >= AUDIT_BATCH
    }

    /// Writes what is pending in one transaction. On failure the entries stay for the
    /// next try; the connection goes on.
    pub async fn flush(&mut self) {
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
    pub async fn finish(&mut self) {
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
    use crate::store::Viewer;

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
                session: None,
                lease_ms: None,
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

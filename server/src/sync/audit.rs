//! The connection's part of the audit trail (DSGVO): which documents its peer read,
//! changed and created. A line is written before the content it accounts for leaves:
//! the connection holds its outgoing messages until the lines noted for them are in the
//! database (see `docs/sync.md`, "Audit").

use std::collections::HashMap;
use std::time::Duration;

use lotse_protocol::DocumentId;
use tokio::time::Instant;

use super::connection::PeerIdentity;
use crate::hub::Received;
use crate::store::{AuditEntry, Store};

/// A full batch of audit entries is written at once, without waiting for the timer.
const AUDIT_BATCH: usize = 64;
/// Lines that hold back no content are written at the latest this long after the first.
const AUDIT_EVERY: Duration = Duration::from_secs(1);
/// After a failed write, the next try waits this long; content waits with it.
const AUDIT_RETRY: Duration = Duration::from_secs(1);
/// A document read again on the same connection (live changes fanned out to it) gets a
/// new line once this long has passed since its last one: a phone in the foreground
/// keeps its socket for hours, and the trail should show that it kept reading.
const RENOTE_AFTER: Duration = Duration::from_secs(60 * 60);

const READ: &str = "document.sync";
const CHANGED: &str = "document.change";
const CREATED: &str = "document.create";

pub struct AuditTrail {
    store: Store,
    organisation_id: String,
    actor_kind: &'static str,
    actor_id: String,
    /// When this connection last noted each (document, action).
    noted: HashMap<(DocumentId, &'static str), Instant>,
    /// Noted, not yet written, oldest first.
    pending: Vec<AuditEntry>,
    /// When the pending entries are written at the latest; `None` while nothing is pending.
    pub due: Option<Instant>,
    /// The last write failed: the next try waits for `due`.
    failing: bool,
}

impl AuditTrail {
    pub fn new(store: Store, who: &PeerIdentity) -> Self {
        Self {
            store,
            organisation_id: who.viewer.organisation_id.clone(),
            actor_kind: who.actor_kind,
            actor_id: who.actor_id.clone(),
            noted: HashMap::new(),
            pending: Vec::new(),
            due: None,
            failing: false,
        }
    }

    /// Notes what a sync message of the peer did to `id`, which it passed the access
    /// check for: `document.create` if it created it, `document.change` for changes
    /// the hub committed. What the peer reads is noted by [`Self::read`].
    pub fn received(&mut self, id: DocumentId, received: Received) {
        if received.created {
            self.note(id, CREATED);
            // Its creator reads nothing it did not write.
            self.noted.insert((id, READ), Instant::now());
        }
        if received.changed {
            self.note(id, CHANGED);
        }
    }

    /// The server is about to send the peer something of the stored document `id`.
    pub fn read(&mut self, id: DocumentId) {
        self.note(id, READ);
    }

    fn note(&mut self, id: DocumentId, action: &'static str) {
        self.note_at(id, action, Instant::now());
    }

    fn note_at(&mut self, id: DocumentId, action: &'static str, now: Instant) {
        if let Some(last) = self.noted.get(&(id, action))
            && now.duration_since(*last) < RENOTE_AFTER
        {
            return;
        }
        self.noted.insert((id, action), now);
        self.pending.push(AuditEntry::document(
            &self.organisation_id,
            self.actor_kind,
            &self.actor_id,
            action,
            &id.to_string(),
        ));
        if self.due.is_none() {
            self.due = Some(now + AUDIT_EVERY);
        }
    }

    /// A full batch waits for no timer, unless writes are failing.
    pub fn batch_full(&self) -> bool {
        !self.failing && self.pending.len() >= AUDIT_BATCH
    }

    /// Whether content may leave now: every line noted so far is written. Writes them
    /// if they are not, unless a failed write asked to wait until `due`.
    pub async fn ready_to_send(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        if self.failing && self.due.is_some_and(|due| Instant::now() < due) {
            return false;
        }
        self.flush().await;
        self.pending.is_empty()
    }

    /// Writes what is pending in one transaction. On failure the entries stay for the
    /// next try (and the content they account for stays with the connection).
    pub async fn flush(&mut self) {
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
                        "could not write audit entries; the connection sends nothing until they are"
                    );
                }
                self.failing = true;
                self.due = Some(Instant::now() + AUDIT_RETRY);
            }
        }
    }

    /// The connection ends: one last try for the lines of changes and creations (those
    /// of reads held back their content, which was then never sent).
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
        audit.read(id);
        audit.read(id);
        audit.note(id, CHANGED);
        assert_eq!(audit.pending.len(), 2);
        assert!(audit.due.is_some());
        assert!(!audit.batch_full());
        for _ in 0..AUDIT_BATCH {
            audit.read(DocumentId::random());
        }
        assert!(audit.batch_full());
        assert!(audit.ready_to_send().await);
        assert!(audit.pending.is_empty() && audit.due.is_none());
        assert_eq!(stored(&store).await.len(), AUDIT_BATCH + 2);
        // Noted once per connection, also after the write...
        audit.read(id);
        assert!(audit.pending.is_empty());
        // ...until it is an hour old.
        audit.note_at(id, READ, Instant::now() + RENOTE_AFTER);
        assert_eq!(audit.pending.len(), 1);
        audit.finish().await;
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn content_waits_while_the_lines_cannot_be_written() {
        let (store, dir, org) = store().await;
        let mut audit = trail(&store, &org);
        sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_away")
            .execute(store.pool())
            .await
            .unwrap();
        let first: Vec<DocumentId> = (0..3).map(|_| DocumentId::random()).collect();
        for id in &first {
            audit.read(*id);
        }
        assert!(
            !audit.ready_to_send().await,
            "nothing leaves unaccounted for"
        );
        assert_eq!(audit.pending.len(), 3, "kept for the next try");
        assert!(audit.failing && audit.due.is_some());
        assert!(!audit.batch_full(), "a failing store waits for the timer");
        assert!(
            !audit.ready_to_send().await,
            "before `due` no new try, and still nothing leaves"
        );

        sqlx::query("ALTER TABLE audit_events_away RENAME TO audit_events")
            .execute(store.pool())
            .await
            .unwrap();
        audit.due = Some(Instant::now());
        assert!(audit.ready_to_send().await);
        assert!(audit.pending.is_empty() && !audit.failing);
        let ids = stored(&store).await;
        assert!(
            first.iter().all(|id| ids.contains(&id.to_string())),
            "none given up"
        );
        audit.finish().await;
        store.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

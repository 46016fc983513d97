//! Rewriting a case into its next generation (docs/sync.md): erasing entries from its
//! history, or compacting it. Done under the document's lock, so no change on this
//! instance slips between reading the case and tombstoning it; a change another instance
//! made meanwhile shows as other heads in the storing transaction, and the rewrite starts
//! again from what the database holds.

use lotse_protocol::automerge::ActorId;
use lotse_protocol::schema::generation::{self, EntryRef, KnownChanges};
use lotse_protocol::{CaseDoc, CaseSummary, DocumentId};

use super::{Hub, HubError, Loaded};
use crate::store::{AuditEntry, GenerationReason, StoreError, Superseded, Superseding, now_ms};

/// A case's new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub case_id: String,
    pub old: DocumentId,
    pub new: DocumentId,
}

impl Hub {
    /// Writes the case held in `id` anew without the `erase`d entries (none: compaction),
    /// stores it in place of `id` and tells the peers of both. `audit` gets the case id.
    /// `None` if there is no such case in the organisation.
    pub async fn rewrite(
        &self,
        organisation_id: &str,
        id: &DocumentId,
        erase: &[EntryRef],
        reason: GenerationReason,
        audit: impl Fn(&str) -> AuditEntry,
    ) -> Result<Option<Rewritten>, HubError> {
        const ATTEMPTS: usize = 3;
        let entry = self.entry(*id);
        let mut slot = entry.state.lock().await;
        for _ in 0..ATTEMPTS {
            let loaded = match self.ensure_loaded(&entry, &mut slot).await {
                Ok(loaded) if loaded.persisted => loaded,
                Ok(_) => return Ok(None),
                Err(e) => return Err(e),
            };
            let old = &loaded.doc;
            let view = CaseDoc::read(old).map_err(|e| HubError::NotACase(e.to_string()))?;
            if view.organisation_id != organisation_id {
                return Ok(None);
            }
            let case_id = generation::case_id(old, &id.to_string())
                .map_err(|e| HubError::NotACase(e.to_string()))?;
            // Who created each entry: the new generation's only change is the server's,
            // so the writers are carried over (from this generation's history, and from
            // what was carried into it).
            let mut creators = lotse_protocol::schema::creators(old, &view);
            let carried = self.store.carried_creators(id).await?;
            creators.notes.extend(carried.notes);
            creators.hours.extend(carried.hours);
            for e in erase {
                creators.notes.remove(&e.id);
                creators.hours.remove(&e.id);
            }
            let now = now_ms();
            let next =
                generation::next_generation(old, &id.to_string(), erase, ActorId::random(), now)
                    .map_err(|e| match e {
                        lotse_protocol::SchemaError::NotFound { id, .. } => erase
                            .iter()
                            .find(|e| e.id == id)
                            .map_or(HubError::NotACase(id), |e| HubError::NoSuchEntry(e.clone())),
                        e => HubError::NotACase(e.to_string()),
                    })?;
            let summary = CaseDoc::read(&next)
                .map(|v| CaseSummary::from_view(&v, now, Some(now)))
                .map_err(|e| HubError::NotACase(e.to_string()))?;
            let new = DocumentId::random();
            let snapshot = lotse_protocol::save_snapshot(&next);
            let heads = next.get_heads();
            let old_heads = old.get_heads();
            let known = KnownChanges::of(old);
            let line = audit(&case_id);
            let stored = self
                .store
                .supersede(Superseding {
                    organisation_id,
                    old: id,
                    old_heads: &old_heads,
                    new: &new,
                    case_id: &case_id,
                    snapshot: &snapshot,
                    heads: &heads,
                    summary: &summary,
                    known: &known,
                    creators: &creators,
                    reason,
                    audit: &line,
                })
                .await?;
            // Whatever happened, the next use of the old id reads what the database holds.
            *slot = None;
            match stored {
                Superseded::Done { deleted, grantees } => {
                    drop(slot);
                    let bytes = snapshot.len() as u64;
                    *self.entry(new).state.lock().await = Some(Loaded {
                        saved_heads: heads,
                        doc: next,
                        chunks: 1,
                        bytes,
                        persisted: true,
                    });
                    self.access_shrank([deleted]);
                    self.shared(grantees, 0);
                    tracing::info!(document_id = %id, successor = %new, reason = reason.code(), "case rewritten");
                    return Ok(Some(Rewritten {
                        case_id,
                        old: *id,
                        new,
                    }));
                }
                Superseded::Missing => return Ok(None),
                Superseded::Changed => continue,
            }
        }
        Err(HubError::Storage(StoreError::Conflict(
            "the case kept changing while it was being rewritten",
        )))
    }
}

//! Document generations (docs/sync.md): a case rewritten without an erased entry, or
//! compacted, continues as a new document. One transaction stores the new generation with
//! the case's index row, sharing, writers and request link, tombstones the old one with
//! its successor and the hashes of the changes it held, removes the old one's rows and
//! writes the audit line; so a failure leaves the old generation whole, never half of
//! each. The case id (the first generation's document id) is what the API, the
//! dashboard and the audit trail address; any generation's id resolves to the newest.

use std::collections::HashMap;

use lotse_protocol::DocumentId;
use lotse_protocol::automerge::{ActorId, ChangeHash};
use lotse_protocol::schema::generation::KnownChanges;
use lotse_protocol::schema::{CaseSummary, Creators};
use sqlx::Row;

use super::access::AccessChange;
use super::tombstones::{DeletionReason, remove_rows, row_lock};
use super::{AuditEntry, Result, Store, StoreError, heads_to_text, now_ms};

/// Why a generation was written, as its predecessor's tombstone keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationReason {
    /// Entries were erased (DSGVO Art. 16/17), for this reason.
    Erased(DeletionReason),
    /// The history was compacted; nothing was erased.
    Compacted,
}

impl GenerationReason {
    /// `erased:<reason>` or `compacted`.
    pub fn code(self) -> String {
        match self {
            Self::Erased(why) => format!("erased:{}", why.code()),
            Self::Compacted => "compacted".to_owned(),
        }
    }
}

/// A new generation to store in place of `old`.
pub struct Superseding<'a> {
    pub organisation_id: &'a str,
    pub old: &'a DocumentId,
    /// The old generation's heads the new one was written from: if the database holds
    /// others (another instance wrote meanwhile), nothing is stored ([`Superseded::Changed`]).
    pub old_heads: &'a [ChangeHash],
    pub new: &'a DocumentId,
    pub case_id: &'a str,
    pub snapshot: &'a [u8],
    pub heads: &'a [ChangeHash],
    pub summary: &'a CaseSummary,
    /// What the server held of the old generation (sent to phones that come back with it).
    pub known: &'a KnownChanges,
    /// Who created each entry, carried over from the old generation.
    pub creators: &'a Creators,
    pub reason: GenerationReason,
    pub audit: &'a AuditEntry,
}

/// What `supersede` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Superseded {
    /// Stored: connections of the old generation hear of it (`deleted`), the volunteers
    /// it is shared with are told of the new one (`grantees`).
    Done {
        deleted: AccessChange,
        grantees: Vec<String>,
    },
    Missing,
    Changed,
}

/// The newest generation of a tombstoned document, as a peer holding it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    pub document_id: DocumentId,
    /// The hashes the server held of the generation asked about.
    pub known: KnownChanges,
}

/// How many generations a resolution follows before it calls the chain broken.
const MAX_GENERATIONS: usize = 1_000;

impl Store {
    pub async fn supersede(&self, s: Superseding<'_>) -> Result<Superseded> {
        let (old, new) = (s.old.to_string(), s.new.to_string());
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(safe_sql!(
            "SELECT kind, heads, owner_volunteer_id FROM documents \
             WHERE id = $1 AND organisation_id = $2{}",
            row_lock(self.backend)
        ))
        .bind(&old)
        .bind(s.organisation_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Superseded::Missing);
        };
        let kind: String = row.try_get("kind")?;
        let owner: Option<String> = row.try_get("owner_volunteer_id")?;
        if row.try_get::<String, _>("heads")? != heads_to_text(s.old_heads) {
            return Ok(Superseded::Changed);
        }
        sqlx::query(
            "INSERT INTO documents (id, organisation_id, kind, owner_volunteer_id, heads, chunk_count, \
             created_at, updated_at, case_id) VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7)",
        )
        .bind(&new)
        .bind(s.organisation_id)
        .bind(&kind)
        .bind(owner.as_deref())
        .bind(heads_to_text(s.heads))
        .bind(now)
        .bind(s.case_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) VALUES ($1, 1, 'snapshot', $2, $3)",
        )
        .bind(&new)
        .bind(s.snapshot)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO document_access (document_id, volunteer_id) \
             SELECT $1, volunteer_id FROM document_access WHERE document_id = $2",
        )
        .bind(&new)
        .bind(&old)
        .execute(&mut *tx)
        .await?;
        let mut grantees: Vec<String> =
            sqlx::query_scalar("SELECT volunteer_id FROM document_access WHERE document_id = $1")
                .bind(&new)
                .fetch_all(&mut *tx)
                .await?;
        grantees.extend(owner.filter(|o| !grantees.contains(o)));
        super::documents::upsert_index(&mut tx, &new, s.organisation_id, s.summary).await?;
        // The closing time the retention period counts from is the case's, not the
        // rewrite's.
        sqlx::query(
            "UPDATE case_index SET closed_at = \
             (SELECT closed_at FROM case_index WHERE document_id = $2) WHERE document_id = $1",
        )
        .bind(&new)
        .bind(&old)
        .execute(&mut *tx)
        .await?;
        for (map, entries) in [("notes", &s.creators.notes), ("hours", &s.creators.hours)] {
            for (entry, actor) in entries {
                sqlx::query(
                    "INSERT INTO carried_creators (document_id, entry_map, entry_id, actor_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&new)
                .bind(map)
                .bind(entry)
                .bind(actor.to_hex_string())
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("UPDATE requests SET case_document_id = $1 WHERE case_document_id = $2")
            .bind(&new)
            .bind(&old)
            .execute(&mut *tx)
            .await?;
        // Earlier tombstones of the case point at the newest generation, so a phone that
        // holds any of them is sent straight there.
        sqlx::query("UPDATE tombstones SET successor = $1 WHERE case_id = $2")
            .bind(&new)
            .bind(s.case_id)
            .execute(&mut *tx)
            .await?;
        remove_rows(&mut tx, &old).await?;
        sqlx::query(
            "INSERT INTO tombstones (document_id, organisation_id, kind, deleted_at, reason, \
             successor, case_id, known_changes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&old)
        .bind(s.organisation_id)
        .bind(&kind)
        .bind(now)
        .bind(s.reason.code())
        .bind(&new)
        .bind(s.case_id)
        .bind(hex::encode(s.known.to_bytes()))
        .execute(&mut *tx)
        .await?;
        super::audit::insert(&mut tx, s.audit).await?;
        let deleted = AccessChange::Deleted { document_id: old };
        self.notify_access(&mut tx, std::slice::from_ref(&deleted))
            .await?;
        self.notify_changed(&mut tx, &new).await?;
        for volunteer in &grantees {
            self.notify_shared(&mut tx, volunteer).await?;
        }
        tx.commit().await?;
        self.scrub_files().await;
        Ok(Superseded::Done { deleted, grantees })
    }

    /// The newest generation of a tombstoned document, if it was superseded rather than
    /// deleted (and the organisation's).
    pub async fn successor(
        &self,
        organisation_id: &str,
        id: &DocumentId,
    ) -> Result<Option<Successor>> {
        let row = sqlx::query(
            "SELECT successor, known_changes FROM tombstones \
             WHERE document_id = $1 AND organisation_id = $2 AND successor IS NOT NULL",
        )
        .bind(id.to_string())
        .bind(organisation_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let successor: String = row.try_get("successor")?;
        let known: Option<String> = row.try_get("known_changes")?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("tombstone of {id}: {what}"));
        let known = known
            .as_deref()
            .map(|k| {
                hex::decode(k)
                    .ok()
                    .and_then(|b| KnownChanges::from_bytes(&b))
                    .ok_or_else(|| corrupt("known changes"))
            })
            .transpose()?
            .unwrap_or_default();
        // A successor that was itself deleted later (the whole case) leaves no document:
        // the peer is told of a deletion instead.
        let live: Option<i64> = sqlx::query_scalar("SELECT 1 FROM documents WHERE id = $1")
            .bind(&successor)
            .fetch_optional(&self.pool)
            .await?;
        if live.is_none() {
            return Ok(None);
        }
        Ok(Some(Successor {
            document_id: successor.parse().map_err(|_| corrupt("successor id"))?,
            known,
        }))
    }

    /// The document holding the case `id` now: `id` itself while it exists, else the
    /// newest generation it was rewritten into. `None` for a case deleted or unknown (or
    /// another organisation's).
    pub async fn current_generation(
        &self,
        organisation_id: &str,
        id: &DocumentId,
    ) -> Result<Option<DocumentId>> {
        let mut at = *id;
        for _ in 0..MAX_GENERATIONS {
            let live: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM documents WHERE id = $1 AND organisation_id = $2",
            )
            .bind(at.to_string())
            .bind(organisation_id)
            .fetch_optional(&self.pool)
            .await?;
            if live.is_some() {
                return Ok(Some(at));
            }
            match self.successor(organisation_id, &at).await? {
                Some(next) if next.document_id != at => at = next.document_id,
                _ => return Ok(None),
            }
        }
        Err(StoreError::Corrupt(format!(
            "the generations of {id} do not end"
        )))
    }

    /// The case a document belongs to: its `case_id`, or its own id (a first generation).
    pub async fn case_of(&self, id: &DocumentId) -> Result<String> {
        let case: Option<Option<String>> =
            sqlx::query_scalar("SELECT case_id FROM documents WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(case.flatten().unwrap_or_else(|| id.to_string()))
    }

    /// Every document id the case has had: the case id, earlier generations and the
    /// current one. The audit trail of a case is read over all of them.
    pub async fn generations_of(
        &self,
        organisation_id: &str,
        case_id: &str,
    ) -> Result<Vec<String>> {
        let mut ids: Vec<String> = sqlx::query_scalar(
            "SELECT document_id FROM tombstones WHERE organisation_id = $1 AND case_id = $2 \
             UNION SELECT id FROM documents WHERE organisation_id = $1 AND case_id = $2",
        )
        .bind(organisation_id)
        .bind(case_id)
        .fetch_all(&self.pool)
        .await?;
        if !ids.iter().any(|i| i == case_id) {
            ids.push(case_id.to_owned());
        }
        ids.sort();
        Ok(ids)
    }

    /// Who read and changed a case, over every document it has been held in, newest first
    /// (at most `SUBJECT_AUDIT_LIMIT`).
    pub async fn case_audit_trail(
        &self,
        organisation_id: &str,
        case_id: &str,
    ) -> Result<Vec<super::SubjectAuditEvent>> {
        let mut trail = Vec::new();
        for generation in self.generations_of(organisation_id, case_id).await? {
            trail.extend(
                self.audit_of_subject(organisation_id, "document", &generation)
                    .await?,
            );
        }
        trail.sort_by_key(|e| std::cmp::Reverse(e.at));
        trail.truncate(usize::try_from(super::SUBJECT_AUDIT_LIMIT).unwrap_or(usize::MAX));
        Ok(trail)
    }

    /// Who created which entry of a rewritten case in its earlier generations, to lay
    /// over what the new generation's own history says.
    pub async fn carried_creators(&self, id: &DocumentId) -> Result<Creators> {
        let rows = sqlx::query(
            "SELECT entry_map, entry_id, actor_id FROM carried_creators WHERE document_id = $1",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Creators::default();
        for r in rows {
            let map: String = r.try_get("entry_map")?;
            let entry: String = r.try_get("entry_id")?;
            let actor: String = r.try_get("actor_id")?;
            let actor = ActorId::try_from(actor.as_str())
                .map_err(|_| StoreError::Corrupt(format!("carried creator of {id}")))?;
            let target: &mut HashMap<String, ActorId> = match map.as_str() {
                "notes" => &mut out.notes,
                "hours" => &mut out.hours,
                _ => continue,
            };
            target.insert(entry, actor);
        }
        Ok(out)
    }
}

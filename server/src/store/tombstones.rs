//! Deleting a document for good. One transaction removes every chunk, snapshot, sync
//! state, index row and access row, unlinks the request it came from and leaves a
//! tombstone (id, organisation, kind, time, reason code; no content), so a purge that
//! fails halfway leaves the whole document or its tombstone, never half. On SQLite
//! `secure_delete` overwrites what was deleted and a checkpoint empties the WAL, so the
//! content cannot be read back from the files either. A case's de-identified figures
//! (`retention::CaseFigures`) are kept in the same transaction, so the reports about
//! past years do not change.

use lotse_protocol::DocumentId;
use lotse_protocol::automerge::ChangeHash;
use sqlx::Row;

use super::access::AccessChange;
use super::retention::{self, CaseFigures};
use super::{AuditEntry, Backend, Result, Store, heads_to_text, now_ms};

/// Why a document was deleted, as the tombstone and the audit trail keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionReason {
    /// Created by mistake (a wrong person, a duplicate).
    Mistake,
    /// The person helped asked for erasure (Art. 17 DSGVO).
    PersonAsked,
    /// The network's retention period for closed cases ran out (the purge job).
    Retention,
    Other,
}

impl DeletionReason {
    pub const ALL: [Self; 4] = [
        Self::Mistake,
        Self::PersonAsked,
        Self::Retention,
        Self::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Mistake => "mistake",
            Self::PersonAsked => "person-asked",
            Self::Retention => "retention",
            Self::Other => "other",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What a tombstone says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub document_id: String,
    pub organisation_id: String,
    pub kind: String,
    pub deleted_at: i64,
    pub reason: String,
}

/// What a deletion keeps and under which conditions it happens, checked inside its
/// transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deleting<'a> {
    /// The case's figures, read from the document at `heads`.
    pub figures: Option<&'a CaseFigures>,
    /// The heads the figures were read at: if the document has others by now (another
    /// instance wrote to it), nothing is deleted ([`Deleted::Changed`]).
    pub heads: Option<&'a [ChangeHash]>,
    /// Only a case still closed, and closed at or before this time (the purge).
    pub closed_before: Option<i64>,
}

/// What `delete_document` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted; for the hub: connections that follow the document hear of it, and other
    /// instances were told by the commit.
    Done(AccessChange),
    /// No such document in that organisation (which a caller answers as "not found", as
    /// for any other missing document).
    Missing,
    /// The document changed since its figures were read: read them again.
    Changed,
    /// Reopened, or not closed long enough: the purge leaves it.
    NotDue,
}

/// Takes the document's row lock on PostgreSQL, so a writer on another instance waits
/// for the deletion (and then finds the tombstone) or the deletion for the writer (and
/// then sees new heads). SQLite's write transaction holds the whole database already.
pub(super) fn row_lock(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

/// Removes every row of a document (chunks, snapshot, sync states, sharing, index, the
/// writers carried into it) and unlinks the request it came from, inside the caller's
/// transaction; the caller leaves the tombstone.
pub(super) async fn remove_rows(conn: &mut sqlx::AnyConnection, id: &str) -> Result<()> {
    for table in [
        "sync_states",
        "document_chunks",
        "document_access",
        "case_index",
        "carried_creators",
    ] {
        sqlx::query(safe_sql!("DELETE FROM {table} WHERE document_id = $1"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM documents WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE requests SET case_document_id = NULL WHERE case_document_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Deletes a document of the organisation and leaves its tombstone, with the audit
    /// line and the case's figures in the same transaction, if `deleting`'s conditions
    /// hold there.
    pub async fn delete_document(
        &self,
        organisation_id: &str,
        id: &DocumentId,
        reason: DeletionReason,
        audit: &AuditEntry,
        deleting: Deleting<'_>,
    ) -> Result<Deleted> {
        let id_text = id.to_string();
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(safe_sql!(
            "SELECT kind, heads FROM documents WHERE id = $1 AND organisation_id = $2{}",
            row_lock(self.backend)
        ))
        .bind(&id_text)
        .bind(organisation_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Deleted::Missing);
        };
        let kind: String = row.try_get("kind")?;
        let heads: String = row.try_get("heads")?;
        if deleting
            .heads
            .is_some_and(|read| heads_to_text(read) != heads)
        {
            return Ok(Deleted::Changed);
        }
        if let Some(before) = deleting.closed_before
            && !retention::still_due(&mut tx, &id_text, before).await?
        {
            return Ok(Deleted::NotDue);
        }
        remove_rows(&mut tx, &id_text).await?;
        sqlx::query(
            "INSERT INTO tombstones (document_id, organisation_id, kind, deleted_at, reason) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id_text)
        .bind(organisation_id)
        .bind(&kind)
        .bind(now_ms())
        .bind(reason.code())
        .execute(&mut *tx)
        .await?;
        super::audit::insert(&mut tx, audit).await?;
        if let Some(figures) = deleting.figures {
            retention::keep(&mut tx, organisation_id, figures).await?;
        }
        let change = AccessChange::Deleted {
            document_id: id_text,
        };
        self.notify_access(&mut tx, std::slice::from_ref(&change))
            .await?;
        tx.commit().await?;
        self.scrub_files().await;
        Ok(Deleted::Done(change))
    }

    /// The tombstone of `id`, if it was deleted.
    pub async fn tombstone(&self, id: &DocumentId) -> Result<Option<Tombstone>> {
        let row = sqlx::query(
            "SELECT document_id, organisation_id, kind, deleted_at, reason FROM tombstones WHERE document_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Tombstone {
                document_id: r.try_get("document_id")?,
                organisation_id: r.try_get("organisation_id")?,
                kind: r.try_get("kind")?,
                deleted_at: r.try_get("deleted_at")?,
                reason: r.try_get("reason")?,
            })
        })
        .transpose()
    }

    /// On SQLite, copies the WAL into the database file and truncates it, so the
    /// pages that held deleted content (overwritten there by `secure_delete`) leave no
    /// older copy behind. Best effort: a reader holding an old snapshot can delay it, and
    /// the next deletion or SQLite's own checkpoints finish the job.
    pub(super) async fn scrub_files(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
        {
            Ok(row) => {
                let busy: i64 = row.try_get(0).unwrap_or(1);
                if busy != 0 {
                    tracing::warn!(
                        "the WAL could not be emptied after a deletion; it will be at a later checkpoint"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint after a deletion failed"),
        }
    }
}

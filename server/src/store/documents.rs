//! Automerge documents: chunks (snapshot + incrementals), who may sync them, persisted
//! per-peer sync states, and the dashboard's case index. Every write that advertises new
//! heads commits here before the sync layer sends anything.

use lotse_protocol::automerge::ChangeHash;
use lotse_protocol::{CaseSummary, DocumentId, Status};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::authorship::{self, Authored, Writer};
use super::{Result, Store, StoreError, json_column, now_ms, to_json};

#[derive(Debug, Clone)]
pub struct DocumentRow {
    pub id: DocumentId,
    pub organisation_id: String,
    pub kind: String,
    pub owner_volunteer_id: Option<String>,
    pub heads: Vec<ChangeHash>,
}

/// Who wants a document: a coordinator sees the organisation, a device its volunteer's.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub organisation_id: String,
    /// `None` for coordinators.
    pub volunteer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed(Vec<ChangeHash>),
    /// No such document: the viewer may create it.
    Unknown,
    /// Exists, but not for this viewer; callers answer exactly as for a missing one.
    Denied,
    /// The viewer's organisation deleted it: it can never be created again.
    Deleted,
}

pub struct NewDocument<'a> {
    pub id: DocumentId,
    pub organisation_id: &'a str,
    pub kind: &'a str,
    pub owner_volunteer_id: Option<&'a str>,
    pub chunk: &'a [u8],
    pub heads: &'a [ChangeHash],
    pub shared_with: &'a [String],
    pub summary: Option<&'a CaseSummary>,
    /// The audit line of the creation, written in the same transaction; `None` where the
    /// caller records it otherwise (a sync connection) or nobody asked (the demo).
    pub created_by: Option<&'a super::AuditEntry>,
    /// Who wrote the first changes, with which actors (bound in the same transaction).
    pub authored: Option<Authored<'a>>,
    /// A device's writes count against its quota (`device-bytes`) of this many bytes.
    pub device_limit: Option<u64>,
}

/// Charges a device writer for `bytes`, within the caller's transaction.
async fn charge(
    conn: &mut sqlx::AnyConnection,
    authored: Option<&Authored<'_>>,
    bytes: u64,
    limit: Option<u64>,
) -> Result<()> {
    if let (
        Some(Authored {
            writer: Writer::Device { device_id, .. },
            ..
        }),
        Some(limit),
    ) = (authored, limit)
    {
        Store::charge_device(conn, device_id, bytes, limit).await?;
    }
    Ok(())
}

impl NewDocument<'_> {
    /// The volunteers whose devices may sync the document from its creation on: those
    /// it is shared with and its owner.
    pub fn grantees(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.shared_with.len() + 1);
        for volunteer in self
            .shared_with
            .iter()
            .map(String::as_str)
            .chain(self.owner_volunteer_id)
        {
            if !out.iter().any(|v| v == volunteer) {
                out.push(volunteer.to_owned());
            }
        }
        out
    }
}

/// A case as the dashboard lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseRow {
    pub id: String,
    pub label: String,
    pub topic: String,
    pub status: String,
    pub languages: Vec<String>,
    pub volunteer_ids: Vec<String>,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_change_at: Option<i64>,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_appointment_at: Option<i64>,
    pub note_count: i64,
    pub hours_minutes: i64,
    pub travel_minutes: i64,
}

pub fn heads_to_text(heads: &[ChangeHash]) -> String {
    let mut hex: Vec<String> = heads.iter().map(|h| hex::encode(h.0)).collect();
    hex.sort_unstable();
    hex.join(",")
}

pub fn heads_from_text(text: &str) -> Result<Vec<ChangeHash>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bytes = hex::decode(s).map_err(|e| StoreError::Corrupt(format!("heads: {e}")))?;
            let arr: [u8; 32] = bytes
                .try_into()
                .map_err(|_| StoreError::Corrupt("heads: wrong hash length".into()))?;
            Ok(ChangeHash(arr))
        })
        .collect()
}

fn document(row: &AnyRow) -> Result<DocumentRow> {
    let id: String = row.try_get("id")?;
    Ok(DocumentRow {
        id: id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("document id {id}: {e}")))?,
        organisation_id: row.try_get("organisation_id")?,
        kind: row.try_get("kind")?,
        owner_volunteer_id: row.try_get("owner_volunteer_id")?,
        heads: heads_from_text(row.try_get("heads")?)?,
    })
}

/// Writes a case's index row. `closed_at` (what the retention period counts from) is the
/// server's time of the first write that saw the case closed, kept while it stays closed
/// and cleared when it is reopened. Not the document's own status-change time: that is
/// the writing phone's clock, and a phone set years back would have its case deleted at
/// once.
pub(super) async fn upsert_index(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    organisation_id: &str,
    s: &CaseSummary,
) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO case_index (document_id, organisation_id, label, topic, status, languages, \
         last_change_at, next_appointment_at, note_count, hours_minutes, travel_minutes, updated_at, \
         closed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (document_id) DO UPDATE SET label = excluded.label, topic = excluded.topic, \
         status = excluded.status, languages = excluded.languages, \
         last_change_at = excluded.last_change_at, next_appointment_at = excluded.next_appointment_at, \
         note_count = excluded.note_count, hours_minutes = excluded.hours_minutes, \
         travel_minutes = excluded.travel_minutes, updated_at = excluded.updated_at, \
         closed_at = CASE WHEN excluded.closed_at IS NULL THEN NULL \
         ELSE COALESCE(case_index.closed_at, excluded.closed_at) END",
    )
    .bind(id)
    .bind(organisation_id)
    .bind(&s.label)
    .bind(s.topic.as_str())
    .bind(s.status.as_str())
    .bind(to_json(&s.languages))
    .bind(s.last_change)
    .bind(s.next_appointment.as_ref().map(|a| a.start))
    .bind(s.note_count as i64)
    .bind(s.hours_minutes as i64)
    .bind(s.travel_minutes as i64)
    .bind(now)
    .bind((s.status == Status::Closed).then_some(now))
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRow>> {
        let row = sqlx::query(
            "SELECT id, organisation_id, kind, owner_volunteer_id, heads FROM documents WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document).transpose()
    }

    /// Decides whether `viewer` may sync `id` (DESIGN.md decision 6).
    pub async fn document_access(&self, viewer: &Viewer, id: &DocumentId) -> Result<Access> {
        let Some(doc) = self.document(id).await? else {
            // A tombstone of another organisation is answered as any document of theirs
            // would be: it exists, not for you (and cannot be created either).
            return Ok(match self.tombstone(id).await? {
                Some(t) if t.organisation_id == viewer.organisation_id => Access::Deleted,
                Some(_) => Access::Denied,
                None => Access::Unknown,
            });
        };
        if doc.organisation_id != viewer.organisation_id {
            return Ok(Access::Denied);
        }
        let Some(volunteer) = &viewer.volunteer_id else {
            return Ok(Access::Allowed(doc.heads));
        };
        if doc.owner_volunteer_id.as_deref() == Some(volunteer) {
            return Ok(Access::Allowed(doc.heads));
        }
        let shared: Option<String> = sqlx::query_scalar(
            "SELECT volunteer_id FROM document_access WHERE document_id = $1 AND volunteer_id = $2",
        )
        .bind(id.to_string())
        .bind(volunteer)
        .fetch_optional(&self.pool)
        .await?;
        Ok(if shared.is_some() {
            Access::Allowed(doc.heads)
        } else {
            Access::Denied
        })
    }

    /// Every document `viewer` may hold, with the server's heads: the catch-up manifest.
    pub async fn documents_for(
        &self,
        viewer: &Viewer,
    ) -> Result<Vec<(DocumentId, Vec<ChangeHash>)>> {
        let rows = match &viewer.volunteer_id {
            None => {
                sqlx::query("SELECT id, organisation_id, kind, owner_volunteer_id, heads FROM documents WHERE organisation_id = $1")
                    .bind(&viewer.organisation_id)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(volunteer) => {
                sqlx::query(
                    "SELECT id, organisation_id, kind, owner_volunteer_id, heads FROM documents \
                     WHERE organisation_id = $1 AND (owner_volunteer_id = $2 OR id IN \
                     (SELECT document_id FROM document_access WHERE volunteer_id = $2))",
                )
                .bind(&viewer.organisation_id)
                .bind(volunteer)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| document(r).map(|d| (d.id, d.heads)))
            .collect()
    }

    /// The stored chunks of a document in the order they were written.
    pub async fn document_chunks(&self, id: &DocumentId) -> Result<Vec<Vec<u8>>> {
        let rows =
            sqlx::query("SELECT data FROM document_chunks WHERE document_id = $1 ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<Vec<u8>, _>("data").map_err(Into::into))
            .collect()
    }

    /// Creates a document with its first chunk, its sharing and (for cases) its index
    /// row, in one transaction.
    pub async fn create_document(&self, new: NewDocument<'_>) -> Result<()> {
        let id = new.id.to_string();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // However a writer got here (a stale access decision, another instance not yet
        // told), a deleted document is never created again.
        if sqlx::query("SELECT 1 FROM tombstones WHERE document_id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(StoreError::Tombstoned);
        }
        sqlx::query(
            "INSERT INTO documents (id, organisation_id, kind, owner_volunteer_id, heads, chunk_count, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(&id)
        .bind(new.organisation_id)
        .bind(new.kind)
        .bind(new.owner_volunteer_id)
        .bind(heads_to_text(new.heads))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) VALUES ($1, 1, 'snapshot', $2, $3)",
        )
        .bind(&id)
        .bind(new.chunk)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for volunteer in new.shared_with {
            sqlx::query("INSERT INTO document_access (document_id, volunteer_id) VALUES ($1, $2)")
                .bind(&id)
                .bind(volunteer)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(summary) = new.summary {
            upsert_index(&mut tx, &id, new.organisation_id, summary).await?;
        }
        if let Some(entry) = new.created_by {
            super::audit::insert(&mut tx, entry).await?;
        }
        if let Some(authored) = &new.authored {
            authorship::bind(&mut tx, new.organisation_id, authored).await?;
        }
        charge(
            &mut tx,
            new.authored.as_ref(),
            new.chunk.len() as u64,
            new.device_limit,
        )
        .await?;
        self.notify_changed(&mut tx, &id).await?;
        for volunteer in new.grantees() {
            self.notify_shared(&mut tx, &volunteer).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends the changes of one sync step and refreshes kind, heads and index, in one
    /// transaction. With `snapshot`, the document is compacted: the snapshot replaces
    /// every older chunk in the same transaction, so a crash leaves one or the other.
    /// The writer's actors are bound, and a device charged for the `added` bytes of its
    /// changes, in the same transaction: a refusal ([`StoreError::Refused`]) stores
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_changes(
        &self,
        id: &DocumentId,
        chunk: &[u8],
        snapshot: Option<&[u8]>,
        heads: &[ChangeHash],
        kind: &str,
        summary: Option<&CaseSummary>,
        authored: &Authored<'_>,
        device_limit: Option<u64>,
        added: u64,
    ) -> Result<()> {
        let id_text = id.to_string();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT organisation_id, COALESCE((SELECT MAX(seq) FROM document_chunks WHERE document_id = $1), 0) AS last_seq \
             FROM documents WHERE id = $1",
        )
        .bind(&id_text)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::Tombstoned)?;
        let organisation_id: String = row.try_get("organisation_id")?;
        let seq: i64 = row.try_get::<i64, _>("last_seq")? + 1;
        authorship::bind(&mut tx, &organisation_id, authored).await?;
        charge(&mut tx, Some(authored), added, device_limit).await?;
        let (data, chunk_kind) = match snapshot {
            Some(s) => (s, "snapshot"),
            None => (chunk, "incremental"),
        };
        sqlx::query(
            "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id_text)
        .bind(seq)
        .bind(chunk_kind)
        .bind(data)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if snapshot.is_some() {
            sqlx::query("DELETE FROM document_chunks WHERE document_id = $1 AND seq < $2")
                .bind(&id_text)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE documents SET heads = $1, kind = $2, updated_at = $3, \
             chunk_count = (SELECT COUNT(*) FROM document_chunks WHERE document_id = $4) WHERE id = $4",
        )
        .bind(heads_to_text(heads))
        .bind(kind)
        .bind(now)
        .bind(&id_text)
        .execute(&mut *tx)
        .await?;
        if let Some(summary) = summary {
            upsert_index(&mut tx, &id_text, &organisation_id, summary).await?;
        }
        self.notify_changed(&mut tx, &id_text).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn chunk_count(&self, id: &DocumentId) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT chunk_count FROM documents WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn sync_state(&self, id: &DocumentId, peer_key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT state FROM sync_states WHERE document_id = $1 AND peer_key = $2",
        )
        .bind(id.to_string())
        .bind(peer_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn save_sync_states(
        &self,
        peer_key: &str,
        states: &[(DocumentId, Vec<u8>)],
    ) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for (id, state) in states {
            sqlx::query(
                // Only for stored documents: a peer may have synced one that never got content.
                "INSERT INTO sync_states (document_id, peer_key, state, updated_at) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM documents WHERE id = $1) \
                 ON CONFLICT (document_id, peer_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(id.to_string())
            .bind(peer_key)
            .bind(state.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_sync(&self, device_id: &str) -> Result<()> {
        sqlx::query("UPDATE devices SET last_sync_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Cases of an organisation for the dashboard, most recently changed first.
    pub async fn cases(&self, organisation_id: &str) -> Result<Vec<CaseRow>> {
        // Listed under the case's id, which stays when the case is rewritten.
        let rows = sqlx::query(
            "SELECT c.document_id, COALESCE(d.case_id, c.document_id) AS case_id, c.label, c.topic, \
             c.status, c.languages, c.last_change_at, c.next_appointment_at, c.note_count, \
             c.hours_minutes, c.travel_minutes FROM case_index c JOIN documents d ON d.id = c.document_id \
             WHERE c.organisation_id = $1 ORDER BY c.last_change_at DESC, c.document_id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        // One query for all sharing instead of one per case.
        let shares = sqlx::query(
            "SELECT a.document_id, a.volunteer_id FROM document_access a \
             JOIN case_index c ON c.document_id = a.document_id \
             WHERE c.organisation_id = $1 ORDER BY a.volunteer_id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        let mut shared: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in &shares {
            shared
                .entry(r.try_get("document_id")?)
                .or_default()
                .push(r.try_get("volunteer_id")?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let document_id: String = r.try_get("document_id")?;
            let volunteer_ids = shared.remove(&document_id).unwrap_or_default();
            out.push(CaseRow {
                id: r.try_get("case_id")?,
                label: r.try_get("label")?,
                topic: r.try_get("topic")?,
                status: r.try_get("status")?,
                languages: json_column(r.try_get("languages")?, "case languages")?,
                volunteer_ids,
                last_change_at: r.try_get("last_change_at")?,
                next_appointment_at: r.try_get("next_appointment_at")?,
                note_count: r.try_get("note_count")?,
                hours_minutes: r.try_get("hours_minutes")?,
                travel_minutes: r.try_get("travel_minutes")?,
            });
        }
        Ok(out)
    }

    /// A setting kept in the database (server storage id, later VAPID keys).
    pub async fn setting_or_insert(
        &self,
        key: &str,
        value: impl FnOnce() -> String,
    ) -> Result<String> {
        if let Some(v) = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(v);
        }
        let fresh = value();
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&fresh)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

//! The local SQLite file, through sqlx's SQLite driver: WAL journal, `synchronous = FULL`
//! (a transaction that returned is on disk), `secure_delete` (freed pages are zeroed).
//! This module stores opaque blobs only; what they mean (encrypted chunks, wrapped keys)
//! is the business of [`crate::repo`]. One connection: the repo serialises all access.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use lotse_protocol::DocumentId;
use lotse_protocol::automerge::ChangeHash;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx_sqlite_only as sqlx;

use crate::error::{Error, Result};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    // One row per automerge document. `heads` are the local heads at the last stored
    // chunk, `server_heads` the heads the server last announced (NULL: never heard).
    "CREATE TABLE IF NOT EXISTS documents (
        id BLOB PRIMARY KEY,
        wrapped_key BLOB NOT NULL,
        heads BLOB NOT NULL,
        server_heads BLOB,
        sync_state BLOB,
        error TEXT
    )",
    // Encrypted automerge chunks: one snapshot, then incrementals, in `seq` order.
    "CREATE TABLE IF NOT EXISTS chunks (
        doc_id BLOB NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (doc_id, seq)
    )",
];

/// Sync bookkeeping of one document: (id, sealed sync state, server heads, error).
pub type SyncEntry = (DocumentId, Vec<u8>, Option<Vec<ChangeHash>>, Option<String>);

/// A document as stored.
pub struct DocRow {
    pub id: DocumentId,
    pub wrapped_key: Vec<u8>,
    pub server_heads: Option<Vec<ChangeHash>>,
    pub sync_state: Option<Vec<u8>>,
    pub error: Option<String>,
    /// `(seq, encrypted chunk)`, ascending.
    pub chunks: Vec<(i64, Vec<u8>)>,
}

#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

pub fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub fn heads_from_bytes(bytes: &[u8]) -> Result<Vec<ChangeHash>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(Error::Corrupt("stored heads have a wrong length".into()));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0; 32];
            h.copy_from_slice(c);
            ChangeHash(h)
        })
        .collect())
}

fn doc_id(bytes: &[u8]) -> Result<DocumentId> {
    DocumentId::try_from(bytes).map_err(|_| Error::Corrupt("stored document id".into()))
}

impl Db {
    pub async fn open(path: &Path) -> Result<Self> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| Error::Storage(format!("database path: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let db = Self { pool };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&self.pool)
            .await?;
        if version > SCHEMA_VERSION {
            return Err(Error::InvalidState(format!(
                "the local store was written by a newer app (schema {version}); please update"
            )));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {SCHEMA_VERSION}"
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_meta(&self, entries: &[(&str, &[u8])]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (key, value) in entries {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(*key)
            .bind(*value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn load_all(&self) -> Result<Vec<DocRow>> {
        let rows = sqlx::query(
            "SELECT id, wrapped_key, server_heads, sync_state, error FROM documents ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut docs = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Vec<u8> = row.try_get("id")?;
            let server_heads: Option<Vec<u8>> = row.try_get("server_heads")?;
            docs.push(DocRow {
                id: doc_id(&id)?,
                wrapped_key: row.try_get("wrapped_key")?,
                server_heads: server_heads.as_deref().map(heads_from_bytes).transpose()?,
                sync_state: row.try_get("sync_state")?,
                error: row.try_get("error")?,
                chunks: Vec::new(),
            });
        }
        let chunks = sqlx::query("SELECT doc_id, seq, data FROM chunks ORDER BY doc_id, seq")
            .fetch_all(&self.pool)
            .await?;
        let mut i = 0;
        for row in chunks {
            let id = doc_id(&row.try_get::<Vec<u8>, _>("doc_id")?)?;
            while i < docs.len() && docs[i].id.as_bytes() < id.as_bytes() {
                i += 1;
            }
            if i == docs.len() || docs[i].id != id {
                return Err(Error::Corrupt(format!("chunk of unknown document {id}")));
            }
            docs[i]
                .chunks
                .push((row.try_get("seq")?, row.try_get("data")?));
        }
        Ok(docs)
    }

    /// A new document with its first (encrypted) chunk, in one transaction.
    pub async fn insert_doc(
        &self,
        id: &DocumentId,
        wrapped_key: &[u8],
        heads: &[ChangeHash],
        chunk: Option<&[u8]>,
        sync_state: Option<&[u8]>,
        server_heads: Option<&[ChangeHash]>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO documents (id, wrapped_key, heads, server_heads, sync_state) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_bytes().as_slice())
        .bind(wrapped_key)
        .bind(heads_to_bytes(heads))
        .bind(server_heads.map(heads_to_bytes))
        .bind(sync_state)
        .execute(&mut *tx)
        .await?;
        if let Some(chunk) = chunk {
            sqlx::query("INSERT INTO chunks (doc_id, seq, data) VALUES (?, 0, ?)")
                .bind(id.as_bytes().as_slice())
                .bind(chunk)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends one chunk (and, when given, the sync state that acknowledges it) in one
    /// transaction. With `compact`, every older chunk is deleted in the same transaction,
    /// so the new chunk must be a full snapshot.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_chunk(
        &self,
        id: &DocumentId,
        seq: i64,
        chunk: &[u8],
        heads: &[ChangeHash],
        compact: bool,
        sync: Option<(&[u8], Option<&[ChangeHash]>)>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let id_bytes = id.as_bytes().as_slice();
        sqlx::query("INSERT INTO chunks (doc_id, seq, data) VALUES (?, ?, ?)")
            .bind(id_bytes)
            .bind(seq)
            .bind(chunk)
            .execute(&mut *tx)
            .await?;
        if compact {
            sqlx::query("DELETE FROM chunks WHERE doc_id = ? AND seq < ?")
                .bind(id_bytes)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let updated =
            match sync {
                Some((state, server_heads)) => sqlx::query(
                    "UPDATE documents SET heads = ?, sync_state = ?, server_heads = ? WHERE id = ?",
                )
                .bind(heads_to_bytes(heads))
                .bind(state)
                .bind(server_heads.map(heads_to_bytes))
                .bind(id_bytes)
                .execute(&mut *tx)
                .await?,
                None => {
                    sqlx::query("UPDATE documents SET heads = ? WHERE id = ?")
                        .bind(heads_to_bytes(heads))
                        .bind(id_bytes)
                        .execute(&mut *tx)
                        .await?
                }
            };
        if updated.rows_affected() != 1 {
            return Err(Error::Storage(format!("document {id} is not stored")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sync bookkeeping of many documents in one transaction.
    pub async fn save_sync(&self, entries: &[SyncEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, state, server_heads, error) in entries {
            sqlx::query(
                "UPDATE documents SET sync_state = ?, server_heads = ?, error = ? WHERE id = ?",
            )
            .bind(state.as_slice())
            .bind(server_heads.as_deref().map(heads_to_bytes))
            .bind(error.as_deref())
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_doc(&self, id: &DocumentId) -> Result<()> {
        sqlx::query("DELETE FROM documents WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes everything but the key check, then rewrites the file and empties the WAL,
    /// so that no page of the old content stays behind.
    pub async fn wipe(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM documents")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM meta WHERE key <> 'key_check'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        sqlx::query("VACUUM").execute(&self.pool).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

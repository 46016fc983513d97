//! What a deletion must leave behind: nothing of the content in the database files or
//! rows, and no row of the document. Shared by the deletion and retention tests.
#![allow(dead_code, clippy::unwrap_used)]

use lotse_protocol::DocumentId;
use lotse_testkit::TestServer;

/// Whether `needle` appears in the database: the SQLite file with its WAL and shm, or
/// any PostgreSQL row of the tables that hold content or figures.
pub async fn found_in_database(s: &TestServer, needle: &str) -> bool {
    match s.db.url.strip_prefix("sqlite://") {
        Some(path) => ["", "-wal", "-shm"].iter().any(|suffix| {
            std::fs::read(format!("{path}{suffix}"))
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        }),
        None => {
            let pool = sqlx::PgPool::connect(&s.db.url).await.unwrap();
            let mut found = 0;
            for (table, column) in [("document_chunks", "data"), ("sync_states", "state")] {
                let sql = format!(
                    "SELECT COUNT(*) FROM {table} WHERE position($1::bytea in {column}) > 0"
                );
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(needle.as_bytes())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                found += n;
            }
            for table in [
                "requests",
                "case_index",
                "kept_cases",
                "kept_hours",
                "tombstones",
                "audit_events",
                "volunteers",
                "devices",
                "enrollment_codes",
            ] {
                // The whole row as text: every column at once.
                let sql = format!("SELECT COUNT(*) FROM {table} t WHERE strpos(t::text, $1) > 0");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(needle)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                found += n;
            }
            pool.close().await;
            found > 0
        }
    }
}

/// Rows of the document in the tables a deletion empties.
pub async fn rows_of(s: &TestServer, id: &DocumentId) -> i64 {
    let mut total = 0;
    for (table, column) in [
        ("documents", "id"),
        ("document_chunks", "document_id"),
        ("document_access", "document_id"),
        ("sync_states", "document_id"),
        ("case_index", "document_id"),
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        total += n;
    }
    total
}

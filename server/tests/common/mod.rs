//! What only the server's tests need beyond `lotse_testkit` (which starts the server over
//! a fresh database and makes the usual HTTP calls): a `/sync` peer speaking the protocol
//! step by step, a push service and the receiving side of Web Push, and waiting for
//! server instances that share one PostgreSQL database.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod erasure;
pub mod push_service;
pub mod sync_client;
pub mod webpush;

use lotse_server::store::Store;

/// Waits until `instances` server instances on `store`'s PostgreSQL database LISTEN for
/// each other's notifications (document changes and shares): a NOTIFY sent before an
/// instance listens is lost to it. Each instance listens on one connection, whose last
/// statement stays its LISTEN; `idle` means that statement has finished, so the LISTEN
/// has taken effect.
pub async fn wait_until_instances_listen(store: &Store, instances: i64) {
    use lotse_server::store::{ACCESS_CHANNEL, CHANGES_CHANNEL, SHARES_CHANNEL};
    let query = format!(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle' \
         AND query LIKE '%LISTEN%{CHANGES_CHANNEL}%' AND query LIKE '%LISTEN%{SHARES_CHANNEL}%' \
         AND query LIKE '%LISTEN%{ACCESS_CHANNEL}%'"
    );
    lotse_testkit::eventually(
        "the server instances to listen for each other",
        std::time::Duration::from_secs(20),
        || async {
            let listening: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.clone()))
                .fetch_one(store.pool())
                .await
                .unwrap();
            listening >= instances
        },
    )
    .await;
}

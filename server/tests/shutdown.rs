//! A stopping server ends its sync connections as a restart (close code 1012, which
//! phones treat like a dropped network) and lets them write what they hold (their sync
//! states) before it closes the database. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::sync_client::SyncClient;
use futures_util::StreamExt;
use lotse_server::store::Store;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use tokio_tungstenite::tungstenite::Message as Frame;

async fn a_stopping_server_closes_sync_sockets_after_they_wrote(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Neustart").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let case = s
        .create_case(&coordinator, "F.K.", "wohnen", &["ar"], &[&amira])
        .await;
    let (_, phone) = s.device(&coordinator, &amira, "Handy").await;
    let mut c = SyncClient::connect(s.addr, &phone, "amira").await;
    c.fetch(case).await;
    let states = |store: Store| async move {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_states")
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        n
    };
    assert_eq!(
        states(Store::connect(&s.db.url).await.unwrap()).await,
        0,
        "kept in memory while connected"
    );

    let db = s.stop_keeping_db().await;
    let code = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), c.ws.next())
            .await
            .expect("the socket hears of the stop within 10 s");
        match next {
            Some(Ok(Frame::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1012, "service restart");
    assert_eq!(
        states(Store::connect(&db.url).await.unwrap()).await,
        1,
        "the connection wrote its sync state before the database closed"
    );
}

on_both_backends!(a_stopping_server_closes_sync_sockets_after_they_wrote);

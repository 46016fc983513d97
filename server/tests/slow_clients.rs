//! Slow clients (slowloris): a connection that sends half a request line and then nothing
//! is closed after the header timeout, while ordinary requests and sync WebSockets, which
//! live longer than that, go on working. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use lotse_testkit::{Backend, Options, TestDb, TestServer, on_both_backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::sync_client::SyncClient;

/// Reads until the server closes the connection: what it sent before.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn a_client_that_stops_mid_request_line_is_disconnected(backend: Backend) {
    let timeout = Duration::from_secs(1);
    let options = Options {
        header_timeout: Some(timeout),
        ..Options::default()
    };
    let s = TestServer::start_with(TestDb::new(backend).await, options).await;
    let (_, coordinator) = s.new_org("Lotsen Langsam").await;
    let volunteer = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (_, token) = s.device(&coordinator, &volunteer, "Handy").await;
    // Opened before the slow client, so it has lived longer than the timeout when that
    // one is cut off.
    let mut phone = SyncClient::connect(s.addr, &token, "phone").await;

    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HT").await.unwrap();
    let sent = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), until_closed(&mut slow))
        .await
        .expect("the slow client is disconnected");
    let after = sent.elapsed();
    assert!(
        !answer.contains("200"),
        "no answer to half a request: {answer}"
    );
    assert!(
        after >= timeout - Duration::from_millis(200),
        "closed only after the timeout, not {after:?}"
    );

    // The WebSocket is still open and answers.
    phone.join().await;
    let (status, body) = s.get("/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

on_both_backends!(a_client_that_stops_mid_request_line_is_disconnected);

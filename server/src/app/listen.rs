//! The accept loop. `axum::serve` gives a client unlimited time to send its request line
//! and headers, so connections that trickle a byte now and then (slowloris) could hold
//! sockets and tasks for ever. hyper's HTTP/1 connection has a header read timeout once
//! it is given a timer; this loop serves each connection with it and otherwise does what
//! `axum::serve` did: WebSocket upgrades, the peer's address for the handlers
//! (`ConnectInfo`), and a graceful shutdown that stops accepting, lets open requests
//! finish and then returns.
//!
//! HTTP/1.1 only: the reverse proxy in front speaks it to us, and `/sync` upgrades over
//! it. (HTTP/2 without TLS, which `axum::serve` also accepted, has no such timeout.)

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the open
/// connections to finish their requests (upgraded WebSockets live on by themselves).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Each connection task watches `stopping`, and holds `alive` until it ends.
    let (stop, stopping) = watch::channel(());
    let (connections, alive) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let connection = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stopping = stopping.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                // Timeouts, resets and malformed requests: the client's business.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(alive);
    connections.closed().await;
    Ok(())
}

/// After a failed accept: errors of the one connection are forgotten; others (out of file
/// descriptors) would fail again at once, so the loop waits a moment first.
async fn pause_after(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

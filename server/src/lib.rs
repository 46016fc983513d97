//! lotse-server: the sync server, REST API and (later) dashboard of a Lotse network.

pub mod auth;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod http;
pub mod hub;
pub mod matching;
pub mod push;
pub mod ratelimit;
pub mod store;
pub mod sync;
pub mod timefmt;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use http::AppState;

/// Serves the app on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pusher = state
        .push
        .config()
        .push_worker
        .then(|| state.push.clone().spawn_worker());
    let follower = tokio::spawn(state.hub.clone().follow_other_instances());
    let hub = state.hub.clone();
    let evictor = tokio::spawn(async move {
        let idle = hub.doc_idle();
        // A few passes per idle period keep the overshoot small without busy ticking.
        let every = (idle / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        );
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let evicted = hub.evict_idle(idle);
            if evicted > 0 {
                // Operators size memory by this; ids stay out of the log.
                tracing::info!(target: "lotse_server::cache", evicted, resident = hub.resident(), "document cache trimmed");
            }
        }
    });
    let app = http::router(state);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    evictor.abort();
    follower.abort();
    if let Some(pusher) = pusher {
        pusher.abort();
    }
    served
}

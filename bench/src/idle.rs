//! Scenario 4: many idle connected devices on one server process (ours and the
//! reference): RSS and CPU while idle.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use lotse_protocol::{Message, PeerMetadata};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::procs::{Proc, ProcStatus};

/// The soft limit on open files of this process (children inherit it).
pub fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

pub struct Idle {
    pub baseline: ProcStatus,
    pub connected: ProcStatus,
    pub cpu_percent: f64,
    pub connect_secs: f64,
}

async fn one(addr: SocketAddr, token: Option<String>, i: usize) -> Result<crate::client::Socket> {
    let mut ws = match token {
        Some(t) => crate::client::open_socket(addr, &t).await?,
        None => {
            tokio_tungstenite::connect_async(format!("ws://{addr}/sync"))
                .await?
                .0
        }
    };
    ws.send(Frame::Binary(
        Message::Join {
            sender_id: format!("idle-{i}"),
            peer_metadata: PeerMetadata {
                storage_id: None,
                is_ephemeral: Some(true),
            },
            supported_protocol_versions: vec!["1".into()],
        }
        .encode()
        .into(),
    ))
    .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Frame::Binary(_)))) => return Ok(ws),
            Ok(Some(Ok(_))) => {}
            _ => bail!("connection {i}: no peer answer"),
        }
    }
}

/// Connects `count` peers (joined), then watches the server for `idle`.
pub async fn run(server: &Proc, token: Option<&str>, count: usize, idle: Duration) -> Result<Idle> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.status();
    let t = std::time::Instant::now();
    let sockets: Vec<Result<crate::client::Socket>> = stream::iter(0..count)
        .map(|i| one(server.addr, token.map(str::to_owned), i))
        .buffer_unordered(32)
        .collect()
        .await;
    let connect_secs = t.elapsed().as_secs_f64();
    let sockets: Vec<_> = sockets
        .into_iter()
        .collect::<Result<_>>()
        .context("connecting")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.status();
    tokio::time::sleep(idle).await;
    let connected = server.status();
    if sockets.len() != count {
        return Err(anyhow!("only {} of {count} connected", sockets.len()));
    }
    // USER_HZ is 100 on Linux.
    let cpu_percent = (connected.cpu_ticks - before.cpu_ticks) as f64 / idle.as_secs_f64();
    drop(sockets);
    Ok(Idle {
        baseline,
        connected,
        cpu_percent,
        connect_secs,
    })
}

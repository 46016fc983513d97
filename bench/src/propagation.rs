//! Scenario 5: M devices of one volunteer hold the same case, live on `/sync`; one device
//! adds a note, and we time until each other device's copy holds it, and until the
//! coordinator's dashboard SSE stream (`GET /dashboard/events`) says `change`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::ChangeHash;
use lotse_protocol::peer::memory::{MemoryDocs, Outcome, settle};
use lotse_protocol::peer::{ClientConfig, ClientEvent};
use lotse_protocol::{CaseDoc, ClientPeer, DocumentId, NewNote};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::api::Api;
use crate::client::open_socket;

pub struct Latencies {
    pub devices_ms: Vec<f64>,
    pub sse_ms: Vec<f64>,
}

enum Cmd {
    Edit(oneshot::Sender<(Vec<ChangeHash>, Instant)>),
}

/// (device, heads it now holds, when)
type Report = (usize, Vec<ChangeHash>, Instant);

async fn device(
    i: usize,
    addr: SocketAddr,
    token: String,
    id: DocumentId,
    mut cmds: mpsc::Receiver<Cmd>,
    reports: mpsc::UnboundedSender<Report>,
) -> Result<()> {
    let (mut sink, mut stream) = open_socket(addr, &token).await?.split();
    // A plain, ephemeral automerge-repo peer: it asks for the case and follows it.
    let mut cfg = ClientConfig::new(format!("prop-device-{i}"));
    cfg.ephemeral = true;
    cfg.catch_up = false;
    let mut peer = ClientPeer::new(cfg, Instant::now());
    let mut store = MemoryDocs::new();
    peer.fetch(id);
    loop {
        if settle(&mut peer, &mut store) != Outcome::Done {
            bail!("device {i}: the server ended the session");
        }
        while let Some(m) = peer.poll_transmit() {
            sink.send(Frame::Binary(m.encode().into())).await?;
        }
        while let Some(event) = peer.poll_event() {
            if let ClientEvent::Failed(e) = event {
                bail!("device {i}: {e}");
            }
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Frame::Binary(b))) => {
                    peer.handle_binary(&b, Instant::now());
                    if settle(&mut peer, &mut store) != Outcome::Done {
                        bail!("device {i}: the server ended the session");
                    }
                    if let Some(d) = store.docs.get(&id) {
                        let _ = reports.send((i, d.doc.get_heads(), Instant::now()));
                    }
                }
                Some(Ok(_)) => {}
                _ => return Ok(()),
            },
            cmd = cmds.recv() => {
                let Some(Cmd::Edit(done)) = cmd else { return Ok(()) };
                let doc = &mut store.docs.get_mut(&id).context("the case arrived")?.doc;
                CaseDoc::add_note(doc, &NewNote { author: "bench".into(), text: "live notiert".into() }, 1_772_633_400_000)
                    .map_err(|e| anyhow!("{e:?}"))?;
                let heads = doc.get_heads();
                let t0 = Instant::now();
                peer.local_change(vec![id]);
                let _ = done.send((heads, t0));
            }
        }
    }
}

/// Reads the SSE stream, sending the arrival time of every `change` event.
async fn sse(api: Api, tx: mpsc::UnboundedSender<Instant>) -> Result<()> {
    let mut r = api
        .http
        .get(format!("{}/dashboard/events", api.base))
        .header("cookie", format!("lotse_session={}", api.token))
        .send()
        .await?
        .error_for_status()?;
    let mut buf = String::new();
    while let Some(chunk) = r.chunk().await? {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if event.lines().any(|l| l.trim() == "event: change") {
                let _ = tx.send(now);
            }
        }
    }
    Ok(())
}

pub async fn run(api: &Api, addr: SocketAddr, m: usize, edits: usize) -> Result<Latencies> {
    let volunteer = api.volunteer("Lotsin Live").await?;
    let id = *api.cases(&volunteer, 1).await?.first().context("case")?;
    let (rep_tx, mut rep_rx) = mpsc::unbounded_channel();
    let mut cmds = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..m {
        let token = api.device(&volunteer, &format!("Live {i}")).await?;
        let (tx, rx) = mpsc::channel(4);
        cmds.push(tx);
        tasks.push(tokio::spawn(device(i, addr, token, id, rx, rep_tx.clone())));
    }
    let (sse_tx, mut sse_rx) = mpsc::unbounded_channel();
    tasks.push(tokio::spawn(sse(api.clone(), sse_tx)));
    // Every device holds the case (one report with non-empty heads each).
    let mut ready = vec![false; m];
    while ready.iter().any(|r| !r) {
        let (i, heads, _) = tokio::time::timeout(Duration::from_secs(30), rep_rx.recv())
            .await
            .context("devices did not get the case")?
            .context("device task ended")?;
        ready[i] |= !heads.is_empty();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Latencies {
        devices_ms: Vec::new(),
        sse_ms: Vec::new(),
    };
    for k in 0..edits {
        while rep_rx.try_recv().is_ok() {}
        while sse_rx.try_recv().is_ok() {}
        let writer = k % m;
        let (done_tx, done_rx) = oneshot::channel();
        cmds[writer]
            .send(Cmd::Edit(done_tx))
            .await
            .map_err(|_| anyhow!("device {writer} gone"))?;
        let (heads, t0) = done_rx.await?;
        let mut arrived = vec![false; m];
        arrived[writer] = true;
        while arrived.iter().any(|a| !a) {
            let (i, h, at) = tokio::time::timeout(Duration::from_secs(10), rep_rx.recv())
                .await
                .context("a change did not propagate within 10 s")?
                .context("device task ended")?;
            if !arrived[i] && heads.iter().all(|x| h.contains(x)) {
                arrived[i] = true;
                out.devices_ms
                    .push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
            }
        }
        if let Ok(Some(at)) = tokio::time::timeout(Duration::from_secs(5), sse_rx.recv()).await {
            out.sse_ms
                .push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(out)
}

//! Our phone's side of the sync protocol, as `lotse_protocol::ClientPeer` drives it over
//! documents in memory: this file only carries frames and counts them (frames and payload
//! bytes both ways, and the round trips: one per catch-up flight that waits for a verdict).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::Automerge;
use lotse_protocol::peer::memory::{MemoryDocs, Outcome, settle};
use lotse_protocol::peer::{ClientConfig, ClientEvent};
use lotse_protocol::{ClientPeer, DocumentId, Message};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub round_trips: u64,
}

/// A phone: its documents and persisted sync states survive reconnects.
pub struct Phone {
    pub peer_id: String,
    pub store: MemoryDocs,
}

const WAIT: Duration = Duration::from_secs(60);

pub async fn open_socket(addr: SocketAddr, token: &str) -> Result<Socket> {
    let mut req = format!("ws://{addr}/sync").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

impl Phone {
    pub fn new(peer_id: &str) -> Self {
        Self {
            peer_id: peer_id.to_owned(),
            store: MemoryDocs::new(),
        }
    }

    pub fn docs(&self) -> impl Iterator<Item = (&DocumentId, &Automerge)> {
        self.store.docs.iter().map(|(id, d)| (id, &d.doc))
    }

    pub fn doc_mut(&mut self, id: &DocumentId) -> Option<&mut Automerge> {
        self.store.docs.get_mut(id).map(|d| &mut d.doc)
    }

    /// Connects and catches up the way the phone does, until the server says in sync.
    /// Returns the traffic; the socket is closed afterwards.
    pub async fn sync(&mut self, addr: SocketAddr, token: &str) -> Result<Traffic> {
        let (mut sink, mut stream) = open_socket(addr, token).await?.split();
        // A large flight must not wait for its own replies to be read (both TCP buffers
        // would fill up), so a writer task sends while this one reads.
        let (out, mut queue) = mpsc::unbounded_channel::<Frame>();
        let writer = tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                sink.feed(frame).await?;
                if queue.is_empty() {
                    sink.flush().await?;
                }
            }
            sink.close().await?;
            Ok::<_, anyhow::Error>(())
        });
        self.store.reconnect();
        let mut cfg = ClientConfig::new(self.peer_id.clone());
        cfg.storage_id = Some(format!("{}-storage", self.peer_id));
        let mut peer = ClientPeer::new(cfg, Instant::now());
        let mut t = Traffic::default();
        loop {
            match settle(&mut peer, &mut self.store) {
                Outcome::Done => {}
                Outcome::Close | Outcome::Wiped => bail!("the server ended the session"),
            }
            while let Some(m) = peer.poll_transmit() {
                if matches!(m, Message::Catchup { .. }) {
                    t.round_trips += 1;
                }
                let bytes = m.encode();
                t.frames_sent += 1;
                t.bytes_sent += bytes.len() as u64;
                out.send(Frame::Binary(bytes.into()))
                    .map_err(|_| anyhow!("writer stopped"))?;
            }
            let mut caught_up = false;
            while let Some(event) = peer.poll_event() {
                match event {
                    ClientEvent::CaughtUp => caught_up = true,
                    ClientEvent::Failed(e) => bail!("sync failed: {e}"),
                    _ => {}
                }
            }
            if caught_up && peer.is_caught_up() {
                break;
            }
            let frame = tokio::time::timeout(WAIT, stream.next())
                .await
                .map_err(|_| anyhow!("server silent for {WAIT:?}"))?;
            match frame {
                Some(Ok(Frame::Binary(b))) => {
                    t.frames_received += 1;
                    t.bytes_received += b.len() as u64;
                    peer.handle_binary(&b, Instant::now());
                }
                Some(Ok(Frame::Close(_))) | None => bail!("server closed the socket"),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            }
        }
        drop(out);
        writer.await??;
        Ok(t)
    }

    pub fn non_empty(&self) -> usize {
        self.store
            .docs
            .values()
            .filter(|d| !d.doc.get_heads().is_empty())
            .count()
    }
}

/// What a peer that already knew which documents changed would exchange for them: per
/// document our message with the changes since the heads the server holds and the
/// server's answer, as frames of the same shape. The yardstick of scenario 2.
pub fn ideal_bytes(
    peer_id: &str,
    server_id: &str,
    docs: &BTreeMap<DocumentId, (Automerge, Automerge)>,
) -> u64 {
    let mut bytes = 0;
    for (id, (ours, servers)) in docs {
        let mut ours_sync = lotse_protocol::DocSync::new();
        ours_sync.assume_peer_has(&servers.get_heads());
        let mut theirs = servers.clone();
        let mut theirs_sync = lotse_protocol::DocSync::new();
        theirs_sync.assume_peer_has(&servers.get_heads());
        let mut ours = ours.clone();
        for from_us in [true, false, true, false] {
            let (gen_doc, gen_sync, recv_doc, recv_sync) = if from_us {
                (&mut ours, &mut ours_sync, &mut theirs, &mut theirs_sync)
            } else {
                (&mut theirs, &mut theirs_sync, &mut ours, &mut ours_sync)
            };
            let Some(data) = gen_sync.generate(gen_doc) else {
                continue;
            };
            let _ = recv_sync.receive(recv_doc, &data);
            let (sender_id, target_id) = if from_us {
                (peer_id, server_id)
            } else {
                (server_id, peer_id)
            };
            let m = Message::Sync {
                sender_id: sender_id.to_owned(),
                target_id: target_id.to_owned(),
                document_id: *id,
                data,
            };
            bytes += m.encode().len() as u64;
        }
    }
    bytes
}

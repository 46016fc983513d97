//! Our phone's side of the sync protocol (join + `lotse-catchup`, then pipelined automerge
//! sync for what differs), as in server/tests/catchup.rs, counting frames and payload
//! bytes both ways and the round trips a reconnect needs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use lotse_protocol::automerge::{Automerge, ChangeHash};
use lotse_protocol::{DocSync, DocumentId, Message, PeerMetadata};
use tokio::net::TcpStream;
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
    pub docs: BTreeMap<DocumentId, Automerge>,
    pub syncs: HashMap<DocumentId, Vec<u8>>,
    pub server_id: Option<String>,
}

pub struct Conn {
    sink: SplitSink<Socket, Frame>,
    stream: SplitStream<Socket>,
    server_id: String,
    pub t: Traffic,
    syncs: HashMap<DocumentId, DocSync>,
}

const WAIT: Duration = Duration::from_secs(60);

pub async fn open_socket(addr: SocketAddr, token: &str) -> Result<Socket> {
    let mut req = format!("ws://{addr}/sync").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

impl Conn {
    async fn send(&mut self, m: Message) -> Result<()> {
        let f = frame(&mut self.t, &m);
        self.sink.send(f).await?;
        Ok(())
    }

    pub async fn recv(&mut self) -> Result<Message> {
        recv(&mut self.stream, &mut self.t).await
    }
}

fn frame(t: &mut Traffic, m: &Message) -> Frame {
    let bytes = m.encode();
    t.frames_sent += 1;
    t.bytes_sent += bytes.len() as u64;
    Frame::Binary(bytes.into())
}

async fn recv(stream: &mut SplitStream<Socket>, t: &mut Traffic) -> Result<Message> {
    loop {
        let f = tokio::time::timeout(WAIT, stream.next())
            .await
            .map_err(|_| anyhow!("server silent for {WAIT:?}"))?;
        match f {
            Some(Ok(Frame::Binary(b))) => {
                t.frames_received += 1;
                t.bytes_received += b.len() as u64;
                return Message::decode(&b).map_err(|e| anyhow!("bad frame: {e:?}"));
            }
            Some(Ok(Frame::Close(_))) | None => bail!("server closed the socket"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the verdict of a catch-up barrier, applying the server's sync messages.
async fn until_verdict(
    docs: &mut BTreeMap<DocumentId, Automerge>,
    stream: &mut SplitStream<Socket>,
    syncs: &mut HashMap<DocumentId, DocSync>,
    t: &mut Traffic,
) -> Result<Message> {
    loop {
        match recv(stream, t).await? {
            Message::Sync {
                document_id, data, ..
            } => {
                let doc = docs.entry(document_id).or_default();
                syncs
                    .entry(document_id)
                    .or_default()
                    .receive(doc, &data)
                    .map_err(|e| anyhow!("sync: {e:?}"))?;
            }
            m @ (Message::InSync { .. } | Message::Manifest { .. }) => return Ok(m),
            Message::DocUnavailable { document_id, .. } => {
                docs.remove(&document_id);
            }
            Message::Error { message, .. } => bail!("server error: {message}"),
            _ => {}
        }
    }
}

fn catchup(phone: &Phone, server_id: &str) -> Message {
    let held: BTreeMap<DocumentId, Vec<ChangeHash>> = phone
        .docs
        .iter()
        .map(|(id, d)| (*id, d.get_heads()))
        .collect();
    Message::Catchup {
        sender_id: phone.peer_id.clone(),
        target_id: server_id.to_owned(),
        digest: lotse_protocol::digest(held.iter().map(|(id, h)| (id, h.as_slice()))),
        count: held.len() as u64,
    }
}

impl Phone {
    pub fn new(peer_id: &str, ids: &[DocumentId]) -> Self {
        Self {
            peer_id: peer_id.to_owned(),
            docs: ids.iter().map(|id| (*id, Automerge::new())).collect(),
            syncs: HashMap::new(),
            server_id: None,
        }
    }

    /// Connects and reconnects the way the phone does: `join` and `lotse-catchup` in one
    /// flight; on a manifest, sync what differs (pipelined, each flight closed by a
    /// catch-up barrier) until the server says in sync. Returns the traffic; the socket
    /// is closed afterwards.
    pub async fn sync(&mut self, addr: SocketAddr, token: &str) -> Result<Traffic> {
        let (sink, stream) = open_socket(addr, token).await?.split();
        let mut c = Conn {
            sink,
            stream,
            server_id: String::new(),
            t: Traffic::default(),
            syncs: self
                .syncs
                .iter()
                .map(|(id, s)| Ok((*id, DocSync::from_persisted(s)?)))
                .collect::<Result<_, lotse_protocol::SessionError>>()
                .map_err(|e| anyhow!("sync state: {e:?}"))?,
        };
        c.send(Message::Join {
            sender_id: self.peer_id.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(format!("{}-storage", self.peer_id)),
                is_ephemeral: Some(false),
            },
            supported_protocol_versions: vec!["1".into()],
        })
        .await?;
        // Known server (a reconnect): catch-up rides with join, one flight. First
        // contact: wait for `peer` to learn the server's id.
        let known = self.server_id.clone();
        if let Some(server) = &known {
            c.send(catchup(self, server)).await?;
        }
        c.t.round_trips = 1;
        match c.recv().await? {
            Message::Peer { sender_id, .. } => c.server_id = sender_id,
            other => bail!("expected peer, got {other:?}"),
        }
        if known.is_none() {
            c.send(catchup(self, &c.server_id)).await?;
            c.t.round_trips += 1;
            self.server_id = Some(c.server_id.clone());
        }
        let mut verdict =
            until_verdict(&mut self.docs, &mut c.stream, &mut c.syncs, &mut c.t).await?;
        loop {
            let entries = match verdict {
                Message::InSync { .. } => break,
                Message::Manifest { entries, .. } => entries,
                other => bail!("unexpected verdict {other:?}"),
            };
            if c.t.round_trips > 20 {
                bail!("catch-up does not converge");
            }
            let held: BTreeMap<DocumentId, Vec<ChangeHash>> = self
                .docs
                .iter()
                .map(|(id, d)| (*id, d.get_heads()))
                .collect();
            let plan = lotse_protocol::plan(&held, &entries);
            let mut ids: Vec<DocumentId> = plan.differ.clone();
            ids.extend(plan.missing_locally.iter().copied());
            ids.extend(plan.only_local.iter().copied());
            let mut frames = Vec::new();
            for id in ids {
                let doc = self.docs.entry(id).or_default();
                let s = c.syncs.entry(id).or_default();
                if let Some(data) = s.generate(doc) {
                    let (sender_id, target_id) = (self.peer_id.clone(), c.server_id.clone());
                    let m = if doc.get_heads().is_empty() {
                        Message::Request {
                            sender_id,
                            target_id,
                            document_id: id,
                            data,
                        }
                    } else {
                        Message::Sync {
                            sender_id,
                            target_id,
                            document_id: id,
                            data,
                        }
                    };
                    frames.push(frame(&mut c.t, &m));
                }
            }
            frames.push(frame(&mut c.t, &catchup(self, &c.server_id)));
            c.t.round_trips += 1;
            // Send the flight while reading the answers: a large flight must not wait for
            // its own replies to be read (both TCP buffers would fill up).
            let Conn {
                sink,
                stream,
                syncs,
                t,
                ..
            } = &mut c;
            let send = async {
                for f in frames {
                    sink.feed(f).await?;
                }
                sink.flush().await?;
                Ok::<_, anyhow::Error>(())
            };
            let (sent, read) = tokio::join!(send, until_verdict(&mut self.docs, stream, syncs, t));
            sent?;
            verdict = read?;
        }
        for (id, s) in &c.syncs {
            self.syncs.insert(*id, s.persist());
        }
        let _ = c.sink.close().await;
        Ok(c.t)
    }

    pub fn non_empty(&self) -> usize {
        self.docs
            .values()
            .filter(|d| !d.get_heads().is_empty())
            .count()
    }
}

//! The peer state machines in a network that misbehaves (DESIGN.md decision 11).
//!
//! Two clients ([`ClientPeer`] over [`MemoryDocs`]) and the server (one [`ServerPeer`] per
//! connection over an in-memory store with an access oracle) exchange encoded frames
//! through queues that drop, delay and reorder them. Meanwhile clients edit offline and
//! create documents, the server (a coordinator) edits, documents are shared and unshared,
//! clients reconnect, restart with or without their persisted sync states, and catch up.
//!
//! Two properties:
//! - Nobody sees what they may not: at the moment the server peer sends a document's sync
//!   message, an ephemeral message for it, or a manifest entry, the oracle allows that
//!   client the document.
//! - Everything converges: after the chaos, a reliable network and a reconnect leave every
//!   client holding exactly the documents the oracle allows it, each with the server's
//!   heads, and nothing a client typed into a document it may still see is lost.
//!
//! `LOTSE_PEER_CASES` sets the number of cases (default 1,000; CI fixes the seed through
//! `PROPTEST_RNG_SEED`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use lotse_protocol::automerge::transaction::Transactable;
use lotse_protocol::automerge::{ActorId, Automerge, ROOT};
use lotse_protocol::peer::memory::{MemoryDocs, Outcome};
use lotse_protocol::peer::{
    Access, ClientConfig, ClientPeer, Ephemeral, ExchangeError, ServerConfig, ServerEffect,
    ServerPeer,
};
use lotse_protocol::{DocumentId, Message};
use proptest::prelude::*;

const CLIENTS: usize = 2;
/// 30 days, the server's default device lease.
const LEASE_MS: u64 = 30 * 24 * 3_600_000;

#[derive(Debug, Clone)]
enum Op {
    /// Deliver the next frame of one direction of one connection. Frames of different
    /// connections and directions overtake each other; within one they keep their order,
    /// as on a WebSocket.
    Deliver {
        client: usize,
        up: bool,
    },
    /// Deliver every queued frame of one connection in order.
    Flush {
        client: usize,
    },
    /// The connection breaks with frames in flight: they are lost, both ends start over.
    Drop {
        client: usize,
        up: bool,
    },
    /// A client edits a document it holds, or creates one.
    Edit {
        client: usize,
        slot: u8,
        create: bool,
        value: u16,
    },
    /// A coordinator edits a document through the server.
    ServerEdit {
        slot: u8,
        value: u16,
    },
    Share {
        slot: u8,
        client: usize,
    },
    Unshare {
        slot: u8,
        client: usize,
    },
    Disconnect {
        client: usize,
        keep_state: bool,
    },
    Connect {
        client: usize,
    },
    CatchUp {
        client: usize,
    },
    /// A client asks for a document by id: one that exists (maybe not its own) or the one
    /// that will be created next (not there yet).
    Fetch {
        client: usize,
        slot: u8,
        future: bool,
    },
    /// Time passes: periodic catch-ups fall due.
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        8 => (client.clone(), any::<bool>()).prop_map(|(client, up)| Op::Deliver { client, up }),
        2 => client.clone().prop_map(|client| Op::Flush { client }),
        1 => (client.clone(), any::<bool>()).prop_map(|(client, up)| Op::Drop { client, up }),
        3 => (client.clone(), any::<u8>(), prop::bool::weighted(0.2), any::<u16>())
            .prop_map(|(client, slot, create, value)| Op::Edit { client, slot, create, value }),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(slot, value)| Op::ServerEdit { slot, value }),
        1 => (any::<u8>(), client.clone()).prop_map(|(slot, client)| Op::Share { slot, client }),
        1 => (any::<u8>(), client.clone()).prop_map(|(slot, client)| Op::Unshare { slot, client }),
        1 => (client.clone(), any::<bool>()).prop_map(|(client, keep_state)| Op::Disconnect { client, keep_state }),
        1 => client.clone().prop_map(|client| Op::Connect { client }),
        1 => client.clone().prop_map(|client| Op::CatchUp { client }),
        1 => (client.clone(), any::<u8>(), any::<bool>()).prop_map(|(client, slot, future)| Op::Fetch { client, slot, future }),
        1 => Just(Op::Tick),
    ]
}

/// The server's storage and its access rules.
#[derive(Default)]
struct Store {
    docs: BTreeMap<DocumentId, Automerge>,
    owner: BTreeMap<DocumentId, usize>,
    shared: BTreeSet<(DocumentId, usize)>,
    persisted: BTreeMap<(String, DocumentId), Vec<u8>>,
}

impl Store {
    fn access(&self, client: usize, id: &DocumentId) -> Access {
        if !self.docs.contains_key(id) {
            Access::Unknown
        } else if self.owner.get(id) == Some(&client) || self.shared.contains(&(*id, client)) {
            Access::Allowed
        } else {
            Access::Denied
        }
    }
}

struct Conn {
    server: ServerPeer,
    client: ClientPeer,
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
}

struct Client {
    docs: MemoryDocs,
    conn: Option<Conn>,
    connections: u32,
}

struct World {
    store: Store,
    clients: Vec<Client>,
    now: Instant,
    /// The server tells connections when access changes (turned off to plant a leak).
    tells_access_changes: bool,
    leaks: Vec<String>,
    /// Every message a client sent and received: (client, up, type).
    log: Vec<(usize, bool, &'static str)>,
    next_doc: u8,
    coordinator: ActorId,
}

fn storage(client: usize) -> String {
    format!("storage-{client}")
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            store: Store::default(),
            clients: (0..CLIENTS)
                .map(|_| Client {
                    docs: MemoryDocs::new(),
                    conn: None,
                    connections: 0,
                })
                .collect(),
            now,
            tells_access_changes: true,
            leaks: Vec::new(),
            log: Vec::new(),
            next_doc: 1,
            coordinator: ActorId::from(b"coordinator".as_slice()),
        }
    }

    fn connect(&mut self, c: usize) {
        if self.clients[c].conn.is_some() {
            return;
        }
        let client = &mut self.clients[c];
        client.connections += 1;
        client.docs.reconnect();
        let mut cfg = ClientConfig::new(format!("client-{c}-{}", client.connections));
        cfg.storage_id = Some(storage(c));
        cfg.recheck_every = Some(Duration::from_secs(60));
        let server = ServerPeer::new(
            ServerConfig {
                server_id: "server".into(),
                storage_id: "server-storage".into(),
                principal: format!("device-{c}"),
                is_device: true,
                lease_ms: Some(LEASE_MS),
            },
            self.now,
        );
        client.conn = Some(Conn {
            server,
            client: ClientPeer::new(cfg, self.now),
            up: VecDeque::new(),
            down: VecDeque::new(),
        });
        self.settle();
    }

    fn disconnect(&mut self, c: usize, keep_state: bool) {
        let Some(conn) = self.clients[c].conn.take() else {
            return;
        };
        if let Some((key, states)) = conn.server.sync_states() {
            for (id, bytes) in states {
                self.store.persisted.insert((key.to_owned(), id), bytes);
            }
        }
        if !keep_state {
            self.clients[c].docs.forget_sync_states();
            let prefix = format!("device-{c}");
            self.store
                .persisted
                .retain(|(key, _), _| !key.starts_with(&prefix));
        }
    }

    /// Carries out everything every machine wants done, until nothing moves.
    fn settle(&mut self) {
        for _ in 0..2_000 {
            if !self.settle_once() {
                return;
            }
        }
        panic!("the machines never settle");
    }

    fn settle_once(&mut self) -> bool {
        let mut moved = false;
        let mut changed: Vec<(usize, DocumentId)> = Vec::new();
        let mut relays: Vec<(usize, Ephemeral)> = Vec::new();
        for c in 0..CLIENTS {
            // The server's side.
            while let Some(conn) = self.clients[c].conn.as_mut() {
                let Some(effect) = conn.server.poll_effect() else {
                    break;
                };
                moved = true;
                match effect {
                    ServerEffect::CheckAccess(id) => {
                        let access = self.store.access(c, &id);
                        conn.server.handle_access(id, Ok(access));
                    }
                    ServerEffect::LoadSyncState { id, peer_key } => {
                        let state = self.store.persisted.get(&(peer_key, id)).cloned();
                        conn.server.handle_sync_state(id, state);
                    }
                    ServerEffect::Exchange(mut task) => {
                        let id = task.id;
                        let existed = self.store.docs.contains_key(&id);
                        if task.create_only && existed {
                            conn.server
                                .handle_exchange(task, Err(ExchangeError::NotYours));
                            continue;
                        }
                        let mut doc = self.store.docs.get(&id).cloned().unwrap_or_default();
                        match task.apply(&mut doc) {
                            Err(e) => conn
                                .server
                                .handle_exchange(task, Err(ExchangeError::Invalid(e.to_string()))),
                            Ok(did_change) => {
                                let created = !existed && !doc.get_heads().is_empty();
                                // Kept even when the heads did not move: a change whose
                                // dependency is still on its way waits inside the document
                                // (the hub keeps it in memory the same way).
                                if existed || !doc.get_heads().is_empty() {
                                    self.store.docs.insert(id, doc.clone());
                                }
                                if created {
                                    self.store.owner.insert(id, c);
                                }
                                if did_change {
                                    changed.push((c, id));
                                }
                                let mut done = task.finish(&doc);
                                done.created = created;
                                conn.server.handle_exchange(task, Ok(done));
                            }
                        }
                    }
                    ServerEffect::ListDocuments => {
                        let docs = self
                            .store
                            .docs
                            .iter()
                            .filter(|(id, _)| self.store.access(c, id) == Access::Allowed)
                            .map(|(id, d)| (*id, d.get_heads()))
                            .collect();
                        conn.server.handle_documents(Ok(docs));
                    }
                    ServerEffect::CheckDeviceActive => conn.server.handle_device_active(Ok(true)),
                    ServerEffect::Relay(message) => relays.push((c, message)),
                    ServerEffect::Ping => {}
                    ServerEffect::Close { .. } => {
                        self.disconnect(c, true);
                    }
                }
            }
            if let Some(conn) = self.clients[c].conn.as_mut() {
                while let Some(m) = conn.server.poll_transmit() {
                    moved = true;
                    if let Some(leak) = leak(&self.store, c, &m) {
                        self.leaks.push(leak);
                    }
                    self.log.push((c, false, m.type_name()));
                    conn.down.push_back(m.encode());
                }
            }
            // The client's side.
            let client = &mut self.clients[c];
            if let Some(conn) = client.conn.as_mut() {
                let mut close = false;
                while let Some(effect) = conn.client.poll_effect() {
                    moved = true;
                    match client.docs.carry_out(&mut conn.client, effect) {
                        Outcome::Done => {}
                        Outcome::Close | Outcome::Wiped => close = true,
                    }
                }
                while let Some(m) = conn.client.poll_transmit() {
                    moved = true;
                    self.log.push((c, true, m.type_name()));
                    conn.up.push_back(m.encode());
                }
                while conn.client.poll_event().is_some() {}
                while conn.server.poll_event().is_some() {}
                if close {
                    self.disconnect(c, true);
                }
            }
        }
        for (origin, id) in changed {
            for c in 0..CLIENTS {
                if c != origin
                    && let Some(conn) = self.clients[c].conn.as_mut()
                {
                    conn.server.handle_doc_changed(id);
                    moved = true;
                }
            }
        }
        for (origin, message) in relays {
            for c in 0..CLIENTS {
                if c != origin
                    && let Some(conn) = self.clients[c].conn.as_mut()
                {
                    conn.server.handle_relay(&message);
                    moved = true;
                }
            }
        }
        moved
    }

    fn deliver(&mut self, c: usize, up: bool) {
        let now = self.now;
        let Some(conn) = self.clients[c].conn.as_mut() else {
            return;
        };
        let queue = if up { &mut conn.up } else { &mut conn.down };
        let Some(frame) = queue.pop_front() else {
            return;
        };
        if up {
            conn.server.handle_binary(&frame, now);
        } else {
            conn.client.handle_binary(&frame, now);
        }
        self.settle();
    }

    fn flush(&mut self, c: usize) {
        for _ in 0..3_000 {
            let Some(conn) = self.clients[c].conn.as_ref() else {
                return;
            };
            if conn.up.is_empty() && conn.down.is_empty() {
                return;
            }
            let up = !conn.up.is_empty();
            self.deliver(c, up);
        }
        panic!("connection {c} never quiets down");
    }

    fn doc_at(&self, slot: u8) -> Option<DocumentId> {
        let ids: Vec<&DocumentId> = self.store.docs.keys().collect();
        (!ids.is_empty()).then(|| *ids[slot as usize % ids.len()])
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Deliver { client, up } => self.deliver(client, up),
            Op::Flush { client } => self.flush(client),
            Op::Drop { client, up } => {
                let Some(conn) = self.clients[client].conn.as_mut() else {
                    return;
                };
                let queue = if up { &mut conn.up } else { &mut conn.down };
                if queue.pop_front().is_some() {
                    self.disconnect(client, true);
                }
            }
            Op::Edit {
                client,
                slot,
                create,
                value,
            } => {
                let held: Vec<DocumentId> =
                    self.clients[client].docs.docs.keys().copied().collect();
                let id = if create || held.is_empty() {
                    let id = DocumentId::from_bytes([self.next_doc; 16]);
                    self.next_doc = self.next_doc.wrapping_add(1);
                    let mut doc = Automerge::new();
                    doc.set_actor(ActorId::from(vec![client as u8 + 1, self.next_doc]));
                    self.clients[client].docs.docs.insert(
                        id,
                        lotse_protocol::peer::memory::MemDoc {
                            doc,
                            ..Default::default()
                        },
                    );
                    id
                } else {
                    held[slot as usize % held.len()]
                };
                let d = self.clients[client].docs.docs.get_mut(&id).unwrap();
                let mut tx = d.doc.transaction();
                tx.put(ROOT, format!("c{client}-{value}"), i64::from(value))
                    .unwrap();
                tx.commit();
                if let Some(conn) = self.clients[client].conn.as_mut() {
                    conn.client.local_change(vec![id]);
                }
                self.settle();
            }
            Op::ServerEdit { slot, value } => {
                let Some(id) = self.doc_at(slot) else { return };
                let doc = self.store.docs.get_mut(&id).unwrap();
                doc.set_actor(self.coordinator.clone());
                let mut tx = doc.transaction();
                tx.put(ROOT, format!("server-{value}"), i64::from(value))
                    .unwrap();
                tx.commit();
                for c in 0..CLIENTS {
                    if let Some(conn) = self.clients[c].conn.as_mut() {
                        conn.server.handle_doc_changed(id);
                    }
                }
                self.settle();
            }
            Op::Share { slot, client } => {
                let Some(id) = self.doc_at(slot) else { return };
                if self.store.shared.insert((id, client))
                    && let Some(conn) = self.clients[client].conn.as_mut()
                {
                    conn.server.handle_shared();
                }
                self.settle();
            }
            Op::Unshare { slot, client } => {
                let Some(id) = self.doc_at(slot) else { return };
                if self.store.shared.remove(&(id, client))
                    && self.tells_access_changes
                    && let Some(conn) = self.clients[client].conn.as_mut()
                {
                    conn.server.handle_access_changed(Some(id));
                }
            }
            Op::Disconnect { client, keep_state } => self.disconnect(client, keep_state),
            Op::Connect { client } => self.connect(client),
            Op::CatchUp { client } => {
                if let Some(conn) = self.clients[client].conn.as_mut() {
                    conn.client.catch_up();
                }
                self.settle();
            }
            Op::Fetch {
                client,
                slot,
                future,
            } => {
                let id = if future {
                    DocumentId::from_bytes([self.next_doc; 16])
                } else {
                    match self.doc_at(slot) {
                        Some(id) => id,
                        None => return,
                    }
                };
                if self.clients[client].docs.docs.contains_key(&id) {
                    return;
                }
                if let Some(conn) = self.clients[client].conn.as_mut() {
                    conn.client.fetch(id);
                }
                self.settle();
            }
            Op::Tick => {
                self.now += Duration::from_secs(61);
                let now = self.now;
                for c in 0..CLIENTS {
                    if let Some(conn) = self.clients[c].conn.as_mut() {
                        conn.client.handle_timeout(now);
                        conn.client.handle_heard(now);
                        conn.server.handle_heard(now);
                    }
                }
                self.settle();
            }
        }
    }

    /// A reliable network and a fresh connection for everyone, until all is quiet.
    fn heal(&mut self) {
        for c in 0..CLIENTS {
            self.disconnect(c, true);
        }
        for _ in 0..4 {
            for c in 0..CLIENTS {
                self.connect(c);
            }
            for _ in 0..20 {
                for c in 0..CLIENTS {
                    self.flush(c);
                }
            }
            if check(self).is_ok() {
                return;
            }
            for c in 0..CLIENTS {
                if let Some(conn) = self.clients[c].conn.as_mut() {
                    conn.client.catch_up();
                }
            }
            self.settle();
        }
    }
}

/// What the server may not send to `client` right now.
fn leak(store: &Store, client: usize, m: &Message) -> Option<String> {
    // A document the server does not have reveals nothing; one that exists and is not
    // the client's must not show up at all.
    let denied = |id: &DocumentId| store.access(client, id) == Access::Denied;
    match m {
        Message::Sync { document_id, .. } | Message::Ephemeral { document_id, .. }
            if denied(document_id) =>
        {
            Some(format!(
                "{} of {document_id} to client {client}",
                m.type_name()
            ))
        }
        Message::Manifest { entries, .. } => entries
            .iter()
            .find(|(id, _)| denied(id))
            .map(|(id, _)| format!("manifest entry {id} to client {client}")),
        _ => None,
    }
}

/// Every client holds exactly what it may see, each with the server's heads.
fn check(world: &World) -> Result<(), String> {
    for (c, client) in world.clients.iter().enumerate() {
        for (id, doc) in &world.store.docs {
            let allowed = world.store.access(c, id) == Access::Allowed;
            match client.docs.docs.get(id) {
                Some(held) if !allowed => {
                    return Err(format!(
                        "client {c} still holds {id}, which it may not see ({} heads)",
                        held.doc.get_heads().len()
                    ));
                }
                None if allowed => return Err(format!("client {c} lacks {id}")),
                Some(held) => {
                    let mut ours = held.doc.get_heads();
                    let mut theirs = doc.get_heads();
                    ours.sort_unstable();
                    theirs.sort_unstable();
                    if ours != theirs {
                        return Err(format!("client {c} and the server differ on {id}"));
                    }
                }
                None => {}
            }
        }
        for id in client.docs.docs.keys() {
            if !world.store.docs.contains_key(id) {
                return Err(format!(
                    "client {c} holds {id}, which never reached the server"
                ));
            }
        }
    }
    Ok(())
}

fn run(ops: &[Op]) -> World {
    let mut world = World::new();
    world.connect(0);
    world.connect(1);
    for op in ops {
        world.apply(op);
    }
    world.heal();
    world
}

fn cases() -> u32 {
    std::env::var("LOTSE_PEER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn peers_converge_and_nobody_sees_what_they_may_not(ops in proptest::collection::vec(op(), 1..120)) {
        let world = run(&ops);
        prop_assert!(world.leaks.is_empty(), "leaks: {:?}", world.leaks);
        if let Err(e) = check(&world) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// The scenario the planted faults below use: client 0 creates a document, shares it with
/// client 1, client 1 syncs it, it is unshared, and the coordinator edits it.
fn share_then_unshare() -> Vec<Op> {
    vec![
        Op::Edit {
            client: 0,
            slot: 0,
            create: true,
            value: 1,
        },
        Op::Flush { client: 0 },
        Op::Share { slot: 0, client: 1 },
        Op::Flush { client: 1 },
        Op::Flush { client: 1 },
        Op::Unshare { slot: 0, client: 1 },
        Op::ServerEdit { slot: 0, value: 2 },
        Op::Flush { client: 1 },
    ]
}

#[test]
fn the_scenario_ends_converged_without_leaks() {
    let world = run(&share_then_unshare());
    assert!(world.leaks.is_empty(), "{:?}", world.leaks);
    check(&world).unwrap();
    let id = *world.store.docs.keys().next().unwrap();
    assert!(world.clients[0].docs.docs.contains_key(&id));
    assert!(
        !world.clients[1].docs.docs.contains_key(&id),
        "the unshared document was deleted"
    );
}

/// Issue 12's goal for the catch-up: when only the phone changed, its changes ride with
/// the digest and the verdict is `lotse-in-sync`: one catch-up, no manifest.
#[test]
fn offline_edits_of_the_client_alone_cost_one_round_trip() {
    let mut world = run(&[
        Op::Edit {
            client: 0,
            slot: 0,
            create: true,
            value: 1,
        },
        Op::Edit {
            client: 0,
            slot: 0,
            create: true,
            value: 2,
        },
        Op::Edit {
            client: 0,
            slot: 0,
            create: true,
            value: 3,
        },
    ]);
    check(&world).unwrap();
    world.disconnect(0, true);
    for value in 10..13 {
        world.apply(&Op::Edit {
            client: 0,
            slot: value,
            create: false,
            value: u16::from(value),
        });
    }
    world.log.clear();
    world.connect(0);
    world.flush(0);
    check(&world).unwrap();
    let of_client_0 = |up: bool, ty: &str| {
        world
            .log
            .iter()
            .filter(|(c, u, t)| *c == 0 && *u == up && *t == ty)
            .count()
    };
    assert_eq!(of_client_0(true, "lotse-catchup"), 1, "{:?}", world.log);
    assert_eq!(of_client_0(false, "lotse-in-sync"), 1, "{:?}", world.log);
    assert_eq!(of_client_0(false, "lotse-manifest"), 0, "{:?}", world.log);
    assert!(
        of_client_0(true, "sync") >= 1,
        "the edits went out: {:?}",
        world.log
    );
    // The verdict renews the device's lease.
    assert_eq!(of_client_0(false, "lotse-lease"), 1, "{:?}", world.log);
    assert_eq!(world.clients[0].docs.lease_ms, Some(LEASE_MS));
}

#[test]
fn a_planted_divergence_is_caught() {
    let mut world = run(&share_then_unshare());
    check(&world).unwrap();
    // A change the network never carries.
    let d = world.clients[0].docs.docs.values_mut().next().unwrap();
    let mut tx = d.doc.transaction();
    tx.put(ROOT, "never-synced", 1).unwrap();
    tx.commit();
    assert!(check(&world).unwrap_err().contains("differ"));
}

#[test]
fn a_planted_leak_is_caught() {
    let mut world = World::new();
    world.tells_access_changes = false;
    world.connect(0);
    world.connect(1);
    for op in share_then_unshare() {
        world.apply(&op);
    }
    assert!(
        world.leaks.iter().any(|l| l.starts_with("sync of")),
        "a server that keeps access cached sends the unshared document: {:?}",
        world.leaks
    );
}

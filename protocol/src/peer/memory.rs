//! A client's documents held in memory, carrying out what a [`ClientPeer`] asks: the store
//! of the bench, of the test clients and of the property test. The phone has its own,
//! encrypted and persisted; this one shows in a few lines what a driver owes the machine.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash};

use super::client::{Applied, ClientEffect, ClientPeer, Holding, Holdings, Offered};
use crate::docid::DocumentId;
use crate::schema::generation::{self, EntryRef, KnownChanges};
use crate::session::DocSync;

/// One document and our sync state with the server.
#[derive(Debug, Clone, Default)]
pub struct MemDoc {
    pub doc: Automerge,
    pub sync: DocSync,
    pub server_heads: Option<Vec<ChangeHash>>,
}

/// What carrying out an effect came to, for drivers that react to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing for the driver to do.
    Done,
    /// The machine is done with the connection: close it.
    Close,
    /// The device was revoked; every document is gone.
    Wiped,
}

/// Documents in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryDocs {
    pub docs: BTreeMap<DocumentId, MemDoc>,
    /// Documents asked for with `request` that have no content yet.
    pending: BTreeMap<DocumentId, MemDoc>,
    /// Documents the server refused (we created them; it never had them).
    pub refused: BTreeSet<DocumentId>,
    /// The last lease the server announced (ms).
    pub lease_ms: Option<u64>,
    /// Old generations of rewritten cases, by the successor they wait for.
    superseded: BTreeMap<DocumentId, Vec<(Automerge, KnownChanges)>>,
    /// Entries whose offline edits a replay dropped (erased, or removed by others).
    pub dropped: Vec<EntryRef>,
    /// Old generations that did not replay (not readable as a case).
    pub replay_failures: usize,
}

impl MemoryDocs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn holdings(&self) -> Holdings {
        let holding = |d: &MemDoc| Holding::new(d.doc.get_heads(), d.server_heads.as_ref());
        self.docs.iter().map(|(id, d)| (*id, holding(d))).collect()
    }

    /// A new connection: every sync state goes back to what would have been persisted
    /// (in-flight flags and what the server said in the last session are stale).
    pub fn reconnect(&mut self) {
        for d in self.docs.values_mut() {
            d.sync = DocSync::from_persisted(&d.sync.persist()).unwrap_or_default();
        }
        self.pending.clear();
    }

    /// Forgets every sync state, as a restart without persisted states would.
    pub fn forget_sync_states(&mut self) {
        for d in self.docs.values_mut() {
            d.sync = DocSync::new();
        }
        self.pending.clear();
    }

    /// Carries out one effect, answering the machine where it waits for an answer.
    pub fn carry_out(&mut self, peer: &mut ClientPeer, effect: ClientEffect) -> Outcome {
        match effect {
            ClientEffect::Holdings => peer.handle_holdings(self.holdings()),
            ClientEffect::Offer(docs) => {
                let offers = docs
                    .into_iter()
                    .map(|(id, hint)| (id, self.offer(id, hint.as_deref())))
                    .collect();
                peer.handle_offers(offers);
            }
            ClientEffect::Apply { id, data } => {
                let applied = self.apply(id, &data);
                peer.handle_applied(id, applied);
                self.replay_onto(peer, id);
            }
            ClientEffect::ServerHas(docs) => {
                for (id, heads) in docs {
                    if let Some(d) = self.docs.get_mut(&id) {
                        d.server_heads = Some(heads);
                    }
                }
            }
            ClientEffect::Forget(id) | ClientEffect::Deleted(id) => {
                self.docs.remove(&id);
            }
            ClientEffect::Superseded {
                id,
                successor,
                known,
            } => {
                if let Some(old) = self.docs.remove(&id) {
                    let waiting = self.superseded.entry(successor).or_default();
                    waiting.push((old.doc, known));
                }
                self.replay_onto(peer, successor);
            }
            ClientEffect::Refused { id, .. } => {
                self.refused.insert(id);
            }
            ClientEffect::Wipe => {
                self.docs.clear();
                self.pending.clear();
                self.superseded.clear();
                return Outcome::Wiped;
            }
            ClientEffect::RenewLease(ms) => self.lease_ms = Some(ms),
            ClientEffect::Close => return Outcome::Close,
        }
        Outcome::Done
    }

    /// Once `successor` has content, the old generations waiting for it replay onto it
    /// what the server did not have, and the machine hears of the change.
    fn replay_onto(&mut self, peer: &mut ClientPeer, successor: DocumentId) {
        let Some(d) = self
            .docs
            .get_mut(&successor)
            .filter(|d| !d.doc.get_heads().is_empty())
        else {
            return;
        };
        let Some(waiting) = self.superseded.remove(&successor) else {
            return;
        };
        let mut changed = false;
        for (old, known) in waiting {
            // Memory keeps no clock; automerge reads time 0 as "not given".
            match generation::replay(&old, &known, &mut d.doc, 0) {
                Ok(replayed) => {
                    changed |= replayed.edits > 0;
                    self.dropped.extend(replayed.dropped);
                }
                Err(_) => self.replay_failures += 1,
            }
        }
        if changed {
            peer.local_change(vec![successor]);
        }
    }

    fn offer(&mut self, id: DocumentId, hint: Option<&[ChangeHash]>) -> Offered {
        let d = match self.docs.get_mut(&id) {
            Some(d) => d,
            None => self.pending.entry(id).or_default(),
        };
        if let Some(heads) = hint {
            d.sync.assume_peer_has(heads);
        }
        Offered {
            data: d.sync.generate(&d.doc),
            empty: d.doc.get_heads().is_empty(),
        }
    }

    fn apply(&mut self, id: DocumentId, data: &[u8]) -> Result<Applied, String> {
        let held = self.docs.contains_key(&id);
        let d = match self.docs.get_mut(&id) {
            Some(d) => d,
            None => self.pending.entry(id).or_default(),
        };
        d.sync
            .receive(&mut d.doc, data)
            .map_err(|e| e.to_string())?;
        // What the server just told us it holds.
        if let Some(theirs) = d.sync.peer_heads() {
            d.server_heads = Some(theirs.to_vec());
        }
        let heads = d.doc.get_heads();
        let reply = d.sync.generate(&d.doc);
        let server_heads = d.server_heads.clone();
        if !held
            && !heads.is_empty()
            && let Some(d) = self.pending.remove(&id)
        {
            self.docs.insert(id, d);
        }
        Ok(Applied {
            reply,
            heads,
            server_heads,
        })
    }
}

/// Carries out everything the machine wants done until it waits on nothing; returns the
/// last outcome that was not [`Outcome::Done`], if any.
pub fn settle(peer: &mut ClientPeer, docs: &mut MemoryDocs) -> Outcome {
    let mut outcome = Outcome::Done;
    while let Some(effect) = peer.poll_effect() {
        match docs.carry_out(peer, effect) {
            Outcome::Done => {}
            other => outcome = other,
        }
    }
    outcome
}

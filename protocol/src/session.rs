//! The sans-I/O sync of one document with one peer: bytes in, document changed or not,
//! bytes out. It wraps `automerge::sync` so that the server and the phone drive the same
//! code with their own sockets and storage, and so that nothing a peer sends can panic.
//! Also the loading and saving of documents as storage chunks (snapshot + incrementals).

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, AutomergeError, ChangeHash};
use std::panic::AssertUnwindSafe;

/// Why a sync message, a persisted sync state or a stored chunk was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("not an automerge sync message: {0}")]
    DecodeMessage(#[source] sync::ReadMessageError),
    #[error("sync message could not be applied: {0}")]
    Apply(#[source] Box<AutomergeError>),
    #[error("not a persisted sync state: {0}")]
    DecodeState(#[source] sync::DecodeStateError),
    #[error("sync message carries a Bloom filter with impossible parameters")]
    HostileBloomFilter,
    #[error("automerge panicked on a sync message; reload the document from storage")]
    Panicked,
    #[error("stored chunk {index} could not be loaded: {source}")]
    Load {
        index: usize,
        #[source]
        source: Box<AutomergeError>,
    },
}

/// Sync state for one (peer, document) pair.
#[derive(Debug, Clone, Default)]
pub struct DocSync {
    pub state: sync::State,
}

impl DocSync {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores what [`Self::persist`] wrote, so that an in-sync reconnect costs a few bytes
    /// instead of a Bloom filter over the whole history.
    pub fn from_persisted(bytes: &[u8]) -> Result<Self, SessionError> {
        sync::State::decode(bytes)
            .map(|state| Self { state })
            .map_err(SessionError::DecodeState)
    }

    /// The part of the state worth keeping across connections (the shared heads).
    pub fn persist(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// Applies a sync message from the peer. Returns whether the document changed, i.e.
    /// whether the caller has new changes to persist (before it sends anything that
    /// acknowledges them).
    ///
    /// If automerge itself panics on the message, the panic is caught and reported as
    /// [`SessionError::Panicked`]; the document may then be half-updated in memory and must be
    /// dropped and reloaded from storage.
    pub fn receive(&mut self, doc: &mut Automerge, data: &[u8]) -> Result<bool, SessionError> {
        let message = sync::Message::decode(data).map_err(SessionError::DecodeMessage)?;
        for have in &message.have {
            check_bloom(&have.bloom.to_bytes())?;
        }
        let before = doc.get_heads();
        let state = &mut self.state;
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
            doc.receive_sync_message(state, message)
        }));
        match applied {
            Ok(result) => result.map_err(|e| SessionError::Apply(Box::new(e)))?,
            Err(_) => {
                self.reset();
                return Err(SessionError::Panicked);
            }
        }
        Ok(doc.get_heads() != before)
    }

    /// The next message for the peer, if there is anything to say.
    pub fn generate(&mut self, doc: &Automerge) -> Option<Vec<u8>> {
        doc.generate_sync_message(&mut self.state)
            .map(sync::Message::encode)
    }

    /// Seeds a sync state that knows nothing of the peer in this session with heads the
    /// peer is known to hold (from an earlier exchange), so that the next message carries
    /// every change since them instead of first asking what the peer has. Costs one round
    /// trip less when we changed the document offline; if the peer lacks some of those
    /// heads after all, automerge asks for them as usual. A state that already heard from
    /// the peer is left alone.
    pub fn assume_peer_has(&mut self, heads: &[ChangeHash]) {
        // A restored state says `their_have: Some([])`; only `their_heads` tells whether
        // the peer spoke in this session.
        if self.state.their_heads.is_some() {
            return;
        }
        let heads = heads.to_vec();
        self.state.their_have = Some(vec![sync::Have {
            last_sync: heads.clone(),
            bloom: sync::BloomFilter::default(),
        }]);
        self.state.their_need = Some(Vec::new());
        self.state.their_heads = Some(heads);
    }

    /// Forgets everything about the peer, e.g. when it reconnects with a fresh socket
    /// (automerge-repo does the same on a second `join`).
    pub fn reset(&mut self) {
        self.state = sync::State::new();
    }

    /// The heads the peer last announced in this session.
    pub fn peer_heads(&self) -> Option<&[ChangeHash]> {
        self.state.their_heads.as_deref()
    }

    /// The heads both sides are known to have.
    pub fn shared_heads(&self) -> &[ChangeHash] {
        &self.state.shared_heads
    }

    /// Whether the peer announced exactly our heads: nothing is left to exchange, and every
    /// local change has reached the peer.
    pub fn in_sync(&self, doc: &Automerge) -> bool {
        self.peer_heads().is_some_and(|theirs| {
            let mut theirs = theirs.to_vec();
            let mut ours = doc.get_heads();
            theirs.sort_unstable();
            ours.sort_unstable();
            theirs == ours
        })
    }
}

/// automerge 0.12 trusts the Bloom filter parameters a peer sends: zero bits makes
/// `generate` divide by zero, and a huge probe count makes it allocate and loop billions of
/// times. Filters written by automerge use 10 bits per entry and 7 probes.
fn check_bloom(bytes: &[u8]) -> Result<(), SessionError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut rest = bytes;
    let mut next = || read_leb128_u32(&mut rest).ok_or(SessionError::HostileBloomFilter);
    let entries = next()?;
    let bits_per_entry = next()?;
    let probes = next()?;
    let bits_ok = entries == 0 || (1..=MAX_BLOOM_PARAMETER).contains(&bits_per_entry);
    let probes_ok = entries == 0 || (1..=MAX_BLOOM_PARAMETER).contains(&probes);
    // The bit count must fit the u32 arithmetic automerge does on it.
    let size_ok = rest.len() <= (u32::MAX / 8) as usize;
    if bits_ok && probes_ok && size_ok {
        Ok(())
    } else {
        Err(SessionError::HostileBloomFilter)
    }
}

const MAX_BLOOM_PARAMETER: u32 = 64;

fn read_leb128_u32(input: &mut &[u8]) -> Option<u32> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
    }
    None
}

/// A store of chunks (the server's database, the phone's) writes a fresh snapshot in
/// place of its chunks once a document would have this many. Loading replays every chunk
/// and each repeats its header and dependency hashes, so a long tail of small chunks
/// costs load time and space, while a snapshot costs one full write. One figure for both
/// sides, so that what the benchmark measures on one holds for the other.
pub const COMPACT_AFTER_CHUNKS: usize = 32;

/// Whether the write that follows `stored` chunks should be a snapshot.
pub fn compact_now(stored: usize) -> bool {
    stored + 1 >= COMPACT_AFTER_CHUNKS
}

/// Loads a document from its stored chunks: snapshots first, then incrementals, in any
/// mix, as the JS and samod stores keep them. Changes whose dependencies are missing wait
/// inside the document and do not show in its heads.
pub fn load_doc(chunks: &[&[u8]]) -> Result<Automerge, SessionError> {
    let mut doc = Automerge::new();
    for (index, chunk) in chunks.iter().enumerate() {
        doc.load_incremental(chunk)
            .map_err(|source| SessionError::Load {
                index,
                source: Box::new(source),
            })?;
    }
    Ok(doc)
}

/// The changes made since `since` (heads previously saved), as one incremental chunk, or
/// `None` when there are none. Callers keep the heads they saved up to and pass them here.
pub fn save_incremental(doc: &Automerge, since: &[ChangeHash]) -> Option<Vec<u8>> {
    let mut since_sorted = since.to_vec();
    let mut heads = doc.get_heads();
    since_sorted.sort_unstable();
    heads.sort_unstable();
    if since_sorted == heads {
        return None;
    }
    let chunk = doc.save_after(since);
    (!chunk.is_empty()).then_some(chunk)
}

/// A compacted snapshot of the whole document; callers delete older chunks only after
/// this one is safely written.
pub fn save_snapshot(doc: &Automerge) -> Vec<u8> {
    doc.save()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};
    use proptest::prelude::*;

    fn doc_with(key: &str, value: &str) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
        doc
    }

    /// Runs the exchange until neither side has anything to say; returns the frames sent.
    fn sync_pair(
        a: &mut Automerge,
        sa: &mut DocSync,
        b: &mut Automerge,
        sb: &mut DocSync,
    ) -> usize {
        let mut frames = 0;
        for _ in 0..20 {
            let mut quiet = true;
            if let Some(m) = sa.generate(a) {
                sb.receive(b, &m).unwrap();
                frames += 1;
                quiet = false;
            }
            if let Some(m) = sb.generate(b) {
                sa.receive(a, &m).unwrap();
                frames += 1;
                quiet = false;
            }
            if quiet {
                return frames;
            }
        }
        panic!("sync did not quiesce")
    }

    #[test]
    fn two_docs_converge_and_report_changes() {
        let mut a = doc_with("a", "1");
        let mut b = doc_with("b", "2");
        let (mut sa, mut sb) = (DocSync::new(), DocSync::new());

        let m = sa.generate(&a).unwrap();
        assert!(
            !sb.receive(&mut b, &m).unwrap(),
            "first message carries no changes"
        );
        sync_pair(&mut a, &mut sa, &mut b, &mut sb);
        assert_eq!(a.get_heads(), b.get_heads());
        assert_eq!(b.get(ROOT, "a").unwrap().unwrap().0.as_str(), Some("1"));
        assert!(sa.in_sync(&a) && sb.in_sync(&b));

        let mut tx = a.transaction();
        tx.put(ROOT, "c", "3").unwrap();
        tx.commit();
        assert!(!sa.in_sync(&a));
        // a already knows what b has, so its first message carries the change.
        let m = sa.generate(&a).unwrap();
        assert!(sb.receive(&mut b, &m).unwrap(), "the change arrived");
        let ack = sb.generate(&b).unwrap();
        assert!(!sa.receive(&mut a, &ack).unwrap());
        assert!(sa.in_sync(&a), "b's heads now include the change");
        assert!(sa.generate(&a).is_none());
        assert_eq!(a.get_heads(), b.get_heads());
    }

    #[test]
    fn persisted_state_makes_reconnect_cheap() {
        let mut a = doc_with("a", "1");
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (DocSync::new(), DocSync::new());
        sync_pair(&mut a, &mut sa, &mut b, &mut sb);

        let mut sa = DocSync::from_persisted(&sa.persist()).unwrap();
        let mut sb = DocSync::from_persisted(&sb.persist()).unwrap();
        assert_eq!(sa.shared_heads(), a.get_heads());
        let frames = sync_pair(&mut a, &mut sa, &mut b, &mut sb);
        assert!(frames <= 2, "in-sync reconnect took {frames} frames");
    }

    #[test]
    fn a_seeded_state_sends_the_changes_at_once() {
        let mut a = doc_with("a", "1");
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (DocSync::new(), DocSync::new());
        sync_pair(&mut a, &mut sa, &mut b, &mut sb);
        let server_heads = b.get_heads();
        let mut tx = a.transaction();
        tx.put(ROOT, "c", "offline").unwrap();
        tx.commit();

        let mut sa = DocSync::from_persisted(&sa.persist()).unwrap();
        let mut sb = DocSync::from_persisted(&sb.persist()).unwrap();
        sa.assume_peer_has(&server_heads);
        let first = sa.generate(&a).unwrap();
        assert!(
            sb.receive(&mut b, &first).unwrap(),
            "the first message carries the change"
        );
        let ack = sb.generate(&b).unwrap();
        assert!(!sa.receive(&mut a, &ack).unwrap());
        assert!(sa.in_sync(&a), "one round trip");
        assert!(sa.generate(&a).is_none());
        assert_eq!(a.get_heads(), b.get_heads());
    }

    #[test]
    fn reset_forgets_the_peer() {
        let mut a = doc_with("a", "1");
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (DocSync::new(), DocSync::new());
        sync_pair(&mut a, &mut sa, &mut b, &mut sb);
        sa.reset();
        assert!(sa.peer_heads().is_none());
        assert!(sa.shared_heads().is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut doc = doc_with("a", "1");
        let mut s = DocSync::new();
        assert!(matches!(
            s.receive(&mut doc, b"hello"),
            Err(SessionError::DecodeMessage(_))
        ));
        assert!(matches!(
            s.receive(&mut doc, &[]),
            Err(SessionError::DecodeMessage(_))
        ));
        assert!(matches!(
            DocSync::from_persisted(b"\x00"),
            Err(SessionError::DecodeState(_))
        ));
        assert!(matches!(
            load_doc(&[b"not a chunk"]),
            Err(SessionError::Load { index: 0, .. })
        ));
    }

    #[test]
    fn chunks_load_back() {
        let mut doc = doc_with("a", "1");
        let snapshot = save_snapshot(&doc);
        let saved = doc.get_heads();
        assert!(save_incremental(&doc, &saved).is_none());
        let mut tx = doc.transaction();
        tx.put(ROOT, "b", "2").unwrap();
        tx.commit();
        let incremental = save_incremental(&doc, &saved).unwrap();
        let loaded = load_doc(&[&snapshot, &incremental]).unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(load_doc(&[]).unwrap().get_heads(), vec![]);
    }

    fn real_messages() -> Vec<Vec<u8>> {
        let mut a = doc_with("b", "2");
        let mut tx = a.transaction();
        tx.put(ROOT, "c", 3).unwrap();
        tx.commit();
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (DocSync::new(), DocSync::new());
        let first = sa.generate(&a).unwrap();
        sb.receive(&mut b, &first).unwrap();
        let reply = sb.generate(&b).unwrap();
        sa.receive(&mut a, &reply).unwrap();
        let with_changes = sa.generate(&a).unwrap();
        assert!(sb.receive(&mut b, &with_changes).unwrap());
        vec![first, with_changes]
    }

    #[test]
    fn hostile_bloom_filters_are_refused() {
        let mut doc = doc_with("a", "1");
        // heads: none, need: none, one have: no last_sync, bloom {1 entry, 0 bits, 7 probes}.
        let zero_bits = [0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
        let many_probes = [
            0x42, 0, 0, 1, 0, 9, 1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0,
        ];
        for m in [&zero_bits[..], &many_probes[..]] {
            let mut s = DocSync::new();
            let result = s.receive(&mut doc, m);
            assert!(
                matches!(result, Err(SessionError::HostileBloomFilter)),
                "{result:?}"
            );
            s.generate(&doc);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn hostile_sync_messages_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<(proptest::sample::Index, u8)>(),
        ) {
            let mut doc = doc_with("a", "1");
            let mut s = DocSync::new();
            let _ = s.receive(&mut doc, &bytes);
            let _ = s.generate(&doc);

            // Real messages with one byte changed get much further: the first carries a
            // Bloom filter, the second the changes themselves.
            for mut m in real_messages() {
                let at = flip.0.index(m.len());
                m[at] ^= flip.1;
                let mut s = DocSync::new();
                let _ = s.receive(&mut doc, &m);
                let _ = s.generate(&doc);
            }
            let _ = DocSync::from_persisted(&bytes);
            let _ = load_doc(&[&bytes]);
        }
    }
}

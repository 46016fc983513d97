//! The arithmetic of Lotse's reconnect extension (DESIGN.md decision 2): a digest over
//! everything a client holds, a short digest of one document's heads for the manifest, and
//! the plan a client derives from the server's manifest. The messages themselves live in
//! [`crate::wire`].

use std::collections::BTreeMap;

use automerge::ChangeHash;
use sha2::{Digest, Sha256};

use crate::docid::DocumentId;

/// Separates our hashes from any other SHA-256 use of the same bytes, and lets a future
/// encoding change be told apart.
const DIGEST_DOMAIN: &[u8] = b"lotse-catchup-v1\0";
const HEADS_DOMAIN: &[u8] = b"lotse-heads-v1\0";

/// SHA-256 over every (document id, heads) pair, independent of the order in which they
/// are given and of the order of each document's heads. Client and server compute it over
/// the same set when the client is up to date.
pub fn digest<'a>(docs: impl IntoIterator<Item = (&'a DocumentId, &'a [ChangeHash])>) -> [u8; 32] {
    let mut docs: Vec<(&DocumentId, Vec<ChangeHash>)> = docs
        .into_iter()
        .map(|(id, heads)| (id, sorted(heads)))
        .collect();
    docs.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(DIGEST_DOMAIN);
    hasher.update((docs.len() as u64).to_be_bytes());
    for (id, heads) in &docs {
        hasher.update(id.as_bytes());
        // Fixed-size fields plus a count keep the byte stream unambiguous.
        hasher.update((heads.len() as u64).to_be_bytes());
        for head in heads {
            hasher.update(head.0);
        }
    }
    hasher.finalize().into()
}

/// The first 8 bytes of a SHA-256 over the sorted heads. Enough to tell "same heads" from
/// "different heads" for one document (a false match needs a 2^-64 accident, and a peer
/// forcing one only hides its own changes from itself).
pub fn heads_digest(heads: &[ChangeHash]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(HEADS_DOMAIN);
    let heads = sorted(heads);
    hasher.update((heads.len() as u64).to_be_bytes());
    for head in &heads {
        hasher.update(head.0);
    }
    let full: [u8; 32] = hasher.finalize().into();
    let mut short = [0; 8];
    short.copy_from_slice(&full[..8]);
    short
}

fn sorted(heads: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut heads = heads.to_vec();
    heads.sort_unstable();
    heads.dedup();
    heads
}

/// What a client must do after a manifest. Each list is sorted by document id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchupPlan {
    /// Both sides have the document and the heads differ: run the automerge sync.
    pub differ: Vec<DocumentId>,
    /// The server lists it and the client has none: send `request`.
    pub missing_locally: Vec<DocumentId>,
    /// The client has it and the server did not list it: either created offline (sync it;
    /// the server accepts or answers `doc-unavailable`) or access was lost (wipe it).
    pub only_local: Vec<DocumentId>,
}

impl CatchupPlan {
    /// Nothing to do: the manifest matched the client's holdings.
    pub fn is_empty(&self) -> bool {
        self.differ.is_empty() && self.missing_locally.is_empty() && self.only_local.is_empty()
    }
}

/// Compares the client's holdings with the server's manifest.
pub fn plan(
    local: &BTreeMap<DocumentId, Vec<ChangeHash>>,
    manifest: &[(DocumentId, [u8; 8])],
) -> CatchupPlan {
    // A manifest listing one document twice is treated like one listing it once; the last
    // entry wins, so a repeated entry cannot make the plan list a document twice.
    let remote: BTreeMap<DocumentId, [u8; 8]> = manifest.iter().copied().collect();
    let mut plan = CatchupPlan::default();
    for (id, heads) in local {
        match remote.get(id) {
            Some(theirs) if *theirs == heads_digest(heads) => {}
            Some(_) => plan.differ.push(*id),
            None => plan.only_local.push(*id),
        }
    }
    plan.missing_locally = remote
        .keys()
        .filter(|id| !local.contains_key(id))
        .copied()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u8) -> DocumentId {
        DocumentId::from_bytes([n; 16])
    }

    fn hash(n: u8) -> ChangeHash {
        ChangeHash([n; 32])
    }

    #[test]
    fn digest_ignores_order() {
        let (a, b) = (id(1), id(2));
        let ha = vec![hash(1), hash(2)];
        let ha_rev = vec![hash(2), hash(1)];
        let hb = vec![hash(3)];
        let d1 = digest([(&a, ha.as_slice()), (&b, hb.as_slice())]);
        let d2 = digest([(&b, hb.as_slice()), (&a, ha_rev.as_slice())]);
        assert_eq!(d1, d2);
        let map = BTreeMap::from([(a, ha.clone()), (b, hb.clone())]);
        assert_eq!(
            digest(map.iter().map(|(id, heads)| (id, heads.as_slice()))),
            d1
        );
    }

    #[test]
    fn digest_sees_every_difference() {
        let (a, b) = (id(1), id(2));
        let h1 = vec![hash(1)];
        let h2 = vec![hash(2)];
        let h12 = vec![hash(1), hash(2)];
        let empty: Vec<ChangeHash> = vec![];
        let base = digest([(&a, h1.as_slice()), (&b, h2.as_slice())]);
        let variants = [
            digest([(&a, h1.as_slice())]),
            digest([(&a, h2.as_slice()), (&b, h1.as_slice())]),
            digest([(&a, h12.as_slice()), (&b, h2.as_slice())]),
            digest([(&a, h1.as_slice()), (&b, empty.as_slice())]),
            digest([
                (&a, h1.as_slice()),
                (&b, h2.as_slice()),
                (&id(3), empty.as_slice()),
            ]),
            digest(std::iter::empty()),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
        // Moving a head from one document to the next changes the digest although the
        // concatenated bytes would be the same without the counts.
        assert_ne!(
            digest([(&a, h12.as_slice()), (&b, empty.as_slice())]),
            digest([(&a, h1.as_slice()), (&b, h2.as_slice())])
        );
    }

    #[test]
    fn heads_digest_ignores_order_and_duplicates() {
        assert_eq!(
            heads_digest(&[hash(1), hash(2)]),
            heads_digest(&[hash(2), hash(1), hash(2)])
        );
        assert_ne!(heads_digest(&[hash(1)]), heads_digest(&[hash(2)]));
        assert_ne!(heads_digest(&[]), heads_digest(&[hash(0)]));
    }

    #[test]
    fn plan_sorts_documents_into_three_lists() {
        let local = BTreeMap::from([
            (id(1), vec![hash(1)]), // same on both sides
            (id(2), vec![hash(2)]), // server has newer heads
            (id(3), vec![hash(3)]), // created offline or no longer shared
        ]);
        let manifest = vec![
            (id(4), heads_digest(&[hash(4)])), // newly shared with us
            (id(2), heads_digest(&[hash(2), hash(9)])),
            (id(1), heads_digest(&[hash(1)])),
        ];
        let plan = plan(&local, &manifest);
        assert_eq!(
            plan,
            CatchupPlan {
                differ: vec![id(2)],
                missing_locally: vec![id(4)],
                only_local: vec![id(3)],
            }
        );
        assert!(!plan.is_empty());
    }

    #[test]
    fn plan_of_matching_holdings_is_empty() {
        let local = BTreeMap::from([(id(1), vec![hash(1), hash(2)]), (id(2), vec![])]);
        let manifest: Vec<_> = local
            .iter()
            .map(|(id, heads)| (*id, heads_digest(heads)))
            .collect();
        assert!(plan(&local, &manifest).is_empty());
        assert_eq!(plan(&BTreeMap::new(), &[]), CatchupPlan::default());
    }

    #[test]
    fn duplicate_manifest_entries_do_not_duplicate_work() {
        let manifest = vec![(id(5), [0; 8]), (id(5), [1; 8])];
        let plan = plan(&BTreeMap::new(), &manifest);
        assert_eq!(plan.missing_locally, vec![id(5)]);
    }
}

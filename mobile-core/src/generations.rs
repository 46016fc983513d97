//! The phone's side of document generations (docs/sync.md): when the network rewrites a
//! case (an entry erased from its history, or the history compacted), the server says
//! `lotse-deleted` naming the successor. The old copy stays until the successor is held;
//! then what this phone typed that the server never saw is replayed onto it
//! (`lotse_protocol::schema::generation::replay`), stored, and only then the old copy and
//! its key are deleted. The list of what waits is sealed in the store, so a restart in
//! between loses nothing; a replay repeated after a crash writes nothing twice.

use lotse_protocol::DocumentId;
use lotse_protocol::schema::generation::{self, EntryRef, KnownChanges};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::Repo;

const META_SUPERSEDED: &str = "superseded";
const AAD_SUPERSEDED: &[u8] = b"lotse:superseded";

/// An old generation waiting for its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Waiting {
    old: String,
    successor: String,
    /// The hashes the server held of the old generation, hex.
    known: String,
}

/// A case this phone moved onto its newer generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The id the app knows the case by (it survives generations).
    pub case_id: DocumentId,
    pub old: DocumentId,
    pub new: DocumentId,
    /// Offline edits written onto the new generation.
    pub edits: usize,
    /// Entries whose offline edits were dropped: erased, or removed by someone else.
    pub dropped: Vec<EntryRef>,
}

async fn load(repo: &Repo) -> Result<Vec<Waiting>> {
    match repo.sealed_meta(META_SUPERSEDED, AAD_SUPERSEDED).await? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| Error::Corrupt("the list of rewritten cases".into())),
    }
}

async fn store(repo: &Repo, waiting: &[Waiting]) -> Result<()> {
    let bytes = serde_json::to_vec(waiting)
        .map_err(|_| Error::Corrupt("the list of rewritten cases".into()))?;
    repo.set_sealed_meta(META_SUPERSEDED, AAD_SUPERSEDED, &bytes)
        .await
}

/// The old generations that wait, so that the catch-up leaves them out (the server has
/// nothing of them any more) and the app's reads still find the case meanwhile.
pub async fn waiting(repo: &Repo) -> Result<Vec<DocumentId>> {
    Ok(load(repo)
        .await?
        .iter()
        .filter_map(|w| w.old.parse().ok())
        .collect())
}

/// Notes that `old` lives on in `successor`. Nothing to do for a copy not held.
pub async fn superseded(
    repo: &Repo,
    old: DocumentId,
    successor: DocumentId,
    known: &KnownChanges,
) -> Result<()> {
    if !repo.docs.contains_key(&old) {
        return Ok(());
    }
    let mut list = load(repo).await?;
    let entry = Waiting {
        old: old.to_string(),
        successor: successor.to_string(),
        known: hex::encode(known.to_bytes()),
    };
    match list.iter_mut().find(|w| w.old == entry.old) {
        // A later generation: wait for that one instead.
        Some(w) => *w = entry,
        None => list.push(entry),
    }
    store(repo, &list).await
}

/// Replays every waiting old generation whose successor is held with content, then deletes
/// the old copy and its key. Returns what moved.
pub async fn replay_ready(repo: &mut Repo, now: lotse_protocol::Millis) -> Result<Vec<Replaced>> {
    let list = load(repo).await?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut left = Vec::new();
    let mut done = Vec::new();
    for w in list {
        let (Ok(old), Ok(new)) = (
            w.old.parse::<DocumentId>(),
            w.successor.parse::<DocumentId>(),
        ) else {
            continue;
        };
        let ready = repo
            .docs
            .get(&new)
            .is_some_and(|d| !d.doc.get_heads().is_empty());
        if !ready {
            left.push(w);
            continue;
        }
        let Some(held) = repo.docs.get(&old) else {
            continue;
        };
        let ours = held.doc.clone();
        let known = hex::decode(&w.known)
            .ok()
            .and_then(|b| KnownChanges::from_bytes(&b))
            .ok_or_else(|| Error::Corrupt("the list of rewritten cases".into()))?;
        let replayed = repo
            .edit(&new, "case", |doc| {
                generation::replay(&ours, &known, doc, now)
            })
            .await?;
        // The replay is stored: the old copy and its key can go.
        repo.remove(&old).await?;
        let case_id = generation::case_id(&ours, &old.to_string())
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(old);
        done.push(Replaced {
            case_id,
            old,
            new,
            edits: replayed.edits,
            dropped: replayed.dropped,
        });
    }
    store(repo, &left).await?;
    Ok(done)
}

/// The document that holds the case the app calls `id`: `id` itself while held (an old
/// generation waiting for its successor included), else the newest generation whose
/// case id is `id`.
pub fn resolve(repo: &Repo, id: &DocumentId) -> DocumentId {
    if repo.docs.contains_key(id) {
        return *id;
    }
    let wanted = id.to_string();
    repo.docs
        .iter()
        .filter_map(|(doc_id, d)| {
            let line = generation::lineage(&d.doc).ok()?;
            (line.case_id.as_deref() == Some(wanted.as_str())).then_some((line.generation, *doc_id))
        })
        .max()
        .map_or(*id, |(_, doc_id)| doc_id)
}

/// The id the app knows the case in `doc_id` by.
pub fn case_id_of(repo: &Repo, doc_id: &DocumentId) -> DocumentId {
    repo.docs
        .get(doc_id)
        .and_then(|d| generation::lineage(&d.doc).ok()?.case_id?.parse().ok())
        .unwrap_or(*doc_id)
}

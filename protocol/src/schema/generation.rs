//! Document generations: how content leaves a case's history for good (DSGVO Art. 16/17)
//! and how a long history is compacted. An automerge document never forgets, so the server
//! writes a new document (the next generation) holding the case as it stands, without the
//! erased entries, and the old one is tombstoned. The case keeps its identity: every
//! generation after the first carries `caseId` (the first generation's document id).
//!
//! A replica that still holds the old generation with edits the server never saw replays
//! them onto the new one ([`replay`]) by what they mean in the schema: a new entry is
//! added, a changed field is set, a text edit is spliced in, a deleted entry is deleted;
//! an edit to an erased entry is dropped and reported. Design: `docs/sync.md`.

use std::collections::{HashMap, HashSet};

use automerge::hydrate::{self, Value as HValue};
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};

use super::{Millis, SchemaError, access};

/// The root keys a generation adds (see the module docs).
const CASE_ID: &str = "caseId";
const GENERATION: &str = "generation";
const ERASED: &str = "erased";

/// The change message of a new generation's only change and of a replay.
pub const NEW_GENERATION_MESSAGE: &str = "new generation";
pub const REPLAY_MESSAGE: &str = "replay offline edits";

/// Root keys a replay never writes: the document's identity and its lineage, and the
/// entry maps (whose entries are replayed one by one).
const NOT_REPLAYED: [&str; 10] = [
    "schema",
    "type",
    "organisationId",
    "createdAt",
    CASE_ID,
    GENERATION,
    ERASED,
    "notes",
    "appointments",
    "hours",
];

/// The kinds of entries a case keeps in maps keyed by random ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Note,
    Appointment,
    Hours,
}

impl EntryKind {
    pub const ALL: [EntryKind; 3] = [EntryKind::Note, EntryKind::Appointment, EntryKind::Hours];

    /// The root map the entries live in.
    pub fn map(self) -> &'static str {
        match self {
            EntryKind::Note => "notes",
            EntryKind::Appointment => "appointments",
            EntryKind::Hours => "hours",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Note => "note",
            EntryKind::Appointment => "appointment",
            EntryKind::Hours => "hours",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of a case: a note, an appointment or an hours entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryRef {
    pub kind: EntryKind,
    pub id: String,
}

impl EntryRef {
    pub fn new(kind: EntryKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }
}

/// Where a document stands in its case's line of generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The first generation's document id; `None` in a first generation.
    pub case_id: Option<String>,
    /// 1 for the first generation.
    pub generation: u64,
    /// Entries erased in this or an earlier generation (ids only, never content).
    pub erased: Vec<EntryRef>,
}

pub fn lineage(doc: &impl ReadDoc) -> Result<Lineage, SchemaError> {
    let case_id = access::opt_string(doc, &ROOT, CASE_ID, "")?;
    let generation = access::opt_int(doc, &ROOT, GENERATION, "")?
        .map(|g| u64::try_from(g).unwrap_or(1).max(1))
        .unwrap_or(1);
    let mut erased = Vec::new();
    if let Some(map) = access::opt_obj(doc, &ROOT, ERASED, "", ObjType::Map)? {
        for (id, entry) in access::map_entries(doc, &map, "erased.")? {
            let kind = access::string(doc, &entry, "kind", &format!("erased.{id}."))?;
            // An erasure of a kind this version does not know still hides nothing it
            // knows; skipping it keeps the document readable.
            if let Some(kind) = EntryKind::parse(&kind) {
                erased.push(EntryRef { kind, id });
            }
        }
    }
    erased.sort();
    Ok(Lineage {
        case_id,
        generation,
        erased,
    })
}

/// The id a case keeps across generations: `caseId`, or the document's own id in a first
/// generation.
pub fn case_id(doc: &impl ReadDoc, document_id: &str) -> Result<String, SchemaError> {
    Ok(lineage(doc)?
        .case_id
        .unwrap_or_else(|| document_id.to_owned()))
}

/// The next generation of `old` (whose document id is `old_id`): the case as it stands,
/// without the `erase`d entries and with no history, written as one change by `actor` at
/// `now`. Unknown fields survive. With nothing to erase this compacts the history.
pub fn next_generation(
    old: &Automerge,
    old_id: &str,
    erase: &[EntryRef],
    actor: ActorId,
    now: Millis,
) -> Result<Automerge, SchemaError> {
    let before = lineage(old)?;
    let HValue::Map(mut root) = old.hydrate(None) else {
        return Err(SchemaError::Malformed {
            path: String::new(),
            expected: "a map",
        });
    };
    for entry in erase {
        let removed = match root.get_mut(entry.kind.map()) {
            Some(HValue::Map(map)) => map.remove(&entry.id).is_some(),
            _ => false,
        };
        if !removed {
            return Err(SchemaError::NotFound {
                kind: entry.kind.as_str(),
                id: entry.id.clone(),
            });
        }
    }
    let mut erased: HashMap<String, HValue> = HashMap::new();
    let marker = |kind: EntryKind| {
        HValue::Map(hydrate::Map::from(HashMap::from([
            (
                "kind",
                HValue::Scalar(ScalarValue::Str(kind.as_str().into())),
            ),
            ("at", HValue::Scalar(ScalarValue::Int(now))),
        ])))
    };
    if let Some(HValue::Map(earlier)) = root.get(ERASED) {
        for (id, v) in earlier.iter() {
            erased.insert(id.clone(), v.value.clone());
        }
    }
    for entry in erase {
        erased.insert(entry.id.clone(), marker(entry.kind));
    }
    let lineage_fields: HashMap<String, HValue> = HashMap::from([
        (
            CASE_ID.to_owned(),
            HValue::Scalar(ScalarValue::Str(
                before.case_id.as_deref().unwrap_or(old_id).into(),
            )),
        ),
        (
            GENERATION.to_owned(),
            HValue::Scalar(ScalarValue::Int(
                i64::try_from(before.generation + 1).unwrap_or(i64::MAX),
            )),
        ),
        (ERASED.to_owned(), HValue::Map(hydrate::Map::from(erased))),
    ]);
    for (key, value) in lineage_fields {
        root.insert(
            key,
            hydrate::MapValue {
                value,
                conflict: false,
            },
        );
    }
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    tx.init_root_from_hydrate(&root)?;
    commit(tx, NEW_GENERATION_MESSAGE, now);
    Ok(doc)
}

fn commit(tx: Transaction<'_>, message: &str, now: Millis) {
    tx.commit_with(
        CommitOptions::default()
            .with_message(message.to_owned())
            .with_time(now.div_euclid(1000)),
    );
}

/// The changes of an old generation the server held when it wrote the next one: what a
/// replica does not need to replay. Hashes only, no content; 32 bytes a change on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownChanges(HashSet<ChangeHash>);

impl KnownChanges {
    pub fn of(doc: &Automerge) -> Self {
        Self(
            doc.get_changes_meta(&[])
                .into_iter()
                .map(|c| c.hash)
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, hash: &ChangeHash) -> bool {
        self.0.contains(hash)
    }

    /// The hashes one after another, sorted (the same set gives the same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut hashes: Vec<&ChangeHash> = self.0.iter().collect();
        hashes.sort_unstable();
        hashes.iter().flat_map(|h| h.0).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(32) {
            return None;
        }
        bytes
            .chunks_exact(32)
            .map(|c| ChangeHash::try_from(c).ok())
            .collect::<Option<HashSet<_>>>()
            .map(Self)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Fields and entries written onto the new generation.
    pub edits: usize,
    /// Entries whose offline edits were dropped: erased, or removed by someone else.
    pub dropped: Vec<EntryRef>,
}

/// Replays the edits in `ours` (a replica's copy of an old generation) that the server did
/// not hold (`known`) onto `target` (a newer generation of the same case), as one change.
/// Idempotent: replaying twice, or replaying what reached the server by another path,
/// writes nothing more.
pub fn replay(
    ours: &Automerge,
    known: &KnownChanges,
    target: &mut Automerge,
    now: Millis,
) -> Result<Replayed, SchemaError> {
    let changes = ours.get_changes_meta(&[]);
    if changes.iter().all(|c| known.contains(&c.hash)) {
        return Ok(Replayed::default());
    }
    // The server's part of our history is closed under dependencies, so its heads are the
    // known changes no other known change depends on.
    let in_known: Vec<_> = changes.iter().filter(|c| known.contains(&c.hash)).collect();
    let deps: HashSet<ChangeHash> = in_known
        .iter()
        .flat_map(|c| c.deps.iter().copied())
        .collect();
    let heads: Vec<ChangeHash> = in_known
        .iter()
        .map(|c| c.hash)
        .filter(|h| !deps.contains(h))
        .collect();
    let base = if heads.is_empty() {
        hydrate::Map::default()
    } else {
        as_map(ours.fork_at(&heads)?.hydrate(None))
    };
    let mine = as_map(ours.hydrate(None));
    let erased: HashSet<String> = lineage(target)?.erased.into_iter().map(|e| e.id).collect();

    let mut out = Replayed::default();
    let mut tx = target.transaction();
    replay_root(&mut tx, &base, &mine, &mut out)?;
    for kind in EntryKind::ALL {
        replay_entries(&mut tx, kind, &base, &mine, &erased, &mut out)?;
    }
    out.dropped.sort();
    out.dropped.dedup();
    if out.edits == 0 {
        tx.rollback();
    } else {
        commit(tx, REPLAY_MESSAGE, now);
    }
    Ok(out)
}

fn as_map(v: HValue) -> hydrate::Map {
    match v {
        HValue::Map(m) => m,
        _ => hydrate::Map::default(),
    }
}

fn replay_root(
    tx: &mut Transaction<'_>,
    base: &hydrate::Map,
    mine: &hydrate::Map,
    out: &mut Replayed,
) -> Result<(), SchemaError> {
    let keys: HashSet<&String> = base.keys().chain(mine.keys()).collect();
    for key in keys {
        if NOT_REPLAYED.contains(&key.as_str()) {
            continue;
        }
        let (b, m) = (base.get(key), mine.get(key));
        if b == m {
            continue;
        }
        if key == "languages" {
            out.edits += merge_set_list(tx, &ROOT, key, b, m)?;
        } else {
            out.edits += put_field(tx, &ROOT, key, b, m)?;
        }
    }
    Ok(())
}

/// A list used as a set (the case's languages): our additions and removals, applied to
/// the list as the newer generation holds it.
fn merge_set_list(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    base: Option<&HValue>,
    mine: Option<&HValue>,
) -> Result<usize, SchemaError> {
    let items = |v: Option<&HValue>| -> Vec<HValue> {
        match v {
            Some(HValue::List(l)) => l.iter().map(|i| i.value.clone()).collect(),
            _ => Vec::new(),
        }
    };
    let (b, m) = (items(base), items(mine));
    let list = match tx.get(obj, key)? {
        Some((automerge::Value::Object(ObjType::List), id)) => id,
        _ => tx.put_object(obj, key, ObjType::List)?,
    };
    let scalar_at = |tx: &Transaction<'_>, i: usize| -> Option<HValue> {
        match tx.get(&list, i).ok().flatten() {
            Some((automerge::Value::Scalar(s), _)) => Some(HValue::Scalar(s.into_owned())),
            _ => None,
        }
    };
    let mut edits = 0;
    for i in (0..tx.length(&list)).rev() {
        let Some(value) = scalar_at(tx, i) else {
            continue;
        };
        if b.contains(&value) && !m.contains(&value) {
            tx.delete(&list, i)?;
            edits += 1;
        }
    }
    for added in m.iter().filter(|v| !b.contains(v)) {
        let present = (0..tx.length(&list)).any(|i| scalar_at(tx, i).as_ref() == Some(added));
        if !present {
            let end = tx.length(&list);
            insert_value(tx, &list, end, added)?;
            edits += 1;
        }
    }
    Ok(edits)
}

fn replay_entries(
    tx: &mut Transaction<'_>,
    kind: EntryKind,
    base: &hydrate::Map,
    mine: &hydrate::Map,
    erased: &HashSet<String>,
    out: &mut Replayed,
) -> Result<(), SchemaError> {
    let entries = |root: &hydrate::Map| -> hydrate::Map {
        match root.get(kind.map()) {
            Some(HValue::Map(m)) => m.clone(),
            _ => hydrate::Map::default(),
        }
    };
    let (b, m) = (entries(base), entries(mine));
    if b == m {
        return Ok(());
    }
    let map = match tx.get(ROOT, kind.map())? {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        _ => tx.put_object(ROOT, kind.map(), ObjType::Map)?,
    };
    let ids: HashSet<&String> = b.keys().chain(m.keys()).collect();
    let mut ids: Vec<&String> = ids.into_iter().collect();
    ids.sort();
    for id in ids {
        let (be, me) = (b.get(id), m.get(id));
        if be == me {
            continue;
        }
        let there = match tx.get(&map, id.as_str())? {
            Some((automerge::Value::Object(ObjType::Map), obj)) => Some(obj),
            _ => None,
        };
        let dropped = || EntryRef::new(kind, id.clone());
        match (be, me, there) {
            // Ours, new: added unless erased or already there (it reached the server).
            (None, Some(entry), None) => {
                if erased.contains(id) {
                    out.dropped.push(dropped());
                } else {
                    tx.batch_create_object(&map, id.as_str(), entry, false)?;
                    out.edits += 1;
                }
            }
            (None, Some(_), Some(_)) => {}
            // Deleted by us: gone from the new generation too.
            (Some(_), None, Some(_)) => {
                tx.delete(&map, id.as_str())?;
                out.edits += 1;
            }
            (Some(_), None, None) => {}
            // Changed by us: field by field, unless the entry is gone.
            (Some(HValue::Map(bf)), Some(HValue::Map(mf)), Some(obj)) => {
                let keys: HashSet<&String> = bf.keys().chain(mf.keys()).collect();
                for key in keys {
                    let (bv, mv) = (bf.get(key), mf.get(key));
                    if bv != mv {
                        out.edits += put_field(tx, &obj, key, bv, mv)?;
                    }
                }
            }
            (Some(_), Some(_), None) => out.dropped.push(dropped()),
            // Not a map where an entry should be: ours replaces it whole.
            (_, Some(entry), Some(_)) => {
                tx.batch_create_object(&map, id.as_str(), entry, false)?;
                out.edits += 1;
            }
            (None, None, _) => {}
        }
    }
    Ok(())
}

/// Writes our value of one field over the newer generation's: text as a splice of what
/// we changed, anything else as a put (last writer wins, as it would have in the old
/// generation).
fn put_field(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    base: Option<&HValue>,
    mine: Option<&HValue>,
) -> Result<usize, SchemaError> {
    let current = tx.get(obj, key)?;
    match (base, mine) {
        (_, None) => {
            if current.is_some() {
                tx.delete(obj, key)?;
                return Ok(1);
            }
            Ok(0)
        }
        (Some(HValue::Text(b)), Some(HValue::Text(m))) => {
            if let Some((automerge::Value::Object(ObjType::Text), text)) = current {
                let now = tx.text(&text)?;
                return splice_merge(tx, &text, &now, &String::from(b), &String::from(m));
            }
            tx.batch_create_object(obj, key, &HValue::Text(m.clone()), false)?;
            Ok(1)
        }
        (_, Some(HValue::Scalar(s))) => {
            let same =
                matches!(&current, Some((automerge::Value::Scalar(c), _)) if c.as_ref() == s);
            if same {
                return Ok(0);
            }
            tx.put(obj, key, s.clone())?;
            Ok(1)
        }
        (_, Some(value)) => {
            tx.batch_create_object(obj, key, value, false)?;
            Ok(1)
        }
    }
}

fn insert_value(
    tx: &mut Transaction<'_>,
    list: &ObjId,
    index: usize,
    value: &HValue,
) -> Result<(), SchemaError> {
    match value {
        HValue::Scalar(s) => tx.insert(list, index, s.clone())?,
        other => {
            tx.batch_create_object(list, index, other, true)?;
        }
    }
    Ok(())
}

/// Applies the edit that turned `base` into `mine` to `now` (the newer generation's text,
/// which may hold other people's edits): our one splice, placed where its surroundings
/// are found. Text we cannot place is inserted, never deleted blindly. Positions in
/// Unicode code points, as automerge counts them by default.
/// Where `needle` occurs in `hay`, if it occurs exactly once.
fn unique(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    let mut found = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let first = found.next()?.0;
    found.next().is_none().then_some(first)
}

fn splice_merge(
    tx: &mut Transaction<'_>,
    text: &ObjId,
    now: &str,
    base: &str,
    mine: &str,
) -> Result<usize, SchemaError> {
    if now == mine {
        return Ok(0);
    }
    let (b, m, n): (Vec<char>, Vec<char>, Vec<char>) = (
        base.chars().collect(),
        mine.chars().collect(),
        now.chars().collect(),
    );
    let prefix = b.iter().zip(&m).take_while(|(x, y)| x == y).count();
    let suffix = b[prefix..]
        .iter()
        .rev()
        .zip(m[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let deleted = &b[prefix..b.len() - suffix];
    let inserted: String = m[prefix..m.len() - suffix].iter().collect();
    let (left, right) = (&b[..prefix], &b[b.len() - suffix..]);
    // Where the deleted text stands between the same neighbours, with as much of them as
    // makes the place unique; with nothing to delete, after the same left neighbour.
    let placed = [32, 16, 8, 4, 2, 1, 0].into_iter().find_map(|k: usize| {
        let (kl, kr) = (k.min(left.len()), k.min(right.len()));
        if kl + kr + deleted.len() == 0 {
            return None;
        }
        let needle: Vec<char> = left[left.len() - kl..]
            .iter()
            .chain(deleted)
            .chain(&right[..kr])
            .copied()
            .collect();
        unique(&n, &needle).map(|at| at + kl)
    });
    let (pos, del) = match placed {
        Some(p) => (p, deleted.len()),
        None => (prefix.min(n.len()), 0),
    };
    if del == 0 && inserted.is_empty() {
        return Ok(0);
    }
    let del = isize::try_from(del).map_err(|_| SchemaError::EditOutOfRange {
        pos,
        del,
        len: n.len(),
    })?;
    tx.splice_text(text, pos, del, &inserted)?;
    Ok(1)
}

#[cfg(test)]
mod tests;

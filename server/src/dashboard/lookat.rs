//! "Cases to look at": merges the CRDT resolved silently but a coordinator should see.
//!
//! Two rules, both read from the case document's own history (no extra bookkeeping):
//! 1. **Written without knowing it was closed.** The case is closed, and a note or hours
//!    entry was added or edited in a change that is not an ancestor of the change that
//!    closed it: the writer had not seen the closing (offline phone) or wrote after it.
//! 2. **Concurrent status changes.** Two devices set the status without seeing each
//!    other's change; automerge keeps both values and shows one (`get_all` > 1).
//!
//! Only cases whose index row the server wrote in the last 90 days are checked (at most
//! 500, newest first), and a result is kept per case until its heads change, so the
//! overview does not load every document on every refresh.

use std::collections::{HashMap, HashSet};

use lotse_protocol::DocumentId;
use lotse_protocol::automerge::{Automerge, ChangeHash, ObjId, ROOT, ReadDoc, Value};
use lotse_protocol::schema::ChangeKind;

use super::Dash;
use crate::app::AppState;
use crate::store::now_ms;

const WINDOW_MS: i64 = 90 * 24 * 3_600_000;
const MAX_CHECKED: i64 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    /// `count` notes or hours written after or without seeing the closing; the newest at `at` (ms).
    WrittenAfterClose { count: usize, at: i64 },
    /// The status values concurrent changes left.
    StatusConflict { values: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct LookAt {
    pub id: String,
    pub concerns: Vec<Concern>,
}

/// Inspects one case document (see the module's rules).
pub fn inspect(doc: &Automerge) -> Vec<Concern> {
    let mut out = Vec::new();
    let Ok(values) = doc.get_all(ROOT, "status") else {
        return out;
    };
    let text = |v: &Value<'_>| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    if values.len() > 1 {
        let mut vs: Vec<String> = values.iter().map(|(v, _)| text(v)).collect();
        vs.sort();
        vs.dedup();
        out.push(Concern::StatusConflict { values: vs });
    }
    // The value automerge shows is the last of `get_all`.
    let Some((value, op)) = values.last() else {
        return out;
    };
    if text(value) != "closed" {
        return out;
    }
    let ObjId::Id(counter, actor, _) = op else {
        return out;
    };
    let changes = doc.get_changes(&[]);
    let Some(closing) = changes.iter().find(|c| {
        c.actor_id() == actor && c.start_op().get() <= *counter && *counter <= c.max_op()
    }) else {
        return out;
    };
    let deps: HashMap<ChangeHash, Vec<ChangeHash>> = changes
        .iter()
        .map(|c| (c.hash(), c.deps().to_vec()))
        .collect();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    let mut stack = vec![closing.hash()];
    while let Some(h) = stack.pop() {
        if seen.insert(h)
            && let Some(ds) = deps.get(&h)
        {
            stack.extend(ds.iter().copied());
        }
    }
    let unseen: Vec<i64> = changes
        .iter()
        .filter(|c| {
            c.message()
                .and_then(ChangeKind::of_message)
                .is_some_and(ChangeKind::writes_work)
        })
        .filter(|c| !seen.contains(&c.hash()))
        .map(|c| c.timestamp().saturating_mul(1000))
        .collect();
    if let Some(at) = unseen.iter().max() {
        out.push(Concern::WrittenAfterClose {
            count: unseen.len(),
            at: *at,
        });
    }
    out
}

/// The organisation's cases with concerns, newest first.
pub async fn cases_to_look_at(state: &AppState, dash: &Dash, organisation_id: &str) -> Vec<LookAt> {
    let rows = match state
        .store
        .case_documents_since(organisation_id, now_ms() - WINDOW_MS, MAX_CHECKED)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: case documents to inspect");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for row in rows {
        let cached = {
            let cache = dash.look_at.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&row.id)
                .filter(|(heads, _)| *heads == row.heads)
                .map(|(_, c)| c.clone())
        };
        let concerns = match cached {
            Some(c) => c,
            None => {
                let Ok(id) = row.id.parse::<DocumentId>() else {
                    continue;
                };
                match state.hub.read(id, inspect).await {
                    Ok(c) => {
                        let mut cache = dash.look_at.lock().unwrap_or_else(|e| e.into_inner());
                        if cache.len() > 10_000 {
                            cache.clear();
                        }
                        cache.insert(row.id.clone(), (row.heads.clone(), c.clone()));
                        c
                    }
                    Err(e) => {
                        tracing::warn!(document_id = %row.id, error = %e, "dashboard: case not inspected");
                        continue;
                    }
                }
            }
        };
        if !concerns.is_empty() {
            out.push(LookAt {
                id: row.id,
                concerns,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lotse_protocol::automerge::ActorId;
    use lotse_protocol::{CaseDoc, NewCase, NewNote, Status, Topic};

    use super::*;

    fn case() -> Automerge {
        let mut doc = Automerge::new().with_actor(ActorId::from(b"coordinator".as_slice()));
        CaseDoc::create(
            &mut doc,
            &NewCase {
                organisation_id: "o".into(),
                label: "A.B.".into(),
                languages: vec!["ar".into()],
                topic: Topic::Gesundheit,
                status: Status::Active,
            },
            1_000_000,
        )
        .unwrap();
        doc
    }

    fn note(doc: &mut Automerge, at: i64) {
        CaseDoc::add_note(
            doc,
            &NewNote {
                author: "v".into(),
                text: "x".into(),
            },
            at,
        )
        .unwrap();
    }

    #[test]
    fn a_note_the_closer_had_not_seen_is_flagged() {
        let mut coordinator = case();
        let mut phone = coordinator
            .fork()
            .with_actor(ActorId::from(b"phone".as_slice()));
        note(&mut coordinator, 2_000_000);
        // The phone writes offline, earlier than the closing by the clock.
        note(&mut phone, 2_500_000);
        CaseDoc::set_status(&mut coordinator, Status::Closed, 3_000_000).unwrap();
        assert!(
            inspect(&coordinator).is_empty(),
            "notes before the closing are fine"
        );
        coordinator.merge(&mut phone).unwrap();
        assert_eq!(
            inspect(&coordinator),
            vec![Concern::WrittenAfterClose {
                count: 1,
                at: 2_500_000
            }]
        );
    }

    #[test]
    fn a_note_after_closing_is_flagged_and_an_open_case_is_not() {
        let mut doc = case();
        note(&mut doc, 2_000_000);
        assert!(inspect(&doc).is_empty());
        CaseDoc::set_status(&mut doc, Status::Closed, 3_000_000).unwrap();
        note(&mut doc, 4_000_000);
        assert_eq!(
            inspect(&doc),
            vec![Concern::WrittenAfterClose {
                count: 1,
                at: 4_000_000
            }]
        );
        CaseDoc::set_status(&mut doc, Status::Active, 5_000_000).unwrap();
        assert!(inspect(&doc).is_empty());
    }

    #[test]
    fn concurrent_status_changes_are_flagged() {
        let mut a = case();
        let mut b = a.fork().with_actor(ActorId::from(b"phone".as_slice()));
        CaseDoc::set_status(&mut a, Status::Paused, 2_000_000).unwrap();
        CaseDoc::set_status(&mut b, Status::Closed, 2_000_000).unwrap();
        a.merge(&mut b).unwrap();
        let concerns = inspect(&a);
        assert!(concerns.contains(&Concern::StatusConflict {
            values: vec!["closed".into(), "paused".into()]
        }));
    }
}

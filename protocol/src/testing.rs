//! Helpers for this crate's unit tests.

/// The keys of a JSON object, sorted: what the tests of a JSON format compare with the
/// names both sides agreed on.
pub(crate) fn sorted_keys(object: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// A case as the tests start from: "A.K.", Behörden, Arabic, active, created at 1 s.
pub(crate) fn sample_case() -> automerge::Automerge {
    use crate::schema::{CaseDoc, NewCase, Status, Topic};
    let mut doc = automerge::Automerge::new();
    let new = NewCase {
        organisation_id: "org".into(),
        label: "A.K.".into(),
        languages: vec!["ar".into()],
        topic: Topic::Behoerden,
        status: Status::Active,
    };
    CaseDoc::create(&mut doc, &new, 1_000).expect("a valid case");
    doc
}

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

//! A document's shape: every field with the automerge type it holds, entries of the maps
//! keyed by entry ids folded into one `*`. `schema/case.json` is the shape of everything
//! this crate's case edits write (a test keeps it so); clients written in other languages
//! (the volunteers' web app) check their documents against it, so that a field written
//! as text where this crate reads a plain string, or a float where it reads an integer,
//! fails their tests rather than a reader in the field.
//!
//! Type names are automerge's own, as its JavaScript `getWithType` spells them: `map`,
//! `list`, `text`, `str`, `int`, `uint`, `f64`, `boolean`, `null`, `timestamp`,
//! `counter`, `bytes`. A list's shape is a one-element array of its items' shape.

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Value as Json};

/// Maps whose keys are entry ids, not field names.
pub const ENTRY_MAPS: [&str; 4] = ["notes", "appointments", "hours", "erased"];

/// The shape of `doc`.
pub fn shape(doc: &impl ReadDoc) -> Json {
    object(doc, &automerge::ROOT, ObjType::Map, false)
}

fn object(doc: &impl ReadDoc, obj: &ObjId, ty: ObjType, entries: bool) -> Json {
    match ty {
        ObjType::Map | ObjType::Table => {
            let mut out = Map::new();
            for key in doc.keys(obj) {
                let Ok(Some((value, id))) = doc.get(obj, key.as_str()) else {
                    continue;
                };
                let field = if entries { "*".to_owned() } else { key.clone() };
                let inner = ENTRY_MAPS.contains(&key.as_str()) && obj == &automerge::ROOT;
                let s = value_shape(doc, value, &id, inner);
                let merged = match out.remove(&field) {
                    Some(before) => union(before, s),
                    None => s,
                };
                out.insert(field, merged);
            }
            Json::Object(out)
        }
        ObjType::List => {
            let mut items: Option<Json> = None;
            for i in 0..doc.length(obj) {
                if let Ok(Some((value, id))) = doc.get(obj, i) {
                    let s = value_shape(doc, value, &id, false);
                    items = Some(match items {
                        Some(before) => union(before, s),
                        None => s,
                    });
                }
            }
            Json::Array(items.into_iter().collect())
        }
        ObjType::Text => Json::String("text".into()),
    }
}

fn value_shape(doc: &impl ReadDoc, value: Value<'_>, id: &ObjId, entries: bool) -> Json {
    match value {
        Value::Object(ObjType::Text) => Json::String("text".into()),
        Value::Object(ty) => object(doc, id, ty, entries),
        Value::Scalar(s) => Json::String(scalar(&s).into()),
    }
}

fn scalar(s: &ScalarValue) -> &'static str {
    match s {
        ScalarValue::Str(_) => "str",
        ScalarValue::Int(_) => "int",
        ScalarValue::Uint(_) => "uint",
        ScalarValue::F64(_) => "f64",
        ScalarValue::Boolean(_) => "boolean",
        ScalarValue::Null => "null",
        ScalarValue::Timestamp(_) => "timestamp",
        ScalarValue::Counter(_) => "counter",
        ScalarValue::Bytes(_) => "bytes",
        ScalarValue::Unknown { .. } => "unknown",
    }
}

/// Both shapes in one: maps field by field, lists by their items. Two different leaf
/// types for one field are kept as `"a|b"`, which no check accepts as either: a clash to
/// see, not to average away.
pub fn union(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut a), Json::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(before) => union(before, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Json::Object(a)
        }
        (Json::Array(a), Json::Array(b)) => {
            let merged = a.into_iter().chain(b).reduce(union);
            Json::Array(merged.into_iter().collect())
        }
        (a, b) if a == b => a,
        (a, b) => {
            let name = |j: &Json| match j {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut parts: Vec<String> = name(&a)
                .split('|')
                .chain(name(&b).split('|'))
                .map(str::to_owned)
                .collect();
            parts.sort();
            parts.dedup();
            Json::String(parts.join("|"))
        }
    }
}

/// Where `doc`'s shape leaves `allowed`: a field it does not name, or another type. Empty
/// when the document fits.
pub fn misfits(doc: &Json, allowed: &Json, path: &str) -> Vec<String> {
    match (doc, allowed) {
        (Json::Object(d), Json::Object(a)) => d
            .iter()
            .flat_map(|(k, v)| match a.get(k) {
                Some(expected) => misfits(v, expected, &format!("{path}/{k}")),
                None => vec![format!("{path}/{k}: not in the schema")],
            })
            .collect(),
        (Json::Array(d), Json::Array(a)) => match (d.first(), a.first()) {
            (Some(item), Some(expected)) => misfits(item, expected, &format!("{path}[]")),
            (Some(_), None) => vec![format!("{path}[]: items not in the schema")],
            _ => Vec::new(),
        },
        (d, a) if d == a => Vec::new(),
        (d, a) => vec![format!("{path}: {d} where the schema has {a}")],
    }
}

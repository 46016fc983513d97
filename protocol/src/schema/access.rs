//! Reading typed fields out of automerge and making one change per edit. Readers are
//! lenient in the ways other writers differ from ours: a string may be a scalar or a Text
//! object (JavaScript writes Text by default), a number an int, uint or integral float.

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::{ChangeKind, Millis, SCHEMA_VERSION, SchemaError};

fn malformed(prefix: &str, key: &str, expected: &'static str) -> SchemaError {
    SchemaError::Malformed {
        path: format!("{prefix}{key}"),
        expected,
    }
}

fn missing(prefix: &str, key: &str) -> SchemaError {
    SchemaError::Missing {
        path: format!("{prefix}{key}"),
    }
}

pub(crate) fn opt_string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<Option<String>, SchemaError> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Ok(Some(s.to_string())),
            ScalarValue::Null => Ok(None),
            _ => Err(malformed(prefix, key, "a string")),
        },
        Some((Value::Object(ObjType::Text), id)) => Ok(Some(doc.text(&id)?)),
        Some(_) => Err(malformed(prefix, key, "a string")),
    }
}

pub(crate) fn string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<String, SchemaError> {
    opt_string(doc, obj, key, prefix)?.ok_or_else(|| missing(prefix, key))
}

pub(crate) fn opt_int<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<Option<i64>, SchemaError> {
    let bad = || malformed(prefix, key, "an integer");
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Ok(Some(*i)),
            ScalarValue::Uint(u) => i64::try_from(*u).map(Some).map_err(|_| bad()),
            // JavaScript numbers: integral floats within the exactly representable range.
            #[allow(clippy::cast_possible_truncation)]
            ScalarValue::F64(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                Ok(Some(*f as i64))
            }
            ScalarValue::Null => Ok(None),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

pub(crate) fn int<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<i64, SchemaError> {
    opt_int(doc, obj, key, prefix)?.ok_or_else(|| missing(prefix, key))
}

/// A non-negative integer that fits the target type.
pub(crate) fn count<R: ReadDoc, T: TryFrom<i64>>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<T, SchemaError> {
    let value = int(doc, obj, key, prefix)?;
    T::try_from(value).map_err(|_| malformed(prefix, key, "a non-negative integer in range"))
}

pub(crate) fn opt_bool<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
) -> Result<Option<bool>, SchemaError> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Boolean(b) => Ok(Some(*b)),
            ScalarValue::Null => Ok(None),
            _ => Err(malformed(prefix, key, "a boolean")),
        },
        Some(_) => Err(malformed(prefix, key, "a boolean")),
    }
}

/// The id of a nested object of the given type, if present.
pub(crate) fn opt_obj<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
    ty: ObjType,
) -> Result<Option<ObjId>, SchemaError> {
    let expected = match ty {
        ObjType::Map | ObjType::Table => "a map",
        ObjType::List => "a list",
        ObjType::Text => "a text",
    };
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Object(found), id)) if found == ty => Ok(Some(id)),
        Some((Value::Scalar(s), _)) if s.is_null() => Ok(None),
        Some(_) => Err(malformed(prefix, key, expected)),
    }
}

pub(crate) fn obj<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    prefix: &str,
    ty: ObjType,
) -> Result<ObjId, SchemaError> {
    opt_obj(doc, obj, key, prefix, ty)?.ok_or_else(|| missing(prefix, key))
}

/// The entries of a map whose values are maps, in key order: `(key, object id)`.
pub(crate) fn map_entries<R: ReadDoc>(
    doc: &R,
    map: &ObjId,
    prefix: &str,
) -> Result<Vec<(String, ObjId)>, SchemaError> {
    doc.keys(map)
        .map(|key| {
            let id = obj(doc, map, &key, prefix, ObjType::Map)?;
            Ok((key, id))
        })
        .collect()
}

/// A list of strings (scalars or texts).
pub(crate) fn string_list<R: ReadDoc>(
    doc: &R,
    list: &ObjId,
    path: &str,
) -> Result<Vec<String>, SchemaError> {
    let bad = || SchemaError::Malformed {
        path: path.to_owned(),
        expected: "a list of strings",
    };
    (0..doc.length(list))
        .map(|i| match doc.get(list, i)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned).ok_or_else(bad),
            Some((Value::Object(ObjType::Text), id)) => Ok(doc.text(&id)?),
            _ => Err(bad()),
        })
        .collect()
}

/// Checks `type` and `schema` at the root before anything else is read or written.
pub(crate) fn check_doc<R: ReadDoc>(doc: &R, expected: &'static str) -> Result<u64, SchemaError> {
    let found = opt_string(doc, &ROOT, "type", "")?;
    if found.as_deref() != Some(expected) {
        return Err(SchemaError::WrongDocType { expected, found });
    }
    check_schema(doc)
}

pub(crate) fn check_schema<R: ReadDoc>(doc: &R) -> Result<u64, SchemaError> {
    let schema: u64 = count(doc, &ROOT, "schema", "")?;
    if schema > SCHEMA_VERSION {
        return Err(SchemaError::UnsupportedSchema {
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(schema)
}

/// Runs `edit` as one automerge change stamped with `now`. If `edit` fails, the
/// transaction is dropped and rolled back, so a refused edit leaves no trace.
pub(crate) fn change<T>(
    doc: &mut Automerge,
    now: Millis,
    kind: ChangeKind,
    edit: impl FnOnce(&mut Transaction<'_>) -> Result<T, SchemaError>,
) -> Result<T, SchemaError> {
    let mut tx = doc.transaction();
    let out = edit(&mut tx)?;
    // automerge stores change times in whole seconds.
    tx.commit_with(
        CommitOptions::default()
            .with_message(kind.message())
            .with_time(now.div_euclid(1000)),
    );
    Ok(out)
}

/// The map entry `key` of `map`, or `NotFound`.
pub(crate) fn entry<R: ReadDoc>(
    doc: &R,
    map: &ObjId,
    key: &str,
    kind: &'static str,
    prefix: &str,
) -> Result<ObjId, SchemaError> {
    opt_obj(doc, map, key, prefix, ObjType::Map)?.ok_or_else(|| SchemaError::NotFound {
        kind,
        id: key.to_owned(),
    })
}

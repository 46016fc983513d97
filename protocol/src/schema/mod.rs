//! The documents Lotse keeps in automerge (a case, a volunteer's schedule) and the typed
//! layer that reads and writes them. Every write is one automerge change made of targeted
//! puts and splices, never a rewrite of a whole object, so concurrent edits on different
//! devices merge field by field and unknown fields written by newer clients survive.
//! Layout and versioning rules: protocol/README.md.

mod access;
pub mod appointment;
pub mod case;
pub mod generation;
pub mod history;
pub mod schedule;
pub mod shape;

use std::fmt;
use std::str::FromStr;

use automerge::{AutomergeError, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};

pub use appointment::{AppointmentId, AppointmentUpdate, AppointmentView, NewAppointment};
pub use case::{
    CASE_KINDS, CaseDoc, CaseSummary, CaseView, Correction, HoursChange, HoursId, HoursView,
    NewCase, NewHours, NewNote, NoteId, NoteView,
};
pub use history::{ChangeKind, Creators, HistoryEntry, authors_by_actor, creators, history};
pub use schedule::{AvailabilitySlot, NewSchedule, ScheduleDoc, ScheduleView};

/// The schema version this code writes and the highest it reads.
pub const SCHEMA_VERSION: u64 = 1;
/// The longest note text, in characters (Unicode code points).
pub const MAX_NOTE_CHARS: usize = case::MAX_NOTE;

/// Milliseconds since the Unix epoch. The crate has no clock: callers pass the time in.
pub type Millis = i64;

/// Why a document could not be read or an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("document is not a {expected} document (type: {found:?})")]
    WrongDocType {
        expected: &'static str,
        found: Option<String>,
    },
    #[error("document has schema {found}; this version reads up to {supported}")]
    UnsupportedSchema { found: u64, supported: u64 },
    #[error("document already holds a {0}")]
    AlreadyCreated(String),
    #[error("document lacks {path}")]
    Missing { path: String },
    #[error("{path} in the document is not {expected}")]
    Malformed {
        path: String,
        expected: &'static str,
    },
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("unknown status {0:?}")]
    UnknownStatus(String),
    #[error("language {0:?} is not an ISO 639-1 code (two lowercase letters)")]
    InvalidLanguage(String),
    #[error("appointment ends ({end}) before it starts ({start})")]
    EndBeforeStart { start: Millis, end: Millis },
    #[error("{field} must be between {min} and {max} minutes, got {value}")]
    MinutesOutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("{0:?} is not a calendar date (YYYY-MM-DD)")]
    InvalidDate(String),
    #[error("{0:?} is not a time of day (HH:MM)")]
    InvalidTime(String),
    #[error("weekday must be 1 (Monday) to 7 (Sunday), got {0}")]
    InvalidWeekday(u8),
    #[error("availability ends ({to}) before or when it starts ({from})")]
    EmptySlot { from: String, to: String },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must be {expected}")]
    InvalidToken {
        field: &'static str,
        expected: &'static str,
    },
    #[error("no {kind} with id {id:?}")]
    NotFound { kind: &'static str, id: String },
    #[error("edit at {pos} deleting {del} is outside a text of length {len}")]
    EditOutOfRange { pos: usize, del: usize, len: usize },
    #[error("automerge: {0}")]
    Automerge(#[source] Box<AutomergeError>),
}

impl From<AutomergeError> for SchemaError {
    fn from(e: AutomergeError) -> Self {
        Self::Automerge(Box::new(e))
    }
}

/// The topics a request or case can have (DOMAIN.md), as stored: lowercase German, ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    Gesundheit,
    Bildung,
    Erziehung,
    Arbeit,
    Beruf,
    Soziales,
    Wohnen,
    Behoerden,
}

impl Topic {
    pub const ALL: [Topic; 8] = [
        Topic::Gesundheit,
        Topic::Bildung,
        Topic::Erziehung,
        Topic::Arbeit,
        Topic::Beruf,
        Topic::Soziales,
        Topic::Wohnen,
        Topic::Behoerden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Gesundheit => "gesundheit",
            Topic::Bildung => "bildung",
            Topic::Erziehung => "erziehung",
            Topic::Arbeit => "arbeit",
            Topic::Beruf => "beruf",
            Topic::Soziales => "soziales",
            Topic::Wohnen => "wohnen",
            Topic::Behoerden => "behoerden",
        }
    }
}

impl FromStr for Topic {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| SchemaError::UnknownTopic(s.to_owned()))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Paused,
    Closed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Active, Status::Paused, Status::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Closed => "closed",
        }
    }
}

impl FromStr for Status {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| SchemaError::UnknownStatus(s.to_owned()))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which typed document a loaded automerge document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Case,
    Schedule,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Case => "case",
            DocKind::Schedule => "schedule",
        }
    }
}

/// The kind of a document, after checking its schema version. An empty document (nothing
/// synced yet) is `Missing { path: "type" }`.
pub fn doc_kind(doc: &impl ReadDoc) -> Result<DocKind, SchemaError> {
    let ty = access::opt_string(doc, &ROOT, "type", "")?;
    let kind = match ty.as_deref() {
        Some("case") => DocKind::Case,
        Some("schedule") => DocKind::Schedule,
        Some(other) => {
            return Err(SchemaError::WrongDocType {
                expected: "case or schedule",
                found: Some(other.to_owned()),
            });
        }
        None => {
            return Err(SchemaError::Missing {
                path: "type".into(),
            });
        }
    };
    access::check_schema(doc)?;
    Ok(kind)
}

/// The time of the newest change at the document's heads, from the change metadata
/// (which automerge keeps in whole seconds). `None` if no head carries a time.
pub fn last_change(doc: &automerge::Automerge) -> Option<Millis> {
    doc.get_heads()
        .iter()
        .filter_map(|h| doc.get_change_by_hash(h))
        .map(|c| c.timestamp())
        .filter(|t| *t > 0)
        .max()
        .map(|secs| secs.saturating_mul(1000))
}

/// A random key for an entry of a map (note, appointment, hours): concurrent adds on
/// different devices never pick the same key, so they never conflict.
fn new_entry_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

macro_rules! entry_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }
    };
}
pub(crate) use entry_id;

// Input validation, shared by the documents.

pub(crate) fn validate_language(code: &str) -> Result<(), SchemaError> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(SchemaError::InvalidLanguage(code.to_owned()))
    }
}

/// Validated and deduplicated, first occurrence kept.
pub(crate) fn normalise_languages(codes: &[String]) -> Result<Vec<String>, SchemaError> {
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for code in codes {
        validate_language(code)?;
        if !out.contains(code) {
            out.push(code.clone());
        }
    }
    Ok(out)
}

pub(crate) fn validate_len(field: &'static str, s: &str, max: usize) -> Result<(), SchemaError> {
    if s.chars().count() > max {
        Err(SchemaError::TooLong { field, max })
    } else {
        Ok(())
    }
}

pub(crate) fn validate_non_empty(
    field: &'static str,
    s: &str,
    max: usize,
) -> Result<(), SchemaError> {
    if s.trim().is_empty() {
        return Err(SchemaError::Empty(field));
    }
    validate_len(field, s, max)
}

pub(crate) fn validate_minutes(
    field: &'static str,
    value: u32,
    min: u32,
    max: u32,
) -> Result<(), SchemaError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SchemaError::MinutesOutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// `YYYY-MM-DD`, a real day of the proleptic Gregorian calendar.
pub(crate) fn validate_date(date: &str) -> Result<(), SchemaError> {
    let bad = || SchemaError::InvalidDate(date.to_owned());
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, SchemaError> {
        let part = &date[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if (1..=days).contains(&day) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `HH:MM` from 00:00 to 23:59; `24:00` only where `allow_midnight_end`.
pub(crate) fn validate_time(time: &str, allow_midnight_end: bool) -> Result<(), SchemaError> {
    let bad = || SchemaError::InvalidTime(time.to_owned());
    let b = time.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let hours = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    let minutes = u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0');
    let ok = (hours < 24 && minutes < 60) || (allow_midnight_end && hours == 24 && minutes == 0);
    if ok { Ok(()) } else { Err(bad()) }
}

/// A short machine word such as an hours `kind`: 1 to 32 of `a-z`, `0-9`, `-`, `_`.
pub(crate) fn validate_token(field: &'static str, s: &str) -> Result<(), SchemaError> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SchemaError::InvalidToken {
            field,
            expected: "1 to 32 characters of a-z, 0-9, - and _",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn enums_round_trip_through_strings_and_json() {
        for t in Topic::ALL {
            assert_eq!(t.as_str().parse::<Topic>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(matches!(
            "Bildung".parse::<Topic>(),
            Err(SchemaError::UnknownTopic(_))
        ));
        assert!(matches!(
            "done".parse::<Status>(),
            Err(SchemaError::UnknownStatus(_))
        ));
    }

    #[test]
    fn validation() {
        assert!(validate_language("de").is_ok());
        for bad in ["DE", "deu", "d", "", "d1", "dé"] {
            assert!(validate_language(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalise_languages(&["ar".into(), "de".into(), "ar".into()]).unwrap(),
            ["ar", "de"]
        );
        for good in ["2024-02-29", "2000-02-29", "1999-12-31", "2025-01-01"] {
            assert!(validate_date(good).is_ok(), "{good}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-1-01",
            "24-01-01x",
            "2024/01/01",
            "+024-01-01",
        ] {
            assert!(validate_date(bad).is_err(), "{bad}");
        }
        for good in ["00:00", "09:30", "23:59"] {
            assert!(validate_time(good, false).is_ok(), "{good}");
        }
        for bad in ["24:00", "9:30", "09:60", "0930", "ab:cd", "09:3０"] {
            assert!(validate_time(bad, false).is_err(), "{bad}");
        }
        assert!(validate_time("24:00", true).is_ok());
        assert!(validate_time("24:01", true).is_err());
        assert!(validate_minutes("minutes", 0, 1, 1440).is_err());
        assert!(validate_minutes("minutes", 1441, 1, 1440).is_err());
        assert!(validate_minutes("minutes", 1440, 1, 1440).is_ok());
        assert!(validate_token("kind", "begleitung").is_ok());
        assert!(validate_token("kind", "Begleitung").is_err());
        assert!(validate_token("kind", "").is_err());
        assert!(validate_non_empty("label", "  ", 10).is_err());
        assert!(validate_non_empty("label", "ABCDEFGHIJK", 10).is_err());
    }
}

//! Why a value was refused by the store's rules (`Volunteer::check_*`, `Request::check_*`,
//! `NewRequest::check`). One type for every resource, so that the API, the dashboard and
//! the public intake form refuse the same input and only word it differently: the API
//! answers `invalid_field` with the English text (`Display`); the pages word
//! [`Invalid::reason`] for people, each in its own voice.

use super::Volunteer;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("must not be empty")]
    Empty,
    #[error("at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("at least one language (ISO 639-1 code such as \"de\")")]
    NoLanguage,
    #[error("at most {max} languages")]
    TooManyLanguages { max: usize },
    #[error("{0:?} is not an ISO 639-1 language code (e.g. \"ar\", \"uk\", \"tr\")")]
    NotALanguage(String),
    #[error("{0:?} is not a topic; use one of {topics}", topics = Volunteer::TOPICS.join(", "))]
    NotATopic(String),
    #[error("{value:?} is not one of {allowed}", allowed = allowed.join(", "))]
    NotOneOf {
        value: String,
        allowed: &'static [&'static str],
    },
    #[error("at most {max} slots")]
    TooManySlots { max: usize },
    #[error("at most {max} trainings")]
    TooManyTrainings { max: usize },
    #[error("weekday is 1 (Monday) to 7 (Sunday)")]
    Weekday,
    #[error("times are \"HH:MM\", e.g. \"14:30\"")]
    Time,
    #[error("a slot must end after it starts")]
    SlotOrder,
    #[error("a date as YYYY-MM-DD, e.g. \"2026-03-04\"")]
    Date,
    #[error("a start and an end time are required")]
    NoTime,
    #[error("the time window must end after it starts")]
    EndBeforeStart,
    #[error("a time window of at most {hours} hours")]
    WindowTooLong { hours: i64 },
    #[error("the time window is over already")]
    InThePast,
    #[error("a whole number from {min} to {max}")]
    OutOfRange { min: i64, max: i64 },
}

impl Invalid {
    /// A stable code and its one detail (a limit or the value refused, else empty), for
    /// pages that word the refusal themselves.
    pub fn reason(&self) -> (&'static str, String) {
        match self {
            Self::Empty => ("empty", String::new()),
            Self::TooLong { max } => ("too_long", max.to_string()),
            Self::ControlCharacters => ("control_characters", String::new()),
            Self::NoLanguage => ("no_language", String::new()),
            Self::TooManyLanguages { max } => ("too_many_languages", max.to_string()),
            Self::NotALanguage(code) => ("not_a_language", code.clone()),
            Self::NotATopic(topic) => ("not_a_topic", topic.clone()),
            Self::NotOneOf { value, .. } => ("not_one_of", value.clone()),
            Self::TooManySlots { max } => ("too_many_slots", max.to_string()),
            Self::TooManyTrainings { max } => ("too_many_trainings", max.to_string()),
            Self::Weekday => ("weekday", String::new()),
            Self::Time => ("time", String::new()),
            Self::SlotOrder => ("slot_order", String::new()),
            Self::Date => ("date", String::new()),
            Self::NoTime => ("no_time", String::new()),
            Self::EndBeforeStart => ("end_before_start", String::new()),
            Self::WindowTooLong { hours } => ("window_too_long", hours.to_string()),
            Self::InThePast => ("in_the_past", String::new()),
            Self::OutOfRange { min, max } => ("out_of_range", format!("{min}–{max}")),
        }
    }
}

/// Free text as stored: trimmed, line breaks as `\n`, no other control characters, at most
/// `max` characters; `required` refuses an empty value.
pub fn check_text(value: &str, max: usize, required: bool) -> Result<String, Invalid> {
    let v = value.trim().replace("\r\n", "\n");
    if required && v.is_empty() {
        return Err(Invalid::Empty);
    }
    if v.chars().count() > max {
        return Err(Invalid::TooLong { max });
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::ControlCharacters);
    }
    Ok(v)
}

/// Like [`check_text`]; an empty value is `None`.
pub fn check_optional(value: &str, max: usize) -> Result<Option<String>, Invalid> {
    check_text(value, max, false).map(|v| Some(v).filter(|v| !v.is_empty()))
}

/// One of `allowed`, compared without case and surrounding spaces.
pub fn check_one_of(value: &str, allowed: &'static [&'static str]) -> Result<String, Invalid> {
    let v = value.trim().to_lowercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(Invalid::NotOneOf {
            value: value.trim().to_owned(),
            allowed,
        })
    }
}

//! JSON times: stored as milliseconds since the epoch, shown as RFC 3339 in UTC.

use serde::{Deserializer, Serializer, de::Error as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A moment in a record the API answers with: milliseconds since the epoch in the
/// database and in code, an RFC 3339 time in UTC in JSON, a `date-time` string in the
/// OpenAPI document. The type carries all three, so a time field needs no attributes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(transparent)]
#[schema(
    value_type = String,
    format = DateTime,
    description = "A time in UTC (RFC 3339), e.g. `2026-03-04T14:10:00.123Z`."
)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_ms(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn ms(self) -> i64 {
        self.0
    }
}

impl From<i64> for Timestamp {
    fn from(ms: i64) -> Self {
        Self(ms)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Self)
    }
}

pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

pub fn parse_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A date ("2026-03-04") and a time ("14:00") as typed into a form, in the network's
/// time zone (`matching::LOCAL_TZ`), to milliseconds; `None` when either is unreadable.
pub fn local_ms(date: &str, time: &str) -> Option<i64> {
    let dt: jiff::civil::DateTime = format!("{date}T{time}").parse().ok()?;
    let tz = jiff::tz::TimeZone::get(crate::matching::LOCAL_TZ).ok()?;
    Some(dt.to_zoned(tz).ok()?.timestamp().as_millisecond())
}

/// A moment in the network's time zone as Germans write it ("04.03.2026, 14:00 Uhr"), for
/// e-mails.
pub fn local_de(ms: i64) -> String {
    let Ok(tz) = jiff::tz::TimeZone::get(crate::matching::LOCAL_TZ) else {
        return format_ms(ms);
    };
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(tz).strftime("%d.%m.%Y, %H:%M Uhr").to_string())
        .unwrap_or_else(|_| format_ms(ms))
}

pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    parse_ms(&s)
        .ok_or_else(|| D::Error::custom("expected an RFC 3339 time such as 2026-03-04T14:00:00Z"))
}

pub mod option {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::serialize(ms, s),
            None => s.serialize_none(),
        }
    }

    #[allow(dead_code)]
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s: Option<String> = serde::Deserialize::deserialize(d)?;
        s.map(|s| {
            super::parse_ms(&s)
                .ok_or_else(|| <D::Error as serde::de::Error>::custom("expected an RFC 3339 time"))
        })
        .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn round_trip() {
        let ms = 1_772_633_400_123;
        let s = super::format_ms(ms);
        assert_eq!(s, "2026-03-04T14:10:00.123Z");
        assert_eq!(super::parse_ms(&s), Some(ms));
        assert_eq!(super::parse_ms("2026-03-04T15:10:00.123+01:00"), Some(ms));
        assert_eq!(super::parse_ms("yesterday"), None);
    }

    #[test]
    fn local_times_are_berlin() {
        // Winter (CET, +01:00) and summer (CEST, +02:00).
        assert_eq!(
            super::local_ms("2026-03-04", "14:00"),
            super::parse_ms("2026-03-04T13:00:00Z")
        );
        assert_eq!(
            super::local_ms("2026-07-01", "09:30"),
            super::parse_ms("2026-07-01T07:30:00Z")
        );
        assert_eq!(super::local_ms("2026-02-30", "09:30"), None);
        assert_eq!(super::local_ms("", "09:30"), None);
    }
}

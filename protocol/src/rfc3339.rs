//! RFC 3339 times as the server's JSON API writes them (`2026-03-04T14:10:00.123Z`), read
//! into milliseconds. Written here rather than taken from a date crate because the phone
//! needs only this one direction and a date library would be most of its size; the server
//! writes with the `time` crate and its offer test reads that back through this parser.

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::Millis;

/// `YYYY-MM-DDTHH:MM:SS[.fff]` with `Z` or `±HH:MM`, in ms. Digits after the third
/// fractional one are dropped (the server writes ms).
pub fn parse(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        millis = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    Some(secs * 1000 + millis)
}

/// For `#[serde(deserialize_with = "crate::rfc3339::deserialize")]`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s)
        .ok_or_else(|| D::Error::custom("expected an RFC 3339 time such as 2026-03-04T14:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn times_parse() {
        assert_eq!(parse("2026-03-04T14:10:00.123Z"), Some(1_772_633_400_123));
        assert_eq!(
            parse("2026-03-04T15:10:00.123+01:00"),
            Some(1_772_633_400_123)
        );
        assert_eq!(parse("2026-03-04T14:10:00Z"), Some(1_772_633_400_000));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2000-02-29T00:00:00.5Z"), Some(951_782_400_500));
        for bad in [
            "",
            "yesterday",
            "2026-03-04",
            "2026-13-04T14:10:00Z",
            "2026-03-04T14:10:00",
            "2026-03-04T14:10:00.Z",
            "2026-03-04T14:10:00+0100",
            "2026-03-04T14:10:00Zx",
            "2026-03-04T1ä:10:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

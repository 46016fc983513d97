//! The push notice: the JSON the server encrypts into a Web Push message and the phone (or
//! a coordinator's browser) decrypts. It carries no personal data (a request id, a topic,
//! language codes, a time window, the kind of notice), never names, places or notes, and
//! stays far below the 4 KB a push service accepts. Encryption is not here: the server
//! and the phone each do their half of RFC 8291.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::code::code_enum;

/// The payload format this code writes. Readers take any version from 1 on and ignore
/// fields they do not know, so a newer server can add fields without breaking old phones.
pub const PAYLOAD_VERSION: u32 = 1;

/// Upper bound of a payload [`PushPayload::new`] makes, serialised. RFC 8291 leaves 3993
/// bytes of a 4096-byte record; the web-push crate refuses more than 3052. The fields are
/// capped so that even the worst input (all characters JSON-escaped) stays below this; a
/// real notice is about 200 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 3000;

/// What [`PushPayload::parse`] reads at most: a push service delivers at most 4096 bytes,
/// so a larger plaintext is not a notice (larger than what we write, so that a newer
/// server's extra fields still fit).
pub const MAX_READ_BYTES: usize = 4096;

const MAX_ID_CHARS: usize = 64;
const MAX_TOPIC_CHARS: usize = 64;
const MAX_LANGUAGES: usize = 16;
const MAX_LANGUAGE_CHARS: usize = 16;

code_enum! {
    /// What a notice is about: to volunteers' phones `offer`, `taken` and `cancelled`; to
    /// coordinators' browsers `new_request` and `accepted`.
    pub enum PushKind {
        /// A request is offered to this volunteer.
        Offer = "offer",
        /// Another volunteer took it.
        Taken = "taken",
        /// The coordinator cancelled it.
        Cancelled = "cancelled",
        /// A request came in through the intake form.
        NewRequest = "new_request",
        /// A volunteer accepted a request.
        Accepted = "accepted",
    }
}

/// A notice as it travels (JSON, format version in `v`). The app fetches the offer
/// itself; this only says that something happened to which request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPayload {
    /// Payload format version ([`PAYLOAD_VERSION`] when written, at least 1).
    #[serde(rename = "v")]
    pub version: u32,
    pub kind: PushKind,
    pub request_id: String,
    /// Topic code, e.g. `behoerden`.
    pub topic: String,
    /// Language codes, e.g. `["ar", "de"]`.
    pub languages: Vec<String>,
    /// ms since the epoch.
    pub window_start: Millis,
    pub window_end: Millis,
}

/// Why a decrypted push message is not a notice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("longer than {MAX_READ_BYTES} bytes")]
    TooLarge,
    /// Not JSON, or not the agreed fields; serde's message names the field and position.
    #[error("{0}")]
    Malformed(String),
    #[error("format version {0}")]
    UnsupportedVersion(u32),
}

fn capped(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl PushPayload {
    /// A payload in the current format. Every field is cut to its cap, so that
    /// [`Self::to_json`] stays within [`MAX_PAYLOAD_BYTES`] whatever the input.
    pub fn new(
        kind: PushKind,
        request_id: &str,
        topic: &str,
        languages: &[String],
        window_start: Millis,
        window_end: Millis,
    ) -> Self {
        Self {
            version: PAYLOAD_VERSION,
            // An unknown kind is already cut to its cap by `from_code`.
            kind,
            request_id: capped(request_id, MAX_ID_CHARS),
            topic: capped(topic, MAX_TOPIC_CHARS),
            languages: languages
                .iter()
                .take(MAX_LANGUAGES)
                .map(|l| capped(l, MAX_LANGUAGE_CHARS))
                .collect(),
            window_start,
            window_end,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, a list of strings and integers serialise")
    }

    /// Reads a decrypted payload: unknown fields are ignored and unknown kinds kept, so a
    /// newer server's notices still arrive; the agreed fields must be there.
    pub fn parse(plain: &[u8]) -> Result<Self, PayloadError> {
        if plain.len() > MAX_READ_BYTES {
            return Err(PayloadError::TooLarge);
        }
        let payload: Self =
            serde_json::from_slice(plain).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if payload.version == 0 {
            return Err(PayloadError::UnsupportedVersion(0));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offer() -> PushPayload {
        PushPayload::new(
            PushKind::Offer,
            "6f1c2a9e-3b1d-4c55-9a5e-0f8e2b7d1c44",
            "behoerden",
            &["ar".into(), "de".into()],
            1_800_000_000_000,
            1_800_007_200_000,
        )
    }

    #[test]
    fn round_trips_with_the_agreed_keys() {
        for kind in PushKind::KNOWN.iter().cloned().chain([PushKind::Unknown {
            code: "reminder".into(),
        }]) {
            let payload = PushPayload { kind, ..offer() };
            let json = payload.to_json();
            assert_eq!(PushPayload::parse(json.as_bytes()).unwrap(), payload);
        }
        let json: serde_json::Value = serde_json::from_str(&offer().to_json()).unwrap();
        assert_eq!(
            crate::testing::sorted_keys(&json),
            [
                "kind",
                "languages",
                "request_id",
                "topic",
                "v",
                "window_end",
                "window_start"
            ]
        );
        assert_eq!(json["v"], 1);
        assert_eq!(json["kind"], "offer");
        assert_eq!(json["languages"], serde_json::json!(["ar", "de"]));
    }

    #[test]
    fn stays_small_whatever_the_input() {
        let payload = PushPayload::new(
            PushKind::from_code(&"\u{1}".repeat(1000)),
            &"\u{2}".repeat(10_000),
            &"\u{1}".repeat(10_000),
            &vec!["\u{7f}\u{1}ä".repeat(100); 1000],
            i64::MIN,
            i64::MAX,
        );
        let json = payload.to_json();
        assert!(json.len() <= MAX_PAYLOAD_BYTES, "{}", json.len());
        assert_eq!(PushPayload::parse(json.as_bytes()).unwrap(), payload);
    }

    #[test]
    fn newer_servers_are_understood() {
        let later = PushPayload::parse(
            br#"{"v":2,"kind":"reminder","request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2,"new":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!(later.version, 2);
        assert_eq!(
            later.kind,
            PushKind::Unknown {
                code: "reminder".into()
            }
        );
        assert!(!later.kind.is_known());
    }

    #[test]
    fn refuses_what_is_not_a_notice() {
        for bad in [
            &b"not json"[..],
            b"",
            b"[]",
            b"null",
            br#"{"v":1,"kind":"offer"}"#,
            br#"{"v":1,"kind":7,"request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2}"#,
            br#"{"v":1,"kind":"offer","request_id":"x","topic":"t","languages":"ar","window_start":1,"window_end":2}"#,
            br#"{"v":1,"kind":"offer","request_id":"x","topic":"t","languages":[],"window_start":1.5,"window_end":2}"#,
            br#"{"v":-1,"kind":"offer","request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2}"#,
            b"\xff\xfe{}",
        ] {
            assert!(
                matches!(PushPayload::parse(bad), Err(PayloadError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            PushPayload::parse(
                br#"{"v":0,"kind":"offer","request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2}"#
            ),
            Err(PayloadError::UnsupportedVersion(0))
        );
        // Too large is refused before any parsing, even if it were valid JSON.
        let mut big = offer().to_json().into_bytes();
        big.pop();
        big.extend(format!(",\"pad\":\"{}\"}}", " ".repeat(MAX_READ_BYTES)).bytes());
        assert_eq!(PushPayload::parse(&big), Err(PayloadError::TooLarge));
    }
}

//! What a push says, and for how long: the payload carries no personal data (a request
//! id, a topic, language codes, a time window, the kind of notice), never names, places
//! or notes, and stays far below the 4 KB a push service accepts. It is made here, in the
//! store, because the requests code queues notices inside its own transactions
//! (`enqueue_each` in `push.rs`); encrypting and sending them is `crate::push`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{NoticeKind, OutboxEntry};

/// Upper bound of a serialised payload (plaintext). RFC 8291 leaves 3993 bytes of a
/// 4096-byte record; web-push refuses more than 3052. Our fields are capped so that even
/// the worst input (all characters JSON-escaped) stays below this; a real notice is
/// about 200 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 3000;

const MAX_ID_CHARS: usize = 64;
const MAX_TOPIC_CHARS: usize = 64;
const MAX_LANGUAGES: usize = 16;
const MAX_LANGUAGE_CHARS: usize = 16;

const HOUR_MS: i64 = 3_600_000;
/// An offer is worth delivering until the request starts, but never longer than this.
pub const OFFER_MAX_TTL_MS: i64 = 24 * HOUR_MS;
/// Even a last-minute offer gets this long to reach a phone.
pub const OFFER_MIN_TTL_MS: i64 = 60_000;
/// "Taken" and "cancelled" matter for an hour; later the app learns it at its next sync.
pub const UPDATE_TTL_MS: i64 = HOUR_MS;

/// A notice about a request, for volunteers' phones or coordinators' browsers. Times are
/// ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub request_id: String,
    /// The request's topic code, e.g. `behoerden`.
    pub topic: String,
    /// Language codes, e.g. `["ar", "de"]`.
    pub languages: Vec<String>,
    pub window_start: i64,
    pub window_end: i64,
}

/// The JSON a phone decrypts (format version 1). Clients ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub v: u32,
    /// To phones `offer`, `taken` or `cancelled`; to coordinators' browsers
    /// `new_request` or `accepted`.
    pub kind: String,
    pub request_id: String,
    pub topic: String,
    pub languages: Vec<String>,
    /// ms since the epoch.
    pub window_start: i64,
    pub window_end: i64,
}

pub fn kind_code(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Offer => "offer",
        NoticeKind::Taken => "taken",
        NoticeKind::Cancelled => "cancelled",
        NoticeKind::NewRequest => "new_request",
        NoticeKind::Accepted => "accepted",
    }
}

/// The Web Push `Topic` of a notice: the same request and kind give the same topic, so
/// a repeat replaces a message still waiting at the push service instead of adding one.
/// 24 bytes of a SHA-256, base64url: exactly 32 characters (RFC 8030 section 5.4).
pub fn push_topic(request_id: &str, kind: NoticeKind) -> String {
    let mut h = Sha256::new();
    h.update(b"lotse push topic\0");
    h.update(request_id.as_bytes());
    h.update(b"\0");
    h.update(kind_code(kind).as_bytes());
    URL_SAFE_NO_PAD.encode(&h.finalize()[..24])
}

fn capped(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A notice made ready for the outbox at a given time.
pub(crate) struct Prepared {
    kind: &'static str,
    push_topic: String,
    payload: String,
    urgency: &'static str,
    expires_at: i64,
}

impl Prepared {
    pub(crate) fn entry(&self) -> OutboxEntry<'_> {
        OutboxEntry {
            kind: self.kind,
            push_topic: &self.push_topic,
            payload: &self.payload,
            urgency: self.urgency,
            expires_at: self.expires_at,
        }
    }
}

impl Notice {
    pub fn payload(&self) -> Payload {
        Payload {
            v: 1,
            kind: kind_code(self.kind).to_owned(),
            request_id: capped(&self.request_id, MAX_ID_CHARS),
            topic: capped(&self.topic, MAX_TOPIC_CHARS),
            languages: self
                .languages
                .iter()
                .take(MAX_LANGUAGES)
                .map(|l| capped(l, MAX_LANGUAGE_CHARS))
                .collect(),
            window_start: self.window_start,
            window_end: self.window_end,
        }
    }

    /// Until when delivering this notice still makes sense (ms): an offer or a new
    /// request until the request starts (at least a minute, at most a day), an update for
    /// an hour.
    pub fn expires_at(&self, now: i64) -> i64 {
        match self.kind {
            NoticeKind::Offer | NoticeKind::NewRequest => self
                .window_start
                .clamp(now + OFFER_MIN_TTL_MS, now + OFFER_MAX_TTL_MS),
            NoticeKind::Taken | NoticeKind::Cancelled | NoticeKind::Accepted => now + UPDATE_TTL_MS,
        }
    }

    /// The Web Push `Urgency`: an offer wakes the phone, updates can wait for it. A
    /// coordinator's browser is on a desk with power: normal is enough.
    pub fn urgency(&self) -> &'static str {
        match self.kind {
            NoticeKind::Offer => "high",
            NoticeKind::Taken
            | NoticeKind::Cancelled
            | NoticeKind::NewRequest
            | NoticeKind::Accepted => "normal",
        }
    }

    pub(crate) fn prepare(&self, now: i64) -> Prepared {
        let payload = serde_json::to_string(&self.payload()).expect("plain data serialises");
        debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        Prepared {
            kind: kind_code(self.kind),
            push_topic: push_topic(&self.request_id, self.kind),
            payload,
            urgency: self.urgency(),
            expires_at: self.expires_at(now),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            request_id: "6f1c2a9e-3b1d-4c55-9a5e-0f8e2b7d1c44".into(),
            topic: "behoerden".into(),
            languages: vec!["ar".into(), "de".into()],
            window_start: 1_800_000_000_000,
            window_end: 1_800_000_000_000 + 2 * HOUR_MS,
        }
    }

    #[test]
    fn payload_has_only_the_agreed_fields() {
        let json: serde_json::Value =
            serde_json::from_str(&notice(NoticeKind::Offer).prepare(0).payload).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
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
        assert_eq!(json["kind"], "offer");
        assert_eq!(json["languages"], serde_json::json!(["ar", "de"]));
    }

    #[test]
    fn payload_stays_small_whatever_the_input() {
        let mut n = notice(NoticeKind::Cancelled);
        n.request_id = "\u{2}".repeat(10_000);
        n.topic = "\u{1}".repeat(10_000);
        n.languages = vec!["\u{7f}\u{1}ä".repeat(100); 1000];
        n.window_start = i64::MIN;
        n.window_end = i64::MAX;
        let p = n.prepare(0);
        assert!(p.payload.len() <= MAX_PAYLOAD_BYTES, "{}", p.payload.len());
    }

    #[test]
    fn topic_is_32_base64url_chars_and_differs_by_kind() {
        let offer = push_topic("r1", NoticeKind::Offer);
        assert_eq!(offer.len(), 32);
        assert!(
            offer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(offer, push_topic("r1", NoticeKind::Offer));
        assert_ne!(offer, push_topic("r1", NoticeKind::Taken));
        assert_ne!(offer, push_topic("r2", NoticeKind::Offer));
    }

    #[test]
    fn ttl_follows_the_kind() {
        let now = 1_000_000;
        let mut offer = notice(NoticeKind::Offer);
        offer.window_start = now + 3 * HOUR_MS;
        assert_eq!(offer.expires_at(now), now + 3 * HOUR_MS);
        offer.window_start = now + 72 * HOUR_MS;
        assert_eq!(offer.expires_at(now), now + 24 * HOUR_MS);
        offer.window_start = now - HOUR_MS;
        assert_eq!(offer.expires_at(now), now + OFFER_MIN_TTL_MS);
        assert_eq!(
            notice(NoticeKind::Taken).expires_at(now),
            now + UPDATE_TTL_MS
        );
        assert_eq!(offer.urgency(), "high");
        assert_eq!(notice(NoticeKind::Cancelled).urgency(), "normal");
    }
}

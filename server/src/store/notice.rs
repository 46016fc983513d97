//! What a push says, and for how long. The payload itself (its fields, kind codes, caps
//! and format version) is `lotse_protocol::notice`'s, shared with the phone that reads it;
//! here a request's notice becomes that payload, with the Web Push headers that decide its
//! delivery (TTL, Urgency, Topic). It is made in the store because the requests code
//! queues notices inside its own transactions (`enqueue_each` in `push.rs`); encrypting
//! and sending them is `crate::push`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lotse_protocol::PushKind;
use sha2::{Digest, Sha256};

use super::{NoticeKind, OutboxEntry};

/// Under their old names: the bench and the push tests read payloads with these.
pub use lotse_protocol::notice::{MAX_PAYLOAD_BYTES, PushPayload as Payload};

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

impl From<NoticeKind> for PushKind {
    fn from(kind: NoticeKind) -> Self {
        match kind {
            NoticeKind::Offer => Self::Offer,
            NoticeKind::Taken => Self::Taken,
            NoticeKind::Cancelled => Self::Cancelled,
            NoticeKind::NewRequest => Self::NewRequest,
            NoticeKind::Accepted => Self::Accepted,
        }
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
    h.update(PushKind::from(kind).code().as_bytes());
    URL_SAFE_NO_PAD.encode(&h.finalize()[..24])
}

/// A notice made ready for the outbox at a given time.
pub(crate) struct Prepared {
    kind: PushKind,
    push_topic: String,
    payload: String,
    urgency: &'static str,
    expires_at: i64,
}

impl Prepared {
    pub(crate) fn entry(&self) -> OutboxEntry<'_> {
        OutboxEntry {
            kind: self.kind.code(),
            push_topic: &self.push_topic,
            payload: &self.payload,
            urgency: self.urgency,
            expires_at: self.expires_at,
        }
    }
}

impl Notice {
    pub fn payload(&self) -> Payload {
        Payload::new(
            self.kind.into(),
            &self.request_id,
            &self.topic,
            &self.languages,
            self.window_start,
            self.window_end,
        )
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
        let payload = self.payload().to_json();
        debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        Prepared {
            kind: self.kind.into(),
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

    /// The fields, caps and codes are the protocol's (tested there); here: every kind
    /// the requests code sends reaches the phone as a kind it knows, and the outbox row
    /// carries the same code.
    #[test]
    fn every_kind_travels_as_a_known_code() {
        for kind in [
            NoticeKind::Offer,
            NoticeKind::Taken,
            NoticeKind::Cancelled,
            NoticeKind::NewRequest,
            NoticeKind::Accepted,
        ] {
            let prepared = notice(kind).prepare(0);
            let read = Payload::parse(prepared.payload.as_bytes()).unwrap();
            assert_eq!(read, notice(kind).payload());
            assert!(read.kind.is_known(), "{kind:?}");
            assert_eq!(prepared.entry().kind, read.kind.code());
        }
        let mut n = notice(NoticeKind::Cancelled);
        n.request_id = "\u{2}".repeat(10_000);
        n.languages = vec!["\u{7f}\u{1}ä".repeat(100); 1000];
        assert!(n.prepare(0).payload.len() <= MAX_PAYLOAD_BYTES);
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

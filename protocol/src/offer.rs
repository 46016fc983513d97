//! An offer of a request to a volunteer, as the server's offers API sends it
//! (`GET /api/v1/offers`, `POST /api/v1/offers/{id}/accept` and `.../decline`): the offer
//! statuses, the JSON field names, and the reader the phone uses.
//!
//! Why the server keeps a struct of its own: it documents its answers with utoipa's
//! `ToSchema`, which must be derived in the server's crate (utoipa stays out of this one),
//! and it writes times with its own RFC 3339 formatter. So this module owns what both sides
//! must agree on, and each side checks itself against it: the statuses ([`OfferStatus`],
//! which the server writes), the field names ([`OFFER_FIELDS`], [`ASSIGNMENT_FIELDS`],
//! which the server's test compares with the keys it serialises) and the reader
//! ([`Offer`], which the server's test reads its JSON back with, and whose test here shows
//! that renaming any listed key changes what the phone gets). A field renamed on either
//! side fails a test.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::code::code_enum;

code_enum! {
    /// Where an offer stands for the volunteer it was made to.
    pub enum OfferStatus {
        /// Waiting for this volunteer's answer.
        Offered = "offered",
        /// This volunteer has the request.
        Accepted = "accepted",
        /// This volunteer said no (they may still accept while nobody else has).
        Declined = "declined",
        /// Another volunteer accepted first.
        Taken = "taken",
        /// The request was cancelled or expired, or the offer taken back.
        Withdrawn = "withdrawn",
    }
}

/// The keys of an offer in JSON, in the server's order. `assignment` is left out when
/// the caller did not get the request.
pub const OFFER_FIELDS: [&str; 11] = [
    "id",
    "topic",
    "languages",
    "starts_at",
    "ends_at",
    "place_area",
    "urgency",
    "institution_kind",
    "description",
    "status",
    "assignment",
];

/// The keys of an offer's `assignment`.
pub const ASSIGNMENT_FIELDS: [&str; 4] =
    ["place_address", "institution_name", "contact", "case_id"];

/// An offer as the phone reads it. Unknown fields are ignored and unknown statuses kept,
/// so a newer server's offers still show; times (RFC 3339 on the wire) become ms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Offer {
    /// The request id (UUID); also the offer's id in `/api/v1/offers/{id}/...`.
    pub id: String,
    pub topic: String,
    pub languages: Vec<String>,
    #[serde(deserialize_with = "crate::rfc3339::deserialize")]
    pub starts_at: Millis,
    #[serde(deserialize_with = "crate::rfc3339::deserialize")]
    pub ends_at: Millis,
    /// Coarse area (district); the exact address comes with the assignment.
    pub place_area: String,
    pub urgency: String,
    pub institution_kind: String,
    pub description: String,
    pub status: OfferStatus,
    /// Only for the volunteer who got the request.
    pub assignment: Option<Assignment>,
}

/// What the volunteer who got the request learns besides the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub place_address: Option<String>,
    pub institution_name: String,
    pub contact: Option<String>,
    /// The case document shared with the volunteer.
    pub case_id: Option<String>,
}

/// The answer to a decline: the offer's status after it (declined, or what it already was).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Declined {
    pub status: OfferStatus,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn full() -> Value {
        json!({
            "id": "6f1c2d3e-0000-4000-8000-000000000001",
            "topic": "behoerden",
            "languages": ["ar", "de"],
            "starts_at": "2026-03-04T14:10:00.123Z",
            "ends_at": "2026-03-04T16:10:00Z",
            "place_area": "Nordstadt",
            "urgency": "normal",
            "institution_kind": "jobcenter",
            "description": "Termin",
            "status": "accepted",
            "assignment": {
                "place_address": "Hauptstr. 1",
                "institution_name": "Jobcenter Nord",
                "contact": "0123",
                "case_id": "2dKhP2bUGKFa87U5RquAXHtyfVfM",
            },
        })
    }

    fn read(v: Value) -> Result<Offer, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn reads_the_servers_offer() {
        let offer = read(full()).unwrap();
        assert_eq!(offer.starts_at, 1_772_633_400_123);
        assert_eq!(offer.ends_at, 1_772_640_600_000);
        assert_eq!(offer.status, OfferStatus::Accepted);
        assert_eq!(
            offer.assignment.unwrap().case_id.as_deref(),
            Some("2dKhP2bUGKFa87U5RquAXHtyfVfM")
        );
        let mut listed = OFFER_FIELDS.to_vec();
        listed.sort_unstable();
        assert_eq!(
            crate::testing::sorted_keys(&full()),
            listed,
            "the sample has exactly the listed keys"
        );
    }

    /// Every listed key is one the reader reads: renamed, the offer does not read or
    /// reads differently. So the lists cannot drift from the struct.
    #[test]
    fn renaming_any_listed_key_changes_what_is_read() {
        let expected = read(full()).unwrap();
        let renamed = |mut v: Value, path: &[&str]| {
            let (last, parents) = path.split_last().unwrap();
            let mut obj = &mut v;
            for p in parents {
                obj = &mut obj[*p];
            }
            let map = obj.as_object_mut().unwrap();
            let value = map.remove(*last).unwrap();
            map.insert(format!("{last}_renamed"), value);
            v
        };
        for key in OFFER_FIELDS {
            let got = read(renamed(full(), &[key]));
            assert_ne!(got.ok().as_ref(), Some(&expected), "{key}");
        }
        for key in ASSIGNMENT_FIELDS {
            let got = read(renamed(full(), &["assignment", key]));
            assert_ne!(got.ok().as_ref(), Some(&expected), "assignment.{key}");
        }
        // Without an assignment, and with fields of a newer server.
        let mut v = full();
        let map = v.as_object_mut().unwrap();
        map.remove("assignment");
        map.insert("rating".into(), json!({"stars": 5}));
        assert_eq!(read(v).unwrap().assignment, None);
    }

    #[test]
    fn statuses_have_their_codes_and_unknown_ones_are_kept() {
        let codes: Vec<&str> = OfferStatus::KNOWN.iter().map(OfferStatus::code).collect();
        assert_eq!(
            codes,
            ["offered", "accepted", "declined", "taken", "withdrawn"]
        );
        let mut v = full();
        v["status"] = json!("paused");
        assert_eq!(
            read(v).unwrap().status,
            OfferStatus::Unknown {
                code: "paused".into()
            }
        );
        let declined: Declined = serde_json::from_value(json!({"status": "taken"})).unwrap();
        assert_eq!(declined.status, OfferStatus::Taken);
    }

    #[test]
    fn refuses_unreadable_times() {
        for bad in [
            json!("2026-03-04"),
            json!(1_772_633_400_123_i64),
            json!(null),
        ] {
            let mut v = full();
            v["starts_at"] = bad.clone();
            assert!(read(v).is_err(), "{bad}");
        }
    }
}

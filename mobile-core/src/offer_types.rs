//! What the API says about offers: an offer as the phone shows it, the list, the phone's
//! answers and the server's outcome. Plain data, kept apart from `offers.rs` (which
//! fetches, stores and sends them) so that `events`, which hands answers to listeners,
//! does not depend on `offers`, which reaches `events` through the shared state.

use lotse_protocol::Millis;
use lotse_protocol::offer::Offer;
use serde::{Deserialize, Serialize};

/// The exact place and the case, for the volunteer who got the request; as the server
/// sends it.
pub use lotse_protocol::offer::Assignment;

/// An offer as the phone shows it and stores it (times in ms since the epoch). The server's
/// JSON is read with `lotse_protocol::offer::Offer` and converted; this one adds the phone's
/// answer and keeps the status as text, so a status from a newer server still shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRecord {
    /// The request id (UUID); pass it to `accept_offer` / `decline_offer`.
    pub id: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: Millis,
    pub ends_at: Millis,
    /// Coarse area (district); the exact address comes with the assignment.
    pub place_area: String,
    pub urgency: String,
    pub institution_kind: String,
    pub description: String,
    /// As the server last said: offered, accepted, declined, taken, withdrawn.
    pub status: String,
    /// For the volunteer who got the request.
    pub assignment: Option<Assignment>,
    /// This phone's answer, if any (queued or settled).
    #[serde(skip)]
    pub answer: Option<OfferAnswer>,
}

impl From<Offer> for OfferRecord {
    fn from(o: Offer) -> Self {
        Self {
            id: o.id,
            topic: o.topic,
            languages: o.languages,
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            place_area: o.place_area,
            urgency: o.urgency,
            institution_kind: o.institution_kind,
            description: o.description,
            status: o.status.code().to_owned(),
            assignment: o.assignment,
            answer: None,
        }
    }
}

/// The offers with where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferList {
    pub offers: Vec<OfferRecord>,
    /// When the list was fetched from the server (ms); `None`: never.
    pub fetched_at: Option<Millis>,
    /// `false`: the server could not be asked (offline); this is the stored list.
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferAction {
    Accept,
    Decline,
}

/// What the server decided about an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferOutcome {
    /// This volunteer has the request; the case document is shared with them.
    Won {
        case_id: Option<String>,
    },
    /// Another volunteer accepted first.
    AlreadyTaken,
    /// The request was cancelled, expired or otherwise closed.
    Closed,
    Declined,
    /// The server has no offer of this request to this volunteer.
    NotOffered,
    /// The server refused the answer for another reason (its error code).
    Refused {
        code: String,
    },
}

/// An answer to an offer: queued until `outcome` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAnswer {
    pub request_id: String,
    pub action: OfferAction,
    /// When the volunteer answered on the phone (ms).
    pub answered_at: Millis,
    /// `None`: queued, not yet confirmed by the server.
    pub outcome: Option<OfferOutcome>,
    /// When the outcome arrived (ms).
    pub decided_at: Option<Millis>,
}

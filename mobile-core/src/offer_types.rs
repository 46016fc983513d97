//! What the API says about offers: an offer as the phone shows it, the list, the phone's
//! answers and the server's outcome. Plain data, kept apart from `offers.rs` (which
//! fetches, stores and sends them) so that `events`, which hands answers to listeners,
//! does not depend on `offers`, which reaches `events` through the shared state.

use lotse_protocol::Millis;
use serde::{Deserialize, Serialize};

/// An offer as the phone shows it. Times are ms since the epoch.
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub place_address: Option<String>,
    pub institution_name: String,
    pub contact: Option<String>,
    pub case_id: Option<String>,
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

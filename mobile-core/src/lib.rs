//! lotse-core: the volunteer phone's core. An encrypted offline store of the case and
//! schedule documents ([`repo`] over [`db`], encrypted by [`crypto`]), the sync client for
//! the Lotse server ([`sync`]), the pure-Rust API ([`Client`]) and, in [`ffi`], the thin
//! uniffi layer the Android and iOS apps call. See README.md.

mod client;
mod crypto;
mod db;
mod error;
mod events;
pub mod ffi;
mod generations;
mod offer_types;
mod offers;
mod push;
mod repo;
mod shared;
mod sync;
mod tls;

pub use client::{
    AppointmentInput, CaseDetail, CaseItem, Client, Config, Enrollment, HoursInput, LeaseStatus,
    MAX_TIME, MIN_TIME, MonthTotal, NewCaseInput, ScheduledAppointment,
};
pub use error::{Error, Result};
pub use events::{CaseReplaced, DroppedEdit, Listener, Subscription, SyncState};
pub use offer_types::{Assignment, OfferAction, OfferAnswer, OfferList, OfferOutcome, OfferRecord};
pub use offers::parse_rfc3339;
pub use push::{PushError, PushEvent, PushKeys, PushKind, PushSubscriptionKeys};
pub use repo::SyncStatus;

// uniffi's derives name `crate::UniFfiTag`; the scaffolding itself lives in `ffi`.
#[doc(hidden)]
pub use ffi::UniFfiTag;

/// Re-exported so callers use exactly the protocol types this crate was built with.
pub use lotse_protocol;

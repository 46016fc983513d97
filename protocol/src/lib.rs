//! Lotse protocol: everything the server and the phone must agree on, without I/O and
//! without a clock. Document ids, the automerge-repo wire messages and our catch-up
//! extension, the per-(peer, document) sync session, the typed document schemas, and the
//! JSON the server's push notices and offers API carry.

pub mod catchup;
pub mod code;
pub mod docid;
pub mod notice;
pub mod offer;
pub mod peer;
pub mod quota;
pub mod rfc3339;
pub mod schema;
pub mod session;
pub mod wire;

#[cfg(test)]
mod testing;

pub use catchup::{CatchupPlan, digest, heads_digest, plan};
pub use docid::{DocumentId, DocumentIdError};
pub use notice::{PayloadError, PushKind, PushPayload};
pub use offer::OfferStatus;
pub use peer::{ClientPeer, ServerPeer};
pub use schema::{
    AppointmentId, AppointmentUpdate, AppointmentView, AvailabilitySlot, CaseDoc, CaseSummary,
    CaseView, DocKind, HoursId, HoursView, Millis, NewAppointment, NewCase, NewHours, NewNote,
    NewSchedule, NoteId, NoteView, SCHEMA_VERSION, ScheduleDoc, ScheduleView, SchemaError, Status,
    Topic, doc_kind, last_change,
};
pub use session::{DocSync, SessionError, load_doc, save_incremental, save_snapshot};
pub use wire::{HeadsInfo, Message, PROTOCOL_VERSION, PeerMetadata, Superseded, WireError};

/// Re-exported so callers use exactly the automerge this crate was built with.
pub use automerge;

//! The uniffi skin over [`crate::Client`] for Kotlin, Swift and Python: one object,
//! [`LotseClient`], records as plain data, one error enum whose variants carry a `reason`
//! (never `message`: it clashes with Kotlin's `Throwable.message`). Conversions and the
//! parsing of ids happen here; nothing else in the crate knows about uniffi.
//!
//! Threading: short local calls block the calling thread (call them off the UI thread);
//! `enroll` and `sync_now` are async (Kotlin `suspend`, Swift `async`, Python coroutine)
//! and run on the crate's own runtime. Listener callbacks arrive on a Rust thread.
// uniffi's generated scaffolding is `extern "C"` code with raw buffers.
#![allow(unsafe_code)]

use std::sync::{Arc, Mutex};

use lotse_protocol::{
    AppointmentId, AppointmentUpdate, AppointmentView, AvailabilitySlot, DocumentId, HoursView,
    NoteId, NoteView, Status, Topic,
};

use crate::client::{
    AppointmentInput, CaseItem, Client, Config, Enrollment, HoursInput, LeaseStatus, MonthTotal,
    NewCaseInput, ScheduledAppointment,
};
use crate::error::Error;
use crate::events::{Listener, Subscription, SyncState};
use crate::offer_types::{OfferAction, OfferAnswer, OfferList, OfferOutcome, OfferRecord};
use crate::push::{PushError, PushEvent, PushKind, PushSubscriptionKeys};
use crate::repo::SyncStatus;

uniffi::setup_scaffolding!("lotse_core");

/// `impl From<$from> for $to`: the fields named in both move over as they are (listed
/// before the `;`), the others are given as expressions of the source (after it). Most
/// records here are the core's types with ids as text and ms in the names; this keeps
/// each conversion to what actually differs.
macro_rules! record_from {
    (|$v:ident: $from:ty| $to:ident { $($same:ident),+ $(,)? $(; $($field:ident: $value:expr),+ $(,)?)? }) => {
        impl From<$from> for $to {
            fn from($v: $from) -> Self {
                Self {
                    $($same: $v.$same,)*
                    $($($field: $value,)+)?
                }
            }
        }
    };
}

/// A uniffi enum mirroring one of the core's or the protocol's variant for variant (with
/// the same fields), and the conversions both ways: the variants are listed once, and one
/// added on the other side only fails to compile here.
macro_rules! mirror_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident <=> $other:ident {
            $( $(#[$vmeta:meta])* $variant:ident $({ $($f:ident: $t:ty),+ $(,)? })? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant $({ $($f: $t),+ })? ),+
        }

        impl From<$name> for $other {
            fn from(v: $name) -> Self {
                match v {
                    $( $name::$variant $({ $($f),+ })? => $other::$variant $({ $($f),+ })? ),+
                }
            }
        }

        impl From<$other> for $name {
            fn from(v: $other) -> Self {
                match v {
                    $( $other::$variant $({ $($f),+ })? => $name::$variant $({ $($f),+ })? ),+
                }
            }
        }
    };
}

/// Every failure of the API. Each variant carries a `reason` for logs and developers; apps
/// show their own words, chosen by variant.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum LotseError {
    /// The key from the keystore does not open this store.
    #[error("wrong key: {reason}")]
    WrongKey { reason: String },
    /// An argument is unusable; `field` names it. Calls that need the server also give it
    /// with `field` `server_url` or `trusted_certificates_pem` when that setting of
    /// `LotseConfig` rules the network out: fix the setting and open again.
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    #[error("not found: {reason}")]
    NotFound { reason: String },
    /// E.g. not enrolled yet, or enrolled already.
    #[error("invalid state: {reason}")]
    InvalidState { reason: String },
    #[error("network: {reason}")]
    Network { reason: String },
    /// The server's TLS certificate is not trusted: a wrong address, a captive portal or
    /// an intercepting proxy, or a private CA missing from `trusted_certificates_pem`.
    /// Retrying does not help until one of those changes.
    #[error("untrusted server: {reason}")]
    UntrustedServer { reason: String },
    /// The server answered with an error (`code` as in its JSON errors).
    #[error("server {status} {code}: {reason}")]
    Server {
        status: u16,
        code: String,
        reason: String,
    },
    /// The device was revoked; local data has been wiped.
    #[error("revoked: {reason}")]
    Revoked { reason: String },
    /// No contact with the server for longer than the lease; local data was destroyed.
    #[error("lease lapsed: {reason}")]
    LeaseLapsed { reason: String },
    /// `set_network_available(false)` is in force.
    #[error("offline: {reason}")]
    Offline { reason: String },
    #[error("cancelled: {reason}")]
    Cancelled { reason: String },
    /// The client was closed.
    #[error("closed: {reason}")]
    Closed { reason: String },
    #[error("storage: {reason}")]
    Storage { reason: String },
    #[error("internal: {reason}")]
    Internal { reason: String },
    /// A push message that cannot be read; `kind` says why.
    #[error("push: {reason}")]
    Push { kind: PushFailure, reason: String },
}

/// Why `decrypt_push` failed.
#[derive(Debug, uniffi::Enum, Clone, Copy, PartialEq, Eq)]
pub enum PushFailure {
    /// No push keys: call `create_push_subscription_keys` and register first.
    NoKeys,
    TooLarge,
    Truncated,
    MalformedHeader,
    /// Not for this phone's keys, or altered on the way.
    Decrypt,
    Padding,
    /// Decrypted, but not a Lotse notice.
    Payload,
}

impl From<&PushError> for PushFailure {
    fn from(e: &PushError) -> Self {
        match e {
            PushError::NoKeys => Self::NoKeys,
            PushError::TooLarge => Self::TooLarge,
            PushError::Truncated => Self::Truncated,
            PushError::Header(_) => Self::MalformedHeader,
            PushError::Decrypt => Self::Decrypt,
            PushError::Padding => Self::Padding,
            PushError::Payload(_) => Self::Payload,
        }
    }
}

impl From<Error> for LotseError {
    fn from(e: Error) -> Self {
        let reason = e.to_string();
        match e {
            Error::WrongKey => Self::WrongKey { reason },
            Error::InvalidInput { field, reason } => Self::InvalidInput { field, reason },
            Error::NotFound { .. } => Self::NotFound { reason },
            Error::InvalidState(_) => Self::InvalidState { reason },
            Error::Network(_) => Self::Network { reason },
            Error::Untrusted(_) => Self::UntrustedServer { reason },
            Error::Server {
                status,
                code,
                reason,
            } => Self::Server {
                status,
                code,
                reason,
            },
            Error::Revoked => Self::Revoked { reason },
            Error::LeaseLapsed => Self::LeaseLapsed { reason },
            Error::Offline => Self::Offline { reason },
            Error::Cancelled => Self::Cancelled { reason },
            Error::Closed => Self::Closed { reason },
            Error::Storage(_) | Error::Corrupt(_) => Self::Storage { reason },
            Error::Internal(_) => Self::Internal { reason },
            Error::Push(e) => Self::Push {
                kind: (&e).into(),
                reason,
            },
        }
    }
}

type Result<T> = std::result::Result<T, LotseError>;

fn parse_doc_id(field: &str, raw: &str) -> Result<DocumentId> {
    if raw.len() > 100 {
        return Err(LotseError::InvalidInput {
            field: field.into(),
            reason: "too long for a document id".into(),
        });
    }
    raw.parse().map_err(|e| LotseError::InvalidInput {
        field: field.into(),
        reason: format!("not a document id: {e}"),
    })
}

fn entry_id(field: &str, raw: &str) -> Result<String> {
    if raw.is_empty() || raw.len() > 64 {
        return Err(LotseError::InvalidInput {
            field: field.into(),
            reason: "not an id".into(),
        });
    }
    Ok(raw.to_owned())
}

#[derive(uniffi::Record)]
pub struct LotseConfig {
    /// A folder of the app's private storage.
    pub data_dir: String,
    /// e.g. `https://lotse.example.org`.
    pub server_url: String,
    /// 32 bytes from the Android Keystore / iOS Keychain.
    pub key: Vec<u8>,
    /// PEM CA certificates trusted besides the built-in roots, for a server under the
    /// network's own CA; leave out for a publicly trusted server.
    #[uniffi(default = None)]
    pub trusted_certificates_pem: Option<String>,
}

#[derive(uniffi::Record)]
pub struct EnrollmentRecord {
    pub device_id: String,
    pub volunteer_id: String,
}

record_from!(|e: Enrollment| EnrollmentRecord {
    device_id,
    volunteer_id
});

mirror_enum! {
    #[derive(uniffi::Enum, Clone, Copy, PartialEq, Eq)]
    pub enum CaseTopic <=> Topic {
        Gesundheit, Bildung, Erziehung, Arbeit, Beruf, Soziales, Wohnen, Behoerden,
    }
}

mirror_enum! {
    #[derive(uniffi::Enum, Clone, Copy, PartialEq, Eq)]
    pub enum CaseStatus <=> Status { Active, Paused, Closed }
}

/// Per-case sync status.
#[derive(uniffi::Enum, Clone, PartialEq, Eq)]
pub enum DocSyncStatus {
    /// The server holds every change made here.
    Synced,
    /// Changes wait for the server.
    Pending,
    /// The server refused the document; `rule` names the quota it would break (a code:
    /// `document-bytes`, `entries`, `text-length`, `device-bytes`, `foreign-actor`).
    Failed {
        reason: String,
        rule: Option<String>,
    },
}

impl From<SyncStatus> for DocSyncStatus {
    fn from(s: SyncStatus) -> Self {
        match s {
            SyncStatus::Synced => Self::Synced,
            SyncStatus::Pending => Self::Pending,
            SyncStatus::Error { reason, rule } => Self::Failed { reason, rule },
        }
    }
}

/// The connection as the app shows it.
#[derive(uniffi::Enum, Clone, PartialEq, Eq)]
pub enum SyncStateRecord {
    Offline,
    Connecting,
    Syncing {
        done: u32,
        total: u32,
    },
    Idle,
    Failed {
        reason: String,
    },
    /// The device was revoked and all local data wiped.
    Revoked,
    /// No contact with the server for longer than the lease: keys and all local data
    /// were destroyed. Enroll again.
    LeaseLapsed,
}

impl From<SyncState> for SyncStateRecord {
    fn from(s: SyncState) -> Self {
        match s {
            SyncState::Offline => Self::Offline,
            SyncState::Connecting => Self::Connecting,
            SyncState::Syncing { done, total } => Self::Syncing { done, total },
            SyncState::Idle => Self::Idle,
            SyncState::Error { reason } => Self::Failed { reason },
            SyncState::Revoked => Self::Revoked,
            SyncState::LeaseLapsed => Self::LeaseLapsed,
        }
    }
}

/// The phone's lease (see `check_lease`).
#[derive(Debug, uniffi::Enum, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRecord {
    /// No lease yet (no sync since enrolling), or nothing left to protect.
    NoLease,
    /// Readable until then (milliseconds since 1970, this phone's clock).
    Until { until_ms: i64 },
    /// Keys and data were destroyed just now; enroll again.
    Lapsed,
}

impl From<LeaseStatus> for LeaseRecord {
    fn from(s: LeaseStatus) -> Self {
        match s {
            LeaseStatus::None => Self::NoLease,
            LeaseStatus::Until(until_ms) => Self::Until { until_ms },
            LeaseStatus::Lapsed => Self::Lapsed,
        }
    }
}

#[derive(uniffi::Record)]
pub struct NewCaseRecord {
    pub label: String,
    pub topic: CaseTopic,
    /// ISO 639-1 codes.
    pub languages: Vec<String>,
}

#[derive(uniffi::Record)]
pub struct AppointmentRecord {
    pub id: String,
    /// Milliseconds since 1970 (UTC).
    pub start_ms: i64,
    pub end_ms: i64,
    pub place: String,
    pub purpose: String,
    pub cancelled: bool,
    pub case_id: Option<String>,
}

record_from!(|a: AppointmentView| AppointmentRecord {
    place, purpose, cancelled;
    id: a.id.to_string(),
    start_ms: a.start,
    end_ms: a.end,
    case_id: a.case_id.map(|c| c.to_string()),
});

#[derive(uniffi::Record)]
pub struct CaseSummaryRecord {
    pub id: String,
    pub label: String,
    pub topic: CaseTopic,
    pub status: CaseStatus,
    pub languages: Vec<String>,
    pub note_count: u32,
    pub next_appointment: Option<AppointmentRecord>,
    pub sync: DocSyncStatus,
}

record_from!(|c: CaseItem| CaseSummaryRecord {
    label, languages, note_count;
    id: c.id.to_string(),
    topic: c.topic.into(),
    status: c.status.into(),
    next_appointment: c.next_appointment.map(Into::into),
    sync: c.sync.into(),
});

#[derive(uniffi::Record)]
pub struct NoteRecord {
    pub id: String,
    pub author: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub text: String,
}

record_from!(|n: NoteView| NoteRecord {
    author, text;
    id: n.id.to_string(),
    created_at_ms: n.created_at,
    updated_at_ms: n.updated_at,
});

#[derive(uniffi::Record)]
pub struct HoursRecord {
    pub id: String,
    pub author: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub minutes: u32,
    pub travel_minutes: u32,
    pub kind: String,
}

record_from!(|h: HoursView| HoursRecord {
    author, date, minutes, travel_minutes, kind;
    id: h.id.to_string(),
});

#[derive(uniffi::Record)]
pub struct CaseRecord {
    pub id: String,
    pub label: String,
    pub topic: CaseTopic,
    pub status: CaseStatus,
    pub languages: Vec<String>,
    pub created_at_ms: i64,
    pub notes: Vec<NoteRecord>,
    pub appointments: Vec<AppointmentRecord>,
    pub hours: Vec<HoursRecord>,
    pub sync: DocSyncStatus,
}

#[derive(uniffi::Record)]
pub struct NewAppointmentRecord {
    pub start_ms: i64,
    pub end_ms: i64,
    pub place: String,
    pub purpose: String,
}

/// Fields left empty stay as they are.
#[derive(uniffi::Record)]
pub struct AppointmentChangeRecord {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub place: Option<String>,
    pub purpose: Option<String>,
}

#[derive(uniffi::Record)]
pub struct ScheduledAppointmentRecord {
    pub case_id: Option<String>,
    pub appointment: AppointmentRecord,
}

impl From<ScheduledAppointment> for ScheduledAppointmentRecord {
    fn from(s: ScheduledAppointment) -> Self {
        Self {
            case_id: s.case_id.map(|c| c.to_string()),
            appointment: s.appointment.into(),
        }
    }
}

#[derive(uniffi::Record)]
pub struct NewHoursRecord {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub minutes: u32,
    pub travel_minutes: u32,
    /// e.g. `begleitung`, `uebersetzung`, `telefonat`.
    pub kind: String,
}

#[derive(uniffi::Record)]
pub struct MonthTotalRecord {
    pub year: u16,
    pub month: u8,
    pub minutes: u64,
    pub travel_minutes: u64,
    pub entries: u32,
}

record_from!(|m: MonthTotal| MonthTotalRecord {
    year,
    month,
    minutes,
    travel_minutes,
    entries
});

/// A weekly window: weekday 1 (Monday) to 7, times `HH:MM` (`to` may be `24:00`).
#[derive(uniffi::Record)]
pub struct AvailabilityRecord {
    pub weekday: u8,
    pub from: String,
    pub to: String,
}

record_from!(|s: AvailabilitySlot| AvailabilityRecord { weekday, from, to });
record_from!(|s: AvailabilityRecord| AvailabilitySlot { weekday, from, to });

/// Receives sync events. Called on a Rust thread: hop to the UI thread before touching
/// views (Android: `Handler(Looper.getMainLooper()).post`, iOS: `DispatchQueue.main.async`).
#[uniffi::export(with_foreign)]
pub trait SyncListener: Send + Sync {
    fn on_sync_state(&self, state: SyncStateRecord);
    /// Ids of documents (cases, schedule) whose content or sync status changed.
    fn on_documents_changed(&self, ids: Vec<String>);
    /// The network deleted this case; it and its key are gone from the phone, with any
    /// changes to it that had not synced. Tell the user.
    fn on_case_deleted(&self, id: String);
    /// The network rewrote this case (an entry erased from its history, or compacted);
    /// the phone moved onto the new document with what it typed offline. Edits to
    /// entries that no longer exist are listed in `dropped`: tell the user.
    fn on_case_replaced(&self, replaced: CaseReplacedRecord);
}

/// A case moved onto its newer generation; `case_id` stays what the app knows.
#[derive(uniffi::Record)]
pub struct CaseReplacedRecord {
    pub case_id: String,
    pub document_id: String,
    pub dropped: Vec<DroppedEditRecord>,
}

/// An entry whose offline edits were dropped. `kind`: `note`, `appointment` or `hours`.
#[derive(uniffi::Record)]
pub struct DroppedEditRecord {
    pub kind: String,
    pub id: String,
}

struct ForeignListener(Arc<dyn SyncListener>);

impl Listener for ForeignListener {
    fn on_sync_state(&self, state: SyncState) {
        self.0.on_sync_state(state.into());
    }
    fn on_documents_changed(&self, ids: Vec<DocumentId>) {
        self.0
            .on_documents_changed(ids.iter().map(ToString::to_string).collect());
    }
    fn on_case_deleted(&self, id: DocumentId) {
        self.0.on_case_deleted(id.to_string());
    }
    fn on_case_replaced(&self, r: crate::CaseReplaced) {
        self.0.on_case_replaced(CaseReplacedRecord {
            case_id: r.case_id.to_string(),
            document_id: r.document_id.to_string(),
            dropped: r
                .dropped
                .into_iter()
                .map(|d| DroppedEditRecord {
                    kind: d.kind,
                    id: d.id,
                })
                .collect(),
        });
    }
}

/// A decrypted push notice (no personal data: fetch the offer with `list_offers`).
#[derive(uniffi::Record)]
pub struct PushEventRecord {
    pub version: u32,
    pub kind: PushKindRecord,
    pub request_id: String,
    pub topic: String,
    pub languages: Vec<String>,
    /// ms since the epoch.
    pub window_start: i64,
    pub window_end: i64,
}

#[derive(uniffi::Enum)]
pub enum PushKindRecord {
    Offer,
    Taken,
    Cancelled,
    /// From a newer server; ignore or refresh the offers.
    Unknown {
        code: String,
    },
}

record_from!(|e: PushEvent| PushEventRecord {
    version, request_id, topic, languages, window_start, window_end;
    kind: match e.kind {
        PushKind::Offer => PushKindRecord::Offer,
        PushKind::Taken => PushKindRecord::Taken,
        PushKind::Cancelled => PushKindRecord::Cancelled,
        // The coordinators' kinds are not for phones: to the app they are as unknown as a
        // newer server's.
        PushKind::NewRequest | PushKind::Accepted | PushKind::Unknown { .. } => {
            PushKindRecord::Unknown {
                code: e.kind.code().to_owned(),
            }
        }
    },
});

/// Register these with the push endpoint (base64url, no padding).
#[derive(uniffi::Record)]
pub struct PushKeysRecord {
    pub p256dh: String,
    pub auth: String,
}

record_from!(|k: PushSubscriptionKeys| PushKeysRecord { p256dh, auth });

mirror_enum! {
    #[derive(uniffi::Enum, Clone, Copy, PartialEq, Eq)]
    pub enum OfferActionRecord <=> OfferAction { Accept, Decline }
}

mirror_enum! {
    /// What the server decided about an answer.
    #[derive(uniffi::Enum)]
    pub enum OfferOutcomeRecord <=> OfferOutcome {
        /// You have the request; the case (id) syncs to the phone.
        Won { case_id: Option<String> },
        AlreadyTaken,
        Closed,
        Declined,
        NotOffered,
        Refused { code: String },
    }
}

/// An answer to an offer; `outcome` is `None` while it is queued.
#[derive(uniffi::Record)]
pub struct OfferAnswerRecord {
    pub request_id: String,
    pub action: OfferActionRecord,
    pub answered_at: i64,
    pub outcome: Option<OfferOutcomeRecord>,
    pub decided_at: Option<i64>,
}

record_from!(|a: OfferAnswer| OfferAnswerRecord {
    request_id, answered_at, decided_at;
    action: a.action.into(),
    outcome: a.outcome.map(Into::into),
});

/// An offer; times in ms since the epoch. The assignment fields are set only for the
/// volunteer who got the request.
#[derive(uniffi::Record)]
pub struct OfferRecordFfi {
    pub id: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub place_area: String,
    pub urgency: String,
    pub institution_kind: String,
    pub description: String,
    /// offered, accepted, declined, taken, withdrawn (as the server last said).
    pub status: String,
    pub place_address: Option<String>,
    pub institution_name: Option<String>,
    pub contact: Option<String>,
    pub case_id: Option<String>,
    /// This phone's answer, queued or settled.
    pub answer: Option<OfferAnswerRecord>,
}

record_from!(|o: OfferRecord| OfferRecordFfi {
    id, topic, languages, starts_at, ends_at, place_area, urgency, institution_kind,
    description, status;
    place_address: o.assignment.as_ref().and_then(|a| a.place_address.clone()),
    institution_name: o.assignment.as_ref().map(|a| a.institution_name.clone()),
    contact: o.assignment.as_ref().and_then(|a| a.contact.clone()),
    case_id: o.assignment.and_then(|a| a.case_id),
    answer: o.answer.map(Into::into),
});

#[derive(uniffi::Record)]
pub struct OfferListRecord {
    pub offers: Vec<OfferRecordFfi>,
    /// When the list was last fetched from the server (ms), if ever.
    pub fetched_at: Option<i64>,
    /// `false`: the server could not be asked; this is the stored list.
    pub fresh: bool,
}

record_from!(|l: OfferList| OfferListRecord {
    fetched_at, fresh;
    offers: l.offers.into_iter().map(Into::into).collect(),
});

/// Receives the outcomes of offer answers (on a Rust thread).
#[uniffi::export(with_foreign)]
pub trait OfferListener: Send + Sync {
    fn on_offer_answered(&self, answer: OfferAnswerRecord);
}

struct ForeignOfferListener(Arc<dyn OfferListener>);

impl Listener for ForeignOfferListener {
    fn on_sync_state(&self, _: SyncState) {}
    fn on_documents_changed(&self, _: Vec<DocumentId>) {}
    fn on_offer_answered(&self, answer: OfferAnswer) {
        self.0.on_offer_answered(answer.into());
    }
}

/// Ends the subscription when cancelled or dropped (garbage-collected).
#[derive(uniffi::Object)]
pub struct SubscriptionHandle {
    inner: Mutex<Option<Subscription>>,
}

#[uniffi::export]
impl SubscriptionHandle {
    pub fn cancel(&self) {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(taken);
    }
}

/// The phone's core: one per data folder.
#[derive(uniffi::Object)]
pub struct LotseClient {
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl LotseClient {
    /// Runs a local call to completion on the crate's runtime.
    fn block<T>(&self, f: impl Future<Output = crate::Result<T>> + Send) -> Result<T>
    where
        T: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(LotseError::Internal {
                reason: "blocking call made from inside an async runtime".into(),
            });
        }
        self.runtime.block_on(f).map_err(Into::into)
    }

    /// Runs a network call on the crate's runtime; the returned future can be polled by
    /// any executor (the foreign language's).
    async fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = crate::Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.runtime
            .spawn(f)
            .await
            .map_err(|e| LotseError::Internal {
                reason: format!("task failed: {e}"),
            })?
            .map_err(Into::into)
    }
}

#[uniffi::export]
impl LotseClient {
    /// Opens or creates the store. A key that does not match gives `WrongKey`. A
    /// `server_url` that must not be used (plain `http://` to a host that is not on this
    /// device or the local network) or an unreadable `trusted_certificates_pem` still
    /// opens the store, so its data stays usable; the calls that need the server then fail
    /// with `InvalidInput` naming the setting, and the sync state says the same.
    #[uniffi::constructor]
    pub fn open(config: LotseConfig) -> Result<Arc<Self>> {
        let key: [u8; 32] =
            config
                .key
                .as_slice()
                .try_into()
                .map_err(|_| LotseError::InvalidInput {
                    field: "key".into(),
                    reason: format!("must be 32 bytes, got {}", config.key.len()),
                })?;
        let config = Config {
            data_dir: config.data_dir.into(),
            server_url: config.server_url,
            key,
            trusted_certificates_pem: config.trusted_certificates_pem,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(LotseError::Internal {
                reason: "open must not be called from inside an async runtime".into(),
            });
        }
        // A small runtime only to open; the client then runs on its own runtime.
        let opener = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LotseError::Internal {
                reason: e.to_string(),
            })?;
        let client = opener.block_on(Client::open(config))?;
        let runtime = client
            .runtime_handle()
            .ok_or_else(|| LotseError::Internal {
                reason: "the runtime is gone".into(),
            })?;
        Ok(Arc::new(Self { client, runtime }))
    }

    /// Exchanges the coordinator's one-time code for this device's credentials.
    pub async fn enroll(&self, code: String, device_name: String) -> Result<EnrollmentRecord> {
        let client = self.client.clone();
        self.spawn(async move { client.enroll(&code, &device_name).await })
            .await
            .map(Into::into)
    }

    /// `None` until enrolled (and again after a revocation).
    pub fn enrollment(&self) -> Result<Option<EnrollmentRecord>> {
        Ok(self.block(self.client.enrollment())?.map(Into::into))
    }

    pub fn list_cases(&self) -> Result<Vec<CaseSummaryRecord>> {
        Ok(self
            .block(self.client.list_cases())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn get_case(&self, case_id: String) -> Result<CaseRecord> {
        let id = parse_doc_id("case_id", &case_id)?;
        let detail = self.block(self.client.get_case(&id))?;
        let c = detail.case;
        Ok(CaseRecord {
            id: case_id,
            label: c.label,
            topic: c.topic.into(),
            status: c.status.into(),
            languages: c.languages,
            created_at_ms: c.created_at,
            notes: c.notes.into_iter().map(Into::into).collect(),
            appointments: c.appointments.into_iter().map(Into::into).collect(),
            hours: c.hours.into_iter().map(Into::into).collect(),
            sync: detail.sync.into(),
        })
    }

    /// Creates a case on this phone (works offline); returns its id.
    pub fn create_case(&self, input: NewCaseRecord) -> Result<String> {
        let input = NewCaseInput {
            label: input.label,
            topic: input.topic.into(),
            languages: input.languages,
        };
        Ok(self.block(self.client.create_case(&input))?.to_string())
    }

    pub fn set_case_status(&self, case_id: String, status: CaseStatus) -> Result<()> {
        let id = parse_doc_id("case_id", &case_id)?;
        self.block(self.client.set_case_status(&id, status.into()))
    }

    pub fn case_sync_status(&self, case_id: String) -> Result<DocSyncStatus> {
        let id = parse_doc_id("case_id", &case_id)?;
        Ok(self.block(self.client.case_sync_status(&id))?.into())
    }

    /// Returns the new note's id.
    pub fn add_note(&self, case_id: String, text: String) -> Result<String> {
        let id = parse_doc_id("case_id", &case_id)?;
        Ok(self.block(self.client.add_note(&id, &text))?.to_string())
    }

    /// Replaces the note's text; concurrent edits of other parts of the note merge.
    pub fn edit_note(&self, case_id: String, note_id: String, text: String) -> Result<()> {
        let id = parse_doc_id("case_id", &case_id)?;
        let note = NoteId::new(entry_id("note_id", &note_id)?);
        self.block(self.client.edit_note(&id, &note, &text))
    }

    pub fn list_notes(&self, case_id: String) -> Result<Vec<NoteRecord>> {
        let id = parse_doc_id("case_id", &case_id)?;
        Ok(self
            .block(self.client.list_notes(&id))?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn add_appointment(&self, case_id: String, input: NewAppointmentRecord) -> Result<String> {
        let id = parse_doc_id("case_id", &case_id)?;
        let input = AppointmentInput {
            start: input.start_ms,
            end: input.end_ms,
            place: input.place,
            purpose: input.purpose,
        };
        Ok(self
            .block(self.client.add_appointment(&id, &input))?
            .to_string())
    }

    pub fn change_appointment(
        &self,
        case_id: String,
        appointment_id: String,
        change: AppointmentChangeRecord,
    ) -> Result<()> {
        let id = parse_doc_id("case_id", &case_id)?;
        let appointment = AppointmentId::new(entry_id("appointment_id", &appointment_id)?);
        let update = AppointmentUpdate {
            start: change.start_ms,
            end: change.end_ms,
            place: change.place,
            purpose: change.purpose,
            cancelled: None,
        };
        self.block(self.client.change_appointment(&id, &appointment, &update))
    }

    pub fn cancel_appointment(&self, case_id: String, appointment_id: String) -> Result<()> {
        let id = parse_doc_id("case_id", &case_id)?;
        let appointment = AppointmentId::new(entry_id("appointment_id", &appointment_id)?);
        self.block(self.client.cancel_appointment(&id, &appointment))
    }

    /// Appointments of all cases overlapping `[from_ms, to_ms)`, earliest first.
    pub fn appointments_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ScheduledAppointmentRecord>> {
        Ok(self
            .block(self.client.appointments_between(from_ms, to_ms))?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn log_hours(&self, case_id: String, input: NewHoursRecord) -> Result<String> {
        let id = parse_doc_id("case_id", &case_id)?;
        let input = HoursInput {
            date: input.date,
            minutes: input.minutes,
            travel_minutes: input.travel_minutes,
            kind: input.kind,
        };
        Ok(self.block(self.client.log_hours(&id, &input))?.to_string())
    }

    pub fn list_hours(&self, case_id: String) -> Result<Vec<HoursRecord>> {
        let id = parse_doc_id("case_id", &case_id)?;
        Ok(self
            .block(self.client.list_hours(&id))?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Twelve totals, January to December, over all cases.
    pub fn monthly_hours(&self, year: u16) -> Result<Vec<MonthTotalRecord>> {
        Ok(self
            .block(self.client.monthly_hours(year))?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn availability(&self) -> Result<Vec<AvailabilityRecord>> {
        Ok(self
            .block(self.client.availability())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn set_availability(&self, slots: Vec<AvailabilityRecord>) -> Result<()> {
        let slots: Vec<AvailabilitySlot> = slots.into_iter().map(Into::into).collect();
        self.block(self.client.set_availability(&slots))
    }

    /// Tell the core about connectivity changes (ConnectivityManager, NWPathMonitor).
    pub fn set_network_available(&self, available: bool) {
        self.client.set_network_available(available);
    }

    /// Completes when this phone and the server hold the same documents.
    pub async fn sync_now(&self) -> Result<()> {
        let client = self.client.clone();
        self.spawn(async move { client.sync_now().await }).await
    }

    /// Ends a running sync; pending `sync_now` calls fail with `Cancelled`. Call it from
    /// Swift when the awaiting task is cancelled (Swift cancellation does not reach Rust).
    pub fn cancel_sync(&self) {
        self.client.cancel_sync();
    }

    pub fn sync_state(&self) -> SyncStateRecord {
        self.client.sync_state().into()
    }

    /// How long the cases stay readable without contact. Cheap; call it from a background
    /// job (WorkManager, BGAppRefreshTask) so that a phone left offline destroys its data
    /// on time even when nobody opens the app. `Lapsed`: destroyed just now.
    pub fn check_lease(&self) -> Result<LeaseRecord> {
        self.block(self.client.check_lease()).map(Into::into)
    }

    /// The listener gets the current state at once, then updates, until the handle is
    /// cancelled or dropped.
    pub fn subscribe(&self, listener: Arc<dyn SyncListener>) -> Arc<SubscriptionHandle> {
        let subscription = self.client.subscribe(Arc::new(ForeignListener(listener)));
        Arc::new(SubscriptionHandle {
            inner: Mutex::new(Some(subscription)),
        })
    }

    /// Listens for the outcomes of offer answers, until the handle is cancelled.
    pub fn subscribe_offers(&self, listener: Arc<dyn OfferListener>) -> Arc<SubscriptionHandle> {
        let subscription = self
            .client
            .subscribe(Arc::new(ForeignOfferListener(listener)));
        Arc::new(SubscriptionHandle {
            inner: Mutex::new(Some(subscription)),
        })
    }

    /// A new P-256 key pair and auth secret for Web Push, stored encrypted; replaces
    /// earlier keys (register again).
    pub fn create_push_subscription_keys(&self) -> Result<PushKeysRecord> {
        self.block(self.client.create_push_subscription_keys())
            .map(Into::into)
    }

    pub fn push_subscription_keys(&self) -> Result<Option<PushKeysRecord>> {
        self.block(self.client.push_subscription_keys())
            .map(|k| k.map(Into::into))
    }

    /// Registers the push endpoint with the server; returns the subscription id.
    pub async fn register_push(&self, endpoint: String) -> Result<String> {
        let client = self.client.clone();
        self.spawn(async move { client.register_push(&endpoint).await })
            .await
    }

    /// Decrypts a Web Push message body (aes128gcm) into the server's notice.
    pub fn decrypt_push(&self, body: Vec<u8>) -> Result<PushEventRecord> {
        self.block(self.client.decrypt_push(&body)).map(Into::into)
    }

    /// Offers from the server, or the stored list when offline (`fresh == false`).
    /// `InvalidInput` when the server settings rule the network out (`cached_offers` still
    /// answers).
    pub async fn list_offers(&self) -> Result<OfferListRecord> {
        let client = self.client.clone();
        self.spawn(async move { client.list_offers().await })
            .await
            .map(Into::into)
    }

    pub fn cached_offers(&self) -> Result<OfferListRecord> {
        self.block(self.client.cached_offers()).map(Into::into)
    }

    /// Accepts an offer; works offline (queued, sent when connected). The outcome comes
    /// through `subscribe_offers` and `offer_answers`.
    pub fn accept_offer(&self, request_id: String) -> Result<OfferAnswerRecord> {
        self.block(self.client.accept_offer(&request_id))
            .map(Into::into)
    }

    pub fn decline_offer(&self, request_id: String) -> Result<OfferAnswerRecord> {
        self.block(self.client.decline_offer(&request_id))
            .map(Into::into)
    }

    pub fn offer_answers(&self) -> Result<Vec<OfferAnswerRecord>> {
        self.block(self.client.offer_answers())
            .map(|v| v.into_iter().map(Into::into).collect())
    }

    /// Stops syncing and closes the store; later calls fail with `Closed`. (Not named
    /// `close`: generated Kotlin objects are `AutoCloseable`, whose `close()` frees the
    /// Rust object.)
    pub fn shutdown(&self) -> Result<()> {
        self.block(self.client.close())
    }
}

//! The crate's rich error type. Every public function returns it; the FFI layer maps it to
//! a small enum with a `reason` per variant. Messages never contain note text, labels,
//! places, names or tokens: they name fields and ids only.

use lotse_protocol::SchemaError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key given to `open` is not the key the store was created with.
    #[error("the key does not open this store (wrong key from the keystore?)")]
    WrongKey,
    /// The caller passed something unusable; `field` names the argument.
    #[error("{field}: {reason}")]
    InvalidInput { field: String, reason: String },
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: String },
    /// The call needs an enrolled device (or the opposite).
    #[error("{0}")]
    InvalidState(String),
    /// No connection to the server could be made or it broke.
    #[error("network: {0}")]
    Network(String),
    /// The secure connection failed: the server's certificate is not trusted (wrong
    /// address, an intercepting proxy, or a private CA that is not configured). Retrying
    /// does not help until the address or the configuration changes.
    #[error("secure connection to the server failed: {0}")]
    Untrusted(String),
    /// The server answered with an error.
    #[error("server answered {status} {code}: {reason}")]
    Server {
        status: u16,
        code: String,
        reason: String,
    },
    /// The server revoked this device; local data has been wiped.
    #[error("this device was revoked; local data was wiped")]
    Revoked,
    /// No contact with the server for longer than the lease: keys and local data were
    /// destroyed; enroll again.
    #[error("no contact with the server for too long; local data was destroyed")]
    LeaseLapsed,
    /// The app said there is no network.
    #[error("no network")]
    Offline,
    #[error("cancelled")]
    Cancelled,
    /// The client was closed; open a new one.
    #[error("the client is closed")]
    Closed,
    /// The local database failed; nothing was written.
    #[error("local storage: {0}")]
    Storage(String),
    /// Stored data that cannot be decrypted or decoded.
    #[error("local data is damaged: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A push message that cannot be read (see [`crate::PushError`]).
    #[error("push: {0}")]
    Push(#[from] crate::push::PushError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<sqlx_sqlite_only::Error> for Error {
    fn from(e: sqlx_sqlite_only::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<SchemaError> for Error {
    fn from(e: SchemaError) -> Self {
        use SchemaError as S;
        let field = |f: &str| Self::invalid(f, e.to_string());
        match &e {
            S::NotFound { kind, id } => Self::NotFound {
                kind,
                id: id.clone(),
            },
            S::UnknownTopic(_) => field("topic"),
            S::UnknownStatus(_) => field("status"),
            S::InvalidLanguage(_) => field("languages"),
            S::EndBeforeStart { .. } => field("end"),
            S::MinutesOutOfRange { field: f, .. } => field(f),
            S::InvalidDate(_) => field("date"),
            S::InvalidTime(_) => field("availability"),
            S::InvalidWeekday(_) | S::EmptySlot { .. } => field("availability"),
            S::Empty(f) | S::TooLong { field: f, .. } | S::InvalidToken { field: f, .. } => {
                field(f)
            }
            S::EditOutOfRange { .. } => field("position"),
            S::AlreadyCreated(_) => Self::InvalidState(e.to_string()),
            S::UnsupportedSchema { .. } => {
                Self::InvalidState(format!("{e}; please update the app"))
            }
            S::WrongDocType { .. } | S::Missing { .. } | S::Malformed { .. } => {
                Self::Corrupt(e.to_string())
            }
            S::Automerge(_) => Self::Internal(e.to_string()),
        }
    }
}

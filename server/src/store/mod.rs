//! The server's database: one `Store` over SQLite or PostgreSQL, chosen by the URL.
//!
//! Queries are written once against sqlx's `Any` driver; the schema (see
//! `migrations/README.md`) keeps to types both backends share. A method that returns `Ok`
//! has committed: transactions mark the durability boundary.

/// A query text assembled from constants (column lists) in this module, never from input.
macro_rules! safe_sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

/// Sets each named field of `$target` that `$patch` carries (`Some`): a patch's `None`
/// leaves the field as it was.
macro_rules! apply_patch {
    ($patch:ident => $target:ident: $($field:ident),* $(,)?) => {
        $(if let Some(value) = $patch.$field {
            $target.$field = value;
        })*
    };
}

mod access;
mod audit;
mod authorship;
mod coordinators;
mod devices;
mod documents;
mod email;
mod generations;
mod invalid;
mod notice;
mod organisations;
mod push;
mod rate_limits;
mod reports;
mod requests;
mod retention;
mod sealed;
mod sharing;
mod tombstones;
mod volunteers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

pub use access::{ACCESS_CHANNEL, AccessChange};
pub use audit::{
    AUDIT_SEARCH_MAX, AuditActor, AuditCursor, AuditEntry, AuditEvent, AuditFilter, OrgAuditEvent,
    SUBJECT_AUDIT_LIMIT, SubjectAuditEvent,
};
pub use authorship::{Attribution, Attributions, Authored, Writer};
pub use coordinators::{
    Coordinator, LinkPurpose, NO_PASSWORD, NewCoordinator, OpenLink, Role, TeamError,
};
pub use devices::{Device, EnrolledDevice, EnrollmentCode, EnrollmentError};
pub use documents::{
    Access, CaseRow, DocumentRow, NewDocument, Viewer, heads_from_text, heads_to_text,
};
pub use email::{ClaimedEmail, NewEmail};
pub use generations::{GenerationReason, Successor, Superseded, Superseding};
pub use invalid::Invalid;
pub use notice::{MAX_PAYLOAD_BYTES, Notice, Payload, push_topic};
pub use organisations::{Organisation, OrganisationSettings};
pub use push::{
    ClaimedPush, MAX_SUBSCRIPTIONS_PER_OWNER, NewPushSubscription, OutboxEntry, PushOwner,
    PushSubscriptionRef, Recipients, SavedPushSubscription, coordinator_subscriptions, enqueue,
    enqueue_each, enqueue_rows, volunteer_subscriptions,
};
pub use rate_limits::Policy as RatePolicy;
pub use reports::{CaseDocument, ReportRequest, VolunteerSync};
pub use requests::{
    AcceptOutcome, Actor, INSTITUTION_KINDS, NewRequest, NoticeKind, OfferStatus, Refusals,
    Request, RequestDraft, RequestError, RequestEvent, RequestPatch, STATUSES, URGENCIES,
};
pub use retention::{
    CaseFigures, HoursFigure, KeptCase, KeptFigures, KeptHours, PURGE_ACTOR, PurgeLock,
    days_before, local_month, months_before,
};
pub use sealed::{CSRF_KEY, SecretError, VAPID_PRIVATE_KEY};
pub use sharing::{Exposure, ReassignError, Reassigned};
pub use tombstones::{Deleted, Deleting, DeletionReason};
pub use volunteers::{
    ERASED_NAME, Erased, NewVolunteer, Slot, Training, Volunteer, VolunteerPatch,
};

/// PostgreSQL channel of `'<instance>:<document id>'`: a document changed.
pub const CHANGES_CHANNEL: &str = "lotse_docs";
/// PostgreSQL channel of `'<instance>:<volunteer id>'`: documents were shared with the
/// volunteer.
pub const SHARES_CHANNEL: &str = "lotse_shared";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("could not prepare the database folder: {0}")]
    Folder(#[source] std::io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A write that would break a quota or borrow another writer's actor; nothing of it
    /// was stored.
    #[error("refused: {}", .0.rule)]
    Refused(lotse_protocol::quota::Refusal),
    /// The document was deleted by the network; it cannot be written again.
    #[error("the document was deleted")]
    Tombstoned,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Turns a unique-constraint violation into `StoreError::Conflict(what)`.
pub(crate) trait OnConflict<T> {
    fn on_conflict(self, what: &'static str) -> Result<T>;
}

impl<T> OnConflict<T> for std::result::Result<T, sqlx::Error> {
    fn on_conflict(self, what: &'static str) -> Result<T> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(e),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: std::sync::Arc<str>,
    /// Names this server process in change notifications to other instances.
    instance: std::sync::Arc<str>,
    /// Seals the secret settings (`sealed.rs`); `None` keeps them in plain text.
    server_key: Option<std::sync::Arc<crate::secrets::ServerKey>>,
}

impl Store {
    /// Connects to `url`; for SQLite the file and its folder are created when missing.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer at a time; a few connections let reads proceed
            // beside it (WAL) without turning every write into a busy-wait.
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Deleted content is overwritten, not left in free pages: a deleted
                        // case must not be recoverable from the database file.
                        sqlx::query("PRAGMA secure_delete = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // WAL is a property of the database file, so setting it once suffices.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Self {
            pool,
            backend,
            url: url.into(),
            instance: uuid::Uuid::new_v4().simple().to_string().into(),
            server_key: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// On PostgreSQL, tells other server instances (LISTEN lotse_docs) that a document
    /// changed; sent inside the writing transaction, so it is delivered only on commit.
    pub(crate) async fn notify_changed(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &str,
    ) -> Result<()> {
        self.notify(conn, CHANGES_CHANNEL, id).await
    }

    /// On PostgreSQL, tells other server instances (LISTEN lotse_shared) that documents
    /// were shared with a volunteer, so they can tell the volunteer's connected devices.
    /// Like `notify_changed`, delivered only on commit. The payload is an id, no name.
    pub(crate) async fn notify_shared(
        &self,
        conn: &mut sqlx::AnyConnection,
        volunteer_id: &str,
    ) -> Result<()> {
        self.notify(conn, SHARES_CHANNEL, volunteer_id).await
    }

    async fn notify(
        &self,
        conn: &mut sqlx::AnyConnection,
        channel: &str,
        subject: &str,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(format!("{}:{subject}", self.instance))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Answers whether the database responds, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction that takes the write lock at once on SQLite, so that two
    /// writers queue on the busy timeout instead of failing when a read upgrades.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file readable by its owner only (0600), before SQLite would
/// create it with the umask's permissions: it holds every case. SQLite gives its `-wal`
/// and `-shm` files the same permissions. An existing file is left as it is.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Adds `mode=rwc` so SQLite creates the file, and creates the folder it lives in.
fn prepare_sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    if !in_memory {
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(StoreError::Folder)?;
        }
        // Only where SQLite would create it: not for a read-only or read-write open.
        if !query.contains("mode=") || query.contains("mode=rwc") {
            create_private(std::path::Path::new(path)).map_err(StoreError::Folder)?;
        }
    }
    if query.contains("mode=") {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("{url}?mode=rwc"))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

/// A query on the `Any` driver, for helpers that bind a record's fields.
type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// The row of `table` (with `columns`, both constants of the calling module) that has
/// `id` and belongs to the organisation, as `read` makes it.
async fn load_scoped<T>(
    conn: &mut sqlx::AnyConnection,
    (table, columns): (&str, &str),
    organisation_id: &str,
    id: &str,
    read: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    let row = sqlx::query(safe_sql!(
        "SELECT {columns} FROM {table} WHERE organisation_id = $1 AND id = $2"
    ))
    .bind(organisation_id)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(read).transpose()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses a JSON list column; a value we cannot read is reported, never papered over.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_new_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lotse-private-{}", super::new_id()));
        let url = format!("sqlite://{}/lotse.db", dir.display());
        prepare_sqlite_url(&url).unwrap();
        let mode = std::fs::metadata(dir.join("lotse.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("lotse-url-{}", new_id()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:?cache=shared").unwrap(),
            "sqlite::memory:?cache=shared&mode=rwc"
        );
        assert_eq!(
            prepare_sqlite_url("sqlite://a.db?mode=ro").unwrap(),
            "sqlite://a.db?mode=ro"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

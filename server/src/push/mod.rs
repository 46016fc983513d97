//! Web Push (RFC 8030, RFC 8291 aes128gcm, RFC 8292 VAPID): the VAPID key pair, the
//! checks on subscriptions, the notices the requests code queues, and the worker that
//! delivers the outbox.
//!
//! - `vapid`: the server's P-256 key pair (made at first start, kept in `settings`) and
//!   the JWT that identifies us to push services.
//! - `endpoint`: what a subscription may point at (https, public addresses) and its keys.
//! - `notice`: the payload (no personal data), TTL, Urgency and `Topic` of each notice.
//! - `worker`: claims due outbox rows, encrypts, sends with reqwest, retries or drops.

pub mod endpoint;
pub mod notice;
mod vapid;
mod worker;

use std::sync::Arc;

use tokio::sync::Notify;

pub use endpoint::{EndpointError, KeyError, check_endpoint, check_keys, is_public_address};
pub use notice::{MAX_PAYLOAD_BYTES, Notice, Payload, push_topic};

/// The kinds of notice: to phones an offer, "someone else took it", "the request was
/// cancelled"; to coordinators a request from the intake form and an accepted request.
pub use crate::store::NoticeKind;

use crate::config::PushConfig;
use crate::store::{Store, StoreError, now_ms};
use vapid::VapidKey;

/// The Web Push sender: shared through `AppState`; `spawn_worker` starts the delivery.
pub struct Push {
    store: Store,
    config: PushConfig,
    vapid: VapidKey,
    wake: Notify,
    /// When this sender was made: claims older than that on a SQLite file are leftovers
    /// of a previous process.
    started_at: i64,
}

impl Push {
    /// Loads the VAPID key pair from the database, creating it at the first start.
    pub async fn new(store: Store, config: PushConfig) -> Result<Self, StoreError> {
        let vapid = VapidKey::load_or_create(&store).await?;
        if !(config.vapid_subject.starts_with("mailto:")
            || config.vapid_subject.starts_with("https:"))
        {
            // RFC 8292 asks for a contact URI; some push services refuse anything else.
            tracing::warn!(
                subject = %config.vapid_subject,
                "the VAPID subject should be a mailto: or https: URL (LOTSE_VAPID_SUBJECT)"
            );
        }
        Ok(Self {
            store,
            config,
            vapid,
            wake: Notify::new(),
            started_at: now_ms(),
        })
    }

    /// The VAPID public key as browsers' `applicationServerKey` wants it: the
    /// uncompressed P-256 point (65 bytes), base64url without padding.
    pub fn vapid_public_key(&self) -> &str {
        self.vapid.public_key_base64()
    }

    pub fn config(&self) -> &PushConfig {
        &self.config
    }

    /// Tells the worker that rows were queued, so it sends now instead of at its next
    /// poll. Call it after the transaction that called `enqueue` has committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts delivering the outbox until the task is aborted. Two workers (even in two
    /// processes sharing PostgreSQL) never send the same claim twice; see `worker`.
    pub fn spawn_worker(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(worker::run(self))
    }
}

/// Who a notice is for.
#[derive(Debug, Clone, Copy)]
pub enum Recipients<'a> {
    /// The volunteers' devices that are not revoked.
    Volunteers(&'a [String]),
    /// The browsers of the organisation's coordinators.
    Coordinators(&'a str),
}

/// Queues each notice for its recipients' push subscriptions inside the caller's
/// transaction, so the pushes commit (or roll back) with the decision they announce.
/// Give it everything one transaction queues, in one call: the rows are then locked in
/// the one order the worker uses too (see `store::enqueue_rows`). Returns how many sends
/// were queued. Call `Push::wake` after the commit.
pub async fn enqueue_each(
    conn: &mut sqlx::AnyConnection,
    notices: &[(Recipients<'_>, &Notice)],
) -> Result<u64, StoreError> {
    let now = now_ms();
    let prepared: Vec<_> = notices.iter().map(|(_, n)| n.prepare(now)).collect();
    let mut rows = Vec::new();
    for ((to, _), p) in notices.iter().zip(&prepared) {
        let subscriptions = match to {
            Recipients::Volunteers([]) => continue,
            Recipients::Volunteers(ids) => crate::store::volunteer_subscriptions(conn, ids).await?,
            Recipients::Coordinators(org) => {
                crate::store::coordinator_subscriptions(conn, org).await?
            }
        };
        rows.extend(subscriptions.into_iter().map(|s| (s, p.entry())));
    }
    crate::store::enqueue_rows(conn, rows).await
}

/// Queues `notice` for the volunteers' devices (see `enqueue_each`).
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    volunteer_ids: &[String],
    notice: &Notice,
) -> Result<u64, StoreError> {
    enqueue_each(conn, &[(Recipients::Volunteers(volunteer_ids), notice)]).await
}

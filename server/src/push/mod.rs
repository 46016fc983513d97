//! Web Push (RFC 8030, RFC 8291 aes128gcm, RFC 8292 VAPID): the VAPID key pair, the
//! checks on subscriptions, and the worker that delivers the outbox.
//!
//! - `vapid`: the server's P-256 key pair (made at first start, kept in `settings`) and
//!   the JWT that identifies us to push services.
//! - `endpoint`: what a subscription may point at (https, public addresses) and its keys.
//! - `worker`: claims due outbox rows, encrypts, sends with reqwest, retries or drops.
//!
//! The notices themselves (payload without personal data, TTL, Urgency, `Topic`) and
//! their queueing belong to the store (`store/notice.rs`, `store/push.rs`): the requests
//! code queues them inside its own transactions, and the store never calls back into this
//! module. They are re-exported here under their old names.

pub mod endpoint;
mod vapid;
mod worker;

use std::sync::Arc;

use tokio::sync::Notify;

pub use crate::store::{
    MAX_PAYLOAD_BYTES, Notice, Payload, Recipients, enqueue, enqueue_each, push_topic,
};
pub use endpoint::{EndpointError, KeyError, check_endpoint, check_keys, is_public_address};

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

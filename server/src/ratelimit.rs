//! Slows down guessing: after a few failures a key (an account at an address, an
//! address) must wait, and each further failure doubles the wait. The counters live in
//! the database (`store/rate_limits.rs`), so that several instances behind one proxy
//! count the same guesses, and an attempt is checked and counted in one statement, so
//! that attempts made at the same moment cannot all pass the check before any is
//! counted.

use std::time::Duration;

use sha2::{Digest, Sha256};

pub use crate::store::RatePolicy as Policy;
use crate::store::{Store, StoreError, now_ms};

/// Why an attempt may not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many attempts; wait {0:?}")]
    Wait(Duration),
    /// The counter could not be read or written: refused, since an attempt that cannot
    /// be counted must not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Limiter {
    store: Store,
    policy: Policy,
}

impl Limiter {
    pub fn new(store: Store, policy: Policy) -> Self {
        Self { store, policy }
    }

    /// Checks and counts one attempt as a failure in one step. An attempt that then
    /// succeeds takes its count back with [`Limiter::refund`] (or clears the key with
    /// [`Limiter::success`]).
    pub async fn attempt(&self, key: &str) -> Result<(), Refused> {
        self.attempt_at(key, now_ms()).await
    }

    /// [`Limiter::attempt`] at `now` (milliseconds since the epoch), for tests.
    pub async fn attempt_at(&self, key: &str, now: i64) -> Result<(), Refused> {
        self.store
            .count_attempt(&stored_key(key), &self.policy, now)
            .await?
            .map_err(Refused::Wait)
    }

    /// Takes back the count of one attempt that succeeded. Failing, it leaves one
    /// failure too many counted, which the window forgets: logged, not passed on.
    pub async fn refund(&self, key: &str) {
        if let Err(e) = self.store.refund_attempt(&stored_key(key)).await {
            tracing::warn!(error = %e, "rate limit: refund not stored");
        }
    }

    /// Forgets the key's failures (the account's owner logged in).
    pub async fn success(&self, key: &str) {
        if let Err(e) = self.store.clear_attempts(&stored_key(key)).await {
            tracing::warn!(error = %e, "rate limit: reset not stored");
        }
    }
}

/// Removes the counters of every limiter whose window has passed, every `every`, until
/// the task is aborted.
pub async fn sweep(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match store.forget_expired_attempts(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(forgotten = n, "rate limit counters swept"),
            Err(e) => tracing::warn!(error = %e, "rate limit counters not swept"),
        }
    }
}

/// Keys name addresses and e-mail addresses: stored as hashes only.
fn stored_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

//! The outbox worker: claims due rows, encrypts each (RFC 8291 aes128gcm, through the
//! web-push crate), signs a VAPID JWT for the push service's origin, sends it with
//! reqwest and records the outcome:
//!
//! - 2xx: delivered, the row is deleted;
//! - 404/410 (or a subscription that can never work again): the subscription is deleted
//!   with everything pending for it;
//! - 408/429/5xx or a network error: retried with exponential backoff and jitter
//!   (`Retry-After` respected), until `MAX_ATTEMPTS` or the notice's expiry, then dropped
//!   with a warning;
//! - any other answer: dropped with a warning (retrying would get the same answer).
//!
//! Finished rows of a round are deleted together once the round is over, in one
//! transaction (a commit per message made a 10,000-phone fan-out pay 10,000 fsyncs); a
//! crash before that commit sends the round's delivered messages again.
//!
//! A claim is a lease: a worker that dies mid-send leaves the row to be sent again when
//! the lease lapses (on a SQLite file, which only one server uses, at once when the next
//! process starts). Delivery is therefore at least once; the `Topic` header makes a
//! repeat replace the first copy while it waits at the push service.
//!
//! Logs name the subscription id and the push service's host, never the endpoint's path
//! (a capability), keys or payloads.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use reqwest::header::{CONTENT_LENGTH, RETRY_AFTER};
use web_push::{
    ContentEncoding, SubscriptionInfo, Urgency, WebPushError, WebPushMessageBuilder,
    request_builder,
};

use super::Push;
use super::endpoint::{PublicResolver, check_endpoint};
use crate::config::PushConfig;
use crate::store::{Backend, ClaimedPush, now_ms};

/// Rows claimed per round; they are sent concurrently.
const BATCH: i64 = 32;
/// How long a claim holds. Longer than a send can take (`SEND_TIMEOUT`).
const LEASE: Duration = Duration::from_secs(30);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Without a wake-up, look for due rows this often (rows queued by other instances).
const POLL: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);
/// Attempts before a send is given up (roughly an hour of retrying), unless
/// the notice expires first.
pub const MAX_ATTEMPTS: i64 = 14;

pub(super) async fn run(push: Arc<Push>) {
    let client = match client(&push.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "push worker could not build its HTTP client; pushes stay queued");
            return;
        }
    };
    if push.store.backend() == Backend::Sqlite {
        // One server per SQLite file: claims older than this process were cut short by
        // its predecessor's exit and need not wait for their lease.
        match push.store.release_push_claims(push.started_at).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                released = n,
                "pushes interrupted by the last shutdown are due again"
            ),
            Err(e) => tracing::warn!(error = %e, "could not release interrupted pushes"),
        }
    }
    loop {
        match push
            .store
            .claim_pushes(LEASE.as_millis() as i64, BATCH)
            .await
        {
            Ok(batch) if !batch.is_empty() => {
                let finished: Vec<(String, String)> =
                    join_all(batch.into_iter().map(|item| deliver(&push, &client, item)))
                        .await
                        .into_iter()
                        .flatten()
                        .collect();
                if let Err(e) = push.store.finish_pushes(&finished).await {
                    tracing::warn!(rows = finished.len(), error = %e, "could not record finished pushes; they are sent again when their claims lapse");
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "push worker could not claim outbox rows"),
        }
        let wait = match push.store.next_push_due().await {
            Ok(Some(at)) => {
                Duration::from_millis((at - now_ms()).clamp(5, POLL.as_millis() as i64) as u64)
            }
            Ok(None) => POLL,
            Err(e) => {
                tracing::warn!(error = %e, "push worker could not read the outbox");
                POLL
            }
        };
        tokio::select! {
            _ = push.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn client(config: &PushConfig) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("lotse-server/", env!("CARGO_PKG_VERSION")))
        .timeout(SEND_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // Push services answer directly; following a redirect could lead anywhere, and a
        // proxy would resolve names past our address check.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if !config.allow_insecure_push_endpoints {
        builder = builder
            .https_only(true)
            .dns_resolver(Arc::new(PublicResolver));
    }
    builder.build()
}

#[derive(Debug)]
enum Outcome {
    Delivered,
    /// The subscription will never work again.
    Gone(&'static str),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Drop(String),
    Expired,
}

/// Sends one claimed row and records what must happen to it. Rows that are done
/// (delivered, or dropped for good) come back as `(id, claim_token)` so the caller
/// deletes a whole batch in one transaction; retries and gone subscriptions are recorded
/// here.
async fn deliver(
    push: &Push,
    client: &reqwest::Client,
    item: ClaimedPush,
) -> Option<(String, String)> {
    let outcome = attempt(push, client, &item).await;
    let store = &push.store;
    let done = Some((item.id.clone(), item.claim_token.clone()));
    let recorded = match outcome {
        Outcome::Delivered => {
            tracing::debug!(subscription_id = %item.subscription_id, kind = %item.kind, attempts = item.attempts, "push delivered");
            return done;
        }
        Outcome::Gone(reason) => {
            tracing::info!(subscription_id = %item.subscription_id, reason, "push subscription removed");
            store.drop_push_subscription(&item.subscription_id).await
        }
        Outcome::Drop(reason) => {
            tracing::warn!(subscription_id = %item.subscription_id, kind = %item.kind, reason, "push dropped");
            return done;
        }
        Outcome::Expired => {
            tracing::info!(subscription_id = %item.subscription_id, kind = %item.kind, attempts = item.attempts, "push expired before delivery");
            return done;
        }
        Outcome::Retry { reason, after } => {
            let at = now_ms() + retry_delay(item.attempts, after).as_millis() as i64;
            if item.attempts >= MAX_ATTEMPTS {
                tracing::warn!(subscription_id = %item.subscription_id, kind = %item.kind, attempts = item.attempts, reason, "push dropped after too many attempts");
                return done;
            } else if at >= item.expires_at {
                tracing::info!(subscription_id = %item.subscription_id, kind = %item.kind, attempts = item.attempts, reason, "push expires before it could be retried");
                return done;
            }
            tracing::debug!(subscription_id = %item.subscription_id, kind = %item.kind, attempts = item.attempts, reason, "push will be retried");
            store.retry_push(&item.id, &item.claim_token, at).await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(subscription_id = %item.subscription_id, error = %e, "could not record a push outcome; the send is repeated when its claim lapses");
    }
    None
}

async fn attempt(push: &Push, client: &reqwest::Client, item: &ClaimedPush) -> Outcome {
    if item.device_revoked {
        return Outcome::Gone("device revoked");
    }
    let remaining_ms = item.expires_at - now_ms();
    if remaining_ms <= 0 {
        return Outcome::Expired;
    }
    // Checked again: the flag may have been switched off since the subscription came in.
    let Ok(url) = check_endpoint(
        &item.endpoint,
        push.config.allow_insecure_push_endpoints,
        None,
    ) else {
        return Outcome::Gone("endpoint no longer allowed");
    };
    let service = url.host_str().unwrap_or("-").to_owned();
    let info = SubscriptionInfo::new(
        item.endpoint.as_str(),
        item.p256dh.as_str(),
        item.auth.as_str(),
    );
    let audience = url.origin().ascii_serialization();
    let signature = match push
        .vapid
        .sign(&info, &audience, &push.config.vapid_subject)
    {
        Ok(s) => s,
        Err(e) => return Outcome::Drop(format!("could not sign the VAPID token: {e}")),
    };
    let mut message = WebPushMessageBuilder::new(&info);
    message.set_payload(ContentEncoding::Aes128Gcm, item.payload.as_bytes());
    message.set_ttl(u32::try_from((remaining_ms + 999) / 1000).unwrap_or(u32::MAX));
    message.set_urgency(urgency(&item.urgency));
    message.set_topic(item.push_topic.clone());
    message.set_vapid_signature(signature);
    let message = match message.build() {
        Ok(m) => m,
        Err(WebPushError::InvalidCryptoKeys) => {
            return Outcome::Gone("subscription keys unusable");
        }
        Err(e) => return Outcome::Drop(format!("could not build the message: {e}")),
    };
    let (parts, body) = request_builder::build_request::<Vec<u8>>(message).into_parts();
    let mut request = client.post(url).body(body);
    for (name, value) in &parts.headers {
        // reqwest sets the length of the body itself.
        if name.as_str() != CONTENT_LENGTH.as_str() {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            tracing::debug!(subscription_id = %item.subscription_id, %service, status, "push service answered");
            classify(status, retry_after)
        }
        Err(e) => Outcome::Retry {
            // Without the URL: its path is the subscription's secret.
            reason: format!("{service}: {}", e.without_url()),
            after: None,
        },
    }
}

fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::Gone("push service says the subscription is gone"),
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("push service answered {status}"),
            after: retry_after,
        },
        _ => Outcome::Drop(format!("push service answered {status}")),
    }
}

fn urgency(code: &str) -> Urgency {
    match code {
        "very-low" => Urgency::VeryLow,
        "low" => Urgency::Low,
        "high" => Urgency::High,
        _ => Urgency::Normal,
    }
}

/// Exponential backoff with jitter: after attempt n, between half and all of
/// `BACKOFF_BASE * 2^(n-1)` (capped), so retries of many rows spread out; never sooner
/// than the push service's `Retry-After` (itself capped).
fn retry_delay(attempts: i64, retry_after: Option<Duration>) -> Duration {
    let exp = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    let full = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(exp))
        .min(BACKOFF_CAP);
    let jittered = full / 2 + rand::thread_rng().gen_range(Duration::ZERO..=full / 2);
    jittered.max(retry_after.unwrap_or_default().min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for _ in 0..100 {
            let first = retry_delay(1, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fifth = retry_delay(5, None);
            assert!(fifth >= Duration::from_secs(8) && fifth <= Duration::from_secs(16));
            let late = retry_delay(40, None);
            assert!(late >= BACKOFF_CAP / 2 && late <= BACKOFF_CAP);
        }
        assert!(retry_delay(1, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(1_000_000))),
            RETRY_AFTER_CAP
        );
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(classify(201, None), Outcome::Delivered));
        assert!(matches!(classify(410, None), Outcome::Gone(_)));
        assert!(matches!(classify(404, None), Outcome::Gone(_)));
        assert!(matches!(classify(429, None), Outcome::Retry { .. }));
        assert!(matches!(classify(503, None), Outcome::Retry { .. }));
        assert!(matches!(classify(400, None), Outcome::Drop(_)));
        assert!(matches!(classify(413, None), Outcome::Drop(_)));
    }
}

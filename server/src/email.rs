//! E-mail, optional: invitations and password-reset links go out through SMTP when
//! `--smtp-url` names a server. Messages are queued in the store's outbox in the
//! transaction that made them; the worker here sends them with lettre, deletes what the
//! SMTP server accepted and retries the rest with backoff, so a restart or an unreachable
//! server loses nothing. Without SMTP nothing is queued and the dashboard shows the links.
//!
//! No case content ever goes into an e-mail; logs name the outbox row, never the
//! recipient or the body (a link is a capability).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use tokio::sync::Notify;

use crate::config::MailConfig;
use crate::store::{ClaimedEmail, Store, now_ms};

const BATCH: i64 = 16;
const LEASE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(15);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);
/// About two days of retrying before a message is dropped (its link has expired then).
pub const MAX_ATTEMPTS: i64 = 110;

#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("--smtp-url is not a usable SMTP address: {0}")]
    Url(String),
    #[error("--smtp-from is not an e-mail address with an optional name: {0}")]
    From(String),
}

/// The configured SMTP server, or none.
pub struct Mail {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    store: Store,
    wake: Notify,
}

impl Mail {
    pub fn new(store: Store, config: &MailConfig) -> Result<Self, MailSetupError> {
        let from = if config.smtp_from.is_empty() {
            "Lotse <lotse@localhost>"
        } else {
            &config.smtp_from
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailSetupError::From(e.to_string()))?;
        let transport = match &config.smtp_url {
            None => None,
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    // The error names what is wrong, not the URL (it may hold a password).
                    .map_err(|e| MailSetupError::Url(e.to_string()))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
        };
        Ok(Self {
            transport,
            from,
            store,
            wake: Notify::new(),
        })
    }

    /// Without SMTP: no e-mails, links are handed over in person.
    pub fn disabled(store: Store) -> Self {
        Self {
            transport: None,
            from: Mailbox::new(None, "lotse@localhost".parse().expect("a valid address")),
            store,
            wake: Notify::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Something was queued: send it now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn spawn_worker(self: Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.enabled().then(|| tokio::spawn(run(self)))
    }
}

async fn run(mail: Arc<Mail>) {
    let Some(transport) = mail.transport.clone() else {
        return;
    };
    // One server per SQLite file: claims left are from a predecessor that stopped.
    if mail.store.backend() == crate::store::Backend::Sqlite
        && let Err(e) = mail.store.release_email_claims().await
    {
        tracing::warn!(error = %e, "could not release e-mails interrupted by the last shutdown");
    }
    loop {
        match mail
            .store
            .claim_emails(LEASE.as_millis() as i64, BATCH)
            .await
        {
            Ok(batch) if !batch.is_empty() => {
                for item in batch {
                    deliver(&mail, &transport, item).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "mail worker could not claim outbox rows"),
        }
        let wait = match mail.store.next_email_due().await {
            Ok(Some(at)) => {
                Duration::from_millis((at - now_ms()).clamp(5, POLL.as_millis() as i64) as u64)
            }
            Ok(None) => POLL,
            Err(e) => {
                tracing::warn!(error = %e, "mail worker could not read the outbox");
                POLL
            }
        };
        tokio::select! {
            _ = mail.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn deliver(mail: &Mail, transport: &AsyncSmtpTransport<Tokio1Executor>, item: ClaimedEmail) {
    let outcome = match message(&mail.from, &item) {
        Ok(message) => transport.send(message).await.map(|_| ()).map_err(|e| {
            // Permanent (5xx) answers will not change with retrying.
            let permanent = e.is_permanent();
            (permanent, e.to_string())
        }),
        Err(e) => Err((true, e)),
    };
    let store = &mail.store;
    let result = match outcome {
        Ok(()) => {
            tracing::info!(email_id = %item.id, "e-mail handed to the SMTP server");
            store.finish_email(&item.id, &item.claim_token).await
        }
        Err((permanent, why)) if permanent || item.attempts >= MAX_ATTEMPTS => {
            tracing::warn!(email_id = %item.id, attempts = item.attempts, error = %why, "e-mail given up");
            store.finish_email(&item.id, &item.claim_token).await
        }
        Err((_, why)) => {
            let at = now_ms() + backoff(item.attempts).as_millis() as i64;
            tracing::info!(email_id = %item.id, attempts = item.attempts, error = %why, "e-mail not sent yet; retrying");
            store
                .retry_email(&item.id, &item.claim_token, at, &why)
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(email_id = %item.id, error = %e, "could not record an e-mail's outcome; it is sent again when its claim lapses");
    }
}

fn backoff(attempts: i64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1 << attempts.clamp(0, 16) as u32);
    let capped = exp.min(BACKOFF_CAP);
    let jitter = rand::thread_rng().gen_range(0..=capped.as_millis() as u64 / 4);
    capped + Duration::from_millis(jitter)
}

fn message(from: &Mailbox, item: &ClaimedEmail) -> Result<Message, String> {
    let to: Mailbox = item
        .recipient
        .parse()
        .map_err(|e: lettre::address::AddressError| format!("recipient: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(item.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(item.body.clone())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        assert!(backoff(0) >= BACKOFF_BASE);
        assert!(backoff(3) >= BACKOFF_BASE * 8);
        assert!(backoff(60) <= BACKOFF_CAP + BACKOFF_CAP / 4);
    }
}

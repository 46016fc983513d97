//! Offers of requests to this volunteer and the phone's answers to them. The last list
//! fetched from `GET /api/v1/offers` and every answer live sealed in the store (one blob),
//! so offers show offline and an accept pressed in a dead spot survives the app being
//! killed. Queued answers go out from a task of their own whenever the sync connects (and
//! when the app answers while online); the server's accept is idempotent, so a resend
//! after a lost answer gets the same outcome. A network failure keeps an answer queued;
//! `already_taken`, `request_closed` and "no such offer" are final.

use std::sync::Arc;

use lotse_protocol::offer::{Declined, Offer};
use lotse_protocol::{Millis, OfferStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::crypto::aad;
use crate::error::{Error, Result};
use crate::offer_types::{OfferAction, OfferAnswer, OfferList, OfferOutcome, OfferRecord};
use crate::shared::{Command, Shared, now};

/// RFC 3339 as the server writes times, in ms (the protocol's reader of offers uses it).
pub use lotse_protocol::rfc3339::parse as parse_rfc3339;

const META_OFFERS: &str = "offers";
/// Settled answers kept for queries (pending ones are never dropped).
const KEEP_SETTLED: usize = 200;
const MAX_OFFERS: usize = 500;

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    offers: Vec<OfferRecord>,
    fetched_at: Option<Millis>,
    answers: Vec<OfferAnswer>,
}

async fn load(shared: &Shared) -> Result<Stored> {
    let guard = shared.repo.lock().await;
    let repo = guard.as_ref().ok_or(Error::Closed)?;
    load_from(repo).await
}

async fn load_from(repo: &crate::repo::Repo) -> Result<Stored> {
    match repo.sealed_meta(META_OFFERS, aad::OFFERS).await? {
        None => Ok(Stored::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("stored offers: {e}"))),
    }
}

/// Read, change and store the offer state under the repo lock, so concurrent calls do
/// not lose each other's writes.
async fn update<T>(shared: &Shared, f: impl FnOnce(&mut Stored) -> T) -> Result<T> {
    let guard = shared.repo.lock().await;
    let repo = guard.as_ref().ok_or(Error::Closed)?;
    let mut stored = load_from(repo).await?;
    let out = f(&mut stored);
    let bytes = serde_json::to_vec(&stored)
        .map_err(|e| Error::Internal(format!("encoding offers: {e}")))?;
    repo.set_sealed_meta(META_OFFERS, aad::OFFERS, &bytes)
        .await?;
    Ok(out)
}

fn with_answers(mut offers: Vec<OfferRecord>, answers: &[OfferAnswer]) -> Vec<OfferRecord> {
    for o in &mut offers {
        o.answer = answers.iter().find(|a| a.request_id == o.id).cloned();
    }
    offers
}

pub fn check_request_id(raw: &str) -> Result<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid("request_id", "not a request id (UUID)"))
}

/// The offer list: from the server when it can be reached (and stored), else the stored
/// one.
pub async fn list(shared: &Shared) -> Result<OfferList> {
    let token = shared.token().await?;
    // Server settings that rule the network out are said as such, not hidden behind the
    // stored list (`cached` shows that one).
    shared.transport()?;
    if shared.network_available() {
        match fetch(shared, &token).await {
            Ok(offers) => {
                let fetched_at = now();
                let answers = update(shared, |s| {
                    s.offers = offers.clone();
                    s.fetched_at = Some(fetched_at);
                    s.answers.clone()
                })
                .await?;
                return Ok(OfferList {
                    offers: with_answers(offers, &answers),
                    fetched_at: Some(fetched_at),
                    fresh: true,
                });
            }
            // A captive portal's certificate is as good as no network for this list.
            Err(Error::Network(e) | Error::Untrusted(e)) => {
                tracing::info!(error = %e, "offers: showing the stored list");
            }
            Err(Error::Server { status, .. }) if status >= 500 => {}
            Err(e) => return Err(e),
        }
    }
    cached(shared).await
}

pub async fn cached(shared: &Shared) -> Result<OfferList> {
    let stored = load(shared).await?;
    Ok(OfferList {
        offers: with_answers(stored.offers, &stored.answers),
        fetched_at: stored.fetched_at,
        fresh: false,
    })
}

pub async fn answers(shared: &Shared) -> Result<Vec<OfferAnswer>> {
    Ok(load(shared).await?.answers)
}

/// Queues an answer durably. An answer already settled for the request is returned as it
/// is (answers are final); a queued one not sent yet takes the new action.
pub async fn answer(shared: &Shared, raw_id: &str, action: OfferAction) -> Result<OfferAnswer> {
    let request_id = check_request_id(raw_id)?;
    shared.token().await?;
    let answer = update(shared, |s| {
        if let Some(existing) = s.answers.iter_mut().find(|a| a.request_id == request_id) {
            if existing.outcome.is_none() {
                existing.action = action;
            }
            return existing.clone();
        }
        let answer = OfferAnswer {
            request_id: request_id.clone(),
            action,
            answered_at: now(),
            outcome: None,
            decided_at: None,
        };
        s.answers.push(answer.clone());
        let settled = s.answers.iter().filter(|a| a.outcome.is_some()).count();
        if settled > KEEP_SETTLED {
            let mut drop = settled - KEEP_SETTLED;
            s.answers.retain(|a| {
                if drop > 0 && a.outcome.is_some() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        answer
    })
    .await?;
    if answer.outcome.is_none() {
        shared.offers_wake.notify_one();
    }
    Ok(answer)
}

async fn fetch(shared: &Shared, token: &str) -> Result<Vec<OfferRecord>> {
    let response = shared
        .transport()?
        .http
        .get(shared.api("/api/v1/offers"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(crate::shared::network)?;
    let offers: Vec<Offer> = crate::shared::json_answer(response).await?;
    Ok(offers
        .into_iter()
        .take(MAX_OFFERS)
        .map(OfferRecord::from)
        .collect())
}

/// Sends one answer. `Ok`: a final outcome. `Err`: try again later.
async fn send(shared: &Shared, token: &str, answer: &OfferAnswer) -> Result<OfferOutcome> {
    let verb = match answer.action {
        OfferAction::Accept => "accept",
        OfferAction::Decline => "decline",
    };
    let response = shared
        .transport()?
        .http
        .post(shared.api(&format!("/api/v1/offers/{}/{verb}", answer.request_id)))
        .bearer_auth(token)
        .send()
        .await
        .map_err(crate::shared::network)?;
    let result: Result<serde_json::Value> = crate::shared::json_answer(response).await;
    // A success is final whatever its body says; the body only adds detail, so one this
    // version cannot read does not keep the answer queued.
    match (answer.action, result) {
        (OfferAction::Accept, Ok(body)) => Ok(OfferOutcome::Won {
            case_id: serde_json::from_value::<Offer>(body)
                .ok()
                .and_then(|o| o.assignment?.case_id),
        }),
        (OfferAction::Decline, Ok(body)) => {
            let status = serde_json::from_value::<Declined>(body).map(|d| d.status);
            Ok(match status {
                Ok(OfferStatus::Taken) => OfferOutcome::AlreadyTaken,
                Ok(OfferStatus::Withdrawn) => OfferOutcome::Closed,
                Ok(OfferStatus::Accepted) => OfferOutcome::Refused {
                    code: "already_accepted".into(),
                },
                _ => OfferOutcome::Declined,
            })
        }
        (_, Err(Error::Server { status, code, .. })) => match (status, code.as_str()) {
            (409, "already_taken") => Ok(OfferOutcome::AlreadyTaken),
            (409, _) => Ok(OfferOutcome::Closed),
            (404, _) => Ok(OfferOutcome::NotOffered),
            // Not allowed now (revoked, rate-limited, server trouble): keep it queued.
            (401 | 403 | 408 | 429, _) | (500.., _) => Err(Error::Server {
                status,
                code,
                reason: "will retry".into(),
            }),
            (_, _) => Ok(OfferOutcome::Refused { code }),
        },
        (_, Err(e)) => Err(e),
    }
}

/// Sends every queued answer, oldest first; stops at the first that must wait.
pub async fn flush(shared: &Shared) -> Result<()> {
    loop {
        let token = shared.token().await?;
        let Some(next) = load(shared)
            .await?
            .answers
            .into_iter()
            .find(|a| a.outcome.is_none())
        else {
            return Ok(());
        };
        let outcome = send(shared, &token, &next).await?;
        let settled = update(shared, |s| {
            let a = s
                .answers
                .iter_mut()
                .find(|a| a.request_id == next.request_id)?;
            if a.outcome.is_some() {
                return None;
            }
            if a.action != next.action {
                // Changed while in flight: send the new action next round. (Only a
                // decline can be overridden by the accept that won, or vice versa, which
                // the server settles; keep what it said.)
                a.action = next.action;
            }
            a.outcome = Some(outcome.clone());
            a.decided_at = Some(now());
            let status = match &outcome {
                OfferOutcome::Won { .. } => OfferStatus::Accepted,
                OfferOutcome::AlreadyTaken => OfferStatus::Taken,
                OfferOutcome::Closed => OfferStatus::Withdrawn,
                OfferOutcome::Declined => OfferStatus::Declined,
                OfferOutcome::NotOffered | OfferOutcome::Refused { .. } => return Some(a.clone()),
            };
            let answer = a.clone();
            if let Some(o) = s.offers.iter_mut().find(|o| o.id == next.request_id) {
                o.status = status.code().to_owned();
            }
            Some(answer)
        })
        .await?;
        let Some(answer) = settled else { continue };
        tracing::info!(request_id = %answer.request_id, outcome = ?answer.outcome.as_ref().map(std::mem::discriminant), "offer answer settled");
        if matches!(answer.outcome, Some(OfferOutcome::Won { .. })) {
            // The case document is shared with us now: fetch it with a catch-up.
            let (tx, _rx) = oneshot::channel();
            shared.command(Command::SyncNow(tx));
        }
        shared.events.offer_answered(answer);
    }
}

/// The task that sends queued answers when woken (an answer given, the sync connected,
/// the network back).
pub async fn run(shared: Arc<Shared>) {
    loop {
        shared.offers_wake.notified().await;
        if shared.repo.lock().await.is_none() {
            return;
        }
        if !shared.network_available() {
            continue;
        }
        match flush(&shared).await {
            Ok(()) => {}
            Err(Error::Closed) => return,
            Err(e) => tracing::info!(error = %e, "offer answers stay queued"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuids() {
        assert!(check_request_id("6f1c2d3e-0000-4000-8000-000000000001").is_ok());
        assert!(check_request_id("../devices").is_err());
        assert!(check_request_id("").is_err());
    }
}

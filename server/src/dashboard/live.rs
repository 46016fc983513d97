//! `GET /dashboard/events`: Server-Sent Events that tell an open page to refresh its live
//! regions. An event `change` goes out when a phone's sync changed a document of the
//! organisation (the sync hub's broadcast, at once) and when the dashboard fingerprint
//! changes (requests, offers and answers, devices, synced cases; polled every two
//! seconds, which also catches what another server instance or the REST API did).
//!
//! Every event carries the fingerprint as its id; a browser that reconnects sends it back
//! (`Last-Event-ID`) and hears `change` at once if something changed while it was away.
//!
//! The stream checks the session on every poll and says `bye` when it ended (logout,
//! logout everywhere, expiry). It closes itself after a while and the browser reconnects
//! (`retry`), so that no response stays open forever: graceful shutdown waits for open
//! responses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use lotse_protocol::DocumentId;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};

use super::session::Session;
use crate::app::AppState;
use crate::hub::HubEvent;
use crate::store::AccessChange;

const POLL: Duration = Duration::from_secs(2);
const LIFETIME: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

struct Live {
    state: AppState,
    org: String,
    session_hash: String,
    hub: broadcast::Receiver<HubEvent>,
    tick: Interval,
    fingerprint: Vec<i64>,
    ours: HashMap<DocumentId, bool>,
    until: Instant,
    started: bool,
    /// Ends the stream when the server stops, which otherwise waits for it.
    running: crate::app::lifecycle::Running,
    /// The browser reconnected with an older fingerprint than the current one.
    missed: bool,
    done: bool,
}

impl Live {
    async fn is_ours(&mut self, id: DocumentId) -> bool {
        if let Some(known) = self.ours.get(&id) {
            return *known;
        }
        let ours = matches!(self.state.store.document(&id).await, Ok(Some(d)) if d.organisation_id == self.org);
        if self.ours.len() > 10_000 {
            self.ours.clear();
        }
        self.ours.insert(id, ours);
        ours
    }

    async fn refresh_fingerprint(&mut self) {
        if let Ok(fp) = self.state.store.dashboard_fingerprint(&self.org).await {
            self.fingerprint = fp;
        }
    }

    async fn session_alive(&self) -> bool {
        match self
            .state
            .store
            .coordinator_by_session(&self.session_hash)
            .await
        {
            Ok(found) => found.is_some(),
            // A database hiccup is not a logout; the next poll asks again.
            Err(_) => true,
        }
    }
}

/// A short stable name of a fingerprint, sent as the event id: the browser sends it
/// back as `Last-Event-ID` when it reconnects, so a change missed in between is noticed.
fn fingerprint_id(fp: &[i64]) -> String {
    let text: Vec<String> = fp.iter().map(i64::to_string).collect();
    hex::encode(&Sha256::digest(text.join(",").as_bytes())[..8])
}

fn change(what: &str, fp: &[i64]) -> Event {
    Event::default()
        .event("change")
        .id(fingerprint_id(fp))
        .data(what)
}

async fn next(mut live: Live) -> Option<(Result<Event, Infallible>, Live)> {
    if live.done {
        return None;
    }
    if !live.started {
        live.started = true;
        let hello = Event::default()
            .retry(RETRY)
            .id(fingerprint_id(&live.fingerprint))
            .comment("live");
        return Some((Ok(hello), live));
    }
    if live.missed {
        live.missed = false;
        return Some((Ok(change("missed", &live.fingerprint)), live));
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(live.until) => return None,
            () = live.running.stopping() => return None,
            event = live.hub.recv() => match event {
                Ok(HubEvent::Changed(c)) => {
                    if live.is_ours(c.id).await {
                        live.refresh_fingerprint().await;
                        return Some((Ok(change("case", &live.fingerprint)), live));
                    }
                }
                Ok(HubEvent::Access(a)) => {
                    // A logout ends the stream at once, not at the next poll.
                    let session = matches!(
                        *a,
                        AccessChange::SessionEnded { .. } | AccessChange::SessionsEnded { .. }
                    );
                    if session && !live.session_alive().await {
                        live.done = true;
                        return Some((Ok(Event::default().event("bye").data("session ended")), live));
                    }
                }
                Ok(HubEvent::Ephemeral(_) | HubEvent::Shared(_)) => {}
                Err(RecvError::Lagged(_)) => {
                    live.refresh_fingerprint().await;
                    return Some((Ok(change("lagged", &live.fingerprint)), live));
                }
                Err(RecvError::Closed) => return None,
            },
            _ = live.tick.tick() => {
                if !live.session_alive().await {
                    live.done = true;
                    return Some((Ok(Event::default().event("bye").data("session ended")), live));
                }
                if let Ok(fp) = live.state.store.dashboard_fingerprint(&live.org).await
                    && fp != live.fingerprint
                {
                    live.fingerprint = fp;
                    return Some((Ok(change("data", &live.fingerprint)), live));
                }
            }
        }
    }
}

pub async fn events(State(state): State<AppState>, headers: HeaderMap, s: Session) -> Response {
    let org = s.org().to_owned();
    let fingerprint = state
        .store
        .dashboard_fingerprint(&org)
        .await
        .unwrap_or_default();
    let missed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|seen| seen != fingerprint_id(&fingerprint));
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = Live {
        running: state.lifecycle.enter(),
        hub: state.hub.subscribe(),
        state,
        org,
        session_hash: s.caller.session_hash.clone(),
        tick,
        fingerprint,
        ours: HashMap::new(),
        until: Instant::now() + LIFETIME,
        started: false,
        missed,
        done: false,
    };
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(futures_util::stream::unfold(live, next));
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies must pass events on at once.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

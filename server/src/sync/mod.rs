//! `GET /sync`: the WebSocket sync endpoint (automerge-repo protocol v1 plus our catch-up
//! extension). The upgrade is authenticated before any frame is read.

mod audit;
pub mod connection;

use axum::Router;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::app::caller::{Caller, authenticate, bearer_token};
use crate::app::error::Error;
use crate::store::Viewer;
use connection::PeerIdentity;

pub fn router() -> Router<AppState> {
    Router::new().route("/sync", get(upgrade))
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

struct Token(String);

impl axum::extract::FromRequestParts<AppState> for Token {
    type Rejection = Error;

    /// A bearer token only, never the session cookie: a page on a sibling subdomain
    /// could otherwise open a coordinator's socket with the cookie the browser adds.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        if let Some(t) = bearer_token(parts) {
            return Ok(Self(t));
        }
        // Browsers cannot set headers on a WebSocket, so they send the token in the
        // query (which the trace layer never logs).
        let Query(param) = Query::<TokenParam>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::Unauthorized)?;
        param.token.map(Self).ok_or(Error::Unauthorized)
    }
}

/// A browser's socket must come from a page of this server: an `Origin` whose host is
/// not the `Host` asked for is refused. Native clients send none.
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<axum::http::Uri>().ok())
        .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h.to_ascii_lowercase())
}

struct SameOrigin;

impl axum::extract::FromRequestParts<AppState> for SameOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Error> {
        if same_origin(parts) {
            Ok(Self)
        } else {
            Err(Error::Forbidden("pages of this server"))
        }
    }
}

async fn upgrade(
    State(state): State<AppState>,
    _: SameOrigin,
    Token(token): Token,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let caller = match authenticate(&state, &token).await {
        Ok(Caller::Coordinator(c)) if c.second_factor_setup => {
            return Error::SecondFactorSetup.into_response();
        }
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return Error::bad_request("not_websocket", "GET /sync is a WebSocket endpoint")
                .into_response();
        }
    };
    let lease_ms = match &caller {
        Caller::Device(d) => match state.store.organisation_settings(&d.organisation_id).await {
            Ok(settings) => settings.unwrap_or_default().lease_ms(),
            Err(e) => return Error::Store(e).into_response(),
        },
        Caller::Coordinator(_) => 0,
    };
    let who = match caller {
        Caller::Coordinator(c) => PeerIdentity {
            viewer: Viewer {
                organisation_id: c.coordinator.organisation_id.clone(),
                volunteer_id: None,
            },
            device_id: None,
            principal: format!("coordinator:{}", c.coordinator.id),
            actor_kind: "coordinator",
            actor_id: c.coordinator.id.clone(),
            session: Some((c.session_hash.clone(), c.session_expires_at)),
            lease_ms: None,
        },
        Caller::Device(d) => PeerIdentity {
            viewer: Viewer {
                organisation_id: d.organisation_id.clone(),
                volunteer_id: Some(d.device.volunteer_id.clone()),
            },
            device_id: Some(d.device.id.clone()),
            principal: format!("device:{}", d.device.id),
            actor_kind: "device",
            actor_id: d.device.id.clone(),
            session: None,
            lease_ms: Some(lease_ms),
        },
    };
    let place = match &who.device_id {
        Some(device) => match state.sockets.enter(device) {
            Some(place) => Some(place),
            None => return Error::TooManyConnections(state.sockets.limit).into_response(),
        },
        None => None,
    };
    let hub = state.hub.clone();
    let store = state.store.clone();
    let running = state.lifecycle.enter();
    // tungstenite preallocates its read buffer per socket (128 KiB by default); thousands
    // of idle phones make that the server's largest cost, so start small (a frame larger
    // than this only takes more reads). 2 KiB: 7.9 KiB per idle connection at 10,000
    // (BENCHMARKS.md scenario 4).
    ws.read_buffer_size(2 * 1024)
        .max_message_size(connection::MAX_FRAME_BYTES * 2)
        .max_frame_size(connection::MAX_FRAME_BYTES * 2)
        .on_upgrade(move |socket| connection::run(socket, hub, store, who, place, running))
}

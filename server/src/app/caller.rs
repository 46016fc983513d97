//! Who is asking: a coordinator (session token, from the cookie or a Bearer header) or a
//! volunteer's device (device token). Extractors reject with 401 before a handler runs.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::Error;
use crate::auth::{self, DEVICE_PREFIX, SESSION_PREFIX};
use crate::store::{Actor, Coordinator, EnrolledDevice};

pub const SESSION_COOKIE: &str = "lotse_session";

#[derive(Debug, Clone)]
pub struct CoordinatorCaller {
    pub coordinator: Coordinator,
    pub session_hash: String,
    /// ms since the epoch.
    pub session_expires_at: i64,
    /// This coordinator must set up a second factor before anything else: the session
    /// opens the setup page of the dashboard and nothing more.
    pub second_factor_setup: bool,
}

impl CoordinatorCaller {
    pub fn organisation_id(&self) -> &str {
        &self.coordinator.organisation_id
    }

    pub fn id(&self) -> &str {
        &self.coordinator.id
    }

    /// Only Leitung may do `what` (manage the team, the settings, delete or erase).
    pub fn require_leitung(&self, what: &'static str) -> Result<(), Error> {
        if self.coordinator.is_leitung() {
            Ok(())
        } else {
            Err(Error::LeitungOnly(what))
        }
    }

    /// This coordinator, as the requests' history names who acted.
    pub fn actor(&self) -> Actor<'_> {
        Actor::coordinator(self.id())
    }
}

#[derive(Debug, Clone)]
pub enum Caller {
    Coordinator(CoordinatorCaller),
    Device(EnrolledDevice),
}

impl Caller {
    /// Whom the actors of a document the server writes for this caller are bound to.
    pub fn writer(&self) -> crate::store::Writer {
        match self {
            Caller::Coordinator(c) => crate::store::Writer::Coordinator {
                coordinator_id: c.id().to_owned(),
            },
            Caller::Device(d) => crate::store::Writer::Device {
                device_id: d.device.id.clone(),
                volunteer_id: d.device.volunteer_id.clone(),
            },
        }
    }

    /// An audit entry by this caller about a document.
    pub fn audit(&self, action: &'static str, document: &str) -> crate::store::AuditEntry {
        self.audit_of(action, "document", document)
    }

    /// An audit entry by this caller about any record (`request`, `volunteer`, `report`).
    pub fn audit_of(
        &self,
        action: &'static str,
        subject_kind: &'static str,
        subject_id: &str,
    ) -> crate::store::AuditEntry {
        let (organisation_id, actor_kind, actor_id) = match self {
            Caller::Coordinator(c) => (c.organisation_id(), "coordinator", c.id()),
            Caller::Device(d) => (d.organisation_id.as_str(), "device", d.device.id.as_str()),
        };
        let mut entry = crate::store::AuditEntry::document(
            organisation_id,
            actor_kind,
            actor_id,
            action,
            subject_id,
        );
        entry.subject_kind = subject_kind;
        entry
    }
}

/// The token of a request: `Authorization: Bearer`, else the session cookie.
pub fn request_token(parts: &Parts) -> Option<String> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return bearer_token(parts);
    }
    cookie(&parts.headers, SESSION_COOKIE)
}

/// The token of `Authorization: Bearer` only.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The value of cookie `name`, from any of the request's `Cookie` headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Resolves a token to its caller; used by the extractors and the sync endpoint.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, Error> {
    let hash = auth::token_hash(token);
    if token.starts_with(SESSION_PREFIX) {
        let (coordinator, session_expires_at) = state
            .store
            .session(&hash)
            .await?
            .ok_or(Error::Unauthorized)?;
        let second_factor_setup = !state.config.two_factor_optional
            && !coordinator.two_factor
            && crate::team::needs_second_factor(
                &coordinator,
                coordinator.is_leitung()
                    || state
                        .store
                        .two_factor_for_all(&coordinator.organisation_id)
                        .await?,
            );
        Ok(Caller::Coordinator(CoordinatorCaller {
            coordinator,
            session_hash: hash,
            session_expires_at,
            second_factor_setup,
        }))
    } else if token.starts_with(DEVICE_PREFIX) {
        let device = state
            .store
            .device_by_token(&hash)
            .await?
            .ok_or(Error::Unauthorized)?;
        // A volunteer who left counts as revoked even if a revocation was missed, so
        // the phone hears `device_revoked` and wipes itself.
        if !device.may_connect() {
            return Err(Error::DeviceRevoked);
        }
        if let Err(e) = state.store.touch_device(&device.device).await {
            // Last-seen is a convenience for the dashboard; it must not lock a phone out.
            tracing::warn!(device_id = %device.device.id, error = %e, "could not record last seen");
        }
        Ok(Caller::Device(device))
    } else {
        Err(Error::Unauthorized)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = request_token(parts).ok_or(Error::Unauthorized)?;
        let caller = authenticate(state, &token).await?;
        // A session waiting for its second factor opens nothing in the API but `/me`
        // (so a client can say why) and logout.
        if let Caller::Coordinator(c) = &caller
            && c.second_factor_setup
            && !matches!(
                parts.uri.path(),
                "/api/v1/me" | "/api/v1/auth/logout" | "/api/v1/auth/logout-all"
            )
        {
            return Err(Error::SecondFactorSetup);
        }
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for CoordinatorCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Coordinator(c) => Ok(c),
            Caller::Device(_) => Err(Error::Forbidden("coordinators")),
        }
    }
}

impl FromRequestParts<AppState> for EnrolledDevice {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Device(d) => Ok(d),
            Caller::Coordinator(_) => Err(Error::Forbidden("devices")),
        }
    }
}

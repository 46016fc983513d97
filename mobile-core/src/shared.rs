//! The plumbing under the facade ([`crate::client`]): the state the API, the sync task
//! ([`crate::sync`]) and the offers task ([`crate::offers`]) share, the commands the API
//! sends the sync task, and the REST calls' transport and answers. It uses none of those
//! three modules, so they all depend on it and not on each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lotse_protocol::{DocumentId, Millis, NewSchedule, ScheduleDoc};
use serde::Deserialize;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::events::{Events, SyncState};
use crate::repo::{Identity, Repo};

pub enum Command {
    LocalChange(Vec<DocumentId>),
    SyncNow(oneshot::Sender<Result<()>>),
    Cancel,
    Network(bool),
    Enrolled,
    Shutdown,
}

/// State shared by the API and the sync task.
pub struct Shared {
    /// `None` once closed.
    pub repo: Mutex<Option<Repo>>,
    pub events: Arc<Events>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) base_url: reqwest::Url,
    /// How to reach the server, or why the configuration does not allow it. A server
    /// address or CA list that cannot be used keeps the network off, never the store
    /// closed: the notes on the phone stay readable until the settings are fixed.
    pub(crate) transport: std::result::Result<Transport, Misconfigured>,
    pub(crate) network: AtomicBool,
    /// Wakes the task that sends queued offer answers.
    pub(crate) offers_wake: Notify,
}

/// The clients that speak to the server, both with the TLS trust of [`crate::tls`].
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    /// Without ALPN: the WebSocket upgrade is HTTP/1.1 only.
    pub(crate) ws_tls: Arc<rustls::ClientConfig>,
}

/// A setting given to `open` that rules out talking to the server.
#[derive(Debug, Clone)]
pub(crate) struct Misconfigured {
    pub(crate) field: &'static str,
    pub(crate) reason: String,
}

impl Transport {
    /// The clients for `base_url` with the trust `extra_pem` adds, or which setting
    /// rules that out. `Err` only for a failure that is not the settings' fault.
    pub(crate) fn new(
        base_url: &reqwest::Url,
        extra_pem: Option<&str>,
    ) -> Result<std::result::Result<Self, Misconfigured>> {
        if base_url.scheme() == "http" && !crate::tls::plain_http_allowed(base_url) {
            return Ok(Err(Misconfigured {
                field: "server_url",
                reason: "must be an https:// address (plain http:// only for a server on \
                         this device)"
                    .into(),
            }));
        }
        let tls = match crate::tls::client_config(extra_pem) {
            Ok(tls) => tls,
            Err(Error::InvalidInput { reason, .. }) => {
                return Ok(Err(Misconfigured {
                    field: crate::tls::FIELD,
                    reason,
                }));
            }
            Err(e) => return Err(e),
        };
        let mut http_tls = tls.clone();
        http_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(http_tls)
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Ok(Self {
            http,
            ws_tls: Arc::new(tls),
        }))
    }
}

impl Shared {
    /// Enforces the lease at `now` on the open store: once it has lapsed, every document,
    /// its key and the token are destroyed (the file rewritten, the WAL emptied) before
    /// anything is read, the listeners hear [`SyncState::LeaseLapsed`], and the call that
    /// noticed fails with [`Error::LeaseLapsed`].
    pub(crate) async fn enforce_lease(&self, repo: &mut Repo, now: Millis) -> Result<()> {
        if !repo.lease_lapsed(now) {
            return Ok(());
        }
        let ids: Vec<DocumentId> = repo.docs.keys().copied().collect();
        repo.wipe().await?;
        tracing::warn!(
            "no contact with the server for longer than the lease; local data destroyed"
        );
        self.events.set_state(SyncState::LeaseLapsed);
        self.events.changed(ids);
        Err(Error::LeaseLapsed)
    }

    /// The clients for every use of the network, or `InvalidInput` naming the setting
    /// (`server_url`, `trusted_certificates_pem`) that rules the network out.
    pub(crate) fn transport(&self) -> Result<&Transport> {
        self.transport
            .as_ref()
            .map_err(|m| Error::invalid(m.field, m.reason.clone()))
    }

    pub fn network_available(&self) -> bool {
        self.network.load(Ordering::SeqCst)
    }

    pub(crate) fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The device token, or `InvalidState` before enrollment.
    pub(crate) async fn token(&self) -> Result<String> {
        let guard = self.repo.lock().await;
        let repo = guard.as_ref().ok_or(Error::Closed)?;
        repo.identity
            .as_ref()
            .map(|i| i.token.clone())
            .ok_or_else(|| Error::InvalidState("enroll this device first".into()))
    }

    pub(crate) fn api(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.as_str().trim_end_matches('/'))
    }

    pub fn ws_url(&self) -> String {
        let mut url = self.base_url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // Only http and https pass `open`, and both map to a WebSocket scheme.
        let _ = url.set_scheme(scheme);
        format!("{}/sync", url.as_str().trim_end_matches('/'))
    }

    /// Fetches the organisation of an enrolled device if enrollment could not (offline
    /// right after the code was used).
    pub async fn complete_identity(&self) -> Result<()> {
        let identity = {
            let guard = self.repo.lock().await;
            let repo = guard.as_ref().ok_or(Error::Closed)?;
            match &repo.identity {
                Some(i) if i.organisation_id.is_none() => i.clone(),
                _ => return Ok(()),
            }
        };
        let me = self.me(&identity.token).await?;
        let mut guard = self.repo.lock().await;
        let repo = guard.as_mut().ok_or(Error::Closed)?;
        repo.set_identity(Identity {
            organisation_id: Some(me.organisation_id),
            ..identity
        })
        .await
    }

    pub(crate) async fn me(&self, token: &str) -> Result<Me> {
        let response = self
            .transport()?
            .http
            .get(self.api("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(network)?;
        json_answer(response).await
    }

    /// Creates the volunteer's schedule document if none is held. `None`: nothing done.
    pub async fn ensure_schedule(&self) -> Result<Option<DocumentId>> {
        let id = {
            let mut guard = self.repo.lock().await;
            let repo = guard.as_mut().ok_or(Error::Closed)?;
            if schedule_id(repo).is_some() {
                return Ok(None);
            }
            let Some(identity) = repo.identity.clone() else {
                return Ok(None);
            };
            let new = NewSchedule {
                volunteer_id: identity.volunteer_id,
            };
            repo.create(|doc| ScheduleDoc::create(doc, &new, now()))
                .await?
        };
        self.events.changed(vec![id]);
        Ok(Some(id))
    }
}

#[derive(Deserialize)]
pub(crate) struct Me {
    pub(crate) organisation_id: String,
}

pub(crate) fn network(e: reqwest::Error) -> Error {
    if let Some(reason) = crate::tls::failure_in(&e) {
        return Error::Untrusted(reason);
    }
    Error::Network(if e.is_timeout() {
        "the server did not answer in time".into()
    } else if e.is_connect() {
        "the server cannot be reached".into()
    } else {
        e.to_string()
    })
}

/// Decodes a JSON answer, or the server's `{"error": {...}}` into [`Error::Server`]
/// (`device_revoked` into [`Error::Revoked`]).
pub(crate) async fn json_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T> {
    let status = response.status();
    let body = response.bytes().await.map_err(network)?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| Error::Network(format!("unexpected answer from the server: {e}")));
    }
    if status.as_u16() == 401 && is_revoked_body(&body) {
        return Err(Error::Revoked);
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Err(Error::Server {
        status: status.as_u16(),
        code: value["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        reason: value["error"]["message"]
            .as_str()
            .unwrap_or("no details")
            .chars()
            .take(300)
            .collect(),
    })
}

pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Whether an HTTP error answer from the server says the device was revoked.
pub fn is_revoked_body(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(|c| c == "device_revoked"))
        .unwrap_or(false)
}

pub(crate) fn schedule_id(repo: &Repo) -> Option<DocumentId> {
    let volunteer = repo.identity.as_ref().map(|i| i.volunteer_id.as_str());
    let mut schedules = repo.docs.iter().filter_map(|(id, d)| {
        let view = ScheduleDoc::read(&d.doc).ok()?;
        Some((*id, view.volunteer_id))
    });
    // Ours first; the smallest id when several devices each started one.
    let all: Vec<(DocumentId, String)> = schedules.by_ref().collect();
    all.iter()
        .find(|(_, v)| Some(v.as_str()) == volunteer)
        .or(all.first())
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_bodies_are_recognised() {
        assert!(is_revoked_body(
            br#"{"error":{"code":"device_revoked","message":"x"}}"#
        ));
        assert!(!is_revoked_body(
            br#"{"error":{"code":"unauthorized","message":"x"}}"#
        ));
        assert!(!is_revoked_body(b"not json"));
    }
}

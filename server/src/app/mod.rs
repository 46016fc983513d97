//! The application root: the state every part of the server shares (`AppState`) and the
//! root router that merges the REST API
//! (`http`), the sync endpoint (`sync`) and the dashboard (`dashboard`) under the layers
//! they share; `serve` runs it together with the background tasks. `caller` (who is
//! asking) and `error` (the one error type) are here because all three use them.
//!
//! Dependencies point one way: `http/`, `sync/` and `dashboard/` use this module (and
//! `store/`, `hub`, `push/`, ...), never each other; only the router here names them all.

pub mod address;
pub mod caller;
pub mod error;
pub mod lifecycle;
mod listen;
pub mod login;
pub mod team;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::{HttpConfig, PushConfig};
use crate::hub::Hub;
use crate::push::Push;
use crate::ratelimit::{Limiter, Policy};
use crate::store::{AccessChange, Store};

pub struct Limits {
    pub login_account: Limiter,
    pub login_address: Limiter,
    pub enroll_address: Limiter,
    pub intake_address: Limiter,
}

impl Limits {
    fn new(store: &Store) -> Self {
        let secs = Duration::from_secs;
        let limiter = |policy| Limiter::new(store.clone(), policy);
        Self {
            login_account: limiter(Policy::escalating(5, secs(30), secs(15 * 60))),
            // An office behind one NAT address shares this budget, so it is wider.
            login_address: limiter(Policy::escalating(20, secs(30), secs(15 * 60))),
            enroll_address: limiter(Policy::escalating(10, secs(30), secs(60 * 60))),
            // Every submission counts: an office may send a few, a bot many.
            intake_address: limiter(Policy::escalating(20, secs(60), secs(60 * 60))),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<HttpConfig>,
    pub limits: Arc<Limits>,
    pub hub: Arc<Hub>,
    pub push: Arc<Push>,
    /// E-mail through SMTP, when configured (`--smtp-url`).
    pub mail: Arc<crate::email::Mail>,
    /// Serialises creating the case of an accepted request (a retried accept must not
    /// create a second one).
    pub case_creation: Arc<tokio::sync::Mutex<()>>,
    /// Open sync connections per device on this instance.
    pub sockets: Arc<Sockets>,
    /// Password checks running at once (argon2 takes a core and 19 MiB each).
    password_checks: Arc<tokio::sync::Semaphore>,
    /// Ends sync connections and event streams when the server stops.
    pub lifecycle: Arc<lifecycle::Lifecycle>,
}

/// How many sync connections each device holds open here. A phone needs one (two for a
/// moment while it reconnects); a device opening more only takes from everyone else.
pub struct Sockets {
    /// `--sockets-per-device`.
    pub limit: usize,
    per_device: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One counted connection; dropping it frees its place.
pub struct Socket {
    sockets: Arc<Sockets>,
    device: String,
}

impl Sockets {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            per_device: Default::default(),
        }
    }

    /// A place for one more connection of `device`, or `None` when it holds the most.
    pub fn enter(self: &Arc<Self>, device: &str) -> Option<Socket> {
        let mut open = self.per_device.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(device.to_owned()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Socket {
            sockets: self.clone(),
            device: device.to_owned(),
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let mut open = self
            .sockets
            .per_device
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.device) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.device);
            }
        }
    }
}

impl AppState {
    pub async fn new(
        store: Store,
        config: HttpConfig,
        push: PushConfig,
    ) -> Result<Self, crate::store::StoreError> {
        // A wrong or missing server key stops the start here, not at the first push.
        store.open_secrets().await?;
        Ok(Self {
            push: Arc::new(Push::new(store.clone(), push).await?),
            mail: Arc::new(crate::email::Mail::disabled(store.clone())),
            case_creation: Arc::new(tokio::sync::Mutex::new(())),
            sockets: Arc::new(Sockets::new(config.sockets_per_device)),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            hub: Arc::new(Hub::new(store.clone()).await?),
            limits: Arc::new(Limits::new(&store)),
            lifecycle: Arc::default(),
            store,
            config: Arc::new(config),
        })
    }

    /// With e-mail through the SMTP server `config` names.
    pub fn with_mail(
        mut self,
        config: &crate::config::MailConfig,
    ) -> Result<Self, crate::email::MailSetupError> {
        self.mail = Arc::new(crate::email::Mail::new(self.store.clone(), config)?);
        Ok(self)
    }

    /// A new argon2id hash of `password`, made off the async workers like a check.
    pub async fn hash_password(&self, password: String) -> Result<String, error::Error> {
        let _turn = self
            .password_checks
            .acquire()
            .await
            .map_err(|e| error::Error::Internal(e.into()))?;
        tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
            .await
            .map_err(|e| error::Error::Internal(e.into()))?
            .map_err(|e| error::Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
    }

    /// Whether `password` matches `hash`, checked off the async workers and never more
    /// at once than there are cores: a burst of logins waits its turn instead of taking
    /// every core and all memory from the sync connections.
    pub async fn check_password(&self, password: String, hash: String) -> bool {
        let Ok(_turn) = self.password_checks.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// Replaces a case's volunteers and tells this instance's connections at once: the
    /// removed volunteers' stop receiving the case, the added ones' catch up. The one way
    /// the API and the dashboard do it, so neither can store the change and forget to
    /// tell the sockets.
    pub async fn set_case_volunteers(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &lotse_protocol::DocumentId,
        volunteer_ids: &[String],
    ) -> Result<crate::store::Reassigned, crate::store::ReassignError> {
        let mut done = self
            .store
            .set_case_volunteers(organisation_id, actor_id, id, volunteer_ids)
            .await?;
        self.access_shrank(std::mem::take(&mut done.shrunk));
        self.hub.shared_with(done.added.clone());
        tracing::info!(document_id = %id, added = done.added.len(), removed = done.removed.len(), "case volunteers replaced");
        Ok(done)
    }

    /// A case a coordinator starts (API or dashboard): written as `by`, of `kind`, shared
    /// with `volunteers`, who must be active volunteers of the organisation (their ids as
    /// given back: `Err` names the first that is not).
    pub async fn create_case(
        &self,
        by: &crate::app::caller::CoordinatorCaller,
        new: lotse_protocol::NewCase,
        kind: &str,
        volunteers: &[String],
    ) -> Result<Result<lotse_protocol::DocumentId, String>, error::Error> {
        let org = by.organisation_id();
        for id in volunteers {
            if !self
                .store
                .volunteer(org, id)
                .await?
                .is_some_and(|v| v.active)
            {
                return Ok(Err(id.clone()));
            }
        }
        let mut doc = lotse_protocol::automerge::Automerge::new();
        let now = crate::store::now_ms();
        lotse_protocol::CaseDoc::create(&mut doc, &new, now)
            .map_err(|e| error::Error::invalid("case", e.to_string()))?;
        lotse_protocol::CaseDoc::set_kind(&mut doc, kind, now)
            .map_err(|e| error::Error::invalid("kind", e.to_string()))?;
        let caller = caller::Caller::Coordinator(by.clone());
        let id = self
            .hub
            .create_case(doc, org, volunteers, &caller.writer(), |id| {
                caller.audit("document.create", &id.to_string())
            })
            .await
            .map_err(|e| error::Error::Internal(anyhow::anyhow!("creating a case: {e}")))?;
        tracing::info!(document_id = %id, volunteers = volunteers.len(), "case created");
        Ok(Ok(id))
    }

    /// Art. 17 for a volunteer (see `Store::erase_volunteer`), then what only they had
    /// (their schedules) deleted like any document. `Ok(false)`: no such volunteer here.
    /// A schedule that fails to delete fails the call; erasing again finishes the job.
    pub async fn erase_volunteer(
        &self,
        caller: &crate::app::caller::CoordinatorCaller,
        volunteer_id: &str,
    ) -> Result<bool, error::Error> {
        let org = caller.organisation_id();
        let Some(erased) = self
            .store
            .erase_volunteer(org, caller.id(), volunteer_id)
            .await?
        else {
            return Ok(false);
        };
        self.access_shrank(erased.access);
        let by = caller::Caller::Coordinator(caller.clone());
        for doc in &erased.own_documents {
            let Ok(id) = doc.parse::<lotse_protocol::DocumentId>() else {
                continue;
            };
            let audit = by.audit("document.delete", doc);
            self.hub
                .delete(org, &id, crate::store::DeletionReason::PersonAsked, &audit)
                .await
                .map_err(|e| error::Error::Internal(anyhow::anyhow!("deleting a schedule: {e}")))?;
        }
        tracing::info!(%volunteer_id, documents = erased.own_documents.len(), "volunteer erased (Art. 17)");
        Ok(true)
    }

    /// Rights the store has taken away (and told other instances of): this instance's
    /// open connections close or check again.
    pub fn access_shrank(&self, changes: impl IntoIterator<Item = AccessChange>) {
        self.hub.access_shrank(changes);
    }
}

/// How long any request may take before it is answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every answer carries unless its router set stricter values (the dashboard sets
/// its own content policy, the intake form one that allows its inline style): no
/// sniffing, no framing, no referrer to other sites, and for anything else (JSON, plain
/// answers) a content policy that allows nothing.
async fn baseline_headers(mut res: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = res.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

/// Every route of the server: the REST API (with its own layers), the dashboard and the
/// sync endpoint, traced alike.
pub fn router(state: AppState) -> Router {
    crate::http::router()
        .merge(crate::dashboard::router())
        .merge(crate::sync::router())
        .merge(crate::webapp::router())
        // For every route, the API's and the pages' alike: no body larger than the API
        // takes, no request that hangs for ever (a WebSocket or an event stream answers
        // at once and lives on outside this), and the headers below.
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::MAX_BODY_BYTES,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(baseline_headers))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                // Only the path: query strings may carry a token (browser WebSockets).
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// Serves the app on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pusher = state
        .push
        .config()
        .push_worker
        .then(|| state.push.clone().spawn_worker());
    let mailer = state.mail.clone().spawn_worker();
    let follower = tokio::spawn(state.hub.clone().follow_other_instances());
    let _purger = crate::purge::spawn(state.store.clone(), state.hub.clone());
    let hub = state.hub.clone();
    let evictor = tokio::spawn(async move {
        let idle = hub.doc_idle();
        // A few passes per idle period keep the overshoot small without busy ticking.
        let every = (idle / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        );
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let evicted = hub.evict_idle(idle);
            if evicted > 0 {
                // Operators size memory by this; ids stay out of the log.
                tracing::info!(target: "lotse_server::cache", evicted, resident = hub.resident(), "document cache trimmed");
            }
        }
    });
    let sweeper = tokio::spawn(crate::ratelimit::sweep(
        state.store.clone(),
        Duration::from_secs(60),
    ));
    let header_timeout = state.config.header_timeout;
    let lifecycle = state.lifecycle.clone();
    let stopping = lifecycle.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.begin_stop();
    };
    let app = router(state);
    let served = listen::serve_connections(listener, app, header_timeout, shutdown).await;
    // The sync connections write their sync states and audit lines before the caller
    // closes the database.
    if !lifecycle.drained(lifecycle::DRAIN).await {
        tracing::warn!(
            still_running = lifecycle.still_running(),
            "sync connections did not end in time; what they had not written is lost"
        );
    }
    evictor.abort();
    sweeper.abort();
    follower.abort();
    if let Some(mailer) = mailer {
        mailer.abort();
    }
    if let Some(pusher) = pusher {
        pusher.abort();
    }
    served
}

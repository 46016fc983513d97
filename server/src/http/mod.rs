//! The HTTP surface: one module per resource, each with its `router()`, merged here with
//! the shared layers (tracing, body limit, timeout) and the generated OpenAPI document.

mod auth;
pub mod caller;
mod cases;
mod devices;
pub mod error;
pub mod extract;
mod health;
mod intake;
mod offers;
mod push;
mod requests;
mod volunteers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use tokio::sync::broadcast;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{HttpConfig, PushConfig};
use crate::hub::Hub;
use crate::push::Push;
use crate::ratelimit::{Limiter, Policy};
use crate::store::Store;

pub use volunteers::TOPICS;

/// What happens on the server that open connections (sync sockets, dashboard streams)
/// must react to.
#[derive(Debug, Clone)]
pub enum Event {
    DeviceRevoked { device_id: String },
}

pub struct Limits {
    pub login_account: Limiter,
    pub login_address: Limiter,
    pub enroll_address: Limiter,
    pub intake_address: Limiter,
}

impl Limits {
    fn new() -> Self {
        let secs = Duration::from_secs;
        Self {
            login_account: Limiter::new(Policy {
                free_failures: 5,
                first_wait: secs(30),
                max_wait: secs(15 * 60),
                window: secs(15 * 60),
            }),
            // An office behind one NAT address shares this budget, so it is wider.
            login_address: Limiter::new(Policy {
                free_failures: 20,
                first_wait: secs(30),
                max_wait: secs(15 * 60),
                window: secs(15 * 60),
            }),
            enroll_address: Limiter::new(Policy {
                free_failures: 10,
                first_wait: secs(30),
                max_wait: secs(60 * 60),
                window: secs(60 * 60),
            }),
            // Every submission counts: an office may send a few, a bot many.
            intake_address: Limiter::new(Policy {
                free_failures: 20,
                first_wait: secs(60),
                max_wait: secs(60 * 60),
                window: secs(60 * 60),
            }),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<HttpConfig>,
    pub limits: Arc<Limits>,
    pub events: broadcast::Sender<Event>,
    pub hub: Arc<Hub>,
    pub push: Arc<Push>,
    /// Serialises creating the case of an accepted request (a retried accept must not
    /// create a second one).
    pub case_creation: Arc<tokio::sync::Mutex<()>>,
}

impl AppState {
    pub async fn new(
        store: Store,
        config: HttpConfig,
        push: PushConfig,
    ) -> Result<Self, crate::store::StoreError> {
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            push: Arc::new(Push::new(store.clone(), push).await?),
            case_creation: Arc::new(tokio::sync::Mutex::new(())),
            hub: Arc::new(Hub::new(store.clone()).await?),
            store,
            config: Arc::new(config),
            limits: Arc::new(Limits::new()),
            events,
        })
    }

    pub fn on_device_revoked(&self, device_id: &str) {
        // No receiver just means nobody is connected; nothing to close.
        let _ = self.events.send(Event::DeviceRevoked {
            device_id: device_id.to_owned(),
        });
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Lotse API", description = "REST API of the Lotse server for coordinators and volunteers' devices. Errors are JSON `{\"error\": {\"code\", \"message\"}}`."),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "auth", description = "Coordinator sessions and caller identity"),
        (name = "volunteers", description = "Volunteers (Lotsinnen und Lotsen)"),
        (name = "devices", description = "Volunteers' phones: enrollment and revocation"),
        (name = "requests", description = "Requests (Einsatzanfragen): create, rank candidates, offer"),
        (name = "offers", description = "Offers as a volunteer's device sees them: accept or decline"),
        (name = "push", description = "Web Push: VAPID key and subscriptions"),
        (name = "cases", description = "Cases (Begleitungen): automerge documents synced with the phones"),
    )
)]
struct ApiDoc;

/// The API routes and their OpenAPI description, generated from the handlers.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(volunteers::router())
        .merge(devices::router())
        .merge(cases::router())
        .merge(push::router())
        .merge(requests::router())
        .merge(offers::router())
        .split_for_parts()
}

pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api();
    let openapi = Arc::new(openapi);
    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .merge(health::router())
        .merge(intake::router())
        .merge(crate::dashboard::router())
        .merge(crate::sync::router())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                // Only the path: query strings may carry a token (browser WebSockets).
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    error::Error::NotFound("route")
}

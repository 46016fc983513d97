//! The REST API: one module per resource, each with its `router()`, merged here with the
//! generated OpenAPI document (the body limit, timeout and baseline headers are the
//! application root's, for every route). The state and
//! the root router are the application root's (`crate::app`).

mod auth;
mod case_edits;
mod cases;
mod coordinators;
mod device;
mod devices;
mod exports;
pub mod extract;
mod generations;
mod health;
mod intake;
mod offers;
mod organisation;
mod push;
mod requests;
mod volunteers;

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::app::error;

pub use volunteers::TOPICS;

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
        (name = "organisation", description = "The network's own settings (device lease)"),
        (name = "team", description = "Coordinators: roles (Leitung, Koordination), invitations, password links"),
    )
)]
struct ApiDoc;

/// The API routes and their OpenAPI description, generated from the handlers.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(volunteers::router())
        .merge(devices::router())
        .merge(device::router())
        .merge(cases::router())
        .merge(case_edits::router())
        .merge(exports::router())
        .merge(generations::router())
        .merge(push::router())
        .merge(requests::router())
        .merge(offers::router())
        .merge(organisation::router())
        .merge(coordinators::router())
        .split_for_parts()
}

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API with its OpenAPI document and its JSON 404, then health and the intake form.
/// The application root merges this with the dashboard and the sync endpoint.
pub fn router() -> Router<AppState> {
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
        .merge(health::router())
        .merge(intake::router())
}

async fn not_found() -> impl IntoResponse {
    error::Error::NotFound("route")
}

//! Web Push endpoints: the VAPID public key and push subscriptions of devices and
//! coordinators' browsers. A caller registers and removes only its own subscriptions.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Id, Json};
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::push::{check_endpoint, check_keys};
use crate::store::{NewPushSubscription, PushOwner, PushSubscriptionRef, SavedPushSubscription};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vapid_public_key))
        .routes(routes!(subscribe, unsubscribe))
        .routes(routes!(unsubscribe_by_id))
}

#[derive(Serialize, ToSchema)]
pub struct VapidPublicKey {
    /// The server's VAPID key (uncompressed P-256 point, base64url without padding): pass
    /// it as `applicationServerKey` to `PushManager.subscribe`, or to the UnifiedPush
    /// distributor.
    pub public_key: String,
}

/// The VAPID public key that push subscriptions must be made with (no authentication).
#[utoipa::path(get, path = "/api/v1/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidPublicKey)))]
async fn vapid_public_key(State(state): State<AppState>) -> axum::Json<VapidPublicKey> {
    axum::Json(VapidPublicKey {
        public_key: state.push.vapid_public_key().to_owned(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The subscriber's P-256 public key: uncompressed point (65 bytes), base64url.
    pub p256dh: String,
    /// The subscriber's authentication secret (16 bytes), base64url.
    pub auth: String,
}

/// What `PushSubscription.toJSON()` gives in a browser, or a UnifiedPush endpoint with
/// the keys the app made.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The push resource URL (https).
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// Sent by browsers; ignored.
    #[serde(default, rename = "expirationTime")]
    #[allow(dead_code)]
    #[schema(value_type = Option<i64>)]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionCreated {
    /// Id of the subscription, for `DELETE /api/v1/push/subscriptions/{id}`.
    pub id: String,
}

/// Register a push subscription for the calling device or coordinator. Registering the
/// same endpoint again refreshes its keys (200).
#[utoipa::path(post, path = "/api/v1/push/subscriptions", tag = "push",
    request_body = SubscribeRequest,
    responses(
        (status = 201, body = SubscriptionCreated, description = "Registered"),
        (status = 200, body = SubscriptionCreated, description = "Already registered by this caller; keys refreshed"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Endpoint not https, not public, this server, or keys malformed"),
    ))]
async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<SubscribeRequest>,
) -> Result<(StatusCode, axum::Json<SubscriptionCreated>)> {
    let own_host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let endpoint = check_endpoint(
        body.endpoint.trim(),
        state.push.config().allow_insecure_push_endpoints,
        own_host,
    )
    .map_err(|e| Error::invalid("endpoint", e.to_string()))?;
    let (p256dh, auth) = check_keys(&body.keys.p256dh, &body.keys.auth)
        .map_err(|(field, e)| Error::invalid(field, e.to_string()))?;
    let (organisation_id, owner) = owner(&caller);
    let saved = state
        .store
        .save_push_subscription(
            organisation_id,
            owner,
            &NewPushSubscription {
                endpoint: endpoint.as_str(),
                p256dh: &p256dh,
                auth: &auth,
            },
        )
        .await?;
    Ok(match saved {
        SavedPushSubscription::Created(id) => {
            tracing::info!(subscription_id = %id, service = endpoint.host_str().unwrap_or("-"), "push subscription registered");
            (StatusCode::CREATED, axum::Json(SubscriptionCreated { id }))
        }
        SavedPushSubscription::Updated(id) => {
            (StatusCode::OK, axum::Json(SubscriptionCreated { id }))
        }
    })
}

/// Which subscription to remove: its endpoint or its id (exactly one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeRequest {
    pub endpoint: Option<String>,
    pub id: Option<String>,
}

/// Remove one of the caller's own push subscriptions (and what is pending for it).
#[utoipa::path(delete, path = "/api/v1/push/subscriptions", tag = "push",
    request_body = UnsubscribeRequest,
    responses(
        (status = 204, description = "Removed"),
        (status = 400, body = ErrorBody, description = "Neither or both of endpoint and id"),
        (status = 404, body = ErrorBody, description = "The caller has no such subscription"),
    ))]
async fn unsubscribe(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UnsubscribeRequest>,
) -> Result<StatusCode> {
    let normal;
    let which = match (&body.endpoint, &body.id) {
        (Some(endpoint), None) => {
            // Endpoints are stored as parsed (normalised) URLs.
            normal = reqwest::Url::parse(endpoint.trim())
                .map(String::from)
                .unwrap_or_else(|_| endpoint.clone());
            PushSubscriptionRef::Endpoint(&normal)
        }
        (None, Some(id)) => PushSubscriptionRef::Id(id),
        _ => {
            return Err(Error::bad_request(
                "invalid_body",
                "give either the subscription's endpoint or its id",
            ));
        }
    };
    remove(&state, &caller, which).await
}

/// Remove one of the caller's own push subscriptions by id.
#[utoipa::path(delete, path = "/api/v1/push/subscriptions/{id}", tag = "push",
    params(("id" = String, Path, description = "Subscription id (UUID)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = ErrorBody, description = "The caller has no such subscription"),
    ))]
async fn unsubscribe_by_id(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<StatusCode> {
    remove(&state, &caller, PushSubscriptionRef::Id(&id)).await
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    which: PushSubscriptionRef<'_>,
) -> Result<StatusCode> {
    let (organisation_id, owner) = owner(caller);
    if state
        .store
        .delete_push_subscription(organisation_id, owner, which)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound("push subscription"))
    }
}

fn owner(caller: &Caller) -> (&str, PushOwner<'_>) {
    match caller {
        Caller::Coordinator(c) => (
            c.organisation_id(),
            PushOwner::Coordinator {
                id: c.id(),
                session: &c.session_hash,
            },
        ),
        Caller::Device(d) => (&d.organisation_id, PushOwner::Device(&d.device.id)),
    }
}

//! Extractors that answer bad input with our JSON errors instead of axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::error::Error;

/// `Json<T>` whose rejections are `Error`s.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(e) => {
            Error::bad_request("invalid_json", format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => Error::bad_request("invalid_body", e.body_text()),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
        other => Error::bad_request("invalid_body", other.body_text()),
    }
}

/// A path segment that must be a UUID (volunteer, device, case ids).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e: PathRejection| Error::bad_request("invalid_path", e.body_text()))?;
        uuid::Uuid::parse_str(&raw)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| {
                Error::bad_request("invalid_id", format!("{raw:?} is not a valid id (UUID)"))
            })
    }
}

/// `Query<T>` whose rejections are `Error`s.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e: QueryRejection| Error::bad_request("invalid_query", e.body_text()))
    }
}

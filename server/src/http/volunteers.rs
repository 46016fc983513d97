//! Volunteers of the caller's organisation, and enrollment codes for their phones.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Id, Json, Query};
use crate::app::AppState;
use crate::app::caller::CoordinatorCaller;
use crate::app::error::{Error, ErrorBody, Result};
use crate::auth;
use crate::store::{
    EnrollmentCode, NewVolunteer, Slot, Training, Volunteer, VolunteerPatch, now_ms,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_volunteer, list_volunteers))
        .routes(routes!(get_volunteer, update_volunteer, erase_volunteer))
        .routes(routes!(create_enrollment_code))
}

/// The topics a request or a volunteer can have (DOMAIN.md).
pub const TOPICS: [&str; 8] = Volunteer::TOPICS;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolunteer {
    pub display_name: String,
    /// ISO 639-1 codes, at least one.
    pub languages: Vec<String>,
    /// From: gesundheit, bildung, erziehung, arbeit, beruf, soziales, wohnen, behoerden.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub availability: Vec<Slot>,
    #[serde(default = "yes")]
    pub active: bool,
    /// YYYY-MM-DD.
    #[serde(default)]
    pub pledge_signed_on: Option<String>,
    /// Completed trainings, each `{"name", "completed_on": "YYYY-MM-DD"}`.
    #[serde(default)]
    pub trainings: Vec<Training>,
}

fn yes() -> bool {
    true
}

/// Every field is optional; `pledge_signed_on: null` clears the date.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVolunteer {
    pub display_name: Option<String>,
    pub languages: Option<Vec<String>>,
    pub topics: Option<Vec<String>>,
    pub availability: Option<Vec<Slot>>,
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub pledge_signed_on: Option<Option<String>>,
    /// Replaces the whole list.
    pub trainings: Option<Vec<Training>>,
}

/// Tells a field sent as `null` (Some(None)) from one left out (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// The rules live with the volunteer (`store/volunteers.rs`), shared with the dashboard;
// here they only become the API's `invalid_field` answer for the field named.

fn invalid<E: std::fmt::Display>(field: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::invalid(field, e.to_string())
}

pub fn validate_name(field: &'static str, name: &str) -> Result<String> {
    Volunteer::check_name(name).map_err(invalid(field))
}

pub fn validate_languages(field: &'static str, languages: &[String]) -> Result<Vec<String>> {
    Volunteer::check_languages(languages).map_err(invalid(field))
}

pub fn validate_topics(field: &'static str, topics: &[String]) -> Result<Vec<String>> {
    Volunteer::check_topics(topics).map_err(invalid(field))
}

pub fn validate_availability(slots: &[Slot]) -> Result<Vec<Slot>> {
    Volunteer::check_availability(slots).map_err(invalid("availability"))
}

pub fn validate_trainings(trainings: &[Training]) -> Result<Vec<Training>> {
    Volunteer::check_trainings(trainings).map_err(invalid("trainings"))
}

pub fn validate_date(field: &'static str, date: &str) -> Result<String> {
    Volunteer::check_date(date).map_err(invalid(field))
}

/// Create a volunteer.
#[utoipa::path(post, path = "/api/v1/volunteers", tag = "volunteers", request_body = CreateVolunteer,
    responses((status = 201, body = Volunteer), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_volunteer(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Json(body): Json<CreateVolunteer>,
) -> Result<(StatusCode, axum::Json<Volunteer>)> {
    let new = NewVolunteer {
        display_name: validate_name("display_name", &body.display_name)?,
        languages: validate_languages("languages", &body.languages)?,
        topics: validate_topics("topics", &body.topics)?,
        availability: validate_availability(&body.availability)?,
        active: body.active,
        pledge_signed_on: body
            .pledge_signed_on
            .as_deref()
            .map(|d| validate_date("pledge_signed_on", d))
            .transpose()?,
        trainings: validate_trainings(&body.trainings)?,
    };
    let v = state
        .store
        .create_volunteer(caller.organisation_id(), caller.id(), new)
        .await?;
    tracing::info!(volunteer_id = %v.id, "volunteer created");
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// List the volunteers of the caller's organisation.
#[utoipa::path(get, path = "/api/v1/volunteers", tag = "volunteers",
    responses((status = 200, body = Vec<Volunteer>), (status = 401, body = ErrorBody)))]
async fn list_volunteers(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
) -> Result<axum::Json<Vec<Volunteer>>> {
    Ok(axum::Json(
        state.store.volunteers(caller.organisation_id()).await?,
    ))
}

/// One volunteer.
#[utoipa::path(get, path = "/api/v1/volunteers/{id}", tag = "volunteers",
    params(("id" = String, Path, description = "Volunteer id (UUID)")),
    responses((status = 200, body = Volunteer), (status = 404, body = ErrorBody)))]
async fn get_volunteer(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<axum::Json<Volunteer>> {
    let volunteer = state
        .store
        .volunteer(caller.organisation_id(), &id)
        .await?
        .ok_or(Error::NotFound("volunteer"))?;
    let line = crate::app::caller::Caller::Coordinator(caller).audit_of(
        "volunteer.read",
        "volunteer",
        &id,
    );
    state.store.audit(&[line]).await?;
    Ok(axum::Json(volunteer))
}

/// Change some fields of a volunteer.
#[utoipa::path(patch, path = "/api/v1/volunteers/{id}", tag = "volunteers", request_body = UpdateVolunteer,
    params(("id" = String, Path, description = "Volunteer id (UUID)")),
    responses((status = 200, body = Volunteer), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_volunteer(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
    Json(body): Json<UpdateVolunteer>,
) -> Result<axum::Json<Volunteer>> {
    if state
        .store
        .volunteer(caller.organisation_id(), &id)
        .await?
        .is_some_and(|v| v.erased_at.is_some())
    {
        return Err(Error::Conflict(
            "this volunteer was erased (Art. 17 GDPR) and can no longer be changed",
        ));
    }
    let patch = VolunteerPatch {
        display_name: body
            .display_name
            .map(|n| validate_name("display_name", &n))
            .transpose()?,
        languages: body
            .languages
            .map(|l| validate_languages("languages", &l))
            .transpose()?,
        topics: body
            .topics
            .map(|t| validate_topics("topics", &t))
            .transpose()?,
        availability: body
            .availability
            .map(|a| validate_availability(&a))
            .transpose()?,
        active: body.active,
        pledge_signed_on: body
            .pledge_signed_on
            .map(|d| d.map(|d| validate_date("pledge_signed_on", &d)).transpose())
            .transpose()?,
        trainings: body.trainings.map(|t| validate_trainings(&t)).transpose()?,
    };
    let (volunteer, shrunk) = state
        .store
        .update_volunteer(caller.organisation_id(), caller.id(), &id, patch)
        .await?
        .ok_or(Error::NotFound("volunteer"))?;
    if !shrunk.is_empty() {
        tracing::info!(volunteer_id = %volunteer.id, devices = shrunk.len(), "volunteer left; devices revoked");
    }
    state.access_shrank(shrunk);
    Ok(axum::Json(volunteer))
}

/// Erase a volunteer (Art. 17 DSGVO): their profile, contact and device data are erased,
/// every device revoked, they are taken off every case, their own schedules deleted. The
/// hours they wrote stay in cases, reports and statements, under no name. Cannot be
/// undone; erasing again changes nothing more.
#[utoipa::path(delete, path = "/api/v1/volunteers/{id}", tag = "volunteers",
    params(("id" = String, Path, description = "Volunteer id (UUID)")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody, description = "Leitung only (`leitung_only`)")))]
async fn erase_volunteer(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
) -> Result<StatusCode> {
    caller.require_leitung("erase volunteers")?;
    if !state.erase_volunteer(&caller, &id).await? {
        return Err(Error::NotFound("volunteer"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CodeParams {
    /// How long the code stays valid, 1 to 168 hours (default 24).
    pub valid_hours: Option<u32>,
}

/// Create a one-time enrollment code for a volunteer's phone.
#[utoipa::path(post, path = "/api/v1/volunteers/{id}/enrollment-codes", tag = "devices",
    params(("id" = String, Path, description = "Volunteer id (UUID)"), CodeParams),
    responses((status = 201, body = EnrollmentCode), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_enrollment_code(
    State(state): State<AppState>,
    caller: CoordinatorCaller,
    Id(id): Id,
    Query(params): Query<CodeParams>,
) -> Result<(StatusCode, axum::Json<EnrollmentCode>)> {
    let hours = params.valid_hours.unwrap_or(24);
    if !(1..=168).contains(&hours) {
        return Err(Error::invalid("valid_hours", "between 1 and 168 hours"));
    }
    let code = auth::new_enrollment_code();
    let hash = auth::code_hash(&code)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("fresh code does not normalise")))?;
    let expires_at = now_ms() + i64::from(hours) * 3_600_000;
    state
        .store
        .create_enrollment_code(
            caller.organisation_id(),
            caller.id(),
            &id,
            &hash,
            expires_at,
        )
        .await?
        .ok_or(Error::NotFound("volunteer"))?;
    tracing::info!(volunteer_id = %id, "enrollment code created");
    Ok((
        StatusCode::CREATED,
        axum::Json(EnrollmentCode {
            code,
            expires_at: expires_at.into(),
        }),
    ))
}

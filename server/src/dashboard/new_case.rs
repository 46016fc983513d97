//! `/dashboard/cases/new`: a coordinator starts a case directly (issue 18): a
//! Patenschaft, an Einzelbegleitung or a Sprachmittlung, with its label, topic, languages
//! and volunteers. The case is written as the coordinator (`AppState::create_case`, as
//! the API's `POST /api/v1/cases`) and reaches the volunteers' phones like any other.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use lotse_protocol::schema::CASE_KINDS;
use lotse_protocol::{NewCase, Status, Topic};
use maud::html;

use super::i18n::{self, Lang};
use super::layout::{
    self, Nav, described, field_error, grid_form, html_response, language_boxes, select_field,
};
use super::session::{Fields, Posted, Session};
use crate::app::AppState;
use crate::store::Volunteer;

type Errors = HashMap<&'static str, String>;

pub fn kind_name(l: Lang, kind: &str) -> String {
    match kind {
        "einzelbegleitung" => l.t("Einzelbegleitung", "Individual support").into(),
        "patenschaft" => l.t("Patenschaft", "Mentorship").into(),
        "sprachmittlung" => l.t("Sprachmittlung", "Language mediation").into(),
        other => other.into(),
    }
}

pub async fn form(State(state): State<AppState>, s: Session) -> Response {
    page(
        &state,
        &s,
        &Fields::default(),
        &Errors::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l = s.lang;
    let (new, kind, volunteers) = match validate(l, &s, &f) {
        Ok(v) => v,
        Err(errors) => {
            return page(&state, &s, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match state.create_case(&s.caller, new, kind, &volunteers).await {
        Ok(Ok(id)) => Redirect::to(&format!("/dashboard/cases/{id}?created=1")).into_response(),
        Ok(Err(_)) => {
            let errors = Errors::from([(
                "volunteers",
                l.t(
                    "Nur aktive Lotsinnen und Lotsen können einem Fall zugeordnet werden.",
                    "Only active volunteers can be assigned to a case.",
                )
                .to_owned(),
            )]);
            page(&state, &s, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => layout::failed(l, "create case", e),
    }
}

#[allow(clippy::type_complexity)]
fn validate(
    l: Lang,
    s: &Session,
    f: &Fields,
) -> Result<(NewCase, &'static str, Vec<String>), Errors> {
    let mut errors = Errors::new();
    let label = f.get("label").trim().to_owned();
    if label.is_empty() || label.chars().count() > 40 {
        errors.insert(
            "label",
            l.t(
                "Bitte ein Kürzel mit höchstens 40 Zeichen angeben (Initialen oder ein Code).",
                "Please give a label of at most 40 characters (initials or a code).",
            )
            .into(),
        );
    }
    let kind = CASE_KINDS.into_iter().find(|k| *k == f.get("kind"));
    if kind.is_none() {
        errors.insert(
            "kind",
            l.t("Bitte die Art wählen.", "Please choose the kind.")
                .into(),
        );
    }
    let topic: Option<Topic> = f.get("topic").parse().ok();
    if topic.is_none() {
        errors.insert(
            "topic",
            l.t("Bitte ein Thema wählen.", "Please choose a topic.")
                .into(),
        );
    }
    let languages: Vec<String> = f
        .all("language")
        .into_iter()
        .filter(|c| i18n::COMMON_LANGUAGES.contains(&c.as_str()))
        .collect();
    if languages.is_empty() {
        errors.insert(
            "languages",
            l.t(
                "Bitte mindestens eine Sprache wählen.",
                "Please choose at least one language.",
            )
            .into(),
        );
    }
    let mut volunteers: Vec<String> = Vec::new();
    for raw in f.all("volunteer") {
        match layout::uuid(&raw) {
            Some(id) if !volunteers.contains(&id) => volunteers.push(id),
            Some(_) => {}
            None => {
                errors.insert(
                    "volunteers",
                    l.t("Unbekannte Auswahl.", "Unknown choice.").into(),
                );
            }
        }
    }
    match (kind, topic, errors.is_empty()) {
        (Some(kind), Some(topic), true) => Ok((
            NewCase {
                organisation_id: s.org().to_owned(),
                label,
                languages,
                topic,
                status: Status::Active,
            },
            kind,
            volunteers,
        )),
        _ => Err(errors),
    }
}

async fn page(
    state: &AppState,
    s: &Session,
    f: &Fields,
    errors: &Errors,
    status: StatusCode,
) -> Response {
    let l = s.lang;
    let active: Vec<Volunteer> = match state.store.volunteers(s.org()).await {
        Ok(v) => v.into_iter().filter(|v| v.active).collect(),
        Err(e) => return layout::failed(l, "volunteers", e),
    };
    let chosen = f.all("volunteer");
    let title = l.t("Neuer Fall", "New case");
    let kinds = CASE_KINDS.map(|k| (k, kind_name(l, k)));
    let topics = i18n::TOPICS.map(|t| (t, i18n::topic(l, t)));
    let kind = match f.get("kind") {
        k if k.is_empty() => "einzelbegleitung".to_owned(),
        k => k,
    };
    let columns = html! {
        div {
            div.field {
                label for="label" { (l.t("Kürzel der Person", "Label of the person")) }
                p.muted #label-hint { (l.t("Initialen oder ein Code, nie ein Name.", "Initials or a code, never a name.")) }
                input #label name="label" type="text" maxlength="40" required value=(f.get("label"))
                    aria-invalid=[layout::aria_invalid(errors, "label")]
                    aria-describedby=(described(errors, "label").unwrap_or_else(|| "label-hint".into()));
                (field_error(errors, "label"))
            }
            (select_field(errors, "kind", l.t("Art", "Kind"), kinds, &kind))
            (select_field(errors, "topic", l.t("Thema", "Topic"), topics, &f.get("topic")))
            fieldset aria-describedby=[described(errors, "languages")] {
                legend { (l.t("Sprachen", "Languages")) }
                (language_boxes(l, &f.all("language")))
                (field_error(errors, "languages"))
            }
        }
        div {
            fieldset aria-describedby=[described(errors, "volunteers")] {
                legend { (l.t("Lotsinnen und Lotsen", "Volunteers")) }
                @if active.is_empty() {
                    p { (l.t("Noch keine aktiven Lotsinnen und Lotsen.", "No active volunteers yet.")) }
                }
                @for v in &active {
                    label { input type="checkbox" name="volunteer" value=(v.id) checked[chosen.contains(&v.id)]; (v.display_name) }
                }
                (field_error(errors, "volunteers"))
            }
        }
    };
    html_response(
        status,
        layout::page(
            s,
            Nav::Cases,
            title,
            html! {
                p { a href="/dashboard/cases" { "← " (l.t("Alle Fälle", "All cases")) } }
                h1 { (title) }
                (grid_form(s, "/dashboard/cases/new", errors, columns,
                    html! { button type="submit" { (l.t("Fall anlegen", "Create case")) } }))
            },
        ),
    )
}

//! Anfragen: the list with filters, the create and edit form, a request's page with the
//! candidates ranking (reasons in the page's language), the offer, the answers (who
//! accepted, who declined) and the history. Decisions stay the store's, as in the API.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::i18n::{self, Lang, query_param};
use super::layout::{
    self, Nav, aria_invalid, badge, csrf, data_table, described, field_error, filter_form,
    filter_select, found_table, grid_form, html_response, language_boxes, select_field, table_wrap,
    uuid,
};
use super::overview::is_overdue;
use super::session::{Fields, Posted, Session};
use crate::app::AppState;
use crate::matching;
use crate::store::{
    Invalid, NewRequest, Request, RequestDraft, RequestError, RequestPatch, now_ms,
};
use crate::timefmt;

type Errors = HashMap<&'static str, String>;

fn param(s: &Session, key: &str) -> String {
    s.here
        .split_once('?')
        .and_then(|(_, q)| query_param(q, key))
        .unwrap_or_default()
}

pub async fn list(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let status = param(&s, "status");
    let topic = param(&s, "topic");
    let language = param(&s, "language");
    let overdue = param(&s, "overdue") == "1";
    let q = param(&s, "q").to_lowercase();
    let status_filter = crate::store::STATUSES
        .contains(&status.as_str())
        .then_some(status.as_str());
    let all = match state.store.requests(s.org(), status_filter).await {
        Ok(r) => r,
        Err(e) => return layout::failed(l, "requests list", e),
    };
    let now = now_ms();
    let mut languages: Vec<String> = all
        .iter()
        .flat_map(|r| r.languages.iter().cloned())
        .collect();
    languages.sort();
    languages.dedup();
    let shown: Vec<&Request> = all
        .iter()
        .filter(|r| topic.is_empty() || r.topic == topic)
        .filter(|r| language.is_empty() || r.languages.contains(&language))
        .filter(|r| !overdue || is_overdue(r, now))
        .filter(|r| {
            q.is_empty()
                || [
                    &r.institution_name,
                    &r.place_area,
                    &r.person_label,
                    &r.description,
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(&q))
        })
        .collect();
    let title = l.t("Anfragen", "Requests");
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Requests,
            title,
            html! {
                h1 { (title) }
                p { a.button href="/dashboard/requests/new" { (l.t("Neue Anfrage", "New request")) } }
                (filter_form(l, "/dashboard/requests", l.t("Anfragen filtern", "Filter requests"), html! {
                    (filter_select(l, "status", l.t("Status", "Status"),
                        crate::store::STATUSES.map(|st| (st, i18n::request_status(l, st))), &status))
                    (filter_select(l, "topic", l.t("Thema", "Topic"),
                        i18n::TOPICS.map(|t| (t, i18n::topic(l, t))), &topic))
                    (filter_select(l, "language", l.t("Sprache", "Language"),
                        languages.iter().map(|code| (code, i18n::language(l, code))), &language))
                    div.field {
                        label for="f-q" { (l.t("Suche", "Search")) }
                        input #f-q type="search" name="q" value=(param(&s, "q"));
                    }
                    div.field {
                        label { input type="checkbox" name="overdue" value="1" checked[overdue]; " " (l.t("nur überfällige", "overdue only")) }
                    }
                }))
                (found_table(l, title, l.t("Anfragen", "requests"), &[l.t("Termin", "Appointment"), l.t("Thema", "Topic"),
                    l.t("Sprachen", "Languages"), l.t("Einrichtung", "Institution"), l.t("Stadtteil", "District"),
                    l.t("Status", "Status")], &[], shown.len(), html! {
                    @for r in &shown {
                        tr {
                            td { a href=(format!("/dashboard/requests/{}", r.id)) { (i18n::window(l, r.starts_at.ms(), r.ends_at.ms())) } }
                            td { (i18n::topic(l, &r.topic)) }
                            td { (i18n::languages(l, &r.languages)) }
                            td { (r.institution_name) }
                            td { (r.place_area) }
                            td {
                                (badge(&r.status, &i18n::request_status(l, &r.status)))
                                @if is_overdue(r, now) { " " (badge("overdue", l.t("überfällig", "overdue"))) }
                                @if r.urgency == "dringend" { " " (badge("dringend", &i18n::urgency(l, "dringend"))) }
                            }
                        }
                    }
                }))
            },
        ),
    )
}

/// What the form shows: the posted fields, or a request's values for editing.
fn fields_of(r: &Request) -> Fields {
    let date = i18n::zoned(r.starts_at.ms())
        .map(|z| z.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let mut v = vec![
        ("institution_kind", r.institution_kind.clone()),
        ("institution_name", r.institution_name.clone()),
        ("contact", r.contact.clone().unwrap_or_default()),
        ("person_label", r.person_label.clone()),
        ("topic", r.topic.clone()),
        ("date", date),
        ("from", i18n::time_of_day(r.starts_at.ms())),
        ("to", i18n::time_of_day(r.ends_at.ms())),
        ("place_area", r.place_area.clone()),
        ("place_address", r.place_address.clone().unwrap_or_default()),
        ("urgency", r.urgency.clone()),
        ("description", r.description.clone()),
    ];
    let mut others = Vec::new();
    for code in &r.languages {
        if i18n::COMMON_LANGUAGES.contains(&code.as_str()) {
            v.push(("language", code.clone()));
        } else {
            others.push(code.clone());
        }
    }
    v.push(("other_languages", others.join(", ")));
    Fields(v.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// What every field of a form needs: the language, the values, the messages.
struct FormCtx<'a> {
    l: Lang,
    f: &'a Fields,
    errors: &'a Errors,
}

impl FormCtx<'_> {
    fn input(
        &self,
        name: &'static str,
        label: &str,
        hint: Option<&str>,
        max: usize,
        required: bool,
        kind: &str,
    ) -> Markup {
        let (l, f, errors) = (self.l, self.f, self.errors);
        html! {
            div.field {
                label for=(name) { (label) @if !required { " " span.muted { "(" (l.t("freiwillig", "optional")) ")" } } }
                @if let Some(h) = hint { p.muted id=(format!("{name}-hint")) { (h) } }
                input id=(name) type=(kind) name=(name) value=(f.get(name)) maxlength=(max) required[required]
                    aria-invalid=[aria_invalid(errors, name)]
                    aria-describedby=[described(errors, name).or_else(|| hint.map(|_| format!("{name}-hint")))];
                (field_error(errors, name))
            }
        }
    }
}

fn request_form(s: &Session, action: &str, f: &Fields, errors: &Errors, submit: &str) -> Markup {
    let l = s.lang;
    let chosen = f.all("language");
    let form = FormCtx { l, f, errors };
    let kinds = i18n::INSTITUTION_KINDS.map(|k| (k, i18n::institution_kind(l, k)));
    let topics = i18n::TOPICS.map(|t| (t, i18n::topic(l, t)));
    let columns = html! {
                div {
                    (select_field(errors, "institution_kind", l.t("Art der Einrichtung", "Kind of institution"),
                        kinds, &f.get("institution_kind")))
                    (form.input("institution_name", l.t("Name der Einrichtung", "Name of the institution"), None, 120, true, "text"))
                    (form.input("contact", l.t("Kontakt für Rückfragen", "Contact for questions"), None, 200, false, "text"))
                    (form.input("person_label", l.t("Kürzel der Person", "Label of the person"),
                        Some(l.t("Initialen oder ein Code, nie ein Name.", "Initials or a code, never a name.")), 40, false, "text"))
                    (select_field(errors, "topic", l.t("Thema", "Topic"), topics, &f.get("topic")))
                    fieldset aria-describedby=[described(errors, "languages")] {
                        legend { (l.t("Sprachen", "Languages")) }
                        (language_boxes(l, &chosen))
                        (form.input("other_languages", l.t("Weitere Sprachen (Kürzel wie „hy“, mit Komma getrennt)", "Other languages (codes such as “hy”, comma-separated)"), None, 60, false, "text"))
                        (field_error(errors, "languages"))
                    }
                }
                div {
                    (form.input("date", l.t("Datum", "Date"), None, 10, true, "date"))
                    (form.input("from", l.t("Von (Uhrzeit)", "From (time)"), None, 5, true, "time"))
                    (form.input("to", l.t("Bis (Uhrzeit)", "To (time)"), None, 5, true, "time"))
                    (form.input("place_area", l.t("Stadtteil oder Ort (grob)", "District (coarse)"), None, 80, true, "text"))
                    (form.input("place_address", l.t("Genaue Adresse", "Exact address"),
                        Some(l.t("Nur die Person sieht sie, die die Anfrage bekommt.", "Only the volunteer who gets the request sees it.")), 200, false, "text"))
                    fieldset aria-describedby=[described(errors, "urgency")] {
                        legend { (l.t("Dringlichkeit", "Urgency")) }
                        label { input type="radio" name="urgency" value="normal" checked[f.get("urgency") != "dringend"]; (i18n::urgency(l, "normal")) }
                        label { input type="radio" name="urgency" value="dringend" checked[f.get("urgency") == "dringend"]; (i18n::urgency(l, "dringend")) }
                        (field_error(errors, "urgency"))
                    }
                    div.field {
                        label for="description" { (l.t("Worum geht es? (kurz, ohne Namen)", "What is it about? (short, no names)")) }
                        textarea #description name="description" rows="4" maxlength="1000"
                            aria-invalid=[aria_invalid(errors, "description")]
                            aria-describedby=[described(errors, "description")] { (f.get("description")) }
                        (field_error(errors, "description"))
                    }
                }
    };
    grid_form(
        s,
        action,
        errors,
        columns,
        html! { button type="submit" { (submit) } },
    )
}

/// Checks the form by the store's rules (the API's and the intake form's too); each
/// refusal is worded at its field, in the coordinator's language. `now`: see
/// `NewRequest::check` (`None` when editing).
fn validate(l: Lang, f: &Fields, now: Option<i64>) -> Result<NewRequest, Errors> {
    let languages = f
        .all("language")
        .into_iter()
        .chain(
            f.get("other_languages")
                .split([',', ' ', ';'])
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        )
        .collect();
    let draft = RequestDraft {
        institution_kind: f.get("institution_kind"),
        institution_name: f.get("institution_name"),
        contact: f.get("contact"),
        person_label: f.get("person_label"),
        topic: f.get("topic"),
        languages,
        starts_at: timefmt::local_ms(&f.get("date"), &f.get("from")),
        ends_at: timefmt::local_ms(&f.get("date"), &f.get("to")),
        place_area: f.get("place_area"),
        place_address: f.get("place_address"),
        urgency: f.get("urgency"),
        description: f.get("description"),
    };
    NewRequest::check(draft, "coordinator", now).map_err(|refused| {
        let no_date = f.get("date").is_empty();
        let mut errors = Errors::new();
        for (field, why) in &refused.0 {
            let (at, message) = refusal(l, field, why, no_date);
            errors.entry(at).or_insert(message);
        }
        errors
    })
}

/// Where on the form a refusal of the API's `field` shows, and what it says.
fn refusal(l: Lang, field: &'static str, why: &Invalid, no_date: bool) -> (&'static str, String) {
    let at = match (field, why) {
        ("languages", Invalid::NotALanguage(_)) => "other_languages",
        ("starts_at" | "ends_at", _) if no_date || *why == Invalid::InThePast => "date",
        ("starts_at", _) => "from",
        ("ends_at", _) => "to",
        (field, _) => field,
    };
    let text = match (at, why) {
        ("institution_kind", _) => l
            .t(
                "Bitte eine Art der Einrichtung wählen.",
                "Please choose a kind of institution.",
            )
            .into(),
        ("urgency", _) => l
            .t(
                "Bitte die Dringlichkeit wählen.",
                "Please choose the urgency.",
            )
            .into(),
        ("topic", _) => l
            .t("Bitte ein Thema wählen.", "Please choose a topic.")
            .into(),
        ("date", Invalid::NoTime) => l
            .t("Bitte ein Datum angeben.", "Please give a date.")
            .into(),
        ("from", Invalid::NoTime) => l
            .t(
                "Bitte eine Uhrzeit wie 14:00 angeben.",
                "Please give a time such as 14:00.",
            )
            .into(),
        ("to", Invalid::NoTime) => l
            .t(
                "Bitte eine Uhrzeit wie 15:30 angeben.",
                "Please give a time such as 15:30.",
            )
            .into(),
        _ => {
            let (code, detail) = why.reason();
            i18n::invalid(l, code, &detail)
        }
    };
    (at, text)
}

/// The form for a new request (`id` `None`) or for editing request `id`.
fn form_page(
    s: &Session,
    id: Option<&str>,
    f: &Fields,
    errors: &Errors,
    status: StatusCode,
) -> Response {
    let l = s.lang;
    let (title, action, submit) = match id {
        None => (
            l.t("Neue Anfrage", "New request"),
            "/dashboard/requests".to_owned(),
            l.t("Anfrage anlegen", "Create request"),
        ),
        Some(id) => (
            l.t("Anfrage bearbeiten", "Edit request"),
            format!("/dashboard/requests/{id}"),
            l.t("Änderungen speichern", "Save changes"),
        ),
    };
    html_response(
        status,
        layout::page(
            s,
            Nav::Requests,
            title,
            html! {
                h1 { (title) }
                (request_form(s, &action, f, errors, submit))
            },
        ),
    )
}

pub async fn new_form(s: Session) -> Response {
    let f = Fields(vec![
        ("topic".into(), "behoerden".into()),
        ("institution_kind".into(), "behoerde".into()),
    ]);
    form_page(&s, None, &f, &Errors::new(), StatusCode::OK)
}

pub async fn create(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l = s.lang;
    let new = match validate(l, &f, Some(now_ms())) {
        Ok(n) => n,
        Err(errors) => {
            return form_page(&s, None, &f, &errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let created = state
        .store
        .create_request(s.org(), s.caller.actor(), new)
        .await;
    match created {
        Ok(r) => {
            tracing::info!(request_id = %r.id, "request created (dashboard)");
            Redirect::to(&format!("/dashboard/requests/{}?created=1", r.id)).into_response()
        }
        Err(e) => layout::failed(l, "create request", e),
    }
}

async fn load(state: &AppState, s: &Session, raw: &str) -> Result<Request, Response> {
    layout::found(s.lang, raw, "load request", |id| async move {
        state.store.request(s.org(), &id).await
    })
    .await
}

pub async fn edit_form(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Result<Response, Response> {
    let r = load(&state, &s, &raw).await?;
    if r.erased_at.is_some() {
        return Err(layout::error_page(
            s.lang,
            StatusCode::CONFLICT,
            s.lang.t("Nicht mehr änderbar", "No longer editable"),
            &request_error(s.lang, RequestError::Erased),
        ));
    }
    Ok(form_page(
        &s,
        Some(&r.id),
        &fields_of(&r),
        &Errors::new(),
        StatusCode::OK,
    ))
}

/// The request's page again, with why a change was refused.
async fn refused(state: &AppState, s: &Session, r: Request, why: String) -> Response {
    detail_with(state, s, r, Some(why), StatusCode::UNPROCESSABLE_ENTITY).await
}

/// Answers a change of request `r`: `done` with what the store returned, "not found" when
/// the request is gone, the page with the refusal otherwise.
async fn changed<T>(
    state: &AppState,
    s: &Session,
    r: Request,
    outcome: Result<Option<T>, RequestError>,
    done: impl FnOnce(T) -> Response,
) -> Response {
    match outcome {
        Ok(Some(x)) => done(x),
        Ok(None) => layout::not_found(s.lang),
        Err(e) => refused(state, s, r, request_error(s.lang, e)).await,
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let r = load(&state, &s, &raw).await?;
    let new = validate(s.lang, &f, None).map_err(|errors| {
        form_page(
            &s,
            Some(&r.id),
            &f,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })?;
    let patch = RequestPatch {
        institution_kind: Some(new.institution_kind),
        institution_name: Some(new.institution_name),
        contact: Some(new.contact),
        person_label: Some(new.person_label),
        topic: Some(new.topic),
        languages: Some(new.languages),
        starts_at: Some(new.starts_at),
        ends_at: Some(new.ends_at),
        place_area: Some(new.place_area),
        place_address: Some(new.place_address),
        urgency: Some(new.urgency),
        description: Some(new.description),
        status: None,
    };
    Ok(save(&state, &s, r, patch).await)
}

/// Writes `patch` and shows the request saved. Only a change of status can queue pushes
/// (a cancellation), so only then is the push worker woken.
async fn save(state: &AppState, s: &Session, r: Request, patch: RequestPatch) -> Response {
    let status_changes = patch.status.is_some();
    let outcome = state
        .store
        .update_request(s.org(), s.caller.actor(), &r.id, patch)
        .await;
    let saved = format!("/dashboard/requests/{}?saved=1", r.id);
    changed(state, s, r, outcome, |_| {
        if status_changes {
            state.push.wake();
        }
        Redirect::to(&saved).into_response()
    })
    .await
}

fn request_error(l: Lang, e: RequestError) -> String {
    match e {
        RequestError::Transition { .. } => l
            .t(
                "Dieser Statuswechsel ist nicht möglich.",
                "This change of status is not possible.",
            )
            .into(),
        RequestError::Closed(status) => match l {
            Lang::De => format!(
                "Die Anfrage ist {} und kann nicht mehr angeboten werden.",
                i18n::request_status(l, &status)
            ),
            Lang::En => format!(
                "The request is {} and can no longer be offered.",
                i18n::request_status(l, &status)
            ),
        },
        RequestError::NotAVolunteer(_) => l
            .t(
                "Diese Person ist keine aktive Lotsin / kein aktiver Lotse.",
                "This person is not an active volunteer.",
            )
            .into(),
        RequestError::Window(why) => {
            let (code, detail) = why.reason();
            i18n::invalid(l, code, &detail)
        }
        RequestError::Erased => l
            .t(
                "Die persönlichen Angaben dieser Anfrage wurden nach Ablauf der Frist gelöscht; sie kann nicht mehr geändert werden.",
                "This request's personal data was erased after the retention period; it can no longer be changed.",
            )
            .into(),
        RequestError::Store(e) => {
            tracing::error!(error = %e, "dashboard: request change failed");
            l.t(
                "Interner Fehler, bitte noch einmal versuchen.",
                "Internal error, please try again.",
            )
            .into()
        }
    }
}

pub async fn offer(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let r = load(&state, &s, &raw).await?;
    let l = s.lang;
    let chosen: Vec<String> = f.all("volunteer").iter().filter_map(|v| uuid(v)).collect();
    if chosen.is_empty() || chosen.len() > 100 {
        let msg = l.t(
            "Bitte mindestens eine Person auswählen.",
            "Please choose at least one person.",
        );
        return Ok(refused(&state, &s, r, msg.into()).await);
    }
    let outcome = state
        .store
        .offer_request(s.org(), s.caller.actor(), &r.id, &chosen)
        .await;
    let id = r.id.clone();
    Ok(changed(&state, &s, r, outcome, |(_, fresh)| {
        state.push.wake();
        tracing::info!(request_id = %id, offered = fresh.len(), "request offered (dashboard)");
        Redirect::to(&format!("/dashboard/requests/{id}?offered={}", fresh.len())).into_response()
    })
    .await)
}

pub async fn set_status(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let r = load(&state, &s, &raw).await?;
    let to = f.get("status");
    if !["cancelled", "done", "open"].contains(&to.as_str()) {
        let unknown = s.lang.t("Unbekannter Status.", "Unknown status.");
        return Ok(refused(&state, &s, r, unknown.into()).await);
    }
    let patch = RequestPatch {
        status: Some(to),
        ..RequestPatch::default()
    };
    Ok(save(&state, &s, r, patch).await)
}

pub async fn detail(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Result<Response, Response> {
    let r = load(&state, &s, &raw).await?;
    let line = crate::app::caller::Caller::Coordinator(s.caller.clone()).audit_of(
        "request.read",
        "request",
        &r.id,
    );
    if let Err(e) = state.store.audit(&[line]).await {
        return Err(layout::failed(s.lang, "request audit", e));
    }
    Ok(detail_with(&state, &s, r, None, StatusCode::OK).await)
}

/// Who an actor of the history is, in words.
pub struct Names {
    pub volunteers: HashMap<String, String>,
    coordinators: HashMap<String, String>,
    devices: HashMap<String, (String, String)>,
}

impl Names {
    pub async fn load(state: &AppState, org: &str) -> Result<Self, crate::store::StoreError> {
        let volunteers = state
            .store
            .volunteers(org)
            .await?
            .into_iter()
            .map(|v| (v.id, v.display_name))
            .collect();
        let coordinators = state
            .store
            .coordinator_names(org)
            .await?
            .into_iter()
            .collect();
        let devices = state
            .store
            .device_names(org)
            .await?
            .into_iter()
            .map(|(id, name, v)| (id, (name, v)))
            .collect();
        Ok(Self {
            volunteers,
            coordinators,
            devices,
        })
    }

    pub fn volunteer(&self, id: &str) -> String {
        self.volunteers
            .get(id)
            .cloned()
            .unwrap_or_else(|| "?".into())
    }

    pub fn actor(&self, l: Lang, kind: &str, id: &str) -> String {
        match kind {
            "coordinator" => self
                .coordinators
                .get(id)
                .cloned()
                .unwrap_or_else(|| l.t("Koordination", "Coordinator").into()),
            "device" => match self.devices.get(id) {
                Some((device, v)) => format!(
                    "{} ({}: {device})",
                    self.volunteer(v),
                    l.t("Gerät", "device")
                ),
                None => l.t("ein Gerät", "a device").into(),
            },
            "intake" => l.t("Anfrageformular", "Intake form").into(),
            "system" => l.t("System", "System").into(),
            other => other.to_owned(),
        }
    }
}

async fn detail_with(
    state: &AppState,
    s: &Session,
    r: Request,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let l = s.lang;
    let org = s.org();
    let names = match Names::load(state, org).await {
        Ok(n) => n,
        Err(e) => return layout::failed(l, "names", e),
    };
    let offers = match state.store.request_offers(&r.id).await {
        Ok(o) => o,
        Err(e) => return layout::failed(l, "offers", e),
    };
    let history = match state.store.request_history(&r.id).await {
        Ok(h) => h,
        Err(e) => return layout::failed(l, "history", e),
    };
    let open = matches!(r.status.as_str(), "open" | "offered");
    let candidates = if open {
        let volunteers = match state.store.volunteers(org).await {
            Ok(v) => v,
            Err(e) => return layout::failed(l, "volunteers", e),
        };
        let loads = match state.store.volunteer_loads(org).await {
            Ok(v) => v,
            Err(e) => return layout::failed(l, "loads", e),
        };
        matching::rank(&r, &volunteers, &|v| loads.get(v).copied().unwrap_or(0))
    } else {
        Vec::new()
    };
    let offered: HashMap<&str, &str> = offers
        .iter()
        .map(|o| (o.volunteer_id.as_str(), o.status.as_str()))
        .collect();
    let notice = match (
        param(s, "created").as_str(),
        param(s, "saved").as_str(),
        param(s, "offered"),
    ) {
        ("1", _, _) => Some(
            l.t("Die Anfrage ist angelegt.", "The request was created.")
                .to_owned(),
        ),
        (_, "1", _) => Some(l.t("Gespeichert.", "Saved.").to_owned()),
        (_, _, n) if !n.is_empty() => Some(match l {
            Lang::De => {
                format!("Angeboten an {n} Person(en). Ihre Handys bekommen eine Benachrichtigung.")
            }
            Lang::En => format!("Offered to {n} person(s). Their phones get a notification."),
        }),
        _ => None,
    };
    let title = match l {
        Lang::De => format!(
            "Anfrage: {} am {}",
            i18n::topic(l, &r.topic),
            i18n::date(l, r.starts_at.ms())
        ),
        Lang::En => format!(
            "Request: {} on {}",
            i18n::topic(l, &r.topic),
            i18n::date(l, r.starts_at.ms())
        ),
    };
    let mut top_eligible = 0;
    html_response(
        status,
        layout::page(
            s,
            Nav::Requests,
            &title,
            html! {
                p { a href="/dashboard/requests" { "← " (l.t("Alle Anfragen", "All requests")) } }
                h1 { (title) }
                @if let Some(e) = &error { div.alert role="alert" { p { (e) } } }
                @if let Some(n) = &notice { div.ok-box role="status" { p { (n) } } }
                section.card aria-labelledby="angaben" {
                    h2 #angaben { (l.t("Angaben", "Details")) }
                    dl.facts {
                        dt { (l.t("Status", "Status")) }
                        dd data-status=(r.status) { (badge(&r.status, &i18n::request_status(l, &r.status)))
                            @if is_overdue(&r, now_ms()) { " " (badge("overdue", l.t("überfällig", "overdue"))) } }
                        @if let Some(v) = &r.assigned_volunteer_id {
                            dt { (l.t("Vergeben an", "Assigned to")) }
                            dd { a href=(format!("/dashboard/volunteers/{v}")) { (names.volunteer(v)) } }
                        }
                        @if let Some(c) = &r.case_document_id {
                            dt { (l.t("Fall", "Case")) }
                            dd { a href=(format!("/dashboard/cases/{c}")) { (l.t("Zum Fall", "Open the case")) } }
                        }
                        dt { (l.t("Termin", "Appointment")) } dd { (i18n::window(l, r.starts_at.ms(), r.ends_at.ms())) }
                        dt { (l.t("Thema", "Topic")) } dd { (i18n::topic(l, &r.topic)) }
                        dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &r.languages)) }
                        dt { (l.t("Einrichtung", "Institution")) } dd { (i18n::institution_kind(l, &r.institution_kind)) ": " (r.institution_name) }
                        dt { (l.t("Kontakt", "Contact")) } dd { (r.contact.as_deref().unwrap_or("–")) }
                        dt { (l.t("Kürzel der Person", "Label of the person")) } dd { (r.person_label) }
                        dt { (l.t("Ort", "Place")) } dd { (r.place_area) @if let Some(a) = &r.place_address { ", " (a) } }
                        dt { (l.t("Dringlichkeit", "Urgency")) } dd { (i18n::urgency(l, &r.urgency)) }
                        dt { (l.t("Beschreibung", "Description")) } dd { (if r.description.is_empty() { "–" } else { &r.description }) }
                        dt { (l.t("Eingegangen", "Received")) } dd { (i18n::datetime(l, r.created_at.ms())) " (" (if r.source == "intake" { l.t("Anfrageformular", "intake form") } else { l.t("Koordination", "coordinator") }) ")" }
                        @if let Some(at) = r.erased_at {
                            dt { (l.t("Persönliche Angaben", "Personal data")) }
                            dd #erased { (l.t("nach Ablauf der Frist gelöscht am", "erased after the retention period on")) " " (i18n::date(l, at.ms())) }
                        }
                    }
                    @if r.erased_at.is_none() {
                    div.actions {
                        a.button.secondary href=(format!("/dashboard/requests/{}/edit", r.id)) { (l.t("Bearbeiten", "Edit")) }
                        @if matches!(r.status.as_str(), "open" | "offered" | "assigned") {
                            form method="post" action=(format!("/dashboard/requests/{}/status", r.id)) {
                                (csrf(s)) input type="hidden" name="status" value="cancelled";
                                button.danger type="submit" { (l.t("Absagen", "Cancel request")) }
                            }
                        }
                        @if r.status == "assigned" {
                            form method="post" action=(format!("/dashboard/requests/{}/status", r.id)) {
                                (csrf(s)) input type="hidden" name="status" value="done";
                                button.secondary type="submit" { (l.t("Als erledigt markieren", "Mark as done")) }
                            }
                        }
                        @if matches!(r.status.as_str(), "cancelled" | "expired") {
                            form method="post" action=(format!("/dashboard/requests/{}/status", r.id)) {
                                (csrf(s)) input type="hidden" name="status" value="open";
                                button.secondary type="submit" { (l.t("Wieder öffnen", "Reopen")) }
                            }
                        }
                    }
                    }
                }
                @if open {
                    section.card aria-labelledby="kandidaten" {
                        h2 #kandidaten { (l.t("Passende Lotsinnen und Lotsen", "Matching volunteers")) }
                        p.muted { (l.t(
                            "Sortiert nach Sprache, Thema, Verfügbarkeit im Zeitfenster und laufenden Einsätzen.",
                            "Ranked by language, topic, availability in the time window and current assignments.")) }
                        @if candidates.is_empty() {
                            p { (l.t("Keine aktiven Lotsinnen und Lotsen.", "No active volunteers.")) }
                        } @else {
                            form method="post" action=(format!("/dashboard/requests/{}/offer", r.id)) {
                                (csrf(s))
                                (table_wrap(l, l.t("Kandidatinnen und Kandidaten", "Candidates"), html! {
                                    table #candidates {
                                        thead { tr {
                                            th scope="col" { (l.t("Anbieten", "Offer")) }
                                            th scope="col" { (l.t("Name", "Name")) }
                                            th scope="col" class="num" { (l.t("Punkte", "Score")) }
                                            th scope="col" { (l.t("Gründe", "Reasons")) }
                                            th scope="col" { (l.t("Angebot", "Offer status")) }
                                        } }
                                        tbody {
                                            @for c in &candidates {
                                                @let already = offered.get(c.volunteer_id.as_str()).copied();
                                                @let check_id = format!("offer-{}", c.volunteer_id);
                                                @let preselect = c.eligible && already.is_none() && { top_eligible += 1; top_eligible <= 3 };
                                                tr data-volunteer=(c.volunteer_id) {
                                                    td {
                                                        @if already.is_none() {
                                                            input type="checkbox" id=(check_id) name="volunteer" value=(c.volunteer_id) checked[preselect];
                                                        } @else { "–" }
                                                    }
                                                    td {
                                                        @if already.is_none() {
                                                            label for=(check_id) { (c.display_name) }
                                                        } @else { (c.display_name) }
                                                        @if !c.eligible { " " span.muted { "(" (l.t("spricht keine der Sprachen", "speaks none of the languages")) ")" } }
                                                    }
                                                    td.num { (c.score) }
                                                    td {
                                                        ul.reasons {
                                                            @for reason in &c.reasons {
                                                                li class=(if reason.ok { "yes" } else { "no" }) {
                                                                    span aria-hidden="true" { (if reason.ok { "✓ " } else { "✗ " }) }
                                                                    span.sr-only { (if reason.ok { l.t("passt: ", "fits: ") } else { l.t("passt nicht: ", "does not fit: ") }) }
                                                                    (match l { Lang::De => &reason.de, Lang::En => &reason.en })
                                                                }
                                                            }
                                                        }
                                                    }
                                                    td { @if let Some(st) = already { (badge(st, &i18n::offer_status(l, st))) } @else { "–" } }
                                                }
                                            }
                                        }
                                    }
                                }))
                                div.actions { button type="submit" { (l.t("Ausgewählten anbieten", "Offer to the selected")) } }
                            }
                        }
                    }
                }
                section.card aria-labelledby="antworten" {
                    h2 #antworten { (l.t("Angebote und Antworten", "Offers and answers")) }
                    @if offers.is_empty() {
                        p.muted { (l.t("Noch niemandem angeboten.", "Not offered to anyone yet.")) }
                    } @else {
                        (data_table(l, l.t("Angebote und Antworten", "Offers and answers"), Some("offers"),
                            &[l.t("Lotsin/Lotse", "Volunteer"), l.t("Antwort", "Answer"), l.t("Angeboten", "Offered"), l.t("Beantwortet", "Answered")], &[], html! {
                            @for o in &offers {
                                tr data-volunteer=(o.volunteer_id) data-offer=(o.status) {
                                    td { (names.volunteer(&o.volunteer_id)) }
                                    td { (badge(&o.status, &i18n::offer_status(l, &o.status))) }
                                    td { (i18n::datetime(l, o.offered_at.ms())) }
                                    td { (o.answered_at.map(|t| i18n::datetime(l, t.ms())).unwrap_or_else(|| "–".into())) }
                                }
                            }
                        }))
                    }
                }
                section.card aria-labelledby="verlauf" {
                    h2 #verlauf { (l.t("Verlauf", "History")) }
                    (data_table(l, l.t("Verlauf", "History"), None,
                        &[l.t("Wann", "When"), l.t("Was", "What"), l.t("Wer", "Who")], &[], html! {
                        @for e in &history {
                            tr {
                                td { (i18n::datetime(l, e.at.ms())) }
                                td { (i18n::request_action(l, &e.action)) @if let Some(v) = &e.volunteer_id { " " (names.volunteer(v)) } }
                                td { (names.actor(l, &e.actor_kind, &e.actor_id)) }
                            }
                        }
                    }))
                }
            },
        ),
    )
}

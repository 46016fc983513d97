//! Lotsinnen und Lotsen: the list, a profile (languages, topics, availability, pledge
//! date, trainings, cases), the create and edit form, the devices with their last sync and a revoke
//! button, and one-time enrollment codes shown as text and as a QR code (SVG drawn on
//! the server).
//!
//! The form checks its fields with the API's rules (`Volunteer::check_*` in the store),
//! so both accept the same data; only the words differ (`i18n::invalid`).
//!
//! The QR code holds `<this server's address>/app/#code=<code>`: scanned with a phone's
//! camera it opens the volunteers' web app, which enrolls with the code (the fragment
//! never reaches a server or its logs); a native app registered for the server's links
//! can take the same URL. The address is taken from the request's `Host` (and
//! `X-Forwarded-Proto` behind a proxy). The code alone, typed by hand, works as well.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::i18n::{self, Lang, query_param};
use super::layout::{
    self, Nav, aria_invalid, badge, csrf, data_table, described, field_error, grid_form,
    html_response, language_boxes, raw, table_wrap,
};
use super::session::{Fields, Posted, Session};
use crate::app::AppState;
use crate::auth;
use crate::store::{
    Device, NewVolunteer, Slot, Training, Volunteer, VolunteerPatch, VolunteerSync, now_ms,
};
use crate::timefmt::Timestamp;

pub async fn list(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let volunteers = match state.store.volunteers(s.org()).await {
        Ok(v) => v,
        Err(e) => return layout::failed(l, "volunteers", e),
    };
    let syncs: HashMap<String, VolunteerSync> = match state.store.volunteer_sync(s.org()).await {
        Ok(v) => v.into_iter().map(|x| (x.volunteer_id.clone(), x)).collect(),
        Err(e) => return layout::failed(l, "devices", e),
    };
    let title = l.t("Lotsinnen und Lotsen", "Volunteers");
    let now = now_ms();
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Volunteers,
            title,
            html! {
                h1 { (title) }
                p { a.button href="/dashboard/volunteers/new" { (l.t("Neue Lotsin / neuer Lotse anlegen", "Add a volunteer")) } }
                p role="status" { (volunteers.len()) " " (l.t("Personen", "people")) }
                (data_table(l, title, None,
                    &[l.t("Name", "Name"), l.t("Sprachen", "Languages"), l.t("Themen", "Topics"),
                    l.t("Verpflichtung unterschrieben", "Pledge signed"), l.t("Geräte", "Devices"), l.t("Zuletzt synchronisiert", "Last sync")], &[4], html! {
                    @for v in &volunteers {
                        @let sync = syncs.get(&v.id);
                        tr {
                            td {
                                a href=(format!("/dashboard/volunteers/{}", v.id)) { (v.display_name) }
                                @if !v.active { " " (badge("closed", l.t("inaktiv", "inactive"))) }
                            }
                            td { (i18n::languages(l, &v.languages)) }
                            td { (v.topics.iter().map(|t| i18n::topic(l, t)).collect::<Vec<_>>().join(", ")) }
                            td { (v.pledge_signed_on.as_deref().map(|d| i18n::iso_date(l, d)).unwrap_or_else(|| "–".into())) }
                            td.num { (sync.map(|x| x.active_devices).unwrap_or(0)) }
                            td { (last_sync(l, now, sync.and_then(|x| x.last_sync_at), sync.is_some_and(|x| x.active_devices > 0))) }
                        }
                    }
                }))
            },
        ),
    )
}

fn last_sync(l: Lang, now: i64, at: Option<i64>, has_device: bool) -> String {
    match (at, has_device) {
        (_, false) => l.t("kein Gerät", "no device").into(),
        (None, true) => l.t("noch nie", "never").into(),
        (Some(t), true) => format!("{} ({})", i18n::datetime(l, t), i18n::ago_days(l, now, t)),
    }
}

async fn load(state: &AppState, s: &Session, raw: &str) -> Result<Volunteer, Response> {
    layout::found(s.lang, raw, "volunteer", |id| async move {
        state.store.volunteer(s.org(), &id).await
    })
    .await
}

pub async fn detail(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Result<Response, Response> {
    let v = load(&state, &s, &raw).await?;
    let line = crate::app::caller::Caller::Coordinator(s.caller.clone()).audit_of(
        "volunteer.read",
        "volunteer",
        &v.id,
    );
    if let Err(e) = state.store.audit(&[line]).await {
        return Err(layout::failed(s.lang, "volunteer audit", e));
    }
    Ok(detail_with(&state, &s, &v, None).await)
}

/// A freshly made enrollment code, shown once.
struct NewCode {
    code: String,
    expires_at: i64,
    qr_svg: String,
    link: String,
}

fn qr_svg(l: Lang, content: &str) -> Option<String> {
    let label = l.t(
        "QR-Code mit dem Anmeldecode",
        "QR code with the enrollment code",
    );
    layout::qr_svg(label, content)
}

pub async fn enrollment_code(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let v = load(&state, &s, &raw).await?;
    let l = s.lang;
    let hours: i64 = f
        .get("valid_hours")
        .parse()
        .ok()
        .filter(|h| (1..=168).contains(h))
        .unwrap_or(24);
    let code = auth::new_enrollment_code();
    let Some(hash) = auth::code_hash(&code) else {
        return Err(layout::server_error(l));
    };
    let expires_at = now_ms() + hours * 3_600_000;
    match state
        .store
        .create_enrollment_code(s.org(), s.caller.id(), &v.id, &hash, expires_at)
        .await
    {
        Ok(Some(())) => {}
        Ok(None) => return Err(layout::not_found(l)),
        Err(e) => return Err(layout::failed(l, "enrollment code", e)),
    }
    tracing::info!(volunteer_id = %v.id, "enrollment code created (dashboard)");
    let server = crate::app::address::public_base(&state.config, &headers);
    let link = format!("{server}/app/#code={code}");
    let qr = qr_svg(l, &link).unwrap_or_default();
    let new_code = NewCode {
        code,
        expires_at,
        qr_svg: qr,
        link,
    };
    Ok(detail_with(&state, &s, &v, Some(new_code)).await)
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, .. }: Posted,
) -> Result<Response, Response> {
    let (store, org, by) = (&state.store, s.org(), s.caller.id());
    let (device, shrunk) = layout::found(s.lang, &raw, "revoke", |id| async move {
        store.revoke_device(org, by, &id).await
    })
    .await?;
    state.access_shrank(shrunk);
    tracing::info!(device_id = %device.id, "device revoked (dashboard)");
    Ok(Redirect::to(&format!("/dashboard/devices/{}?revoked=1", device.id)).into_response())
}

fn devices_table(s: &Session, devices: &[Device], now: i64) -> Markup {
    let l = s.lang;
    table_wrap(
        l,
        l.t("Geräte", "Devices"),
        html! {
            table #devices {
                thead { tr {
                    th scope="col" { (l.t("Gerät", "Device")) }
                    th scope="col" { (l.t("Angemeldet", "Enrolled")) }
                    th scope="col" { (l.t("Zuletzt gesehen", "Last seen")) }
                    th scope="col" { (l.t("Zuletzt synchronisiert", "Last sync")) }
                    th scope="col" { (l.t("Status", "Status")) }
                } }
                tbody {
                    @for d in devices {
                        tr data-device=(d.id) {
                            td { (d.name) }
                            td { (i18n::datetime(l, d.created_at.ms())) }
                            td { (d.last_seen_at.map(|t| i18n::datetime(l, t.ms())).unwrap_or_else(|| "–".into())) }
                            td { (last_sync(l, now, d.last_sync_at.map(Timestamp::ms), true)) }
                            td {
                                @if let Some(t) = d.revoked_at {
                                    (badge("revoked", l.t("gesperrt", "revoked"))) " " (i18n::datetime(l, t.ms()))
                                } @else {
                                    a.button.danger href=(format!("/dashboard/devices/{}", d.id)) aria-label=(format!("{} {}", l.t("Sperren:", "Revoke:"), d.name)) {
                                        (l.t("Sperren …", "Revoke …"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn detail_with(
    state: &AppState,
    s: &Session,
    v: &Volunteer,
    code: Option<NewCode>,
) -> Response {
    let l = s.lang;
    let devices = match state.store.devices_of(s.org(), &v.id).await {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => return layout::failed(l, "devices", e),
    };
    let cases = match state.store.cases(s.org()).await {
        Ok(c) => c
            .into_iter()
            .filter(|c| c.volunteer_ids.contains(&v.id))
            .collect::<Vec<_>>(),
        Err(e) => return layout::failed(l, "cases", e),
    };
    let param = |key: &str| {
        s.here
            .split_once('?')
            .and_then(|(_, q)| query_param(q, key))
    };
    let revoked = param("revoked");
    let notice = if param("created").as_deref() == Some("1") {
        Some(l.t(
            "Angelegt. Unten können Sie einen Anmeldecode für das Handy erstellen.",
            "Created. Below you can create an enrollment code for the phone.",
        ))
    } else if param("saved").as_deref() == Some("1") {
        Some(l.t("Gespeichert.", "Saved."))
    } else if param("erased").as_deref() == Some("1") {
        Some(l.t(
            "Gelöscht. Die Geräte sind gesperrt; die Stunden bleiben ohne Namen in den Berichten.",
            "Erased. The devices are revoked; the hours stay in the reports without a name.",
        ))
    } else {
        None
    };
    let now = now_ms();
    let mut slots = v.availability.clone();
    slots.sort_by(|a, b| (a.weekday, &a.from).cmp(&(b.weekday, &b.from)));
    html_response(
        StatusCode::OK,
        layout::page(
            s,
            Nav::Volunteers,
            &v.display_name,
            html! {
                p { a href="/dashboard/volunteers" { "← " (l.t("Alle Lotsinnen und Lotsen", "All volunteers")) } }
                h1 { (v.display_name) }
                p {
                    a href=(format!("/dashboard/volunteers/{}/statement", v.id)) { (l.t("Stundennachweis (letzter Monat)", "Statement of hours (last month)")) }
                    " · "
                    a href=(format!("/dashboard/volunteers/{}/export", v.id)) { (l.t("Auskunft (Art. 15 DSGVO)", "Access export (Art. 15 GDPR)")) }
                }
                @if let Some(n) = notice { div.ok-box role="status" { p { (n) } } }
                @if let Some(id) = &revoked {
                    div.ok-box role="status" { p { (l.t("Das Gerät ist gesperrt. Es wird beim nächsten Kontakt gelöscht.", "The device is revoked. It wipes its data at its next contact.")) }
                        span.sr-only { (id) } }
                }
                @if let Some(c) = &code {
                    section.card aria-labelledby="neuer-code" {
                        h2 #neuer-code { (l.t("Neuer Anmeldecode", "New enrollment code")) }
                        p { (l.t("Einmal gültig. Im Handy eintippen oder den QR-Code scannen.", "Valid once. Type it into the phone or scan the QR code.")) }
                        p.code #enrollment-code { (c.code) }
                        p { (l.t("Gültig bis", "Valid until")) " " (i18n::datetime(l, c.expires_at)) }
                        div.qr { (raw(&c.qr_svg)) }
                        p.muted { (l.t("Im QR-Code:", "In the QR code:")) " " code { (c.link) } }
                    }
                }
                div.grid {
                    section.card aria-labelledby="profil" {
                        h2 #profil { (l.t("Profil", "Profile")) }
                        dl.facts {
                            dt { (l.t("Status", "Status")) } dd { @if v.active { (badge("active", l.t("aktiv", "active"))) } @else { (badge("closed", l.t("inaktiv", "inactive"))) } }
                            dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &v.languages)) }
                            dt { (l.t("Themen", "Topics")) } dd { (if v.topics.is_empty() { "–".to_owned() } else { v.topics.iter().map(|t| i18n::topic(l, t)).collect::<Vec<_>>().join(", ") }) }
                            dt { (l.t("Verfügbar", "Available")) }
                            dd {
                                @if slots.is_empty() { "–" } @else {
                                    ul {
                                        @for slot in &slots {
                                            li { (i18n::weekday(l, slot.weekday)) " " (slot.from) "–" (slot.to) }
                                        }
                                    }
                                }
                            }
                            dt { (l.t("Schweigepflicht unterschrieben", "Confidentiality pledge signed")) }
                            dd { (v.pledge_signed_on.as_deref().map(|d| i18n::iso_date(l, d)).unwrap_or_else(|| l.t("noch nicht", "not yet").into())) }
                            dt { (l.t("Schulungen", "Trainings")) }
                            dd {
                                @if v.trainings.is_empty() {
                                    (l.t("noch keine", "none yet"))
                                } @else {
                                    ul #trainings {
                                        @for t in &v.trainings {
                                            li { (t.name) ", " (i18n::iso_date(l, &t.completed_on)) }
                                        }
                                    }
                                }
                            }
                            dt { (l.t("Dabei seit", "Member since")) } dd { (i18n::date(l, v.created_at.ms())) }
                        }
                        @if let Some(at) = v.erased_at {
                            p.muted { (l.t("Nach Art. 17 DSGVO gelöscht am", "Erased under Art. 17 GDPR on")) " " (i18n::date(l, at.ms())) }
                        } @else {
                            div.actions {
                                a.button.secondary href=(format!("/dashboard/volunteers/{}/edit", v.id)) { (l.t("Bearbeiten", "Edit")) }
                            }
                        }
                    }
                    section.card aria-labelledby="begleitungen" {
                        h2 #begleitungen { (l.t("Fälle", "Cases")) " (" (cases.len()) ")" }
                        @if cases.is_empty() { p.muted { (l.t("Keine Fälle.", "No cases.")) } } @else {
                            ul {
                                @for c in &cases {
                                    li {
                                        a href=(format!("/dashboard/cases/{}", c.id)) { (c.label) }
                                        " · " (i18n::topic(l, &c.topic)) " · " (badge(&c.status, &i18n::case_status(l, &c.status)))
                                    }
                                }
                            }
                        }
                    }
                }
                section.card aria-labelledby="geraete" {
                    h2 #geraete { (l.t("Geräte", "Devices")) " (" (devices.len()) ")" }
                    p.muted { (l.t(
                        "Ein verlorenes Handy sperren: es kann sofort nichts mehr synchronisieren und löscht seine Daten beim nächsten Kontakt.",
                        "Revoke a lost phone: it stops syncing at once and wipes its data at its next contact.")) }
                    @if devices.is_empty() { p { (l.t("Noch kein Gerät angemeldet.", "No device enrolled yet.")) } } @else { (devices_table(s, &devices, now)) }
                    @if v.erased_at.is_none() {
                    form method="post" action=(format!("/dashboard/volunteers/{}/enrollment-code", v.id)) {
                        (csrf(s))
                        div.filters {
                            div.field {
                                label for="valid_hours" { (l.t("Code gültig für", "Code valid for")) }
                                select #valid_hours name="valid_hours" {
                                    option value="24" { (l.t("24 Stunden", "24 hours")) }
                                    option value="72" { (l.t("3 Tage", "3 days")) }
                                    option value="168" { (l.t("7 Tage", "7 days")) }
                                }
                            }
                            button type="submit" { (l.t("Anmeldecode für ein neues Handy erstellen", "Create an enrollment code for a new phone")) }
                        }
                    }
                    }
                }
                @if v.erased_at.is_none() && s.caller.coordinator.is_leitung() { (erase_form(s, v)) }
            },
        ),
    )
}

/// Messages of a form, by field name (`slot-{row}` for a row of the availability).
type Errors = HashMap<String, String>;

/// One row of the weekly availability as typed: weekday "1" to "7" (or empty), times.
#[derive(Default)]
struct Row {
    weekday: String,
    from: String,
    to: String,
}

/// One completed training as typed: a name and a date (YYYY-MM-DD), either may be empty.
#[derive(Default)]
struct TrainingRow {
    name: String,
    completed_on: String,
}

/// What the create and edit form shows: the posted values, or a volunteer's.
struct Form {
    display_name: String,
    /// The ticked boxes of `i18n::COMMON_LANGUAGES`.
    languages: Vec<String>,
    /// Further codes, typed, separated by commas or spaces.
    other_languages: String,
    topics: Vec<String>,
    /// Only the filled rows; the form adds empty ones.
    rows: Vec<Row>,
    active: bool,
    /// YYYY-MM-DD or empty.
    pledge_signed_on: String,
    /// Only the filled rows; the form adds empty ones.
    trainings: Vec<TrainingRow>,
}

impl Form {
    fn blank() -> Self {
        Self {
            display_name: String::new(),
            languages: Vec::new(),
            other_languages: String::new(),
            topics: Vec::new(),
            rows: Vec::new(),
            active: true,
            pledge_signed_on: String::new(),
            trainings: Vec::new(),
        }
    }

    fn of(v: &Volunteer) -> Self {
        let (common, other): (Vec<String>, Vec<String>) = v
            .languages
            .iter()
            .cloned()
            .partition(|c| i18n::COMMON_LANGUAGES.contains(&c.as_str()));
        Self {
            display_name: v.display_name.clone(),
            languages: common,
            other_languages: other.join(", "),
            topics: v.topics.clone(),
            rows: v
                .availability
                .iter()
                .map(|slot| Row {
                    weekday: slot.weekday.to_string(),
                    from: slot.from.clone(),
                    to: slot.to.clone(),
                })
                .collect(),
            active: v.active,
            pledge_signed_on: v.pledge_signed_on.clone().unwrap_or_default(),
            trainings: v
                .trainings
                .iter()
                .map(|t| TrainingRow {
                    name: t.name.clone(),
                    completed_on: t.completed_on.clone(),
                })
                .collect(),
        }
    }

    fn posted(f: &Fields) -> Self {
        // Rows are `weekday-{i}`, `from-{i}`, `to-{i}`, gathered in one pass; every index
        // posted counts, so a row is never lost to a gap in the numbering.
        let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
        let mut trainings: BTreeMap<usize, TrainingRow> = BTreeMap::new();
        for (key, value) in &f.0 {
            let Some((part, index)) = key.rsplit_once('-') else {
                continue;
            };
            let Ok(index) = index.parse::<usize>() else {
                continue;
            };
            let slot = match part {
                "weekday" => &mut rows.entry(index).or_default().weekday,
                "from" => &mut rows.entry(index).or_default().from,
                "to" => &mut rows.entry(index).or_default().to,
                "training-name" => &mut trainings.entry(index).or_default().name,
                "training-date" => &mut trainings.entry(index).or_default().completed_on,
                _ => continue,
            };
            if slot.is_empty() {
                value.trim().clone_into(slot);
            }
        }
        let rows = rows
            .into_values()
            .filter(|r| !(r.weekday.is_empty() && r.from.is_empty() && r.to.is_empty()))
            .collect();
        Self {
            display_name: f.get("display_name"),
            languages: f.all("language"),
            other_languages: f.get("other_languages"),
            topics: f.all("topic"),
            rows,
            active: f.get("active") == "1",
            pledge_signed_on: f.get("pledge_signed_on"),
            trainings: trainings
                .into_values()
                .filter(|t| !(t.name.is_empty() && t.completed_on.is_empty()))
                .collect(),
        }
    }
}

/// The value, or `None` with the message for `field`, in the page's language.
fn keep<T>(
    l: Lang,
    errors: &mut Errors,
    field: &str,
    checked: Result<T, (&'static str, String)>,
) -> Option<T> {
    match checked {
        Ok(value) => Some(value),
        Err((code, detail)) => {
            errors.insert(field.to_owned(), i18n::invalid(l, code, &detail));
            None
        }
    }
}

/// Checks the form with the API's rules; every refused field gets its message.
fn validate(l: Lang, form: &Form) -> Result<NewVolunteer, Errors> {
    let mut errors = Errors::new();
    let display_name = keep(
        l,
        &mut errors,
        "display_name",
        Volunteer::check_name(&form.display_name).map_err(|e| e.reason()),
    );
    let typed = form
        .other_languages
        .split([',', ' ', ';'])
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let codes: Vec<String> = form.languages.iter().cloned().chain(typed).collect();
    let languages = Volunteer::check_languages(&codes).map_err(|e| e.reason());
    // A code nobody knows can only have been typed; the rest concerns the whole list.
    let field = match &languages {
        Err(("not_a_language", _)) => "other_languages",
        _ => "languages",
    };
    let languages = keep(l, &mut errors, field, languages);
    let topics = keep(
        l,
        &mut errors,
        "topics",
        Volunteer::check_topics(&form.topics).map_err(|e| e.reason()),
    );
    let mut slots = Vec::with_capacity(form.rows.len());
    for (i, row) in form.rows.iter().enumerate() {
        let slot = Slot {
            // Not a weekday (empty, or not a number) is refused by the rules as 0.
            weekday: row.weekday.parse().unwrap_or(0),
            from: row.from.clone(),
            to: row.to.clone(),
        };
        let field = format!("slot-{i}");
        if keep(l, &mut errors, &field, slot.check().map_err(|e| e.reason())).is_some() {
            slots.push(slot);
        }
    }
    let availability = if slots.len() == form.rows.len() {
        keep(
            l,
            &mut errors,
            "availability",
            Volunteer::check_availability(&slots).map_err(|e| e.reason()),
        )
    } else {
        None
    };
    let pledge_signed_on = if form.pledge_signed_on.is_empty() {
        Some(None)
    } else {
        keep(
            l,
            &mut errors,
            "pledge_signed_on",
            Volunteer::check_date(&form.pledge_signed_on).map_err(|e| e.reason()),
        )
        .map(Some)
    };
    let mut typed = Vec::with_capacity(form.trainings.len());
    for (i, row) in form.trainings.iter().enumerate() {
        let field = format!("training-{i}");
        let checked = Volunteer::check_name(&row.name)
            .and_then(|name| {
                Ok(Training {
                    name,
                    completed_on: Volunteer::check_date(&row.completed_on)?,
                })
            })
            .map_err(|e| e.reason());
        if let Some(t) = keep(l, &mut errors, &field, checked) {
            typed.push(t);
        }
    }
    let trainings = if typed.len() == form.trainings.len() {
        keep(
            l,
            &mut errors,
            "trainings",
            Volunteer::check_trainings(&typed).map_err(|e| e.reason()),
        )
    } else {
        None
    };
    match (
        display_name,
        languages,
        topics,
        availability,
        pledge_signed_on,
        trainings,
    ) {
        (
            Some(display_name),
            Some(languages),
            Some(topics),
            Some(availability),
            Some(pledge),
            Some(trainings),
        ) if errors.is_empty() => Ok(NewVolunteer {
            display_name,
            languages,
            topics,
            availability,
            active: form.active,
            pledge_signed_on: pledge,
            trainings,
        }),
        _ => Err(errors),
    }
}

fn volunteer_form(s: &Session, action: &str, back: &str, form: &Form, errors: &Errors) -> Markup {
    let l = s.lang;
    let optional = html! { " " span.muted { "(" (l.t("freiwillig", "optional")) ")" } };
    // At least three rows, and always one empty row to add a time.
    let shown = (form.rows.len() + 1).max(3);
    let empty = Row::default();
    let trainings_shown = (form.trainings.len() + 1).max(2);
    let no_training = TrainingRow::default();
    let columns = html! {
                div {
                    div.field {
                        label for="display_name" { (l.t("Name", "Name")) }
                        p.muted id="display_name-hint" { (l.t(
                            "So erscheint die Person in der Koordination, z. B. Vorname und Initial.",
                            "How the person appears to coordinators, e.g. first name and initial.")) }
                        input #display_name type="text" name="display_name" value=(form.display_name)
                            maxlength=(Volunteer::MAX_NAME_CHARS) required
                            aria-invalid=[aria_invalid(errors, "display_name")]
                            aria-describedby=(described(errors, "display_name").unwrap_or_else(|| "display_name-hint".into()));
                        (field_error(errors, "display_name"))
                    }
                    fieldset aria-describedby=[described(errors, "languages")] {
                        legend { (l.t("Sprachen", "Languages")) }
                        (language_boxes(l, &form.languages))
                        div.field {
                            label for="other_languages" { (l.t("Weitere Sprachen (Kürzel wie „hy“, mit Komma getrennt)", "Other languages (codes such as “hy”, comma-separated)")) }
                            input #other_languages type="text" name="other_languages" value=(form.other_languages) maxlength="200"
                                aria-invalid=[aria_invalid(errors, "other_languages")]
                                aria-describedby=[described(errors, "other_languages")];
                            (field_error(errors, "other_languages"))
                        }
                        (field_error(errors, "languages"))
                    }
                    fieldset aria-describedby=[described(errors, "topics")] {
                        legend { (l.t("Themen", "Topics")) (optional) }
                        @for t in i18n::TOPICS {
                            label { input type="checkbox" name="topic" value=(t) checked[form.topics.iter().any(|x| x == t)]; (i18n::topic(l, t)) }
                        }
                        (field_error(errors, "topics"))
                    }
                    div.field {
                        label { input type="checkbox" name="active" value="1" checked[form.active];
                            " " (l.t("Aktiv: bekommt passende Anfragen angeboten", "Active: is offered matching requests")) }
                    }
                    div.field {
                        label for="pledge_signed_on" { (l.t("Schweigepflichterklärung unterschrieben am", "Confidentiality pledge signed on")) (optional) }
                        p.muted id="pledge_signed_on-hint" { (l.t("Leer lassen, solange sie nicht unterschrieben ist.", "Leave empty until it is signed.")) }
                        input #pledge_signed_on type="date" name="pledge_signed_on" value=(form.pledge_signed_on)
                            aria-invalid=[aria_invalid(errors, "pledge_signed_on")]
                            aria-describedby=(described(errors, "pledge_signed_on").unwrap_or_else(|| "pledge_signed_on-hint".into()));
                        (field_error(errors, "pledge_signed_on"))
                    }
                }
                div {
                    fieldset aria-describedby="availability-hint" {
                        legend { (l.t("Verfügbar (jede Woche)", "Available (every week)")) (optional) }
                        p.muted id="availability-hint" { (l.t(
                            "Leere Zeilen zählen nicht. Für weitere Zeiten speichern und noch einmal bearbeiten.",
                            "Empty rows do not count. For more times, save and edit again.")) }
                        table #availability {
                            thead { tr {
                                th scope="col" { (l.t("Wochentag", "Weekday")) }
                                th scope="col" { (l.t("Von", "From")) }
                                th scope="col" { (l.t("Bis", "To")) }
                                th scope="col" { span.sr-only { (l.t("Hinweis", "Note")) } }
                            } }
                            tbody {
                                @for i in 0..shown {
                                    @let row = form.rows.get(i).unwrap_or(&empty);
                                    @let key = format!("slot-{i}");
                                    @let n = i + 1;
                                    tr {
                                        td {
                                            label.sr-only for=(format!("weekday-{i}")) { (l.t("Wochentag, Zeile", "Weekday, row")) " " (n) }
                                            select id=(format!("weekday-{i}")) name=(format!("weekday-{i}"))
                                                aria-invalid=[aria_invalid(errors, &key)] aria-describedby=[described(errors, &key)] {
                                                option value="" { "–" }
                                                @for d in 1..=7u8 {
                                                    option value=(d) selected[row.weekday == d.to_string()] { (i18n::weekday(l, d)) }
                                                }
                                            }
                                        }
                                        td {
                                            label.sr-only for=(format!("from-{i}")) { (l.t("Von, Zeile", "From, row")) " " (n) }
                                            input id=(format!("from-{i}")) type="time" name=(format!("from-{i}")) value=(row.from)
                                                aria-invalid=[aria_invalid(errors, &key)] aria-describedby=[described(errors, &key)];
                                        }
                                        td {
                                            label.sr-only for=(format!("to-{i}")) { (l.t("Bis, Zeile", "To, row")) " " (n) }
                                            input id=(format!("to-{i}")) type="time" name=(format!("to-{i}")) value=(row.to)
                                                aria-invalid=[aria_invalid(errors, &key)] aria-describedby=[described(errors, &key)];
                                        }
                                        td { (field_error(errors, &key)) }
                                    }
                                }
                            }
                        }
                        (field_error(errors, "availability"))
                    }
                    fieldset aria-describedby="trainings-hint" {
                        legend { (l.t("Schulungen", "Trainings")) (optional) }
                        p.muted id="trainings-hint" { (l.t(
                            "Basislehrgang, Schulungen, Supervision, mit Datum. Leere Zeilen zählen nicht.",
                            "Basic course, trainings, supervision, with the date. Empty rows do not count.")) }
                        table #trainings-form {
                            thead { tr {
                                th scope="col" { (l.t("Schulung", "Training")) }
                                th scope="col" { (l.t("Abgeschlossen am", "Completed on")) }
                                th scope="col" { span.sr-only { (l.t("Hinweis", "Note")) } }
                            } }
                            tbody {
                                @for i in 0..trainings_shown {
                                    @let row = form.trainings.get(i).unwrap_or(&no_training);
                                    @let key = format!("training-{i}");
                                    @let n = i + 1;
                                    tr {
                                        td {
                                            label.sr-only for=(format!("training-name-{i}")) { (l.t("Schulung, Zeile", "Training, row")) " " (n) }
                                            input id=(format!("training-name-{i}")) type="text" name=(format!("training-name-{i}")) value=(row.name)
                                                maxlength=(Volunteer::MAX_NAME_CHARS)
                                                aria-invalid=[aria_invalid(errors, &key)] aria-describedby=[described(errors, &key)];
                                        }
                                        td {
                                            label.sr-only for=(format!("training-date-{i}")) { (l.t("Abgeschlossen am, Zeile", "Completed on, row")) " " (n) }
                                            input id=(format!("training-date-{i}")) type="date" name=(format!("training-date-{i}")) value=(row.completed_on)
                                                aria-invalid=[aria_invalid(errors, &key)] aria-describedby=[described(errors, &key)];
                                        }
                                        td { (field_error(errors, &key)) }
                                    }
                                }
                            }
                        }
                        (field_error(errors, "trainings"))
                    }
                }
    };
    let end = html! {
        div.actions {
            button type="submit" { (l.t("Speichern", "Save")) }
            a href=(back) { (l.t("Abbrechen", "Cancel")) }
        }
    };
    grid_form(s, action, errors, columns, end)
}

/// The form for a new volunteer (`editing` `None`) or for editing one; it posts to and
/// leads back to the list or the profile.
fn form_page(
    s: &Session,
    editing: Option<&Volunteer>,
    form: &Form,
    errors: &Errors,
    status: StatusCode,
) -> Response {
    let (title, here) = match editing {
        None => (
            new_title(s.lang).to_owned(),
            "/dashboard/volunteers".to_owned(),
        ),
        Some(v) => (
            edit_title(s.lang, &v.display_name),
            format!("/dashboard/volunteers/{}", v.id),
        ),
    };
    let (title, action, back) = (title.as_str(), here.as_str(), here.as_str());
    html_response(
        status,
        layout::page(
            s,
            Nav::Volunteers,
            title,
            html! {
                p { a href=(back) { "← " (back_label(s.lang, back)) } }
                h1 { (title) }
                (volunteer_form(s, action, back, form, errors))
            },
        ),
    )
}

fn back_label(l: Lang, back: &str) -> &'static str {
    if back == "/dashboard/volunteers" {
        l.t("Alle Lotsinnen und Lotsen", "All volunteers")
    } else {
        l.t("Zurück zum Profil", "Back to the profile")
    }
}

fn new_title(l: Lang) -> &'static str {
    l.t("Neue Lotsin / neuer Lotse", "New volunteer")
}

fn edit_title(l: Lang, name: &str) -> String {
    match l {
        Lang::De => format!("{name} bearbeiten"),
        Lang::En => format!("Edit {name}"),
    }
}

pub async fn new_form(s: Session) -> Response {
    form_page(&s, None, &Form::blank(), &Errors::new(), StatusCode::OK)
}

pub async fn create(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l = s.lang;
    let form = Form::posted(&f);
    let new = match validate(l, &form) {
        Ok(n) => n,
        Err(errors) => {
            return form_page(&s, None, &form, &errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    match state
        .store
        .create_volunteer(s.org(), s.caller.id(), new)
        .await
    {
        Ok(v) => {
            tracing::info!(volunteer_id = %v.id, "volunteer created (dashboard)");
            Redirect::to(&format!("/dashboard/volunteers/{}?created=1", v.id)).into_response()
        }
        Err(e) => layout::failed(l, "create volunteer", e),
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Result<Response, Response> {
    let v = load_editable(&state, &s, &raw).await?;
    let form = Form::of(&v);
    Ok(form_page(
        &s,
        Some(&v),
        &form,
        &Errors::new(),
        StatusCode::OK,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let v = load_editable(&state, &s, &raw).await?;
    let l = s.lang;
    let here = format!("/dashboard/volunteers/{}", v.id);
    let form = Form::posted(&f);
    let new = validate(l, &form).map_err(|errors| {
        form_page(
            &s,
            Some(&v),
            &form,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })?;
    // The form shows every field, so every field is written; an empty date clears it.
    let patch = VolunteerPatch {
        display_name: Some(new.display_name),
        languages: Some(new.languages),
        topics: Some(new.topics),
        availability: Some(new.availability),
        active: Some(new.active),
        pledge_signed_on: Some(new.pledge_signed_on),
        trainings: Some(new.trainings),
    };
    Ok(
        match state
            .store
            .update_volunteer(s.org(), s.caller.id(), &v.id, patch)
            .await
        {
            Ok(Some((v, shrunk))) => {
                tracing::info!(volunteer_id = %v.id, devices_revoked = shrunk.len(), "volunteer updated (dashboard)");
                state.access_shrank(shrunk);
                Redirect::to(&format!("{here}?saved=1")).into_response()
            }
            Ok(None) => layout::not_found(l),
            Err(e) => layout::failed(l, "update volunteer", e),
        },
    )
}

/// A volunteer whose data may still be changed: not one erased under Art. 17.
async fn load_editable(state: &AppState, s: &Session, raw: &str) -> Result<Volunteer, Response> {
    let v = load(state, s, raw).await?;
    if v.erased_at.is_some() {
        return Err(erased_page(s.lang));
    }
    Ok(v)
}

fn erased_page(l: Lang) -> Response {
    layout::error_page(
        l,
        StatusCode::CONFLICT,
        l.t("Gelöscht", "Erased"),
        l.t(
            "Die Angaben dieser Person wurden nach Art. 17 DSGVO gelöscht und können nicht mehr geändert werden.",
            "This person's data was erased under Art. 17 GDPR and can no longer be changed.",
        ),
    )
}

/// `POST /dashboard/volunteers/{id}/erase`: Art. 17, once confirmed.
pub async fn erase(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Result<Response, Response> {
    let l = s.lang;
    if !s.caller.coordinator.is_leitung() {
        return Err(layout::leitung_only(l));
    }
    let v = load(&state, &s, &raw).await?;
    if f.get("confirm") != "yes" {
        return Err(layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht gelöscht", "Not erased"),
            l.t(
                "Bitte das Löschen ausdrücklich bestätigen.",
                "Please confirm the erasure explicitly.",
            ),
        ));
    }
    match state.erase_volunteer(&s.caller, &v.id).await {
        Ok(true) => {
            Ok(Redirect::to(&format!("/dashboard/volunteers/{}?erased=1", v.id)).into_response())
        }
        Ok(false) => Err(layout::not_found(l)),
        Err(e) => Err(layout::failed(l, "erase volunteer", e)),
    }
}

/// The form that erases a volunteer, with what stays and what goes.
fn erase_form(s: &Session, v: &Volunteer) -> Markup {
    let l = s.lang;
    html! {
        section.card aria-labelledby="loeschen" {
            h2 #loeschen { (l.t("Löschen (Art. 17 DSGVO)", "Erase (Art. 17 GDPR)")) }
            p { (l.t(
                "Für eine Person, die ausscheidet und die Löschung ihrer Daten verlangt: Name, Sprachen, Themen, Verfügbarkeit, Schulungen und alle Geräte werden gelöscht, jedes Gerät gesperrt, die Person aus allen Fällen genommen. Ihre Stunden bleiben ohne Namen in Berichten und Nachweisen. Das lässt sich nicht rückgängig machen.",
                "For a person who leaves and asks for their data to be erased: name, languages, topics, availability, trainings and all devices are erased, every device revoked, the person taken off every case. Their hours stay in reports and statements without a name. This cannot be undone.")) }
            form method="post" action=(format!("/dashboard/volunteers/{}/erase", v.id)) {
                (csrf(s))
                div.field {
                    input #erase-confirm type="checkbox" name="confirm" value="yes" required;
                    label for="erase-confirm" { (l.t("Ich will die Daten dieser Person endgültig löschen.", "I want to erase this person's data for good.")) }
                }
                button.danger type="submit" { (l.t("Endgültig löschen", "Erase for good")) }
            }
        }
    }
}

/// `GET /dashboard/devices/{id}`: a device before and after it is revoked as lost: what
/// it could hold (the cases of its volunteer, and those taken from them since its last
/// contact), since when it has been silent, and when it destroys its keys by itself. What
/// a network needs to judge whether a lost phone must be reported (DSGVO Art. 33).
pub async fn device_page(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Result<Response, Response> {
    let l = s.lang;
    let (store, org) = (&state.store, s.org());
    let exposure = layout::found(l, &raw, "device exposure", |id| async move {
        store.device_exposure(org, &id).await
    })
    .await?;
    let d = &exposure.device;
    let owner = match state.store.volunteer(s.org(), &d.volunteer_id).await {
        Ok(v) => v.map(|v| v.display_name).unwrap_or_default(),
        Err(e) => return Err(layout::failed(l, "device owner", e)),
    };
    let when = |t: Option<i64>| {
        t.map(|t| i18n::datetime(l, t))
            .unwrap_or_else(|| "–".into())
    };
    let title = format!("{}: {}", l.t("Gerät", "Device"), d.name);
    Ok(html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Volunteers,
            &title,
            html! {
                p { a href=(format!("/dashboard/volunteers/{}", d.volunteer_id)) { "← " (owner) } }
                h1 { (title) }
                @if let Some(t) = d.revoked_at {
                    p role="status" { (badge("revoked", l.t("gesperrt", "revoked"))) " " (i18n::datetime(l, t.ms())) ". "
                        (l.t("Das Gerät kann nichts mehr synchronisieren und löscht seine Daten beim nächsten Kontakt.",
                            "The device can no longer sync and wipes its data at its next contact.")) }
                }
                section.card aria-labelledby="exposure" {
                    h2 #exposure { (l.t("Was das Gerät enthalten kann", "What the device may hold")) }
                    dl.facts {
                        dt { (l.t("Letzter Kontakt", "Last contact")) } dd #last-contact { (when(exposure.last_contact)) }
                        dt { (l.t("Zuletzt synchronisiert", "Last sync")) } dd { (when(d.last_sync_at.map(Timestamp::ms))) }
                        dt { (l.t("Schlüssel vernichtet sich ohne Kontakt am", "Keys destroy themselves without contact on")) }
                        dd #lease-lapses { (when(exposure.lease_lapses_at)) }
                    }
                    p.muted { (l.t(
                        "Die Fälle sind auf dem Gerät verschlüsselt; lesbar sind sie nur in der App, und nur bis zum genannten Datum. Für die Prüfung nach Art. 33 DSGVO: diese Fälle waren dem Gerät zugänglich.",
                        "The cases are encrypted on the device; they are readable only in the app, and only until the date above. For the assessment under Art. 33 GDPR: these cases were accessible to the device.")) }
                    @if exposure.cases.is_empty() {
                        p { (l.t("Keine Fälle.", "No cases.")) }
                    } @else {
                        ul #exposed-cases {
                            @for (case, label) in &exposure.cases {
                                li data-case=(case) { a href=(format!("/dashboard/cases/{case}")) { (if label.is_empty() { case.as_str() } else { label.as_str() }) } }
                            }
                        }
                    }
                }
                @if d.revoked_at.is_none() {
                    form method="post" action=(format!("/dashboard/devices/{}/revoke", d.id)) {
                        (csrf(&s))
                        button.danger type="submit" { (l.t("Als verloren sperren", "Revoke as lost")) }
                    }
                }
            },
        ),
    ))
}

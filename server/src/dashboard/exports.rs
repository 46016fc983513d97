//! Auskunft nach Art. 15 DSGVO as printable pages: everything the network holds about the
//! person a case helps, or about a volunteer, drawn from the same `exports` the API
//! answers as JSON. Like the API, a page writes its audit line (`document.export`,
//! `volunteer.export`) before any of it leaves, and shows nothing when that fails.
//! The stylesheet's print rules leave the navigation out, so the browser's "Drucken"
//! (or "Als PDF speichern") gives the document to hand over.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use lotse_protocol::DocumentId;
use maud::{Markup, html};

use super::i18n::{self, Lang};
use super::layout::{self, Nav, badge, data_table, html_response};
use super::requests::Names;
use super::session::Session;
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::exports::{self, CaseExport, VolunteerExport, Written};
use crate::store::Request;

/// `GET /dashboard/cases/{id}/export`
pub async fn case(State(state): State<AppState>, s: Session, Path(raw): Path<String>) -> Response {
    let l = s.lang;
    let Ok(asked) = DocumentId::from_url(&raw).or_else(|_| raw.parse::<DocumentId>()) else {
        return layout::not_found(l);
    };
    // Any earlier document id of a rewritten case leads to the case as it is now.
    let id = match state.store.current_generation(s.org(), &asked).await {
        Ok(current) => current.unwrap_or(asked),
        Err(e) => return layout::failed(l, "case lookup", e),
    };
    let export = match exports::case(&state, s.org(), id).await {
        Ok(Some(x)) => x,
        Ok(None) => return layout::not_found(l),
        Err(e) => return layout::failed(l, "case export", e),
    };
    let names = match Names::load(&state, s.org()).await {
        Ok(n) => n,
        Err(e) => return layout::failed(l, "names", e),
    };
    let line = Caller::Coordinator(s.caller.clone()).audit("document.export", &export.id);
    if let Err(e) = state.store.audit(&[line]).await {
        return layout::failed(l, "case export audit", e);
    }
    let title = format!(
        "{} – {} {}",
        l.t("Auskunft nach Art. 15 DSGVO", "Access under Art. 15 GDPR"),
        l.t("Fall", "Case"),
        export.label
    );
    html_response(
        StatusCode::OK,
        layout::page(&s, Nav::Cases, &title, case_body(&s, &names, &export)),
    )
}

/// `GET /dashboard/volunteers/{id}/export`
pub async fn volunteer(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Response {
    let l = s.lang;
    let export = match layout::found(l, &raw, "volunteer export", |id| {
        let state = &state;
        let org = s.org();
        async move { exports::volunteer(state, org, &id).await }
    })
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let names = match Names::load(&state, s.org()).await {
        Ok(n) => n,
        Err(e) => return layout::failed(l, "names", e),
    };
    let line = Caller::Coordinator(s.caller.clone()).audit_of(
        "volunteer.export",
        "volunteer",
        &export.volunteer.id,
    );
    if let Err(e) = state.store.audit(&[line]).await {
        return layout::failed(l, "volunteer export audit", e);
    }
    let title = format!(
        "{} – {}",
        l.t("Auskunft nach Art. 15 DSGVO", "Access under Art. 15 GDPR"),
        export.volunteer.display_name
    );
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Volunteers,
            &title,
            volunteer_body(&s, &names, &export),
        ),
    )
}

/// The name of whoever an author id names: a volunteer, else a coordinator.
fn person(l: Lang, names: &Names, author: &str) -> String {
    names
        .volunteers
        .get(author)
        .cloned()
        .unwrap_or_else(|| names.actor(l, "coordinator", author))
}

/// Who wrote an entry, with a warning where the entry names someone else than the one
/// whose device or account wrote it.
fn written_by<T>(l: Lang, names: &Names, w: &Written<T>, claimed: &str) -> Markup {
    html! {
        (person(l, names, &w.written_by))
        @if w.author_mismatch {
            " " (badge("bad", &format!("{} {}", l.t("Eintrag nennt", "entry names"), person(l, names, claimed))))
        } @else if !w.author_verified {
            " " span.muted { "(" (l.t("Angabe im Eintrag", "as the entry says")) ")" }
        }
    }
}

/// Heading, who made the export and when, and the print button.
fn head(s: &Session, title: &str, back: (&str, &str), exported_at: i64, about: &str) -> Markup {
    let l = s.lang;
    html! {
        p.no-print { a href=(back.0) { "← " (back.1) } }
        p.print-only { (s.org_name) }
        h1 { (l.t("Auskunft nach Art. 15 DSGVO", "Access under Art. 15 GDPR")) }
        p.lead { strong { (title) } }
        dl.facts #export-facts {
            dt { (l.t("Stand", "As of")) } dd data-exported-at=(exported_at) { (i18n::datetime(l, exported_at)) }
            dt { (l.t("Organisation", "Organisation")) } dd { (s.org_name) }
            dt { (l.t("Erstellt von", "Made by")) } dd { (s.caller.coordinator.display_name) }
        }
        p { (about) }
        p.no-print {
            button type="button" data-print hidden { (l.t("Drucken oder als PDF speichern", "Print or save as PDF")) }
        }
    }
}

fn case_body(s: &Session, names: &Names, x: &CaseExport) -> Markup {
    let l = s.lang;
    let title = format!("{} {}", l.t("Fall", "Case"), x.label);
    html! {
        (head(s, &title, (&format!("/dashboard/cases/{}", x.id), l.t("Zum Fall", "Back to the case")), x.exported_at.ms(), l.t(
            "Alles, was das Netzwerk zu diesem Fall speichert: die Angaben, Notizen, Termine und Stunden, wie sie nach dem letzten Abgleich der Telefone auf dem Server liegen, die Anfrage, aus der der Fall entstanden ist, und das Protokoll, wer den Fall angelegt, angesehen, synchronisiert, geändert oder exportiert hat.",
            "Everything the network holds about this case: its details, notes, appointments and hours as the server holds them after the phones' last sync, the request it came from, and the trail of who created, viewed, synced, changed or exported it.")))
        section.card aria-labelledby="export-angaben" {
            h2 #export-angaben { (l.t("Angaben", "Details")) }
            dl.facts {
                dt { (l.t("Kürzel", "Label")) } dd { (x.label) }
                dt { (l.t("Kennung", "ID")) } dd { code { (x.id) } }
                dt { (l.t("Thema", "Topic")) } dd { (i18n::topic(l, &x.topic)) }
                dt { (l.t("Status", "Status")) } dd { (i18n::case_status(l, &x.status)) }
                dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &x.languages)) }
                dt { (l.t("Angelegt", "Created")) } dd { (i18n::datetime(l, x.created_at.ms())) }
            }
        }
        section.card aria-labelledby="export-notizen" {
            h2 #export-notizen { (l.t("Notizen", "Notes")) " (" (x.notes.len()) ")" }
            @if x.notes.is_empty() {
                p.muted { (l.t("Keine Notizen.", "No notes.")) }
            }
            @for n in &x.notes {
                article.note data-note=(n.entry.id.as_str()) {
                    p.muted {
                        (written_by(l, names, n, &n.entry.author)) " · " (i18n::datetime(l, n.entry.created_at))
                        @if n.entry.updated_at != n.entry.created_at { " · " (l.t("bearbeitet", "edited")) " " (i18n::datetime(l, n.entry.updated_at)) }
                    }
                    p.text { (n.entry.text) }
                }
            }
        }
        section.card aria-labelledby="export-termine" {
            h2 #export-termine { (l.t("Termine", "Appointments")) " (" (x.appointments.len()) ")" }
            @if x.appointments.is_empty() {
                p.muted { (l.t("Keine Termine.", "No appointments.")) }
            } @else {
                (data_table(l, l.t("Termine", "Appointments"), None,
                    &[l.t("Wann", "When"), l.t("Wo", "Where"), l.t("Wozu", "Purpose"), l.t("Status", "Status")], &[], html! {
                    @for a in &x.appointments {
                        tr {
                            td { (i18n::window(l, a.start, a.end)) }
                            td { (a.place) }
                            td { (a.purpose) }
                            td { (if a.cancelled { l.t("abgesagt", "cancelled") } else { l.t("geplant", "planned") }) }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="export-stunden" {
            h2 #export-stunden { (l.t("Stunden", "Hours")) " (" (x.hours.len()) ")" }
            @if x.hours.is_empty() {
                p.muted { (l.t("Keine Stunden eingetragen.", "No hours logged.")) }
            } @else {
                (data_table(l, l.t("Stunden", "Hours"), None,
                    &[l.t("Tag", "Day"), l.t("Art", "Kind"), l.t("Wer", "Who"), l.t("Zeit", "Time"), l.t("Fahrzeit", "Travel")], &[3, 4], html! {
                    @for h in &x.hours {
                        tr {
                            td { (i18n::iso_date(l, &h.entry.date)) }
                            td { (i18n::hours_kind(l, &h.entry.kind)) }
                            td { (written_by(l, names, h, &h.entry.author)) }
                            td.num { (i18n::minutes(i64::from(h.entry.minutes))) }
                            td.num { (i18n::minutes(i64::from(h.entry.travel_minutes))) }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="export-anfrage" {
            h2 #export-anfrage { (l.t("Anfrage", "Request")) }
            @match &x.request {
                Some(r) => (request_facts(l, names, r)),
                None => p.muted { (l.t("Der Fall ist nicht aus einer Anfrage entstanden.", "The case did not come from a request.")) },
            }
        }
        section.card aria-labelledby="export-protokoll" {
            h2 #export-protokoll { (l.t("Protokoll", "Audit trail")) }
            p.muted { (l.t(
                "Wer den Fall angelegt, angesehen, synchronisiert, geändert oder exportiert hat, neueste zuerst. Das Protokoll enthält keine Inhalte.",
                "Who created, viewed, synced, changed or exported the case, newest first. The trail holds no content.")) }
            @if x.audit.is_empty() {
                p { (l.t("Keine Einträge.", "No entries.")) }
            } @else {
                (data_table(l, l.t("Protokoll", "Audit trail"), Some("audit"),
                    &[l.t("Zeit", "Time"), l.t("Wer", "Who"), l.t("Was", "What")], &[], html! {
                    @for e in &x.audit {
                        tr data-action=(e.action) {
                            td { (i18n::datetime(l, e.at)) }
                            td {
                                @if e.actor_name.is_empty() { (names.actor(l, &e.actor_kind, &e.actor_id)) } @else { (e.actor_name) }
                                " · " (i18n::audit_actor_kind(l, &e.actor_kind))
                            }
                            td { (i18n::audit_action(l, &e.action)) }
                        }
                    }
                }))
            }
        }
    }
}

fn request_facts(l: Lang, names: &Names, r: &Request) -> Markup {
    html! {
        dl.facts {
            dt { (l.t("Eingegangen", "Received")) }
            dd { (i18n::datetime(l, r.created_at.ms())) " (" (if r.source == "intake" { l.t("Anfrageformular", "intake form") } else { l.t("Koordination", "coordinator") }) ")" }
            dt { (l.t("Status", "Status")) } dd { (i18n::request_status(l, &r.status)) }
            dt { (l.t("Termin", "Appointment")) } dd { (i18n::window(l, r.starts_at.ms(), r.ends_at.ms())) }
            dt { (l.t("Thema", "Topic")) } dd { (i18n::topic(l, &r.topic)) }
            dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &r.languages)) }
            dt { (l.t("Einrichtung", "Institution")) } dd { (i18n::institution_kind(l, &r.institution_kind)) ": " (r.institution_name) }
            dt { (l.t("Kontakt", "Contact")) } dd { (r.contact.as_deref().unwrap_or("–")) }
            dt { (l.t("Kürzel der Person", "Label of the person")) } dd { (r.person_label) }
            dt { (l.t("Ort", "Place")) } dd { (r.place_area) @if let Some(a) = &r.place_address { ", " (a) } }
            dt { (l.t("Dringlichkeit", "Urgency")) } dd { (i18n::urgency(l, &r.urgency)) }
            dt { (l.t("Beschreibung", "Description")) } dd { (if r.description.is_empty() { "–" } else { &r.description }) }
            @if let Some(v) = &r.assigned_volunteer_id {
                dt { (l.t("Vergeben an", "Assigned to")) } dd { (names.volunteer(v)) }
            }
        }
    }
}

fn volunteer_body(s: &Session, names: &Names, x: &VolunteerExport) -> Markup {
    let l = s.lang;
    let v = &x.volunteer;
    let when = |t: Option<i64>| {
        t.map(|t| i18n::datetime(l, t))
            .unwrap_or_else(|| "–".into())
    };
    html! {
        (head(s, &v.display_name, (&format!("/dashboard/volunteers/{}", v.id), l.t("Zum Profil", "Back to the profile")), x.exported_at.ms(), l.t(
            "Alles, was das Netzwerk zu dieser Lotsin oder diesem Lotsen speichert: das Profil mit Schulungen, die angemeldeten Geräte, die Stunden, die sie oder er in einem Fall eingetragen hat, die Angebote von Anfragen und das Protokoll über das Profil und über das, was ihre oder seine Geräte getan haben.",
            "Everything the network holds about this volunteer: the profile with trainings, the enrolled devices, the hours they logged in any case, the requests offered to them, and the trail about their profile and of what their devices did.")))
        section.card aria-labelledby="export-profil" {
            h2 #export-profil { (l.t("Profil", "Profile")) }
            dl.facts {
                dt { (l.t("Name", "Name")) } dd { (v.display_name) }
                dt { (l.t("Kennung", "ID")) } dd { code { (v.id) } }
                dt { (l.t("Aktiv", "Active")) } dd { (if v.active { l.t("ja", "yes") } else { l.t("nein", "no") }) }
                dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &v.languages)) }
                dt { (l.t("Themen", "Topics")) } dd { (v.topics.iter().map(|t| i18n::topic(l, t)).collect::<Vec<_>>().join(", ")) }
                dt { (l.t("Verfügbarkeit", "Availability")) }
                dd {
                    @if v.availability.is_empty() { "–" }
                    @else { ul { @for slot in &v.availability { li { (i18n::weekday(l, slot.weekday)) " " (slot.from) "–" (slot.to) } } } }
                }
                dt { (l.t("Verpflichtung unterschrieben", "Pledge signed")) }
                dd { (v.pledge_signed_on.as_deref().map(|d| i18n::iso_date(l, d)).unwrap_or_else(|| "–".into())) }
                dt { (l.t("Schulungen", "Trainings")) }
                dd {
                    @if v.trainings.is_empty() { "–" }
                    @else { ul { @for t in &v.trainings { li { (t.name) " (" (i18n::iso_date(l, &t.completed_on)) ")" } } } }
                }
                dt { (l.t("Angelegt", "Created")) } dd { (i18n::datetime(l, v.created_at.ms())) }
                dt { (l.t("Zuletzt geändert", "Last changed")) } dd { (i18n::datetime(l, v.updated_at.ms())) }
            }
        }
        section.card aria-labelledby="export-geraete" {
            h2 #export-geraete { (l.t("Geräte", "Devices")) " (" (x.devices.len()) ")" }
            @if x.devices.is_empty() {
                p.muted { (l.t("Keine Geräte.", "No devices.")) }
            } @else {
                (data_table(l, l.t("Geräte", "Devices"), None,
                    &[l.t("Name", "Name"), l.t("Angemeldet", "Enrolled"), l.t("Zuletzt gesehen", "Last seen"),
                      l.t("Zuletzt synchronisiert", "Last sync"), l.t("Gesperrt", "Revoked")], &[], html! {
                    @for d in &x.devices {
                        tr {
                            td { (d.name) }
                            td { (i18n::datetime(l, d.created_at.ms())) }
                            td { (when(d.last_seen_at.map(|t| t.ms()))) }
                            td { (when(d.last_sync_at.map(|t| t.ms()))) }
                            td { (when(d.revoked_at.map(|t| t.ms()))) }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="export-stunden" {
            h2 #export-stunden { (l.t("Stunden", "Hours")) " (" (x.hours.len()) ")" }
            @if x.hours.is_empty() {
                p.muted { (l.t("Keine Stunden eingetragen.", "No hours logged.")) }
            } @else {
                (data_table(l, l.t("Stunden", "Hours"), None,
                    &[l.t("Fall", "Case"), l.t("Tag", "Day"), l.t("Art", "Kind"), l.t("Zeit", "Time"), l.t("Fahrzeit", "Travel")], &[3, 4], html! {
                    @for h in &x.hours {
                        tr {
                            td { (h.case_label) }
                            td { (i18n::iso_date(l, &h.hours.date)) }
                            td { (i18n::hours_kind(l, &h.hours.kind)) }
                            td.num { (i18n::minutes(i64::from(h.hours.minutes))) }
                            td.num { (i18n::minutes(i64::from(h.hours.travel_minutes))) }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="export-angebote" {
            h2 #export-angebote { (l.t("Angebote", "Offers")) " (" (x.offers.len()) ")" }
            @if x.offers.is_empty() {
                p.muted { (l.t("Keine Angebote.", "No offers.")) }
            } @else {
                (data_table(l, l.t("Angebote", "Offers"), None,
                    &[l.t("Termin", "Appointment"), l.t("Thema", "Topic"), l.t("Antwort", "Answer")], &[], html! {
                    @for o in &x.offers {
                        tr {
                            td { (i18n::datetime(l, o.starts_at.ms())) }
                            td { (i18n::topic(l, &o.topic)) }
                            td { (i18n::offer_status(l, &o.status)) }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="export-protokoll" {
            h2 #export-protokoll { (l.t("Protokoll", "Audit trail")) }
            p.muted { (l.t(
                "Wer das Profil angelegt, angesehen, geändert oder exportiert hat, und was die Geräte getan haben, neueste zuerst. Das Protokoll enthält keine Inhalte.",
                "Who created, viewed, changed or exported the profile, and what the devices did, newest first. The trail holds no content.")) }
            @if x.audit.is_empty() {
                p { (l.t("Keine Einträge.", "No entries.")) }
            } @else {
                (data_table(l, l.t("Protokoll", "Audit trail"), Some("audit"),
                    &[l.t("Zeit", "Time"), l.t("Wer", "Who"), l.t("Was", "What"), l.t("Betrifft", "About")], &[], html! {
                    @for e in &x.audit {
                        tr data-action=(e.action) {
                            td { (i18n::datetime(l, e.at)) }
                            td { (names.actor(l, &e.actor_kind, &e.actor_id)) }
                            td { (i18n::audit_event(l, &e.action)) }
                            td { (i18n::audit_subject(l, &e.subject_kind)) }
                        }
                    }
                }))
            }
        }
    }
}

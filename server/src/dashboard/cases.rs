//! Fälle: the list from the case index, and a case as the server holds it after sync:
//! notes, appointments, hours, and who changed what when. "Who" comes from the document
//! itself: the automerge actor that created a note or hours entry wrote that entry's
//! `author`, so each actor seen there is named; other actors (a phone that only set a
//! status, the server creating the case) are shown by a short id. A case page also shows
//! the case's audit trail (created, viewed, synced, changed, by whom), and opening it is
//! itself audited.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use lotse_protocol::automerge::{ActorId, Automerge};
use lotse_protocol::schema::{HistoryEntry, generation, history};
use lotse_protocol::{CaseDoc, CaseView, DocumentId};
use maud::{Markup, html};

use super::i18n::{self, Lang, query_param};
use super::layout::{
    self, Nav, badge, csrf, data_table, filter_form, filter_select, found_table, html_response,
    table_wrap,
};
use super::lookat::{self, Concern};
use super::overview::concerns_text;
use super::requests::Names;
use super::session::{Posted, Session};
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::hub::HubError;
use crate::store::{CaseRow, DeletionReason, GenerationReason, ReassignError, SubjectAuditEvent};

const HISTORY_MAX: usize = 100;

pub async fn list(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let status = s
        .here
        .split_once('?')
        .and_then(|(_, q)| query_param(q, "status"))
        .unwrap_or_default();
    let cases = match state.store.cases(s.org()).await {
        Ok(c) => c,
        Err(e) => return layout::failed(l, "cases", e),
    };
    let names = match Names::load(&state, s.org()).await {
        Ok(n) => n,
        Err(e) => return layout::failed(l, "names", e),
    };
    let shown: Vec<&CaseRow> = cases
        .iter()
        .filter(|c| status.is_empty() || c.status == status)
        .collect();
    let title = l.t("Fälle", "Cases");
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Cases,
            title,
            html! {
                h1 { (title) }
                p { a.button href="/dashboard/cases/new" { (l.t("Neuer Fall", "New case")) } }
                @if s.here.contains("deleted=1") {
                    p role="status" { (l.t("Der Fall ist gelöscht. Verbundene Telefone löschen ihn sofort, die anderen bei ihrer nächsten Verbindung.",
                        "The case is deleted. Connected phones delete it at once, the others at their next connection.")) }
                }
                (filter_form(l, "/dashboard/cases", l.t("Fälle filtern", "Filter cases"), html! {
                    (filter_select(l, "status", l.t("Status", "Status"),
                        ["active", "paused", "closed"].map(|st| (st, i18n::case_status(l, st))), &status))
                }))
                (found_table(l, title, l.t("Fälle", "cases"), &[l.t("Fall", "Case"), l.t("Thema", "Topic"), l.t("Sprachen", "Languages"),
                    l.t("Status", "Status"), l.t("Lotsin/Lotse", "Volunteer"), l.t("Letzte Änderung", "Last change"),
                    l.t("Nächster Termin", "Next appointment"), l.t("Notizen", "Notes"), l.t("Stunden", "Hours")], &[7, 8], shown.len(), html! {
                    @for c in &shown {
                        tr {
                            td { a href=(format!("/dashboard/cases/{}", c.id)) { (c.label) } }
                            td { (i18n::topic(l, &c.topic)) }
                            td { (i18n::languages(l, &c.languages)) }
                            td { (badge(&c.status, &i18n::case_status(l, &c.status))) }
                            td { (c.volunteer_ids.iter().map(|v| names.volunteer(v)).collect::<Vec<_>>().join(", ")) }
                            td { (c.last_change_at.map(|t| i18n::datetime(l, t)).unwrap_or_else(|| "–".into())) }
                            td { (c.next_appointment_at.map(|t| i18n::datetime(l, t)).unwrap_or_else(|| "–".into())) }
                            td.num { (c.note_count) }
                            td.num { (i18n::minutes(c.hours_minutes)) }
                        }
                    }
                }))
            },
        ),
    )
}

struct Loaded {
    view: CaseView,
    history: Vec<HistoryEntry>,
    /// Actor -> the author id it wrote into notes and hours (a claim; for actors not
    /// bound to a writer, from before authorship was recorded).
    authors: HashMap<ActorId, String>,
    /// The actor that created each note and hours entry.
    created: history::Creators,
    concerns: Vec<Concern>,
}

fn read(doc: &Automerge) -> Option<Loaded> {
    let view = CaseDoc::read(doc).ok()?;
    Some(Loaded {
        authors: history::authors_by_actor(doc, &view),
        created: history::creators(doc, &view),
        history: history::history(doc),
        concerns: lookat::inspect(doc),
        view,
    })
}

async fn load(
    state: &AppState,
    s: &Session,
    raw: &str,
) -> Result<(DocumentId, Loaded, Option<CaseRow>), Response> {
    let l = s.lang;
    let id = match resolve(state, s, raw).await {
        Ok(Some(id)) => id,
        Ok(None) => return Err(layout::not_found(l)),
        Err(e) => return Err(layout::failed(l, "case lookup", e)),
    };
    match state.store.document(&id).await {
        Ok(Some(d)) if d.organisation_id == s.org() && d.kind == "case" => {}
        Ok(_) => return Err(layout::not_found(l)),
        Err(e) => return Err(layout::failed(l, "case lookup", e)),
    }
    let loaded = match state.hub.read(id, read).await {
        Ok(Some(x)) => x,
        Ok(None) => return Err(layout::not_found(l)),
        Err(e) => return Err(layout::failed(l, "case read", e)),
    };
    let case_id = match state.store.case_of(&id).await {
        Ok(c) => c,
        Err(e) => return Err(layout::failed(l, "case lookup", e)),
    };
    let row = match state.store.cases(s.org()).await {
        Ok(rows) => rows.into_iter().find(|c| c.id == case_id),
        Err(e) => return Err(layout::failed(l, "case index", e)),
    };
    Ok((id, loaded, row))
}

/// `resolve`, or the page that says why not.
async fn found(state: &AppState, s: &Session, raw: &str) -> Result<DocumentId, Response> {
    match resolve(state, s, raw).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(layout::not_found(s.lang)),
        Err(e) => Err(layout::failed(s.lang, "case lookup", e)),
    }
}

/// The reason a removal form names, if the coordinator confirmed it; the purge job's
/// reason is not a coordinator's.
fn confirmed_reason(f: &super::session::Fields) -> Option<DeletionReason> {
    DeletionReason::from_code(&f.get("reason"))
        .filter(|r| *r != DeletionReason::Retention && f.get("confirm") == "yes")
}

/// A removal form's reason, confirmation and button (`prefix` keeps the ids apart).
fn removal_controls(
    l: Lang,
    prefix: &str,
    reasons: &[(DeletionReason, &str)],
    confirm: &str,
    button: &str,
) -> Markup {
    html! {
        label for=(format!("{prefix}-reason")) { (l.t("Grund", "Reason")) }
        select id=(format!("{prefix}-reason")) name="reason" required {
            @for (reason, text) in reasons {
                option value=(reason.code()) { (text) }
            }
        }
        div.check {
            input id=(format!("{prefix}-confirm")) type="checkbox" name="confirm" value="yes" required;
            label for=(format!("{prefix}-confirm")) { (confirm) }
        }
        button.danger type="submit" { (button) }
    }
}

/// The document holding the case a link names: a case keeps its id when it is rewritten
/// (docs/sync.md), and an earlier document id leads to the newest. `None`: not an id.
async fn resolve(
    state: &AppState,
    s: &Session,
    raw: &str,
) -> Result<Option<DocumentId>, crate::store::StoreError> {
    let Ok(asked) = raw.parse::<DocumentId>() else {
        return Ok(None);
    };
    Ok(Some(
        state
            .store
            .current_generation(s.org(), &asked)
            .await?
            .unwrap_or(asked),
    ))
}

/// The case's live part and its label, the coordinator's view written to the audit
/// trail before any of it leaves (`fresh`: a page load, not a refresh of the live part).
async fn viewed(
    state: &AppState,
    s: &Session,
    raw: &str,
    fresh: bool,
) -> Result<(DocumentId, String, Markup, CaseView), Response> {
    let (id, loaded, row) = load(state, s, raw).await?;
    audit_view(state, s, &id, fresh).await?;
    let body = body(state, s, &id, &loaded, row.as_ref()).await?;
    Ok((id, loaded.view.label.clone(), body, loaded.view))
}

pub async fn detail(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Response {
    let (id, label, body, view) = match viewed(&state, &s, &raw, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let l = s.lang;
    let case_id = match state.store.case_of(&id).await {
        Ok(c) => c,
        Err(e) => return layout::failed(l, "case lookup", e),
    };
    let trail = match state.store.case_audit_trail(s.org(), &case_id).await {
        Ok(t) => t,
        Err(e) => return layout::failed(l, "case audit trail", e),
    };
    let team = match team_form(&state, &s, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let title = format!("{}: {}", l.t("Fall", "Case"), label);
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Cases,
            &title,
            html! {
                p {
                    a href="/dashboard/cases" { "← " (l.t("Alle Fälle", "All cases")) }
                    " · "
                    a href=(format!("/dashboard/cases/{id}/export")) { (l.t("Auskunft (Art. 15 DSGVO)", "Access export (Art. 15 GDPR)")) }
                }
                h1 { (title) }
                @if s.here.contains("saved=1") {
                    p.notice role="status" { (l.t(
                        "Gespeichert. Die Telefone des Falls bekommen die Änderung bei ihrer nächsten Verbindung.",
                        "Saved. The case's phones get the change at their next connection.")) }
                }
                @if s.here.contains("erased=1") {
                    p.notice role="status" { (l.t(
                        "Der Eintrag ist gelöscht, auch aus dem Verlauf. Die Telefone übernehmen die neue Fassung bei ihrer nächsten Verbindung.",
                        "The entry is erased, from the history too. Phones take over the new version at their next connection.")) }
                }
                p #live-status.live-status role="status" aria-live="polite" {}
                div #case data-live=(format!("/dashboard/fragments/cases/{id}")) { (body) }
                (team)
                (edit_forms(&s, &id, &view))
                @if s.caller.coordinator.is_leitung() {
                    (erase_form(&s, &id, &view))
                    (delete_form(&s, &id))
                } @else {
                    p.hint { (l.t(
                        "Einträge löschen und Fälle löschen darf nur die Leitung.",
                        "Only Leitung may erase entries and delete cases.")) }
                }
                (audit_trail(l, &trail))
            },
        ),
    )
}

/// Who works on the case: a coordinator takes volunteers off and adds others. Outside
/// the live part of the page, so a refresh never undoes a choice being made.
async fn team_form(state: &AppState, s: &Session, id: &DocumentId) -> Result<Markup, Response> {
    let l = s.lang;
    let failed = |e| layout::failed(l, "case volunteers", e);
    let current = state
        .store
        .case_volunteers(s.org(), id)
        .await
        .map_err(failed)?
        .unwrap_or_default();
    let everyone = state.store.volunteers(s.org()).await.map_err(failed)?;
    let changed = s.here.contains("team=1");
    Ok(html! {
        section.card aria-labelledby="team" {
            h2 #team { (l.t("Wer begleitet", "Who works on the case")) }
            @if changed {
                p role="status" { (l.t("Gespeichert. Wer nicht mehr dabei ist, bekommt den Fall nicht mehr; sein Telefon löscht ihn bei der nächsten Verbindung.",
                    "Saved. Whoever was taken off no longer receives the case; their phone deletes it at its next connection.")) }
            }
            form method="post" action=(format!("/dashboard/cases/{id}/volunteers")) {
                (csrf(s))
                fieldset {
                    legend { (l.t("Lotsinnen und Lotsen dieses Falls", "Volunteers of this case")) }
                    @for v in everyone.iter().filter(|v| v.active || current.contains(&v.id)) {
                        div.check {
                            input type="checkbox" name="volunteer" value=(v.id) id=(format!("team-{}", v.id))
                                checked[current.contains(&v.id)];
                            label for=(format!("team-{}", v.id)) {
                                (v.display_name)
                                @if !v.active { " (" (l.t("ausgeschieden", "left")) ")" }
                            }
                        }
                    }
                }
                button type="submit" { (l.t("Speichern", "Save")) }
            }
        }
    })
}

/// What a coordinator writes into the case (issue 18): a note, an appointment, the
/// status and label. Each is an automerge change by this coordinator that merges with
/// what phones typed offline. Outside the live part, so a refresh never clears a form.
fn edit_forms(s: &Session, id: &DocumentId, view: &CaseView) -> Markup {
    let l = s.lang;
    html! {
        section.card aria-labelledby="schreiben" {
            h2 #schreiben { (l.t("In den Fall schreiben", "Write into the case")) }
            form method="post" action=(format!("/dashboard/cases/{id}/notes")) {
                (csrf(s))
                label for="note-text" { (l.t("Notiz der Koordination", "Coordinator's note")) }
                textarea #note-text name="text" rows="4" maxlength="100000" required {}
                button type="submit" { (l.t("Notiz speichern", "Save note")) }
            }
            form method="post" action=(format!("/dashboard/cases/{id}/appointments")) {
                (csrf(s))
                fieldset {
                    legend { (l.t("Termin hinzufügen", "Add an appointment")) }
                    label for="appt-date" { (l.t("Tag", "Day")) }
                    input #appt-date type="date" name="date" required;
                    label for="appt-from" { (l.t("von", "from")) }
                    input #appt-from type="time" name="from" required;
                    label for="appt-to" { (l.t("bis", "to")) }
                    input #appt-to type="time" name="to" required;
                    label for="appt-place" { (l.t("Ort", "Place")) }
                    input #appt-place type="text" name="place" maxlength="200";
                    label for="appt-purpose" { (l.t("Anlass", "Purpose")) }
                    input #appt-purpose type="text" name="purpose" maxlength="200";
                }
                button type="submit" { (l.t("Termin speichern", "Save appointment")) }
            }
            form method="post" action=(format!("/dashboard/cases/{id}/edit")) {
                (csrf(s))
                label for="case-status" { (l.t("Status", "Status")) }
                select #case-status name="status" {
                    @for st in lotse_protocol::Status::ALL {
                        option value=(st.as_str()) selected[st == view.status] { (i18n::case_status(l, st.as_str())) }
                    }
                }
                label for="case-label" { (l.t("Kürzel", "Label")) }
                input #case-label type="text" name="label" maxlength="40" required value=(view.label);
                button type="submit" { (l.t("Ändern", "Change")) }
            }
        }
    }
}

/// `POST /dashboard/cases/{id}/notes`: a coordinator's note.
pub async fn add_note(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    let note = lotse_protocol::NewNote {
        author: s.caller.id().to_owned(),
        text: f.get("text"),
    };
    if note.text.trim().is_empty() {
        return layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht gespeichert", "Not saved"),
            l.t("Die Notiz ist leer.", "The note is empty."),
        );
    }
    write(&state, &s, &raw, |doc| {
        CaseDoc::add_note(doc, &note, crate::store::now_ms()).map(|_| ())
    })
    .await
}

/// `POST /dashboard/cases/{id}/appointments`: an appointment, in local time.
pub async fn add_appointment(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    let date = f.get("date");
    let (Some(start), Some(end)) = (
        crate::timefmt::local_ms(&date, &f.get("from")),
        crate::timefmt::local_ms(&date, &f.get("to")),
    ) else {
        return layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht gespeichert", "Not saved"),
            l.t(
                "Bitte Tag und Uhrzeiten angeben.",
                "Please give the day and the times.",
            ),
        );
    };
    let new = lotse_protocol::schema::NewAppointment {
        start,
        end,
        place: f.get("place"),
        purpose: f.get("purpose"),
        case_id: None,
    };
    write(&state, &s, &raw, |doc| {
        CaseDoc::add_appointment(doc, &new, crate::store::now_ms()).map(|_| ())
    })
    .await
}

/// `POST /dashboard/cases/{id}/edit`: status and label.
pub async fn change(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let status = f.get("status").parse::<lotse_protocol::Status>();
    let label = f.get("label");
    write(&state, &s, &raw, |doc| {
        let now = crate::store::now_ms();
        CaseDoc::set_status(doc, status?, now)?;
        CaseDoc::set_label(doc, &label, now)
    })
    .await
}

/// Writes `edit` into the case as this coordinator, audits it, and goes back to the page.
async fn write(
    state: &AppState,
    s: &Session,
    raw: &str,
    edit: impl FnOnce(&mut Automerge) -> Result<(), lotse_protocol::SchemaError>,
) -> Response {
    let l = s.lang;
    let id = match found(state, s, raw).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let caller = Caller::Coordinator(s.caller.clone());
    match state
        .hub
        .edit_case(s.org(), &id, &caller.writer(), edit)
        .await
    {
        Ok(Some(())) => {}
        Ok(None) => return layout::not_found(l),
        Err(HubError::Invalid(e)) => {
            return layout::error_page(
                l,
                StatusCode::UNPROCESSABLE_ENTITY,
                l.t("Nicht gespeichert", "Not saved"),
                &e.to_string(),
            );
        }
        Err(e) => return layout::failed(l, "writing into a case", e),
    }
    if let Err(e) = state
        .store
        .audit(&[caller.audit("document.change", &id.to_string())])
        .await
    {
        return layout::failed(l, "audit", e);
    }
    match state.store.case_of(&id).await {
        Ok(case) => Redirect::to(&format!("/dashboard/cases/{case}?saved=1")).into_response(),
        Err(e) => layout::failed(l, "case lookup", e),
    }
}

/// Erasing one entry from the case and its history (docs/sync.md, generations), behind a
/// reason and an explicit confirmation. Outside the live part, so a refresh never resets
/// a choice being made.
fn erase_form(s: &Session, id: &DocumentId, view: &CaseView) -> Markup {
    let l = s.lang;
    let preview = |text: &str| {
        let short: String = text.chars().take(40).collect();
        if short.len() < text.len() {
            format!("{short}…")
        } else {
            short
        }
    };
    let entries: Vec<(String, String)> = view
        .notes
        .iter()
        .map(|n| {
            (
                format!("note:{}", n.id),
                format!(
                    "{} {}: {}",
                    l.t("Notiz", "Note"),
                    i18n::datetime(l, n.created_at),
                    preview(&n.text)
                ),
            )
        })
        .chain(view.appointments.iter().map(|a| {
            (
                format!("appointment:{}", a.id),
                format!(
                    "{} {}",
                    l.t("Termin", "Appointment"),
                    i18n::window(l, a.start, a.end)
                ),
            )
        }))
        .chain(view.hours.iter().map(|h| {
            (
                format!("hours:{}", h.id),
                format!(
                    "{} {}: {}",
                    l.t("Stunden", "Hours"),
                    h.date,
                    i18n::minutes(i64::from(h.minutes))
                ),
            )
        }))
        .collect();
    if entries.is_empty() {
        return html! {};
    }
    html! {
        section.card aria-labelledby="radieren" {
            h2 #radieren { (l.t("Eintrag aus dem Verlauf löschen", "Erase an entry from the history")) }
            p { (l.t(
                "Für einen Eintrag im falschen Fall oder auf Verlangen der Person: Er verschwindet mit allen früheren Fassungen vom Server und von allen Telefonen. Der Fall behält seine Nummer und alles andere; was Telefone offline dazu geschrieben haben, wird übernommen, nur Änderungen an diesem Eintrag nicht.",
                "For an entry in the wrong case, or when the person asks: it leaves the server and every phone with all its earlier versions. The case keeps its number and everything else; what phones wrote offline is carried over, except changes to this entry.")) }
            form method="post" action=(format!("/dashboard/cases/{id}/erase")) {
                (csrf(s))
                label for="erase-entry" { (l.t("Eintrag", "Entry")) }
                select #erase-entry name="entry" required {
                    @for (value, text) in &entries {
                        option value=(value) { (text) }
                    }
                }
                (removal_controls(l, "erase", &[
                    (DeletionReason::Mistake, l.t("Falsch oder im falschen Fall eingetragen (Art. 16 DSGVO)", "Wrong, or written into the wrong case (Art. 16 GDPR)")),
                    (DeletionReason::PersonAsked, l.t("Die Person hat die Löschung verlangt (Art. 17 DSGVO)", "The person asked for erasure (Art. 17 GDPR)")),
                    (DeletionReason::Other, l.t("Anderer Grund", "Other reason")),
                ], l.t("Ich will diesen Eintrag endgültig löschen.", "I want to erase this entry for good."),
                    l.t("Endgültig löschen", "Erase for good")))
            }
        }
    }
}

/// `POST /dashboard/cases/{id}/erase`: erases the chosen entry once confirmed.
pub async fn erase(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    if !s.caller.coordinator.is_leitung() {
        return layout::leitung_only(l);
    }
    let id = match found(&state, &s, &raw).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let entry = f.get("entry");
    let entry = entry.split_once(':').and_then(|(kind, entry_id)| {
        let kind = generation::EntryKind::parse(kind)?;
        (!entry_id.is_empty() && entry_id.len() <= 128)
            .then(|| generation::EntryRef::new(kind, entry_id))
    });
    let (Some(reason), Some(entry)) = (confirmed_reason(&f), entry) else {
        return layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht gelöscht", "Not erased"),
            l.t(
                "Bitte einen Eintrag und einen Grund wählen und das Löschen ausdrücklich bestätigen.",
                "Please choose an entry and a reason and confirm the erasure explicitly.",
            ),
        );
    };
    let caller = Caller::Coordinator(s.caller.clone());
    let erased = state
        .hub
        .rewrite(
            s.org(),
            &id,
            std::slice::from_ref(&entry),
            GenerationReason::Erased(reason),
            |case| caller.audit("document.erase", case),
        )
        .await;
    match erased {
        Ok(Some(r)) => {
            Redirect::to(&format!("/dashboard/cases/{}?erased=1", r.case_id)).into_response()
        }
        Ok(None) | Err(HubError::NoSuchEntry(_)) => layout::not_found(l),
        Err(e) => layout::failed(l, "erasing an entry", e),
    }
}

/// Deleting the case for good, behind a reason and an explicit confirmation.
fn delete_form(s: &Session, id: &DocumentId) -> Markup {
    let l = s.lang;
    let reasons = [
        (
            DeletionReason::PersonAsked,
            l.t(
                "Die begleitete Person hat die Löschung verlangt (Art. 17 DSGVO)",
                "The person helped asked for erasure (Art. 17 GDPR)",
            ),
        ),
        (
            DeletionReason::Mistake,
            l.t("Irrtümlich angelegt", "Created by mistake"),
        ),
        (DeletionReason::Other, l.t("Anderer Grund", "Other reason")),
    ];
    html! {
        section.card aria-labelledby="loeschen" {
            h2 #loeschen { (l.t("Fall löschen", "Delete the case")) }
            p { (l.t(
                "Notizen, Termine und Stunden werden vom Server und von allen Telefonen gelöscht und lassen sich nicht wiederherstellen. Was ein Telefon noch nicht übertragen hat, geht verloren. Die Berichte behalten nur anonyme Zahlen.",
                "Notes, appointments and hours are deleted from the server and from every phone and cannot be restored. What a phone has not synced yet is lost. Reports keep anonymous figures only.")) }
            form method="post" action=(format!("/dashboard/cases/{id}/delete")) {
                (csrf(s))
                (removal_controls(l, "delete", &reasons,
                    l.t("Ich will diesen Fall endgültig löschen.", "I want to delete this case for good."),
                    l.t("Endgültig löschen", "Delete for good")))
            }
        }
    }
}

/// `POST /dashboard/cases/{id}/delete`: deletes the case once confirmed.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    if !s.caller.coordinator.is_leitung() {
        return layout::leitung_only(l);
    }
    let id = match found(&state, &s, &raw).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(reason) = confirmed_reason(&f) else {
        return layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht gelöscht", "Not deleted"),
            l.t(
                "Bitte einen Grund wählen und das Löschen ausdrücklich bestätigen.",
                "Please choose a reason and confirm the deletion explicitly.",
            ),
        );
    };
    match state.store.document(&id).await {
        Ok(Some(d)) if d.organisation_id == s.org() && d.kind == "case" => {}
        Ok(_) => return layout::not_found(l),
        Err(e) => return layout::failed(l, "case lookup", e),
    }
    let audit = Caller::Coordinator(s.caller.clone()).audit("document.delete", &id.to_string());
    match state.hub.delete(s.org(), &id, reason, &audit).await {
        Ok(true) => Redirect::to("/dashboard/cases?deleted=1").into_response(),
        Ok(false) => layout::not_found(l),
        Err(e) => layout::failed(l, "case deletion", e),
    }
}

/// `POST /dashboard/cases/{id}/volunteers`: the checked volunteers become the case's.
pub async fn set_volunteers(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    let id = match found(&state, &s, &raw).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let chosen = f.all("volunteer");
    match state
        .set_case_volunteers(s.org(), s.caller.id(), &id, &chosen)
        .await
    {
        Ok(_) => Redirect::to(&format!("/dashboard/cases/{id}?team=1#team")).into_response(),
        Err(ReassignError::NotFound) => layout::not_found(l),
        Err(ReassignError::NotAVolunteer(_)) => layout::error_page(
            l,
            StatusCode::UNPROCESSABLE_ENTITY,
            l.t("Nicht möglich", "Not possible"),
            l.t(
                "Nur aktive Lotsinnen und Lotsen können einem Fall zugeordnet werden.",
                "Only active volunteers can be added to a case.",
            ),
        ),
        Err(ReassignError::Store(e)) => layout::failed(l, "case volunteers", e),
    }
}

/// Who created, viewed, synced and changed the case (DSGVO), as of loading the page.
fn audit_trail(l: Lang, trail: &[SubjectAuditEvent]) -> Markup {
    html! {
        section.card aria-labelledby="protokoll" {
            h2 #protokoll { (l.t("Protokoll", "Audit trail")) }
            p.muted {
                (l.t(
                    "Wer den Fall angelegt, angesehen, synchronisiert oder geändert hat (neueste zuerst, höchstens 200 Einträge). Inhalte stehen nicht im Protokoll.",
                    "Who created, viewed, synced or changed the case (newest first, at most 200 entries). Content is never logged.",
                ))
            }
            @if trail.is_empty() {
                p { (l.t("Noch keine Einträge.", "No entries yet.")) }
            } @else {
                (data_table(l, l.t("Protokoll", "Audit trail"), Some("audit"),
                    &[l.t("Zeit", "Time"), l.t("Wer", "Who"), l.t("Was", "What")], &[], html! {
                    @for e in trail {
                        tr data-action=(e.action) {
                            td { (i18n::datetime(l, e.at)) }
                            td {
                                @if e.actor_name.is_empty() { (l.t("(gelöscht)", "(deleted)")) } @else { (e.actor_name) }
                                @if e.actor_kind == "coordinator" { " · " (l.t("Koordination", "coordinator")) }
                            }
                            td { (i18n::audit_action(l, &e.action)) }
                        }
                    }
                }))
            }
        }
    }
}

/// No view of a case without its audit line, written before the content leaves. The
/// live refreshes of an open page count as the same view for a while (see
/// `Dash::view_needs_audit`).
async fn audit_view(
    state: &AppState,
    s: &Session,
    id: &DocumentId,
    fresh: bool,
) -> Result<(), Response> {
    let case = id.to_string();
    if !s.dash.view_needs_audit(s.caller.id(), &case, fresh) {
        return Ok(());
    }
    let viewed = Caller::Coordinator(s.caller.clone()).audit("document.read", &case);
    state
        .store
        .audit(&[viewed])
        .await
        .map_err(|e| layout::failed(s.lang, "case audit", e))?;
    s.dash.view_audited(s.caller.id(), &case);
    Ok(())
}

pub async fn fragment(
    State(state): State<AppState>,
    s: Session,
    Path(raw): Path<String>,
) -> Response {
    match viewed(&state, &s, &raw, false).await {
        Ok((_, _, body, _)) => body.into_string().into_response(),
        Err(r) => r,
    }
}

async fn body(
    state: &AppState,
    s: &Session,
    id: &DocumentId,
    c: &Loaded,
    row: Option<&CaseRow>,
) -> Result<Markup, Response> {
    let l = s.lang;
    let names = Names::load(state, s.org())
        .await
        .map_err(|e| layout::failed(l, "names", e))?;
    let person = |author: &str| -> String {
        names
            .volunteers
            .get(author)
            .cloned()
            .unwrap_or_else(|| names.actor(l, "coordinator", author))
    };
    let by = state
        .store
        .attribute(s.org(), id, &c.created, &c.view)
        .await
        .map_err(|e| layout::failed(l, "authorship", e))?;
    // Who wrote a change: the device or coordinator its actor is bound to; for actors
    // from before authorship was recorded, what their entries claim.
    let who = |actor: &ActorId| -> String {
        match (by.writers.get(actor), c.authors.get(actor)) {
            (Some(writer), _) => person(writer.author_id()),
            (None, Some(author)) => person(author),
            (None, None) => {
                let hex = actor.to_hex_string();
                format!("{} {}", l.t("Kennung", "ID"), &hex[..hex.len().min(8)])
            }
        }
    };
    // The author shown, and a warning where the entry names someone else.
    let written_by = |a: &crate::store::Attribution| -> Markup {
        html! {
            (person(a.author()))
            @if a.mismatch() {
                " " (badge("bad", &format!("{} {}", l.t("Eintrag nennt", "entry names"), person(&a.claimed))))
            }
        }
    };
    let v = &c.view;
    let total: u64 = v.hours.iter().map(|h| u64::from(h.minutes)).sum();
    let travel: u64 = v.hours.iter().map(|h| u64::from(h.travel_minutes)).sum();
    let requests = state
        .store
        .requests(s.org(), None)
        .await
        .map_err(|e| layout::failed(l, "requests", e))?;
    let doc_id = row.map(|r| r.id.as_str()).unwrap_or_default();
    let request = requests
        .iter()
        .find(|r| !doc_id.is_empty() && r.case_document_id.as_deref() == Some(doc_id));
    let volunteers: Vec<String> = row
        .map(|r| {
            r.volunteer_ids
                .iter()
                .map(|id| names.volunteer(id))
                .collect()
        })
        .unwrap_or_default();
    Ok(html! {
        @if !c.concerns.is_empty() {
            div.alert role="note" {
                p { strong { (l.t("Bitte anschauen: ", "Please look at this: ")) } (concerns_text(l, &c.concerns)) }
            }
        }
        section.card aria-labelledby="fall-angaben" {
            h2 #fall-angaben { (l.t("Angaben", "Details")) }
            dl.facts {
                dt { (l.t("Status", "Status")) } dd data-status=(v.status.as_str()) { (badge(v.status.as_str(), &i18n::case_status(l, v.status.as_str()))) }
                dt { (l.t("Art", "Kind")) } dd #case-kind { (super::new_case::kind_name(l, v.kind.as_deref().unwrap_or("einzelbegleitung"))) }
                dt { (l.t("Thema", "Topic")) } dd { (i18n::topic(l, v.topic.as_str())) }
                dt { (l.t("Sprachen", "Languages")) } dd { (i18n::languages(l, &v.languages)) }
                dt { (l.t("Lotsin/Lotse", "Volunteer")) } dd { (if volunteers.is_empty() { "–".to_owned() } else { volunteers.join(", ") }) }
                @if let Some(r) = request {
                    dt { (l.t("Anfrage", "Request")) }
                    dd { a href=(format!("/dashboard/requests/{}", r.id)) { (r.institution_name) ", " (i18n::window(l, r.starts_at.ms(), r.ends_at.ms())) } }
                }
                dt { (l.t("Angelegt", "Created")) } dd { (i18n::datetime(l, v.created_at)) }
                dt { (l.t("Letzte Änderung", "Last change")) } dd { (row.and_then(|r| r.last_change_at).map(|t| i18n::datetime(l, t)).unwrap_or_else(|| "–".into())) }
            }
        }
        section.card aria-labelledby="notizen" {
            h2 #notizen { (l.t("Notizen", "Notes")) " (" (v.notes.len()) ")" }
            @if v.notes.is_empty() {
                p.muted { (l.t("Noch keine Notizen.", "No notes yet.")) }
            }
            @for n in &v.notes {
                article.note data-note=(n.id.as_str()) {
                    p.muted {
                        (written_by(&by.note(n.id.as_str(), &n.author))) " · " (i18n::datetime(l, n.created_at))
                        @if n.updated_at != n.created_at { " · " (l.t("bearbeitet", "edited")) " " (i18n::datetime(l, n.updated_at)) }
                    }
                    p.text { (n.text) }
                }
            }
        }
        section.card aria-labelledby="termine" {
            h2 #termine { (l.t("Termine", "Appointments")) " (" (v.appointments.len()) ")" }
            @if v.appointments.is_empty() {
                p.muted { (l.t("Keine Termine.", "No appointments.")) }
            } @else {
                (data_table(l, l.t("Termine", "Appointments"), None,
                    &[l.t("Wann", "When"), l.t("Wo", "Where"), l.t("Wozu", "Purpose"), l.t("Status", "Status")], &[], html! {
                    @for a in &v.appointments {
                        tr {
                            td { (i18n::window(l, a.start, a.end)) }
                            td { (a.place) }
                            td { (a.purpose) }
                            td { @if a.cancelled { (badge("cancelled", l.t("abgesagt", "cancelled"))) } @else { (l.t("geplant", "planned")) } }
                        }
                    }
                }))
            }
        }
        section.card aria-labelledby="stunden" {
            h2 #stunden { (l.t("Stunden", "Hours")) }
            @if v.hours.is_empty() {
                p.muted { (l.t("Noch keine Stunden eingetragen.", "No hours logged yet.")) }
            } @else {
                (table_wrap(l, l.t("Stunden", "Hours"), html! {
                    table {
                        thead { tr {
                            th scope="col" { (l.t("Tag", "Day")) }
                            th scope="col" { (l.t("Art", "Kind")) }
                            th scope="col" { (l.t("Wer", "Who")) }
                            th scope="col" class="num" { (l.t("Zeit", "Time")) }
                            th scope="col" class="num" { (l.t("Fahrzeit", "Travel")) }
                        } }
                        tbody {
                            @for h in &v.hours {
                                tr {
                                    td { (i18n::iso_date(l, &h.date)) }
                                    td { (i18n::hours_kind(l, &h.kind)) }
                                    td { (written_by(&by.hours(h.id.as_str(), &h.author))) }
                                    td.num { (i18n::minutes(i64::from(h.minutes))) }
                                    td.num { (i18n::minutes(i64::from(h.travel_minutes))) }
                                }
                            }
                        }
                        tfoot { tr {
                            th scope="row" colspan="3" { (l.t("Summe", "Total")) }
                            td.num { (i18n::minutes(total as i64)) }
                            td.num { (i18n::minutes(travel as i64)) }
                        } }
                    }
                }))
            }
        }
        section.card aria-labelledby="aenderungen" {
            h2 #aenderungen { (l.t("Wer hat was wann geändert", "Who changed what when")) }
            p.muted { (l.t(
                "Aus dem Verlauf des Falls, wie er auf dem Server liegt; Zeiten nach der Uhr des Geräts. Personen sind genannt, sobald sie auf dem Gerät eine Notiz oder Stunden geschrieben haben, sonst steht die Kennung des Geräts.",
                "From the case's history as the server holds it; times by the device's clock. People are named once they wrote a note or hours on that device; otherwise the device's ID is shown.")) }
            (data_table(l, l.t("Änderungen", "Changes"), None,
                &[l.t("Wann", "When"), l.t("Was", "What"), l.t("Wer", "Who")], &[], html! {
                @for ch in c.history.iter().rev().take(HISTORY_MAX) {
                    tr {
                        td { (if ch.at > 0 { i18n::datetime(l, ch.at) } else { "–".into() }) }
                        td { (i18n::change_kind(l, ch.kind)) }
                        td { (who(&ch.actor)) }
                    }
                }
            }))
            @if c.history.len() > HISTORY_MAX {
                p.muted { (match l {
                    Lang::De => format!("Die letzten {HISTORY_MAX} von {} Änderungen.", c.history.len()),
                    Lang::En => format!("The last {HISTORY_MAX} of {} changes.", c.history.len()),
                }) }
            }
        }
    })
}

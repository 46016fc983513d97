//! Überblick: requests by state (open, offered, assigned, overdue), active cases with
//! their last change and next appointment, volunteers whose phones have not synced for
//! more than N days (default 7, `?days=`), and cases to look at (`lookat`). The body is
//! also served as a fragment that the live stream refreshes.
//!
//! "Not synced": a volunteer with phones (not revoked) none of which synced in the last
//! N days, not counting phones enrolled within them.
//!
//! "Overdue": a request nobody has yet (open or offered) whose appointment starts within
//! the next 48 hours or has started.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::i18n::{self, Lang, query_param};
use super::layout::{self, Nav, badge, data_table, html_response, table_wrap};
use super::lookat::{self, Concern};
use super::session::Session;
use crate::app::AppState;
use crate::store::{CaseRow, Request, now_ms};

pub const OVERDUE_WITHIN_MS: i64 = 48 * 3_600_000;
const LIST_MAX: usize = 10;

pub fn is_overdue(r: &Request, now: i64) -> bool {
    matches!(r.status.as_str(), "open" | "offered") && r.starts_at.ms() < now + OVERDUE_WITHIN_MS
}

fn days_param(s: &Session) -> i64 {
    s.here
        .split_once('?')
        .and_then(|(_, q)| query_param(q, "days"))
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| (1..=365).contains(d))
        .unwrap_or(7)
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let days = days_param(&s);
    let body = match body(&state, &s, days).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let l = s.lang;
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Overview,
            l.t("Überblick", "Overview"),
            html! {
                h1 { (l.t("Überblick", "Overview")) }
                p #live-status.live-status role="status" aria-live="polite" {}
                div #overview data-live=(format!("/dashboard/fragments/overview?days={days}")) { (body) }
                (super::notify::card(l))
                script src="/dashboard/static/notify.js" defer {}
            },
        ),
    )
}

pub async fn fragment(State(state): State<AppState>, s: Session) -> Response {
    let days = days_param(&s);
    match body(&state, &s, days).await {
        Ok(b) => b.into_string().into_response(),
        Err(r) => r,
    }
}

fn request_table(
    l: Lang,
    caption: &str,
    rows: &[&Request],
    names: &HashMap<String, String>,
    with_volunteer: bool,
) -> Markup {
    table_wrap(
        l,
        caption,
        html! {
            table {
                thead {
                    tr {
                        th scope="col" { (l.t("Termin", "Appointment")) }
                        th scope="col" { (l.t("Thema", "Topic")) }
                        th scope="col" { (l.t("Sprachen", "Languages")) }
                        th scope="col" { (l.t("Stadtteil", "District")) }
                        @if with_volunteer { th scope="col" { (l.t("Lotsin/Lotse", "Volunteer")) } }
                        @else { th scope="col" { (l.t("Status", "Status")) } }
                    }
                }
                tbody {
                    @for r in rows {
                        tr {
                            td { a href=(format!("/dashboard/requests/{}", r.id)) { (i18n::window(l, r.starts_at.ms(), r.ends_at.ms())) } }
                            td { (i18n::topic(l, &r.topic)) }
                            td { (i18n::languages(l, &r.languages)) }
                            td { (r.place_area) }
                            @if with_volunteer {
                                td { (r.assigned_volunteer_id.as_ref().and_then(|v| names.get(v)).map(String::as_str).unwrap_or("–")) }
                            } @else {
                                td {
                                    (badge(&r.status, &i18n::request_status(l, &r.status)))
                                    @if r.urgency == "dringend" { " " (badge("dringend", &i18n::urgency(l, "dringend"))) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn request_section(
    l: Lang,
    id: &str,
    title: &str,
    all: &[&Request],
    link: &str,
    names: &HashMap<String, String>,
    with_volunteer: bool,
) -> Markup {
    html! {
        section.card aria-labelledby=(id) {
            h2 #(id) { (title) " (" (all.len()) ")" }
            @if all.is_empty() {
                p.muted { (l.t("Keine.", "None.")) }
            } @else {
                (request_table(l, title, &all[..all.len().min(LIST_MAX)], names, with_volunteer))
                @if all.len() > LIST_MAX {
                    p { a href=(link) { (l.t("Alle anzeigen", "Show all")) } }
                }
            }
        }
    }
}

async fn body(state: &AppState, s: &Session, days: i64) -> Result<Markup, Response> {
    let l = s.lang;
    let org = s.org();
    let now = now_ms();
    let requests = state
        .store
        .requests(org, None)
        .await
        .map_err(|e| layout::failed(l, "overview requests", e))?;
    let cases = state
        .store
        .cases(org)
        .await
        .map_err(|e| layout::failed(l, "overview cases", e))?;
    let volunteers = state
        .store
        .volunteers(org)
        .await
        .map_err(|e| layout::failed(l, "overview volunteers", e))?;
    let syncs = state
        .store
        .volunteer_sync(org)
        .await
        .map_err(|e| layout::failed(l, "overview devices", e))?;
    let look = lookat::cases_to_look_at(state, &s.dash, org).await;
    let names: HashMap<String, String> = volunteers
        .iter()
        .map(|v| (v.id.clone(), v.display_name.clone()))
        .collect();

    let by = |st: &str| -> Vec<&Request> { requests.iter().filter(|r| r.status == st).collect() };
    let open = by("open");
    let offered = by("offered");
    let mut assigned = by("assigned");
    assigned.sort_by_key(|r| std::cmp::Reverse(r.starts_at));
    let overdue: Vec<&Request> = requests.iter().filter(|r| is_overdue(r, now)).collect();
    let active: Vec<&CaseRow> = cases.iter().filter(|c| c.status == "active").collect();

    let cutoff = now - days * 86_400_000;
    let sync_of: HashMap<&str, &crate::store::VolunteerSync> =
        syncs.iter().map(|v| (v.volunteer_id.as_str(), v)).collect();
    let stale: Vec<(&crate::store::Volunteer, Option<i64>, i64)> = volunteers
        .iter()
        .filter(|v| v.active)
        .filter_map(|v| {
            let sync = sync_of.get(v.id.as_str())?;
            // A phone enrolled a moment ago has had no time to sync yet.
            let heard_of = sync.last_sync_at.max(sync.newest_enrolled_at);
            (sync.active_devices > 0 && heard_of.is_none_or(|t| t < cutoff)).then_some((
                v,
                sync.last_sync_at,
                sync.active_devices,
            ))
        })
        .collect();
    let case_by_id: HashMap<&str, &CaseRow> = cases.iter().map(|c| (c.id.as_str(), c)).collect();

    let counts = [
        (
            "open",
            l.t("Offen", "Open"),
            open.len(),
            "/dashboard/requests?status=open",
            false,
        ),
        (
            "offered",
            l.t("Angeboten", "Offered"),
            offered.len(),
            "/dashboard/requests?status=offered",
            false,
        ),
        (
            "assigned",
            l.t("Vergeben", "Assigned"),
            assigned.len(),
            "/dashboard/requests?status=assigned",
            false,
        ),
        (
            "overdue",
            l.t("Überfällig", "Overdue"),
            overdue.len(),
            "/dashboard/requests?overdue=1",
            !overdue.is_empty(),
        ),
    ];
    Ok(html! {
        h2.sr-only { (l.t("Anfragen in Zahlen", "Requests in numbers")) }
        ul.counts {
            @for (kind, label, n, href, warn) in counts {
                li.warn[warn] data-count=(kind) {
                    a href=(href) { span.n { (n) } (label) }
                }
            }
        }
        p.muted { (l.t(
            "Überfällig: noch niemand hat zugesagt, und der Termin beginnt in weniger als 48 Stunden.",
            "Overdue: nobody has accepted yet and the appointment starts in less than 48 hours.")) }
        div.grid.wide {
            (request_section(l, "ueberfaellig", l.t("Überfällige Anfragen", "Overdue requests"), &overdue, "/dashboard/requests?overdue=1", &names, false))
            (request_section(l, "offen", l.t("Offene Anfragen", "Open requests"), &open, "/dashboard/requests?status=open", &names, false))
            (request_section(l, "angeboten", l.t("Angebotene Anfragen", "Offered requests"), &offered, "/dashboard/requests?status=offered", &names, false))
            (request_section(l, "vergeben", l.t("Vergebene Anfragen", "Assigned requests"), &assigned, "/dashboard/requests?status=assigned", &names, true))
        }
        section.card aria-labelledby="aktive-faelle" {
            h2 #aktive-faelle { (l.t("Aktive Fälle", "Active cases")) " (" (active.len()) ")" }
            @if active.is_empty() {
                p.muted { (l.t("Keine aktiven Fälle.", "No active cases.")) }
            } @else {
                (data_table(l, l.t("Aktive Fälle", "Active cases"), None,
                    &[l.t("Fall", "Case"), l.t("Thema", "Topic"), l.t("Lotsin/Lotse", "Volunteer"),
                        l.t("Letzte Änderung", "Last change"), l.t("Nächster Termin", "Next appointment"), l.t("Notizen", "Notes")], &[5], html! {
                    @for c in active.iter().take(25) {
                        tr data-case=(c.id) {
                            td { a href=(format!("/dashboard/cases/{}", c.id)) { (c.label) } }
                            td { (i18n::topic(l, &c.topic)) }
                            td { (c.volunteer_ids.iter().filter_map(|v| names.get(v)).cloned().collect::<Vec<_>>().join(", ")) }
                            td { (c.last_change_at.map(|t| i18n::datetime(l, t)).unwrap_or_else(|| "–".into())) }
                            td { (c.next_appointment_at.map(|t| i18n::datetime(l, t)).unwrap_or_else(|| "–".into())) }
                            td.num { (c.note_count) }
                        }
                    }
                }))
                @if active.len() > 25 { p { a href="/dashboard/cases?status=active" { (l.t("Alle aktiven Fälle", "All active cases")) } } }
            }
        }
        div.grid {
            section.card aria-labelledby="ohne-sync" {
                h2 #ohne-sync {
                    (match l {
                        Lang::De => format!("Seit mehr als {days} Tagen nicht synchronisiert"),
                        Lang::En => format!("Not synced for more than {days} days"),
                    })
                    " (" (stale.len()) ")"
                }
                @if stale.is_empty() {
                    p.muted { (l.t("Alle Geräte haben sich gemeldet.", "Every device has synced.")) }
                } @else {
                    ul {
                        @for (v, last, n) in &stale {
                            li data-volunteer=(v.id) {
                                a href=(format!("/dashboard/volunteers/{}", v.id)) { (v.display_name) }
                                ": "
                                @match last {
                                    Some(t) => { (l.t("zuletzt", "last")) " " (i18n::datetime(l, *t)) " (" (i18n::ago_days(l, now, *t)) ")" }
                                    None => { (l.t("noch nie synchronisiert", "never synced")) }
                                }
                                @if *n > 1 { " · " (n) " " (l.t("Geräte", "devices")) }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="anschauen" {
                h2 #anschauen { (l.t("Fälle zum Anschauen", "Cases to look at")) " (" (look.len()) ")" }
                @if look.is_empty() {
                    p.muted { (l.t("Nichts Auffälliges.", "Nothing unusual.")) }
                } @else {
                    ul {
                        @for item in &look {
                            li data-lookat=(item.id) {
                                a href=(format!("/dashboard/cases/{}", item.id)) {
                                    (case_by_id.get(item.id.as_str()).map(|c| c.label.as_str()).unwrap_or("?"))
                                }
                                ": "
                                (concerns_text(l, &item.concerns))
                            }
                        }
                    }
                }
            }
        }
        p.muted { (l.t("Stand", "As of")) ": " (i18n::datetime(l, now)) }
    })
}

pub fn concerns_text(l: Lang, concerns: &[Concern]) -> String {
    concerns
        .iter()
        .map(|c| match (c, l) {
            (Concern::WrittenAfterClose { count, at }, Lang::De) => format!(
                "{count} Notiz(en) oder Stunden nach dem Abschließen eingetragen oder ohne davon zu wissen (zuletzt {})",
                i18n::datetime(l, *at)
            ),
            (Concern::WrittenAfterClose { count, at }, Lang::En) => format!(
                "{count} note(s) or hours written after the case was closed or without knowing it (last {})",
                i18n::datetime(l, *at)
            ),
            (Concern::StatusConflict { values }, _) => {
                let vs: Vec<String> = values.iter().map(|v| i18n::case_status(l, v)).collect();
                match l {
                    Lang::De => format!("gleichzeitig verschiedener Status gesetzt: {}", vs.join(" / ")),
                    Lang::En => format!("different statuses set at the same time: {}", vs.join(" / ")),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

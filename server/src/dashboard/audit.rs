//! Protokoll: the organisation's whole audit trail for its coordinators, filtered by who
//! (a coordinator, a volunteer through any of their devices, or any actor's id), what
//! (the action, the kind of record, one record), and when (local days, Europe/Berlin);
//! newest first, 100 lines a page, the next page from where the last one ended. Records
//! that still exist are linked to their pages. `/dashboard/audit.csv` gives every
//! matching line (at most `AUDIT_SEARCH_MAX`, the newest) for a spreadsheet.
//!
//! Reading the trail is itself in the trail: `audit.read` for the page, `audit.export` for
//! the CSV, about the organisation, written before any line leaves.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use lotse_protocol::DocumentId;
use maud::{Markup, html};

use super::csv::{self, Csv};
use super::i18n::{self, Lang, query_param};
use super::layout::{self, Nav, data_table, filter_form, html_response};
use super::session::Session;
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::store::{
    AUDIT_SEARCH_MAX, AuditActor, AuditCursor, AuditFilter, OrgAuditEvent, StoreError,
};

/// Lines on one page.
pub const PAGE: usize = 100;

/// The filter as the form holds it, to show it again and to carry it to the next page
/// and the CSV.
#[derive(Debug, Default)]
struct Form {
    who: String,
    actor: String,
    action: String,
    subject_kind: String,
    subject_id: String,
    from: String,
    to: String,
    before: String,
    /// Fields that could not be read (and were left out of the filter).
    unreadable: Vec<&'static str>,
}

impl Form {
    fn parse(query: &str) -> Self {
        let get = |k| {
            query_param(query, k)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            who: get("who"),
            actor: get("actor"),
            action: get("action"),
            subject_kind: get("subject_kind"),
            subject_id: get("subject_id"),
            from: get("from"),
            to: get("to"),
            before: get("before"),
            unreadable: Vec::new(),
        }
    }

    /// The query of this filter, without the page (`before`).
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("who", &self.who),
            ("actor", &self.actor),
            ("action", &self.action),
            ("subject_kind", &self.subject_kind),
            ("subject_id", &self.subject_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    fn cursor(&mut self) -> Option<AuditCursor> {
        if self.before.is_empty() {
            return None;
        }
        let cursor = self.before.split_once('.').and_then(|(at, id)| {
            Some(AuditCursor {
                at: at.parse().ok()?,
                id: id.to_owned(),
            })
        });
        if cursor.is_none() {
            self.unreadable.push("before");
        }
        cursor
    }

    /// The store's filter. A subject that is a case's document stands for the case: its
    /// lines over all the documents it has been held in.
    async fn filter(&mut self, state: &AppState, org: &str) -> Result<AuditFilter, StoreError> {
        let actor = match self.who.split_once(':') {
            Some(("coordinator", id)) if !id.is_empty() => {
                Some(AuditActor::Coordinator(id.to_owned()))
            }
            Some(("volunteer", id)) if !id.is_empty() => Some(AuditActor::Volunteer(id.to_owned())),
            _ if self.who.is_empty() => None,
            _ => {
                self.unreadable.push("who");
                None
            }
        };
        let day = |text: &str| (!text.is_empty()).then(|| text.parse::<Date>().ok());
        let from = match day(&self.from) {
            Some(Some(d)) => day_start(d),
            Some(None) => {
                self.unreadable.push("from");
                None
            }
            None => None,
        };
        let until = match day(&self.to) {
            Some(Some(d)) => d.tomorrow().ok().and_then(day_start),
            Some(None) => {
                self.unreadable.push("to");
                None
            }
            None => None,
        };
        let mut subject_ids = Vec::new();
        if !self.subject_id.is_empty() {
            subject_ids.push(self.subject_id.clone());
            let document = matches!(self.subject_kind.as_str(), "" | "document");
            if let (true, Ok(id)) = (document, self.subject_id.parse::<DocumentId>()) {
                let case = state.store.case_of(&id).await?;
                subject_ids.extend(state.store.generations_of(org, &case).await?);
                subject_ids.sort();
                subject_ids.dedup();
            }
        }
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        Ok(AuditFilter {
            actor,
            actor_id: some(&self.actor),
            action: some(&self.action),
            subject_kind: some(&self.subject_kind),
            subject_ids,
            from,
            until,
        })
    }
}

/// Where a local day (Europe/Berlin) begins, in milliseconds.
fn day_start(d: Date) -> Option<i64> {
    Some(d.to_zoned(i18n::tz()).ok()?.timestamp().as_millisecond())
}

/// A moment to the second in local time: the trail is read for order and exact times.
fn moment(l: Lang, ms: i64) -> String {
    i18n::zoned(ms)
        .map(|z| match l {
            Lang::De => z.strftime("%d.%m.%Y, %H:%M:%S").to_string(),
            Lang::En => z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        })
        .unwrap_or_default()
}

fn query_of(s: &Session) -> &str {
    s.here.split_once('?').map(|(_, q)| q).unwrap_or_default()
}

/// The line that says this coordinator read the trail; nothing is shown without it.
async fn audit_reading(
    state: &AppState,
    s: &Session,
    action: &'static str,
) -> Result<(), Response> {
    let line = Caller::Coordinator(s.caller.clone()).audit_of(action, "organisation", s.org());
    state
        .store
        .audit(&[line])
        .await
        .map_err(|e| layout::failed(s.lang, "audit trail audit", e))
}

/// The filter of the request, the reading's own line written, and the lines found.
async fn search(
    state: &AppState,
    s: &Session,
    action: &'static str,
    paged: bool,
) -> Result<(Form, Vec<OrgAuditEvent>), Response> {
    let l = s.lang;
    let mut form = Form::parse(query_of(s));
    let filter = form
        .filter(state, s.org())
        .await
        .map_err(|e| layout::failed(l, "audit filter", e))?;
    let (cursor, limit) = if paged {
        (form.cursor(), PAGE as i64 + 1)
    } else {
        (None, AUDIT_SEARCH_MAX)
    };
    audit_reading(state, s, action).await?;
    let lines = state
        .store
        .audit_search(s.org(), &filter, cursor.as_ref(), limit)
        .await
        .map_err(|e| layout::failed(l, "audit search", e))?;
    Ok((form, lines))
}

/// Names and pages of what the lines are about, looked up once per page.
struct Subjects {
    /// Case id -> label.
    cases: HashMap<String, String>,
    /// Document id of a line -> the case id it belongs to now, `None`: gone or no case.
    documents: HashMap<String, Option<String>>,
    /// Requests that still exist: id -> its words.
    requests: HashMap<String, String>,
    volunteers: HashMap<String, String>,
    /// Device id -> (name, volunteer id).
    devices: HashMap<String, (String, String)>,
    coordinators: HashMap<String, String>,
}

impl Subjects {
    async fn load(
        state: &AppState,
        l: Lang,
        org: &str,
        lines: &[OrgAuditEvent],
    ) -> Result<Self, StoreError> {
        let store = &state.store;
        let cases: HashMap<String, String> = store
            .cases(org)
            .await?
            .into_iter()
            .map(|c| (c.id, c.label))
            .collect();
        let volunteers = store
            .volunteers(org)
            .await?
            .into_iter()
            .map(|v| (v.id, v.display_name))
            .collect();
        let devices = store
            .device_names(org)
            .await?
            .into_iter()
            .map(|(id, name, v)| (id, (name, v)))
            .collect();
        let coordinators = store.coordinator_names(org).await?.into_iter().collect();
        let mut documents = HashMap::new();
        let mut requests = HashMap::new();
        let mut asked: HashSet<(&str, &str)> = HashSet::new();
        for e in lines {
            let (kind, id) = match e.subject_kind.as_str() {
                "case_volunteer" => (
                    "document",
                    e.subject_id.split_once(':').map_or("", |(d, _)| d),
                ),
                kind => (kind, e.subject_id.as_str()),
            };
            if !asked.insert((kind, id)) {
                continue;
            }
            match kind {
                "document" if cases.contains_key(id) => {
                    documents.insert(id.to_owned(), Some(id.to_owned()));
                }
                "document" => {
                    let case = match id.parse::<DocumentId>() {
                        Ok(doc) => match store.current_generation(org, &doc).await? {
                            Some(now) => {
                                Some(store.case_of(&now).await?).filter(|c| cases.contains_key(c))
                            }
                            None => None,
                        },
                        Err(_) => None,
                    };
                    documents.insert(id.to_owned(), case);
                }
                "request" => {
                    if let Some(r) = store.request(org, id).await? {
                        let words = format!(
                            "{} {}, {}",
                            l.t("Anfrage", "Request"),
                            i18n::topic(l, &r.topic),
                            i18n::date(l, r.starts_at.ms())
                        );
                        requests.insert(r.id, words);
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            cases,
            documents,
            requests,
            volunteers,
            devices,
            coordinators,
        })
    }

    fn case(&self, l: Lang, document: &str) -> Markup {
        match self.documents.get(document).cloned().flatten() {
            Some(case) => html! {
                a href=(format!("/dashboard/cases/{case}")) {
                    (l.t("Fall", "Case")) " " (self.cases.get(&case).map(String::as_str).unwrap_or_default())
                }
            },
            None => html! {
                (i18n::audit_subject(l, "document")) " " (short(document)) " "
                span.muted { "(" (l.t("nicht mehr vorhanden", "no longer there")) ")" }
            },
        }
    }

    fn volunteer(&self, l: Lang, id: &str) -> Markup {
        match self.volunteers.get(id) {
            Some(name) => html! { a href=(format!("/dashboard/volunteers/{id}")) { (name) } },
            None => gone(l, "volunteer", id),
        }
    }

    /// What a line is about, linked to its page where it still exists.
    fn show(&self, l: Lang, s: &Session, e: &OrgAuditEvent) -> Markup {
        let id = e.subject_id.as_str();
        match e.subject_kind.as_str() {
            "document" => self.case(l, id),
            "request" => match self.requests.get(id) {
                Some(words) => html! { a href=(format!("/dashboard/requests/{id}")) { (words) } },
                None => gone(l, "request", id),
            },
            "volunteer" => html! {
                (i18n::audit_subject(l, "volunteer")) " " (self.volunteer(l, id))
            },
            "device" => match self.devices.get(id) {
                Some((name, volunteer)) => html! {
                    a href=(format!("/dashboard/devices/{id}")) { (l.t("Gerät", "Device")) " „" (name) "“" }
                    " (" (self.volunteer(l, volunteer)) ")"
                },
                None => gone(l, "device", id),
            },
            "case_volunteer" => match id.split_once(':') {
                Some((case, volunteer)) => html! {
                    (self.case(l, case)) " · " (self.volunteer(l, volunteer))
                },
                None => gone(l, "case_volunteer", id),
            },
            "coordinator" => match self.coordinators.get(id) {
                Some(name) => html! { (i18n::audit_subject(l, "coordinator")) " " (name) },
                None => gone(l, "coordinator", id),
            },
            "organisation" if id == s.org() => html! {
                (i18n::audit_subject(l, "organisation")) " " (s.org_name)
            },
            "report" => html! {
                (i18n::audit_subject(l, "report")) " " span.muted { (id) }
            },
            kind => html! { (i18n::audit_subject(l, kind)) " " span.muted { (short(id)) } },
        }
    }
}

fn gone(l: Lang, kind: &str, id: &str) -> Markup {
    html! {
        (i18n::audit_subject(l, kind)) " " (short(id)) " "
        span.muted { "(" (l.t("nicht mehr vorhanden", "no longer there")) ")" }
    }
}

/// The start of an id, enough to tell lines apart on screen (the CSV has it whole).
fn short(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    if head.len() < id.len() {
        format!("{head}…")
    } else {
        head
    }
}

/// Who wrote a line, in words: a coordinator's name, a volunteer's with the device's.
fn actor_words(l: Lang, e: &OrgAuditEvent) -> String {
    match (e.actor_kind.as_str(), e.actor_id.as_str()) {
        ("system", "retention") => l
            .t("System (Löschfristen)", "System (retention periods)")
            .into(),
        ("system", "cli") => l
            .t("System (Kommandozeile)", "System (command line)")
            .into(),
        ("system", other) => format!("{} ({other})", l.t("System", "System")),
        (kind, id) if e.actor_name.is_empty() => format!(
            "{} {} ({})",
            i18n::audit_actor_kind(l, kind),
            short(id),
            l.t("gelöscht", "deleted")
        ),
        _ => e.actor_name.clone(),
    }
}

fn actor(l: Lang, e: &OrgAuditEvent) -> Markup {
    let words = actor_words(l, e);
    html! {
        @match (&e.actor_volunteer_id, e.actor_kind.as_str()) {
            (Some(v), "device") => {
                a href=(format!("/dashboard/volunteers/{v}")) { (words) }
                " · " (i18n::audit_actor_kind(l, "device"))
            }
            (_, "coordinator") => { (words) " · " (i18n::audit_actor_kind(l, "coordinator")) }
            _ => { (words) }
        }
    }
}

fn filters(l: Lang, form: &Form, people: &People) -> Markup {
    let unknown_action =
        !form.action.is_empty() && !i18n::AUDIT_ACTIONS.contains(&form.action.as_str());
    let unknown_kind = !form.subject_kind.is_empty()
        && !i18n::AUDIT_SUBJECTS.contains(&form.subject_kind.as_str());
    filter_form(
        l,
        "/dashboard/audit",
        l.t("Protokoll filtern", "Filter the audit trail"),
        html! {
            div.field {
                label for="f-who" { (l.t("Wer", "Who")) }
                select #f-who name="who" {
                    option value="" { (l.t("alle", "all")) }
                    optgroup label=(l.t("Koordination", "Coordinators")) {
                        @for (id, name) in &people.coordinators {
                            @let value = format!("coordinator:{id}");
                            option value=(value) selected[form.who == value] { (name) }
                        }
                    }
                    optgroup label=(l.t("Lotsinnen und Lotsen (ihre Geräte)", "Volunteers (their devices)")) {
                        @for (id, name) in &people.volunteers {
                            @let value = format!("volunteer:{id}");
                            option value=(value) selected[form.who == value] { (name) }
                        }
                    }
                }
            }
            div.field {
                label for="f-actor" { (l.t("oder Kennung (Gerät, Konto)", "or ID (device, account)")) }
                input #f-actor type="text" name="actor" value=(form.actor) autocomplete="off";
            }
            div.field {
                label for="f-action" { (l.t("Was", "What")) }
                select #f-action name="action" {
                    option value="" { (l.t("alles", "everything")) }
                    @for code in i18n::AUDIT_ACTIONS {
                        option value=(code) selected[form.action == code] { (i18n::audit_event(l, code)) }
                    }
                    @if unknown_action {
                        option value=(form.action) selected { (form.action) }
                    }
                }
            }
            div.field {
                label for="f-subject-kind" { (l.t("Betrifft", "About")) }
                select #f-subject-kind name="subject_kind" {
                    option value="" { (l.t("alles", "everything")) }
                    @for kind in i18n::AUDIT_SUBJECTS {
                        option value=(kind) selected[form.subject_kind == kind] { (i18n::audit_subject(l, kind)) }
                    }
                    @if unknown_kind {
                        option value=(form.subject_kind) selected { (form.subject_kind) }
                    }
                }
            }
            div.field {
                label for="f-subject-id" { (l.t("Kennung des Datensatzes", "ID of the record")) }
                input #f-subject-id type="text" name="subject_id" value=(form.subject_id) autocomplete="off";
            }
            div.field {
                label for="f-from" { (l.t("Von (Tag)", "From (day)")) }
                input #f-from type="date" name="from" value=(form.from);
            }
            div.field {
                label for="f-to" { (l.t("Bis (Tag)", "To (day)")) }
                input #f-to type="date" name="to" value=(form.to);
            }
        },
    )
}

/// The choices of "who": the organisation's coordinators and volunteers by name.
struct People {
    coordinators: Vec<(String, String)>,
    volunteers: Vec<(String, String)>,
}

impl People {
    fn of(subjects: &Subjects) -> Self {
        let sorted = |m: &HashMap<String, String>| {
            let mut v: Vec<(String, String)> =
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| {
                a.1.to_lowercase()
                    .cmp(&b.1.to_lowercase())
                    .then(a.0.cmp(&b.0))
            });
            v
        };
        Self {
            coordinators: sorted(&subjects.coordinators),
            volunteers: sorted(&subjects.volunteers),
        }
    }
}

/// `GET /dashboard/audit`
pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let (form, mut lines) = match search(&state, &s, "audit.read", true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let older = (lines.len() > PAGE).then(|| {
        lines.truncate(PAGE);
        lines.last().map(OrgAuditEvent::cursor)
    });
    let subjects = match Subjects::load(&state, l, s.org(), &lines).await {
        Ok(x) => x,
        Err(e) => return layout::failed(l, "audit subjects", e),
    };
    let people = People::of(&subjects);
    let query = form.query();
    let with = |extra: Option<String>| {
        let mut q = query.clone();
        if let Some(extra) = extra {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(&extra);
        }
        if q.is_empty() {
            "/dashboard/audit".to_owned()
        } else {
            format!("/dashboard/audit?{q}")
        }
    };
    let older_href = older
        .flatten()
        .map(|c| with(Some(format!("before={}.{}", c.at, encode(&c.id)))));
    let csv_href = if query.is_empty() {
        "/dashboard/audit.csv".to_owned()
    } else {
        format!("/dashboard/audit.csv?{query}")
    };
    let title = l.t("Protokoll", "Audit trail");
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Audit,
            title,
            html! {
                h1 { (title) }
                p { (l.t(
                    "Wer wann was mit welchen Daten getan hat: angesehen, synchronisiert, geändert, exportiert, gelöscht. Das Protokoll enthält keine Inhalte. Auch dass Sie es lesen, wird protokolliert.",
                    "Who did what to which data, and when: viewed, synced, changed, exported, deleted. The trail holds no content. That you read it is recorded too.")) }
                @if !form.unreadable.is_empty() {
                    div.alert role="alert" { p { (l.t(
                        "Ein Teil des Filters war nicht lesbar und wurde nicht angewandt (Tage bitte wie 04.03.2026).",
                        "Part of the filter could not be read and was not applied (days such as 2026-03-04, please).")) } }
                }
                (filters(l, &form, &people))
                p.actions {
                    a.button.secondary href=(csv_href) download { (l.t("Als CSV herunterladen (Excel)", "Download as CSV (Excel)")) }
                    @if !query.is_empty() || !form.before.is_empty() {
                        a href="/dashboard/audit" { (l.t("Filter zurücksetzen", "Clear the filter")) }
                    }
                }
                p.muted { (match l {
                    Lang::De => format!("Neueste zuerst, {PAGE} Einträge je Seite. Der Download enthält alle passenden Einträge, höchstens die neuesten {}.", thousands(l, AUDIT_SEARCH_MAX)),
                    Lang::En => format!("Newest first, {PAGE} entries a page. The download holds every matching entry, at most the newest {}.", thousands(l, AUDIT_SEARCH_MAX)),
                }) }
                @if !form.before.is_empty() {
                    p { a href=(with(None)) { "← " (l.t("Zu den neuesten Einträgen", "To the newest entries")) } }
                }
                @if lines.is_empty() {
                    p role="status" { (l.t("Keine passenden Einträge.", "No matching entries.")) }
                } @else {
                    p role="status" { (lines.len()) " " (l.t("Einträge auf dieser Seite", "entries on this page")) }
                    (data_table(l, title, Some("audit"),
                        &[l.t("Zeit", "Time"), l.t("Wer", "Who"), l.t("Was", "What"), l.t("Betrifft", "About")], &[], html! {
                        @for e in &lines {
                            tr data-id=(e.id) data-at=(e.at) data-action=(e.action) data-actor=(e.actor_id)
                                data-subject-kind=(e.subject_kind) data-subject=(e.subject_id) {
                                td { time datetime=(crate::timefmt::format_ms(e.at)) { (moment(l, e.at)) } }
                                td { (actor(l, e)) }
                                td { (i18n::audit_event(l, &e.action)) }
                                td { (subjects.show(l, &s, e)) }
                            }
                        }
                    }))
                }
                @if let Some(href) = &older_href {
                    p { a.button.secondary href=(href) rel="next" { (l.t("Ältere Einträge", "Older entries")) " →" } }
                }
            },
        ),
    )
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn thousands(l: Lang, n: i64) -> String {
    let digits = n.to_string();
    let mark = match l {
        Lang::De => '.',
        Lang::En => ',',
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(mark);
        }
        out.push(c);
    }
    out
}

/// The lines as CSV: UTF-8 with a byte order mark so Excel reads umlauts; German uses
/// `;` (as German Excel expects), English `,`.
fn to_csv(l: Lang, lines: &[OrgAuditEvent]) -> String {
    let mut csv = Csv::new(l);
    csv.line([
        l.t("Zeit", "Time"),
        l.t("Zeitpunkt (UTC)", "Moment (UTC)"),
        l.t("Wer", "Who"),
        l.t("Art", "Kind"),
        l.t("Kennung", "ID"),
        l.t("Was", "What"),
        l.t("Aktion", "Action"),
        l.t("Betrifft", "About"),
        l.t("Kennung des Datensatzes", "ID of the record"),
        l.t("Eintrag", "Entry"),
    ]);
    for e in lines {
        csv.line([
            &moment(l, e.at),
            &crate::timefmt::format_ms(e.at),
            &actor_words(l, e),
            &i18n::audit_actor_kind(l, &e.actor_kind),
            &e.actor_id,
            &i18n::audit_event(l, &e.action),
            &e.action,
            &i18n::audit_subject(l, &e.subject_kind),
            &e.subject_id,
            &e.id,
        ]);
    }
    csv.finish()
}

/// `GET /dashboard/audit.csv`: every line the filter lets through (no pages).
pub async fn csv(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let (_, lines) = match search(&state, &s, "audit.export", false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = format!(
        "{}_{}.csv",
        l.t("lotse-protokoll", "lotse-audit-trail"),
        i18n::zoned(crate::store::now_ms())
            .map(|z| z.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default()
    );
    csv::download(to_csv(l, &lines), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_begin_at_local_midnight() {
        // Midnight in Berlin is 23:00 UTC the day before in winter, 22:00 in summer.
        let winter = day_start("2026-01-16".parse().unwrap_or_default());
        assert_eq!(winter, Some(1_768_518_000_000));
        let summer = day_start("2026-07-16".parse().unwrap_or_default());
        assert_eq!(summer, Some(1_784_152_800_000));
    }

    #[test]
    fn a_cursor_survives_its_link() {
        let mut form = Form::parse("before=1768518000000.0b1c-x&action=document.read");
        let c = form.cursor();
        assert_eq!(
            c,
            Some(AuditCursor {
                at: 1_768_518_000_000,
                id: "0b1c-x".into()
            })
        );
        assert_eq!(form.query(), "action=document.read");
        assert_eq!(thousands(Lang::De, 100_000), "100.000");
    }
}

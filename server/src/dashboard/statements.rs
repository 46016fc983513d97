//! Monthly statements (issue 18): one volunteer's hours and travel of a month by case, as
//! a page that prints on A4 with signature lines and as CSV, and every volunteer's totals
//! of a month for the bookkeeping (`crate::statements`). Reading a statement is audited
//! (`statement.read`, `statement.export` for the CSV) before any of it leaves.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::csv::{self, Csv};
use super::i18n::{self, Lang, query_param};
use super::layout::{self, Nav, data_table, html_response};
use super::session::Session;
use crate::app::AppState;
use crate::app::caller::Caller;
use crate::statements::{self, Statement, Total, valid_month};

/// `?month=YYYY-MM`, else the month before this one (what is usually paid out).
fn month_of(s: &Session) -> Option<String> {
    let asked = s
        .here
        .split_once('?')
        .and_then(|(_, q)| query_param(q, "month"));
    match asked {
        Some(m) => valid_month(&m).then_some(m),
        None => {
            let now = i18n::zoned(crate::store::now_ms())?;
            let first = now.date().first_of_month();
            let last = first.yesterday().ok()?;
            Some(format!("{:04}-{:02}", last.year(), last.month()))
        }
    }
}

fn month_label(l: Lang, month: &str) -> String {
    let m = month[5..].parse::<i8>().unwrap_or(1);
    format!("{} {}", i18n::month_name(l, m), &month[..4])
}

fn bad_month(l: Lang) -> Response {
    layout::error_page(
        l,
        StatusCode::UNPROCESSABLE_ENTITY,
        l.t("Unbekannter Monat", "Unknown month"),
        l.t(
            "Bitte einen Monat als JJJJ-MM angeben.",
            "Please give a month as YYYY-MM.",
        ),
    )
}

/// Reads what the page or download shows, after writing its audit line.
async fn audited<T>(
    state: &AppState,
    s: &Session,
    action: &'static str,
    subject: (&'static str, &str),
    read: impl AsyncFnOnce() -> crate::app::error::Result<T>,
) -> Result<T, Response> {
    let l = s.lang;
    let line = Caller::Coordinator(s.caller.clone()).audit_of(action, subject.0, subject.1);
    if let Err(e) = state.store.audit(&[line]).await {
        return Err(layout::failed(l, "statement audit", e));
    }
    read().await.map_err(|e| layout::failed(l, "statement", e))
}

/// `GET /dashboard/statements?month=`: every volunteer's totals of the month.
pub async fn totals(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let Some(month) = month_of(&s) else {
        return bad_month(l);
    };
    let org = s.org().to_owned();
    let rows = match audited(
        &state,
        &s,
        "statement.read",
        ("organisation", &org),
        async || statements::totals(&state, &org, &month).await,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let title = format!(
        "{}: {}",
        l.t("Abrechnung", "Statements"),
        month_label(l, &month)
    );
    html_response(
        StatusCode::OK,
        layout::page(&s, Nav::Reports, &title, totals_body(l, &month, &rows)),
    )
}

fn totals_body(l: Lang, month: &str, rows: &[Total]) -> Markup {
    html! {
        h1 { (l.t("Abrechnung", "Statements")) ": " (month_label(l, month)) }
        form.no-print method="get" action="/dashboard/statements" {
            label for="month" { (l.t("Monat", "Month")) }
            input #month type="month" name="month" value=(month) required;
            button type="submit" { (l.t("Anzeigen", "Show")) }
        }
        p.no-print { a href=(format!("/dashboard/statements.csv?month={month}")) { (l.t("Als CSV herunterladen", "Download as CSV")) } }
        (data_table(
            l,
            l.t("Summen je Lotsin und Lotse", "Totals per volunteer"),
            Some("totals"),
            &[l.t("Lotsin / Lotse", "Volunteer"), l.t("Einträge", "Entries"), l.t("Zeit", "Time"), l.t("Fahrzeit", "Travel")],
            &[1, 2, 3],
            html! {
                @for r in rows {
                    tr {
                        td { a href=(format!("/dashboard/volunteers/{}/statement?month={month}", r.volunteer_id)) { (r.name) } }
                        td.num { (r.entries) }
                        td.num { (i18n::minutes(r.minutes as i64)) }
                        td.num { (i18n::minutes(r.travel_minutes as i64)) }
                    }
                }
            },
        ))
    }
}

/// `GET /dashboard/statements.csv?month=`
pub async fn totals_csv(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let Some(month) = month_of(&s) else {
        return bad_month(l);
    };
    let org = s.org().to_owned();
    let rows = match audited(
        &state,
        &s,
        "statement.export",
        ("organisation", &org),
        async || statements::totals(&state, &org, &month).await,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut out = Csv::new(l);
    out.line([
        l.t("Monat", "Month"),
        l.t("Kennung", "ID"),
        l.t("Name", "Name"),
        l.t("Einträge", "Entries"),
        l.t("Minuten", "Minutes"),
        l.t("Fahrzeit (Minuten)", "Travel (minutes)"),
    ]);
    for r in &rows {
        out.line([
            month.clone(),
            r.volunteer_id.clone(),
            r.name.clone(),
            r.entries.to_string(),
            r.minutes.to_string(),
            r.travel_minutes.to_string(),
        ]);
    }
    csv::download(
        out.finish(),
        &format!(
            "{}_{month}.csv",
            l.t("lotse-abrechnung", "lotse-statements")
        ),
    )
}

async fn one(
    state: &AppState,
    s: &Session,
    id: &str,
    action: &'static str,
) -> Result<Statement, Response> {
    let l = s.lang;
    let Some(month) = month_of(s) else {
        return Err(bad_month(l));
    };
    // A volunteer of another organisation is as missing as one that never was: asked
    // before the audit line, which names only what exists here.
    match state.store.volunteer(s.org(), id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(layout::not_found(l)),
        Err(e) => return Err(layout::failed(l, "volunteer", e)),
    }
    let org = s.org().to_owned();
    audited(state, s, action, ("volunteer", id), async || {
        statements::statement(state, &org, id, &month).await
    })
    .await?
    .ok_or_else(|| layout::not_found(l))
}

/// `GET /dashboard/volunteers/{id}/statement?month=`: prints on A4, without the
/// navigation, with signature lines.
pub async fn statement(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    let l = s.lang;
    let st = match one(&state, &s, &id, "statement.read").await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let title = format!(
        "{} {}: {}",
        l.t("Stundennachweis", "Statement of hours"),
        month_label(l, &st.month),
        st.volunteer.display_name
    );
    html_response(
        StatusCode::OK,
        layout::page(&s, Nav::Volunteers, &title, statement_body(l, &title, &st)),
    )
}

fn statement_body(l: Lang, title: &str, st: &Statement) -> Markup {
    html! {
        p.no-print {
            a href=(format!("/dashboard/statements?month={}", st.month)) { "← " (l.t("Alle für diesen Monat", "Everyone this month")) }
            " · "
            a href=(format!("/dashboard/volunteers/{}/statement.csv?month={}", st.volunteer.id, st.month)) { (l.t("Als CSV", "As CSV")) }
            " · "
            button type="button" data-print="" hidden { (l.t("Drucken", "Print")) }
        }
        h1 { (title) }
        p { (l.t("Nachweis der ehrenamtlichen Einsatzzeiten und Fahrzeiten für die Aufwandsentschädigung.",
                 "Record of volunteer time and travel time for the expense allowance.")) }
        (data_table(
            l,
            l.t("Einträge des Monats", "Entries of the month"),
            Some("lines"),
            &[l.t("Tag", "Day"), l.t("Fall", "Case"), l.t("Art", "Kind"), l.t("Zeit", "Time"), l.t("Fahrzeit", "Travel")],
            &[3, 4],
            html! {
                @for line in &st.lines {
                    tr {
                        td { (line.date) }
                        td { (line.case_label) }
                        td { (i18n::hours_kind(l, &line.kind)) }
                        td.num { (i18n::minutes(i64::from(line.minutes))) }
                        td.num { (i18n::minutes(i64::from(line.travel_minutes))) }
                    }
                }
                @if st.deleted_cases_minutes > 0 || st.deleted_cases_travel_minutes > 0 {
                    tr {
                        td colspan="3" { (l.t("Gelöschte Fälle (nur Summen)", "Deleted cases (totals only)")) }
                        td.num { (i18n::minutes(st.deleted_cases_minutes as i64)) }
                        td.num { (i18n::minutes(st.deleted_cases_travel_minutes as i64)) }
                    }
                }
                tr.total {
                    th colspan="3" scope="row" { (l.t("Summe", "Total")) }
                    td.num { strong { (i18n::minutes(st.minutes as i64)) } }
                    td.num { strong { (i18n::minutes(st.travel_minutes as i64)) } }
                }
            },
        ))
        @if st.lines.is_empty() && st.minutes == 0 {
            p { (l.t("In diesem Monat sind keine Stunden eingetragen.", "No hours were logged this month.")) }
        }
        div.signatures {
            p { "______________________________" br; (l.t("Ort, Datum, Unterschrift Lotsin / Lotse", "Place, date, signature of the volunteer")) }
            p { "______________________________" br; (l.t("Ort, Datum, Unterschrift Koordination", "Place, date, signature of the coordinator")) }
        }
    }
}

/// `GET /dashboard/volunteers/{id}/statement.csv?month=`
pub async fn statement_csv(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    let l = s.lang;
    let st = match one(&state, &s, &id, "statement.export").await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let mut out = Csv::new(l);
    out.line([
        l.t("Tag", "Day"),
        l.t("Fall", "Case"),
        l.t("Art", "Kind"),
        l.t("Minuten", "Minutes"),
        l.t("Fahrzeit (Minuten)", "Travel (minutes)"),
    ]);
    for line in &st.lines {
        out.line([
            line.date.clone(),
            line.case_label.clone(),
            i18n::hours_kind(l, &line.kind),
            line.minutes.to_string(),
            line.travel_minutes.to_string(),
        ]);
    }
    if st.deleted_cases_minutes > 0 || st.deleted_cases_travel_minutes > 0 {
        out.line([
            String::new(),
            l.t(
                "Gelöschte Fälle (nur Summen)",
                "Deleted cases (totals only)",
            )
            .to_owned(),
            String::new(),
            st.deleted_cases_minutes.to_string(),
            st.deleted_cases_travel_minutes.to_string(),
        ]);
    }
    out.line([
        String::new(),
        l.t("Summe", "Total").to_owned(),
        String::new(),
        st.minutes.to_string(),
        st.travel_minutes.to_string(),
    ]);
    csv::download(
        out.finish(),
        &format!("{}_{}.csv", l.t("stundennachweis", "statement"), st.month),
    )
}

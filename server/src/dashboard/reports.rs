//! Berichte: requests, cases and hours by topic, language and month for a chosen period
//! of whole months (local time), as tables, SVG charts drawn here, and CSV.
//!
//! What is counted:
//! - **Anfragen**: requests whose appointment starts in the period; **vermittelt**: those
//!   of them that are assigned or done.
//! - **Neue Fälle**: cases created in the period (the case document's `createdAt`).
//! - **Stunden / Fahrzeit**: hours entries of any case whose day lies in the period, as
//!   the server holds the case documents after sync.
//! - A request or case with several languages counts once for each of its languages, so
//!   the language rows add up to more than the total.
//! - Deleted cases (by a coordinator, or the purge after the retention period) count by
//!   the figures kept when they were deleted (start month, topic, languages, hours per
//!   month), so a past year's report does not change when its cases are deleted.
//!
//! **Small cells**: any number below 5 (counts, and hours below 5) is shown as `<5`, in
//! the page, in the charts (a dashed placeholder bar of fixed size, never the true
//! length) and in the CSV, so that no small group of people can be singled out. Zero is
//! shown as `<5` too, so a single cell does not tell it from one. Totals are suppressed
//! the same way.
//!
//! **Secondary suppression**: the topic and the month rows add up to the total, so a
//! single `<5` in a column could be worked out as the total minus the other rows. Where a
//! column of those breakdowns has exactly one `<5` under a published total, its smallest
//! published cell is withheld too and shown as `*`, so the small number can no longer be
//! computed. What this does not give: a reader who knows that `*` means "5 or more" can
//! still narrow the small cell's range (with 6 and 2 under a total of 8, the `<5` is at
//! most 3), and where every hidden cell is 0 that can be deduced; only suppressing the
//! total would prevent it. The language rows do not add up to the total (a request counts
//! for each of its languages) and get no secondary suppression. Page, charts and CSV are
//! all drawn from the one [`Published`] report, so they never disagree.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use lotse_protocol::{CaseDoc, DocumentId};
use maud::html;

use super::i18n::{self, Lang, query_param};
use super::layout::{self, Nav, html_response, raw, table_wrap};
use super::session::Session;
use crate::app::AppState;
use crate::store::now_ms;

/// Cells below this are shown as "<5".
pub const MIN_CELL: u64 = 5;
const MAX_MONTHS: i32 = 60;

/// One published number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Value(u64),
    /// Below 5: `<5`.
    Small,
    /// Not small, but with the total it would give a small one away: `*`.
    Withheld,
}

/// The five columns of every row: requests, placed, new cases, minutes, travel minutes.
pub type Row = [Shown; 5];

/// Hours are published in hours; below 5 hours is small.
const SMALL_BELOW: [u64; 5] = [MIN_CELL, MIN_CELL, MIN_CELL, MIN_CELL * 60, MIN_CELL * 60];
const HOURS_FROM: usize = 3;

fn numbers(c: &Cells) -> [u64; 5] {
    [c.requests, c.placed, c.cases, c.minutes, c.travel]
}

fn primary(c: &Cells) -> Row {
    let v = numbers(c);
    std::array::from_fn(|k| {
        if v[k] < SMALL_BELOW[k] {
            Shown::Small
        } else {
            Shown::Value(v[k])
        }
    })
}

/// Withholds, per column, the smallest published cell of a breakdown that adds up to a
/// published total and has exactly one small cell.
fn protect(rows: &mut [Row], raw_rows: &[[u64; 5]], total: &Row) {
    for k in 0..5 {
        if !matches!(total[k], Shown::Value(_)) {
            continue;
        }
        let hidden = rows
            .iter()
            .filter(|r| !matches!(r[k], Shown::Value(_)))
            .count();
        if hidden != 1 {
            continue;
        }
        let smallest = (0..rows.len())
            .filter(|&i| matches!(rows[i][k], Shown::Value(_)))
            .min_by_key(|&i| raw_rows[i][k]);
        if let Some(i) = smallest {
            rows[i][k] = Shown::Withheld;
        }
    }
}

/// The report as it may be shown: what the page, the charts and the CSV are drawn from.
#[derive(Debug, Clone)]
pub struct Published {
    pub total: Row,
    /// Topic codes in display order.
    pub by_topic: Vec<(String, Row)>,
    pub by_language: Vec<(String, Row)>,
    pub by_month: Vec<(Month, Row)>,
}

impl Published {
    pub fn of(report: &Report) -> Published {
        let total = primary(&report.total);
        let topics: Vec<(String, Cells)> = i18n::TOPICS
            .iter()
            .map(|t| {
                (
                    (*t).to_owned(),
                    report.by_topic.get(*t).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let months: Vec<(Month, Cells)> = report
            .by_month
            .iter()
            .map(|(m, c)| (*m, c.clone()))
            .collect();
        Published {
            by_topic: protected(&topics, &total),
            by_month: protected(&months, &total),
            by_language: report
                .by_language
                .iter()
                .map(|(k, c)| (k.clone(), primary(c)))
                .collect(),
            total,
        }
    }
}

fn protected<K: Clone>(rows: &[(K, Cells)], total: &Row) -> Vec<(K, Row)> {
    let raw_rows: Vec<[u64; 5]> = rows.iter().map(|(_, c)| numbers(c)).collect();
    let mut shown: Vec<Row> = rows.iter().map(|(_, c)| primary(c)).collect();
    protect(&mut shown, &raw_rows, total);
    rows.iter().map(|(k, _)| k.clone()).zip(shown).collect()
}

/// One published number as text.
fn text(l: Lang, k: usize, s: Shown) -> String {
    match s {
        Shown::Small => "<5".into(),
        Shown::Withheld => "*".into(),
        Shown::Value(v) if k >= HOURS_FROM => l.decimal(v as f64 / 60.0),
        Shown::Value(v) => v.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.trim().split_once('-')?;
        let (year, month) = (y.parse::<i16>().ok()?, m.parse::<i8>().ok()?);
        ((1970..=9998).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    fn of_ms(ms: i64) -> Option<Month> {
        let z = i18n::zoned(ms)?;
        Some(Month {
            year: z.year(),
            month: z.month(),
        })
    }

    /// From a `YYYY-MM-DD` day.
    fn of_day(day: &str) -> Option<Month> {
        Month::parse(day.get(..7)?)
    }

    fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    fn index(self) -> i32 {
        i32::from(self.year) * 12 + i32::from(self.month) - 1
    }

    fn start_ms(self) -> i64 {
        Date::new(self.year, self.month, 1)
            .ok()
            .and_then(|d| d.to_zoned(i18n::tz()).ok())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0)
    }

    pub fn code(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    fn label(self, l: Lang) -> String {
        format!("{} {}", i18n::month_name(l, self.month), self.year)
    }

    fn short(self, l: Lang) -> String {
        let name = i18n::month_name(l, self.month);
        format!(
            "{} {:02}",
            name.chars().take(3).collect::<String>(),
            self.year % 100
        )
    }
}

/// Whole months, `from` to `to` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Month,
    pub to: Month,
}

impl Period {
    /// From `?from=YYYY-MM&to=YYYY-MM`; by default this year up to this month.
    pub fn from_query(query: &str, now: i64) -> Period {
        let this = Month::of_ms(now).unwrap_or(Month {
            year: 2026,
            month: 1,
        });
        let to = query_param(query, "to")
            .and_then(|s| Month::parse(&s))
            .unwrap_or(this);
        let from = query_param(query, "from")
            .and_then(|s| Month::parse(&s))
            .unwrap_or(Month {
                year: to.year,
                month: 1,
            });
        let (mut from, to) = if from <= to { (from, to) } else { (to, from) };
        while to.index() - from.index() >= MAX_MONTHS {
            from = from.next();
        }
        Period { from, to }
    }

    pub fn months(self) -> Vec<Month> {
        let mut out = vec![self.from];
        while let Some(m) = out.last().copied().filter(|m| *m < self.to) {
            out.push(m.next());
        }
        out
    }

    fn start_ms(self) -> i64 {
        self.from.start_ms()
    }

    fn end_ms(self) -> i64 {
        self.to.next().start_ms()
    }

    fn contains(self, m: Month) -> bool {
        self.from <= m && m <= self.to
    }

    fn query(self) -> String {
        format!("from={}&to={}", self.from.code(), self.to.code())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cells {
    pub requests: u64,
    pub placed: u64,
    pub cases: u64,
    pub minutes: u64,
    pub travel: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub total: Cells,
    pub by_topic: BTreeMap<String, Cells>,
    pub by_language: BTreeMap<String, Cells>,
    pub by_month: BTreeMap<Month, Cells>,
}

impl Report {
    fn cells(
        &mut self,
        topic: &str,
        languages: &[String],
        month: Option<Month>,
        f: impl Fn(&mut Cells),
    ) {
        f(&mut self.total);
        f(self.by_topic.entry(topic.to_owned()).or_default());
        let mut seen: Vec<&String> = Vec::new();
        for lang in languages {
            if !seen.contains(&lang) {
                seen.push(lang);
                f(self.by_language.entry(lang.clone()).or_default());
            }
        }
        if let Some(m) = month {
            f(self.by_month.entry(m).or_default());
        }
    }
}

/// Counts the organisation's requests and cases for the period.
pub async fn compute(
    state: &AppState,
    organisation_id: &str,
    period: Period,
) -> Result<Report, String> {
    let mut report = Report::default();
    for t in i18n::TOPICS {
        report.by_topic.insert(t.to_owned(), Cells::default());
    }
    for m in period.months() {
        report.by_month.insert(m, Cells::default());
    }
    let requests = state
        .store
        .report_requests(organisation_id, period.start_ms(), period.end_ms())
        .await
        .map_err(|e| e.to_string())?;
    for r in &requests {
        let placed = matches!(r.status.as_str(), "assigned" | "done");
        report.cells(&r.topic, &r.languages, Month::of_ms(r.starts_at), |c| {
            c.requests += 1;
            if placed {
                c.placed += 1;
            }
        });
    }
    let ids = state
        .store
        .case_document_ids(organisation_id)
        .await
        .map_err(|e| e.to_string())?;
    for raw in ids {
        let Ok(id) = raw.parse::<DocumentId>() else {
            continue;
        };
        let view = match state.hub.read(id, CaseDoc::read).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(document_id = %raw, error = %e, "report: case does not read");
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let topic = view.topic.as_str();
        if let Some(m) = Month::of_ms(view.created_at).filter(|m| period.contains(*m)) {
            report.cells(topic, &view.languages, Some(m), |c| c.cases += 1);
        }
        for h in &view.hours {
            if let Some(m) = Month::of_day(&h.date).filter(|m| period.contains(*m)) {
                let (minutes, travel) = (u64::from(h.minutes), u64::from(h.travel_minutes));
                report.cells(topic, &view.languages, Some(m), |c| {
                    c.minutes += minutes;
                    c.travel += travel;
                });
            }
        }
    }
    // Read after the live cases: a case deleted in between was either read above (and
    // counts twice in this one report) or does not read any more (and counts here once).
    let kept = state
        .store
        .kept_figures(organisation_id, &period.from.code(), &period.to.code())
        .await
        .map_err(|e| e.to_string())?;
    for c in &kept.cases {
        if let Some(m) = Month::parse(&c.started).filter(|m| period.contains(*m)) {
            report.cells(&c.topic, &c.languages, Some(m), |c| c.cases += 1);
        }
    }
    for h in &kept.hours {
        if let Some(m) = Month::parse(&h.month).filter(|m| period.contains(*m)) {
            let (minutes, travel) = (h.minutes, h.travel_minutes);
            report.cells(&h.topic, &h.languages, Some(m), |c| {
                c.minutes += minutes;
                c.travel += travel;
            });
        }
    }
    Ok(report)
}

/// The rows of one breakdown, labelled in the page's language.
fn rows(l: Lang, report: &Published, dim: &str) -> Vec<(String, Row)> {
    match dim {
        "topic" => report
            .by_topic
            .iter()
            .map(|(t, r)| (i18n::topic(l, t), *r))
            .collect(),
        "language" => {
            let mut v: Vec<(String, Row)> = report
                .by_language
                .iter()
                .map(|(k, r)| (i18n::language(l, k), *r))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        _ => report
            .by_month
            .iter()
            .map(|(m, r)| (m.label(l), *r))
            .collect(),
    }
}

fn dimensions(l: Lang) -> [(&'static str, &'static str); 3] {
    [
        ("topic", l.t("Thema", "Topic")),
        ("language", l.t("Sprache", "Language")),
        ("month", l.t("Monat", "Month")),
    ]
}

fn columns(l: Lang) -> [&'static str; 5] {
    [
        l.t("Anfragen", "Requests"),
        l.t("davon vermittelt", "of these placed"),
        l.t("neue Fälle", "new cases"),
        l.t("Stunden", "Hours"),
        l.t("Fahrzeit (Stunden)", "Travel (hours)"),
    ]
}

fn published(l: Lang, row: &Row) -> [String; 5] {
    std::array::from_fn(|k| text(l, k, row[k]))
}

fn period_label(l: Lang, p: Period) -> String {
    if p.from == p.to {
        p.from.label(l)
    } else {
        format!("{} – {}", p.from.label(l), p.to.label(l))
    }
}

// ---- charts ---------------------------------------------------------------------

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart. A suppressed value gets a dashed placeholder of fixed width
/// labelled as in the table ("<5" or "*"), so the drawing reveals nothing the table does
/// not.
fn bar_chart(title: &str, bars: &[(String, Option<f64>, String)]) -> String {
    const LABEL_W: f64 = 190.0;
    const BAR_W: f64 = 380.0;
    const ROW_H: f64 = 28.0;
    const TOP: f64 = 40.0;
    let width = LABEL_W + BAR_W + 80.0;
    let height = TOP + ROW_H * bars.len() as f64 + 12.0;
    let max = bars
        .iter()
        .filter_map(|(_, v, _)| *v)
        .fold(MIN_CELL as f64, f64::max);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}" font-family="system-ui, sans-serif" font-size="13"><title>{t}</title><rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/><text x="10" y="24" font-size="15" font-weight="bold" fill="#1a1a1a">{t}</text>"##,
        t = esc(title)
    );
    for (i, (label, value, shown)) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        svg.push_str(&format!(
            r##"<text x="{x}" y="{ty}" text-anchor="end" fill="#1a1a1a">{label}</text>"##,
            x = LABEL_W - 8.0,
            ty = y + 18.0,
            label = esc(label)
        ));
        match value {
            Some(v) => {
                let w = (v / max * BAR_W).max(1.0);
                svg.push_str(&format!(
                    r##"<rect x="{LABEL_W}" y="{by}" width="{w:.1}" height="18" fill="#004b87"/><text x="{tx:.1}" y="{ty}" fill="#1a1a1a">{shown}</text>"##,
                    by = y + 4.0,
                    tx = LABEL_W + w + 6.0,
                    ty = y + 18.0,
                    shown = esc(shown)
                ));
            }
            None => {
                svg.push_str(&format!(
                    r##"<rect x="{LABEL_W}" y="{by}" width="24" height="18" fill="#ffffff" stroke="#4a4f55" stroke-dasharray="3 2"/><text x="{tx}" y="{ty}" fill="#1a1a1a">{shown}</text>"##,
                    by = y + 4.0,
                    tx = LABEL_W + 30.0,
                    ty = y + 18.0,
                    shown = esc(shown)
                ));
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

pub const CHARTS: [&str; 4] = [
    "requests-month",
    "requests-topic",
    "requests-language",
    "hours-month",
];

fn draw(l: Lang, report: &Published, name: &str) -> Option<(String, String)> {
    let (title, dim, column) = match name {
        "requests-month" => (l.t("Anfragen je Monat", "Requests per month"), "month", 0),
        "requests-topic" => (l.t("Anfragen je Thema", "Requests per topic"), "topic", 0),
        "requests-language" => (
            l.t("Anfragen je Sprache", "Requests per language"),
            "language",
            0,
        ),
        "hours-month" => (l.t("Stunden je Monat", "Hours per month"), "month", 3),
        _ => return None,
    };
    let labelled: Vec<(String, Row)> = if dim == "month" {
        // Short month names keep the chart narrow; the table has the long ones.
        report
            .by_month
            .iter()
            .map(|(m, r)| (m.short(l), *r))
            .collect()
    } else {
        rows(l, report, dim)
    };
    let bars: Vec<(String, Option<f64>, String)> = labelled
        .into_iter()
        .map(|(label, r)| {
            let value = match r[column] {
                Shown::Value(v) if column >= HOURS_FROM => Some(v as f64 / 60.0),
                Shown::Value(v) => Some(v as f64),
                Shown::Small | Shown::Withheld => None,
            };
            (label, value, text(l, column, r[column]))
        })
        .collect();
    Some((title.to_owned(), bar_chart(title, &bars)))
}

// ---- handlers -------------------------------------------------------------------

fn query_of(s: &Session) -> String {
    s.here
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default()
}

/// A report reveals only suppressed figures, but who looked at which period is part of
/// the trail all the same.
async fn audit_report(state: &AppState, s: &Session, action: &'static str) -> Result<(), Response> {
    let line = crate::app::caller::Caller::Coordinator(s.caller.clone()).audit_of(
        action,
        "report",
        &query_of(s).chars().take(120).collect::<String>(),
    );
    state
        .store
        .audit(&[line])
        .await
        .map_err(|e| layout::failed(s.lang, "report audit", e))
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let period = Period::from_query(&query_of(&s), now_ms());
    if let Err(r) = audit_report(&state, &s, "report.read").await {
        return r;
    }
    let report = match compute(&state, s.org(), period).await {
        Ok(r) => Published::of(&r),
        Err(e) => return layout::failed(l, "report", e),
    };
    let title = l.t("Berichte", "Reports");
    let cols = columns(l);
    html_response(
        StatusCode::OK,
        layout::page(
            &s,
            Nav::Reports,
            title,
            html! {
                h1 { (title) }
                form.filters method="get" action="/dashboard/reports" aria-label=(l.t("Zeitraum wählen", "Choose the period")) {
                    div.field {
                        label for="from" { (l.t("Von (Monat)", "From (month)")) }
                        input #from type="month" name="from" value=(period.from.code()) required;
                    }
                    div.field {
                        label for="to" { (l.t("Bis (Monat)", "To (month)")) }
                        input #to type="month" name="to" value=(period.to.code()) required;
                    }
                    button type="submit" { (l.t("Anzeigen", "Show")) }
                }
                p { strong { (l.t("Zeitraum", "Period")) ": " } (period_label(l, period)) }
                p.muted { (l.t(
                    "Zahlen unter 5 werden als „<5“ gezeigt (auch in Diagrammen und im Export), damit niemand erkennbar wird. Ein „*“ verdeckt eine weitere Zahl, aus der sich sonst mit der Summe eine kleine Zahl ausrechnen ließe. Anfragen zählen nach dem Monat ihres Termins, Fälle nach ihrem Beginn, Stunden nach ihrem Tag. Mehrsprachige Anfragen zählen bei jeder ihrer Sprachen.",
                    "Numbers below 5 are shown as “<5” (in charts and the export too) so that nobody can be identified. A “*” hides another number that, with the total, would give a small one away. Requests count by the month of their appointment, cases by their start, hours by their day. Requests in several languages count for each of them.")) }
                p { a.button.secondary href=(format!("/dashboard/reports.csv?{}", period.query())) download { (l.t("Als CSV herunterladen (Excel)", "Download as CSV (Excel)")) } }
                p { a href="/dashboard/statements" { (l.t("Stundennachweise je Lotsin und Lotse (Abrechnung)", "Statements of hours per volunteer (for the expense allowance)")) } }
                section.card aria-labelledby="summen" {
                    h2 #summen { (l.t("Summen", "Totals")) }
                    dl.facts #totals {
                        @for (name, value) in cols.iter().zip(published(l, &report.total)) {
                            dt { (name) } dd { (value) }
                        }
                    }
                }
                @for (dim, dim_label) in dimensions(l) {
                    section.card aria-labelledby=(format!("nach-{dim}")) {
                        h2 id=(format!("nach-{dim}")) { (l.t("Nach ", "By ")) (dim_label) }
                        (table_wrap(l, dim_label, html! {
                            table data-dimension=(dim) {
                                thead { tr {
                                    th scope="col" { (dim_label) }
                                    @for c in cols { th scope="col" class="num" { (c) } }
                                } }
                                tbody {
                                    @for (label, cells) in rows(l, &report, dim) {
                                        tr {
                                            th scope="row" { (label) }
                                            @for v in published(l, &cells) { td.num { (v) } }
                                        }
                                    }
                                }
                            }
                        }))
                    }
                }
                section.card aria-labelledby="diagramme" {
                    h2 #diagramme { (l.t("Diagramme", "Charts")) }
                    div.charts {
                        @for name in CHARTS {
                            @if let Some((_, svg)) = draw(l, &report, name) {
                                figure.chart data-chart=(name) {
                                    (raw(&svg))
                                    figcaption { a href=(format!("/dashboard/reports/chart/{name}.svg?{}", period.query())) { (l.t("Diagramm als SVG-Datei", "Chart as an SVG file")) } }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn chart_svg(state: &AppState, s: &Session, name: &str) -> Response {
    let l = s.lang;
    let name = name.trim_end_matches(".svg");
    if !CHARTS.contains(&name) {
        return layout::not_found(l);
    }
    let period = Period::from_query(&query_of(s), now_ms());
    let report = match compute(state, s.org(), period).await {
        Ok(r) => Published::of(&r),
        Err(e) => return layout::failed(l, "report chart", e),
    };
    let Some((_, svg)) = draw(l, &report, name) else {
        return layout::not_found(l);
    };
    let mut res = svg.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml; charset=utf-8"),
    );
    res
}

pub async fn chart(
    State(state): State<AppState>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    chart_svg(&state, &s, &name).await
}

fn csv_field(v: &str, sep: char) -> String {
    if v.contains(sep) || v.contains('"') || v.contains('\n') || v.contains('\r') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// The report as CSV: UTF-8 with a byte order mark so Excel reads umlauts; German uses
/// `;` and a decimal comma (as German Excel expects), English `,` and a point.
pub fn to_csv(l: Lang, report: &Published, period: Period) -> String {
    let sep = match l {
        Lang::De => ';',
        Lang::En => ',',
    };
    let mut out = String::from("\u{feff}");
    let mut line = |fields: Vec<String>| {
        let cells: Vec<String> = fields.iter().map(|f| csv_field(f, sep)).collect();
        out.push_str(&cells.join(&sep.to_string()));
        out.push_str("\r\n");
    };
    let mut header = vec![
        l.t("Gliederung", "Breakdown").to_owned(),
        l.t("Wert", "Value").to_owned(),
    ];
    header.extend(columns(l).iter().map(|c| (*c).to_owned()));
    line(header);
    for (dim, dim_label) in dimensions(l) {
        for (label, cells) in rows(l, report, dim) {
            let mut f = vec![dim_label.to_owned(), label];
            f.extend(published(l, &cells));
            line(f);
        }
    }
    let mut f = vec![l.t("Gesamt", "Total").to_owned(), period_label(l, period)];
    f.extend(published(l, &report.total));
    line(f);
    out
}

pub async fn csv(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let period = Period::from_query(&query_of(&s), now_ms());
    if let Err(r) = audit_report(&state, &s, "report.export").await {
        return r;
    }
    let report = match compute(&state, s.org(), period).await {
        Ok(r) => r,
        Err(e) => return layout::failed(l, "report csv", e),
    };
    let body = to_csv(l, &Published::of(&report), period);
    let name = format!(
        "{}_{}_{}.csv",
        l.t("lotse-bericht", "lotse-report"),
        period.from.code(),
        period.to.code()
    );
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cells(requests: u64, minutes: u64) -> Cells {
        Cells {
            requests,
            minutes,
            ..Cells::default()
        }
    }

    #[test]
    fn small_cells_are_suppressed() {
        let shown = |c: Cells| published(Lang::De, &primary(&c));
        assert_eq!(shown(cells(0, 0))[0], "<5");
        assert_eq!(shown(cells(4, 0))[0], "<5");
        assert_eq!(shown(cells(5, 0))[0], "5");
        assert_eq!(shown(cells(0, 299))[3], "<5");
        assert_eq!(shown(cells(0, 330))[3], "5,5");
        assert_eq!(published(Lang::En, &primary(&cells(0, 330)))[3], "5.5");
    }

    #[test]
    fn a_lone_small_cell_under_a_total_takes_its_smallest_neighbour_along() {
        let mut report = Report {
            total: cells(20, 0),
            ..Report::default()
        };
        // Gesundheit 12, Bildung 5, Arbeit 3: 20 - 12 - 5 would give the 3 away.
        report.by_topic.insert("gesundheit".into(), cells(12, 0));
        report.by_topic.insert("bildung".into(), cells(5, 0));
        report.by_topic.insert("arbeit".into(), cells(3, 0));
        let p = Published::of(&report);
        let topic = |code: &str| p.by_topic.iter().find(|(t, _)| t == code).unwrap().1[0];
        // The other five topics are 0, so "<5" already appears more than once: nothing to add.
        assert_eq!(topic("bildung"), Shown::Value(5));

        // With every topic but one published, the smallest published one is withheld.
        let mut full = Report {
            total: cells(54, 0),
            ..Report::default()
        };
        for (i, t) in i18n::TOPICS.iter().enumerate() {
            full.by_topic.insert(
                (*t).into(),
                cells(if i == 7 { 1 } else { 8 - (i as u64 % 2) }, 0),
            );
        }
        let p = Published::of(&full);
        let shown: Vec<Shown> = p.by_topic.iter().map(|(_, r)| r[0]).collect();
        assert_eq!(shown.iter().filter(|s| **s == Shown::Small).count(), 1);
        assert_eq!(shown.iter().filter(|s| **s == Shown::Withheld).count(), 1);
        // The withheld one is one of the 7s, never an 8.
        let withheld = shown.iter().position(|s| *s == Shown::Withheld).unwrap();
        assert_eq!(full.by_topic[i18n::TOPICS[withheld]].requests, 7);
        assert_eq!(published(Lang::De, &p.by_topic[withheld].1)[0], "*");
        // A suppressed total protects itself: nothing more is withheld.
        full.total = cells(4, 0);
        let p = Published::of(&full);
        assert!(p.by_topic.iter().all(|(_, r)| r[0] != Shown::Withheld));
        // Languages do not add up to the total and are left as they are.
        full.total = cells(54, 0);
        full.by_language.insert("ar".into(), cells(50, 0));
        full.by_language.insert("fa".into(), cells(2, 0));
        let p = Published::of(&full);
        assert_eq!(p.by_language[0].1[0], Shown::Value(50));
    }

    #[test]
    fn periods_are_whole_local_months() {
        // 2026-03-04T13:00Z
        let now = 1_772_629_200_000;
        let p = Period::from_query("", now);
        assert_eq!(
            (p.from.code(), p.to.code()),
            ("2026-01".into(), "2026-03".into())
        );
        let p = Period::from_query("from=2026-05&to=2025-11", now);
        assert_eq!(p.months().len(), 7);
        assert_eq!(p.from.code(), "2025-11");
        // Midnight in Berlin (CET) is 23:00 UTC the day before.
        assert_eq!(
            Month {
                year: 2026,
                month: 3
            }
            .start_ms(),
            crate::timefmt::parse_ms("2026-02-28T23:00:00Z").unwrap_or(0)
        );
        let long = Period::from_query("from=2000-01&to=2026-12", now);
        assert_eq!(long.months().len(), MAX_MONTHS as usize);
    }

    #[test]
    fn charts_never_draw_a_suppressed_length() {
        let svg = bar_chart(
            "T",
            &[
                ("a".into(), None, "<5".into()),
                ("b".into(), Some(10.0), "10".into()),
            ],
        );
        assert!(svg.contains("&lt;5"));
        assert!(svg.contains(">10<"));
        assert!(svg.contains(r#"stroke-dasharray="3 2""#));
    }

    #[test]
    fn csv_has_a_bom_and_quotes() {
        let mut r = Report::default();
        r.by_topic.insert(
            "gesundheit".into(),
            Cells {
                requests: 7,
                ..Cells::default()
            },
        );
        let p = Period {
            from: Month {
                year: 2026,
                month: 1,
            },
            to: Month {
                year: 2026,
                month: 1,
            },
        };
        let csv = to_csv(Lang::De, &Published::of(&r), p);
        assert!(csv.starts_with('\u{feff}'));
        assert!(csv.contains("Thema;Gesundheit;7;<5;<5;<5;<5\r\n"));
        assert_eq!(csv_field("a;b", ';'), "\"a;b\"");
    }
}

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
//!
//! **Small cells**: any number below 5 (counts, and hours below 5) is shown as `<5`, in
//! the page, in the charts (a dashed placeholder bar of fixed size, never the true
//! length) and in the CSV, so that no small group of people can be singled out. Zero is
//! shown as `<5` too, so it cannot be told from one. Totals are suppressed the same way;
//! secondary suppression (a suppressed cell recomputed from a total and the others) is
//! not done: publish the totals with care.

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
use crate::http::AppState;
use crate::store::now_ms;

/// Cells below this are shown as "<5".
pub const MIN_CELL: u64 = 5;
const MAX_MONTHS: i32 = 60;

/// A count as it may be published.
pub fn suppress(n: u64) -> String {
    if n < MIN_CELL {
        "<5".into()
    } else {
        n.to_string()
    }
}

/// Minutes as hours that may be published.
fn suppress_hours(l: Lang, minutes: u64) -> String {
    if minutes < MIN_CELL * 60 {
        "<5".into()
    } else {
        l.decimal(minutes as f64 / 60.0)
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
    Ok(report)
}

/// The rows of one breakdown, labelled in the page's language.
fn rows(l: Lang, report: &Report, dim: &str) -> Vec<(String, Cells)> {
    match dim {
        "topic" => i18n::TOPICS
            .iter()
            .map(|t| {
                (
                    i18n::topic(l, t),
                    report.by_topic.get(*t).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        "language" => {
            let mut v: Vec<(String, Cells)> = report
                .by_language
                .iter()
                .map(|(k, c)| (i18n::language(l, k), c.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        _ => report
            .by_month
            .iter()
            .map(|(m, c)| (m.label(l), c.clone()))
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

fn published(l: Lang, c: &Cells) -> [String; 5] {
    [
        suppress(c.requests),
        suppress(c.placed),
        suppress(c.cases),
        suppress_hours(l, c.minutes),
        suppress_hours(l, c.travel),
    ]
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
/// labelled "<5", so the drawing reveals nothing the table does not.
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
                    r##"<rect x="{LABEL_W}" y="{by}" width="24" height="18" fill="#ffffff" stroke="#4a4f55" stroke-dasharray="3 2"/><text x="{tx}" y="{ty}" fill="#1a1a1a">&lt;5</text>"##,
                    by = y + 4.0,
                    tx = LABEL_W + 30.0,
                    ty = y + 18.0,
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

fn draw(l: Lang, report: &Report, name: &str) -> Option<(String, String)> {
    let (title, dim, hours) = match name {
        "requests-month" => (
            l.t("Anfragen je Monat", "Requests per month"),
            "month",
            false,
        ),
        "requests-topic" => (
            l.t("Anfragen je Thema", "Requests per topic"),
            "topic",
            false,
        ),
        "requests-language" => (
            l.t("Anfragen je Sprache", "Requests per language"),
            "language",
            false,
        ),
        "hours-month" => (l.t("Stunden je Monat", "Hours per month"), "month", true),
        _ => return None,
    };
    let labelled: Vec<(String, Cells)> = if dim == "month" {
        // Short month names keep the chart narrow; the table has the long ones.
        report
            .by_month
            .iter()
            .map(|(m, c)| (m.short(l), c.clone()))
            .collect()
    } else {
        rows(l, report, dim)
    };
    let bars: Vec<(String, Option<f64>, String)> = labelled
        .into_iter()
        .map(|(label, c)| {
            if hours {
                let v = (c.minutes >= MIN_CELL * 60).then_some(c.minutes as f64 / 60.0);
                (label, v, suppress_hours(l, c.minutes))
            } else {
                let v = (c.requests >= MIN_CELL).then_some(c.requests as f64);
                (label, v, suppress(c.requests))
            }
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

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let l = s.lang;
    let period = Period::from_query(&query_of(&s), now_ms());
    let report = match compute(&state, s.org(), period).await {
        Ok(r) => r,
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
                    "Zahlen unter 5 werden als „<5“ gezeigt (auch in Diagrammen und im Export), damit niemand erkennbar wird. Anfragen zählen nach dem Monat ihres Termins, Fälle nach ihrem Beginn, Stunden nach ihrem Tag. Mehrsprachige Anfragen zählen bei jeder ihrer Sprachen.",
                    "Numbers below 5 are shown as “<5” (in charts and the export too) so that nobody can be identified. Requests count by the month of their appointment, cases by their start, hours by their day. Requests in several languages count for each of them.")) }
                p { a.button.secondary href=(format!("/dashboard/reports.csv?{}", period.query())) download { (l.t("Als CSV herunterladen (Excel)", "Download as CSV (Excel)")) } }
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
        Ok(r) => r,
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
pub fn to_csv(l: Lang, report: &Report, period: Period) -> String {
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
    let report = match compute(&state, s.org(), period).await {
        Ok(r) => r,
        Err(e) => return layout::failed(l, "report csv", e),
    };
    let body = to_csv(l, &report, period);
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
mod tests {
    use super::*;

    #[test]
    fn small_cells_are_suppressed() {
        assert_eq!(suppress(0), "<5");
        assert_eq!(suppress(4), "<5");
        assert_eq!(suppress(5), "5");
        assert_eq!(suppress_hours(Lang::De, 299), "<5");
        assert_eq!(suppress_hours(Lang::De, 330), "5,5");
        assert_eq!(suppress_hours(Lang::En, 330), "5.5");
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
        let csv = to_csv(Lang::De, &r, p);
        assert!(csv.starts_with('\u{feff}'));
        assert!(csv.contains("Thema;Gesundheit;7;<5;<5;<5;<5\r\n"));
        assert_eq!(csv_field("a;b", ';'), "\"a;b\"");
    }
}

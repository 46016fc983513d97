//! The page shell (skip link, header with navigation, language switch and logout, main
//! content), error pages, the stylesheet and the small script for live updates.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::i18n::{self, Lang};
use super::session::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Requests,
    Cases,
    Volunteers,
    Reports,
    Audit,
    Settings,
    Team,
    Account,
}

pub fn html_response(status: StatusCode, page: Markup) -> Response {
    (status, Html(page.into_string())).into_response()
}

fn head(l: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Lotse" }
            link rel="icon" type="image/svg+xml" href="/dashboard/static/icon.svg";
            link rel="stylesheet" href="/dashboard/static/app.css";
            script src="/dashboard/static/app.js" defer {}
            meta name="lotse-lang" content=(l.code());
        }
    }
}

fn lang_switch(l: Lang, here: &str) -> Markup {
    let other = l.other();
    let back: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let href = format!("/dashboard/lang?to={}&back={back}", other.code());
    html! {
        a.lang-switch href=(href) lang=(other.code()) hreflang=(other.code()) {
            (match other { Lang::De => "Deutsch", Lang::En => "English" })
        }
    }
}

/// A page for a logged-in coordinator.
pub fn page(s: &Session, nav: Nav, title: &str, body: Markup) -> Markup {
    let l = s.lang;
    let mut items = vec![
        (Nav::Overview, "/dashboard", l.t("Überblick", "Overview")),
        (
            Nav::Requests,
            "/dashboard/requests",
            l.t("Anfragen", "Requests"),
        ),
        (Nav::Cases, "/dashboard/cases", l.t("Fälle", "Cases")),
        (
            Nav::Volunteers,
            "/dashboard/volunteers",
            l.t("Lotsinnen und Lotsen", "Volunteers"),
        ),
        (
            Nav::Reports,
            "/dashboard/reports",
            l.t("Berichte", "Reports"),
        ),
        (
            Nav::Audit,
            "/dashboard/audit",
            l.t("Protokoll", "Audit trail"),
        ),
        (
            Nav::Settings,
            "/dashboard/settings",
            l.t("Einstellungen", "Settings"),
        ),
    ];
    if s.caller.coordinator.is_leitung() {
        items.push((Nav::Team, "/dashboard/team", l.t("Team", "Team")));
    }
    let top = html! {
                    div.brand {
                        span.logo { "Lotse" }
                        span.org { (s.org_name) }
                    }
                    nav aria-label=(l.t("Hauptnavigation", "Main navigation")) {
                        ul {
                            @for (n, href, label) in items {
                                li {
                                    @if n == nav {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.account {
                        (lang_switch(l, &s.here))
                        @if nav == Nav::Account {
                            a.who href="/dashboard/account" aria-current="page" { (s.caller.coordinator.display_name) }
                        } @else {
                            a.who href="/dashboard/account" title=(l.t("Mein Konto", "My account")) { (s.caller.coordinator.display_name) }
                        }
                        form method="post" action="/dashboard/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button.link type="submit" { (l.t("Abmelden", "Log out")) }
                        }
                        form method="post" action="/dashboard/logout-all" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button.link type="submit" { (l.t("Überall abmelden", "Log out everywhere")) }
                        }
                    }
    };
    let footer = html! {
        footer {
            p { (l.t("Lotse – Koordination der Integrationslotsen", "Lotse – coordinating integration guides")) }
        }
    };
    document(l, title, top, body, footer)
}

/// A page without navigation: login and errors before a session exists.
pub fn bare_page(l: Lang, title: &str, here: &str, body: Markup) -> Markup {
    let top = html! {
        div.brand { span.logo { "Lotse" } }
        div.account { (lang_switch(l, here)) }
    };
    document(l, title, top, body, html! {})
}

/// The frame of every page: the skip link, the bar at the top (`top`), the content.
fn document(l: Lang, title: &str, top: Markup, body: Markup, footer: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            (head(l, title))
            body {
                a.skip href="#inhalt" { (l.t("Zum Inhalt springen", "Skip to content")) }
                header.top { (top) }
                main #inhalt tabindex="-1" { (body) }
                (footer)
            }
        }
    }
}

pub fn error_page(l: Lang, status: StatusCode, title: &str, message: &str) -> Response {
    html_response(
        status,
        bare_page(
            l,
            title,
            "/dashboard",
            html! {
                h1 { (title) }
                p { (message) }
                p { a href="/dashboard" { (l.t("Zum Überblick", "To the overview")) } }
            },
        ),
    )
}

pub fn not_found(l: Lang) -> Response {
    error_page(
        l,
        StatusCode::NOT_FOUND,
        l.t("Nicht gefunden", "Not found"),
        l.t(
            "Diese Seite gibt es nicht (mehr).",
            "This page does not exist (any more).",
        ),
    )
}

/// What only Leitung may open or do (the team, the settings, deletions): 403.
pub fn leitung_only(l: Lang) -> Response {
    error_page(
        l,
        StatusCode::FORBIDDEN,
        l.t("Nur für die Leitung", "Leitung only"),
        l.t(
            "Das dürfen nur Koordinatorinnen und Koordinatoren mit der Rolle Leitung. Bitte wenden Sie sich an Ihre Leitung.",
            "Only coordinators with the role Leitung (management) may do this. Please ask your Leitung.",
        ),
    )
}

pub fn server_error(l: Lang) -> Response {
    error_page(
        l,
        StatusCode::INTERNAL_SERVER_ERROR,
        l.t("Interner Fehler", "Internal error"),
        l.t(
            "Etwas ist auf dem Server schiefgegangen. Bitte versuchen Sie es gleich noch einmal.",
            "Something went wrong on the server. Please try again in a moment.",
        ),
    )
}

/// Logs a storage or sync error and answers with the error page.
pub fn failed(l: Lang, what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard: {what}");
    server_error(l)
}

/// A hidden CSRF field for a form of this session.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A status badge; the text says it all, the colour only helps.
pub fn badge(kind: &str, text: &str) -> Markup {
    html! { span class=(format!("badge badge-{kind}")) { (text) } }
}

/// A QR code as inline SVG, named for screen readers by `label`.
pub fn qr_svg(label: &str, content: &str) -> Option<String> {
    use qrcode::{QrCode, render::svg};
    let code = QrCode::new(content.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let image = image.trim_start_matches(r#"<?xml version="1.0" standalone="yes"?>"#);
    Some(image.replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{label}" "#),
        1,
    ))
}

/// A table that may scroll sideways on narrow screens, reachable by keyboard.
pub fn table_wrap(l: Lang, label: &str, table: Markup) -> Markup {
    // Named apart from the section around it: landmarks need unique names.
    let name = format!("{} {label}", l.t("Tabelle:", "Table:"));
    html! {
        div.scroll role="region" aria-label=(name) tabindex="0" { (table) }
    }
}

/// A filter of a list: `select` `name` (id `f-{name}`) with "all" first; `options` are
/// (value, text).
pub fn filter_select<V: AsRef<str>>(
    l: Lang,
    name: &str,
    label: &str,
    options: impl IntoIterator<Item = (V, String)>,
    selected: &str,
) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                option value="" { (l.t("alle", "all")) }
                @for (value, text) in options {
                    option value=(value.as_ref()) selected[selected == value.as_ref()] { (text) }
                }
            }
        }
    }
}

/// The search form over a list (`fields`, then the button), sent to `action` by GET.
pub fn filter_form(l: Lang, action: &str, label: &str, fields: Markup) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" aria-label=(label) {
            (fields)
            button type="submit" { (l.t("Filtern", "Filter")) }
        }
    }
}

/// A table labelled `label`: `head` names the columns, of which those at the positions
/// in `numeric` hold numbers (aligned right); `rows` are the body's rows.
pub fn data_table(
    l: Lang,
    label: &str,
    id: Option<&str>,
    head: &[&str],
    numeric: &[usize],
    rows: Markup,
) -> Markup {
    table_wrap(
        l,
        label,
        html! {
            table id=[id] {
                thead { tr {
                    @for (i, name) in head.iter().enumerate() {
                        th scope="col" class=[numeric.contains(&i).then_some("num")] { (name) }
                    }
                } }
                tbody { (rows) }
            }
        },
    )
}

/// What a filtered list found: how many `noun`, and the table of them if any (see
/// `data_table`).
pub fn found_table(
    l: Lang,
    title: &str,
    noun: &str,
    head: &[&str],
    numeric: &[usize],
    count: usize,
    rows: Markup,
) -> Markup {
    html! {
        p role="status" { (count) " " (noun) }
        @if count > 0 {
            (data_table(l, title, None, head, numeric, rows))
        }
    }
}

pub fn static_css() -> Response {
    static_asset("text/css; charset=utf-8", CSS)
}

/// The dashboard's icon: a ship's wheel, since a Lotse is a ship's pilot.
pub fn static_icon() -> Response {
    static_asset("image/svg+xml", ICON)
}

const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><title>Lotse</title><rect width="64" height="64" rx="14" fill="#1f4e79"/><circle cx="32" cy="32" r="17" fill="none" stroke="#fff" stroke-width="5"/><path d="M32 9v14M32 41v14M9 32h14M41 32h14" stroke="#fff" stroke-width="5" stroke-linecap="round"/><circle cx="32" cy="32" r="5" fill="#f2b134"/></svg>"##;

pub fn static_js() -> Response {
    static_asset("text/javascript; charset=utf-8", JS)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    asset(content_type, body, "public, max-age=300")
}

/// A script or stylesheet of ours with its type and how long browsers may keep it.
pub fn asset(content_type: &'static str, body: impl Into<String>, cache: &'static str) -> Response {
    let mut res = body.into().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// Inline SVG as markup (it is built by our own code, with escaped text).
pub fn raw(svg: &str) -> Markup {
    PreEscaped(svg.to_owned())
}

const CSS: &str = r#"
:root{--ink:#1a1a1a;--muted:#4a4f55;--line:#c5cad0;--bg:#f5f6f8;--card:#fff;--brand:#004b87;--brand-dark:#003560;--focus:#b35900;--bad:#a4000f}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:1rem;line-height:1.5;color:var(--ink);background:var(--bg)}
a{color:#0a4f95}
a:hover{color:var(--brand-dark)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-10000px;top:0;background:#fff;padding:.5rem 1rem;z-index:10}
.skip:focus{left:1rem}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;background:var(--brand);color:#fff;padding:.5rem 1.5rem}
header.top a,header.top .link{color:#fff}
header.top :focus-visible{outline-color:#ffd27a}
.brand{display:flex;align-items:baseline;gap:.75rem}
.logo{font-weight:700;font-size:1.25rem;letter-spacing:.02em}
.org{opacity:.95}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;margin:0;padding:0}
nav a{display:inline-block;padding:.35rem .1rem;text-decoration:none;border-bottom:3px solid transparent}
nav a:hover{border-bottom-color:#9cc3ea;color:#fff}
nav a[aria-current=page]{border-bottom-color:#fff;font-weight:600}
.account{margin-left:auto;display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1rem}
.account form{margin:0}
button.link{background:none;border:0;padding:0;font:inherit;text-decoration:underline;cursor:pointer;color:inherit;margin:0}
main{max-width:78rem;margin:0 auto;padding:1rem 1.5rem 3rem}
main:focus{outline:none}
footer{max-width:78rem;margin:0 auto;padding:0 1.5rem 2rem;color:var(--muted);font-size:.9rem}
h1{font-size:1.75rem;margin:.75rem 0 1rem}
h2{font-size:1.3rem;margin:1.75rem 0 .5rem}
h3{font-size:1.1rem;margin:1.25rem 0 .5rem}
section.card,div.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:1rem 1.25rem;margin:1rem 0}
section.card>h2:first-child,section.card>h3:first-child{margin-top:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:0 1.25rem}
.grid.wide{grid-template-columns:repeat(auto-fit,minmax(34rem,1fr))}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(40rem,1fr));gap:1rem 1.25rem}
.charts figure{margin:0}
.counts{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:1rem;list-style:none;padding:0;margin:1rem 0}
.counts li{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--brand);border-radius:6px;padding:.75rem 1rem}
.counts li.warn{border-left-color:var(--bad)}
.counts a{text-decoration:none;color:var(--ink);display:block}
.counts .n{display:block;font-size:2rem;font-weight:700;line-height:1.1}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f4;font-weight:600}
tbody th{background:none}
tfoot th,tfoot td{background:#eef1f4}
dl.facts ul{margin:0;padding-left:1.1rem}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;max-width:100%}
.muted{color:var(--muted)}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.875rem;border:1px solid currentColor;white-space:nowrap}
.badge-open{background:#fff4ce;color:#5c4400}
.badge-offered{background:#e6f0fa;color:#0b3d6e}
.badge-assigned,.badge-active,.badge-accepted,.badge-ok{background:#e3f4e6;color:#135c1f}
.badge-done,.badge-closed,.badge-withdrawn,.badge-taken{background:#eceef0;color:#33383d}
.badge-cancelled,.badge-expired,.badge-declined,.badge-overdue,.badge-bad,.badge-revoked{background:#fde7e9;color:#8a0010}
.badge-paused{background:#f3e8fb;color:#562173}
.badge-dringend{background:#fde7e9;color:#8a0010}
.alert{border:2px solid var(--bad);background:#fff5f5;padding:.5rem 1rem;border-radius:6px;margin:1rem 0}
.ok-box{border:2px solid #135c1f;background:#f2fbf3;padding:.5rem 1rem;border-radius:6px;margin:1rem 0}
.error{color:var(--bad);font-weight:600;margin:.25rem 0 0}
form .field{margin:0 0 1rem}
label,legend{font-weight:600;display:block;margin-bottom:.25rem}
fieldset{border:1px solid var(--line);border-radius:6px;margin:0 0 1rem;padding:.5rem 1rem}
fieldset label{font-weight:400;display:inline-flex;gap:.35rem;align-items:center;margin:0 1rem .35rem 0}
fieldset .field{margin:.75rem 0 .5rem}
fieldset .field label{display:block;font-weight:600;margin:0 0 .25rem}
input,select,textarea{font:inherit;color:var(--ink);background:#fff;border:1px solid #6b7178;border-radius:4px;padding:.4rem .5rem;max-width:100%}
input[type=text],input[type=email],input[type=password],input[type=search],textarea,select{width:100%}
input[type=checkbox],input[type=radio]{width:1.1rem;height:1.1rem}
input[aria-invalid=true],select[aria-invalid=true],textarea[aria-invalid=true]{border:2px solid var(--bad)}
form.narrow{max-width:26rem}
.form-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:0 1.25rem}
.filters{display:flex;flex-wrap:wrap;gap:.75rem 1rem;align-items:flex-end;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.75rem 1rem;margin:1rem 0}
.filters .field{margin:0;min-width:10rem}
button,.button{display:inline-block;font:inherit;font-weight:600;padding:.45rem 1rem;border-radius:4px;border:2px solid var(--brand);background:var(--brand);color:#fff;cursor:pointer;text-decoration:none}
button:hover,.button:hover{background:var(--brand-dark);border-color:var(--brand-dark);color:#fff}
button.secondary,.button.secondary{background:#fff;color:var(--brand)}
button.secondary:hover,.button.secondary:hover{background:#eef4fb;color:var(--brand-dark)}
button.danger,.button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
button.danger:hover,.button.danger:hover{background:#fde7e9;color:#6d000c}
.actions{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin:1rem 0}
.actions form{margin:0}
td.actions{display:table-cell}
td.actions .inline-form{display:inline-flex;gap:.35rem;align-items:center;margin:0 .5rem .35rem 0}
td.actions select{width:auto}
.recovery{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.1rem;columns:2;list-style:none;padding:0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1.25rem;margin:0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0}
ul.reasons{list-style:none;margin:0;padding:0}
ul.reasons li{white-space:nowrap}
.yes{color:#135c1f}
.no{color:#8a0010}
article.note{border-left:4px solid var(--line);padding:.25rem 0 .25rem 1rem;margin:0 0 1rem}
article.note p.text{white-space:pre-wrap;margin:.25rem 0}
.code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:2rem;letter-spacing:.1em;font-weight:700}
.qr svg{width:14rem;height:14rem;background:#fff;padding:.5rem;border:1px solid var(--line)}
.chart svg{max-width:100%;height:auto;border:1px solid var(--line)}
.live-status{font-size:.875rem;color:var(--muted);margin:0}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
@media (max-width:40rem){main{padding:.5rem .75rem 2rem}header.top{padding:.5rem .75rem}.account{margin-left:0}dl.facts{grid-template-columns:1fr}}
[hidden]{display:none!important}
.print-only{display:none}
.signatures{display:flex;gap:3rem;margin-top:3rem}
.signatures p{flex:1}
@media print{
@page{margin:1.8cm 1.5cm}
body{background:#fff;font-size:10.5pt;line-height:1.4}
header.top,footer,.skip,.no-print,.filters,.lang-switch{display:none!important}
.print-only{display:block}
main{max-width:none;margin:0;padding:0}
section.card,div.card{border:0;border-radius:0;padding:0;margin:0 0 1.2rem}
h2{break-after:avoid;border-bottom:1px solid #000;padding-bottom:.15rem}
tr,article.note{break-inside:avoid}
table,th,td{background:#fff!important}
th,td{border-bottom:1px solid #777}
.scroll{overflow:visible}
a{color:inherit;text-decoration:none}
.badge{border:1px solid #000;background:#fff!important;color:#000!important}
}
"#;

/// Progressive enhancement: pages work without it. With it, `data-print` buttons print
/// the page, and regions marked `data-live="<fragment url>"` re-fetch their content
/// whenever the server's event stream says something changed (a phone synced, a request
/// changed).
const JS: &str = r#"(function () {
  "use strict";
  // A print button only makes sense with a script behind it: shown by it.
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  var regions = document.querySelectorAll("[data-live]");
  if (!regions.length || !window.EventSource || !window.fetch) return;
  var status = document.getElementById("live-status");
  var de = (document.documentElement.lang || "de") === "de";
  var timer = null, busy = false, again = false;
  function say(text) { if (status) status.textContent = text; }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var jobs = Array.prototype.map.call(regions, function (el) {
      return fetch(el.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (res) {
          if (res.redirected || res.status === 401) { window.location.reload(); return; }
          if (!res.ok) return;
          return res.text().then(function (html) {
            el.innerHTML = html;
            el.setAttribute("data-updated", String(Date.now()));
          });
        });
    });
    Promise.all(jobs).catch(function () {}).then(function () {
      busy = false;
      var now = new Date();
      say((de ? "Aktualisiert um " : "Updated at ") + now.toLocaleTimeString(de ? "de-DE" : "en-GB"));
      if (again) { again = false; schedule(); }
    });
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 150); }
  var es = new EventSource("/dashboard/events");
  // After a reconnect the server compares Last-Event-ID and says `change` if we missed one.
  es.addEventListener("open", function () {
    document.documentElement.setAttribute("data-live-connected", "true");
  });
  es.addEventListener("change", schedule);
  es.addEventListener("bye", function () { es.close(); window.location.reload(); });
})();
"#;

/// A document or record id from the path, in the form the store keeps it; `None` for
/// anything that is not a UUID (answered as "not found").
pub fn uuid(raw: &str) -> Option<String> {
    uuid::Uuid::parse_str(raw)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The record a path names, or the page that says why not: "not found" for an id that is
/// not a UUID or a record `fetch` does not find (another organisation's included), the
/// error page when the store fails.
pub async fn found<T, E: std::fmt::Display, F: Future<Output = Result<Option<T>, E>>>(
    l: Lang,
    raw: &str,
    what: &str,
    fetch: impl FnOnce(String) -> F,
) -> Result<T, Response> {
    let Some(id) = uuid(raw) else {
        return Err(not_found(l));
    };
    match fetch(id).await {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(not_found(l)),
        Err(e) => Err(failed(l, what, e)),
    }
}

/// A form of two columns (`columns`, a `div` each) that posts to `action`, under a banner
/// when `errors` has anything to correct; `end` follows the columns (the buttons).
pub fn grid_form<K: Borrow<str> + Hash + Eq>(
    s: &Session,
    action: &str,
    errors: &HashMap<K, String>,
    columns: Markup,
    end: Markup,
) -> Markup {
    let l = s.lang;
    html! {
        @if !errors.is_empty() {
            div.alert role="alert" { p { (l.t("Bitte prüfen Sie die markierten Angaben.", "Please check the marked fields.")) } }
        }
        form method="post" action=(action) novalidate {
            (csrf(s))
            div.form-grid { (columns) }
            (end)
        }
    }
}

/// A `select` named `name` with its label and message; `options` are (value, text).
pub fn select_field<K: Borrow<str> + Hash + Eq>(
    errors: &HashMap<K, String>,
    name: &str,
    label: &str,
    options: impl IntoIterator<Item = (&'static str, String)>,
    selected: &str,
) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name)
                aria-invalid=[aria_invalid(errors, name)]
                aria-describedby=[described(errors, name)] {
                @for (value, text) in options {
                    option value=(value) selected[selected == value] { (text) }
                }
            }
            (field_error(errors, name))
        }
    }
}

/// A checkbox `language` for each of the common languages, ticked where `chosen` has it.
pub fn language_boxes(l: Lang, chosen: &[String]) -> Markup {
    html! {
        @for code in i18n::COMMON_LANGUAGES {
            label { input type="checkbox" name="language" value=(code) checked[chosen.iter().any(|c| c == code)]; (i18n::language(l, code)) }
        }
    }
}

/// The message under a refused form field, tied to it by `aria-describedby`.
pub fn field_error<K: Borrow<str> + Hash + Eq>(errors: &HashMap<K, String>, name: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(name) {
            p.error id=(format!("{name}-error")) { (e) }
        }
    }
}

/// The `aria-describedby` of a field that has a message.
pub fn described<K: Borrow<str> + Hash + Eq>(
    errors: &HashMap<K, String>,
    name: &str,
) -> Option<String> {
    errors.contains_key(name).then(|| format!("{name}-error"))
}

/// The `aria-invalid` of a field: `"true"` when it has a message, else left out.
pub fn aria_invalid<K: Borrow<str> + Hash + Eq>(
    errors: &HashMap<K, String>,
    name: &str,
) -> Option<&'static str> {
    errors.contains_key(name).then_some("true")
}

//! The public intake form (`/anfrage/{org-slug}`): institutions ask for a volunteer
//! without an account. Server-rendered, German first with English, works without
//! JavaScript, validated with German messages, rate-limited, with a honeypot field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::requests::{CreateRequest, validate_new};
use crate::app::AppState;
use crate::store::{Actor, Organisation};

pub fn router() -> Router<AppState> {
    Router::new().route("/anfrage/{slug}", get(show).post(submit))
}

const KINDS: [(&str, &str); 9] = [
    ("behoerde", "Behörde / authority"),
    ("jobcenter", "Jobcenter"),
    (
        "auslaenderbehoerde",
        "Ausländerbehörde / immigration office",
    ),
    ("beratungsstelle", "Beratungsstelle / counselling service"),
    ("schule", "Schule / school"),
    ("kita", "Kita / day care"),
    ("arztpraxis", "Arztpraxis, Klinik / doctor, clinic"),
    ("migrantin", "Privatperson (Migrant:in) / private person"),
    ("sonstige", "Sonstige / other"),
];

const TOPICS: [(&str, &str); 8] = [
    ("behoerden", "Behörden / authorities"),
    ("gesundheit", "Gesundheit / health"),
    ("bildung", "Bildung / education"),
    ("erziehung", "Erziehung / parenting"),
    ("arbeit", "Arbeit / work"),
    ("beruf", "Beruf / career"),
    ("soziales", "Soziales / social matters"),
    ("wohnen", "Wohnen / housing"),
];

const LANGUAGES: [(&str, &str); 16] = [
    ("ar", "Arabisch"),
    ("fa", "Persisch (Farsi/Dari)"),
    ("ps", "Paschtu"),
    ("tr", "Türkisch"),
    ("ku", "Kurdisch"),
    ("uk", "Ukrainisch"),
    ("ru", "Russisch"),
    ("ro", "Rumänisch"),
    ("bg", "Bulgarisch"),
    ("pl", "Polnisch"),
    ("sq", "Albanisch"),
    ("ti", "Tigrinya"),
    ("so", "Somali"),
    ("fr", "Französisch"),
    ("en", "Englisch"),
    ("es", "Spanisch"),
];

type Fields = HashMap<String, String>;
type Errors = HashMap<&'static str, &'static str>;

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="de" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (CSS) }
            }
            body { main { (body) } }
        }
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1a1a1a}\
main{max-width:42rem;margin:0 auto;padding:1.5rem}h1{font-size:1.5rem}\
.en{color:#4a4a4a;font-size:.9em}label{display:block;font-weight:600;margin-top:1rem}\
input,select,textarea{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #767676;border-radius:4px}\
input[type=checkbox],input[type=radio]{width:auto}fieldset{border:1px solid #767676;border-radius:4px;margin-top:1rem}\
.error{color:#a4000f;font-weight:600}.hp{position:absolute;left:-10000px}\
button{margin-top:1.5rem;font:inherit;padding:.6rem 1.2rem;background:#004b87;color:#fff;border:0;border-radius:4px}\
:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}.langs label{display:inline-block;font-weight:400;margin-right:1rem}";

fn error_of(errors: &Errors, field: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(field) {
            p.error id=(format!("{field}-fehler")) { (e) }
        }
    }
}

fn form(org: &Organisation, f: &Fields, errors: &Errors) -> Markup {
    let v = |k: &str| f.get(k).cloned().unwrap_or_default();
    let chosen: Vec<String> = f
        .get("sprachen")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    page(
        "Anfrage stellen",
        html! {
            h1 { "Anfrage an " (org.name) } p.en { "Request a volunteer (Integrationslotse)" }
            p { "Mit diesem Formular bitten Sie um Begleitung durch eine Integrationslotsin oder einen Integrationslotsen. Bitte nennen Sie keine Namen: ein Kürzel genügt." }
            p.en { "Please do not enter names; initials are enough." }
            @if !errors.is_empty() {
                div role="alert" { p.error { "Bitte prüfen Sie die markierten Angaben. " span.en { "Please check the marked fields." } } }
            }
            form method="post" novalidate {
                label for="einrichtung_art" { "Art der Einrichtung " span.en { "Kind of institution" } }
                select id="einrichtung_art" name="einrichtung_art" {
                    @for (k, label) in KINDS { option value=(k) selected[v("einrichtung_art") == k] { (label) } }
                }
                label for="einrichtung_name" { "Name der Einrichtung " span.en { "Name of the institution" } }
                input id="einrichtung_name" name="einrichtung_name" value=(v("einrichtung_name")) required maxlength="120";
                (error_of(errors, "einrichtung_name"))
                label for="kontakt" { "Kontakt für Rückfragen (Telefon oder E-Mail, freiwillig) " span.en { "Contact for questions (optional)" } }
                input id="kontakt" name="kontakt" value=(v("kontakt")) maxlength="200";
                (error_of(errors, "kontakt"))
                label for="thema" { "Thema " span.en { "Topic" } }
                select id="thema" name="thema" {
                    @for (k, label) in TOPICS { option value=(k) selected[v("thema") == k] { (label) } }
                }
                fieldset.langs {
                    legend { "Sprachen " span.en { "Languages" } }
                    @for (code, name) in LANGUAGES {
                        label { input type="checkbox" name="sprache" value=(code) checked[chosen.iter().any(|c| c == code)]; " " (name) }
                    }
                    label for="weitere_sprachen" { "Weitere Sprachen (Kürzel wie „hy“, durch Komma getrennt) " span.en { "Other languages (ISO codes)" } }
                    input id="weitere_sprachen" name="weitere_sprachen" value=(v("weitere_sprachen")) maxlength="60";
                    (error_of(errors, "sprachen"))
                }
                label for="datum" { "Datum " span.en { "Date" } }
                input id="datum" type="date" name="datum" value=(v("datum")) required;
                (error_of(errors, "datum"))
                label for="von" { "Von " span.en { "From" } }
                input id="von" type="time" name="von" value=(v("von")) required;
                label for="bis" { "Bis " span.en { "To" } }
                input id="bis" type="time" name="bis" value=(v("bis")) required;
                (error_of(errors, "zeit"))
                label for="stadtteil" { "Stadtteil oder Ort (grob) " span.en { "District (coarse)" } }
                input id="stadtteil" name="stadtteil" value=(v("stadtteil")) required maxlength="80";
                (error_of(errors, "stadtteil"))
                label for="adresse" { "Genaue Adresse (nur für die zugeteilte Person sichtbar) " span.en { "Exact address (only shown to the assigned volunteer)" } }
                input id="adresse" name="adresse" value=(v("adresse")) maxlength="200";
                (error_of(errors, "adresse"))
                fieldset {
                    legend { "Dringlichkeit " span.en { "Urgency" } }
                    label { input type="radio" name="dringlichkeit" value="normal" checked[v("dringlichkeit") != "dringend"]; " normal" }
                    label { input type="radio" name="dringlichkeit" value="dringend" checked[v("dringlichkeit") == "dringend"]; " dringend / urgent" }
                }
                label for="person" { "Kürzel der Person (z. B. Initialen, freiwillig) " span.en { "Initials of the person (optional)" } }
                input id="person" name="person" value=(v("person")) maxlength="40";
                (error_of(errors, "person"))
                label for="beschreibung" { "Worum geht es? (kurz, ohne Namen) " span.en { "What is it about? (short, no names)" } }
                textarea id="beschreibung" name="beschreibung" rows="4" maxlength="1000" { (v("beschreibung")) }
                (error_of(errors, "beschreibung"))
                div.hp aria-hidden="true" {
                    label for="website" { "Website (bitte leer lassen)" }
                    input id="website" name="website" tabindex="-1" autocomplete="off";
                }
                button type="submit" { "Anfrage senden " span { "/ Send request" } }
            }
        },
    )
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            page(
                "Nicht gefunden",
                html! { h1 { "Dieses Netzwerk gibt es hier nicht." } p.en { "No such network." } },
            )
            .into_string(),
        ),
    )
        .into_response()
}

async fn organisation(state: &AppState, slug: &str) -> Result<Option<Organisation>, Response> {
    if slug.len() > 100 {
        return Ok(None);
    }
    state.store.organisation_by_slug(slug).await.map_err(|e| {
        tracing::error!(error = %e, "intake: organisation lookup failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("Interner Fehler / internal error".to_owned()),
        )
            .into_response()
    })
}

async fn show(State(state): State<AppState>, Path(slug): Path<String>) -> Response {
    match organisation(&state, &slug).await {
        Ok(Some(org)) => {
            Html(form(&org, &Fields::new(), &Errors::new()).into_string()).into_response()
        }
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

/// Reads the urlencoded body, keeping every `sprache` checkbox.
fn parse(body: &[u8]) -> Fields {
    let mut fields = Fields::new();
    let mut languages = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if k == "sprache" {
            languages.push(v.into_owned());
        } else {
            fields.insert(k.into_owned(), v.into_owned());
        }
    }
    fields.insert("sprachen".into(), languages.join(","));
    fields
}

/// Local date and time (Europe/Berlin) to milliseconds.
fn local_ms(date: &str, time: &str) -> Option<i64> {
    let dt: jiff::civil::DateTime = format!("{date}T{time}").parse().ok()?;
    let zoned = dt
        .to_zoned(jiff::tz::TimeZone::get(crate::matching::LOCAL_TZ).ok()?)
        .ok()?;
    Some(zoned.timestamp().as_millisecond())
}

fn validate(f: &Fields) -> Result<CreateRequest, Errors> {
    let mut errors = Errors::new();
    let get = |k: &str| f.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    if get("einrichtung_name").is_empty() {
        errors.insert(
            "einrichtung_name",
            "Bitte geben Sie den Namen der Einrichtung an.",
        );
    }
    if get("stadtteil").is_empty() {
        errors.insert("stadtteil", "Bitte geben Sie den Stadtteil oder Ort an.");
    }
    let mut languages: Vec<String> = get("sprachen")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    for code in get("weitere_sprachen")
        .split([',', ' '])
        .filter(|s| !s.is_empty())
    {
        let code = code.to_lowercase();
        if isolang::Language::from_639_1(&code).is_none() {
            errors.insert(
                "sprachen",
                "Unbekanntes Sprachkürzel. Bitte zweistellige Kürzel wie „hy“ verwenden.",
            );
        }
        languages.push(code);
    }
    if languages.is_empty() && !errors.contains_key("sprachen") {
        errors.insert("sprachen", "Bitte wählen Sie mindestens eine Sprache.");
    }
    let start = local_ms(&get("datum"), &get("von"));
    let end = local_ms(&get("datum"), &get("bis"));
    match (start, end) {
        (None, _) if get("datum").is_empty() => {
            errors.insert("datum", "Bitte geben Sie ein Datum an.");
        }
        (None, _) | (_, None) => {
            errors.insert(
                "zeit",
                "Bitte geben Sie Datum und Uhrzeit vollständig an (z. B. 14:00 bis 15:30).",
            );
        }
        (Some(s), Some(e)) if e <= s => {
            errors.insert("zeit", "Das Ende muss nach dem Beginn liegen.");
        }
        (Some(_), Some(e)) if e < crate::store::now_ms() => {
            errors.insert("datum", "Der Termin liegt in der Vergangenheit.");
        }
        _ => {}
    }
    for (field, max, message) in [
        ("einrichtung_name", 120, "Höchstens 120 Zeichen."),
        ("kontakt", 200, "Höchstens 200 Zeichen."),
        ("stadtteil", 80, "Höchstens 80 Zeichen."),
        ("adresse", 200, "Höchstens 200 Zeichen."),
        (
            "person",
            40,
            "Bitte nur ein kurzes Kürzel (höchstens 40 Zeichen).",
        ),
        ("beschreibung", 1000, "Höchstens 1000 Zeichen."),
    ] {
        if get(field).chars().count() > max {
            errors.insert(field, message);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let iso = |ms: i64| crate::timefmt::format_ms(ms);
    let optional = |k: &str| Some(get(k)).filter(|s| !s.is_empty());
    Ok(CreateRequest {
        institution_kind: get("einrichtung_art"),
        institution_name: get("einrichtung_name"),
        contact: optional("kontakt"),
        person_label: optional("person"),
        topic: get("thema"),
        languages,
        starts_at: iso(start.unwrap_or_default()),
        ends_at: iso(end.unwrap_or_default()),
        place_area: get("stadtteil"),
        place_address: optional("adresse"),
        urgency: if get("dringlichkeit") == "dringend" {
            "dringend".into()
        } else {
            "normal".into()
        },
        description: get("beschreibung"),
    })
}

fn thanks(org: &Organisation) -> Markup {
    page(
        "Danke",
        html! {
            h1 { "Vielen Dank! Ihre Anfrage ist eingegangen." }
            p.en { "Thank you, your request has been received." }
            p { "Die Koordination von " (org.name) " meldet sich, sobald eine Lotsin oder ein Lotse zugesagt hat." }
            p { a href="" { "Weitere Anfrage stellen / another request" } }
        },
    )
}

async fn submit(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let org = match organisation(&state, &slug).await {
        Ok(Some(org)) => org,
        Ok(None) => return not_found(),
        Err(r) => return r,
    };
    let key = format!("intake-address:{}", peer.ip());
    let now = Instant::now();
    if state.limits.intake_address.check(&key, now).is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Html(page("Zu viele Anfragen", html! { h1 { "Zu viele Anfragen in kurzer Zeit." } p { "Bitte versuchen Sie es später noch einmal oder rufen Sie die Koordination an." } p.en { "Too many requests; please try again later." } }).into_string()),
        )
            .into_response();
    }
    // Every submission counts towards the address's budget, accepted or not.
    state.limits.intake_address.failure(&key, now);
    let fields = parse(&body);
    if fields.get("website").is_some_and(|v| !v.trim().is_empty()) {
        tracing::info!("intake: honeypot filled, nothing created");
        return Html(thanks(&org).into_string()).into_response();
    }
    let checked = validate(&fields).and_then(|body| {
        validate_new(body, "intake").map_err(|e| {
            let mut errors = Errors::new();
            tracing::info!(error = %e, "intake: rejected after form checks");
            errors.insert("beschreibung", "Bitte prüfen Sie Ihre Angaben.");
            errors
        })
    });
    match checked {
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(form(&org, &fields, &errors).into_string()),
        )
            .into_response(),
        Ok(new) => match state
            .store
            .create_request(
                &org.id,
                Actor {
                    kind: "intake",
                    id: "form",
                },
                new,
            )
            .await
        {
            Ok(r) => {
                // The coordinators' notices were queued with the request.
                state.push.wake();
                tracing::info!(request_id = %r.id, "intake: request created");
                Html(thanks(&org).into_string()).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "intake: could not store request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html(page("Fehler", html! { h1 { "Ihre Anfrage konnte nicht gespeichert werden." } p { "Bitte versuchen Sie es in einigen Minuten noch einmal." } p.en { "Your request could not be saved; please try again in a few minutes." } }).into_string()),
                )
                    .into_response()
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_berlin() {
        // Winter (CET, +01:00) and summer (CEST, +02:00).
        assert_eq!(
            local_ms("2026-03-04", "14:00"),
            crate::timefmt::parse_ms("2026-03-04T13:00:00Z")
        );
        assert_eq!(
            local_ms("2026-07-01", "09:30"),
            crate::timefmt::parse_ms("2026-07-01T07:30:00Z")
        );
        assert_eq!(local_ms("2026-02-30", "09:30"), None);
    }

    #[test]
    fn checkboxes_are_collected() {
        let f = parse(b"sprache=ar&sprache=fa&einrichtung_name=Jobcenter+Mitte");
        assert_eq!(f["sprachen"], "ar,fa");
        assert_eq!(f["einrichtung_name"], "Jobcenter Mitte");
    }
}

//! The public intake form (`/anfrage/{org-slug}`): institutions ask for a volunteer
//! without an account. Server-rendered, German first with English, works without
//! JavaScript, validated with German messages, rate-limited, with a honeypot field.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::app::AppState;
use crate::app::address::ClientAddr;
use crate::store::{Actor, Invalid, NewRequest, Organisation, RequestDraft, now_ms};
use crate::timefmt;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/anfrage/{slug}", get(show).post(submit))
        .layer(axum::middleware::map_response(content_policy))
}

/// The form's only style is inline (the page must work without anything else loaded);
/// nothing else may run or load, and the form posts only here.
async fn content_policy(mut res: Response) -> Response {
    res.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    res
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
type Errors = HashMap<&'static str, String>;

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

/// A text field `name` with its label (German, then English) and its message.
fn text_field(
    errors: &Errors,
    name: &str,
    (de, en): (&str, &str),
    value: &str,
    required: bool,
    max: usize,
) -> Markup {
    html! {
        label for=(name) { (de) " " span.en { (en) } }
        input id=(name) name=(name) value=(value) required[required] maxlength=(max);
        (error_of(errors, name))
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
                (error_of(errors, "einrichtung_art"))
                (text_field(errors, "einrichtung_name", ("Name der Einrichtung", "Name of the institution"),
                    &v("einrichtung_name"), true, 120))
                (text_field(errors, "kontakt", ("Kontakt für Rückfragen (Telefon oder E-Mail, freiwillig)", "Contact for questions (optional)"),
                    &v("kontakt"), false, 200))
                label for="thema" { "Thema " span.en { "Topic" } }
                select id="thema" name="thema" {
                    @for (k, label) in TOPICS { option value=(k) selected[v("thema") == k] { (label) } }
                }
                (error_of(errors, "thema"))
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
                (text_field(errors, "stadtteil", ("Stadtteil oder Ort (grob)", "District (coarse)"),
                    &v("stadtteil"), true, 80))
                (text_field(errors, "adresse", ("Genaue Adresse (nur für die zugeteilte Person sichtbar)", "Exact address (only shown to the assigned volunteer)"),
                    &v("adresse"), false, 200))
                fieldset {
                    legend { "Dringlichkeit " span.en { "Urgency" } }
                    label { input type="radio" name="dringlichkeit" value="normal" checked[v("dringlichkeit") != "dringend"]; " normal" }
                    label { input type="radio" name="dringlichkeit" value="dringend" checked[v("dringlichkeit") == "dringend"]; " dringend / urgent" }
                    (error_of(errors, "dringlichkeit"))
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

/// Checks the form by the store's rules (the API's and the dashboard's too), worded here
/// for the public: German, plain, "Sie".
fn validate(f: &Fields, now: i64) -> Result<NewRequest, Errors> {
    let get = |k: &str| f.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    let languages: Vec<String> = get("sprachen")
        .split(',')
        .chain(get("weitere_sprachen").split([',', ' ', ';']))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let draft = RequestDraft {
        institution_kind: get("einrichtung_art"),
        institution_name: get("einrichtung_name"),
        contact: get("kontakt"),
        person_label: get("person"),
        topic: get("thema"),
        languages,
        starts_at: timefmt::local_ms(&get("datum"), &get("von")),
        ends_at: timefmt::local_ms(&get("datum"), &get("bis")),
        place_area: get("stadtteil"),
        place_address: get("adresse"),
        urgency: get("dringlichkeit"),
        description: get("beschreibung"),
    };
    NewRequest::check(draft, "intake", Some(now)).map_err(|refused| {
        let mut errors = Errors::new();
        for (field, why) in &refused.0 {
            let (at, message) = message(field, why, get("datum").is_empty());
            errors.entry(at).or_insert(message);
        }
        errors
    })
}

/// Where on the form a refusal of the API's `field` shows, and what it says.
fn message(field: &str, why: &Invalid, no_date: bool) -> (&'static str, String) {
    let at = match field {
        "institution_kind" => "einrichtung_art",
        "institution_name" => "einrichtung_name",
        "contact" => "kontakt",
        "person_label" => "person",
        "topic" => "thema",
        "languages" => "sprachen",
        "place_area" => "stadtteil",
        "place_address" => "adresse",
        "urgency" => "dringlichkeit",
        "starts_at" | "ends_at" if no_date || *why == Invalid::InThePast => "datum",
        "starts_at" | "ends_at" => "zeit",
        _ => "beschreibung",
    };
    let (code, detail) = why.reason();
    let text = match (at, code) {
        ("einrichtung_name", "empty") => "Bitte geben Sie den Namen der Einrichtung an.".into(),
        ("stadtteil", "empty") => "Bitte geben Sie den Stadtteil oder Ort an.".into(),
        ("einrichtung_art", _) => "Bitte wählen Sie die Art der Einrichtung.".into(),
        ("thema", _) => "Bitte wählen Sie ein Thema.".into(),
        ("dringlichkeit", _) => "Bitte wählen Sie die Dringlichkeit.".into(),
        ("datum", "no_time") => "Bitte geben Sie ein Datum an.".into(),
        ("person", "too_long") => {
            format!("Bitte nur ein kurzes Kürzel (höchstens {detail} Zeichen).")
        }
        (_, "too_long") => format!("Höchstens {detail} Zeichen."),
        (_, "control_characters") => "Bitte nur Text eingeben, ohne Steuerzeichen.".into(),
        (_, "no_language") => "Bitte wählen Sie mindestens eine Sprache.".into(),
        (_, "too_many_languages") => format!("Bitte höchstens {detail} Sprachen."),
        (_, "not_a_language") => format!(
            "„{detail}“ ist kein bekanntes Sprachkürzel. Bitte zweistellige Kürzel wie „hy“ verwenden."
        ),
        (_, "no_time") => {
            "Bitte geben Sie Datum und Uhrzeit vollständig an (z. B. 14:00 bis 15:30).".into()
        }
        (_, "end_before_start") => "Das Ende muss nach dem Beginn liegen.".into(),
        (_, "window_too_long") => format!("Ein Termin dauert höchstens {detail} Stunden."),
        (_, "in_the_past") => "Der Termin liegt in der Vergangenheit.".into(),
        _ => "Bitte prüfen Sie diese Angabe.".into(),
    };
    (at, text)
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
    ClientAddr(client): ClientAddr,
    body: axum::body::Bytes,
) -> Response {
    let org = match organisation(&state, &slug).await {
        Ok(Some(org)) => org,
        Ok(None) => return not_found(),
        Err(r) => return r,
    };
    let key = format!("intake-address:{}", client);
    // Every submission counts towards the address's budget, accepted or not, counted
    // in the same step as the check.
    if let Err(refused) = state.limits.intake_address.attempt(&key).await {
        if let crate::ratelimit::Refused::Store(e) = refused {
            tracing::error!(error = %e, "intake: rate limit unavailable");
            let text = "Interner Fehler / internal error".to_owned();
            return (StatusCode::INTERNAL_SERVER_ERROR, Html(text)).into_response();
        }
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Html(page("Zu viele Anfragen", html! { h1 { "Zu viele Anfragen in kurzer Zeit." } p { "Bitte versuchen Sie es später noch einmal oder rufen Sie die Koordination an." } p.en { "Too many requests; please try again later." } }).into_string()),
        )
            .into_response();
    }
    let fields = parse(&body);
    if fields.get("website").is_some_and(|v| !v.trim().is_empty()) {
        tracing::info!("intake: honeypot filled, nothing created");
        return Html(thanks(&org).into_string()).into_response();
    }
    match validate(&fields, now_ms()) {
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
    fn the_form_offers_what_the_rules_accept() {
        let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, crate::store::INSTITUTION_KINDS);
        let topics: Vec<&str> = TOPICS.iter().map(|(k, _)| *k).collect();
        assert_eq!(topics, crate::store::Volunteer::TOPICS);
    }

    fn form(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn refusals_are_worded_at_their_fields() {
        let now = crate::timefmt::parse_ms("2026-03-01T12:00:00Z").unwrap();
        let good = [
            ("einrichtung_art", "schule"),
            ("einrichtung_name", "Grundschule Nord"),
            ("thema", "bildung"),
            ("sprachen", "uk"),
            ("datum", "2026-03-04"),
            ("von", "08:00"),
            ("bis", "09:00"),
            ("stadtteil", "Nordstadt"),
        ];
        let ok = validate(&form(&good), now).unwrap();
        assert_eq!((ok.urgency.as_str(), ok.source), ("normal", "intake"));
        assert_eq!(ok.person_label, "—");

        let mut bad = good.to_vec();
        bad.retain(|(k, _)| !["einrichtung_art", "sprachen", "bis"].contains(k));
        bad.extend([
            ("einrichtung_art", "verein"),
            ("weitere_sprachen", "xx"),
            ("bis", "09:00"),
            ("datum", "2026-02-27"),
            ("dringlichkeit", "sofort"),
        ]);
        let errors = validate(&form(&bad), now).unwrap_err();
        assert_eq!(
            errors["einrichtung_art"],
            "Bitte wählen Sie die Art der Einrichtung."
        );
        assert!(errors["sprachen"].contains("„xx“"), "{errors:?}");
        assert_eq!(errors["datum"], "Der Termin liegt in der Vergangenheit.");
        assert_eq!(
            errors["dringlichkeit"],
            "Bitte wählen Sie die Dringlichkeit."
        );
        assert_eq!(errors.len(), 4, "{errors:?}");

        let mut long = good.to_vec();
        long.retain(|(k, _)| *k != "bis");
        long.push(("bis", "kurz nach neun"));
        let errors = validate(&form(&long), now).unwrap_err();
        assert!(errors["zeit"].starts_with("Bitte geben Sie Datum und Uhrzeit"));
    }

    #[test]
    fn checkboxes_are_collected() {
        let f = parse(b"sprache=ar&sprache=fa&einrichtung_name=Jobcenter+Mitte");
        assert_eq!(f["sprachen"], "ar,fa");
        assert_eq!(f["einrichtung_name"], "Jobcenter Mitte");
    }
}

//! Einstellungen: what the network decides for itself, starting with how long a phone
//! keeps its cases readable without contact (the device lease). Changes are audited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::i18n::{self, Lang};
use super::layout::{self, Nav, aria_invalid, csrf, described, field_error, html_response};
use super::session::{Posted, Session};
use crate::app::AppState;
use crate::store::OrganisationSettings;

type Errors = std::collections::HashMap<&'static str, String>;

fn form(s: &Session, days: &str, errors: &Errors, status: StatusCode) -> Response {
    let l = s.lang;
    let saved = s.here.contains("saved=1");
    html_response(
        status,
        layout::page(
            s,
            Nav::Settings,
            l.t("Einstellungen", "Settings"),
            html! {
                h1 { (l.t("Einstellungen", "Settings")) }
                @if saved {
                    p role="status" { (l.t("Gespeichert.", "Saved.")) }
                }
                form method="post" action="/dashboard/settings" novalidate {
                    (csrf(s))
                    div.field {
                        label for="device_lease_days" { (l.t("Telefone ohne Verbindung: Fälle lesbar für (Tage)", "Phones without contact: cases readable for (days)")) }
                        p.muted id="device_lease_days-hint" { (l.t(
                            "Ein Telefon, das so lange keine Verbindung zum Server hatte, vernichtet seine Schlüssel: Die Fälle darauf sind dann nicht mehr lesbar, auch wenn jemand ein verlorenes Telefon Wochen später öffnet. Bei der nächsten Verbindung holt sich ein weiter berechtigtes Telefon nach der Neuanmeldung alles wieder. 1 bis 365, üblich sind 30.",
                            "A phone that had no contact with the server for this long destroys its keys: its cases can no longer be read, even if someone opens a lost phone weeks later. A phone that is still allowed gets everything back after enrolling again. 1 to 365; 30 is usual.")) }
                        input id="device_lease_days" name="device_lease_days" type="number" min="1" max="365" value=(days) required
                            aria-invalid=[aria_invalid(errors, "device_lease_days")]
                            aria-describedby=(described(errors, "device_lease_days").unwrap_or_else(|| "device_lease_days-hint".into()));
                        (field_error(errors, "device_lease_days"))
                    }
                    button type="submit" { (l.t("Speichern", "Save")) }
                }
            },
        ),
    )
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    match state.store.organisation_settings(s.org()).await {
        Ok(Some(settings)) => form(
            &s,
            &settings.device_lease_days.to_string(),
            &Errors::new(),
            StatusCode::OK,
        ),
        Ok(None) => layout::not_found(s.lang),
        Err(e) => layout::failed(s.lang, "settings", e),
    }
}

pub async fn update(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l: Lang = s.lang;
    let raw = f.get("device_lease_days");
    // Not a number is refused like a number out of range.
    let days = OrganisationSettings::check_lease_days(raw.parse().unwrap_or(0));
    let settings = match days {
        Ok(device_lease_days) => OrganisationSettings { device_lease_days },
        Err(why) => {
            let (code, detail) = why.reason();
            let errors = Errors::from([("device_lease_days", i18n::invalid(l, code, &detail))]);
            return form(&s, &raw, &errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    match state
        .store
        .set_organisation_settings(s.org(), s.caller.id(), &settings)
        .await
    {
        Ok(()) => Redirect::to("/dashboard/settings?saved=1").into_response(),
        Err(e) => layout::failed(l, "save settings", e),
    }
}

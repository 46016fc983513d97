//! Einstellungen: what the network decides for itself: how long a phone keeps its cases
//! readable without contact (the device lease), and how long closed cases, the personal
//! fields of finished requests and the audit trail are kept (the purge job carries these
//! out every hour). Changes are audited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::i18n::{self, Lang};
use super::layout::{self, Nav, aria_invalid, csrf, described, field_error, html_response};
use super::session::{Posted, Session};
use crate::app::AppState;
use crate::store::{Invalid, OrganisationSettings};

type Errors = std::collections::HashMap<&'static str, String>;

/// One number of the form: its name, its rule, and where it lives in the settings.
struct Setting {
    name: &'static str,
    label: (&'static str, &'static str),
    hint: (&'static str, &'static str),
    range: std::ops::RangeInclusive<u32>,
    check: fn(i64) -> Result<u32, Invalid>,
    field: fn(&mut OrganisationSettings) -> &mut u32,
}

static SETTINGS: [Setting; 4] = [
    Setting {
        name: "device_lease_days",
        label: (
            "Telefone ohne Verbindung: Fälle lesbar für (Tage)",
            "Phones without contact: cases readable for (days)",
        ),
        hint: (
            "Ein Telefon, das so lange keine Verbindung zum Server hatte, vernichtet seine Schlüssel: Die Fälle darauf sind dann nicht mehr lesbar, auch wenn jemand ein verlorenes Telefon Wochen später öffnet. Bei der nächsten Verbindung holt sich ein weiter berechtigtes Telefon nach der Neuanmeldung alles wieder. 1 bis 365, üblich sind 30.",
            "A phone that had no contact with the server for this long destroys its keys: its cases can no longer be read, even if someone opens a lost phone weeks later. A phone that is still allowed gets everything back after enrolling again. 1 to 365; 30 is usual.",
        ),
        range: OrganisationSettings::LEASE_DAYS,
        check: OrganisationSettings::check_lease_days,
        field: |s| &mut s.device_lease_days,
    },
    Setting {
        name: "case_retention_months",
        label: (
            "Abgeschlossene Fälle löschen nach (Monaten)",
            "Delete closed cases after (months)",
        ),
        hint: (
            "So viele Monate nach dem Abschluss wird ein Fall mit allen Notizen, Terminen und Stunden gelöscht, auf dem Server und auf den Telefonen. Für die Berichte bleiben nur Zahlen ohne Personenbezug (Monat, Thema, Sprachen, Stunden). 0 bis 120, üblich sind 24; 0 löscht abgeschlossene Fälle bei der nächsten stündlichen Löschung.",
            "This many months after closing, a case is deleted with all its notes, appointments and hours, on the server and on the phones. The reports keep only figures that identify nobody (month, topic, languages, hours). 0 to 120; 24 is usual; 0 deletes closed cases at the next hourly purge.",
        ),
        range: OrganisationSettings::CASE_MONTHS,
        check: OrganisationSettings::check_case_months,
        field: |s| &mut s.case_retention_months,
    },
    Setting {
        name: "request_retention_days",
        label: (
            "Erledigte Anfragen: persönliche Angaben löschen nach (Tagen)",
            "Finished requests: erase personal details after (days)",
        ),
        hint: (
            "So viele Tage, nachdem eine Anfrage erledigt, abgesagt oder abgelaufen ist, werden Kontakt, Adresse, Beschreibung und Kennung der Person gelöscht. Thema, Sprachen und Zeitpunkt bleiben für die Berichte. 0 bis 730, üblich sind 30; 0 löscht bei der nächsten stündlichen Löschung.",
            "This many days after a request was done, cancelled or expired, its contact, address, description and person label are erased. Topic, languages and time stay for the reports. 0 to 730; 30 is usual; 0 erases at the next hourly purge.",
        ),
        range: OrganisationSettings::REQUEST_DAYS,
        check: OrganisationSettings::check_request_days,
        field: |s| &mut s.request_retention_days,
    },
    Setting {
        name: "audit_retention_months",
        label: (
            "Protokoll (wer hat was gelesen und geändert) aufbewahren für (Monate)",
            "Keep the audit trail (who read and changed what) for (months)",
        ),
        hint: (
            "Ältere Einträge des Protokolls werden gelöscht. 1 bis 120, üblich sind 24.",
            "Older entries of the audit trail are deleted. 1 to 120; 24 is usual.",
        ),
        range: OrganisationSettings::AUDIT_MONTHS,
        check: OrganisationSettings::check_audit_months,
        field: |s| &mut s.audit_retention_months,
    },
];

fn field(l: Lang, setting: &Setting, value: &str, errors: &Errors) -> Markup {
    let name = setting.name;
    let hint = format!("{name}-hint");
    html! {
        div.field {
            label for=(name) { (l.t(setting.label.0, setting.label.1)) }
            p.muted id=(hint) { (l.t(setting.hint.0, setting.hint.1)) }
            input id=(name) name=(name) type="number"
                min=(setting.range.start()) max=(setting.range.end()) value=(value) required
                aria-invalid=[aria_invalid(errors, name)]
                aria-describedby=(described(errors, name).unwrap_or(hint));
            (field_error(errors, name))
        }
    }
}

/// `values` in the order of [`SETTINGS`].
fn form(s: &Session, values: &[String; 4], errors: &Errors, status: StatusCode) -> Response {
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
                @if s.caller.coordinator.is_leitung() {
                    form method="post" action="/dashboard/settings" novalidate {
                        (csrf(s))
                        @for (setting, value) in SETTINGS.iter().zip(values) {
                            (field(l, setting, value, errors))
                        }
                        button type="submit" { (l.t("Speichern", "Save")) }
                    }
                } @else {
                    p.muted { (l.t(
                        "Die Einstellungen ändert die Leitung. So sind sie gerade:",
                        "Leitung changes the settings. This is how they are now:")) }
                    dl.facts {
                        @for (setting, value) in SETTINGS.iter().zip(values) {
                            dt { (l.t(setting.label.0, setting.label.1)) }
                            dd { (value) }
                        }
                    }
                }
            },
        ),
    )
}

fn values_of(settings: &OrganisationSettings) -> [String; 4] {
    let mut settings = settings.clone();
    SETTINGS
        .each_ref()
        .map(|s| (s.field)(&mut settings).to_string())
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    match state.store.organisation_settings(s.org()).await {
        Ok(Some(settings)) => form(&s, &values_of(&settings), &Errors::new(), StatusCode::OK),
        Ok(None) => layout::not_found(s.lang),
        Err(e) => layout::failed(s.lang, "settings", e),
    }
}

pub async fn update(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l: Lang = s.lang;
    if !s.caller.coordinator.is_leitung() {
        return layout::leitung_only(l);
    }
    let mut settings = match state.store.organisation_settings(s.org()).await {
        Ok(Some(settings)) => settings,
        Ok(None) => return layout::not_found(l),
        Err(e) => return layout::failed(l, "settings", e),
    };
    let mut values = values_of(&settings);
    let mut errors = Errors::new();
    for (setting, shown) in SETTINGS.iter().zip(&mut values) {
        // A field the form did not send (an older page) keeps its value.
        if f.all(setting.name).is_empty() {
            continue;
        }
        let raw = f.get(setting.name);
        // Not a number is refused like a number out of range.
        match (setting.check)(raw.parse().unwrap_or(-1)) {
            Ok(v) => *(setting.field)(&mut settings) = v,
            Err(why) => {
                let (code, detail) = why.reason();
                errors.insert(setting.name, i18n::invalid(l, code, &detail));
            }
        }
        *shown = raw;
    }
    if !errors.is_empty() {
        return form(&s, &values, &errors, StatusCode::UNPROCESSABLE_ENTITY);
    }
    match state
        .store
        .set_organisation_settings(s.org(), s.caller.id(), &settings)
        .await
    {
        Ok(()) => Redirect::to("/dashboard/settings?saved=1").into_response(),
        Err(e) => layout::failed(l, "save settings", e),
    }
}

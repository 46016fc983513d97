//! Team (Leitung only): the organisation's coordinators with role, status and second
//! factor; inviting by a one-time link, changing roles, deactivating (their sessions end
//! at once, an open dashboard goes to the login), new password links, resetting a lost
//! second factor, and whether everyone needs a second factor. A Koordination gets the
//! 403 page. Links are shown once here, and e-mailed when SMTP is configured.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::i18n::{self, Lang};
use super::layout::{self, Nav, csrf, html_response};
use super::session::{Posted, Session};
use crate::app::AppState;
use crate::app::address::public_base;
use crate::app::error::Error;
use crate::app::team::IssuedLink;
use crate::store::{Coordinator, Role, StoreError};

fn role_name(l: Lang, role: Role) -> &'static str {
    match role {
        Role::Leitung => l.t("Leitung", "Leitung (management)"),
        Role::Koordination => l.t("Koordination", "Koordination (coordinator)"),
    }
}

fn status(l: Lang, c: &Coordinator) -> Markup {
    if !c.is_active() {
        layout::badge("closed", l.t("deaktiviert", "deactivated"))
    } else if c.is_invited() {
        layout::badge("open", l.t("eingeladen", "invited"))
    } else {
        layout::badge("ok", l.t("aktiv", "active"))
    }
}

/// What the page shows above the list after an action.
enum Outcome {
    None,
    Link(IssuedLink),
    Error(String),
}

async fn render(
    state: &AppState,
    s: &Session,
    outcome: Outcome,
    status_code: StatusCode,
) -> Response {
    let l = s.lang;
    let (team, all) = match tokio::try_join!(
        state.store.coordinators_of(s.org()),
        state.store.two_factor_for_all(s.org())
    ) {
        Ok(found) => found,
        Err(e) => return layout::failed(l, "team", e),
    };
    let saved = s.here.contains("saved=1");
    let body = html! {
        h1 { (l.t("Team", "Team")) }
        p { (l.t(
            "Die Leitung verwaltet das Team, die Einstellungen und Löschungen; die Koordination macht die tägliche Arbeit mit Anfragen, Fällen und Lotsinnen und Lotsen.",
            "Leitung manages the team, the settings and deletions; Koordination does the daily work with requests, cases and volunteers.")) }
        @if saved { p role="status" { (l.t("Gespeichert.", "Saved.")) } }
        @match &outcome {
            Outcome::Link(issued) => (link_box(l, issued, state.mail.enabled())),
            Outcome::Error(message) => div.alert role="alert" { p { (message) } },
            Outcome::None => {},
        }
        (layout::table_wrap(l, l.t("Koordinatorinnen und Koordinatoren", "Coordinators"), html! {
            table {
                caption { (l.t("Koordinatorinnen und Koordinatoren", "Coordinators")) }
                thead { tr {
                    th scope="col" { (l.t("Name", "Name")) }
                    th scope="col" { (l.t("E-Mail", "E-mail")) }
                    th scope="col" { (l.t("Rolle", "Role")) }
                    th scope="col" { (l.t("Status", "Status")) }
                    th scope="col" { (l.t("Zweiter Faktor", "Second factor")) }
                    th scope="col" { (l.t("Ändern", "Change")) }
                } }
                tbody {
                    @for c in &team {
                        (row(s, c))
                    }
                }
            }
        }))
        section.card aria-labelledby="einladen" {
            h2 #einladen { (l.t("Koordination einladen", "Invite a coordinator")) }
            p.muted { @if state.mail.enabled() {
                (l.t("Die Einladung geht per E-Mail hinaus; den Link sehen Sie hier auch.", "The invitation goes out by e-mail; you also see the link here."))
            } @else {
                (l.t("Auf diesem Server ist kein E-Mail-Versand eingerichtet: Sie sehen den Einladungslink hier und geben ihn persönlich weiter.", "This server sends no e-mail: you see the invitation link here and hand it over in person."))
            } }
            form method="post" action="/dashboard/team/invite" {
                (csrf(s))
                div.field {
                    label for="invite-name" { (l.t("Name", "Name")) }
                    input #invite-name name="display_name" required maxlength="120" autocomplete="off";
                }
                div.field {
                    label for="invite-email" { (l.t("E-Mail-Adresse", "E-mail address")) }
                    input #invite-email name="email" type="email" required maxlength="320" autocomplete="off";
                }
                div.field {
                    label for="invite-role" { (l.t("Rolle", "Role")) }
                    select #invite-role name="role" {
                        option value="koordination" selected { (role_name(l, Role::Koordination)) }
                        option value="leitung" { (role_name(l, Role::Leitung)) }
                    }
                }
                button type="submit" { (l.t("Einladen", "Invite")) }
            }
        }
        section.card aria-labelledby="zwei-faktor" {
            h2 #zwei-faktor { (l.t("Zweiter Faktor", "Second factor")) }
            p { (l.t(
                "Wer sich anmeldet, sieht Daten vieler Menschen, auch besonders schützenswerte. Die Leitung meldet sich deshalb immer mit einem zweiten Faktor (Code aus einer Authenticator-App) an. Die Organisation kann ihn für alle verlangen.",
                "Whoever logs in sees data of many people, some of it specially protected. Leitung therefore always logs in with a second factor (a code from an authenticator app). The organisation can require it of everyone.")) }
            @if state.config.two_factor_optional {
                p.muted { (l.t(
                    "Hinweis: Dieser Server läuft als Demo oder Test ohne Zwei-Faktor-Pflicht.",
                    "Note: this server runs as a demo or test without the two-factor requirement.")) }
            }
            form method="post" action="/dashboard/team/two-factor" {
                (csrf(s))
                div.field {
                    input #two-factor-all type="checkbox" name="all" value="yes" checked[all];
                    label for="two-factor-all" { (l.t("Zweiten Faktor von allen verlangen", "Require a second factor of everyone")) }
                }
                button type="submit" { (l.t("Speichern", "Save")) }
            }
        }
    };
    html_response(
        status_code,
        layout::page(s, Nav::Team, l.t("Team", "Team"), body),
    )
}

fn link_box(l: Lang, issued: &IssuedLink, mail: bool) -> Markup {
    let who = &issued.coordinator.display_name;
    html! {
        div.ok-box role="status" {
            p { strong { (match l {
                Lang::De => format!("Link für {who}"),
                Lang::En => format!("Link for {who}"),
            }) } }
            label for="issued-link" { (l.t("Einmal-Link zum Festlegen des Passworts", "One-time link to set the password")) }
            input #issued-link type="text" readonly value=(issued.link) size="60";
            p.muted {
                (l.t("Gültig bis ", "Valid until ")) (i18n::datetime(l, issued.expires_at)) ". "
                @if issued.emailed {
                    (l.t("Er wurde auch per E-Mail verschickt.", "It was also sent by e-mail."))
                } @else if mail {
                    (l.t("Geben Sie ihn persönlich weiter.", "Hand it over in person."))
                } @else {
                    (l.t("Geben Sie ihn persönlich weiter (kein E-Mail-Versand eingerichtet). Der Link wird nur jetzt angezeigt.", "Hand it over in person (no e-mail set up). The link is shown only now."))
                }
            }
        }
    }
}

fn row(s: &Session, c: &Coordinator) -> Markup {
    let l = s.lang;
    let me = c.id == s.caller.id();
    let id = &c.id;
    html! {
        tr {
            td { (c.display_name) @if me { " " span.muted { (l.t("(Sie)", "(you)")) } } }
            td { (c.email) }
            td { (role_name(l, c.role)) }
            td { (status(l, c)) }
            td { @if c.two_factor { (l.t("eingerichtet", "set up")) } @else { (l.t("—", "—")) } }
            td.actions {
                @if c.is_active() {
                    form.inline-form method="post" action=(format!("/dashboard/team/{id}/role")) {
                        (csrf(s))
                        label.sr-only for=(format!("role-{id}")) { (l.t("Rolle von ", "Role of ")) (c.display_name) }
                        select id=(format!("role-{id}")) name="role" {
                            @for r in [Role::Koordination, Role::Leitung] {
                                option value=(r.as_str()) selected[r == c.role] { (role_name(l, r)) }
                            }
                        }
                        button.secondary type="submit" { (l.t("Rolle setzen", "Set role")) }
                    }
                    form.inline-form method="post" action=(format!("/dashboard/team/{id}/password-link")) {
                        (csrf(s))
                        button.secondary type="submit" {
                            @if c.is_invited() { (l.t("Neuer Einladungslink", "New invitation link")) }
                            @else { (l.t("Link für neues Passwort", "New password link")) }
                        }
                    }
                    @if c.two_factor && !me {
                        form.inline-form method="post" action=(format!("/dashboard/team/{id}/two-factor-reset")) {
                            (csrf(s))
                            button.secondary type="submit" { (l.t("Zweiten Faktor zurücksetzen", "Reset second factor")) }
                        }
                    }
                    @if !me {
                        form.inline-form method="post" action=(format!("/dashboard/team/{id}/active")) {
                            (csrf(s))
                            input type="hidden" name="active" value="no";
                            button.danger type="submit" { (l.t("Deaktivieren", "Deactivate")) }
                        }
                    }
                } @else {
                    form.inline-form method="post" action=(format!("/dashboard/team/{id}/active")) {
                        (csrf(s))
                        input type="hidden" name="active" value="yes";
                        button.secondary type="submit" { (l.t("Reaktivieren", "Reactivate")) }
                    }
                }
            }
        }
    }
}

/// A refusal in the coordinator's language.
fn explain(l: Lang, e: &Error) -> Option<(StatusCode, String)> {
    let text = match e {
        Error::BadRequest { code: "last_leitung", .. } => l.t(
            "Die Organisation braucht mindestens eine aktive Leitung. Machen Sie zuerst jemand anderen zur Leitung.",
            "The organisation needs at least one active Leitung. Make someone else Leitung first.",
        ),
        Error::Invalid { field: "email", .. } => l.t(
            "Bitte geben Sie eine gültige E-Mail-Adresse an.",
            "Please give a valid e-mail address.",
        ),
        Error::Invalid { field: "display_name", .. } => {
            l.t("Bitte geben Sie einen Namen an.", "Please give a name.")
        }
        Error::Store(StoreError::Conflict(_)) | Error::Conflict(_) => l.t(
            "Für diese E-Mail-Adresse gibt es schon ein Konto.",
            "There is already an account for this e-mail address.",
        ),
        Error::NotFound(_) => return None,
        _ => return None,
    };
    let status = match e {
        Error::Store(StoreError::Conflict(_)) | Error::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Some((status, text.to_owned()))
}

async fn answer(state: &AppState, s: &Session, result: Result<Outcome, Error>) -> Response {
    match result {
        Ok(Outcome::None) => Redirect::to("/dashboard/team?saved=1").into_response(),
        Ok(outcome) => render(state, s, outcome, StatusCode::OK).await,
        Err(Error::NotFound(_)) => layout::not_found(s.lang),
        Err(Error::LeitungOnly(_)) => layout::leitung_only(s.lang),
        Err(e) => match explain(s.lang, &e) {
            Some((status, text)) => render(state, s, Outcome::Error(text), status).await,
            None => layout::failed(s.lang, "team change", e),
        },
    }
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    if !s.caller.coordinator.is_leitung() {
        return layout::leitung_only(s.lang);
    }
    render(&state, &s, Outcome::None, StatusCode::OK).await
}

pub async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { s, f }: Posted,
) -> Response {
    let role = Role::parse(&f.get("role")).unwrap_or(Role::Koordination);
    let base = public_base(&state.config, &headers);
    let result = state
        .invite_coordinator(
            &s.caller,
            &f.get("email"),
            &f.get("display_name"),
            role,
            &base,
        )
        .await
        .map(Outcome::Link);
    answer(&state, &s, result).await
}

pub async fn set_role(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let Some(role) = Role::parse(&f.get("role")) else {
        return layout::not_found(s.lang);
    };
    let result = state
        .set_coordinator_role(&s.caller, &id, role)
        .await
        .map(|_| Outcome::None);
    answer(&state, &s, result).await
}

pub async fn set_active(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { s, f }: Posted,
) -> Response {
    let active = f.get("active") == "yes";
    if !active && id == s.caller.id() {
        // Locking oneself out from one's own page is never what was meant.
        return answer(&state, &s, Ok(Outcome::None)).await;
    }
    let result = state
        .set_coordinator_active(&s.caller, &id, active)
        .await
        .map(|_| Outcome::None);
    answer(&state, &s, result).await
}

pub async fn password_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Posted { s, .. }: Posted,
) -> Response {
    let base = public_base(&state.config, &headers);
    let result = state
        .reset_link(&s.caller, &id, &base)
        .await
        .map(Outcome::Link);
    answer(&state, &s, result).await
}

pub async fn reset_two_factor(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { s, .. }: Posted,
) -> Response {
    let result = state
        .reset_second_factor(&s.caller, &id)
        .await
        .map(|()| Outcome::None);
    answer(&state, &s, result).await
}

pub async fn two_factor_for_all(
    State(state): State<AppState>,
    Posted { s, f }: Posted,
) -> Response {
    if !s.caller.coordinator.is_leitung() {
        return layout::leitung_only(s.lang);
    }
    let on = f.get("all") == "yes";
    match state
        .store
        .set_two_factor_for_all(s.org(), s.caller.id(), on)
        .await
    {
        Ok(()) => Redirect::to("/dashboard/team?saved=1").into_response(),
        Err(e) => layout::failed(s.lang, "two-factor setting", e),
    }
}

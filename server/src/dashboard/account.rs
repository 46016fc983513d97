//! Mein Konto: every coordinator's own account: changing the password (other sessions
//! end), and setting up the second factor (TOTP): a fresh secret as QR code and text,
//! confirmed by a code from the app, then ten recovery codes shown once. Leitung (and
//! everyone where the organisation says so) is sent here after logging in until it is
//! done.
//!
//! The secret being set up travels in the form, signed for this session (HMAC), so
//! nothing is stored before the code confirms it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};

use super::Dash;
use super::i18n::Lang;
use super::layout::{self, Nav, csrf, html_response};
use super::session::{Posted, Session, mac, same};
use crate::app::AppState;
use crate::app::error::Error;
use crate::store::now_ms;
use crate::team;

fn role_name(l: Lang, c: &crate::store::Coordinator) -> &'static str {
    if c.is_leitung() {
        l.t("Leitung", "Leitung (management)")
    } else {
        l.t("Koordination", "Koordination (coordinator)")
    }
}

async fn render(
    state: &AppState,
    s: &Session,
    message: Option<(bool, &str)>,
    status: StatusCode,
) -> Response {
    let l = s.lang;
    let c = &s.caller.coordinator;
    let left = if c.two_factor {
        state
            .store
            .recovery_codes_left(&c.id)
            .await
            .unwrap_or_default()
    } else {
        0
    };
    let saved = s.here.contains("saved=1");
    let body = html! {
        h1 { (l.t("Mein Konto", "My account")) }
        @if saved { p role="status" { (l.t("Gespeichert.", "Saved.")) } }
        @if let Some((ok, text)) = message {
            @if ok { div.ok-box role="status" { p { (text) } } }
            @else { div.alert role="alert" { p { (text) } } }
        }
        dl.facts {
            dt { (l.t("Name", "Name")) } dd { (c.display_name) }
            dt { (l.t("E-Mail", "E-mail")) } dd { (c.email) }
            dt { (l.t("Rolle", "Role")) } dd { (role_name(l, c)) }
            dt { (l.t("Zweiter Faktor", "Second factor")) }
            dd {
                @if c.two_factor {
                    (l.t("eingerichtet", "set up")) " · "
                    (left) (l.t(" Wiederherstellungscodes übrig", " recovery codes left"))
                } @else {
                    (l.t("nicht eingerichtet", "not set up"))
                }
            }
        }
        section.card aria-labelledby="zweiter-faktor" {
            h2 #zweiter-faktor { (l.t("Zweiter Faktor", "Second factor")) }
            p { (l.t(
                "Mit einem zweiten Faktor reicht ein erratenes oder abgefangenes Passwort nicht, um an die Daten zu kommen: Bei der Anmeldung fragt Lotse zusätzlich nach einem Code aus einer Authenticator-App auf Ihrem Telefon (z. B. FreeOTP, Aegis, Google Authenticator).",
                "With a second factor, a guessed or stolen password is not enough to get at the data: at login Lotse also asks for a code from an authenticator app on your phone (e.g. FreeOTP, Aegis, Google Authenticator).")) }
            a.button href="/dashboard/account/two-factor" {
                @if c.two_factor { (l.t("Neu einrichten (neue Wiederherstellungscodes)", "Set up again (new recovery codes)")) }
                @else { (l.t("Jetzt einrichten", "Set up now")) }
            }
        }
        section.card aria-labelledby="passwort" {
            h2 #passwort { (l.t("Passwort ändern", "Change password")) }
            form.narrow method="post" action="/dashboard/account/password" {
                (csrf(s))
                div.field {
                    label for="current" { (l.t("Bisheriges Passwort", "Current password")) }
                    input #current type="password" name="current" autocomplete="current-password" required;
                }
                div.field {
                    label for="new" { (l.t("Neues Passwort (mindestens 12 Zeichen)", "New password (at least 12 characters)")) }
                    input #new type="password" name="new" autocomplete="new-password" minlength="12" required;
                }
                div.field {
                    label for="repeat" { (l.t("Neues Passwort wiederholen", "Repeat the new password")) }
                    input #repeat type="password" name="repeat" autocomplete="new-password" minlength="12" required;
                }
                p.muted { (l.t("Ihre anderen Anmeldungen (andere Browser, die API) enden dabei.", "Your other logins (other browsers, the API) end with it.")) }
                button type="submit" { (l.t("Passwort ändern", "Change password")) }
            }
        }
    };
    html_response(
        status,
        layout::page(s, Nav::Account, l.t("Mein Konto", "My account"), body),
    )
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    render(&state, &s, None, StatusCode::OK).await
}

pub async fn change_password(State(state): State<AppState>, Posted { s, f }: Posted) -> Response {
    let l = s.lang;
    let raw = |name: &str| {
        f.0.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (current, new, repeat) = (raw("current"), raw("new"), raw("repeat"));
    if new != repeat {
        let text = l.t(
            "Die beiden neuen Passwörter sind verschieden.",
            "The two new passwords differ.",
        );
        return render(
            &state,
            &s,
            Some((false, text)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if let Some((de, en)) = team::password_problem(&new) {
        return render(
            &state,
            &s,
            Some((false, l.t(de, en))),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match state.change_own_password(&s.caller, current, &new).await {
        Ok(()) => Redirect::to("/dashboard/account?saved=1").into_response(),
        Err(Error::InvalidCredentials) => {
            let text = l.t(
                "Das bisherige Passwort stimmt nicht.",
                "The current password is wrong.",
            );
            render(&state, &s, Some((false, text)), StatusCode::UNAUTHORIZED).await
        }
        Err(Error::TooManyAttempts(_)) => {
            let text = l.t(
                "Zu viele Fehlversuche. Bitte warten Sie einige Minuten.",
                "Too many failed attempts. Please wait a few minutes.",
            );
            render(
                &state,
                &s,
                Some((false, text)),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await
        }
        Err(e) => layout::failed(l, "password change", e),
    }
}

fn signed_secret(key: &[u8; 32], s: &Session, secret: &str) -> String {
    mac(
        key,
        "totp-setup",
        &format!("{}.{secret}", s.caller.session_hash),
    )
}

fn setup_page(
    s: &Session,
    secret: &str,
    sig: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let l = s.lang;
    let c = &s.caller.coordinator;
    let url = team::otpauth_url(secret, &c.email).unwrap_or_default();
    let qr = layout::qr_svg(
        l.t(
            "QR-Code für die Authenticator-App",
            "QR code for the authenticator app",
        ),
        &url,
    )
    .unwrap_or_default();
    // Groups of four are easier to type.
    let spaced: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let body = html! {
        h1 { (l.t("Zweiten Faktor einrichten", "Set up a second factor")) }
        @if s.caller.second_factor_setup {
            div.alert role="alert" { p { (l.t(
                "Bevor es weitergeht: Ihre Rolle braucht einen zweiten Faktor. Das dauert zwei Minuten.",
                "Before you go on: your role needs a second factor. It takes two minutes.")) } }
        }
        @if let Some(e) = error { div.alert role="alert" { p { (e) } } }
        ol {
            li { (l.t(
                "Öffnen Sie eine Authenticator-App auf Ihrem Telefon (z. B. FreeOTP, Aegis, Google Authenticator) und fügen Sie ein Konto hinzu.",
                "Open an authenticator app on your phone (e.g. FreeOTP, Aegis, Google Authenticator) and add an account.")) }
            li { (l.t("Scannen Sie diesen QR-Code, oder geben Sie den Schlüssel von Hand ein:", "Scan this QR code, or type in the key by hand:")) }
        }
        div.qr { (PreEscaped(qr)) }
        p { (l.t("Schlüssel: ", "Key: ")) code #totp-secret { (spaced.join(" ")) } }
        form.narrow method="post" action="/dashboard/account/two-factor" {
            (csrf(s))
            input type="hidden" name="secret" value=(secret);
            input type="hidden" name="sig" value=(sig);
            div.field {
                label for="code" { (l.t("Code aus der App (6 Ziffern)", "Code from the app (6 digits)")) }
                input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
                    pattern="[0-9 ]{6,7}" maxlength="7" required;
            }
            button type="submit" { (l.t("Bestätigen", "Confirm")) }
        }
    };
    html_response(
        status,
        layout::page(
            s,
            Nav::Account,
            l.t("Zweiten Faktor einrichten", "Set up a second factor"),
            body,
        ),
    )
}

pub async fn two_factor_page(
    State(state): State<AppState>,
    axum::Extension(dash): axum::Extension<Arc<Dash>>,
    s: Session,
) -> Response {
    let Ok(key) = dash.key(&state).await else {
        return layout::server_error(s.lang);
    };
    let secret = team::new_totp_secret();
    let sig = signed_secret(&key, &s, &secret);
    setup_page(&s, &secret, &sig, None, StatusCode::OK)
}

pub async fn confirm_two_factor(
    State(state): State<AppState>,
    axum::Extension(dash): axum::Extension<Arc<Dash>>,
    Posted { s, f }: Posted,
) -> Response {
    let l = s.lang;
    let Ok(key) = dash.key(&state).await else {
        return layout::server_error(l);
    };
    let (secret, sig) = (f.get("secret"), f.get("sig"));
    if secret.len() > 64 || !same(&sig, &signed_secret(&key, &s, &secret)) {
        return super::session::forbidden(l);
    }
    let now = u64::try_from(now_ms() / 1000).unwrap_or_default();
    let Some(step) = team::check_code(&secret, &f.get("code"), now) else {
        let text = l.t(
            "Der Code stimmt nicht. Bitte nehmen Sie den aktuellen Code aus der App (er wechselt alle 30 Sekunden) und prüfen Sie, ob die Uhr Ihres Telefons richtig geht.",
            "The code is wrong. Please use the current code from the app (it changes every 30 seconds) and check that your phone's clock is right.",
        );
        return setup_page(
            &s,
            &secret,
            &sig,
            Some(text),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let codes = team::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| team::recovery_hash(c)).collect();
    if let Err(e) = state
        .store
        .enable_two_factor(&s.caller.coordinator, &secret, step, &hashes)
        .await
    {
        return layout::failed(l, "two-factor setup", e);
    }
    tracing::info!(coordinator_id = %s.caller.id(), "second factor set up");
    recovery_page(&s, &codes)
}

fn recovery_page(s: &Session, codes: &[String]) -> Response {
    let l = s.lang;
    let body = html! {
        h1 { (l.t("Zweiter Faktor eingerichtet", "Second factor set up")) }
        div.ok-box role="status" { p { (l.t(
            "Ab jetzt fragt Lotse bei der Anmeldung nach dem Code aus Ihrer App.",
            "From now on Lotse asks for the code from your app when you log in.")) } }
        h2 { (l.t("Ihre Wiederherstellungscodes", "Your recovery codes")) }
        p { (l.t(
            "Wenn Ihr Telefon verloren geht, kommen Sie mit einem dieser Codes hinein; jeder gilt einmal. Drucken Sie sie aus oder schreiben Sie sie ab und bewahren Sie sie getrennt vom Telefon auf. Sie werden nur jetzt angezeigt.",
            "If you lose your phone, one of these codes gets you in; each works once. Print them or write them down and keep them apart from the phone. They are shown only now.")) }
        ul.recovery #recovery-codes {
            @for c in codes { li { (c) } }
        }
        p { a.button href="/dashboard" { (l.t("Weiter zum Überblick", "On to the overview")) } }
    };
    html_response(
        StatusCode::OK,
        layout::page(
            s,
            Nav::Account,
            l.t("Zweiter Faktor eingerichtet", "Second factor set up"),
            body,
        ),
    )
}

/// `GET /dashboard/welcome?token=...`: the one-time link of an invitation or a reset.
pub async fn welcome_page(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
) -> Response {
    let l = super::session::lang_of(&parts);
    let token = parts
        .uri
        .query()
        .and_then(|q| super::i18n::query_param(q, "token"))
        .unwrap_or_default();
    welcome(&state, l, &token, None, StatusCode::OK).await
}

async fn welcome(
    state: &AppState,
    l: Lang,
    token: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let link = if token.starts_with(team::LINK_PREFIX) && token.len() < 100 {
        match state.store.open_link(&crate::auth::token_hash(token)).await {
            Ok(link) => link,
            Err(e) => return layout::failed(l, "one-time link", e),
        }
    } else {
        None
    };
    let Some(link) = link else {
        return layout::error_page(
            l,
            StatusCode::GONE,
            l.t("Link ungültig", "Link no longer valid"),
            l.t(
                "Dieser Link wurde schon benutzt oder ist abgelaufen. Bitten Sie Ihre Leitung um einen neuen.",
                "This link was used already or has expired. Please ask your Leitung for a new one.",
            ),
        );
    };
    let c = &link.coordinator;
    let title = match link.purpose {
        crate::store::LinkPurpose::Invite => l.t("Willkommen bei Lotse", "Welcome to Lotse"),
        crate::store::LinkPurpose::Reset => l.t("Neues Passwort", "New password"),
    };
    layout::html_response(
        status,
        layout::bare_page(
            l,
            title,
            "/dashboard/login",
            html! {
                h1 { (title) }
                p { (c.display_name) " · " (c.email) }
                @if let Some(e) = error { div.alert role="alert" { p { (e) } } }
                form.narrow method="post" action="/dashboard/welcome" {
                    input type="hidden" name="token" value=(token);
                    input type="hidden" name="username" value=(c.email) autocomplete="username";
                    div.field {
                        label for="new" { (l.t("Passwort (mindestens 12 Zeichen)", "Password (at least 12 characters)")) }
                        input #new type="password" name="new" autocomplete="new-password" minlength="12" required;
                    }
                    div.field {
                        label for="repeat" { (l.t("Passwort wiederholen", "Repeat the password")) }
                        input #repeat type="password" name="repeat" autocomplete="new-password" minlength="12" required;
                    }
                    button type="submit" { (l.t("Passwort festlegen", "Set password")) }
                }
            },
        ),
    )
}

/// `POST /dashboard/welcome`: sets the password through the link. The unguessable,
/// single-use token is what authorises the form (there is no session yet), so it needs
/// no CSRF token of its own: a forged form would have to know it.
pub async fn welcome_submit(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let l = Lang::detect(uri.query(), &headers);
    let f = super::session::Fields::parse(&body);
    let token = f.get("token");
    let raw = |name: &str| {
        f.0.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (new, repeat) = (raw("new"), raw("repeat"));
    if new != repeat {
        let text = l.t(
            "Die beiden Passwörter sind verschieden.",
            "The two passwords differ.",
        );
        return welcome(
            &state,
            l,
            &token,
            Some(text),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if let Some((de, en)) = team::password_problem(&new) {
        return welcome(
            &state,
            l,
            &token,
            Some(l.t(de, en)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    if !token.starts_with(team::LINK_PREFIX) || token.len() >= 100 {
        return welcome(&state, l, "", None, StatusCode::GONE).await;
    }
    match state.use_link(&token, &new).await {
        Ok(Some(c)) => {
            tracing::info!(coordinator_id = %c.id, "password set through a one-time link");
            Redirect::to("/dashboard/login?welcome=1").into_response()
        }
        Ok(None) => welcome(&state, l, "", None, StatusCode::GONE).await,
        Err(e) => layout::failed(l, "one-time link", e),
    }
}

/// Marks the login page after a password was set.
pub fn welcome_note(l: Lang) -> Markup {
    html! {
        div.ok-box role="status" { p { (l.t(
            "Ihr Passwort ist gespeichert. Melden Sie sich jetzt an.",
            "Your password is saved. Log in now.")) } }
    }
}

//! Who is looking at the dashboard: the coordinator's session cookie (the same sessions
//! as the API), the language, and the CSRF token of every form. Login, logout (here or
//! everywhere) and the language switch live here too.
//!
//! CSRF: a form's token is HMAC-SHA256 over the session's token hash with a key kept in
//! the database (`settings`), so it needs no storage, differs per session and dies with
//! it. The login form, which has no session yet, binds its token to a random nonce in a
//! short-lived cookie instead. Every POST checks the token before anything else happens;
//! a missing or wrong one is answered 403. The session cookie is also `SameSite=Strict`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use maud::html;
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Dash;
use super::i18n::{LANG_COOKIE, Lang, cookie, query_param};
use super::layout::{self, bare_page, html_response};
use crate::app::AppState;
use crate::app::address::ClientAddr;
use crate::app::caller::{Caller, CoordinatorCaller, SESSION_COOKIE, authenticate};
use crate::app::login;
use crate::auth::SESSION_PREFIX;
use crate::store::now_ms;

const LOGIN_COOKIE: &str = "lotse_login";
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A logged-in coordinator on a dashboard page.
pub struct Session {
    pub caller: CoordinatorCaller,
    pub lang: Lang,
    /// The token every form of this session carries.
    pub csrf: String,
    pub org_name: String,
    /// Path and query of this page, for the language switch.
    pub here: String,
    pub dash: Arc<Dash>,
}

impl Session {
    pub fn org(&self) -> &str {
        self.caller.organisation_id()
    }
}

pub(super) fn mac(key: &[u8; 32], purpose: &str, value: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn csrf_for_session(key: &[u8; 32], session_hash: &str) -> String {
    mac(key, "csrf-session", session_hash)
}

pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn dash_of(parts: &Parts) -> Arc<Dash> {
    parts
        .extensions
        .get::<Arc<Dash>>()
        .cloned()
        .expect("the dashboard router adds its state")
}

pub fn lang_of(parts: &Parts) -> Lang {
    Lang::detect(parts.uri.query(), &parts.headers)
}

fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/dashboard".into())
}

/// Where to go after login: only our own dashboard pages, never another site.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with("/dashboard")
        && !next.contains("//")
        && !next.contains('\\')
        && !next.starts_with("/dashboard/login")
        && !next.starts_with("/dashboard/events")
        && !next.starts_with("/dashboard/fragments");
    if ok {
        next.to_owned()
    } else {
        "/dashboard".to_owned()
    }
}

fn to_login(parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        here(parts)
    } else {
        "/dashboard".into()
    };
    let next = safe_next(&next);
    let target = if next == "/dashboard" {
        "/dashboard/login".to_owned()
    } else {
        let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        format!("/dashboard/login?next={encoded}")
    };
    Redirect::to(&target).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = lang_of(parts);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(parts));
        };
        if !token.starts_with(SESSION_PREFIX) {
            return Err(to_login(parts));
        }
        let caller = match authenticate(state, &token).await {
            Ok(Caller::Coordinator(c)) => c,
            Ok(Caller::Device(_)) | Err(crate::app::error::Error::Unauthorized) => {
                return Err(to_login(parts));
            }
            Err(e) => {
                tracing::error!(error = %e, "dashboard: authentication failed");
                return Err(layout::server_error(lang));
            }
        };
        if caller.second_factor_setup && !setup_allowed(parts.uri.path()) {
            return Err(Redirect::to("/dashboard/account/two-factor").into_response());
        }
        let dash = dash_of(parts);
        let key = dash.key(state).await.map_err(|e| {
            tracing::error!(error = %e, "dashboard: no CSRF key");
            layout::server_error(lang)
        })?;
        let org_name = match state.store.organisation(caller.organisation_id()).await {
            Ok(org) => org.map(|o| o.name).unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "dashboard: organisation lookup failed");
                return Err(layout::server_error(lang));
            }
        };
        Ok(Session {
            csrf: csrf_for_session(&key, &caller.session_hash),
            caller,
            lang,
            org_name,
            here: here(parts),
            dash,
        })
    }
}

/// What a session still waiting for its second factor may open: the setup, and logout.
fn setup_allowed(path: &str) -> bool {
    matches!(
        path,
        "/dashboard/account/two-factor" | "/dashboard/logout" | "/dashboard/logout-all"
    )
}

/// Urlencoded form fields in order; repeated names (checkboxes) keep every value.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`, trimmed; empty when absent.
    pub fn get(&self, key: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// A form posted by a logged-in coordinator with a valid CSRF token. Every POST
/// handler of the dashboard takes this, so none can forget the check.
pub struct Posted {
    pub s: Session,
    pub f: Fields,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let s = Session::from_request_parts(&mut parts, state).await?;
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return Err(layout::error_page(
                s.lang,
                StatusCode::PAYLOAD_TOO_LARGE,
                s.lang.t("Zu viele Daten", "Too much data"),
                s.lang
                    .t("Das Formular ist zu groß.", "The form is too large."),
            ));
        };
        let f = Fields::parse(&bytes);
        if !same(&f.get("csrf"), &s.csrf) {
            tracing::info!("dashboard: form without a valid CSRF token rejected");
            return Err(forbidden(s.lang));
        }
        Ok(Posted { s, f })
    }
}

pub fn forbidden(l: Lang) -> Response {
    layout::error_page(
        l,
        StatusCode::FORBIDDEN,
        l.t("Formular abgelaufen", "Form expired"),
        l.t(
            "Das Formular war ungültig oder veraltet. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
            "The form was invalid or out of date. Please reload the page and try again.",
        ),
    )
}

fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
) -> HeaderValue {
    let secure = if state.config.insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn login_form(l: Lang, csrf: &str, next: &str, email: &str, error: Option<&str>) -> maud::Markup {
    login_form_with(l, csrf, next, email, error, false)
}

fn login_form_with(
    l: Lang,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
    welcome: bool,
) -> maud::Markup {
    bare_page(
        l,
        l.t("Anmelden", "Log in"),
        "/dashboard/login",
        html! {
            h1 { (l.t("Anmelden", "Log in")) }
            p { (l.t("Für die Koordination des Lotsennetzwerks.", "For the coordinators of the guides' network.")) }
            @if welcome { (super::account::welcome_note(l)) }
            @if let Some(e) = error {
                div.alert role="alert" { p { (e) } }
            }
            form.narrow method="post" action="/dashboard/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="email" { (l.t("E-Mail-Adresse", "Email address")) }
                    input #email type="email" name="email" value=(email) autocomplete="username" required;
                }
                div.field {
                    label for="password" { (l.t("Passwort", "Password")) }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                button type="submit" { (l.t("Anmelden", "Log in")) }
            }
        },
    )
}

fn new_nonce() -> String {
    let bytes: [u8; 24] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

pub async fn login_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    parts: Parts,
) -> Response {
    let l = lang_of(&parts);
    // Already logged in: straight on.
    if let Some(token) = cookie(&parts.headers, SESSION_COOKIE)
        && token.starts_with(SESSION_PREFIX)
        && matches!(
            authenticate(&state, &token).await,
            Ok(Caller::Coordinator(_))
        )
    {
        return Redirect::to("/dashboard").into_response();
    }
    let Ok(key) = dash.key(&state).await else {
        return layout::server_error(l);
    };
    let next = safe_next(
        &parts
            .uri
            .query()
            .and_then(|q| query_param(q, "next"))
            .unwrap_or_default(),
    );
    let nonce = new_nonce();
    let csrf = mac(&key, "csrf-login", &nonce);
    let welcome = parts
        .uri
        .query()
        .is_some_and(|q| query_param(q, "welcome").is_some());
    let mut res = html_response(
        StatusCode::OK,
        login_form_with(l, &csrf, &next, "", None, welcome),
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, LOGIN_COOKIE, &nonce, "/dashboard", 3600, "Strict"),
    );
    res
}

pub async fn login(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let l = Lang::detect(uri.query(), &headers);
    let Ok(key) = dash.key(&state).await else {
        return layout::server_error(l);
    };
    let f = Fields::parse(&body);
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let expected = mac(&key, "csrf-login", &nonce);
    if nonce.is_empty() || !same(&f.get("csrf"), &expected) {
        tracing::info!("dashboard: login form without a valid CSRF token rejected");
        return forbidden(l);
    }
    let email = f.get("email");
    let password =
        f.0.iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
    let next = safe_next(&f.get("next"));
    let again = |status: StatusCode, message: &str| {
        html_response(
            status,
            login_form(l, &expected, &next, &email, Some(message)),
        )
    };
    match login::password(&state, &email, password, client).await {
        Ok(login::Step::Done(c)) => logged_in(&state, l, &c, &next).await,
        Ok(login::Step::NeedsCode(c)) => {
            // The password was right: a signed, short-lived cookie carries who passed it
            // to the code form, so the password is not sent twice.
            let pending = pending_value(&key, &c.id, now_ms() + PENDING_MS);
            let csrf = mac(&key, "csrf-code", &pending);
            let mut res = html_response(StatusCode::OK, code_form(l, &csrf, &next, None));
            res.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(
                    &state,
                    PENDING_COOKIE,
                    &pending,
                    "/dashboard",
                    PENDING_MS as u64 / 1000,
                    "Strict",
                ),
            );
            res
        }
        Err(e) => login_refused(l, e, again),
    }
}

/// A login the server refused, as the form again with the reason.
fn login_refused(
    l: Lang,
    e: crate::app::error::Error,
    again: impl Fn(StatusCode, &str) -> Response,
) -> Response {
    use crate::app::error::Error;
    match e {
        Error::TooManyAttempts(wait) => {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let message = match l {
                Lang::De => format!(
                    "Zu viele Fehlversuche. Bitte versuchen Sie es in {minutes} Minute(n) noch einmal."
                ),
                Lang::En => {
                    format!("Too many failed attempts. Please try again in {minutes} minute(s).")
                }
            };
            let mut res = again(StatusCode::TOO_MANY_REQUESTS, &message);
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        Error::InvalidCredentials => again(
            StatusCode::UNAUTHORIZED,
            l.t(
                "E-Mail-Adresse oder Passwort ist falsch.",
                "Wrong email address or password.",
            ),
        ),
        Error::SecondFactor => again(
            StatusCode::UNAUTHORIZED,
            l.t(
                "Der Code stimmt nicht (oder wurde schon benutzt). Bitte nehmen Sie den aktuellen Code aus Ihrer App oder einen Wiederherstellungscode.",
                "The code is wrong (or was used already). Please use the current code from your app, or a recovery code.",
            ),
        ),
        other => {
            tracing::error!(error = %other, "dashboard: login failed");
            layout::server_error(l)
        }
    }
}

/// Opens the session and goes on to `next` (or to setting up a second factor, which
/// the session extractor insists on where one is required).
async fn logged_in(
    state: &AppState,
    l: Lang,
    c: &crate::store::Coordinator,
    next: &str,
) -> Response {
    let token = match login::open_session(state, c).await {
        Ok((token, _)) => token,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not create session");
            return layout::server_error(l);
        }
    };
    let mut res = Redirect::to(next).into_response();
    let headers = res.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(
            state,
            SESSION_COOKIE,
            &token,
            "/",
            state.config.session_ttl.as_secs(),
            "Strict",
        ),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(state, LOGIN_COOKIE, "", "/dashboard", 0, "Strict"),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(state, PENDING_COOKIE, "", "/dashboard", 0, "Strict"),
    );
    res
}

/// The cookie of a login whose password was right and whose code is due.
const PENDING_COOKIE: &str = "lotse_code";
/// How long the code form waits for the code.
const PENDING_MS: i64 = 5 * 60 * 1000;

fn pending_value(key: &[u8; 32], coordinator_id: &str, expires_at: i64) -> String {
    let payload = format!("{coordinator_id}.{expires_at}");
    let sig = mac(key, "login-pending", &payload);
    format!("{payload}.{sig}")
}

/// The coordinator of a valid, unexpired pending-login cookie.
fn pending_coordinator(key: &[u8; 32], value: &str) -> Option<String> {
    let (payload, sig) = value.rsplit_once('.')?;
    if !same(sig, &mac(key, "login-pending", payload)) {
        return None;
    }
    let (id, expires_at) = payload.split_once('.')?;
    (expires_at.parse::<i64>().ok()? > now_ms()).then(|| id.to_owned())
}

fn code_form(l: Lang, csrf: &str, next: &str, error: Option<&str>) -> maud::Markup {
    bare_page(
        l,
        l.t("Zweiter Faktor", "Second factor"),
        "/dashboard/login",
        html! {
            h1 { (l.t("Zweiter Faktor", "Second factor")) }
            p { (l.t(
                "Geben Sie den sechsstelligen Code aus Ihrer Authenticator-App ein, oder einen Ihrer Wiederherstellungscodes.",
                "Enter the six-digit code from your authenticator app, or one of your recovery codes.",
            )) }
            @if let Some(e) = error {
                div.alert role="alert" { p { (e) } }
            }
            form.narrow method="post" action="/dashboard/login/code" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="code" { (l.t("Code", "Code")) }
                    input #code type="text" name="code" autocomplete="one-time-code" inputmode="text"
                        maxlength="20" required autofocus;
                }
                button type="submit" { (l.t("Anmelden", "Log in")) }
            }
            p { a href="/dashboard/login" { (l.t("Zurück zur Anmeldung", "Back to the login")) } }
        },
    )
}

/// `POST /dashboard/login/code`: the second step of a login with a second factor.
pub async fn login_code(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let l = Lang::detect(uri.query(), &headers);
    let Ok(key) = dash.key(&state).await else {
        return layout::server_error(l);
    };
    let f = Fields::parse(&body);
    let pending = cookie(&headers, PENDING_COOKIE).unwrap_or_default();
    let expected = mac(&key, "csrf-code", &pending);
    if pending.is_empty() || !same(&f.get("csrf"), &expected) {
        tracing::info!("dashboard: code form without a valid CSRF token rejected");
        return forbidden(l);
    }
    let next = safe_next(&f.get("next"));
    let Some(id) = pending_coordinator(&key, &pending) else {
        // Expired: start again with the password.
        return Redirect::to("/dashboard/login").into_response();
    };
    let coordinator = match state.store.active_coordinator(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Redirect::to("/dashboard/login").into_response(),
        Err(e) => return layout::failed(l, "login code lookup", e),
    };
    let again = |status: StatusCode, message: &str| {
        html_response(status, code_form(l, &expected, &next, Some(message)))
    };
    let code = f.get("code");
    if code.len() > 40 {
        return login_refused(l, crate::app::error::Error::SecondFactor, again);
    }
    match login::second_factor(&state, &coordinator, &code, client).await {
        Ok(()) => logged_in(&state, l, &coordinator, &next).await,
        Err(e) => login_refused(l, e, again),
    }
}

fn logged_out(state: &AppState) -> Response {
    let mut res = Redirect::to("/dashboard/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(state, SESSION_COOKIE, "", "/", 0, "Strict"),
    );
    res
}

pub async fn logout(State(state): State<AppState>, Posted { s, .. }: Posted) -> Response {
    match state.store.delete_session(&s.caller.session_hash).await {
        Ok(ended) => state.access_shrank(ended),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: logout failed");
            return layout::server_error(s.lang);
        }
    }
    logged_out(&state)
}

/// Ends every session of the coordinator: other browsers, the API, open live streams.
pub async fn logout_all(State(state): State<AppState>, Posted { s, .. }: Posted) -> Response {
    match state.store.delete_sessions_of(s.caller.id()).await {
        Ok((n, ended)) => {
            state.access_shrank(ended);
            tracing::info!(sessions = n, "coordinator logged out everywhere");
            logged_out(&state)
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: logout everywhere failed");
            layout::server_error(s.lang)
        }
    }
}

/// `GET /dashboard/lang?to=en&back=/dashboard/...`: remembers the language in a cookie
/// and goes back. Only a preference changes, so a link (GET) is fine.
pub async fn switch_language(State(state): State<AppState>, parts: Parts) -> Response {
    let query = parts.uri.query().unwrap_or("");
    let to = query_param(query, "to")
        .and_then(|v| Lang::parse(&v))
        .unwrap_or(Lang::De);
    let back = query_param(query, "back").unwrap_or_default();
    // Drop a `lang=` from the page we return to, so the cookie decides.
    let back = match back.split_once('?') {
        Some((path, q)) => {
            let kept: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "lang")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(kept)
                    .finish();
                format!("{path}?{q}")
            }
        }
        None => back,
    };
    let back = if back.starts_with("/dashboard/login") {
        "/dashboard/login".to_owned()
    } else {
        safe_next(&back)
    };
    let mut res = Redirect::to(&back).into_response();
    let secure = if state.config.insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path=/dashboard; SameSite=Lax; Max-Age=31536000{secure}",
        to.code()
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(
            safe_next("/dashboard/requests?status=open"),
            "/dashboard/requests?status=open"
        );
        assert_eq!(safe_next("https://evil.example/"), "/dashboard");
        assert_eq!(safe_next("//evil.example/dashboard"), "/dashboard");
        assert_eq!(safe_next("/dashboard//evil.example"), "/dashboard");
        assert_eq!(safe_next("/dashboard/events"), "/dashboard");
    }

    #[test]
    fn tokens_differ_per_session_and_purpose() {
        let key = [7u8; 32];
        let a = csrf_for_session(&key, "aaaa");
        assert_eq!(a.len(), 64);
        assert_ne!(a, csrf_for_session(&key, "bbbb"));
        assert_ne!(a, mac(&key, "csrf-login", "aaaa"));
        assert!(same(&a, &csrf_for_session(&key, "aaaa")));
        assert!(!same(&a, ""));
    }
}

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
use crate::auth::{self, SESSION_PREFIX};
use crate::ratelimit::Refused;
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

fn mac(key: &[u8; 32], purpose: &str, value: &str) -> String {
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

fn same(a: &str, b: &str) -> bool {
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
    bare_page(
        l,
        l.t("Anmelden", "Log in"),
        "/dashboard/login",
        html! {
            h1 { (l.t("Anmelden", "Log in")) }
            p { (l.t("Für die Koordination des Lotsennetzwerks.", "For the coordinators of the guides' network.")) }
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
    let mut res = html_response(StatusCode::OK, login_form(l, &csrf, &next, "", None));
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
    if email.len() > 320 || password.len() > 1024 {
        return again(
            StatusCode::UNAUTHORIZED,
            l.t(
                "E-Mail-Adresse oder Passwort ist falsch.",
                "Wrong email address or password.",
            ),
        );
    }
    // The same budgets as the API's login (`http/auth.rs`): per account and address, and
    // per address; counted before the password is checked, refunded on success.
    let account_key = format!("login-account:{}:{client}", email.to_lowercase());
    let address_key = format!("login-address:{}", client);
    let limits = &state.limits;
    let mut limited = limits.login_account.attempt(&account_key).await;
    if limited.is_ok() {
        limited = limits.login_address.attempt(&address_key).await;
        if limited.is_err() {
            limits.login_account.refund(&account_key).await;
        }
    }
    if let Err(refused) = limited {
        let wait = match refused {
            Refused::Wait(wait) => wait,
            Refused::Store(e) => {
                tracing::error!(error = %e, "dashboard: rate limit unavailable");
                return layout::server_error(l);
            }
        };
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
        return res;
    }
    let coordinator = match state.store.coordinator_by_email(&email).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: login lookup failed");
            return layout::server_error(l);
        }
    };
    let hash = coordinator
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let ok = state.check_password(password, hash).await;
    let coordinator = match coordinator {
        Some(c) if ok => c,
        _ => {
            tracing::info!("failed coordinator login (dashboard)");
            return again(
                StatusCode::UNAUTHORIZED,
                l.t(
                    "E-Mail-Adresse oder Passwort ist falsch.",
                    "Wrong email address or password.",
                ),
            );
        }
    };
    limits.login_account.success(&account_key).await;
    limits.login_address.refund(&address_key).await;
    let token = auth::new_token(SESSION_PREFIX);
    let expires_at = now_ms() + state.config.session_ttl.as_millis() as i64;
    if let Err(e) = state
        .store
        .create_session(&coordinator, &auth::token_hash(&token), expires_at)
        .await
    {
        tracing::error!(error = %e, "dashboard: could not create session");
        return layout::server_error(l);
    }
    tracing::info!(coordinator_id = %coordinator.id, "coordinator logged in (dashboard)");
    let mut res = Redirect::to(&next).into_response();
    let headers = res.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(
            &state,
            SESSION_COOKIE,
            &token,
            "/",
            state.config.session_ttl.as_secs(),
            "Strict",
        ),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, LOGIN_COOKIE, "", "/dashboard", 0, "Strict"),
    );
    res
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

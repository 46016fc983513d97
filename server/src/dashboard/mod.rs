//! The coordinators' dashboard: server-rendered HTML (German first, English second),
//! live through Server-Sent Events, charts as SVG drawn on the server.
//!
//! | path | page |
//! |---|---|
//! | `/dashboard` | Überblick: requests by state, active cases, stale phones, cases to look at |
//! | `/dashboard/requests[/new, /{id}, /{id}/edit]` | Anfragen: list, create, edit, candidates, offer |
//! | `/dashboard/cases[/{id}]` | Fälle: list and detail as the server holds them after sync |
//! | `/dashboard/volunteers[/new, /{id}, /{id}/edit, /{id}/erase]` | Lotsinnen und Lotsen: list, create, edit, profile, devices, enrollment codes, erasure (Art. 17) |
//! | `/dashboard/cases/{id}/export`, `/dashboard/volunteers/{id}/export` | Auskunft nach Art. 15 DSGVO, printable (`exports`) |
//! | `/dashboard/reports[.csv, /chart/{name}.svg]` | Berichte with small-cell suppression |
//! | `/dashboard/statements[.csv]`, `/dashboard/volunteers/{id}/statement[.csv]` | Abrechnung: monthly hours and travel per volunteer, printable and as CSV |
//! | `/dashboard/team` | Team (Leitung only): coordinators, roles, invitations, password links, deactivation |
//! | `/dashboard/account[/two-factor]` | Mein Konto: own password, second factor (TOTP) and recovery codes |
//! | `/dashboard/welcome?token=` | a one-time link: set the first (or a new) password |
//! | `/dashboard/audit[.csv]` | Protokoll: the organisation's audit trail, filtered, paged, as CSV |
//! | `/dashboard/events` | the live stream (SSE); `/dashboard/fragments/...` what it refreshes |
//! | `/dashboard/sw.js` | the service worker that shows coordinators' push notices (`notify`) |
//!
//! Pages work without JavaScript; `static/app.js` only refreshes live regions and
//! `static/notify.js` turns on notifications for the browser (the overview's card). Every page
//! needs a coordinator session (else: redirect to the login) and every form a CSRF token
//! (`session`). Anything of another organisation answers 404, like something missing.

mod account;
mod audit;
mod cases;
mod csv;
mod exports;
mod i18n;
mod layout;
mod live;
mod lookat;
mod new_case;
mod notify;
mod overview;
mod reports;
mod requests;
mod session;
mod settings;
mod statements;
mod team;
mod volunteers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, header};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use rand::Rng;

use crate::app::AppState;
use crate::store::StoreError;

pub use reports::{Cells, Month, Period, Report, compute};

/// State the dashboard keeps beside `AppState`.
pub struct Dash {
    csrf_key: tokio::sync::OnceCell<[u8; 32]>,
    /// Results of the "to look at" checks per case, valid while the heads stay the same.
    pub(crate) look_at: Mutex<HashMap<String, (String, Vec<lookat::Concern>)>>,
    /// When a coordinator's view of a case was last audited: the live refreshes of an
    /// open case page are audited again only after `VIEW_AUDIT_EVERY`.
    viewed: Mutex<HashMap<(String, String), std::time::Instant>>,
}

/// A case page open for longer than this shows up in the audit trail again.
const VIEW_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Dash {
    fn new() -> Self {
        Self {
            csrf_key: tokio::sync::OnceCell::new(),
            look_at: Mutex::new(HashMap::new()),
            viewed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this read of a case by this coordinator needs its own audit line: always
    /// for a page view (`fresh`), for a live refresh only when the last line is older
    /// than `VIEW_AUDIT_EVERY`.
    pub(crate) fn view_needs_audit(&self, coordinator: &str, case: &str, fresh: bool) -> bool {
        let viewed = self.viewed.lock().unwrap_or_else(|e| e.into_inner());
        fresh
            || viewed
                .get(&(coordinator.to_owned(), case.to_owned()))
                .is_none_or(|at| at.elapsed() >= VIEW_AUDIT_EVERY)
    }

    /// Records that the line for this view is written.
    pub(crate) fn view_audited(&self, coordinator: &str, case: &str) {
        let now = std::time::Instant::now();
        let mut viewed = self.viewed.lock().unwrap_or_else(|e| e.into_inner());
        if viewed.len() > 10_000 {
            viewed.retain(|_, at| now.duration_since(*at) < VIEW_AUDIT_EVERY);
        }
        viewed.insert((coordinator.to_owned(), case.to_owned()), now);
    }

    /// The key CSRF tokens are derived with: made once, kept in the database (sealed
    /// under the server key when there is one) so that tokens survive a restart and agree
    /// between instances.
    pub(crate) async fn key(&self, state: &AppState) -> Result<[u8; 32], StoreError> {
        self.csrf_key
            .get_or_try_init(|| async {
                let text = state
                    .store
                    .secret_or_insert(crate::store::CSRF_KEY, || {
                        hex::encode(rand::thread_rng().r#gen::<[u8; 32]>())
                    })
                    .await?;
                let bytes = hex::decode(&text)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| StoreError::Corrupt(crate::store::CSRF_KEY.into()))?;
                Ok(bytes)
            })
            .await
            .copied()
    }
}

pub fn router() -> Router<AppState> {
    let dash = Arc::new(Dash::new());
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(overview::page))
        .route("/dashboard/", get(|| async { Redirect::to("/dashboard") }))
        .route(
            "/dashboard/login",
            get(session::login_page).post(session::login),
        )
        .route("/dashboard/login/code", post(session::login_code))
        .route("/dashboard/logout", post(session::logout))
        .route("/dashboard/logout-all", post(session::logout_all))
        .route("/dashboard/lang", get(session::switch_language))
        .route(
            "/dashboard/static/app.css",
            get(|| async { layout::static_css() }),
        )
        .route(
            "/dashboard/static/icon.svg",
            get(|| async { layout::static_icon() }),
        )
        // Browsers ask for it on their own, also on pages that name the icon.
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/dashboard/static/icon.svg") }),
        )
        .route(
            "/dashboard/static/app.js",
            get(|| async { layout::static_js() }),
        )
        .route(
            "/dashboard/static/notify.js",
            get(|| async { notify::page_js() }),
        )
        .route("/dashboard/sw.js", get(notify::service_worker))
        .route("/dashboard/events", get(live::events))
        .route("/dashboard/fragments/overview", get(overview::fragment))
        .route("/dashboard/fragments/cases/{id}", get(cases::fragment))
        .route(
            "/dashboard/requests",
            get(requests::list).post(requests::create),
        )
        .route("/dashboard/requests/new", get(requests::new_form))
        .route(
            "/dashboard/requests/{id}",
            get(requests::detail).post(requests::update),
        )
        .route("/dashboard/requests/{id}/edit", get(requests::edit_form))
        .route("/dashboard/requests/{id}/offer", post(requests::offer))
        .route(
            "/dashboard/requests/{id}/status",
            post(requests::set_status),
        )
        .route("/dashboard/cases", get(cases::list))
        .route(
            "/dashboard/cases/new",
            get(new_case::form).post(new_case::create),
        )
        .route("/dashboard/cases/{id}", get(cases::detail))
        .route("/dashboard/cases/{id}/export", get(exports::case))
        .route(
            "/dashboard/cases/{id}/volunteers",
            post(cases::set_volunteers),
        )
        .route("/dashboard/cases/{id}/delete", post(cases::delete))
        .route("/dashboard/cases/{id}/erase", post(cases::erase))
        .route("/dashboard/cases/{id}/notes", post(cases::add_note))
        .route(
            "/dashboard/cases/{id}/appointments",
            post(cases::add_appointment),
        )
        .route("/dashboard/cases/{id}/edit", post(cases::change))
        .route(
            "/dashboard/volunteers",
            get(volunteers::list).post(volunteers::create),
        )
        .route("/dashboard/volunteers/new", get(volunteers::new_form))
        .route(
            "/dashboard/volunteers/{id}",
            get(volunteers::detail).post(volunteers::update),
        )
        .route(
            "/dashboard/volunteers/{id}/edit",
            get(volunteers::edit_form),
        )
        .route("/dashboard/volunteers/{id}/export", get(exports::volunteer))
        .route("/dashboard/volunteers/{id}/erase", post(volunteers::erase))
        .route(
            "/dashboard/volunteers/{id}/enrollment-code",
            post(volunteers::enrollment_code),
        )
        .route("/dashboard/devices/{id}", get(volunteers::device_page))
        .route("/dashboard/devices/{id}/revoke", post(volunteers::revoke))
        .route("/dashboard/reports", get(reports::page))
        .route(
            "/dashboard/settings",
            get(settings::page).post(settings::update),
        )
        .route("/dashboard/reports.csv", get(reports::csv))
        .route("/dashboard/statements", get(statements::totals))
        .route("/dashboard/statements.csv", get(statements::totals_csv))
        .route(
            "/dashboard/volunteers/{id}/statement",
            get(statements::statement),
        )
        .route(
            "/dashboard/volunteers/{id}/statement.csv",
            get(statements::statement_csv),
        )
        .route("/dashboard/team", get(team::page))
        .route("/dashboard/team/invite", post(team::invite))
        .route("/dashboard/team/two-factor", post(team::two_factor_for_all))
        .route("/dashboard/team/{id}/role", post(team::set_role))
        .route("/dashboard/team/{id}/active", post(team::set_active))
        .route(
            "/dashboard/team/{id}/password-link",
            post(team::password_link),
        )
        .route(
            "/dashboard/team/{id}/two-factor-reset",
            post(team::reset_two_factor),
        )
        .route("/dashboard/account", get(account::page))
        .route(
            "/dashboard/account/password",
            post(account::change_password),
        )
        .route(
            "/dashboard/account/two-factor",
            get(account::two_factor_page).post(account::confirm_two_factor),
        )
        .route(
            "/dashboard/welcome",
            get(account::welcome_page).post(account::welcome_submit),
        )
        .route("/dashboard/audit", get(audit::page))
        .route("/dashboard/audit.csv", get(audit::csv))
        .route("/dashboard/reports/chart/{name}", get(reports::chart))
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(dash))
}

/// Scripts and styles only from us, no framing, no sniffing, no caching of pages that
/// show case data.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

//! The coordinators' dashboard over real HTTP, on SQLite and PostgreSQL: login and
//! logout, redirects when logged out, CSRF on every form, isolation between
//! organisations, the request flow through the forms, live updates (SSE) when a phone
//! syncs, cases to look at, and the report numbers with small-cell suppression.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::browser::{Browser, csrf_of, events, events_after, wait_for_event};
use common::sync_client::SyncClient;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, DocumentId, NewCase, NewHours, NewNote, Status, Topic};
use lotse_server::store::NewDocument;
use lotse_testkit::fixtures::window;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use reqwest::header;
use serde_json::json;

const PASSWORD: &str = "ein langes Passwort 42";
const QUIET: Duration = Duration::from_millis(300);

/// A form as a browser sends it: (name, value) pairs, a name perhaps more than once.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// `form` with `changes`: each replaces the value of the first field of its name, or is
/// added where the form has no such field.
fn changed<'a>(form: &[(&'a str, &'a str)], changes: &[(&'a str, &'a str)]) -> Form<'a> {
    let mut form = form.to_vec();
    for &(name, value) in changes {
        match form.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => form.push((name, value)),
        }
    }
    form
}

/// The id a redirect after a form leads to, in `/dashboard/{kind}/{id}?...`.
fn id_in(location: &str, kind: &str) -> String {
    location
        .trim_start_matches(&format!("/dashboard/{kind}/"))
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

fn email_of(org: &str) -> String {
    format!(
        "koordination@{}.example",
        org.to_lowercase().replace(' ', "-")
    )
}

/// An organisation with a coordinator logged in to the dashboard (and the API token).
async fn logged_in(s: &TestServer, org: &str) -> (Browser, String, String) {
    let (org_id, token) = s.new_org(org).await;
    let mut b = Browser::new(s);
    let page = b.login(&email_of(org), PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, "/dashboard");
    assert!(b.cookies.contains_key("lotse_session"));
    (b, org_id, token)
}

/// Whether the volunteer's first device is revoked, as the store has it.
async fn first_device_revoked(s: &TestServer, org: &str, volunteer: &str) -> bool {
    let devices = s.store.devices_of(org, volunteer).await.unwrap().unwrap();
    devices[0].revoked_at.is_some()
}

/// The status of a request, as the store has it.
async fn request_status(s: &TestServer, org: &str, request: &str) -> String {
    s.store.request(org, request).await.unwrap().unwrap().status
}

/// Everything an organisation has, to point at its pages.
struct World {
    request: String,
    volunteer: String,
    device: String,
    device_token: String,
    case: DocumentId,
}

impl World {
    /// `template` with `{request}`, `{volunteer}`, `{device}` and `{case}` replaced by
    /// this organisation's ids.
    fn path(&self, template: &str) -> String {
        template
            .replace("{request}", &self.request)
            .replace("{volunteer}", &self.volunteer)
            .replace("{device}", &self.device)
            .replace("{case}", &self.case.to_string())
    }

    fn paths(&self, templates: &[&str]) -> Vec<String> {
        templates.iter().map(|t| self.path(t)).collect()
    }
}

async fn world(s: &TestServer, token: &str, name: &str) -> World {
    let volunteer = s.volunteer(token, name, &["ar", "de"]).await;
    let (device, device_token) = s.device(token, &volunteer, "Handy").await;
    let (a, e) = window(3);
    let request = s.create_request(token, "behoerden", &["ar"], &a, &e).await;
    let case = s
        .create_case(
            token,
            &format!("Fall von {name}"),
            "gesundheit",
            &["ar"],
            &[&volunteer],
        )
        .await;
    World {
        request,
        volunteer,
        device,
        device_token,
        case,
    }
}

/// Every page a coordinator can ask for, in terms of `World::path`.
const GET_PATHS: &[&str] = &[
    "/dashboard",
    "/dashboard/requests",
    "/dashboard/requests/new",
    "/dashboard/requests/{request}",
    "/dashboard/requests/{request}/edit",
    "/dashboard/cases",
    "/dashboard/cases/new",
    "/dashboard/cases/{case}",
    "/dashboard/volunteers",
    "/dashboard/volunteers/new",
    "/dashboard/volunteers/{volunteer}",
    "/dashboard/volunteers/{volunteer}/edit",
    "/dashboard/devices/{device}",
    "/dashboard/settings",
    "/dashboard/reports",
    "/dashboard/reports.csv",
    "/dashboard/reports/chart/requests-topic.svg",
    "/dashboard/events",
    "/dashboard/fragments/overview",
    "/dashboard/fragments/cases/{case}",
];

/// Every form a coordinator can send, in terms of `World::path`.
const POST_PATHS: &[&str] = &[
    "/dashboard/logout",
    "/dashboard/logout-all",
    "/dashboard/requests",
    "/dashboard/requests/{request}",
    "/dashboard/requests/{request}/offer",
    "/dashboard/requests/{request}/status",
    "/dashboard/volunteers",
    "/dashboard/volunteers/{volunteer}",
    "/dashboard/volunteers/{volunteer}/enrollment-code",
    "/dashboard/devices/{device}/revoke",
    "/dashboard/cases/{case}/volunteers",
    "/dashboard/cases/new",
    "/dashboard/settings",
];

async fn pages_redirect_to_login_when_logged_out(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, token) = s.new_org("Lotsen Redirect").await;
    let w = world(&s, &token, "Amira").await;
    let mut b = Browser::new(&s);
    for path in w.paths(GET_PATHS) {
        let page = b.get(&path).await;
        assert_eq!(page.status, 303, "GET {path}");
        assert!(
            page.location.starts_with("/dashboard/login"),
            "GET {path} -> {}",
            page.location
        );
    }
    // The page asked for is where the login leads back to.
    let page = b.get("/dashboard/requests?status=open").await;
    assert_eq!(
        page.location,
        "/dashboard/login?next=%2Fdashboard%2Frequests%3Fstatus%3Dopen"
    );
    for path in w.paths(POST_PATHS) {
        let page = b.post(&path, &[("csrf", "x")]).await;
        assert_eq!(page.status, 303, "POST {path}");
        assert!(page.location.starts_with("/dashboard/login"), "POST {path}");
    }
    // A device token in the cookie is no coordinator session either.
    b.cookies
        .insert("lotse_session".into(), w.device_token.clone());
    assert!(b.is_sent_to_login().await);
    // The login page itself and the static files need no session.
    b.cookies.clear();
    assert_eq!(b.get("/dashboard/login").await.status, 200);
    assert_eq!(b.get("/dashboard/static/app.js").await.status, 200);
    assert_eq!(b.get("/").await.location, "/dashboard");
    // The device was never revoked, nothing was created.
    assert!(!first_device_revoked(&s, &org, &w.volunteer).await);
    s.stop().await;
}

async fn forms_reject_a_missing_or_wrong_csrf_token(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen CSRF").await;
    let w = world(&s, &token, "Amira").await;
    let good = b.csrf().await;
    // A token of another session of the same coordinator does not fit this one.
    let mut other = Browser::new(&s);
    assert_eq!(
        other.login(&email_of("Lotsen CSRF"), PASSWORD).await.status,
        303
    );
    let foreign = other.csrf().await;
    assert_ne!(foreign, good);
    let fields = |csrf: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut f = vec![
            ("institution_kind", "jobcenter"),
            ("institution_name", "Jobcenter"),
            ("topic", "arbeit"),
            ("language", "ar"),
            ("date", "2030-05-06"),
            ("from", "10:00"),
            ("to", "11:00"),
            ("place_area", "Mitte"),
            ("volunteer", "00000000-0000-0000-0000-000000000000"),
            ("status", "cancelled"),
            ("valid_hours", "24"),
            ("display_name", "Eingeschleust"),
            ("topic", "wohnen"),
            ("active", "1"),
        ];
        if !csrf.is_empty() {
            f.push(("csrf", csrf));
        }
        f
    };
    let foreign: &'static str = Box::leak(foreign.into_boxed_str());
    for path in w.paths(POST_PATHS) {
        for csrf in ["", "0000", foreign] {
            let page = b.post(&path, &fields(csrf)).await;
            assert_eq!(
                page.status, 403,
                "POST {path} with csrf {csrf:?}: {}",
                page.body
            );
            assert!(page.body.contains("Formular abgelaufen"), "{}", page.body);
        }
    }
    // The login form has its own token, bound to a cookie.
    let mut fresh = Browser::new(&s);
    let page = fresh
        .post(
            "/dashboard/login",
            &[("email", &email_of("Lotsen CSRF")), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403);
    let form = fresh.get("/dashboard/login").await;
    let csrf = csrf_of(&form.body);
    fresh.cookies.remove("lotse_login");
    let page = fresh
        .post(
            "/dashboard/login",
            &[
                ("csrf", &csrf),
                ("email", &email_of("Lotsen CSRF")),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403, "a login token without its cookie");
    assert!(!fresh.cookies.contains_key("lotse_session"));

    // Nothing happened: still logged in, nothing created, cancelled or revoked.
    assert_eq!(b.get("/dashboard").await.status, 200);
    assert_eq!(other.get("/dashboard").await.status, 200);
    assert_eq!(s.store.requests(&org, None).await.unwrap().len(), 1);
    assert_eq!(request_status(&s, &org, &w.request).await, "open");
    assert!(!first_device_revoked(&s, &org, &w.volunteer).await);
    let volunteers = s.store.volunteers(&org).await.unwrap();
    assert_eq!(volunteers.len(), 1, "no volunteer created");
    assert_eq!(
        volunteers[0].display_name, "Amira",
        "the volunteer unchanged"
    );

    // With the right token the same forms work.
    let page = b
        .post(
            &format!("/dashboard/devices/{}/revoke", w.device),
            &[("csrf", &good)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(first_device_revoked(&s, &org, &w.volunteer).await);
    let (status, _) = s.get("/api/v1/me", Some(&w.device_token)).await;
    assert_eq!(status, 401, "a revoked device is locked out");
    s.stop().await;
}

async fn login_logout_and_logout_everywhere(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, api_token) = s.new_org("Lotsen Login").await;
    let email = email_of("Lotsen Login");
    let mut b = Browser::new(&s);
    let page = b.login(&email, "falsch").await;
    assert_eq!(page.status, 401);
    assert!(
        page.body
            .contains("E-Mail-Adresse oder Passwort ist falsch")
    );
    assert!(!b.cookies.contains_key("lotse_session"));
    // Back to the page asked for, after login.
    let form = b.get("/dashboard/login?next=%2Fdashboard%2Fcases").await;
    let csrf = csrf_of(&form.body);
    let page = b
        .post(
            "/dashboard/login",
            &[
                ("csrf", &csrf),
                ("email", &email),
                ("password", PASSWORD),
                ("next", "/dashboard/cases"),
            ],
        )
        .await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/dashboard/cases")
    );
    let cookie = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("lotse_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    let overview = b.get("/dashboard").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains(r#"<html lang="de">"#));
    assert!(
        overview
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .is_some()
    );
    // Logging in again goes straight on.
    assert_eq!(b.get("/dashboard/login").await.location, "/dashboard");

    // Logout ends this session only.
    let mut second = Browser::new(&s);
    assert_eq!(second.login(&email, PASSWORD).await.status, 303);
    let csrf = b.csrf().await;
    let page = b.post("/dashboard/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/dashboard/login")
    );
    assert!(b.is_sent_to_login().await);
    assert_eq!(second.get("/dashboard").await.status, 200);
    assert_eq!(s.get("/api/v1/me", Some(&api_token)).await.0, 200);
    // Logout everywhere ends the other browsers and the API session too.
    let csrf = second.csrf().await;
    let page = second
        .post("/dashboard/logout-all", &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(s.get("/api/v1/me", Some(&api_token)).await.0, 401);
    assert!(second.is_sent_to_login().await);
    s.stop().await;
}

async fn languages_follow_header_switch_and_query(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, _) = logged_in(&s, "Lotsen Sprache").await;
    let page = b.get("/dashboard").await;
    assert!(page.body.contains(r#"<html lang="de">"#) && page.body.contains("Überblick"));
    b.accept_language = "en-GB,en;q=0.9".into();
    let page = b.get("/dashboard/requests").await;
    assert!(
        page.body.contains(r#"<html lang="en">"#) && page.body.contains("New request"),
        "{}",
        page.body
    );
    let page = b.get("/dashboard/requests?lang=de").await;
    assert!(page.body.contains(r#"<html lang="de">"#) && page.body.contains("Neue Anfrage"));
    // The switch remembers the choice over the header.
    let page = b
        .get("/dashboard/lang?to=de&back=%2Fdashboard%2Fcases%3Flang%3Den")
        .await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/dashboard/cases")
    );
    let page = b.get("/dashboard/cases").await;
    assert!(page.body.contains(r#"<html lang="de">"#) && page.body.contains("Fälle"));
    // ... and never leads away from the dashboard.
    assert_eq!(
        b.get("/dashboard/lang?to=en&back=https%3A%2F%2Fevil.example")
            .await
            .location,
        "/dashboard"
    );
    s.stop().await;
}

async fn org_b_sees_nothing_of_org_a(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org_a, token_a) = s.new_org("Lotsen A").await;
    let a = world(&s, &token_a, "Zainab Geheim").await;
    let (mut b, _, _) = logged_in(&s, "Lotsen B").await;
    for path in a.paths(&[
        "/dashboard/requests/{request}",
        "/dashboard/requests/{request}/edit",
        "/dashboard/cases/{case}",
        "/dashboard/fragments/cases/{case}",
        "/dashboard/volunteers/{volunteer}",
        "/dashboard/volunteers/{volunteer}/edit",
        "/dashboard/devices/{device}",
    ]) {
        let page = b.get(&path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.body.contains("Zainab"), "{path}");
    }
    let csrf = b.csrf().await;
    for path in a.paths(&[
        "/dashboard/devices/{device}/revoke",
        "/dashboard/volunteers/{volunteer}/enrollment-code",
        "/dashboard/requests/{request}/status",
        "/dashboard/requests/{request}/offer",
        "/dashboard/volunteers/{volunteer}",
    ]) {
        let page = b
            .post(
                &path,
                &[
                    ("csrf", &csrf),
                    ("status", "cancelled"),
                    ("volunteer", &a.volunteer),
                    ("display_name", "Übernommen"),
                    ("language", "de"),
                ],
            )
            .await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    assert!(!first_device_revoked(&s, &org_a, &a.volunteer).await);
    assert_eq!(request_status(&s, &org_a, &a.request).await, "open");
    assert_eq!(
        s.store
            .volunteer(&org_a, &a.volunteer)
            .await
            .unwrap()
            .unwrap()
            .display_name,
        "Zainab Geheim"
    );
    for path in [
        "/dashboard",
        "/dashboard/requests",
        "/dashboard/cases",
        "/dashboard/volunteers",
        "/dashboard/reports",
        "/dashboard/reports.csv",
        "/dashboard/fragments/overview",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(
            !page.body.contains("Zainab"),
            "{path} shows org A's volunteer"
        );
        assert!(
            !page.body.contains(&a.request) && !page.body.contains(&a.case.to_string()),
            "{path} links org A"
        );
        assert!(
            !page.body.contains("Arabisch"),
            "{path} counts org A's languages"
        );
    }
    s.stop().await;
}

/// The new-request form as the desk fills it in: F.K.'s urgent appointment at the Praxis
/// Dr. Özdemir in the Nordstadt on `date`, 14:00-15:30, in Arabic.
fn request_form<'a>(csrf: &'a str, date: &'a str) -> Form<'a> {
    vec![
        ("csrf", csrf),
        ("institution_kind", "arztpraxis"),
        ("institution_name", "Praxis Dr. Özdemir"),
        ("person_label", "F.K."),
        ("topic", "gesundheit"),
        ("language", "ar"),
        ("other_languages", ""),
        ("date", date),
        ("from", "14:00"),
        ("to", "15:30"),
        ("place_area", "Nordstadt"),
        ("place_address", "Lindenstraße 3"),
        ("urgency", "dringend"),
        ("description", "Befundbesprechung"),
    ]
}

async fn the_request_flow_through_the_forms(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Formulare").await;
    let amira = s.volunteer(&token, "Amira Haddad", &["ar", "de"]).await;
    let olena = s.volunteer(&token, "Olena Kovalenko", &["uk"]).await;
    let (_, phone) = s.device(&token, &amira, "Amiras Handy").await;
    let csrf = b.csrf().await;
    let date = jiff::Zoned::now()
        .checked_add(jiff::SignedDuration::from_hours(72))
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();

    // Invalid input comes back with messages, nothing is stored.
    let page = b
        .post(
            "/dashboard/requests",
            &[
                ("csrf", &csrf),
                ("topic", "gesundheit"),
                ("date", &date),
                ("from", "14:00"),
                ("to", "13:00"),
            ],
        )
        .await;
    page.assert_refused(&[
        "Bitte mindestens eine Sprache wählen",
        "Das Ende muss nach dem Beginn liegen",
        r#"aria-invalid="true""#,
    ]);
    assert!(s.store.requests(&org, None).await.unwrap().is_empty());

    // Values the API refuses are refused here too, not replaced (issue 12: one set of rules).
    let form = request_form(&csrf, &date);
    let refused = changed(
        &form,
        &[("institution_kind", "unbekannt"), ("urgency", "sofort")],
    );
    let page = b.post("/dashboard/requests", &refused).await;
    page.assert_refused(&[
        "Bitte eine Art der Einrichtung wählen",
        "Bitte die Dringlichkeit wählen",
    ]);
    assert!(s.store.requests(&org, None).await.unwrap().is_empty());

    let page = b.post("/dashboard/requests", &form).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let id = id_in(&page.location, "requests");
    let stored = s.store.request(&org, &id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.institution_name.as_str(),
            stored.languages.clone(),
            stored.urgency.as_str()
        ),
        ("Praxis Dr. Özdemir", vec!["ar".to_owned()], "dringend")
    );

    // The request's page ranks the candidates with reasons.
    let page = b.get(&format!("/dashboard/requests/{id}")).await;
    assert_eq!(page.status, 200);
    let amira_at = page.body.find("Amira Haddad").unwrap();
    let olena_at = page.body.find("Olena Kovalenko").unwrap();
    assert!(amira_at < olena_at, "the Arabic speaker ranks first");
    assert!(page.body.contains("spricht ar") && page.body.contains("spricht nicht ar"));

    // Edit: one more language, a later end, the address and description emptied.
    let edited = changed(
        &form,
        &[
            ("other_languages", "hy"),
            ("to", "16:00"),
            ("place_address", ""),
            ("urgency", "normal"),
            ("description", ""),
        ],
    );
    let page = b.post(&format!("/dashboard/requests/{id}"), &edited).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stored = s.store.request(&org, &id).await.unwrap().unwrap();
    assert_eq!(stored.languages, vec!["ar".to_owned(), "hy".to_owned()]);
    assert_eq!(stored.place_address, None);

    // Offer to Amira and Olena; Olena declines, Amira's phone accepts.
    let page = b
        .post(
            &format!("/dashboard/requests/{id}/offer"),
            &[
                ("csrf", &csrf),
                ("volunteer", &amira),
                ("volunteer", &olena),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = b.get(&page.location).await;
    assert!(
        page.body.contains("Angeboten an 2 Person(en)"),
        "{}",
        page.body
    );
    let (_, olena_phone) = s.device(&token, &olena, "Olenas Handy").await;
    assert_eq!(
        s.post(
            &format!("/api/v1/offers/{id}/decline"),
            Some(&olena_phone),
            json!({})
        )
        .await
        .0,
        200
    );
    let (status, accepted) = s.accept(&phone, &id).await;
    assert_eq!(status, 200, "{accepted}");
    let case = accepted["assignment"]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = b.get(&format!("/dashboard/requests/{id}")).await;
    assert!(
        page.body.contains(r#"data-offer="accepted""#)
            && page.body.contains(r#"data-offer="declined""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("angenommen von Amira Haddad")
            && page.body.contains("abgelehnt von Olena Kovalenko")
    );
    assert!(page.body.contains(&format!("/dashboard/cases/{case}")));
    let page = b.get(&format!("/dashboard/cases/{case}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("F.K.") && page.body.contains("Amira Haddad"));

    // Done, then an enrollment code with its QR code, then revoking a device.
    let set_status = format!("/dashboard/requests/{id}/status");
    let page = b.submit(&set_status, &csrf, &[("status", "done")]).await;
    assert_eq!(page.status, 303);
    assert_eq!(request_status(&s, &org, &id).await, "done");
    let new_code = format!("/dashboard/volunteers/{amira}/enrollment-code");
    let page = b.submit(&new_code, &csrf, &[("valid_hours", "72")]).await;
    assert_eq!(page.status, 200);
    let at = page.body.find(r#""enrollment-code""#).unwrap();
    let at = at + page.body[at..].find('>').unwrap() + 1;
    let code = &page.body[at..at + 11];
    assert!(page.body.contains("<svg role=\"img\""), "a QR code");
    let (status, enrolled) = s
        .post(
            "/api/v1/devices/enroll",
            None,
            json!({"code": code, "device_name": "Neues Handy"}),
        )
        .await;
    assert_eq!(status, 201, "the shown code works: {enrolled}");
    let page = b.get(&format!("/dashboard/volunteers/{amira}")).await;
    assert!(page.body.contains("Neues Handy") && page.body.contains("Amiras Handy"));
    s.stop().await;
}

async fn the_volunteer_flow_through_the_forms(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Profile").await;
    let csrf = b.csrf().await;

    // The list leads to the form; the form has a label for every input and three rows.
    let list = b.get("/dashboard/volunteers").await;
    assert!(
        list.body.contains(r#"href="/dashboard/volunteers/new""#)
            && list.body.contains("Neue Lotsin / neuer Lotse anlegen"),
        "{}",
        list.body
    );
    let form = b.get("/dashboard/volunteers/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    for id in [
        "display_name",
        "other_languages",
        "pledge_signed_on",
        "weekday-0",
        "from-1",
        "to-2",
    ] {
        assert!(
            form.body.contains(&format!(r#"id="{id}""#))
                && form.body.contains(&format!(r#"for="{id}""#)),
            "{id} has no label"
        );
    }
    assert!(form.body.contains(r#"name="csrf""#));
    assert!(form.body.contains(r#"name="active" value="1" checked"#));

    // Invalid input comes back with German messages and the values typed; nothing stored.
    let page = b
        .post(
            "/dashboard/volunteers",
            &[
                ("csrf", &csrf),
                ("display_name", "  Amira Haddad "),
                ("language", "ar"),
                ("other_languages", "xx"),
                ("topic", "gesundheit"),
                ("weekday-0", "2"),
                ("from-0", "12:00"),
                ("to-0", "11:00"),
                ("weekday-1", ""),
                ("from-1", "09:00"),
                ("to-1", "10:00"),
                ("weekday-2", ""),
                ("from-2", ""),
                ("to-2", ""),
                ("pledge_signed_on", "12.09.2025"),
                ("training-name-0", "Basislehrgang"),
                ("training-date-0", ""),
            ],
        )
        .await;
    page.assert_refused(&[
        "Bitte prüfen Sie die markierten Angaben.",
        "„xx“ ist kein Sprachkürzel",
        "Das Ende muss nach dem Beginn liegen.",
        "Bitte einen Wochentag wählen.",
        "Bitte ein Datum wie 04.03.2026 angeben.",
    ]);
    for kept in [
        r#"value="Amira Haddad""#,
        r#"value="ar" checked"#,
        r#"value="xx""#,
        r#"value="gesundheit" checked"#,
        r#"<option value="2" selected>"#,
        r#"name="from-0" value="12:00""#,
        r#"name="to-0" value="11:00""#,
        r#"name="from-1" value="09:00""#,
        r#"value="12.09.2025""#,
        r#"name="training-name-0" value="Basislehrgang""#,
    ] {
        assert!(page.body.contains(kept), "{kept} not kept: {}", page.body);
    }
    assert!(page.body.contains(r#"aria-invalid="true""#));
    assert!(!page.body.contains(r#"name="active" value="1" checked"#));
    let page = b
        .submit(
            "/dashboard/volunteers",
            &csrf,
            &[("display_name", " "), ("active", "1")],
        )
        .await;
    page.assert_refused(&["Bitte ausfüllen.", "Bitte mindestens eine Sprache wählen."]);
    b.accept_language = "en".into();
    let page = b
        .post(
            "/dashboard/volunteers",
            &[
                ("csrf", &csrf),
                ("display_name", &"x".repeat(101)),
                ("language", "de"),
            ],
        )
        .await;
    page.assert_refused(&["At most 100 characters."]);
    b.accept_language = "de-DE,de;q=0.9".into();
    assert!(s.store.volunteers(&org).await.unwrap().is_empty());

    // A valid form creates the volunteer and leads to the profile.
    let valid = [
        ("csrf", csrf.as_str()),
        ("display_name", "  Amira Haddad "),
        ("language", "ar"),
        ("language", "de"),
        ("other_languages", "HY"),
        ("topic", "gesundheit"),
        ("topic", "behoerden"),
        ("weekday-0", "2"),
        ("from-0", "14:00"),
        ("to-0", "18:00"),
        ("weekday-1", ""),
        ("from-1", ""),
        ("to-1", ""),
        ("weekday-2", "4"),
        ("from-2", "09:00"),
        ("to-2", "12:00"),
        ("active", "1"),
        ("pledge_signed_on", "2025-09-12"),
        ("training-name-0", "Supervision"),
        ("training-date-0", "2026-02-05"),
        ("training-name-1", ""),
        ("training-date-1", ""),
        ("training-name-2", " Basislehrgang Integrationslotsen "),
        ("training-date-2", "2025-09-12"),
    ];
    let page = b.post("/dashboard/volunteers", &valid).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location.ends_with("?created=1"), "{}", page.location);
    let id = id_in(&page.location, "volunteers");
    let v = s.store.volunteer(&org, &id).await.unwrap().unwrap();
    assert_eq!(v.display_name, "Amira Haddad");
    assert_eq!(v.languages, ["ar", "de", "hy"]);
    assert_eq!(v.topics, ["gesundheit", "behoerden"]);
    let slots: Vec<_> = v
        .availability
        .iter()
        .map(|x| (x.weekday, x.from.as_str(), x.to.as_str()))
        .collect();
    assert_eq!(slots, [(2, "14:00", "18:00"), (4, "09:00", "12:00")]);
    assert!(v.active);
    assert_eq!(v.pledge_signed_on.as_deref(), Some("2025-09-12"));
    let trainings: Vec<_> = v
        .trainings
        .iter()
        .map(|t| (t.name.as_str(), t.completed_on.as_str()))
        .collect();
    // Trimmed, empty rows left out, oldest first.
    assert_eq!(
        trainings,
        [
            ("Basislehrgang Integrationslotsen", "2025-09-12"),
            ("Supervision", "2026-02-05")
        ]
    );
    // The API stores the same data the same way.
    let (status, api) = s
        .post(
            "/api/v1/volunteers",
            Some(&token),
            json!({
                "display_name": "  Amira Haddad ", "languages": ["ar", "de", "HY"],
                "topics": ["gesundheit", "behoerden"],
                "availability": [{"weekday": 2, "from": "14:00", "to": "18:00"},
                                 {"weekday": 4, "from": "09:00", "to": "12:00"}],
                "pledge_signed_on": "2025-09-12",
                "trainings": [{"name": "Supervision", "completed_on": "2026-02-05"},
                              {"name": " Basislehrgang Integrationslotsen ", "completed_on": "2025-09-12"}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{api}");
    let (_, ours) = s
        .get(&format!("/api/v1/volunteers/{id}"), Some(&token))
        .await;
    for field in [
        "display_name",
        "languages",
        "topics",
        "availability",
        "active",
        "pledge_signed_on",
        "trainings",
    ] {
        assert_eq!(ours[field], api[field], "{field}");
    }
    let api_id = api["id"].as_str().unwrap().to_owned();

    let page = b.get(&page.location).await;
    assert_eq!(page.status, 200);
    for shown in [
        "Angelegt.",
        "Amira Haddad",
        "Armenisch",
        "Dienstag 14:00–18:00",
        "Donnerstag 09:00–12:00",
        "12.09.2025",
        "Supervision, 05.02.2026",
        &format!(r#"href="/dashboard/volunteers/{id}/edit""#),
        "Bearbeiten",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    let list = b.get("/dashboard/volunteers").await;
    assert!(list.body.contains(&format!(
        r#"<a href="/dashboard/volunteers/{id}">Amira Haddad</a>"#
    )));
    let actions: Vec<_> = s
        .store
        .audit_events(&org, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject_id == id)
        .map(|e| (e.actor_kind, e.action))
        .collect();
    // Newest first: a read for each load of the profile page (after the form's redirect
    // and again above), then the creation.
    assert_eq!(
        actions,
        [
            ("coordinator".to_owned(), "volunteer.read".to_owned()),
            ("coordinator".to_owned(), "volunteer.read".to_owned()),
            ("coordinator".to_owned(), "volunteer.create".to_owned())
        ]
    );

    // The edit form shows the stored values.
    let edit = format!("/dashboard/volunteers/{id}/edit");
    let form = b.get(&edit).await;
    assert_eq!(form.status, 200, "{}", form.body);
    for kept in [
        r#"action="/dashboard/volunteers/"#,
        r#"value="Amira Haddad""#,
        r#"value="ar" checked"#,
        r#"value="de" checked"#,
        r#"name="other_languages" value="hy""#,
        r#"value="behoerden" checked"#,
        r#"name="from-0" value="14:00""#,
        r#"name="to-1" value="12:00""#,
        r#"name="weekday-2""#,
        r#"name="active" value="1" checked"#,
        r#"value="2025-09-12""#,
    ] {
        assert!(form.body.contains(kept), "{kept}: {}", form.body);
    }

    // Invalid changes are shown again and change nothing.
    let target = format!("/dashboard/volunteers/{id}");
    let invalid = [
        ("csrf", csrf.as_str()),
        ("display_name", "Amira H."),
        ("language", "ar"),
        ("topic", "kochen"),
        ("weekday-0", "9"),
        ("from-0", "10:00"),
        ("to-0", "11:00"),
    ];
    let page = b.post(&target, &invalid).await;
    page.assert_refused(&[
        "„kochen“ ist kein Thema.",
        "Bitte einen Wochentag wählen.",
        r#"value="Amira H.""#,
    ]);
    let unchanged = s.store.volunteer(&org, &id).await.unwrap().unwrap();
    assert_eq!(unchanged.display_name, "Amira Haddad");
    assert_eq!(unchanged.updated_at, v.updated_at);

    // Without a valid CSRF token: 403, nothing changes, nothing is created.
    for bad in ["", "0000"] {
        let mut fields = vec![
            ("display_name", "Fremd"),
            ("language", "de"),
            ("active", "1"),
        ];
        if !bad.is_empty() {
            fields.push(("csrf", bad));
        }
        for path in [target.as_str(), "/dashboard/volunteers"] {
            let page = b.post(path, &fields).await;
            assert_eq!(page.status, 403, "POST {path} with {bad:?}");
        }
    }
    let unchanged = s.store.volunteer(&org, &id).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.display_name.as_str(), unchanged.updated_at),
        ("Amira Haddad", v.updated_at)
    );
    assert_eq!(s.store.volunteers(&org).await.unwrap().len(), 2);

    // A valid edit changes every field; unticked and emptied fields are cleared.
    let edit_form = [
        ("csrf", csrf.as_str()),
        ("display_name", "Amira H."),
        ("language", "ar"),
        ("other_languages", ""),
        ("weekday-0", "5"),
        ("from-0", "10:00"),
        ("to-0", "11:30"),
        ("weekday-1", ""),
        ("from-1", ""),
        ("to-1", ""),
        ("pledge_signed_on", ""),
    ];
    let page = b.post(&target, &edit_form).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, format!("{target}?saved=1"));
    let edited = s.store.volunteer(&org, &id).await.unwrap().unwrap();
    assert_eq!(edited.display_name, "Amira H.");
    assert_eq!(edited.languages, ["ar"]);
    assert!(edited.topics.is_empty());
    assert_eq!(edited.availability.len(), 1);
    assert_eq!(
        (
            edited.availability[0].weekday,
            edited.availability[0].from.as_str(),
            edited.availability[0].to.as_str()
        ),
        (5, "10:00", "11:30")
    );
    assert!(!edited.active);
    assert_eq!(edited.pledge_signed_on, None);
    let page = b.get(&page.location).await;
    assert!(
        page.body.contains("Gespeichert.") && page.body.contains("inaktiv"),
        "{}",
        page.body
    );
    assert!(
        s.store
            .audit_events(&org, 20)
            .await
            .unwrap()
            .iter()
            .any(|e| e.subject_id == id && e.action == "volunteer.update")
    );

    // Another organisation's coordinator finds neither the form nor the record.
    let (mut other, _, _) = logged_in(&s, "Lotsen Nachbarstadt").await;
    let other_csrf = other.csrf().await;
    let page = other.get(&edit).await;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains("Amira"));
    let page = other
        .post(
            &target,
            &[
                ("csrf", &other_csrf),
                ("display_name", "Übernommen"),
                ("language", "de"),
                ("active", "1"),
            ],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.body);
    let after = s.store.volunteer(&org, &id).await.unwrap().unwrap();
    assert_eq!(
        (after.display_name.as_str(), after.updated_at),
        ("Amira H.", edited.updated_at)
    );
    let untouched = s.store.volunteer(&org, &api_id).await.unwrap().unwrap();
    assert_eq!(
        untouched.display_name, "Amira Haddad",
        "edits reach one record"
    );
    s.stop().await;
}

/// A coordinator of a new organisation logged in, and its volunteer Amira (Arabic) with a
/// phone and a case (Gesundheit) shared with her.
struct AmirasCase {
    b: Browser,
    token: String,
    amira: String,
    phone_token: String,
    case: DocumentId,
}

async fn amiras_case(s: &TestServer, org: &str, phone: &str, label: &str) -> AmirasCase {
    let (b, _, token) = logged_in(s, org).await;
    let amira = s.volunteer(&token, "Amira", &["ar"]).await;
    let (_, phone_token) = s.device(&token, &amira, phone).await;
    let with_amira = [amira.as_str()];
    let case = s.create_case(&token, label, "gesundheit", &["ar"], &with_amira);
    AmirasCase {
        case: case.await,
        b,
        token,
        amira,
        phone_token,
    }
}

async fn a_synced_note_reaches_the_open_pages_live(backend: Backend) {
    let s = TestServer::start(backend).await;
    let AmirasCase {
        mut b,
        token,
        amira,
        phone_token,
        case,
    } = amiras_case(&s, "Lotsen Live", "Handy", "F.K.").await;
    // The stream took its first fingerprint and subscribed to the hub before it answered.
    let mut stream = events(&b).await;

    let mut phone = SyncClient::connect(s.addr, &phone_token, "phone").await;
    phone.fetch(case).await;
    CaseDoc::add_note(
        phone.docs.get_mut(&case).unwrap(),
        &NewNote {
            author: amira.clone(),
            text: "Termin bei der Ausländerbehörde vereinbart".into(),
        },
        jiff::Timestamp::now().as_millisecond(),
    )
    .unwrap();
    phone.sync_docs(&[case], QUIET).await;
    wait_for_event(&mut stream, "change", Duration::from_secs(10)).await;
    // That `change` may be the one the phone's fetch caused (its last sync time is part
    // of the fingerprint), which can come before the note is stored: the page refreshes
    // again on the next one, so ask until the fragment has the note.
    let fragment = b
        .get_until(
            &format!("/dashboard/fragments/cases/{case}"),
            "the note in the case fragment",
            |page| {
                page.status == 200
                    && page
                        .body
                        .contains("Termin bei der Ausländerbehörde vereinbart")
            },
        )
        .await;
    assert_eq!(fragment.status, 200);
    assert!(!fragment.body.contains("<html"), "a fragment, not a page");
    assert!(
        fragment.body.contains("Amira"),
        "the note's author is named"
    );
    let overview = b.get("/dashboard/fragments/overview").await;
    assert!(overview.body.contains(&format!(r#"data-case="{case}""#)));

    // A request made through the API shows up too (the stream polls). A fresh stream,
    // since each one closes itself after a while (30 s) and the browser reconnects.
    drop(stream);
    let mut stream = events(&b).await;
    let (a, e) = window(1);
    s.create_request(&token, "arbeit", &["ar"], &a, &e).await;
    wait_for_event(&mut stream, "change", Duration::from_secs(10)).await;
    let overview = b.get("/dashboard/fragments/overview").await;
    assert!(overview.body.contains(r#"data-count="overdue""#));
    assert!(
        overview.body.contains("Überfällige Anfragen (1)"),
        "{}",
        overview.body
    );

    // A browser that reconnects with an old event id hears at once that it missed something.
    let mut again = events_after(&b, Some("0000000000000000")).await;
    wait_for_event(&mut again, "change", Duration::from_secs(10)).await;
    drop(again);
    drop(stream);

    // Logging out everywhere ends the stream with `bye` (on a stream opened just before,
    // so that it cannot have closed itself by age first).
    let csrf = b.csrf().await;
    let mut stream = events(&b).await;
    assert_eq!(
        b.post("/dashboard/logout-all", &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    wait_for_event(&mut stream, "bye", Duration::from_secs(10)).await;
    drop(stream);
    s.stop().await;
}

async fn the_overview_shows_stale_phones_and_cases_to_look_at(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, token) = logged_in(&s, "Lotsen Blick").await;
    let amira = s.volunteer(&token, "Amira Haddad", &["ar"]).await;
    let olena = s.volunteer(&token, "Olena Kovalenko", &["uk"]).await;
    let (_, amira_phone) = s.device(&token, &amira, "Handy").await;
    let (olena_device, _) = s.device(&token, &olena, "Handy").await;
    // Enrolled a moment ago and not synced yet: not overdue for a sync.
    let mehmet = s.volunteer(&token, "Mehmet Yılmaz", &["tr"]).await;
    s.device(&token, &mehmet, "Handy").await;
    let case = s
        .create_case(&token, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;

    // Amira's phone fetches the case, goes offline and writes a note; meanwhile the
    // coordinator closes the case. Then the phone comes back.
    let mut phone = SyncClient::connect(s.addr, &amira_phone, "phone").await;
    phone.fetch(case).await;
    let mut desk = SyncClient::connect(s.addr, &token, "desk").await;
    desk.fetch(case).await;
    let now = jiff::Timestamp::now().as_millisecond();
    CaseDoc::add_note(
        phone.docs.get_mut(&case).unwrap(),
        &NewNote {
            author: amira.clone(),
            text: "Noch ein Termin nötig".into(),
        },
        now,
    )
    .unwrap();
    CaseDoc::set_status(
        desk.docs.get_mut(&case).unwrap(),
        Status::Closed,
        now + 1000,
    )
    .unwrap();
    // Only once the server holds the closing does "(0)" say something.
    desk.offer(case).await;
    desk.wait_until_stored(&s.store, case).await;
    let page = b.get("/dashboard").await;
    assert!(
        page.body.contains("Fälle zum Anschauen (0)"),
        "closing alone is fine"
    );
    phone.sync_docs(&[case], QUIET).await;
    let lookat = format!(r#"data-lookat="{case}""#);
    b.get_until("/dashboard", "the case to look at", |page| {
        page.body.contains("Fälle zum Anschauen (1)") && page.body.contains(&lookat)
    })
    .await;
    let case_page = b.get(&format!("/dashboard/cases/{case}")).await;
    assert!(case_page.body.contains("Bitte anschauen"));

    // Olena's phone synced ten days ago, Amira's just now.
    let ten_days_ago = jiff::Timestamp::now().as_millisecond() - 10 * 86_400_000;
    sqlx::query("UPDATE devices SET last_sync_at = $1, created_at = $2 WHERE id = $3")
        .bind(ten_days_ago)
        .bind(ten_days_ago - 2 * 86_400_000)
        .bind(&olena_device)
        .execute(s.store.pool())
        .await
        .unwrap();
    let page = b.get("/dashboard").await;
    assert!(
        page.body
            .contains("Seit mehr als 7 Tagen nicht synchronisiert (1)"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!(r#"data-volunteer="{olena}""#)));
    assert!(page.body.contains("vor 10 Tagen"));
    assert!(!page.body.contains(&format!(r#"data-volunteer="{mehmet}""#)));
    let page = b.get("/dashboard?days=14").await;
    assert!(
        page.body
            .contains("Seit mehr als 14 Tagen nicht synchronisiert (0)")
    );
    s.stop().await;
}

// ---- reports ----------------------------------------------------------------------

fn ms(rfc3339: &str) -> i64 {
    lotse_server::timefmt::parse_ms(rfc3339).unwrap()
}

async fn report_case(
    s: &TestServer,
    org: &str,
    topic: Topic,
    languages: &[&str],
    created: &str,
    hours: &[(&str, u32, u32)],
) {
    let mut doc = Automerge::new();
    let at = ms(created);
    CaseDoc::create(
        &mut doc,
        &NewCase {
            organisation_id: org.to_owned(),
            label: "X".into(),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
            topic,
            status: Status::Active,
        },
        at,
    )
    .unwrap();
    for (date, minutes, travel) in hours {
        CaseDoc::log_hours(
            &mut doc,
            &NewHours {
                author: "v".into(),
                date: (*date).into(),
                minutes: *minutes,
                travel_minutes: *travel,
                kind: "begleitung".into(),
            },
            at,
        )
        .unwrap();
    }
    let summary = CaseDoc::summary(&doc, at).unwrap();
    let snapshot = lotse_protocol::save_snapshot(&doc);
    let heads = doc.get_heads();
    s.state
        .hub
        .create(
            NewDocument {
                id: DocumentId::random(),
                organisation_id: org,
                kind: "case",
                owner_volunteer_id: None,
                chunk: &snapshot,
                heads: &heads,
                shared_with: &[],
                summary: Some(&summary),
                created_by: None,
                authored: None,
                device_limit: None,
            },
            doc,
        )
        .await
        .unwrap();
}

/// The cells of the row labelled `label` in the page's table of `dimension`.
fn row(html: &str, dimension: &str, label: &str) -> Vec<String> {
    let table = &html[html
        .find(&format!(r#"data-dimension="{dimension}""#))
        .unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let start = table
        .find(&format!(r#"<th scope="row">{label}</th>"#))
        .unwrap_or_else(|| panic!("no row {label} in {dimension}"));
    let tr = &table[start..table[start..].find("</tr>").unwrap() + start];
    tr.split(r#"<td class="num">"#)
        .skip(1)
        .map(|c| c[..c.find("</td>").unwrap()].replace("&lt;", "<"))
        .collect()
}

/// Requests whose appointments lie in the past, one a window, for the reports. The API
/// takes only windows that are not over yet, so each is posted for tomorrow and then
/// moved back in the database, as time would have moved it.
async fn past_requests(
    s: &TestServer,
    token: &str,
    topic: &str,
    languages: &[&str],
    windows: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let (tomorrow, tomorrow_end) = window(1);
    let mut ids = Vec::new();
    for (starts, ends) in windows {
        let id = s
            .create_request(token, topic, languages, &tomorrow, &tomorrow_end)
            .await;
        sqlx::query("UPDATE requests SET starts_at = $1, ends_at = $2 WHERE id = $3")
            .bind(ms(&starts))
            .bind(ms(&ends))
            .bind(&id)
            .execute(s.store.pool())
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// An hour from 10:00 (Berlin, winter) on each of `days` of `month` ("2025-01").
fn mornings(month: &str, days: std::ops::Range<u32>) -> Vec<(String, String)> {
    days.map(|day| {
        (
            format!("{month}-{day}T10:00:00+01:00"),
            format!("{month}-{day}T11:00:00+01:00"),
        )
    })
    .collect()
}

async fn report_numbers_suppress_small_cells(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Bericht").await;
    // Requests (by their appointment): 7 Gesundheit/ar in January 2025 (5 placed),
    // 3 Arbeit/tr+de in February, 2 Arbeit/ar in March, 1 Wohnen/fa in April (outside).
    let january = past_requests(
        &s,
        &token,
        "gesundheit",
        &["ar"],
        mornings("2025-01", 10..17),
    )
    .await;
    past_requests(
        &s,
        &token,
        "arbeit",
        &["tr", "de"],
        mornings("2025-02", 10..13),
    )
    .await;
    past_requests(&s, &token, "arbeit", &["ar"], mornings("2025-03", 10..12)).await;
    // Midnight of 1 April in Berlin is still March in UTC: it must count for April.
    let april_first = (
        "2025-04-01T00:30:00+02:00".to_owned(),
        "2025-04-01T01:30:00+02:00".to_owned(),
    );
    past_requests(&s, &token, "wohnen", &["fa"], [april_first]).await;
    for id in &january[..5] {
        sqlx::query("UPDATE requests SET status = 'assigned' WHERE id = $1")
            .bind(id)
            .execute(s.store.pool())
            .await
            .unwrap();
    }
    // Cases (by their start) and hours (by their day): 6 Gesundheit/ar started in
    // January, one with 3 x 2 h (and 3 x 30 min travel); 1 Bildung/uk in February with
    // 1 h, and 10 h in May (outside).
    let (january_20, february_2) = ("2025-01-20T09:00:00+01:00", "2025-02-02T09:00:00+01:00");
    let three_visits = [
        ("2025-01-21", 120, 30),
        ("2025-01-22", 120, 30),
        ("2025-01-23", 120, 30),
    ];
    report_case(
        &s,
        &org,
        Topic::Gesundheit,
        &["ar"],
        january_20,
        &three_visits,
    )
    .await;
    for _ in 0..5 {
        report_case(&s, &org, Topic::Gesundheit, &["ar"], january_20, &[]).await;
    }
    let hours = [("2025-02-03", 60, 0), ("2025-05-01", 600, 0)];
    report_case(&s, &org, Topic::Bildung, &["uk"], february_2, &hours).await;

    let page = b.get("/dashboard/reports?from=2025-01&to=2025-03").await;
    assert_eq!(page.status, 200);
    let h = &page.body;
    let small = ["<5"; 5];
    for (dimension, label, cells) in [
        //                          requests placed cases hours travel
        ("topic", "Gesundheit", ["7", "5", "6", "6,0", "<5"]),
        ("topic", "Arbeit", ["5", "<5", "<5", "<5", "<5"]),
        ("topic", "Bildung", small),
        ("topic", "Wohnen", small),
        ("language", "Arabisch", ["9", "5", "6", "6,0", "<5"]),
        ("language", "Türkisch", small),
        ("language", "Deutsch", small),
        ("language", "Ukrainisch", small),
        ("month", "Januar 2025", ["7", "5", "6", "6,0", "<5"]),
        ("month", "Februar 2025", small),
        ("month", "März 2025", small),
    ] {
        assert_eq!(row(h, dimension, label), cells, "{dimension} {label}");
    }
    assert!(
        !h.contains("Persisch"),
        "the April request is outside the period"
    );
    assert!(!h.contains("April 2025"));
    // Totals: 12 requests, 5 placed, 7 cases, 7 h, 1.5 h travel (suppressed).
    let totals = &h[h.find(r#"id="totals""#).unwrap()..];
    let totals = &totals[..totals.find("</dl>").unwrap()];
    for v in [
        "<dd>12</dd>",
        "<dd>5</dd>",
        "<dd>7</dd>",
        "<dd>7,0</dd>",
        "<dd>&lt;5</dd>",
    ] {
        assert!(totals.contains(v), "{v} in {totals}");
    }
    // The charts in the page and as files show "<5", never a small number.
    assert!(h.contains(r#"data-chart="requests-topic""#));
    let svg = b
        .get("/dashboard/reports/chart/requests-language.svg?from=2025-01&to=2025-03")
        .await;
    assert_eq!(svg.status, 200);
    assert!(
        svg.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    let svg = svg.body;
    assert!(
        svg.starts_with("<svg") && svg.contains(">9<") && svg.contains("&lt;5"),
        "{svg}"
    );
    for small in [">1<", ">2<", ">3<", ">4<"] {
        assert!(!svg.contains(small), "{small} leaks in {svg}");
    }
    let svg = b
        .get("/dashboard/reports/chart/requests-month.svg?from=2025-01&to=2025-03")
        .await
        .body;
    assert!(
        svg.contains(">7<") && svg.matches("&lt;5").count() == 2,
        "{svg}"
    );
    assert!(!svg.contains(">3<") && !svg.contains(">2<"));
    let svg = b
        .get("/dashboard/reports/chart/hours-month.svg?from=2025-01&to=2025-03")
        .await
        .body;
    assert!(
        svg.contains(">6,0<") && svg.matches("&lt;5").count() == 2,
        "{svg}"
    );
    assert_eq!(
        b.get("/dashboard/reports/chart/nonsense.svg").await.status,
        404
    );

    // CSV: UTF-8 with BOM, German separators, the same suppression.
    let res = b
        .http
        .get(format!(
            "{}/dashboard/reports.csv?from=2025-01&to=2025-03",
            b.base
        ))
        .header(header::COOKIE, b.cookie_header())
        .header(header::ACCEPT_LANGUAGE, "de")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        res.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("lotse-bericht_2025-01_2025-03.csv")
    );
    let bytes = res.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "byte order mark");
    let csv = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "Gliederung;Wert;Anfragen;davon vermittelt;neue Fälle;Stunden;Fahrzeit (Stunden)"
    );
    for line in [
        "Thema;Gesundheit;7;5;6;6,0;<5",
        "Thema;Arbeit;5;<5;<5;<5;<5",
        "Sprache;Arabisch;9;5;6;6,0;<5",
        "Sprache;Türkisch;<5;<5;<5;<5;<5",
        "Monat;Januar 2025;7;5;6;6,0;<5",
        "Monat;Februar 2025;<5;<5;<5;<5;<5",
        "Gesamt;Januar 2025 – März 2025;12;5;7;7,0;<5",
    ] {
        assert!(lines.contains(&line), "{line} in {csv}");
    }
    for l in &lines[1..] {
        for cell in l.split(';').skip(2) {
            assert!(
                cell == "<5" || cell.replace(',', ".").parse::<f64>().unwrap() >= 5.0,
                "{cell} in {l}"
            );
        }
    }
    // English: comma separated, decimal point.
    b.accept_language = "en".into();
    let csv = b
        .get("/dashboard/reports.csv?from=2025-01&to=2025-03")
        .await
        .body;
    assert!(csv.starts_with('\u{feff}'));
    assert!(csv.contains("Topic,Health,7,5,6,6.0,<5\r\n"), "{csv}");
    s.stop().await;
}

/// Secondary suppression: with 6 requests in January and 2 in February, the total of 8
/// would give February's number away next to January's 6. January is withheld ("*") in
/// the page, the chart and the CSV alike.
async fn a_lone_small_cell_takes_a_neighbour_along_everywhere(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _org, token) = logged_in(&s, "Lotsen Gegenrechnung").await;
    let windows = [mornings("2025-01", 10..16), mornings("2025-02", 10..12)];
    past_requests(&s, &token, "gesundheit", &["ar"], windows.concat()).await;
    let page = b.get("/dashboard/reports?from=2025-01&to=2025-02").await;
    assert_eq!(page.status, 200);
    let h = &page.body;
    //                                          requests placed cases hours travel
    assert_eq!(
        row(h, "month", "Januar 2025"),
        ["*", "<5", "<5", "<5", "<5"]
    );
    assert_eq!(row(h, "month", "Februar 2025"), ["<5"; 5]);
    // Topics: one topic holds all 8, the seven others are "<5" already.
    assert_eq!(row(h, "topic", "Gesundheit"), ["8", "<5", "<5", "<5", "<5"]);
    assert!(h.contains("Ein „*“ verdeckt"), "the page explains the star");

    let svg = b
        .get("/dashboard/reports/chart/requests-month.svg?from=2025-01&to=2025-02")
        .await
        .body;
    assert!(
        svg.contains(">*<") && svg.matches("&lt;5").count() == 1,
        "{svg}"
    );
    assert!(!svg.contains(">6<") && !svg.contains(">2<"), "{svg}");

    let csv = b
        .get("/dashboard/reports.csv?from=2025-01&to=2025-02")
        .await
        .body;
    for line in [
        "Monat;Januar 2025;*;<5;<5;<5;<5",
        "Monat;Februar 2025;<5;<5;<5;<5;<5",
        "Gesamt;Januar 2025 – Februar 2025;8;<5;<5;<5;<5",
    ] {
        assert!(csv.lines().any(|l| l == line), "{line} in {csv}");
    }
    s.stop().await;
}

/// Opening a case page is a read of the case: it is audited before the page is sent, and
/// the page shows the case's audit trail with names.
async fn a_case_page_view_is_audited_and_shows_the_trail(backend: Backend) {
    let s = TestServer::start(backend).await;
    let AmirasCase {
        mut b,
        token,
        phone_token: phone,
        case,
        ..
    } = amiras_case(&s, "Lotsen Einsicht", "Amiras Handy", "K.M.").await;
    assert_eq!(
        s.get(&format!("/api/v1/cases/{case}"), Some(&phone))
            .await
            .0,
        200
    );
    let page = b.get(&format!("/dashboard/cases/{case}")).await;
    assert_eq!(page.status, 200);
    let h = &page.body;
    assert!(h.contains("Protokoll"), "{h}");
    assert!(h.contains(r#"data-action="document.create""#));
    assert!(
        h.contains("Amira (Amiras Handy)"),
        "the phone's read names it"
    );
    // This very view is already in the trail it shows.
    assert_eq!(
        h.matches(r#"data-action="document.read""#).count(),
        2,
        "{h}"
    );
    assert!(h.contains("angesehen") && h.contains("angelegt"));
    let reads = || async {
        let (_, lines) = s
            .get(&format!("/api/v1/cases/{case}/audit"), Some(&token))
            .await;
        lines
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "document.read")
            .count()
    };
    // Live refreshes of the open page are part of the same view.
    let fragment = format!("/dashboard/fragments/cases/{case}");
    assert_eq!(b.get(&fragment).await.status, 200);
    assert_eq!(reads().await, 2);
    // A refresh by a colleague who never opened the page is a view of its own.
    let colleague = "zweite@lotsen-einsicht.example";
    s.coordinator("Lotsen Einsicht", colleague, PASSWORD).await;
    let mut other = Browser::new(&s);
    assert_eq!(other.login(colleague, PASSWORD).await.status, 303);
    assert_eq!(other.get(&fragment).await.status, 200);
    assert_eq!(reads().await, 3);
    s.stop().await;
}

/// The team of a case, the device page of a lost phone, and the settings: what the
/// coordinator does to take access away, through the forms.
async fn access_is_taken_away_through_the_forms(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Formular").await;
    let w = world(&s, &token, "Amira").await;
    let olena = s.volunteer(&token, "Olena", &["uk"]).await;
    let elsewhere = s
        .create_case(&token, "Nicht ihrer", "wohnen", &["uk"], &[&olena])
        .await;

    // The device page lists exactly the cases the phone could hold.
    let page = b.get(&format!("/dashboard/devices/{}", w.device)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!(r#"data-case="{}""#, w.case)));
    assert!(!page.body.contains(&format!(r#"data-case="{elsewhere}""#)));
    assert_eq!(page.body.matches("data-case=").count(), 1);

    // Taking Amira off her case and giving it to Olena.
    let case_page = b.get(&format!("/dashboard/cases/{}", w.case)).await;
    let csrf = csrf_of(&case_page.body);
    let done = b
        .submit(
            &format!("/dashboard/cases/{}/volunteers", w.case),
            &csrf,
            &[("volunteer", &olena)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        s.store.case_volunteers(&org, &w.case).await.unwrap(),
        Some(vec![olena.clone()])
    );
    // The phone has not been in touch since: it may still hold the case, and the page
    // says so until it has.
    let page = b.get(&format!("/dashboard/devices/{}", w.device)).await;
    assert!(page.body.contains(&format!(r#"data-case="{}""#, w.case)));
    // Revoking it as lost.
    let done = b
        .post(
            &format!("/dashboard/devices/{}/revoke", w.device),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(
        done.location,
        format!("/dashboard/devices/{}?revoked=1", w.device)
    );
    let page = b.get(&done.location).await;
    assert!(page.body.contains("gesperrt"), "{}", page.body);
    let (status, _) = s.get("/api/v1/me", Some(&w.device_token)).await;
    assert_eq!(status, 401);

    // The lease in the settings: a wrong number is refused at its field.
    let refused = b
        .submit("/dashboard/settings", &csrf, &[("device_lease_days", "0")])
        .await;
    refused.assert_refused(&["1–365"]);
    let saved = b
        .submit("/dashboard/settings", &csrf, &[("device_lease_days", "14")])
        .await;
    assert_eq!(saved.status, 303);
    let (_, settings) = s.get("/api/v1/organisation/settings", Some(&token)).await;
    assert_eq!(settings["device_lease_days"], 14);
    // The retention periods on the same page (issue 15): each refused at its own field,
    // 0 allowed where the purge may act at once, and nothing saved while one is wrong.
    let page = b.get("/dashboard/settings").await;
    assert!(
        page.body
            .contains("Abgeschlossene Fälle löschen nach (Monaten)")
    );
    let refused = b
        .submit(
            "/dashboard/settings",
            &csrf,
            &[
                ("device_lease_days", "14"),
                ("case_retention_months", "121"),
                ("request_retention_days", "0"),
                ("audit_retention_months", "0"),
            ],
        )
        .await;
    refused.assert_refused(&["0–120", "1–120"]);
    let saved = b
        .submit(
            "/dashboard/settings",
            &csrf,
            &[
                ("device_lease_days", "14"),
                ("case_retention_months", "0"),
                ("request_retention_days", "7"),
                ("audit_retention_months", "12"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303);
    let (_, settings) = s.get("/api/v1/organisation/settings", Some(&token)).await;
    assert_eq!(
        (
            &settings["case_retention_months"],
            &settings["request_retention_days"],
            &settings["audit_retention_months"],
        ),
        (&json!(0), &json!(7), &json!(12))
    );
    s.stop().await;
}

/// A case deleted through its page: only with a reason and an explicit confirmation,
/// then gone (the page and the API answer 404) with its tombstone naming the reason.
async fn a_case_is_deleted_through_its_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, token) = logged_in(&s, "Lotsen Loeschformular").await;
    let amira = s.volunteer(&token, "Amira", &["ar"]).await;
    let case = s
        .create_case(&token, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let path = format!("/dashboard/cases/{case}");
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("action=\"{path}/delete\"")),
        "a delete form"
    );
    let csrf = csrf_of(&page.body);

    let unconfirmed = b
        .submit(&format!("{path}/delete"), &csrf, &[("reason", "mistake")])
        .await;
    assert_eq!(unconfirmed.status, 422, "{}", unconfirmed.body);
    let retention = b
        .submit(
            &format!("{path}/delete"),
            &csrf,
            &[("reason", "retention"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(
        retention.status, 422,
        "the purge job's reason is not a coordinator's"
    );
    assert_eq!(b.get(&path).await.status, 200, "still there");

    let done = b
        .submit(
            &format!("{path}/delete"),
            &csrf,
            &[("reason", "mistake"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location, "/dashboard/cases?deleted=1");
    let list = b.get(&done.location).await;
    assert!(list.body.contains("Der Fall ist gelöscht"), "{}", list.body);
    assert_eq!(b.get(&path).await.status, 404);
    let (status, _) = s.get(&format!("/api/v1/cases/{case}"), Some(&token)).await;
    assert_eq!(status, 404);
    let tomb = s.store.tombstone(&case).await.unwrap().unwrap();
    assert_eq!(tomb.reason, "mistake");
    s.stop().await;
}

/// Owned form fields as `submit` takes them.
fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A coordinator starts a Patenschaft through the form (issue 18): refused without a
/// label or with an inactive volunteer, then created as the coordinator, shared with both
/// volunteers, its kind on the page and in the API.
async fn a_patenschaft_is_started_through_the_form(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Patenschaft").await;
    let amira = s.volunteer(&token, "Amira Haddad", &["ar"]).await;
    let olena = s.volunteer(&token, "Olena Kovalenko", &["uk"]).await;
    let gone = s.volunteer(&token, "Dilan Aydin", &["tr"]).await;
    let (status, _) = s
        .patch(
            &format!("/api/v1/volunteers/{gone}"),
            Some(&token),
            serde_json::json!({"active": false}),
        )
        .await;
    assert_eq!(status, 200);
    let list = b.get("/dashboard/cases").await;
    assert!(
        list.body.contains("href=\"/dashboard/cases/new\""),
        "a way to start one"
    );
    let form = b.get("/dashboard/cases/new").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("Amira Haddad") && !form.body.contains("Dilan Aydin"),
        "active ones to choose"
    );
    let csrf = csrf_of(&form.body);
    let fields = |label: &'static str, volunteers: &[&String]| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = [
            ("label", label),
            ("kind", "patenschaft"),
            ("topic", "bildung"),
            ("language", "ar"),
            ("language", "de"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        f.extend(
            volunteers
                .iter()
                .map(|v| ("volunteer".to_owned(), (*v).clone())),
        );
        f
    };
    let sent = fields("", &[&amira]);
    let no_label = b.submit("/dashboard/cases/new", &csrf, &pairs(&sent)).await;
    assert_eq!(no_label.status, 422, "{}", no_label.body);
    assert!(no_label.body.contains("Kürzel"), "{}", no_label.body);
    let sent = fields("P.K.", &[&gone]);
    let inactive = b.submit("/dashboard/cases/new", &csrf, &pairs(&sent)).await;
    assert_eq!(inactive.status, 422, "{}", inactive.body);
    assert!(inactive.body.contains("Nur aktive"), "{}", inactive.body);

    let sent = fields("P.K.", &[&amira, &olena]);
    let done = b.submit("/dashboard/cases/new", &csrf, &pairs(&sent)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let id = id_in(&done.location, "cases");
    let page = b.get(&done.location).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Patenschaft"), "the kind shows");
    let c = s.case(&token, &id.parse().unwrap()).await;
    assert_eq!(c["kind"], "patenschaft");
    assert_eq!(c["label"], "P.K.");
    assert_eq!(c["topic"], "bildung");
    assert_eq!(c["languages"], serde_json::json!(["ar", "de"]));
    let row = s
        .store
        .cases(&org)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    let mut shared = row.volunteer_ids.clone();
    shared.sort();
    let mut both = vec![amira.clone(), olena.clone()];
    both.sort();
    assert_eq!(shared, both, "shared with both");
    s.stop().await;
}

/// Art. 17 for a volunteer through their page: refused without the confirmation, then
/// done; the page afterwards says so and offers no edit, code or erasure any more.
async fn a_volunteer_is_erased_through_their_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, org, token) = logged_in(&s, "Lotsen Art17").await;
    let amira = s.volunteer(&token, "Amira Kahlil", &["ar"]).await;
    s.device(&token, &amira, "Amiras Handy").await;
    let path = format!("/dashboard/volunteers/{amira}");
    let page = b.get(&path).await;
    assert!(
        page.body.contains(&format!("action=\"{path}/erase\"")),
        "an erase form"
    );
    let csrf = csrf_of(&page.body);
    let unconfirmed = b.submit(&format!("{path}/erase"), &csrf, &[]).await;
    assert_eq!(unconfirmed.status, 422, "{}", unconfirmed.body);
    assert!(
        b.get(&path).await.body.contains("Amira Kahlil"),
        "still there"
    );

    let done = b
        .submit(&format!("{path}/erase"), &csrf, &[("confirm", "yes")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location, format!("{path}?erased=1"));
    let after = b.get(&done.location).await;
    assert_eq!(after.status, 200);
    assert!(!after.body.contains("Amira Kahlil"), "{}", after.body);
    assert!(
        after.body.contains("Nach Art. 17 DSGVO gelöscht am"),
        "{}",
        after.body
    );
    for gone in ["/erase\"", "/edit\"", "/enrollment-code\""] {
        assert!(!after.body.contains(gone), "{gone} is offered still");
    }
    assert!(first_device_revoked(&s, &org, &amira).await);
    let edit = b
        .submit(
            &path,
            &csrf,
            &[("display_name", "Amira Kahlil"), ("languages", "ar")],
        )
        .await;
    assert_eq!(edit.status, 409, "{}", edit.body);
    s.stop().await;
}

/// Erasing a note from a case's history through its page (issue 16): the page names the
/// case by the same id afterwards, shows the rest, keeps its audit trail and says who
/// wrote the remaining note, as before.
async fn a_note_is_erased_through_the_case_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, token) = logged_in(&s, "Lotsen Radierformular").await;
    let amira = s.volunteer(&token, "Amira", &["ar"]).await;
    let case = s
        .create_case(&token, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let (_, device) = s.device(&token, &amira, "Telefon").await;
    let mut phone = SyncClient::connect(s.addr, &device, "phone").await;
    phone.fetch(case).await;
    {
        let doc = phone.docs.get_mut(&case).unwrap();
        for text in [
            "Befund-QX7Z im falschen Fall",
            "Termin beim Jobcenter vereinbart",
        ] {
            let note = lotse_protocol::NewNote {
                author: amira.clone(),
                text: text.into(),
            };
            lotse_protocol::CaseDoc::add_note(doc, &note, 1_772_633_400_000).unwrap();
        }
    }
    phone.offer(case).await;
    phone.wait_until_stored(&s.store, case).await;
    let path = format!("/dashboard/cases/{case}");
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("action=\"{path}/erase\"")),
        "an erase form"
    );
    assert!(page.body.contains("Befund-QX7Z"));
    let csrf = csrf_of(&page.body);
    let (_, api) = s.get(&format!("/api/v1/cases/{case}"), Some(&token)).await;
    let note = |text: &str| {
        api["notes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["text"].as_str().unwrap().contains(text))
            .unwrap()
            .clone()
    };
    let secret = note("Befund-QX7Z")["id"].as_str().unwrap().to_owned();
    let kept_before = note("Jobcenter");
    let entry = format!("note:{secret}");

    let unconfirmed = b
        .submit(
            &format!("{path}/erase"),
            &csrf,
            &[("entry", entry.as_str()), ("reason", "mistake")],
        )
        .await;
    assert_eq!(unconfirmed.status, 422, "{}", unconfirmed.body);
    let unknown = b
        .submit(
            &format!("{path}/erase"),
            &csrf,
            &[
                ("entry", "note:nonesuch"),
                ("reason", "mistake"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(unknown.status, 404);
    let done = b
        .submit(
            &format!("{path}/erase"),
            &csrf,
            &[
                ("entry", entry.as_str()),
                ("reason", "person-asked"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location,
        format!("{path}?erased=1"),
        "the case keeps its id"
    );
    let after = b.get(&done.location).await;
    assert_eq!(after.status, 200);
    assert!(
        after.body.contains("Der Eintrag ist gelöscht"),
        "{}",
        after.body
    );
    assert!(!after.body.contains("Befund-QX7Z"));
    assert!(after.body.contains("Termin beim Jobcenter vereinbart"));

    // The API names the same case and the same writer for what is left.
    let (status, api) = s.get(&format!("/api/v1/cases/{case}"), Some(&token)).await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["id"], case.to_string());
    assert_ne!(api["documentId"], case.to_string());
    let kept = &api["notes"][0];
    assert_eq!(api["notes"].as_array().unwrap().len(), 1);
    for field in ["id", "author", "authorVerified", "text"] {
        assert_eq!(kept[field], kept_before[field], "{field}");
    }
    // The trail of the case reaches back before the erasure.
    let (_, trail) = s
        .get(&format!("/api/v1/cases/{case}/audit"), Some(&token))
        .await;
    let actions: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["document.erase", "document.create", "document.read"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert_eq!(
        s.store.tombstone(&case).await.unwrap().unwrap().reason,
        "erased:person-asked"
    );
    s.stop().await;
}

/// A coordinator writes into a case through its page (issue 18): a note, an appointment,
/// the status and label; the API shows them, the note by that coordinator.
async fn a_coordinator_writes_through_the_case_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, token) = logged_in(&s, "Lotsen Schreibformular").await;
    let amira = s.volunteer(&token, "Amira", &["ar"]).await;
    let case = s
        .create_case(&token, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let path = format!("/dashboard/cases/{case}");
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    let empty = b
        .submit(&format!("{path}/notes"), &csrf, &[("text", "  ")])
        .await;
    assert_eq!(empty.status, 422);
    let saved = b
        .submit(
            &format!("{path}/notes"),
            &csrf,
            &[("text", "Rückruf beim Jobcenter")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.location, format!("{path}?saved=1"));
    let wrong_times = b
        .submit(
            &format!("{path}/appointments"),
            &csrf,
            &[("date", "2026-12-09"), ("from", "11:00"), ("to", "10:00")],
        )
        .await;
    assert_eq!(wrong_times.status, 422, "ends before it starts");
    let appointment = b
        .submit(
            &format!("{path}/appointments"),
            &csrf,
            &[
                ("date", "2026-12-09"),
                ("from", "10:00"),
                ("to", "11:30"),
                ("place", "Ausländerbehörde"),
                ("purpose", "Termin"),
            ],
        )
        .await;
    assert_eq!(appointment.status, 303, "{}", appointment.body);
    let closed = b
        .submit(
            &format!("{path}/edit"),
            &csrf,
            &[("status", "closed"), ("label", "F.K.")],
        )
        .await;
    assert_eq!(closed.status, 303, "{}", closed.body);
    let page = b.get(&closed.location).await;
    assert!(
        page.body.contains("Rückruf beim Jobcenter"),
        "{}",
        page.body
    );

    let (_, me) = s.get("/api/v1/me", Some(&token)).await;
    let (status, got) = s.get(&format!("/api/v1/cases/{case}"), Some(&token)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "closed");
    assert_eq!(got["notes"][0]["text"], "Rückruf beim Jobcenter");
    assert_eq!(got["notes"][0]["author"], me["coordinator_id"]);
    assert_eq!(got["notes"][0]["authorVerified"], true);
    let a = &got["appointments"][0];
    assert_eq!(a["place"], "Ausländerbehörde");
    // 10:00 in Berlin in December is 09:00 UTC.
    assert_eq!(
        a["end"].as_i64().unwrap() - a["start"].as_i64().unwrap(),
        90 * 60_000
    );
    s.stop().await;
}

/// The dashboard has an icon, and the browser's own request for `/favicon.ico` finds it.
async fn the_dashboard_has_an_icon(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, _) = logged_in(&s, "Lotsen Symbol").await;
    let page = b.get("/dashboard").await;
    assert!(
        page.body.contains(r#"rel="icon""#),
        "the pages name the icon"
    );
    let ico = b.get("/favicon.ico").await;
    assert_eq!(ico.status, 308);
    assert_eq!(ico.location, "/dashboard/static/icon.svg");
    let icon = b.get(&ico.location).await;
    assert_eq!(icon.status, 200);
    assert!(icon.body.starts_with("<svg") && icon.body.contains("</svg>"));
    s.stop().await;
}

/// A volunteer's monthly statement (issue 18) adds up to the hours they wrote on their
/// cases that month, and nobody else's; the month's totals and both CSVs agree.
async fn a_monthly_statement_adds_up(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (mut b, _, token) = logged_in(&s, "Lotsen Abrechnung").await;
    let amira = s.volunteer(&token, "Amira", &["ar"]).await;
    let olena = s.volunteer(&token, "Olena", &["uk"]).await;
    let first = s
        .create_case(&token, "F.K.", "gesundheit", &["ar"], &[&amira, &olena])
        .await;
    let second = s
        .create_case(&token, "M.S.", "wohnen", &["ar"], &[&amira])
        .await;
    let (_, amira_phone) = s.device(&token, &amira, "Amiras Telefon").await;
    let (_, olena_phone) = s.device(&token, &olena, "Olenas Telefon").await;
    let log = |date: &str, minutes: u32, travel: u32, author: &str| lotse_protocol::NewHours {
        author: author.to_owned(),
        date: date.into(),
        minutes,
        travel_minutes: travel,
        kind: "begleitung".into(),
    };
    let mut phone = SyncClient::connect(s.addr, &amira_phone, "amira").await;
    for (case, entries) in [
        (
            first,
            vec![
                log("2026-10-02", 90, 20, &amira),
                log("2026-11-01", 30, 0, &amira),
            ],
        ),
        (
            second,
            vec![
                log("2026-10-15", 45, 15, &amira),
                log("2026-10-31", 60, 10, &amira),
            ],
        ),
    ] {
        phone.fetch(case).await;
        let doc = phone.docs.get_mut(&case).unwrap();
        for h in &entries {
            lotse_protocol::CaseDoc::log_hours(doc, h, 1_772_633_400_000).unwrap();
        }
        phone.offer(case).await;
        phone.wait_until_stored(&s.store, case).await;
    }
    // Olena's hours in the same case and month are hers, even if they claim to be Amira's.
    let mut other = SyncClient::connect(s.addr, &olena_phone, "olena").await;
    other.fetch(first).await;
    let doc = other.docs.get_mut(&first).unwrap();
    lotse_protocol::CaseDoc::log_hours(doc, &log("2026-10-03", 120, 30, &amira), 1_772_633_400_000)
        .unwrap();
    other.offer(first).await;
    other.wait_until_stored(&s.store, first).await;

    let page = b
        .get(&format!(
            "/dashboard/volunteers/{amira}/statement?month=2026-10"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Unterschrift"), "signature lines");
    assert!(
        page.body.contains("3:15 h"),
        "90 + 45 + 60 minutes: {}",
        page.body
    );
    assert!(
        page.body.contains("0:45 h"),
        "20 + 15 + 10 minutes of travel"
    );
    let csv = b
        .get(&format!(
            "/dashboard/volunteers/{amira}/statement.csv?month=2026-10"
        ))
        .await;
    assert_eq!(csv.status, 200);
    let total = csv.body.lines().last().unwrap().to_owned();
    assert_eq!(total, ";Summe;;195;45", "{}", csv.body);
    assert_eq!(
        csv.body.lines().count(),
        5,
        "header, three entries, total: {}",
        csv.body
    );

    let all = b.get("/dashboard/statements.csv?month=2026-10").await;
    let line_of = |name: &str| {
        all.body
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in {}", all.body))
            .to_owned()
    };
    assert!(line_of("Amira").ends_with(";3;195;45"), "{}", all.body);
    assert!(line_of("Olena").ends_with(";1;120;30"), "{}", all.body);
    assert_eq!(
        b.get("/dashboard/statements?month=2026-13").await.status,
        422
    );
    let (mut stranger, _, _) = logged_in(&s, "Andere Lotsen").await;
    let theirs = stranger
        .get(&format!(
            "/dashboard/volunteers/{amira}/statement?month=2026-10"
        ))
        .await;
    assert_eq!(
        theirs.status, 404,
        "another organisation's volunteer is missing"
    );
    s.stop().await;
}

on_both_backends!(
    a_patenschaft_is_started_through_the_form,
    a_volunteer_is_erased_through_their_page,
    a_case_is_deleted_through_its_page,
    a_monthly_statement_adds_up,
    the_dashboard_has_an_icon,
    a_coordinator_writes_through_the_case_page,
    a_note_is_erased_through_the_case_page,
    access_is_taken_away_through_the_forms,
    pages_redirect_to_login_when_logged_out,
    forms_reject_a_missing_or_wrong_csrf_token,
    login_logout_and_logout_everywhere,
    languages_follow_header_switch_and_query,
    org_b_sees_nothing_of_org_a,
    the_request_flow_through_the_forms,
    the_volunteer_flow_through_the_forms,
    a_synced_note_reaches_the_open_pages_live,
    the_overview_shows_stale_phones_and_cases_to_look_at,
    report_numbers_suppress_small_cells,
    a_lone_small_cell_takes_a_neighbour_along_everywhere,
    a_case_page_view_is_audited_and_shows_the_trail,
);

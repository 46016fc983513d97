//! The team (issue 18) over real HTTP, on SQLite and PostgreSQL: a Leitung invites a
//! coordinator, the invitation arrives at a real SMTP server on loopback (aiosmtpd,
//! `tests/mail/smtp_sink.py`), the new coordinator sets a password through the link and
//! logs in; a Koordination is refused the team (403 page and API) and Leitung's powers; a
//! deactivated coordinator's open dashboard stream says `bye` within 2 s. And the second
//! factor with the requirement on, as in production: Leitung is led to set it up, a wrong
//! code fails and counts toward the lockout, a code and a recovery code each work once.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::browser::{Browser, csrf_of, events, wait_for_event};
use lotse_server::team;
use lotse_testkit::{Backend, Options, PASSWORD, TempDir, TestDb, TestServer, on_both_backends};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// aiosmtpd on a free loopback port, keeping each message it accepts as a file.
struct SmtpSink {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl SmtpSink {
    async fn start() -> Self {
        let dir = TempDir::new("smtp");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mail/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs tests/mail/smtp_sink.py (scripts/setup installs aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP sink starts within 30 s")
            .unwrap()
            .expect("the SMTP sink prints its port");
        let port = line
            .strip_prefix("listening on ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of the SMTP sink: {line}"));
        Self { child, dir, port }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn mails(&self) -> Vec<(PathBuf, String)> {
        let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect();
        found.sort();
        found
    }

    /// The one message for `to`, once it has arrived.
    async fn mail_to(&self, to: &str) -> String {
        lotse_testkit::eventually("the e-mail to arrive", Duration::from_secs(30), || async {
            let mine: Vec<String> = self
                .mails()
                .into_iter()
                .filter(|(_, text)| text.contains(&format!("X-Envelope-To: {to}\n")))
                .map(|(_, text)| text)
                .collect();
            assert!(mine.len() <= 1, "one e-mail per invitation: {mine:?}");
            mine.into_iter().next()
        })
        .await
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

async fn org_of(s: &TestServer, token: &str) -> String {
    let (_, me) = s.get("/api/v1/me", Some(token)).await;
    me["organisation_id"].as_str().unwrap().to_owned()
}

/// The path and query of the one-time link in an e-mail or answer.
fn link_path(link: &str) -> String {
    let at = link
        .find("/dashboard/welcome?token=")
        .expect("a one-time link");
    link[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

fn token_of(path: &str) -> String {
    path.split_once("token=").unwrap().1.to_owned()
}

async fn set_password(b: &mut Browser, path: &str, password: &str) -> u16 {
    let page = b.get(path).await;
    if page.status != 200 {
        return page.status;
    }
    let sent = b
        .post(
            "/dashboard/welcome",
            &[
                ("token", &token_of(path)),
                ("new", password),
                ("repeat", password),
            ],
        )
        .await;
    if sent.status == 303 {
        assert_eq!(sent.location, "/dashboard/login?welcome=1");
    }
    sent.status
}

async fn a_leitung_invites_and_deactivates_a_coordinator(backend: Backend) {
    let smtp = SmtpSink::start().await;
    let options = Options {
        smtp_url: Some(smtp.url()),
        ..Options::default()
    };
    let s = TestServer::start_with(TestDb::new(backend).await, options).await;
    let (_, leitung) = s.new_org("Lotsen Team").await;
    // Case content that must never travel by e-mail.
    let volunteer = s.volunteer(&leitung, "Amira", &["ar"]).await;
    let case = s
        .create_case(&leitung, "Familie K.", "gesundheit", &["ar"], &[&volunteer])
        .await;
    let note = "Termin beim Kinderarzt in der Bahnhofstraße";
    let (status, body) = s
        .post(
            &format!("/api/v1/cases/{case}/notes"),
            Some(&leitung),
            json!({"text": note}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let email = "neu@lotsen-team.example";
    let (status, invited) = s
        .post(
            "/api/v1/coordinators",
            Some(&leitung),
            json!({"email": email, "display_name": "Nora Neu"}),
        )
        .await;
    assert_eq!(status, 201, "{invited}");
    assert_eq!(invited["emailed"], true);
    assert_eq!(invited["coordinator"]["role"], "koordination");
    assert_eq!(invited["coordinator"]["status"], "invited");
    let id = invited["coordinator"]["id"].as_str().unwrap().to_owned();
    let (status, again) = s
        .post(
            "/api/v1/coordinators",
            Some(&leitung),
            json!({"email": "NEU@lotsen-team.example", "display_name": "Nora"}),
        )
        .await;
    assert_eq!(status, 409, "one account per address: {again}");

    let mail = smtp.mail_to(email).await;
    assert!(
        mail.contains("Subject: Einladung in die Koordination"),
        "{mail}"
    );
    assert!(
        mail.contains("From: Lotse Test <lotse@test.invalid>"),
        "{mail}"
    );
    let path = link_path(&mail);
    assert_eq!(path, link_path(invited["link"].as_str().unwrap()));
    for secret in [note, "Familie K.", "Amira"] {
        assert!(!mail.contains(secret), "no case content in e-mails: {mail}");
    }
    // Sent, the row goes (the worker deletes it once the SMTP server answered, which is
    // after the sink wrote the file): the link is then nowhere in the database.
    let org = org_of(&s, &leitung).await;
    lotse_testkit::eventually(
        "the sent e-mail's row to go",
        Duration::from_secs(30),
        || async { (s.store.pending_emails(&org).await.unwrap() == 0).then_some(()) },
    )
    .await;

    // Not logged in yet: an invited coordinator has no password that works.
    assert_eq!(s.try_login(email, PASSWORD).await.0, 401);
    let mut nora = Browser::new(&s);
    assert_eq!(set_password(&mut nora, &path, "kurz").await, 422);
    assert_eq!(set_password(&mut nora, &path, PASSWORD).await, 303);
    assert_eq!(
        set_password(&mut nora, &path, PASSWORD).await,
        410,
        "a link works once"
    );
    let page = nora.login(email, PASSWORD).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/dashboard"));
    let nora_token = s.login(email, PASSWORD).await;

    // Koordination: the team, the settings and deletions are Leitung's.
    let team_page = nora.get("/dashboard/team").await;
    assert_eq!(team_page.status, 403, "{}", team_page.body);
    assert!(team_page.body.contains("Nur für die Leitung"));
    let overview = nora.get("/dashboard").await;
    assert!(
        !overview.body.contains(r#"href="/dashboard/team""#),
        "no team link"
    );
    let (status, body) = s.get("/api/v1/coordinators", Some(&nora_token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("leitung_only"))
    );
    let (status, _) = s
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}"),
            Some(&nora_token),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .patch(
            "/api/v1/organisation/settings",
            Some(&nora_token),
            json!({"device_lease_days": 7}),
        )
        .await;
    assert_eq!(status, 403);
    // The daily work is hers.
    let (status, body) = s
        .post(
            &format!("/api/v1/cases/{case}/notes"),
            Some(&nora_token),
            json!({"text": "Rückruf erledigt"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The last Leitung stays.
    let (_, me) = s.get("/api/v1/me", Some(&leitung)).await;
    let leitung_id = me["coordinator_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .patch(
            &format!("/api/v1/coordinators/{leitung_id}"),
            Some(&leitung),
            json!({"role": "koordination"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("last_leitung"))
    );

    // Deactivated: her open dashboard hears `bye` at once, her tokens stop working.
    let mut stream = events(&nora).await;
    let (status, body) = s
        .patch(
            &format!("/api/v1/coordinators/{id}"),
            Some(&leitung),
            json!({"active": false}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deactivated")),
        "{body}"
    );
    wait_for_event(&mut stream, "bye", Duration::from_secs(2)).await;
    assert!(nora.is_sent_to_login().await);
    assert_eq!(s.get("/api/v1/me", Some(&nora_token)).await.0, 401);
    assert_eq!(s.try_login(email, PASSWORD).await.0, 401);
    let (status, _) = s
        .post(
            &format!("/api/v1/coordinators/{id}/password-link"),
            Some(&leitung),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "no links for a deactivated account");

    // Reactivated, and a forgotten password reset through a link (e-mailed as well).
    let (status, _) = s
        .patch(
            &format!("/api/v1/coordinators/{id}"),
            Some(&leitung),
            json!({"active": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reset) = s
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/coordinators/{id}/password-link"),
            Some(&leitung),
            None,
        )
        .await;
    assert_eq!(status, 201, "{reset}");
    let reset_path = link_path(reset["link"].as_str().unwrap());
    let new_password = "ein anderes langes Passwort 7";
    assert_eq!(
        set_password(&mut nora, &reset_path, new_password).await,
        303
    );
    assert_eq!(s.try_login(email, PASSWORD).await.0, 401);
    assert_eq!(s.try_login(email, new_password).await.0, 200);
    lotse_testkit::eventually("the reset e-mail", Duration::from_secs(30), || async {
        (smtp.mails().len() == 2).then_some(())
    })
    .await;

    // The trail names every step.
    let trail = s.store.audit_events(&org, 500).await.unwrap();
    for action in [
        "coordinator.invite",
        "coordinator.accept_invite",
        "coordinator.deactivate",
        "coordinator.reactivate",
        "coordinator.reset_link",
        "coordinator.password_reset",
    ] {
        assert!(
            trail.iter().any(|e| e.action == action),
            "{action} in the trail"
        );
    }
    s.stop().await;
    smtp.stop().await;
}

/// A code of the secret `steps` time steps from now.
fn code(secret: &str, steps: i64) -> String {
    let now = lotse_testkit::now_ms() / 1000 + steps * 30;
    team::code_at(secret, now as u64).unwrap()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn recovery_codes(html: &str) -> Vec<String> {
    let at = html
        .find(r#"id="recovery-codes""#)
        .expect("the recovery codes");
    let list = &html[at..html[at..].find("</ul>").unwrap() + at];
    list.split("<li>")
        .skip(1)
        .map(|li| li[..li.find("</li>").unwrap()].to_owned())
        .collect()
}

async fn login_with(s: &TestServer, email: &str, code: Option<&str>) -> (u16, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    s.post("/api/v1/auth/login", None, body).await
}

async fn leitung_logs_in_with_a_second_factor(backend: Backend) {
    let options = Options {
        two_factor_optional: false,
        ..Options::default()
    };
    let s = TestServer::start_with(TestDb::new(backend).await, options).await;
    let email = "leitung@zwei-faktor.example";
    s.coordinator("Lotsen Zwei Faktor", email, PASSWORD).await;

    // A password alone opens nothing: the API says why, the dashboard leads to the setup.
    let (status, body) = login_with(&s, email, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("two_factor_setup_required"))
    );
    let mut b = Browser::new(&s);
    let page = b.login(email, PASSWORD).await;
    assert_eq!(page.status, 303);
    for path in ["/dashboard", "/dashboard/cases", "/dashboard/team"] {
        let page = b.get(path).await;
        assert_eq!(
            (page.status, page.location.as_str()),
            (303, "/dashboard/account/two-factor"),
            "{path}"
        );
    }
    let setup = b.get("/dashboard/account/two-factor").await;
    assert_eq!(setup.status, 200, "{}", setup.body);
    assert!(setup.body.contains("<svg"), "a QR code");
    let secret = hidden(&setup.body, "secret");
    let sig = hidden(&setup.body, "sig");
    let csrf = csrf_of(&setup.body);
    let wrong = b
        .submit(
            "/dashboard/account/two-factor",
            &csrf,
            &[("secret", &secret), ("sig", &sig), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    // A secret of one's own choosing is refused: the form's secret is signed.
    let forged = b
        .submit(
            "/dashboard/account/two-factor",
            &csrf,
            &[
                ("secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
                ("sig", &sig),
                ("code", &code("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 0)),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let done = b
        .submit(
            "/dashboard/account/two-factor",
            &csrf,
            &[
                ("secret", &secret),
                ("sig", &sig),
                ("code", &code(&secret, 0)),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = recovery_codes(&done.body);
    assert_eq!(codes.len(), team::RECOVERY_CODES);
    assert_eq!(
        b.get("/dashboard").await.status,
        200,
        "set up: the dashboard opens"
    );

    // Logging in again: the password, then the code.
    let (status, body) = login_with(&s, email, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("two_factor_required"))
    );
    let (status, _) = login_with(&s, email, Some("123456")).await;
    assert_eq!(status, 401);
    // The setup's code was used: it cannot log in again.
    let (status, _) = login_with(&s, email, Some(&code(&secret, 0))).await;
    assert_eq!(status, 401, "a code works once");
    // The dashboard's two steps with the next code.
    let mut other = Browser::new(&s);
    let form = other.login(email, PASSWORD).await;
    assert_eq!(form.status, 200, "the code form: {}", form.body);
    assert!(form.body.contains(r#"action="/dashboard/login/code""#));
    let code_csrf = csrf_of(&form.body);
    let refused = other
        .post(
            "/dashboard/login/code",
            &[
                ("csrf", &code_csrf),
                ("code", "999999"),
                ("next", "/dashboard"),
            ],
        )
        .await;
    assert_eq!(refused.status, 401);
    let next_code = code(&secret, 1);
    let accepted = other
        .post(
            "/dashboard/login/code",
            &[
                ("csrf", &code_csrf),
                ("code", &next_code),
                ("next", "/dashboard/cases"),
            ],
        )
        .await;
    assert_eq!(
        (accepted.status, accepted.location.as_str()),
        (303, "/dashboard/cases")
    );
    assert_eq!(other.get("/dashboard").await.status, 200);

    // A recovery code, once.
    let (status, body) = login_with(&s, email, Some(&codes[3].to_uppercase())).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = login_with(&s, email, Some(&codes[3])).await;
    assert_eq!(status, 401, "a recovery code works once");

    // Wrong codes count toward the same lockout as wrong passwords.
    let mut locked = false;
    for _ in 0..8 {
        let (status, body) = login_with(&s, email, Some("111111")).await;
        if status == 429 {
            locked = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert!(locked, "wrong codes lock the account out for a while");
    s.stop().await;
}

on_both_backends!(
    a_leitung_invites_and_deactivates_a_coordinator,
    leitung_logs_in_with_a_second_factor
);

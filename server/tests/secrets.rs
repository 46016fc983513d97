//! The server's secret settings (VAPID private key, CSRF key) sealed under
//! `LOTSE_SECRET_KEY`: plain ones are sealed at the next start with a key, a restart with
//! the same key opens them, and a wrong or missing key stops the start with a clear
//! error, never a panic. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lotse_server::AppState;
use lotse_server::config::{HttpConfig, PushConfig};
use lotse_server::secrets::ServerKey;
use lotse_server::store::{CSRF_KEY, Store, VAPID_PRIVATE_KEY};
use lotse_testkit::{Backend, Options, TestDb, TestServer, on_both_backends};

const KEY: &str = "Cq3ux1SxGmYzQk0r8fJ2dW9vB6tN4hLpAeZ5oUiR7sE=";
const WRONG: &str = "nicht der Schlüssel, mit dem versiegelt wurde";
const EMAIL: &str = "leitung@lotse.test";
const PASSWORD: &str = "ein langes Passwort 1";

async fn start(db: TestDb, key: Option<&str>) -> TestServer {
    let options = Options {
        secret_key: key.map(str::to_owned),
        ..Options::default()
    };
    TestServer::start_with(db, options).await
}

async fn stored(store: &Store, name: &str) -> String {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(name)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// The dashboard's login form as a browser gets it: the CSRF token and the cookie (a
/// nonce) it is bound to with the CSRF key.
async fn login_form(s: &TestServer) -> (String, String) {
    let res = s.http.get(s.url("/dashboard/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let body = res.text().await.unwrap();
    let csrf = body.split(r#"name="csrf" value=""#).nth(1).unwrap();
    (csrf[..csrf.find('"').unwrap()].to_owned(), cookie)
}

/// Logs in through that form: 303 when the token was accepted and the password right.
async fn log_in(s: &TestServer, (csrf, cookie): &(String, String)) -> u16 {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .finish();
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(s.url("/dashboard/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// What `AppState::new` (the start of `serve`) says over `db` with `key`.
async fn start_error(db: &TestDb, key: Option<&str>) -> String {
    let key = key.map(|k| ServerKey::parse(k).unwrap());
    let store = Store::connect(&db.url).await.unwrap().with_server_key(key);
    let started = AppState::new(store.clone(), HttpConfig::default(), PushConfig::default()).await;
    store.close().await;
    match started {
        Ok(_) => panic!("started with the wrong key"),
        Err(e) => e.to_string(),
    }
}

async fn secret_settings_are_sealed_under_the_server_key(backend: Backend) {
    // Without a key, as before: plain text.
    let s = start(TestDb::new(backend).await, None).await;
    s.coordinator("Lotsen Geheim", EMAIL, PASSWORD).await;
    let public = s.state.push.vapid_public_key().to_owned();
    // The login page makes the CSRF key; its token will show that the key stayed.
    let form = login_form(&s).await;
    let plain = [
        stored(&s.store, VAPID_PRIVATE_KEY).await,
        stored(&s.store, CSRF_KEY).await,
    ];
    assert!(plain.iter().all(|v| !v.starts_with("sealed:")));

    // With a key: sealed at start, the same keys behind them.
    let s = start(s.stop_keeping_db().await, Some(KEY)).await;
    let sealed = [
        stored(&s.store, VAPID_PRIVATE_KEY).await,
        stored(&s.store, CSRF_KEY).await,
    ];
    for (sealed, plain) in sealed.iter().zip(&plain) {
        assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
        assert!(!sealed.contains(plain.as_str()));
    }
    assert_eq!(s.state.push.vapid_public_key(), public);
    assert_eq!(
        log_in(&s, &form).await,
        303,
        "the token of the plain key holds"
    );

    // A restart with the same key opens them as they are.
    let s = start(s.stop_keeping_db().await, Some(KEY)).await;
    assert_eq!(s.state.push.vapid_public_key(), public);
    assert_eq!(stored(&s.store, VAPID_PRIVATE_KEY).await, sealed[0]);
    assert_eq!(stored(&s.store, CSRF_KEY).await, sealed[1]);
    assert_eq!(log_in(&s, &form).await, 303);
    assert_eq!(log_in(&s, &login_form(&s).await).await, 303);

    // A wrong key, or none, stops the start and says why.
    let db = s.stop_keeping_db().await;
    let wrong = start_error(&db, Some(WRONG)).await;
    assert!(
        wrong.contains("LOTSE_SECRET_KEY does not open the stored secret"),
        "{wrong}"
    );
    let missing = start_error(&db, None).await;
    assert!(missing.contains("LOTSE_SECRET_KEY is not set"), "{missing}");
}

/// Secrets made on a fresh database with a key are sealed from the first write.
async fn a_fresh_database_stores_them_sealed(backend: Backend) {
    let s = start(TestDb::new(backend).await, Some(KEY)).await;
    login_form(&s).await;
    for name in [VAPID_PRIVATE_KEY, CSRF_KEY] {
        let value = stored(&s.store, name).await;
        assert!(value.starts_with("sealed:v1:"), "{name}: {value}");
    }
    s.stop().await;
}

/// The binary: a wrong key ends `serve` before it listens, with the message and without
/// a panic.
async fn the_server_refuses_to_start_with_a_wrong_key(backend: Backend) {
    let s = start(TestDb::new(backend).await, Some(KEY)).await;
    let db = s.stop_keeping_db().await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db.url])
        .env_remove("DATABASE_URL")
        .env("LOTSE_SECRET_KEY", WRONG)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the server gave up instead of serving")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stderr.contains("LOTSE_SECRET_KEY does not open the stored secret"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
}

#[test]
fn a_short_server_key_is_refused_by_the_command_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("LOTSE_SECRET_KEY"), "{help}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("LOTSE_SECRET_KEY", "kurz")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("at least 32 characters"), "{stderr}");
    assert!(!stderr.contains("kurz"), "the key is not echoed: {stderr}");
}

on_both_backends!(
    secret_settings_are_sealed_under_the_server_key,
    a_fresh_database_stores_them_sealed,
    the_server_refuses_to_start_with_a_wrong_key,
);

//! The server's surface from outside: client addresses behind a trusted proxy and a
//! login lockout that nobody can turn against an account's owner. On SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lotse_testkit::{Backend, Options, TestDb, TestServer, connect_sync, on_both_backends};
use serde_json::{Value, json};

const PASSWORD: &str = "ein langes Passwort 1";

/// A login as the proxy forwards it for `client`.
async fn login_from(s: &TestServer, client: &str, email: &str, password: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn behind_a_trusted_proxy_a_lockout_stays_with_the_guesser(backend: Backend) {
    // The test talks to the server from 127.0.0.1, standing in for the proxy.
    let options = Options {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Options::default()
    };
    let s = TestServer::start_with(TestDb::new(backend).await, options).await;
    let (target, other) = ("leitung@lotse.test", "zweite@lotse.test");
    s.coordinator("Lotsen Proxy", target, PASSWORD).await;
    s.coordinator("Lotsen Proxy", other, PASSWORD).await;
    let (a, b) = ("198.51.100.7", "203.0.113.20");

    let mut refused_early = 0;
    for _ in 0..30 {
        match login_from(&s, a, target, "falsch").await.0 {
            401 => {}
            429 => refused_early += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused_early > 0, "address A is slowed down");
    assert_eq!(
        login_from(&s, a, target, PASSWORD).await.0,
        429,
        "A stays locked out"
    );
    // Another coordinator from B, and the targeted account with its own password from B.
    let (status, body) = login_from(&s, b, other, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = login_from(&s, b, target, PASSWORD).await;
    assert_eq!(status, 200, "the owner is not locked out: {body}");
    s.stop().await;
}

async fn without_a_trusted_proxy_forwarded_for_is_ignored(backend: Backend) {
    let s = TestServer::start(backend).await;
    let email = "leitung@lotse.test";
    s.coordinator("Lotsen Direkt", email, PASSWORD).await;
    // Every attempt claims another address; all come from 127.0.0.1 and count there.
    let mut limited = false;
    for i in 0..40 {
        let claimed = format!("198.51.100.{i}");
        if login_from(&s, &claimed, email, "falsch").await.0 == 429 {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "a forged X-Forwarded-For does not escape the limit"
    );
    s.stop().await;
}

async fn a_device_holds_a_few_sockets_at_most(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Sockets").await;
    let volunteer = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (_, token) = s.device(&coordinator, &volunteer, "Handy").await;
    let limit = s.state.sockets.limit;
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(connect_sync(s.addr, &token).await.unwrap());
    }
    match connect_sync(s.addr, &token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_connections");
        }
        other => panic!("one socket too many: {:?}", other.map(|_| ())),
    }
    // Another device of the same volunteer is not affected.
    let (_, second) = s.device(&coordinator, &volunteer, "Tablet").await;
    assert!(connect_sync(s.addr, &second).await.is_ok());
    // A closed socket frees its place.
    drop(open.pop());
    lotse_testkit::eventually("a place free again", Duration::from_secs(10), || async {
        connect_sync(s.addr, &token).await.ok()
    })
    .await;
    s.stop().await;
}

async fn every_route_has_the_limits_and_the_headers(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, _) = s.new_org("Lotsen Kopf").await;
    let slug = s.store.organisation(&org).await.unwrap().unwrap().slug;
    let http = reqwest::Client::new();
    let pages = [
        ("/healthz", "default-src 'none'"),
        ("/api/v1/me", "default-src 'none'"),
        ("/sync", "default-src 'none'"),
        ("/dashboard/login", "script-src 'self'"),
        (&*format!("/anfrage/{slug}"), "style-src 'unsafe-inline'"),
    ];
    for (path, policy) in pages {
        let res = http.get(s.url(path)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains(policy), "{path}: {csp}");
    }
    // The public form takes no more than the API does.
    let res = http
        .post(s.url(&format!("/anfrage/{slug}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("beschreibung={}", "x".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    s.stop().await;
}

async fn parallel_guesses_are_counted_before_they_are_checked(backend: Backend) {
    let s = TestServer::start(backend).await;
    let email = "leitung@lotse.test";
    s.coordinator("Lotsen Parallel", email, PASSWORD).await;
    let guesses = (0..30).map(|_| login_from(&s, "127.0.0.1", email, "falsch"));
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let refused = answers.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(checked + refused, 30);
    // The account allows five free failures (the sixth sets the first wait): no more
    // passwords were tried however many came at once.
    assert!(checked <= 6, "{checked} passwords tried");
    s.stop().await;
}

on_both_backends!(
    parallel_guesses_are_counted_before_they_are_checked,
    every_route_has_the_limits_and_the_headers,
    a_device_holds_a_few_sockets_at_most,
    behind_a_trusted_proxy_a_lockout_stays_with_the_guesser,
    without_a_trusted_proxy_forwarded_for_is_ignored,
);

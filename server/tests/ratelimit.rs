//! Rate limits kept in the database: the escalating waits, counted atomically, shared by
//! two server instances over one database, and swept when forgotten. On SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lotse_server::ratelimit::{Limiter, Policy, Refused};
use lotse_server::store::Store;
use lotse_testkit::{Backend, TestDb, TestServer, on_both_backends};

const PASSWORD: &str = "ein langes Passwort 1";

async fn store(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn policy() -> Policy {
    Policy {
        free_failures: 3,
        first_wait: Duration::from_secs(2),
        max_wait: Duration::from_secs(60),
        window: Duration::from_secs(900),
    }
}

fn waits(r: Result<(), Refused>) -> Option<Duration> {
    match r {
        Ok(()) => None,
        Err(Refused::Wait(w)) => Some(w),
        Err(Refused::Store(e)) => panic!("store: {e}"),
    }
}

async fn waits_begin_after_free_failures_and_double(backend: Backend) {
    let db = TestDb::new(backend).await;
    let l = Limiter::new(store(&db).await, policy());
    let t = 1_000_000_000;
    for _ in 0..4 {
        assert_eq!(waits(l.attempt_at("a", t).await), None);
    }
    // The fourth set the first wait; attempts during it neither count nor prolong it.
    assert_eq!(
        waits(l.attempt_at("a", t).await),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        waits(l.attempt_at("a", t + 500).await),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        waits(l.attempt_at("b", t).await),
        None,
        "other keys are free"
    );
    // After the wait one more is counted, and the wait doubles.
    let later = t + 2_000;
    assert_eq!(waits(l.attempt_at("a", later).await), None);
    assert_eq!(
        waits(l.attempt_at("a", later).await),
        Some(Duration::from_secs(4))
    );
    // A refund below the free failures lifts the wait; success clears the key.
    l.refund("a").await;
    l.refund("a").await;
    assert_eq!(waits(l.attempt_at("a", later).await), None);
    l.success("a").await;
    for _ in 0..4 {
        assert_eq!(waits(l.attempt_at("a", later).await), None);
    }
}

async fn waits_are_capped_and_forgotten(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let l = Limiter::new(store.clone(), policy());
    let mut t = 1_000_000_000;
    // Each attempt at the end of the previous wait: the waits grow to the longest.
    let mut seen = Vec::new();
    for _ in 0..20 {
        if let Some(w) = waits(l.attempt_at("a", t).await) {
            seen.push(w.as_secs());
            t += w.as_millis() as i64;
        }
    }
    assert_eq!(seen[..7], [2, 4, 8, 16, 32, 60, 60]);
    // Past the window the failures are forgotten, and the sweep removes the row.
    let much_later = t + 900_000;
    assert_eq!(store.rate_limit_rows().await.unwrap(), 1);
    assert_eq!(store.forget_expired_attempts(much_later).await.unwrap(), 1);
    assert_eq!(store.rate_limit_rows().await.unwrap(), 0);
    assert_eq!(waits(l.attempt_at("a", much_later).await), None);
    assert_eq!(
        waits(l.attempt_at("a", much_later).await),
        None,
        "counting starts again"
    );
    // A counter left in the table without a sweep is forgotten just the same.
    let after_that = much_later + 900_000;
    for _ in 0..4 {
        assert_eq!(waits(l.attempt_at("a", after_that).await), None);
    }
}

async fn attempts_at_once_are_counted_before_they_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let l = std::sync::Arc::new(Limiter::new(store, policy()));
    let t = 1_000_000_000;
    let tries = (0..20).map(|_| {
        let l = l.clone();
        tokio::spawn(async move { waits(l.attempt_at("a", t).await).is_none() })
    });
    let passed = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(passed, 4, "three free, the fourth sets the first wait");
}

/// Keys name e-mail and client addresses; the table holds neither.
async fn keys_are_stored_as_hashes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let l = Limiter::new(store.clone(), policy());
    l.attempt_at("login-account:leitung@lotse.test:198.51.100.7", 1)
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains("lotse.test") && !keys[0].contains("198.51"));
}

/// Several instances behind one proxy: wrong logins spread over both count together.
async fn two_instances_share_the_login_limit(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.shared()).await;
    let email = "leitung@lotse.test";
    a.coordinator("Lotsen Zwei", email, PASSWORD).await;
    let mut checked = 0;
    for i in 0..12 {
        let s = if i % 2 == 0 { &a } else { &b };
        match s.try_login(email, "falsch").await.0 {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // Five free failures, the sixth sets the first wait: the same as on one instance,
    // where each instance counting alone would have let twelve through.
    assert_eq!(checked, 6);
    for s in [&a, &b] {
        let (status, body) = s.try_login(email, PASSWORD).await;
        assert_eq!(status, 429, "locked out on both: {body}");
    }
    b.stop().await;
    a.stop().await;
}

on_both_backends!(
    waits_begin_after_free_failures_and_double,
    waits_are_capped_and_forgotten,
    attempts_at_once_are_counted_before_they_are_checked,
    keys_are_stored_as_hashes,
    two_instances_share_the_login_limit,
);

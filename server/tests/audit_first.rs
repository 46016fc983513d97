//! Issue 15, point 5: no content leaves before its audit line is written. With the
//! database locked against audit writes for 10 s (PostgreSQL: the trail's table locked;
//! SQLite: the one write lock held) a phone syncs a case and a coordinator reads it on the
//! dashboard and through the API. None of them gets the case's note while the lock is
//! held; afterwards every read has its line. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, Message};
use lotse_testkit::{Backend, TestServer, on_both_backends};
use reqwest::header;
use serde_json::json;
use sqlx::Connection;

const SECRET: &str = "Befund Kardiologie 7731";
const LOCKED_FOR: Duration = Duration::from_secs(10);
/// Far more than a read takes once the lock is gone, on a loaded machine.
const AFTERWARDS: Duration = Duration::from_secs(60);

/// A second connection that keeps the server from writing audit lines until released.
struct AuditLock(sqlx::AnyConnection);

impl AuditLock {
    async fn take(url: &str, backend: Backend) -> Self {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        match backend {
            Backend::Postgres => {
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            // SQLite has one write lock for the whole file: the trail is locked with the
            // rest, as when another process holds the database.
            Backend::Sqlite => {
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Self(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// When the note first reached the phone.
async fn phone_reads(s: &TestServer, device: &str, case: lotse_protocol::DocumentId) -> Instant {
    let mut phone = SyncClient::connect(s.addr, device, "amira").await;
    phone.offer(case).await;
    let deadline = Instant::now() + LOCKED_FOR + AFTERWARDS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = phone
            .recv_within(left)
            .await
            .expect("the case arrives once the lock is gone")
            .expect("the socket stays open");
        let m = phone.handle(m).await;
        if let Message::Error { message, .. } = &m {
            panic!("the server gave up: {message}");
        }
        let has_note = phone.docs.get(&case).is_some_and(|doc| {
            CaseDoc::read(doc).is_ok_and(|v| v.notes.iter().any(|n| n.text == SECRET))
        });
        if has_note {
            return Instant::now();
        }
    }
}

/// A GET by the coordinator: the API with the token, the dashboard with it as cookie.
/// Retried after a refusal (SQLite gives up waiting for its lock after 5 s): `(when the
/// note arrived, refusals before)`. A refusal must not carry the note.
async fn coordinator_reads(s: &TestServer, token: &str, path: &str) -> (Instant, usize) {
    let http = reqwest::Client::builder()
        .timeout(LOCKED_FOR + AFTERWARDS)
        .build()
        .unwrap();
    let deadline = Instant::now() + LOCKED_FOR + AFTERWARDS;
    let mut refused = 0;
    loop {
        let res = http
            .get(s.url(path))
            .bearer_auth(token)
            .header(header::COOKIE, format!("lotse_session={token}"))
            .header(header::ACCEPT_LANGUAGE, "de-DE")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        let arrived = Instant::now();
        if status == 200 {
            assert!(body.contains(SECRET), "{path}: {body}");
            return (arrived, refused);
        }
        assert!(
            !body.contains(SECRET),
            "{path} refused, with the note: {body}"
        );
        assert!(status >= 500, "{path}: {status} {body}");
        refused += 1;
        assert!(Instant::now() < deadline, "{path} never answered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn no_content_leaves_before_its_line(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, desk) = s.new_org("Lotsen Sperre").await;
    let amira = s.volunteer(&desk, "Amira", &["ar", "de"]).await;
    let case = s
        .create_case(&desk, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let (status, body) = s
        .post(
            &format!("/api/v1/cases/{case}/notes"),
            Some(&desk),
            json!({ "text": SECRET }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (device_id, device) = s.device(&desk, &amira, "Amiras Handy").await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let lock = AuditLock::take(&s.db.url, backend).await;
    let phone = phone_reads(&s, &device, case);
    let (api_path, page_path) = (
        format!("/api/v1/cases/{case}"),
        format!("/dashboard/cases/{case}"),
    );
    let api = coordinator_reads(&s, &desk, &api_path);
    let page = coordinator_reads(&s, &desk, &page_path);
    let release = async {
        tokio::time::sleep(LOCKED_FOR).await;
        // Taken before the lock goes: whatever arrived earlier left without its line.
        let released = Instant::now();
        lock.release().await;
        released
    };
    let (phone, api, page, released) = tokio::join!(phone, api, page, release);
    for (who, arrived) in [("phone", phone), ("API", api.0), ("dashboard", page.0)] {
        assert!(
            arrived >= released,
            "the {who} had the note {:?} before the lock was released",
            released - arrived
        );
    }

    let trail = s.store.audit_events(&org, 500).await.unwrap();
    let new: Vec<_> = trail.iter().filter(|e| e.at >= since).collect();
    let case_id = case.to_string();
    let lines = |actor: &str, action: &str| {
        new.iter()
            .filter(|e| e.actor_id == actor && e.action == action && e.subject_id == case_id)
            .count()
    };
    assert_eq!(
        lines(&device_id, "document.sync"),
        1,
        "the phone's read: {new:?}"
    );
    let coordinator = new
        .iter()
        .find(|e| e.action == "document.read")
        .map(|e| e.actor_id.clone())
        .expect("a coordinator's read");
    // The API writes a line per read; the page one per view; refused tries wrote none.
    assert_eq!(lines(&coordinator, "document.read"), 2, "{new:?}");
    s.stop().await;
}

on_both_backends!(no_content_leaves_before_its_line);

//! Access that shrinks, as the phone lives it: a case is taken from its volunteer, and
//! the lease runs out while the phone stays offline (a volunteer who leaves: `sync.rs`,
//! beside revocation). Against a real lotse-server on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lotse_core::lotse_protocol::Topic;
use lotse_core::{Client, Error, LeaseStatus, SyncState};
use serde_json::json;
use sqlx_sqlite_only::Row;

const T: Duration = Duration::from_secs(30);
const DAY: i64 = 24 * 3_600_000;

fn now() -> i64 {
    lotse_testkit::now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_taken_from_the_volunteer_leaves_the_phone() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Wechsel").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let client = &phone.client;
    let olena = server.volunteer(&coordinator, "Olena", &["uk"]).await;
    let case = server
        .create_case(&coordinator, "T.K.", "wohnen", &["ar"], &[&phone.volunteer])
        .await;
    eventually("the case on the phone", T, || async {
        client
            .list_cases()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == case)
    })
    .await;

    let (status, body) = server
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{case}/volunteers"),
            Some(&coordinator),
            Some(json!({"volunteer_ids": [olena]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The connected phone is told to catch up, learns the case is withdrawn, and deletes
    // it with its key.
    eventually("the case gone from the phone", T, || async {
        client
            .list_cases()
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != case)
    })
    .await;
    assert!(matches!(
        client.get_case(&case).await,
        Err(Error::NotFound { .. })
    ));
    client.close().await.unwrap();
    let rows = sqlx_sqlite_only::query("SELECT COUNT(*) AS n FROM documents WHERE id = ?")
        .bind(case.as_bytes().as_slice())
        .fetch_one(&raw_db(&phone).await)
        .await
        .unwrap();
    assert_eq!(
        rows.get::<i64, _>("n"),
        0,
        "neither the case nor its key is stored"
    );
    server.stop().await;
}

/// A plain connection to the phone's database file, after the client closed it.
async fn raw_db(phone: &Phone) -> sqlx_sqlite_only::SqlitePool {
    let url = format!("sqlite://{}", phone.dir.path().join("lotse.db").display());
    sqlx_sqlite_only::SqlitePool::connect(&url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_destroys_the_keys_and_the_data() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Verloren").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let client = &phone.client;
    let case = case_with_note(
        client,
        "L.V.",
        Topic::Gesundheit,
        &[],
        "Befund der Hausärztin besprochen",
    )
    .await;
    within(T, client.sync_now()).await.unwrap();
    // The server's default: 30 days from the last sync.
    let LeaseStatus::Until(until) = client.check_lease().await.unwrap() else {
        panic!("the sync renewed the lease");
    };
    assert!(
        until > now() + 29 * DAY && until <= now() + 30 * DAY,
        "{until}"
    );

    // What would let anyone with the app key read the case: its wrapped key and its
    // encrypted chunks, as they lie in the file.
    client.close().await.unwrap();
    let secrets: Vec<Vec<u8>> = {
        let db = raw_db(&phone).await;
        let mut blobs: Vec<Vec<u8>> = sqlx_sqlite_only::query("SELECT wrapped_key FROM documents")
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("wrapped_key"))
            .collect();
        blobs.extend(
            sqlx_sqlite_only::query("SELECT data FROM chunks")
                .fetch_all(&db)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Vec<u8>, _>("data")),
        );
        db.close().await;
        blobs
    };
    assert!(!secrets.is_empty());
    let client = Client::open(config(phone.dir.path(), &server.base, phone.key))
        .await
        .unwrap();
    client.set_network_available(false);
    assert_eq!(client.list_cases().await.unwrap().len(), 1, "still fresh");

    // A day after the lease: the next check destroys everything and says so.
    let heard = recorder();
    let _subscription = client.subscribe(heard.clone());
    assert_eq!(
        client.check_lease_at(until + DAY).await.unwrap(),
        LeaseStatus::Lapsed
    );
    assert_eq!(client.sync_state(), SyncState::LeaseLapsed);
    eventually("the listener told", T, || async {
        heard
            .states
            .lock()
            .unwrap()
            .contains(&SyncState::LeaseLapsed)
            && heard.changed.lock().unwrap().contains(&case)
    })
    .await;
    assert!(client.list_cases().await.unwrap().is_empty());
    assert_eq!(client.enrollment().await.unwrap(), None);
    assert_eq!(client.check_lease().await.unwrap(), LeaseStatus::None);
    client.set_network_available(true);
    assert!(matches!(client.sync_now().await, Err(Error::LeaseLapsed)));
    client.close().await.unwrap();

    // Nothing of it is left in the database file, its WAL or freed pages: not the
    // wrapped key, not a 32-byte piece of any encrypted chunk.
    let bytes = store_bytes(phone.dir.path());
    for secret in &secrets {
        for piece in secret.chunks(32).filter(|p| p.len() == 32) {
            assert!(
                !contains(&bytes, piece),
                "a piece of the old case is still on disk"
            );
        }
    }
    server.stop().await;
}

/// A case the server refuses for a quota fails alone: the phone shows it as failed with
/// the rule, the other case syncs, and the connection settles instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_case_fails_alone_with_its_rule() {
    use lotse_core::SyncStatus;
    use lotse_core::lotse_protocol::quota::Quotas;
    let server = TestServer::start(Backend::Sqlite).await;
    // Room for a case and a few short notes, not for a long one.
    server.state.hub.set_quotas(Quotas {
        document_bytes: 20_000,
        ..Quotas::default()
    });
    let (_, coordinator) = server.new_org("Lotsen Grenze").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let client = &phone.client;
    let new_case = |label: &str| lotse_core::NewCaseInput {
        label: label.into(),
        topic: Topic::Wohnen,
        languages: vec!["ar".into()],
    };
    let big = client.create_case(&new_case("A.B.")).await.unwrap();
    let small = client.create_case(&new_case("C.D.")).await.unwrap();
    eventually("both cases on the server", T, || async {
        client.case_sync_status(&big).await.unwrap() == SyncStatus::Synced
            && client.case_sync_status(&small).await.unwrap() == SyncStatus::Synced
    })
    .await;

    // Random letters: they do not compress below the limit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let long: String = (0..60_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    client.add_note(&big, &long).await.unwrap();
    client.add_note(&small, "Kurz notiert").await.unwrap();
    client.sync_now().await.unwrap();
    eventually("the big case failed, the small one synced", T, || async {
        matches!(
            client.case_sync_status(&big).await.unwrap(),
            SyncStatus::Error { rule: Some(ref r), .. } if r == "document-bytes"
        ) && client.case_sync_status(&small).await.unwrap() == SyncStatus::Synced
    })
    .await;
    eventually("the connection settles", T, || async {
        client.sync_state() == SyncState::Idle
    })
    .await;
    let stored = server.case(&coordinator, &small).await;
    assert_eq!(stored["notes"][0]["text"], "Kurz notiert");
    let stored = server.case(&coordinator, &big).await;
    assert_eq!(
        stored["notes"].as_array().unwrap().len(),
        0,
        "nothing of it stored"
    );
    client.close().await.unwrap();
    server.stop().await;
}

const SECRET: &str = "Diagnose Zoeliakie 5512";

/// Whether `needle` is in any file under the phone's data folder, as stored on disk.
fn in_files(dir: &std::path::Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle.as_bytes())) {
            return true;
        }
    }
    false
}

/// A case the network deletes leaves both phones of the volunteer: the connected one at
/// once, the one that was offline with an unsynced note at its next contact (the note is
/// refused, the server keeps nothing); each tells its app, and the other case stays.
/// Nothing of the case is left in either phone's decrypted store or its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_deleted_by_the_network_leaves_every_phone() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Loeschen").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let code = server.enrollment_code(&coordinator, &phone.volunteer).await;
    let dir = TempDir::new("tablet");
    let tablet = Client::open(config(dir.path(), &server.base, rand_key()))
        .await
        .unwrap();
    tablet.enroll(&code, "Tablet").await.unwrap();
    let case = server
        .create_case(&coordinator, "T.K.", "wohnen", &["ar"], &[&phone.volunteer])
        .await;
    let other = server
        .create_case(&coordinator, "M.S.", "arbeit", &["ar"], &[&phone.volunteer])
        .await;
    for client in [&phone.client, &tablet] {
        eventually("both cases on the device", T, || async {
            let ids: Vec<_> = client
                .list_cases()
                .await
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect();
            ids.contains(&case) && ids.contains(&other)
        })
        .await;
    }
    // A note only this case holds, synced to the server, so that the search below
    // has something to miss.
    phone.client.add_note(&case, SECRET).await.unwrap();
    eventually("the note reached the server", T, || async {
        server.case(&coordinator, &case).await["notes"]
            .to_string()
            .contains(SECRET)
    })
    .await;
    eventually("the tablet has the note", T, || async {
        in_history(&tablet, SECRET).await
    })
    .await;
    assert!(in_history(&phone.client, SECRET).await);
    let (heard, _sub) = listen(&phone.client);
    let (tablet_heard, _tablet_sub) = listen(&tablet);
    tablet.set_network_available(false);
    tablet.add_note(&case, "offline geschrieben").await.unwrap();

    let (status, body) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}?reason=person-asked"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    eventually("the connected phone dropped the case", T, || async {
        heard.deleted.lock().unwrap().contains(&case)
    })
    .await;
    assert!(matches!(
        phone.client.get_case(&case).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        phone.client.get_case(&other).await.is_ok(),
        "the other case stays"
    );
    assert!(
        !in_history(&phone.client, SECRET).await,
        "nothing of the case in the phone's decrypted store, history included"
    );
    assert!(!in_files(phone.dir.path(), SECRET), "nor in its files");

    tablet.set_network_available(true);
    tablet.sync_now().await.unwrap();
    eventually("the returning tablet dropped the case", T, || async {
        tablet_heard.deleted.lock().unwrap().contains(&case)
    })
    .await;
    assert!(matches!(
        tablet.get_case(&case).await,
        Err(Error::NotFound { .. })
    ));
    assert!(tablet.get_case(&other).await.is_ok());
    for text in [SECRET, "offline geschrieben"] {
        assert!(
            !in_history(&tablet, text).await,
            "{text} left on the tablet"
        );
        assert!(!in_files(dir.path(), text), "{text} in the tablet's files");
    }
    eventually("the tablet settles", T, || async {
        tablet.sync_state() == SyncState::Idle
    })
    .await;
    let (status, _) = server
        .get(&format!("/api/v1/cases/{case}"), Some(&coordinator))
        .await;
    assert_eq!(status, 404, "the offline note did not bring it back");
    assert!(server.store.document(&case).await.unwrap().is_none());
    tablet.close().await.unwrap();
    phone.client.close().await.unwrap();
    server.stop().await;
}

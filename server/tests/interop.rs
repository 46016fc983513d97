//! The official JavaScript automerge-repo client (tests/interop, pinned npm packages)
//! syncs with our server unchanged. Needs `scripts/setup` (npm install) first.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use lotse_testkit::{Backend, TestServer, on_both_backends};
use serde_json::{Value, json};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

fn js(args: &[&str]) -> Value {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/@automerge/automerge-repo").is_dir(),
        "run scripts/setup (npm install in tests/interop) before this test"
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("client.mjs")
        .args(args)
        .env("INTEROP_TIMEOUT_MS", "20000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output from client.mjs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))
}

async fn js_client_syncs_through_our_server(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Interop").await;
    let url = format!("ws://{}/sync?token={coordinator}", s.addr);

    // A document created in JS reaches a second JS client through our server.
    let content = json!({"title": "Begleitung", "notes": ["Jobcenter 14 Uhr"], "n": 3});
    let created = tokio::task::spawn_blocking({
        let url = url.clone();
        let content = content.to_string();
        move || js(&["create", &url, &content])
    })
    .await
    .unwrap();
    assert_eq!(created["status"], "ok", "{created}");
    let id = created["documentId"].as_str().unwrap().to_owned();
    let read = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || js(&["read", &url, &id])
    })
    .await
    .unwrap();
    assert_eq!(read, json!({"status": "ok", "doc": content}));

    // A change from JS lands too.
    let changed = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || {
            js(&[
                "change",
                &url,
                &id,
                "{\"title\": \"Begleitung (aktualisiert)\"}",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(changed["status"], "ok", "{changed}");

    // A case our server created is readable in JS.
    let volunteer = s.volunteer(&coordinator, "Sami", &["ar"]).await;
    let case_id = s
        .create_case(&coordinator, "M.A.", "wohnen", &["ar"], &[&volunteer])
        .await
        .to_string();
    let read = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), case_id.clone());
        move || js(&["read", &url, &id])
    })
    .await
    .unwrap();
    assert_eq!(read["status"], "ok", "{read}");
    assert_eq!(read["doc"]["label"], "M.A.");
    assert_eq!(read["doc"]["type"], "case");

    // A device of another volunteer has no right to it: doc-unavailable, as for a missing one.
    let other = s.volunteer(&coordinator, "Olena", &["uk"]).await;
    let (_, device) = s.device(&coordinator, &other, "Handy").await;
    let device_url = format!("ws://{}/sync?token={device}", s.addr);
    let denied = tokio::task::spawn_blocking({
        let id = case_id.clone();
        move || js(&["read", &device_url, &id])
    })
    .await
    .unwrap();
    assert_eq!(denied, json!({"status": "unavailable"}));
    s.stop().await;
}

/// Two phones of one volunteer, both the stock JS client: the first creates documents,
/// the second asks for the last one at once, before the server can have it. The server
/// answers `doc-unavailable`, remembers who asked, and syncs the document to them when it
/// arrives, so the second phone's one `find` resolves (the reference server does the
/// same). Without that it would wait for the client's own timeout.
async fn a_js_client_that_asked_first_gets_the_document_when_it_arrives(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Interop").await;
    let volunteer = s.volunteer(&coordinator, "Sami", &["ar"]).await;
    let (_, first) = s.device(&coordinator, &volunteer, "Erstes Handy").await;
    let (_, second) = s.device(&coordinator, &volunteer, "Zweites Handy").await;
    let url_a = format!("ws://{}/sync?token={first}", s.addr);
    let url_b = format!("ws://{}/sync?token={second}", s.addr);
    let raced = tokio::task::spawn_blocking(move || js(&["race", &url_a, &url_b, "50"]))
        .await
        .unwrap();
    assert_eq!(raced["status"], "ok", "{raced}");
    assert_eq!(raced["doc"]["n"], 49, "{raced}");
    eprintln!(
        "the second phone waited {} ms (told unavailable first: {})",
        raced["waitedMs"], raced["toldUnavailable"]
    );
    s.stop().await;
}

/// The official JS client holding a case the network then rewrites (compacts, the same
/// step as erasing an entry: issue 16): it comes back with an offline change and hears
/// `doc-unavailable`; the case's API names the document that holds the case now, and the
/// JS client reads it there, with the field it wrote before and the case's id.
async fn a_js_client_finds_a_rewritten_case_through_the_api(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Interop Neufassung").await;
    let volunteer = s.volunteer(&coordinator, "Sami", &["ar"]).await;
    let (_, device) = s.device(&coordinator, &volunteer, "Handy").await;
    let case = s
        .create_case(&coordinator, "M.A.", "wohnen", &["ar"], &[&volunteer])
        .await;
    let url = format!("ws://{}/sync?token={device}", s.addr);
    let changed = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), case.to_string());
        move || js(&["change", &url, &id, "{\"fromJs\": \"bleibt\"}"])
    })
    .await
    .unwrap();
    assert_eq!(changed["status"], "ok", "{changed}");
    let (dir, holder) = hold_offline(&url, &case).await;
    let (status, body) = s
        .post(
            &format!("/api/v1/cases/{case}/compact"),
            Some(&coordinator),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    std::fs::write(dir.path().join("go"), b"go").unwrap();
    let came_back = holder.await.unwrap();
    assert_eq!(came_back["status"], "ok", "{came_back}");
    assert_eq!(came_back["toldUnavailable"], true, "{came_back}");
    assert!(s.store.document(&case).await.unwrap().is_none());

    let (status, found) = s.get(&format!("/api/v1/cases/{case}"), Some(&device)).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], case.to_string());
    let current = found["documentId"].as_str().unwrap().to_owned();
    assert_ne!(current, case.to_string());
    assert_eq!(found["url"], format!("automerge:{current}"));
    let read = tokio::task::spawn_blocking({
        let url = url.clone();
        move || js(&["read", &url, &current])
    })
    .await
    .unwrap();
    assert_eq!(read["status"], "ok", "{read}");
    assert_eq!(read["doc"]["fromJs"], "bleibt", "{read}");
    assert_eq!(read["doc"]["caseId"], case.to_string());
    assert_eq!(read["doc"]["generation"], 2);
    assert!(
        read["doc"].get("offline").is_none(),
        "the refused change stayed out"
    );
    s.stop().await;
}

/// The official JS client takes `case` and holds it with an offline change
/// (`{"offline": "geschrieben"}`) until the test writes `go` into the folder; then it
/// comes back and says what the server answered.
async fn hold_offline(
    url: &str,
    case: &lotse_protocol::DocumentId,
) -> (lotse_testkit::TempDir, tokio::task::JoinHandle<Value>) {
    let dir = lotse_testkit::TempDir::new("interop-hold");
    let holder = tokio::task::spawn_blocking({
        let (url, id, dir) = (
            url.to_owned(),
            case.to_string(),
            dir.path().display().to_string(),
        );
        move || js(&["hold", &url, &id, &dir, "{\"offline\": \"geschrieben\"}"])
    });
    let held = dir.path().join("held");
    lotse_testkit::eventually(
        "the JS client to hold the case",
        std::time::Duration::from_secs(20),
        || async { held.exists() },
    )
    .await;
    (dir, holder)
}

on_both_backends!(
    a_js_client_cannot_bring_back_a_deleted_case,
    a_js_client_finds_a_rewritten_case_through_the_api,
    js_client_syncs_through_our_server,
    a_js_client_that_asked_first_gets_the_document_when_it_arrives,
);

/// The official JS client holding a case the network then deletes: it comes back with an
/// offline change, hears `doc-unavailable`, and the server keeps nothing of it; a fresh
/// `find` is unavailable too.
async fn a_js_client_cannot_bring_back_a_deleted_case(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Interop Loeschen").await;
    let volunteer = s.volunteer(&coordinator, "Sami", &["ar"]).await;
    let (_, device) = s.device(&coordinator, &volunteer, "Handy").await;
    let case = s
        .create_case(&coordinator, "M.A.", "wohnen", &["ar"], &[&volunteer])
        .await;
    let url = format!("ws://{}/sync?token={device}", s.addr);
    let (dir, holder) = hold_offline(&url, &case).await;
    let (status, body) = s
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}?reason=mistake"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    std::fs::write(dir.path().join("go"), b"go").unwrap();
    let came_back = holder.await.unwrap();
    assert_eq!(came_back["status"], "ok", "{came_back}");
    assert_eq!(came_back["toldUnavailable"], true, "{came_back}");
    assert!(
        s.store.document(&case).await.unwrap().is_none(),
        "nothing of it stored"
    );
    assert!(s.store.tombstone(&case).await.unwrap().is_some());
    let read = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), case.to_string());
        move || js(&["read", &url, &id])
    })
    .await
    .unwrap();
    assert_eq!(read, json!({"status": "unavailable"}));
    s.stop().await;
}

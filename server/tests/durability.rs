//! Nothing acknowledged is lost: devices push notes while the server process is killed
//! with SIGKILL at a random moment; after a restart on the same database, every change
//! the server had advertised in its heads is there.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sync_client::SyncClient;
use common::{Backend, TestDb};
use lotse_protocol::automerge::{ChangeHash, ReadDoc, sync};
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use rand::Rng;
use serde_json::json;

const EMAIL: &str = "leitung@durability.example";
const PASSWORD: &str = "ein langes Passwort";

fn server(db: &TestDb) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db.url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(a) = line.split("http://").nth(1) {
            break a.trim().parse().unwrap();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn login(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let res: serde_json::Value = http
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["token"].as_str().unwrap().to_owned()
}

/// Adds notes and syncs until the server goes away, recording the heads the server
/// advertised in its sync messages.
async fn push_notes(
    mut c: SyncClient,
    case: DocumentId,
    author: String,
    advertised: Arc<Mutex<Vec<ChangeHash>>>,
) {
    for i in 0.. {
        let doc = c.docs.get_mut(&case).unwrap();
        CaseDoc::add_note(
            doc,
            &NewNote {
                author: author.clone(),
                text: format!("{author} Notiz {i}"),
            },
            1_772_633_400_000 + i,
        )
        .unwrap();
        let doc = c.docs[&case].clone();
        let Some(data) = c.syncs.get_mut(&case).unwrap().generate(&doc) else {
            continue;
        };
        let m = Message::Sync {
            sender_id: c.peer_id.clone(),
            target_id: c.server_id.clone(),
            document_id: case,
            data,
        };
        if !c.try_send(m).await {
            return;
        }
        loop {
            match c.recv_within(Duration::from_millis(50)).await {
                Ok(Some(Message::Sync {
                    document_id, data, ..
                })) if document_id == case => {
                    advertised
                        .lock()
                        .unwrap()
                        .extend(sync::Message::decode(&data).unwrap().heads);
                    let mut doc = c.docs.remove(&case).unwrap();
                    c.syncs
                        .get_mut(&case)
                        .unwrap()
                        .receive(&mut doc, &data)
                        .unwrap();
                    c.docs.insert(case, doc);
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(()) => break,
            }
        }
    }
}

async fn killed_server_keeps_every_advertised_change(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut create = Command::new(env!("CARGO_BIN_EXE_lotse-server"))
        .args([
            "create-coordinator",
            "--org",
            "Lotsen Durability",
            "--email",
            EMAIL,
            "--password-stdin",
            "--database-url",
            &db.url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(create.wait().unwrap().success());

    let http = reqwest::Client::new();
    let mut rng = rand::thread_rng();
    for round in 0..2 {
        let (mut child, addr) = server(&db);
        let token = login(&http, addr).await;
        let case: DocumentId = {
            let res: serde_json::Value = http
                .post(format!("http://{addr}/api/v1/cases"))
                .bearer_auth(&token)
                .json(&json!({"label": format!("D{round}"), "topic": "soziales", "languages": ["de"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            res["id"].as_str().unwrap().parse().unwrap()
        };
        let advertised = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..3 {
            let mut c = SyncClient::connect(addr, &token, &format!("writer-{round}-{n}")).await;
            c.fetch(case).await;
            tasks.push(tokio::spawn(push_notes(
                c,
                case,
                format!("w{n}"),
                advertised.clone(),
            )));
        }
        // Kill after a random number of advertised heads, mid-stream.
        let kill_after = rng.gen_range(5..60);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while advertised.lock().unwrap().len() < kill_after {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writers made no progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let advertised = advertised.lock().unwrap().clone();
        assert!(advertised.len() >= kill_after);

        // Restart on the same database and read the case back over sync.
        let (mut child, addr) = server(&db);
        let token = login(&http, addr).await;
        let mut reader = SyncClient::connect(addr, &token, &format!("reader-{round}")).await;
        reader.fetch(case).await;
        let expected = advertised.clone();
        reader
            .wait_for(case, Duration::from_secs(20), move |d| {
                expected.iter().all(|h| d.get_change_by_hash(h).is_some())
            })
            .await;
        let doc = &reader.docs[&case];
        for head in &advertised {
            assert!(
                doc.get_change_by_hash(head).is_some(),
                "round {round}: advertised change {head} was lost"
            );
        }
        assert!(!CaseDoc::read(doc).unwrap().notes.is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

on_both_backends!(killed_server_keeps_every_advertised_change);

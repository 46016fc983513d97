//! Nothing acknowledged is lost: devices push notes while the server process is killed
//! with SIGKILL at a random moment; after a restart on the same database, every change
//! the server had advertised in its heads is there.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sync_client::SyncClient;
use lotse_protocol::automerge::{ChangeHash, ReadDoc, sync};
use lotse_protocol::{CaseDoc, DocumentId, Message, NewNote};
use lotse_testkit::process::{Process, create_coordinator};
use lotse_testkit::{Backend, Client, TestDb, on_both_backends};
use rand::Rng;

const EMAIL: &str = "leitung@durability.example";
const PASSWORD: &str = "ein langes Passwort";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lotse-server"))
}

/// The server as a process of its own (so it can be killed), and a coordinator's token.
async fn start(db: &TestDb) -> (Process, String) {
    let server = Process::serve(bin(), &db.url).unwrap();
    let token = Client::at(server.addr).login(EMAIL, PASSWORD).await;
    (server, token)
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
    create_coordinator(bin(), &db.url, "Lotsen Durability", EMAIL, PASSWORD).unwrap();

    let mut rng = rand::thread_rng();
    for round in 0..2 {
        let (server, token) = start(&db).await;
        let addr = server.addr;
        let case = Client::at(addr)
            .create_case(&token, &format!("D{round}"), "soziales", &["de"], &[])
            .await;
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
        server.kill().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let advertised = advertised.lock().unwrap().clone();
        assert!(advertised.len() >= kill_after);

        // Restart on the same database and read the case back over sync.
        let (server, token) = start(&db).await;
        let mut reader = SyncClient::connect(server.addr, &token, &format!("reader-{round}")).await;
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
    }
}

on_both_backends!(killed_server_keeps_every_advertised_change);

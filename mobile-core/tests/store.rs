//! The local store: durability under SIGKILL (acceptance 2), no plaintext in the database
//! files (acceptance 3), the wrong key, and typed errors for bad input (acceptance 5).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lotse_core::lotse_protocol::{
    AppointmentId, AppointmentUpdate, AvailabilitySlot, DocumentId, NoteId, Topic,
};
use lotse_core::{AppointmentInput, Client, Error, HoursInput, MAX_TIME, NewCaseInput};

const T: Duration = Duration::from_secs(30);
const CHILD_ENV: &str = "LOTSE_CRASH_CHILD_DIR";

fn case_input(label: &str) -> NewCaseInput {
    NewCaseInput {
        label: label.into(),
        topic: Topic::Gesundheit,
        languages: vec!["ar".into()],
    }
}

/// The child side of the crash test: runs only when re-executed by
/// `killed_writers_lose_nothing_that_returned`. Writes notes as fast as it can and prints
/// each one after its call returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let key: [u8; 32] = hex_key(&std::env::var("LOTSE_CRASH_KEY").unwrap());
    let case: DocumentId = std::env::var("LOTSE_CRASH_CASE").unwrap().parse().unwrap();
    let run = std::env::var("LOTSE_CRASH_RUN").unwrap();
    let client = Client::open(config(dir.as_ref(), "http://127.0.0.1:9", key))
        .await
        .unwrap();
    client.set_network_available(false);
    let mut out = std::io::stdout().lock();
    // libtest has printed "test crash_child ... " without a newline: start a fresh line.
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    for i in 0.. {
        let text = format!("run {run} note {i}");
        let id = client.add_note(&case, &text).await.unwrap();
        // Every fifth note is edited right away, so edits are killed mid-way too.
        if i % 5 == 4 {
            let edited = format!("{text} edited");
            client.edit_note(&case, &id, &edited).await.unwrap();
            writeln!(out, "ok {edited}").unwrap();
        } else {
            writeln!(out, "ok {text}").unwrap();
        }
        out.flush().unwrap();
    }
}

fn hex_key(s: &str) -> [u8; 32] {
    let mut key = [0; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    key
}

fn to_hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_lose_nothing_that_returned() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let runs: usize = std::env::var("LOTSE_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Absturz").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let case = phone.client.create_case(&case_input("C.K.")).await.unwrap();
    phone.client.close().await.unwrap();
    server.stop().await;

    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut kills_while_writing = 0;
    let started = Instant::now();
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, phone.dir.path())
            .env("LOTSE_CRASH_KEY", to_hex(&phone.key))
            .env("LOTSE_CRASH_CASE", case.to_string())
            .env("LOTSE_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Kill at a random point: sometimes while the store opens, mostly mid-write. For
        // the latter, wait for the first acknowledged write rather than a fixed time, so a
        // slow disk or a busy machine cannot turn them into kills during the open.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mid_write = run % 10 != 0;
        while mid_write && !lines.lock().unwrap().iter().any(|l| l.starts_with("ok ")) {
            assert!(Instant::now() < deadline, "child never wrote");
            std::thread::sleep(Duration::from_millis(1));
        }
        let delay = rand_between(0, if mid_write { 50 } else { 400 });
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = lines.lock().unwrap();
        let written: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ok ").map(str::to_owned))
            .collect();
        if !written.is_empty() {
            kills_while_writing += 1;
        }
        acknowledged.extend(written);
    }
    let elapsed = started.elapsed();

    // Reopen: the store opens cleanly and holds every acknowledged write.
    let client = Client::open(config(phone.dir.path(), "http://127.0.0.1:9", phone.key))
        .await
        .unwrap();
    client.set_network_available(false);
    let notes = client.list_notes(&case).await.unwrap();
    let texts: std::collections::HashSet<&str> = notes.iter().map(|n| n.text.as_str()).collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|t| !texts.contains(t.as_str()))
        .collect();
    assert!(missing.is_empty(), "lost after SIGKILL: {missing:?}");
    // A new write still works after all that.
    client.add_note(&case, "nach dem Absturz").await.unwrap();
    println!(
        "crash test: {runs} SIGKILLs ({kills_while_writing} mid-write) in {:.1} s, {} acknowledged writes all present, {} notes stored",
        elapsed.as_secs_f64(),
        acknowledged.len(),
        notes.len()
    );
    assert!(kills_while_writing >= runs / 2, "too few kills hit writes");
    client.close().await.unwrap();
}

fn rand_between(lo: u64, hi: u64) -> u64 {
    let n = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    lo + n % (hi - lo + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_hold_no_plaintext() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Klartext").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let client = &phone.client;
    let labels = ["Z.Q.", "Familie-Xylander"];
    let notes = [
        "Diagnose beim Kinderarzt besprochen",
        "Mutter spricht Tigrinya, Übersetzung nötig",
        "Widerspruch gegen Bescheid eingelegt",
    ];
    let places = ["Kinderarztpraxis Dr. Quenstedt", "Sozialamt Zimmer 3.17"];
    let mut secrets: Vec<&str> = Vec::new();
    for label in labels {
        let case = client.create_case(&case_input(label)).await.unwrap();
        for note in notes {
            let id = client.add_note(&case, note).await.unwrap();
            client
                .edit_note(&case, &id, &format!("{note} (ergänzt)"))
                .await
                .unwrap();
        }
        for place in places {
            client
                .add_appointment(
                    &case,
                    &AppointmentInput {
                        start: 1_772_616_600_000,
                        end: 1_772_620_200_000,
                        place: place.into(),
                        purpose: "Begleitung zum Termin".into(),
                    },
                )
                .await
                .unwrap();
        }
    }
    secrets.extend(labels);
    secrets.extend(notes);
    secrets.extend(places);
    secrets.push("Begleitung zum Termin");
    secrets.push("Testhandy"); // the device name
    within(T, client.sync_now()).await.unwrap();

    // The store is open; search every file in its folder (database, WAL, shm).
    let bytes = store_bytes(phone.dir.path());
    assert!(bytes.len() > 10_000, "the store has content");
    for secret in &secrets {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret:?} in plaintext in the database files"
        );
        // Also not as UTF-16 (Java strings) or in pieces longer than 8 bytes.
        let utf16: Vec<u8> = secret
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert!(!contains(&bytes, &utf16));
        for piece in secret.as_bytes().windows(9) {
            assert!(
                !contains(&bytes, piece),
                "a piece of {secret:?} in plaintext: {:?}",
                String::from_utf8_lossy(piece)
            );
        }
    }
    println!(
        "plaintext search: {} secrets, {} bytes of database files, none found",
        secrets.len(),
        bytes.len()
    );
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_clearly() {
    let dir = TempDir::new("key");
    let key = rand_key();
    let client = Client::open(config(dir.path(), "http://127.0.0.1:9", key))
        .await
        .unwrap();
    client.close().await.unwrap();
    let mut other = key;
    other[0] ^= 1;
    assert!(matches!(
        Client::open(config(dir.path(), "http://127.0.0.1:9", other)).await,
        Err(Error::WrongKey)
    ));
    // The right key still opens it.
    Client::open(config(dir.path(), "http://127.0.0.1:9", key))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    // A bad server address is refused before anything is created.
    for url in ["", "ftp://x", "not a url", "http://"] {
        assert!(
            matches!(
                Client::open(config(dir.path(), url, key)).await,
                Err(Error::InvalidInput { .. })
            ),
            "{url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_typed_errors() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Lotsen Eingaben").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let c = &phone.client;
    c.set_network_available(false);
    let case = c.create_case(&case_input("B.I.")).await.unwrap();
    let invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidInput { .. }));

    // Texts: empty, blank, huge.
    assert!(invalid(c.add_note(&case, "").await.map(drop)));
    assert!(invalid(c.add_note(&case, " \n\t").await.map(drop)));
    let huge = "ä".repeat(100_001);
    assert!(invalid(c.add_note(&case, &huge).await.map(drop)));
    let note = c.add_note(&case, "gut").await.unwrap();
    assert!(invalid(c.edit_note(&case, &note, "").await));
    assert!(invalid(c.edit_note(&case, &note, &huge).await));
    assert!(invalid(c.create_case(&case_input("")).await.map(drop)));
    assert!(invalid(
        c.create_case(&case_input(&"x".repeat(41))).await.map(drop)
    ));
    assert!(invalid(
        c.create_case(&NewCaseInput {
            label: "ok".into(),
            topic: Topic::Beruf,
            languages: vec!["deutsch".into()],
        })
        .await
        .map(drop)
    ));

    // Unknown ids.
    let unknown = DocumentId::random();
    assert!(matches!(
        c.get_case(&unknown).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.add_note(&unknown, "x").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.edit_note(&case, &NoteId::new("nope"), "x").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.cancel_appointment(&case, &AppointmentId::new("nope"))
            .await,
        Err(Error::NotFound { .. })
    ));

    // Dates and times out of range.
    let appointment = |start, end| AppointmentInput {
        start,
        end,
        place: String::new(),
        purpose: String::new(),
    };
    assert!(invalid(
        c.add_appointment(&case, &appointment(-1, 10))
            .await
            .map(drop)
    ));
    assert!(invalid(
        c.add_appointment(&case, &appointment(0, MAX_TIME + 1))
            .await
            .map(drop)
    ));
    assert!(invalid(
        c.add_appointment(&case, &appointment(10, 5))
            .await
            .map(drop)
    ));
    assert!(invalid(
        c.add_appointment(
            &case,
            &AppointmentInput {
                place: "p".repeat(201),
                ..appointment(0, 1)
            }
        )
        .await
        .map(drop)
    ));
    let a = c
        .add_appointment(&case, &appointment(100, 200))
        .await
        .unwrap();
    assert!(invalid(
        c.change_appointment(
            &case,
            &a,
            &AppointmentUpdate {
                start: Some(i64::MIN),
                ..Default::default()
            }
        )
        .await
    ));
    assert!(invalid(
        c.change_appointment(
            &case,
            &a,
            &AppointmentUpdate {
                end: Some(50),
                ..Default::default()
            }
        )
        .await
    ));
    assert!(invalid(c.appointments_between(10, 5).await.map(drop)));
    assert!(invalid(c.appointments_between(-5, 5).await.map(drop)));
    assert!(invalid(c.monthly_hours(0).await.map(drop)));
    assert!(invalid(c.monthly_hours(10_000).await.map(drop)));
    let hours = |date: &str, minutes, kind: &str| HoursInput {
        date: date.into(),
        minutes,
        travel_minutes: 0,
        kind: kind.into(),
    };
    for bad in [
        hours("2026-02-30", 60, "begleitung"),
        hours("04.03.2026", 60, "begleitung"),
        hours("2026-03-04", 0, "begleitung"),
        hours("2026-03-04", 1441, "begleitung"),
        hours("2026-03-04", 60, ""),
        hours("2026-03-04", 60, "Begleitung mit Auto"),
    ] {
        assert!(invalid(c.log_hours(&case, &bad).await.map(drop)), "{bad:?}");
    }
    for bad in [
        AvailabilitySlot {
            weekday: 0,
            from: "09:00".into(),
            to: "10:00".into(),
        },
        AvailabilitySlot {
            weekday: 1,
            from: "10:00".into(),
            to: "09:00".into(),
        },
        AvailabilitySlot {
            weekday: 1,
            from: "25:00".into(),
            to: "26:00".into(),
        },
    ] {
        assert!(invalid(c.set_availability(&[bad]).await));
    }
    // None of the refused edits left a trace.
    let view = c.get_case(&case).await.unwrap().case;
    assert_eq!(view.notes.len(), 1);
    assert_eq!(view.appointments.len(), 1);
    assert!(view.hours.is_empty());

    // Calls after close.
    c.close().await.unwrap();
    assert!(matches!(c.list_cases().await, Err(Error::Closed)));
    assert!(matches!(c.add_note(&case, "x").await, Err(Error::Closed)));
    assert!(matches!(c.sync_now().await, Err(Error::Closed)));
    assert!(matches!(c.close().await, Ok(())));
    server.stop().await;
}

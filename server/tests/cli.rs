//! The `lotse-server` binary: help texts, `migrate`, `create-coordinator`, `serve --demo`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lotse_testkit::process::{Process, listening_addr};
use lotse_testkit::{Backend, Client, TempDir, TestDb, on_both_backends};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lotse-server"));
    c.env_remove("DATABASE_URL")
        .env_remove("LOTSE_BIND")
        .env("RUST_LOG", "warn");
    c
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["create-coordinator", "--help"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage"), "{text}");
    }
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--database-url",
        "--demo",
        "--log-format",
        "LOTSE_BIND",
        "DATABASE_URL",
        "127.0.0.1:8080",
        "sqlite://lotse-data/lotse.db",
    ] {
        assert!(text.contains(flag), "{flag} missing from serve --help");
    }
}

async fn create_coordinator_then_login(backend: Backend) {
    let db = TestDb::new(backend).await;
    let out = bin()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let create = |password: &'static str| {
        let mut child = bin()
            .args([
                "create-coordinator",
                "--org",
                "Integrationslotsen Neuss",
                "--email",
                "leitung@neuss.example",
                "--password-stdin",
            ])
            .env("DATABASE_URL", &db.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let short = create("kurz\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));

    let out = create("ein sicheres Passwort\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "prints the id: {id}");
    let dup = create("ein sicheres Passwort\n");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists already"));

    let server = lotse_testkit::TestServer::start_on(db).await;
    let token = server
        .login("leitung@neuss.example", "ein sicheres Passwort")
        .await;
    let (_, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["coordinator_id"], id.as_str());
    server.stop().await;
}

on_both_backends!(create_coordinator_then_login);

/// The demo's password is public: it refuses to listen beyond this machine, before it
/// creates or seeds anything.
#[test]
fn the_demo_listens_on_loopback_only() {
    let dir = TempDir::new("cli-demo");
    let out = bin()
        .current_dir(dir.path())
        .args(["serve", "--demo", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("loopback"), "{said}");
    assert!(
        !dir.path().join("lotse-data").exists(),
        "nothing was created"
    );
}

/// The README's first command, on a fresh folder: creates the SQLite file, seeds the demo
/// network, prints the login, serves the API, and stops cleanly on SIGTERM.
#[test]
fn serve_demo_on_fresh_folder() {
    let dir = TempDir::new("cli");
    let mut cmd = bin();
    cmd.current_dir(dir.path())
        .args(["--demo", "--bind", "127.0.0.1:0"]);
    let login = Arc::new(Mutex::new(None));
    let printed = login.clone();
    // The login is printed before the address, so it is known once `spawn` returns.
    let server = Process::spawn(
        "lotse-server --demo",
        cmd,
        Duration::from_secs(60),
        listening_addr,
        move |_, line| {
            if line.contains("log in as") {
                *printed.lock().unwrap() = Some(line.to_owned());
            }
        },
    )
    .unwrap();
    let login = login
        .lock()
        .unwrap()
        .clone()
        .expect("the demo login is printed");
    assert!(
        login.contains(lotse_server::demo::EMAIL) && login.contains(lotse_server::demo::PASSWORD)
    );
    assert!(dir.path().join("lotse-data/lotse.db").exists());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Client::at(server.addr);
        let token = api
            .login(lotse_server::demo::EMAIL, lotse_server::demo::PASSWORD)
            .await;
        let get = |path: &'static str| {
            let (api, token) = (api.clone(), token.clone());
            async move {
                let (status, body) = api.get(path, Some(&token)).await;
                assert_eq!(status, 200, "{path}: {body}");
                body
            }
        };
        let volunteers = get("/api/v1/volunteers").await;
        assert!(volunteers.as_array().unwrap().len() >= 8);
        // A living network: requests in several states, cases with notes and hours.
        let requests = get("/api/v1/requests").await;
        let statuses: Vec<&str> = requests
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        for status in ["open", "offered", "assigned", "cancelled"] {
            assert!(statuses.contains(&status), "{status} missing: {statuses:?}");
        }
        let cases = get("/api/v1/cases").await;
        let cases = cases.as_array().unwrap();
        assert!(cases.len() >= 4, "{cases:?}");
        assert!(cases.iter().any(|c| c["status"] == "closed"));
        assert!(
            cases.iter().all(|c| c["note_count"].as_i64().unwrap() >= 1
                && c["hours_minutes"].as_i64().unwrap() > 0)
        );
    });

    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
}

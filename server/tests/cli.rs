//! The `lotse-server` binary: help texts, `migrate`, `create-coordinator`, `serve --demo`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb};

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

    let server = common::TestServer::start_on(db).await;
    let token = server
        .login("leitung@neuss.example", "ein sicheres Passwort")
        .await;
    let (_, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["coordinator_id"], id.as_str());
    server.stop().await;
}

on_both_backends!(create_coordinator_then_login);

/// The README's first command, on a fresh folder: creates the SQLite file, seeds the demo
/// network, prints the login, serves the API, and stops cleanly on SIGTERM.
#[test]
fn serve_demo_on_fresh_folder() {
    let dir = std::env::temp_dir().join(format!("lotse-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = bin()
        .current_dir(&dir)
        .args(["--demo", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut login = None;
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while address.is_none() && Instant::now() < deadline {
        let line = lines.next().unwrap().unwrap();
        if line.contains("log in as") {
            login = Some(line.clone());
        }
        if let Some(a) = line.split("http://").nth(1) {
            address = Some(a.trim().to_owned());
        }
    }
    let login = login.expect("the demo login is printed");
    assert!(
        login.contains(lotse_server::demo::EMAIL) && login.contains(lotse_server::demo::PASSWORD)
    );
    let address = address.expect("the address is printed");
    assert!(dir.join("lotse-data/lotse.db").exists());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let res = http
            .post(format!("http://{address}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": lotse_server::demo::EMAIL, "password": lotse_server::demo::PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let token = res.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        let volunteers: serde_json::Value = http
            .get(format!("http://{address}/api/v1/volunteers"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(volunteers.as_array().unwrap().len() >= 8);
        // A living network: requests in several states, cases with notes and hours.
        let get = |path: &'static str| {
            let (http, token) = (http.clone(), token.clone());
            let url = format!("http://{address}{path}");
            async move { http.get(url).bearer_auth(token).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
        };
        let requests = get("/api/v1/requests").await;
        let statuses: Vec<&str> = requests.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
        for status in ["open", "offered", "assigned", "cancelled"] {
            assert!(statuses.contains(&status), "{status} missing: {statuses:?}");
        }
        let cases = get("/api/v1/cases").await;
        let cases = cases.as_array().unwrap();
        assert!(cases.len() >= 4, "{cases:?}");
        assert!(cases.iter().any(|c| c["status"] == "closed"));
        assert!(cases.iter().all(|c| c["note_count"].as_i64().unwrap() >= 1 && c["hours_minutes"].as_i64().unwrap() > 0));
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

//! The phone over TLS, against a real lotse-server behind a TLS terminator (the reverse
//! proxy a municipality puts in front of it), with a certificate from a throwaway CA that
//! stands in for the network's own. What is checked: enrollment, REST and the `/sync`
//! WebSocket all run through TLS when the CA is configured; without it, or with a
//! certificate for another name, the phone refuses with `Untrusted`, not with a network
//! error the app would retry forever; plain http to a public address and an unreadable CA
//! list are refused by every call that needs the server, naming the setting, while the
//! store still opens and its data stays usable.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use lotse_core::lotse_protocol::Topic;
use lotse_core::{Client, Config, Error, NewCaseInput, SyncState};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const T: Duration = Duration::from_secs(30);

/// A CA and a server certificate it issued for `names`.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn issue(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Lotse Test-CA Musterstadt");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// Terminates TLS on a loopback port and passes the bytes on to `backend`. Counts the
/// handshakes it completed, so a test can tell the traffic really went through it.
async fn tls_front(backend: SocketAddr, pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, handshakes)
}

fn tls_config(dir: &TempDir, url: &str, key: [u8; 32], ca_pem: Option<&str>) -> Config {
    Config {
        trusted_certificates_pem: ca_pem.map(str::to_owned),
        ..config(dir.path(), url, key)
    }
}

/// A client opened with `config` and enrolled with `code` as a phone of `volunteer`.
async fn enrolled_with(config: Config, code: &str, volunteer: &str) -> Client {
    let client = Client::open(config).await.unwrap();
    let enrolled = within(T, client.enroll(code, "Diensthandy")).await.unwrap();
    assert_eq!(enrolled.volunteer_id, volunteer);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_and_sync_run_over_tls_with_the_networks_ca() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Musterstadt").await;
    let volunteer = server.volunteer(&coordinator, "Amira", &["ar", "de"]).await;
    let code = server.enrollment_code(&coordinator, &volunteer).await;
    let pki = issue(&["127.0.0.1", "localhost"]);
    let (front, handshakes) = tls_front(server.addr, &pki).await;
    let url = format!("https://{front}");

    let dir = TempDir::new("tls");
    let key = rand_key();
    let client = enrolled_with(
        tls_config(&dir, &url, key, Some(&pki.ca_pem)),
        &code,
        &volunteer,
    )
    .await;
    let case = case_with_note(
        &client,
        "T.L.",
        Topic::Wohnen,
        &["uk"],
        "Wohnungsbesichtigung vereinbart",
    )
    .await;
    within(T, client.sync_now()).await.unwrap();
    // The phone knows only the front's https address: the enrollment's request and the
    // sync WebSocket each completed a handshake there.
    assert!(handshakes.load(Ordering::SeqCst) >= 2);
    let held = server.case(&coordinator, &case).await;
    assert_eq!(held["label"], "T.L.");
    assert_eq!(
        held["notes"][0]["text"], "Wohnungsbesichtigung vereinbart",
        "{held}"
    );
    client.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_as_such() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Musterstadt").await;
    let volunteer = server.volunteer(&coordinator, "Amira", &["ar", "de"]).await;
    let pki = issue(&["127.0.0.1"]);
    let (front, _) = tls_front(server.addr, &pki).await;
    let url = format!("https://{front}");

    // Without the network's CA: enrollment is refused, the code stays unused.
    let code = server.enrollment_code(&coordinator, &volunteer).await;
    let dir = TempDir::new("tls-untrusted");
    let key = rand_key();
    let client = Client::open(tls_config(&dir, &url, key, None))
        .await
        .unwrap();
    match within(T, client.enroll(&code, "Diensthandy")).await {
        Err(Error::Untrusted(reason)) => assert!(reason.contains("certificate"), "{reason}"),
        other => panic!("expected Untrusted, got {other:?}"),
    }
    client.close().await.unwrap();

    // A CA the phone trusts, but a certificate issued for another name.
    let elsewhere = issue(&["lotse.example.org"]);
    let (wrong_name, _) = tls_front(server.addr, &elsewhere).await;
    let dir2 = TempDir::new("tls-name");
    let client = Client::open(tls_config(
        &dir2,
        &format!("https://{wrong_name}"),
        key,
        Some(&elsewhere.ca_pem),
    ))
    .await
    .unwrap();
    match within(T, client.enroll(&code, "Diensthandy")).await {
        Err(Error::Untrusted(_)) => {}
        other => panic!("expected Untrusted, got {other:?}"),
    }
    client.close().await.unwrap();

    // Enrolled through a trusted connection, then opened without the CA: the sync
    // WebSocket is refused the same way, and the state says why.
    let client = Client::open(tls_config(&dir, &url, key, Some(&pki.ca_pem)))
        .await
        .unwrap();
    within(T, client.enroll(&code, "Diensthandy"))
        .await
        .unwrap();
    within(T, client.sync_now()).await.unwrap();
    client.close().await.unwrap();
    let client = Client::open(tls_config(&dir, &url, key, None))
        .await
        .unwrap();
    match within(T, client.sync_now()).await {
        Err(Error::Untrusted(_)) => {}
        other => panic!("expected Untrusted, got {other:?}"),
    }
    client.close().await.unwrap();
    server.stop().await;
}

fn refused<T>(result: Result<T, Error>, field: &str, what: &str) {
    match result {
        Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{what}"),
        Err(e) => panic!("{what}: expected InvalidInput on {field}, got {e:?}"),
        Ok(_) => panic!("{what}: expected InvalidInput on {field}, got Ok"),
    }
}

/// An installed app whose server settings turn out unusable (a public `http://` address,
/// a CA list that does not parse) still opens its store: the notes on the phone stay
/// readable and editable, and every call that needs the server says which setting is
/// wrong, as does the sync state. Fixed settings then sync what was written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_bad_certificates_are_refused_when_connecting_local_data_stays_usable() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Musterstadt").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    let case = case_with_note(
        &phone.client,
        "H.P.",
        Topic::Behoerden,
        &["ar"],
        "Termin beim Jobcenter vorbereitet",
    )
    .await;
    within(T, phone.client.sync_now()).await.unwrap();
    phone.client.close().await.unwrap();
    // An unused code: a refused enrollment must not spend it.
    let volunteer = server.volunteer(&coordinator, "Jonas", &["ar", "de"]).await;
    let code = server.enrollment_code(&coordinator, &volunteer).await;

    let bad_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let settings = [
        ("http://lotse.example.org", None, "server_url"),
        ("http://8.8.8.8:8080", None, "server_url"),
        (
            "https://lotse.example.org",
            Some(bad_pem),
            "trusted_certificates_pem",
        ),
        (
            server.base.as_str(),
            Some(bad_pem),
            "trusted_certificates_pem",
        ),
    ];
    let mut written = Vec::new();
    for (url, pem, field) in settings {
        let client = Client::open(tls_config(&phone.dir, url, phone.key, pem))
            .await
            .unwrap_or_else(|e| panic!("{url}: the store must open, got {e:?}"));
        // What is on the phone stays readable and editable.
        let held = client.get_case(&case).await.unwrap();
        assert_eq!(held.case.notes[0].text, "Termin beim Jobcenter vorbereitet");
        let text = format!("Notiz ohne Netz ({url})");
        client.add_note(&case, &text).await.unwrap();
        written.push(text);
        let new_case = client
            .create_case(&NewCaseInput {
                label: "O.N.".into(),
                topic: Topic::Wohnen,
                languages: vec![],
            })
            .await
            .unwrap();
        client.add_note(&new_case, "Wohnungssuche").await.unwrap();
        assert_eq!(client.list_notes(&new_case).await.unwrap().len(), 1);
        assert!(client.list_cases().await.unwrap().len() >= 2);
        client.cached_offers().await.unwrap();
        let queued = client
            .accept_offer("6f1c2d3e-0000-4000-8000-000000000001")
            .await
            .unwrap();
        assert_eq!(queued.outcome, None);

        // Everything that needs the server names the setting.
        refused(within(T, client.sync_now()).await, field, url);
        eventually("the sync state says why", T, || async {
            matches!(client.sync_state(), SyncState::Error { reason } if reason.starts_with(field))
        })
        .await;
        refused(client.list_offers().await, field, url);
        client.create_push_subscription_keys().await.unwrap();
        refused(
            client.register_push("https://push.example.org/abc").await,
            field,
            url,
        );
        // The queued answer stays queued.
        let answer = client
            .offer_answer("6f1c2d3e-0000-4000-8000-000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.outcome, None);
        client.close().await.unwrap();

        let fresh = TempDir::new("tls-fresh");
        let client = Client::open(tls_config(&fresh, url, rand_key(), pem))
            .await
            .unwrap();
        refused(client.enroll(&code, "Diensthandy").await, field, url);
        client.close().await.unwrap();
    }

    // Settings fixed: what was written meanwhile reaches the server, and the code that
    // the refused enrollments never sent still works.
    let client = Client::open(tls_config(&phone.dir, &server.base, phone.key, None))
        .await
        .unwrap();
    within(T, client.sync_now()).await.unwrap();
    let held = server.case(&coordinator, &case).await;
    for text in &written {
        assert!(
            held["notes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["text"] == text.as_str()),
            "{text}: {held}"
        );
    }
    client.close().await.unwrap();
    let fresh = TempDir::new("tls-fixed");
    let config = tls_config(&fresh, &server.base, rand_key(), None);
    let client = enrolled_with(config, &code, &volunteer).await;
    client.close().await.unwrap();

    // Addresses that are still refused when they are not http(s) with a host.
    let dir = TempDir::new("tls-open");
    let key = rand_key();
    for url in ["ftp://lotse.example.org", "lotse.example.org", "http://"] {
        refused(
            Client::open(tls_config(&dir, url, key, None)).await,
            "server_url",
            url,
        );
    }
    // A private address is no place for plain http either (a shelter's Wi-Fi is a local
    // network too): the store opens, the network stays off.
    for url in ["http://192.168.178.20:8080", "http://10.0.2.2:8080"] {
        let client = Client::open(tls_config(&dir, url, key, None))
            .await
            .unwrap();
        refused(
            client.enroll("ABCD-EFGH", "Diensthandy").await,
            "server_url",
            url,
        );
        client.close().await.unwrap();
    }
    server.stop().await;
}

/// The server address is pinned at enrollment: the same phone opened with another
/// address keeps its notes but sends nothing there; its own address works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_phone_talks_only_to_its_own_server() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, coordinator) = server.new_org("Integrationslotsen Musterstadt").await;
    let phone = enrolled_phone(&server, &coordinator).await;
    phone.client.set_network_available(false);
    let case = case_with_note(
        &phone.client,
        "P.S.",
        Topic::Arbeit,
        &[],
        "Bewerbung abgeschickt",
    )
    .await;
    phone.client.close().await.unwrap();
    let elsewhere = server.base.replace("127.0.0.1", "localhost");
    assert_ne!(elsewhere, server.base);
    let client = Client::open(config(phone.dir.path(), &elsewhere, phone.key))
        .await
        .unwrap();
    assert_eq!(client.list_notes(&case).await.unwrap().len(), 1);
    refused(within(T, client.sync_now()).await, "server_url", &elsewhere);
    client.close().await.unwrap();
    let path = format!("/api/v1/cases/{case}");
    assert_eq!(
        server.get(&path, Some(&coordinator)).await.0,
        404,
        "nothing was sent"
    );
    let client = Client::open(config(phone.dir.path(), &server.base, phone.key))
        .await
        .unwrap();
    within(T, client.sync_now()).await.unwrap();
    client.close().await.unwrap();
    assert_eq!(server.get(&path, Some(&coordinator)).await.0, 200);
    server.stop().await;
}

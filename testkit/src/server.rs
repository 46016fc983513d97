//! lotse-server in-process on a free loopback port over a fresh database, reached over
//! real HTTP, with the calls tests make to set up organisations, volunteers, devices,
//! requests and cases.

use std::net::SocketAddr;
use std::ops::Deref;

use lotse_protocol::DocumentId;
use lotse_server::config::{HttpConfig, MailConfig, PushConfig};
use lotse_server::secrets::ServerKey;
use lotse_server::store::{NewCoordinator, Organisation, Store};
use lotse_server::{AppState, auth};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::db::{Backend, TestDb};
use crate::{PASSWORD, call_json, fixtures};

/// How the server is started, beyond what every test server has: push endpoints on
/// loopback are allowed, since tests run their push service there.
#[derive(Debug, Clone)]
pub struct Options {
    /// Off: no background push sender; the test runs `push::spawn_worker` itself, to
    /// control when and how sends happen.
    pub push_worker: bool,
    /// `--trusted-proxy`: addresses whose `X-Forwarded-For` the server believes.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `--header-timeout-secs`, shorter for a test of slow clients; `None`: the default.
    pub header_timeout: Option<std::time::Duration>,
    /// `LOTSE_SECRET_KEY`: the server key that seals the secret settings.
    pub secret_key: Option<String>,
    /// `--two-factor-optional`: on for most tests, whose Leitung logs in with a password
    /// alone; the tests of the second factor turn it off, as in production.
    pub two_factor_optional: bool,
    /// `--smtp-url`: e-mail through an SMTP server the test runs.
    pub smtp_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            push_worker: true,
            trusted_proxies: Vec::new(),
            header_timeout: None,
            secret_key: None,
            two_factor_optional: true,
            smtp_url: None,
        }
    }
}

/// A running server, which is also a `Client` of itself (through `Deref`), so a test
/// writes `s.post(...)` as it would against any server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub state: AppState,
    pub db: TestDb,
    client: Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(TestDb::new(backend).await, Options::default()).await
    }

    pub async fn start_without_push_worker(backend: Backend) -> Self {
        let options = Options {
            push_worker: false,
            ..Options::default()
        };
        Self::start_with(TestDb::new(backend).await, options).await
    }

    /// Over a database the test prepared, or one another server used before (see
    /// `stop_keeping_db` and `TestDb::shared`).
    pub async fn start_on(db: TestDb) -> Self {
        Self::start_with(db, Options::default()).await
    }

    pub async fn start_with(db: TestDb, options: Options) -> Self {
        let key = options.secret_key.map(|k| ServerKey::parse(&k).unwrap());
        let store = Store::connect(&db.url).await.unwrap().with_server_key(key);
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let push = PushConfig {
            allow_insecure_push_endpoints: true,
            push_worker: options.push_worker,
            ..PushConfig::default()
        };
        let mut http = HttpConfig {
            trusted_proxies: options.trusted_proxies,
            two_factor_optional: options.two_factor_optional,
            ..HttpConfig::default()
        };
        if let Some(t) = options.header_timeout {
            http.header_timeout = t;
        }
        let mail = MailConfig {
            smtp_url: options.smtp_url,
            smtp_from: "Lotse Test <lotse@test.invalid>".into(),
        };
        let state = AppState::new(store.clone(), http, push)
            .await
            .unwrap()
            .with_mail(&mail)
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lotse_server::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            store,
            state,
            db,
            client: Client::at(addr),
            stop,
            task,
        }
    }

    /// Shuts the server down gracefully and removes its database.
    pub async fn stop(self) {
        drop(self.stop_keeping_db().await);
    }

    /// Shuts the server down gracefully; its database stays for a successor.
    pub async fn stop_keeping_db(self) -> TestDb {
        // Bounded, so that a server that cannot stop fails the test with what held it
        // instead of hanging the run: the server itself gives its sync connections
        // `lifecycle::DRAIN`, so this allows for that and a slow machine.
        const WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
        let _ = self.stop.send(());
        match tokio::time::timeout(WITHIN, self.task).await {
            Ok(served) => served.unwrap().unwrap(),
            Err(_) => panic!(
                "the server did not stop within {WITHIN:?}: an HTTP request still in flight \
                 ({} long-lived tasks still running)",
                self.state.lifecycle.still_running()
            ),
        }
        if tokio::time::timeout(WITHIN, self.store.close())
            .await
            .is_err()
        {
            panic!(
                "the database pool did not close within {WITHIN:?}: a connection is still checked out"
            );
        }
        self.db
    }

    /// A coordinator of a new organisation, logged in: (organisation id, token).
    pub async fn new_org(&self, name: &str) -> (String, String) {
        let email = format!(
            "koordination@{}.example",
            name.to_lowercase().replace(' ', "-")
        );
        let (org, _) = self.coordinator(name, &email, PASSWORD).await;
        let token = self.login(&email, PASSWORD).await;
        (org.id, token)
    }

    /// An organisation with a coordinator who can log in with `password`: the
    /// organisation and the coordinator's id.
    pub async fn coordinator(
        &self,
        org: &str,
        email: &str,
        password: &str,
    ) -> (Organisation, String) {
        let org = self.store.ensure_organisation(org).await.unwrap();
        let hash = auth::hash_password(password).unwrap();
        let c = self
            .store
            .create_coordinator(NewCoordinator {
                organisation_id: &org.id,
                email,
                display_name: email,
                password_hash: &hash,
                role: lotse_server::store::Role::Leitung,
            })
            .await
            .unwrap();
        (org, c.id)
    }
}

impl Deref for TestServer {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Calls to the REST API of a server, in-process or a child process, that fail the test
/// on an unexpected answer.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn at(addr: SocketAddr) -> Self {
        // A server that never answers fails the test with the request, not a hung run.
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        Self::with_http(addr, http)
    }

    pub fn with_http(addr: SocketAddr, http: reqwest::Client) -> Self {
        Self {
            base: format!("http://{addr}"),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_json(&self.http, method, self.url(path), token, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    /// One login attempt, whatever the answer: the status and the body.
    pub async fn try_login(&self, email: &str, password: &str) -> (u16, Value) {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self.try_login(email, password).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a volunteer for the topic "behoerden" and returns its id.
    pub async fn volunteer(&self, token: &str, name: &str, languages: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/api/v1/volunteers",
                Some(token),
                json!({"display_name": name, "languages": languages, "topics": ["behoerden"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// A one-time enrollment code for a phone of the volunteer.
    pub async fn enrollment_code(&self, token: &str, volunteer_id: &str) -> String {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/volunteers/{volunteer_id}/enrollment-codes"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// One enrollment attempt with `code`, whatever the answer: the status and the body.
    pub async fn enroll(&self, code: &str, device_name: &str) -> (u16, Value) {
        self.post(
            "/api/v1/devices/enroll",
            None,
            json!({"code": code, "device_name": device_name}),
        )
        .await
    }

    /// Enrolls a new device for the volunteer: (device id, device token).
    pub async fn device(&self, token: &str, volunteer_id: &str, name: &str) -> (String, String) {
        let code = self.enrollment_code(token, volunteer_id).await;
        let (status, body) = self.enroll(&code, name).await;
        assert_eq!(status, 201, "{body}");
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A coordinator revokes a device, whatever the answer: the status and the body.
    pub async fn revoke_device(&self, token: &str, device_id: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{device_id}/revoke"),
            Some(token),
            None,
        )
        .await
    }

    /// Posts a request (a `fixtures::request_body`, perhaps with more fields) and returns
    /// its id.
    pub async fn post_request(&self, token: &str, body: Value) -> String {
        let (status, r) = self.post("/api/v1/requests", Some(token), body).await;
        assert_eq!(status, 201, "{r}");
        r["id"].as_str().unwrap().to_owned()
    }

    /// Creates a request of `fixtures::request_body` and returns its id.
    pub async fn create_request(
        &self,
        token: &str,
        topic: &str,
        languages: &[&str],
        starts: &str,
        ends: &str,
    ) -> String {
        self.post_request(
            token,
            fixtures::request_body(topic, languages, starts, ends),
        )
        .await
    }

    /// Creates a case over the API, shared with `volunteers`, and returns its id.
    pub async fn create_case(
        &self,
        token: &str,
        label: &str,
        topic: &str,
        languages: &[&str],
        volunteers: &[&str],
    ) -> DocumentId {
        let (status, created) = self
            .post(
                "/api/v1/cases",
                Some(token),
                json!({"label": label, "topic": topic, "languages": languages, "volunteer_ids": volunteers}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// The case as the server holds it (`GET /api/v1/cases/{id}`).
    pub async fn case(&self, token: &str, id: &DocumentId) -> Value {
        let (status, body) = self.get(&format!("/api/v1/cases/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Offers the request to exactly `volunteers` and returns the answer.
    pub async fn offer_to(&self, token: &str, request: &str, volunteers: &[&str]) -> Value {
        let (status, offered) = self
            .post(
                &format!("/api/v1/requests/{request}/offer"),
                Some(token),
                json!({"volunteer_ids": volunteers}),
            )
            .await;
        assert_eq!(status, 200, "{offered}");
        offered
    }

    /// A device accepts its offer of `request`: the status and the answer.
    pub async fn accept(&self, device_token: &str, request: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::POST,
            &format!("/api/v1/offers/{request}/accept"),
            Some(device_token),
            None,
        )
        .await
    }

    /// Posts the public intake form of the organisation `slug` (see
    /// `fixtures::intake_fields`), as a browser does.
    pub async fn post_intake_form<K: AsRef<str>, V: AsRef<str>>(
        &self,
        slug: &str,
        fields: &[(K, V)],
    ) -> reqwest::Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.http
            .post(self.url(&format!("/anfrage/{slug}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

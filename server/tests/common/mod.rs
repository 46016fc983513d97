//! Test harness: a real server on a free loopback port over a fresh database (a SQLite
//! file in a temp folder, or a new PostgreSQL database), reached over real HTTP.
#![allow(dead_code, clippy::unwrap_used)]

pub mod fixtures;
pub mod sync_client;
pub mod webpush;

use std::net::SocketAddr;
use std::path::PathBuf;

use lotse_protocol::DocumentId;
use lotse_server::config::{HttpConfig, PushConfig};
use lotse_server::store::{NewCoordinator, Organisation, Store};
use lotse_server::{AppState, auth};
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` once per backend, as `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("LOTSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database; removed again when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    None,
    Dir(PathBuf),
    Postgres { admin: String, name: String },
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("lotse-test-{id}"));
                std::fs::create_dir_all(&dir).unwrap();
                Self {
                    url: format!("sqlite://{}/lotse.db", dir.display()),
                    cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("lotse_test_{id}");
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests (set LOTSE_TEST_POSTGRES_URL): {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Self {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { admin, name },
                }
            }
        }
    }
}

impl TestDb {
    /// The same database for a second server; only the original cleans up.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            cleanup: Cleanup::None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::None => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin, name } => {
                let (admin, name) = (admin.clone(), name.clone());
                // Drop runs inside the test's runtime, which cannot block on itself.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(mut conn) =
                            <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                        {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub store: Store,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub db: TestDb,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
        Self::start_on(db).await
    }

    /// Without the background push sender: the test runs `spawn_worker` itself.
    pub async fn start_without_push_worker(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
        Self::start_with(db, false).await
    }

    pub async fn start_on(db: TestDb) -> Self {
        Self::start_with(db, true).await
    }

    async fn start_with(db: TestDb, push_worker: bool) -> Self {
        let store = Store::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Tests run their push service on loopback.
        let push = PushConfig {
            allow_insecure_push_endpoints: true,
            push_worker,
            ..PushConfig::default()
        };
        let state = AppState::new(store.clone(), HttpConfig::default(), push)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lotse_server::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            store,
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An organisation with a coordinator who can log in with `password`.
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
            })
            .await
            .unwrap();
        (org, c.id)
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// A coordinator of a new organisation, logged in: (organisation id, token).
    pub async fn new_org(&self, name: &str) -> (String, String) {
        let email = format!(
            "koordination@{}.example",
            name.to_lowercase().replace(' ', "-")
        );
        let (org, _) = self
            .coordinator(name, &email, "ein langes Passwort 42")
            .await;
        let token = self.login(&email, "ein langes Passwort 42").await;
        (org.id, token)
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

    /// Creates a volunteer and returns its id.
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

    /// Enrolls a new device for the volunteer: (device id, device token).
    pub async fn device(&self, token: &str, volunteer_id: &str, name: &str) -> (String, String) {
        let (status, code) = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/volunteers/{volunteer_id}/enrollment-codes"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 201, "{code}");
        let (status, body) = self
            .post(
                "/api/v1/devices/enroll",
                None,
                json!({"code": code["code"], "device_name": name}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
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

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.store.close().await;
    }
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `instances` server instances on `store`'s PostgreSQL database LISTEN for
/// each other's notifications (document changes and shares): a NOTIFY sent before an
/// instance listens is lost to it. Each instance listens on one connection, whose last
/// statement stays its LISTEN; `idle` means that statement has finished, so the LISTEN
/// has taken effect.
pub async fn wait_until_instances_listen(store: &Store, instances: i64) {
    use lotse_server::store::{CHANGES_CHANNEL, SHARES_CHANNEL};
    let query = format!(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle' \
         AND query LIKE '%LISTEN%{CHANGES_CHANNEL}%' AND query LIKE '%LISTEN%{SHARES_CHANNEL}%'"
    );
    eventually(
        "the server instances to listen for each other",
        std::time::Duration::from_secs(20),
        || async {
            let listening: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.clone()))
                .fetch_one(store.pool())
                .await
                .unwrap();
            (listening >= instances).then_some(())
        },
    )
    .await;
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One JSON request, with a bearer token if given: the status and the JSON answer (`Null`
/// for an empty body). Panics on an answer that is not JSON.
pub async fn call_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, value)
}

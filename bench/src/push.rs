//! Scenario 7: Web Push fan-out. `count` phones, each with its own key pair and push
//! subscription, in a fresh SQLite file; one notice queued for all of them in one
//! transaction; the server's own outbox worker encrypts (RFC 8291) and delivers to a
//! push-service stand-in on loopback that answers 201 and keeps every body. The clock
//! stops when every subscription has received its message. Afterwards each body is
//! decrypted with its phone's keys, so "delivered" means "readable by that phone".
//!
//! This runs in the bench process, through lotse-server as a library: the outbox and
//! worker are the ones `serve` starts, and the data set is made through the store's own
//! functions (a volunteer per five phones, as enrolment makes them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use lotse_core::PushKeys;
use lotse_server::config::PushConfig;
use lotse_server::push::{Notice, NoticeKind, Payload, Push, enqueue};
use lotse_server::store::{NewCoordinator, NewPushSubscription, NewVolunteer, PushOwner, Store};
use lotse_testkit::TestDb;
use tokio::sync::Notify;

const PHONES_PER_VOLUNTEER: usize = 5;

pub struct FanOut {
    pub setup_secs: f64,
    pub enqueue_ms: f64,
    pub deliver_secs: f64,
    /// Posts the stand-in received, repeats included (delivery is at least once).
    pub posts: usize,
}

/// What the stand-in push service saw.
struct Inbox {
    seen: Mutex<Seen>,
    all_in: Notify,
}

struct Seen {
    /// The first body per subscription.
    bodies: Vec<Option<Bytes>>,
    /// Posts, repeats included.
    posts: usize,
    /// Subscriptions with a body.
    distinct: usize,
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    UrlPath(i): UrlPath<usize>,
    body: Bytes,
) -> StatusCode {
    let mut seen = inbox.seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.posts += 1;
    let Some(slot) = seen.bodies.get_mut(i) else {
        return StatusCode::NOT_FOUND;
    };
    if slot.is_none() {
        *slot = Some(body);
        seen.distinct += 1;
        if seen.distinct == seen.bodies.len() {
            inbox.all_in.notify_one();
        }
    }
    StatusCode::CREATED
}

async fn stand_in(inbox: Arc<Inbox>) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/push/{i}", post(receive))
        .with_state(inbox);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

pub async fn run(count: usize, deadline: Duration) -> Result<FanOut> {
    let inbox = Arc::new(Inbox {
        seen: Mutex::new(Seen {
            bodies: vec![None; count],
            posts: 0,
            distinct: 0,
        }),
        all_in: Notify::new(),
    });
    let (addr, service) = stand_in(inbox.clone()).await?;
    let _stop_service = AbortOnDrop(service);

    let t = Instant::now();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    let org = store.ensure_organisation("Lotse Bench Push").await?;
    let coordinator = store
        .create_coordinator(NewCoordinator {
            organisation_id: &org.id,
            email: "koordination@bench.invalid",
            display_name: "Koordination",
            // Nobody logs in here; the hash only has to be a value.
            password_hash: "unused",
            role: lotse_server::store::Role::Leitung,
        })
        .await?
        .id;
    let mut keys = Vec::with_capacity(count);
    let mut volunteer_ids = Vec::new();
    let mut volunteer = String::new();
    for i in 0..count {
        if i % PHONES_PER_VOLUNTEER == 0 {
            volunteer = store
                .create_volunteer(
                    &org.id,
                    &coordinator,
                    NewVolunteer {
                        display_name: format!("Lotsin {i}"),
                        languages: vec!["de".into(), "ar".into()],
                        topics: vec!["behoerden".into()],
                        availability: Vec::new(),
                        active: true,
                        pledge_signed_on: None,
                        trainings: Vec::new(),
                    },
                )
                .await?
                .id;
            volunteer_ids.push(volunteer.clone());
        }
        let code = format!("code-{i}");
        store
            .create_enrollment_code(&org.id, &coordinator, &volunteer, &code, i64::MAX)
            .await?
            .context("volunteer vanished")?;
        let device = store
            .enroll_device(&code, &format!("Telefon {i}"), &format!("token-{i}"))
            .await
            .map_err(|e| anyhow::anyhow!("enrolling phone {i}: {e:?}"))?;
        let k = PushKeys::generate();
        let sub = k.subscription_keys();
        store
            .save_push_subscription(
                &org.id,
                PushOwner::Device(&device.device.id),
                &NewPushSubscription {
                    endpoint: &format!("http://{addr}/push/{i}"),
                    p256dh: &sub.p256dh,
                    auth: &sub.auth,
                },
            )
            .await?;
        keys.push(k);
    }
    let setup_secs = t.elapsed().as_secs_f64();

    let push = Arc::new(
        Push::new(
            store.clone(),
            PushConfig {
                allow_insecure_push_endpoints: true,
                vapid_subject: "mailto:bench@lotse.invalid".into(),
                push_worker: true,
            },
        )
        .await?,
    );
    let _stop_worker = AbortOnDrop(push.clone().spawn_worker());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let notice = Notice {
        kind: NoticeKind::Offer,
        request_id: "bench-request".into(),
        topic: "behoerden".into(),
        languages: vec!["ar".into(), "de".into()],
        window_start: now + 3 * 3_600_000,
        window_end: now + 5 * 3_600_000,
    };
    let all_in = inbox.all_in.notified();
    let t = Instant::now();
    let mut tx = store.pool().begin().await?;
    let queued = enqueue(&mut tx, &volunteer_ids, &notice).await?;
    tx.commit().await?;
    let enqueue_ms = t.elapsed().as_secs_f64() * 1e3;
    if queued != count as u64 {
        bail!("queued {queued} pushes for {count} subscriptions");
    }
    push.wake();
    tokio::time::timeout(deadline, all_in)
        .await
        .with_context(|| {
            let got = inbox
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .distinct;
            format!("only {got} of {count} subscriptions received their push within {deadline:?}")
        })?;
    let deliver_secs = t.elapsed().as_secs_f64();
    let expected = notice.payload();
    let (posts, bodies) = {
        let mut seen = inbox.seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.posts, std::mem::take(&mut seen.bodies))
    };
    for (i, (body, k)) in bodies.iter().zip(&keys).enumerate() {
        let body = body.as_ref().context("a body went missing")?;
        let plain = k
            .decrypt(body)
            .map_err(|e| anyhow::anyhow!("push {i} does not decrypt: {e}"))?;
        let got: Payload = serde_json::from_slice(&plain).context("push payload")?;
        if got != expected {
            bail!("push {i} carries {got:?}, expected {expected:?}");
        }
    }
    store.close().await;
    Ok(FanOut {
        setup_secs,
        enqueue_ms,
        deliver_secs,
        posts,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

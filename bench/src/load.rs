//! Scenario 8: propagation under load. D devices are connected to one server at once and W
//! of them each write one change a second, for S seconds after a warm-up; we time every
//! change from the writer sending it until (1) the other device that shares the case
//! holds it, and (2) the coordinator's dashboard stream (`GET /dashboard/events`) says
//! `change`. Also: how long until the server confirmed the change to its writer (it
//! commits before it says so), the server's CPU over the measured seconds, its RSS.
//!
//! The layout: W organisations of D / W volunteers with one phone each. In every
//! organisation one phone writes, into a case it shares with a second volunteer's phone;
//! every other phone holds a case of its own and only listens. Each organisation's
//! coordinator has the dashboard's live stream open. One writer per organisation because
//! the stream's `change` event names no document: with one change a second per
//! organisation, the event that follows a change within a second is that change's, so
//! every change is attributed exactly. A writer writes at a fixed phase of its own
//! (pseudo-random, the same in every run) within each second, as independent phones would,
//! not all at once.
//!
//! The data set (organisations, coordinators with a session, volunteers, enrolled phones)
//! is written through the server's store before the server starts, as enrollment writes
//! it; the cases are created through `POST /api/v1/cases`. The phones are
//! `lotse_protocol::ClientPeer`s configured as lotse-core configures them (catch-up,
//! persisted sync states), over documents in memory, all in this process.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use lotse_protocol::automerge::ChangeHash;
use lotse_protocol::peer::memory::{MemoryDocs, Outcome, settle};
use lotse_protocol::peer::{ClientConfig, ClientEvent};
use lotse_protocol::{CaseDoc, ClientPeer, DocumentId, NewNote};
use lotse_server::auth::{DEVICE_PREFIX, SESSION_PREFIX, token_hash};
use lotse_server::store::{NewCoordinator, NewVolunteer, Store};
use lotse_testkit::TestDb;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::api::Api;
use crate::client::open_socket;
use crate::procs::{self, Proc, ProcStatus};

/// Writes before the measured seconds: documents loaded, caches warm, the first
/// `record_sync` of every writer done.
const WARMUP: Duration = Duration::from_secs(3);
/// How long after the last measured change we wait for it to arrive.
const GRACE: Duration = Duration::from_secs(5);
/// Each writer writes once per period. A dashboard event is attributed to a change of
/// its organisation sent less than a period before it.
const PERIOD: Duration = Duration::from_secs(1);
/// How long the server keeps a dashboard stream open before the browser must renew it.
const RENEWAL: Duration = Duration::from_secs(30);
/// How often a dashboard stream polls the database (the session, the fingerprint).
const POLL: Duration = Duration::from_secs(2);
/// Phones connecting (and catching up) at the same time.
const CONNECTING: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub devices: usize,
    pub writers: usize,
    pub secs: u64,
    /// Notes each writer puts into its case (one change each) before the clock starts:
    /// the work per change grows with the document.
    pub notes: usize,
    /// Open every dashboard stream at the same moment (as after a restart) instead of
    /// spread over the streams' poll interval and lifetime.
    pub aligned_dashboards: bool,
}

/// One measured change: when it was sent (seconds into the measured window), and after
/// how long the other phone held it, the dashboard said so, the writer heard it was stored.
pub struct Sample {
    pub sent_s: f64,
    pub org: usize,
    pub device_ms: Option<f64>,
    pub dashboard_ms: Option<f64>,
    pub confirmed_ms: Option<f64>,
}

pub struct Measured {
    pub setup_secs: f64,
    pub connect_secs: f64,
    /// Changes sent in the measured seconds.
    pub changes: usize,
    pub device_ms: Vec<f64>,
    pub dashboard_ms: Vec<f64>,
    pub confirmed_ms: Vec<f64>,
    pub device_missed: usize,
    pub dashboard_missed: usize,
    /// Dashboard `change` events with no change of their organisation to go with them.
    pub dashboard_unmatched: usize,
    /// `change` events that said the stream had lagged behind the hub.
    pub dashboard_lagged: usize,
    /// `change` events of the stream's two-second poll (`data`: something else changed,
    /// such as a phone's last sync).
    pub dashboard_polled: usize,
    /// Writer ticks dropped because the writer was still busy with the previous one.
    pub ticks_dropped: usize,
    /// Percent of one core over the measured seconds (200 = both cores).
    pub server_cpu_percent: f64,
    pub bench_cpu_percent: f64,
    pub server_rss_mib: f64,
    pub samples: Vec<Sample>,
    /// The server's CPU in each measured second, percent of one core.
    pub cpu_per_second: Vec<f64>,
}

impl Measured {
    /// The samples as CSV, and the server's CPU per second after them.
    pub fn csv(&self) -> String {
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        let mut out = String::from("sent_s,org,device_ms,dashboard_ms,confirmed_ms\n");
        for s in &self.samples {
            out.push_str(&format!(
                "{:.4},{},{},{},{}\n",
                s.sent_s,
                s.org,
                cell(s.device_ms),
                cell(s.dashboard_ms),
                cell(s.confirmed_ms)
            ));
        }
        out
    }
}

/// One phone of the data set.
struct PhoneSeed {
    org: usize,
    volunteer: String,
    token: String,
}

/// One organisation: its coordinator's session and which phones write and read.
struct OrgSeed {
    session: String,
    /// Indexes into the phones.
    writer: usize,
    partner: usize,
    listeners: std::ops::Range<usize>,
}

struct Seed {
    orgs: Vec<OrgSeed>,
    phones: Vec<PhoneSeed>,
}

/// Deterministic pseudo-random numbers (splitmix64) for the writers' phases.
fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Organisations, coordinators with a session, volunteers and their enrolled phones,
/// written through the store as enrollment writes them.
async fn seed(db: &TestDb, size: Size) -> Result<Seed> {
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    let mut firsts = Vec::with_capacity(size.writers);
    let mut next = 0;
    for o in 0..size.writers {
        let n = size.devices / size.writers + usize::from(o < size.devices % size.writers);
        firsts.push((next, n));
        next += n;
    }
    let per_org: Vec<Result<(OrgSeed, Vec<PhoneSeed>)>> = stream::iter(firsts)
        .enumerate()
        .map(|(o, (first, n))| {
            let store = store.clone();
            async move {
                let org = store
                    .ensure_organisation(&format!("Lotsen unter Last {o:03}"))
                    .await?;
                let coordinator = store
                    .create_coordinator(NewCoordinator {
                        organisation_id: &org.id,
                        email: &format!("koordination-{o}@last.invalid"),
                        display_name: "Koordination",
                        // Nobody logs in: the session below is written directly.
                        password_hash: "unused",
                        role: lotse_server::store::Role::Leitung,
                    })
                    .await?;
                let run = uuid::Uuid::new_v4().simple().to_string();
                let session = format!("{SESSION_PREFIX}bench-load-{o}-{run}");
                store
                    .create_session(&coordinator, &token_hash(&session), now_ms() + 86_400_000)
                    .await?;
                let mut phones = Vec::with_capacity(n);
                for d in 0..n {
                    let volunteer = store
                        .create_volunteer(
                            &org.id,
                            &coordinator.id,
                            NewVolunteer {
                                display_name: format!("Lotsin {o}-{d}"),
                                languages: vec!["de".into(), "fa".into()],
                                topics: vec!["behoerden".into()],
                                availability: Vec::new(),
                                active: true,
                                pledge_signed_on: None,
                                trainings: Vec::new(),
                            },
                        )
                        .await?
                        .id;
                    let code = token_hash(&format!("load-code-{o}-{d}-{run}"));
                    store
                        .create_enrollment_code(
                            &org.id,
                            &coordinator.id,
                            &volunteer,
                            &code,
                            i64::MAX,
                        )
                        .await?
                        .context("the volunteer vanished")?;
                    let token = format!("{DEVICE_PREFIX}bench-load-{o}-{d}-{run}");
                    store
                        .enroll_device(&code, &format!("Telefon {o}-{d}"), &token_hash(&token))
                        .await
                        .map_err(|e| anyhow!("enrolling phone {o}-{d}: {e:?}"))?;
                    phones.push(PhoneSeed {
                        org: o,
                        volunteer,
                        token,
                    });
                }
                Ok((
                    OrgSeed {
                        session,
                        writer: first,
                        partner: first + 1,
                        listeners: first + 2..first + n,
                    },
                    phones,
                ))
            }
        })
        .buffered(4)
        .collect()
        .await;
    store.close().await;
    let mut seed = Seed {
        orgs: Vec::new(),
        phones: Vec::new(),
    };
    for r in per_org {
        let (org, phones) = r?;
        seed.orgs.push(org);
        seed.phones.extend(phones);
    }
    Ok(seed)
}

/// Creates the cases through the API: per organisation the writer's case shared with the
/// partner, and one case of their own for every listener. Returns the writers' cases.
async fn cases(base: &str, seed: &Seed) -> Result<Vec<DocumentId>> {
    let http = reqwest::Client::new();
    // (organisation, label, volunteers, the writer's case)
    let mut wanted = Vec::new();
    for (o, org) in seed.orgs.iter().enumerate() {
        let v = |i: usize| seed.phones[i].volunteer.clone();
        wanted.push((
            o,
            format!("L-{o:03}"),
            vec![v(org.writer), v(org.partner)],
            true,
        ));
        for i in org.listeners.clone() {
            wanted.push((o, format!("L-{o:03}-{i:05}"), vec![v(i)], false));
        }
    }
    let created: Vec<Result<(usize, bool, DocumentId)>> = stream::iter(wanted)
        .map(|(o, label, volunteers, hot)| {
            let api = Api {
                base: base.to_owned(),
                http: http.clone(),
                token: seed.orgs[o].session.clone(),
            };
            async move {
                let v = api
                    .post(
                        "/api/v1/cases",
                        json!({"label": label, "topic": "behoerden", "languages": ["fa"],
                               "volunteer_ids": volunteers}),
                    )
                    .await?;
                let id: DocumentId = v["id"]
                    .as_str()
                    .context("case id")?
                    .parse()
                    .map_err(|e| anyhow!("case id: {e:?}"))?;
                Ok((o, hot, id))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut hot = vec![None; seed.orgs.len()];
    for r in created {
        let (o, is_hot, id) = r?;
        if is_hot {
            hot[o] = Some(id);
        }
    }
    hot.into_iter()
        .map(|id| id.context("a writer's case is missing"))
        .collect()
}

/// One change in flight or done.
struct Change {
    t0: Instant,
    org: usize,
    measured: bool,
    /// Per other phone that holds it by now, after how long.
    device_ms: Vec<f64>,
    dashboard_ms: Option<f64>,
    confirmed_ms: Option<f64>,
}

/// What the phones and the dashboard streams report.
struct Collect {
    /// Changes sent in [from, until) are measured.
    window: (Instant, Instant),
    changes: HashMap<ChangeHash, Change>,
    /// Per organisation, its changes not yet announced on its dashboard, oldest first.
    pending: Vec<VecDeque<ChangeHash>>,
    /// Per organisation, whether its writer has sent a change yet.
    wrote: Vec<bool>,
    dashboard_unmatched: usize,
    dashboard_lagged: usize,
    dashboard_polled: usize,
    ticks_dropped: usize,
}

impl Collect {
    fn new(orgs: usize) -> Self {
        let now = Instant::now();
        Self {
            window: (now + Duration::from_secs(86_400), now),
            changes: HashMap::new(),
            pending: vec![VecDeque::new(); orgs],
            wrote: vec![false; orgs],
            dashboard_unmatched: 0,
            dashboard_lagged: 0,
            dashboard_polled: 0,
            ticks_dropped: 0,
        }
    }

    fn sent(&mut self, hash: ChangeHash, org: usize, t0: Instant) {
        let measured = t0 >= self.window.0 && t0 < self.window.1;
        self.changes.insert(
            hash,
            Change {
                t0,
                org,
                measured,
                device_ms: Vec::new(),
                dashboard_ms: None,
                confirmed_ms: None,
            },
        );
        self.pending[org].push_back(hash);
        self.wrote[org] = true;
    }

    /// Another phone holds `hash` since `at`.
    fn arrived(&mut self, hash: &ChangeHash, at: Instant) {
        if let Some(c) = self.changes.get_mut(hash) {
            c.device_ms.push(ms(at.saturating_duration_since(c.t0)));
        }
    }

    /// The server's heads, as its writer heard them, include `hash` since `at`.
    fn confirmed(&mut self, hash: &ChangeHash, at: Instant) {
        if let Some(c) = self.changes.get_mut(hash) {
            c.confirmed_ms = Some(ms(at.saturating_duration_since(c.t0)));
        }
    }

    /// The dashboard of `org` said `change` (a case) at `at`: the oldest change of the
    /// organisation sent less than a period before is the one announced. Older ones were
    /// not announced (the stream was being renewed) and count as missed.
    fn dashboard(&mut self, org: usize, at: Instant) {
        let queue = &mut self.pending[org];
        while let Some(h) = queue.front() {
            if at.saturating_duration_since(self.changes[h].t0) < PERIOD {
                break;
            }
            queue.pop_front();
        }
        match queue.front().copied() {
            Some(h) if self.changes[&h].t0 <= at => {
                queue.pop_front();
                if let Some(c) = self.changes.get_mut(&h) {
                    c.dashboard_ms = Some(ms(at.saturating_duration_since(c.t0)));
                }
            }
            // Before the first write: a writer's notes written before the clock started.
            None if !self.wrote[org] => {}
            _ => self.dashboard_unmatched += 1,
        }
    }

    /// Every measured change has reached its partner and its dashboard.
    fn all_in(&self) -> bool {
        self.changes
            .values()
            .filter(|c| c.measured)
            .all(|c| !c.device_ms.is_empty() && c.dashboard_ms.is_some())
    }
}

type Shared = Arc<Mutex<Collect>>;

fn lock(c: &Shared) -> MutexGuard<'_, Collect> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a writer needs besides its socket.
struct Writer {
    org: usize,
    case: DocumentId,
    author: String,
    ticks: mpsc::Receiver<()>,
    /// Notes still to write before the phone is ready.
    prefill: usize,
}

fn add_note(doc: &mut lotse_protocol::automerge::Automerge, author: &str) -> Result<ChangeHash> {
    let before = doc.get_heads();
    CaseDoc::add_note(
        doc,
        &NewNote {
            author: author.to_owned(),
            text: "Termin beim Jobcenter bestätigt".into(),
        },
        now_ms(),
    )
    .map_err(|e| anyhow!("add_note: {e:?}"))?;
    Ok(doc
        .get_changes_meta(&before)
        .last()
        .context("the note made a change")?
        .hash)
}

/// One phone: connects, catches up (says `ready` then), follows every change of the
/// documents it holds and reports each new change's arrival; a writer also adds a note
/// to its case at every tick.
async fn phone(
    i: usize,
    addr: SocketAddr,
    token: String,
    mut writer: Option<Writer>,
    collect: Shared,
    connecting: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<usize>,
) -> Result<()> {
    let mut permit = Some(connecting.acquire_owned().await?);
    let (mut sink, mut stream) = open_socket(addr, &token)
        .await
        .with_context(|| format!("phone {i} connecting"))?
        .split();
    let mut cfg = ClientConfig::new(format!("bench-load-{i}"));
    cfg.storage_id = Some(format!("bench-load-{i}-storage"));
    let mut peer = ClientPeer::new(cfg, Instant::now());
    let mut store = MemoryDocs::new();
    // The heads up to which this phone has reported changes, per document.
    let mut known: HashMap<DocumentId, Vec<ChangeHash>> = HashMap::new();
    // The writer's last change, until the server's heads include it.
    let mut unconfirmed: Option<(DocumentId, ChangeHash)> = None;
    // The heads after the notes written before the clock starts.
    let mut prefilled: Option<Vec<ChangeHash>> = None;
    loop {
        if settle(&mut peer, &mut store) != Outcome::Done {
            bail!("phone {i}: the server ended the session");
        }
        let mut sent = false;
        while let Some(m) = peer.poll_transmit() {
            sink.feed(Frame::Binary(m.encode().into())).await?;
            sent = true;
        }
        if sent {
            sink.flush().await?;
        }
        while let Some(event) = peer.poll_event() {
            if let ClientEvent::Failed(e) = event {
                bail!("phone {i}: {e}");
            }
        }
        if let Some(w) = writer.as_mut()
            && w.prefill > 0
            && peer.is_caught_up()
            && let Some(d) = store.docs.get_mut(&w.case)
        {
            for _ in 0..w.prefill {
                add_note(&mut d.doc, &w.author)?;
            }
            w.prefill = 0;
            prefilled = Some(d.doc.get_heads());
            peer.local_change(vec![w.case]);
            continue;
        }
        // A writer that wrote notes first is ready once the server holds them.
        let stored = |heads: &Vec<ChangeHash>| {
            writer.as_ref().is_none_or(|w| {
                store
                    .docs
                    .get(&w.case)
                    .and_then(|d| d.server_heads.as_ref())
                    .is_some_and(|s| heads.iter().all(|h| s.contains(h)))
            })
        };
        if permit.is_some()
            && peer.is_caught_up()
            && !store.docs.is_empty()
            && prefilled.as_ref().is_none_or(stored)
        {
            permit = None;
            for (id, d) in &store.docs {
                known.insert(*id, d.doc.get_heads());
            }
            let _ = ready.send(i);
        }
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Frame::Binary(b))) => {
                    peer.handle_binary(&b, Instant::now());
                    if settle(&mut peer, &mut store) != Outcome::Done {
                        bail!("phone {i}: the server ended the session");
                    }
                    let at = Instant::now();
                    let mut arrived = Vec::new();
                    for (id, d) in &store.docs {
                        let heads = d.doc.get_heads();
                        let before = known.entry(*id).or_default();
                        if *before != heads {
                            arrived.extend(d.doc.get_changes_meta(before).into_iter().map(|c| c.hash));
                            *before = heads;
                        }
                    }
                    let confirmed = unconfirmed.filter(|(id, h)| {
                        store.docs.get(id)
                            .and_then(|d| d.server_heads.as_ref())
                            .is_some_and(|s| s.contains(h))
                    });
                    if !arrived.is_empty() || confirmed.is_some() {
                        let mut c = lock(&collect);
                        for h in &arrived {
                            c.arrived(h, at);
                        }
                        if let Some((_, h)) = confirmed {
                            c.confirmed(&h, at);
                            unconfirmed = None;
                        }
                    }
                }
                Some(Ok(Frame::Close(_))) | None => bail!("phone {i}: the server closed the socket"),
                Some(Err(e)) => return Err(anyhow!("phone {i}: {e}")),
                Some(Ok(_)) => {}
            },
            tick = async {
                match writer.as_mut() {
                    Some(w) => w.ticks.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(()) = tick else { return Ok(()) };
                let w = writer.as_ref().context("only writers tick")?;
                let doc = &mut store.docs.get_mut(&w.case).context("the writer's case arrived")?.doc;
                let hash = add_note(doc, &w.author)?;
                known.insert(w.case, doc.get_heads());
                let t0 = Instant::now();
                lock(&collect).sent(hash, w.org, t0);
                unconfirmed = Some((w.case, hash));
                peer.local_change(vec![w.case]);
            }
        }
    }
}

/// When the dashboard of an organisation opens its first stream, and when it gives that
/// stream up (`None`: when the server ends it, after 30 s).
#[derive(Debug, Clone, Copy)]
struct Opening {
    after: Duration,
    first_for: Option<Duration>,
}

/// The coordinator's live stream of one organisation, renewed whenever the server ends
/// it (every 30 s). `ready` once the first stream has started.
async fn dashboard(
    org: usize,
    api: Api,
    opening: Opening,
    collect: Shared,
    ready: mpsc::UnboundedSender<usize>,
) -> Result<()> {
    tokio::time::sleep(opening.after).await;
    let mut first = true;
    let mut give_up = opening.first_for.map(|d| tokio::time::Instant::now() + d);
    loop {
        let mut r = api
            .http
            .get(format!("{}/dashboard/events", api.base))
            .header("cookie", format!("lotse_session={}", api.token))
            .send()
            .await?
            .error_for_status()?;
        let mut buf = String::new();
        loop {
            let chunk = match give_up {
                Some(t) => match tokio::time::timeout_at(t, r.chunk()).await {
                    Ok(chunk) => chunk?,
                    Err(_) => {
                        give_up = None;
                        break;
                    }
                },
                None => r.chunk().await?,
            };
            let Some(chunk) = chunk else { break };
            let at = Instant::now();
            if first {
                // The stream's first bytes come after it subscribed to the hub.
                first = false;
                let _ = ready.send(org);
            }
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                };
                if field("event:").as_deref() != Some("change") {
                    continue;
                }
                match field("data:").as_deref() {
                    Some("case") => lock(&collect).dashboard(org, at),
                    Some("lagged") => lock(&collect).dashboard_lagged += 1,
                    Some("data") => lock(&collect).dashboard_polled += 1,
                    _ => {}
                }
            }
        }
    }
}

/// Runs the scenario on a fresh database of `db`'s kind with the server binary `bin`.
pub async fn run(bin: &std::path::Path, db: TestDb, size: Size) -> Result<Measured> {
    if size.writers == 0 || size.devices < 2 * size.writers {
        bail!("scenario 8 needs at least two phones per writer");
    }
    let began = Instant::now();
    let seed = seed(&db, size).await.context("seeding the data set")?;
    let server = procs::start_server(bin, &db, &[])?;
    let base = format!("http://{}", server.addr);
    let hot = server
        .while_alive(cases(&base, &seed))
        .await
        .context("creating the cases")?;
    let setup_secs = began.elapsed().as_secs_f64();
    eprintln!(
        "  {} organisations, {} phones and {} cases in {setup_secs:.1} s",
        seed.orgs.len(),
        seed.phones.len(),
        seed.phones.len() - seed.orgs.len()
    );
    let out = server
        .while_alive(measure(&server, &base, &seed, &hot, size))
        .await;
    let rss = server.status().rss_kib as f64 / 1024.0;
    drop(server);
    drop(db);
    let mut m = out?;
    m.setup_secs = setup_secs;
    m.server_rss_mib = rss;
    Ok(m)
}

async fn measure(
    server: &Proc,
    base: &str,
    seed: &Seed,
    hot: &[DocumentId],
    size: Size,
) -> Result<Measured> {
    let collect: Shared = Arc::new(Mutex::new(Collect::new(seed.orgs.len())));
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    // The first error of any phone or dashboard task ends the run.
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<anyhow::Error>();
    let spawn = |task: std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>| {
        let fail = fail_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = task.await {
                let _ = fail.send(e);
            }
        })
    };
    let mut tasks = Vec::new();
    let mut ticks = Vec::new();
    let t = Instant::now();
    for (i, p) in seed.phones.iter().enumerate() {
        let writer = (seed.orgs[p.org].writer == i).then(|| {
            let (tx, rx) = mpsc::channel(2);
            ticks.push(tx);
            Writer {
                org: p.org,
                case: hot[p.org],
                author: p.volunteer.clone(),
                ticks: rx,
                prefill: size.notes,
            }
        });
        tasks.push(spawn(Box::pin(phone(
            i,
            server.addr,
            p.token.clone(),
            writer,
            collect.clone(),
            connecting.clone(),
            ready_tx.clone(),
        ))));
    }
    let (dash_tx, mut dash_rx) = mpsc::unbounded_channel();
    let http = reqwest::Client::new();
    for (o, org) in seed.orgs.iter().enumerate() {
        let api = Api {
            base: base.to_owned(),
            http: http.clone(),
            token: org.session.clone(),
        };
        // Spread: coordinators who opened the dashboard at different times, so that
        // neither the streams' two-second polls nor their renewals every 30 s coincide.
        // Aligned: all at the same moment, as after a restart of the server, when every
        // open page reconnects within its two-second retry.
        let share = (o + 1) as f64 / seed.orgs.len() as f64;
        let opening = if size.aligned_dashboards {
            Opening {
                after: Duration::ZERO,
                first_for: None,
            }
        } else {
            Opening {
                after: POLL.mul_f64(share),
                first_for: Some(RENEWAL.mul_f64(share)),
            }
        };
        tasks.push(spawn(Box::pin(dashboard(
            o,
            api,
            opening,
            collect.clone(),
            dash_tx.clone(),
        ))));
    }
    let _abort = AbortAll(tasks);
    let limit = Duration::from_secs(60 + seed.phones.len() as u64 / 10);
    let mut waiting = seed.phones.len();
    while waiting > 0 {
        tokio::select! {
            r = tokio::time::timeout(limit, ready_rx.recv()) => {
                r.with_context(|| format!("{waiting} phones not caught up within {limit:?}"))?
                    .context("the phones' channel closed")?;
            }
            Some(e) = fail_rx.recv() => return Err(e.context("while connecting")),
        }
        waiting -= 1;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    for _ in &seed.orgs {
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(30), dash_rx.recv()) => {
                r.context("a dashboard stream did not start within 30 s")?
                    .context("the dashboards' channel closed")?;
            }
            Some(e) = fail_rx.recv() => return Err(e.context("while opening the dashboards")),
        }
    }
    eprintln!(
        "  {} phones connected and caught up in {connect_secs:.1} s; writing for {} s + {} s warm-up",
        seed.phones.len(),
        size.secs,
        WARMUP.as_secs()
    );

    let start = Instant::now() + Duration::from_millis(100);
    let from = start + WARMUP;
    let until = from + Duration::from_secs(size.secs);
    lock(&collect).window = (from, until);
    // (phase, writer), in the order they write within every second.
    let mut order: Vec<(Duration, usize)> = (0..ticks.len())
        .map(|w| {
            let phase = Duration::from_micros(splitmix(w as u64) % 1_000_000);
            (phase, w)
        })
        .collect();
    order.sort();
    let schedule = async {
        let mut second = start;
        while second < until {
            for &(phase, w) in &order {
                tokio::time::sleep_until((second + phase).into()).await;
                if ticks[w].try_send(()).is_err() {
                    lock(&collect).ticks_dropped += 1;
                }
            }
            second += PERIOD;
        }
    };
    // The server's and our CPU over the measured seconds, and the server's second by
    // second.
    let cpu = async {
        tokio::time::sleep_until(from.into()).await;
        let a = (server.status(), procs::self_status());
        let mut per_second = Vec::new();
        let mut last = a.0;
        let mut next = from + PERIOD;
        while next <= until {
            tokio::time::sleep_until(next.into()).await;
            let now = server.status();
            per_second.push(now.cpu_ticks.saturating_sub(last.cpu_ticks) as f64);
            last = now;
            next += PERIOD;
        }
        let b = (last, procs::self_status());
        (a, b, per_second)
    };
    let ((), (a, b, cpu_per_second)) = tokio::join!(schedule, cpu);
    let settled = Instant::now() + GRACE;
    while Instant::now() < settled && !lock(&collect).all_in() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(e) = fail_rx.try_recv() {
        return Err(e.context("while writing"));
    }
    let percent = |x: ProcStatus, y: ProcStatus| {
        // USER_HZ is 100 on Linux: ticks per second are percent of one core.
        y.cpu_ticks.saturating_sub(x.cpu_ticks) as f64 / size.secs as f64
    };
    let c = lock(&collect);
    let mut samples: Vec<Sample> = c
        .changes
        .values()
        .filter(|c| c.measured)
        .map(|ch| Sample {
            sent_s: ch.t0.saturating_duration_since(from).as_secs_f64(),
            org: ch.org,
            device_ms: ch.device_ms.first().copied(),
            dashboard_ms: ch.dashboard_ms,
            confirmed_ms: ch.confirmed_ms,
        })
        .collect();
    samples.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s));
    let sorted = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        v
    };
    let device_ms = sorted(
        c.changes
            .values()
            .filter(|c| c.measured)
            .flat_map(|c| c.device_ms.iter().copied())
            .collect(),
    );
    let dashboard_ms = sorted(samples.iter().filter_map(|s| s.dashboard_ms).collect());
    let confirmed_ms = sorted(samples.iter().filter_map(|s| s.confirmed_ms).collect());
    Ok(Measured {
        setup_secs: 0.0,
        connect_secs,
        changes: samples.len(),
        device_missed: samples.iter().filter(|s| s.device_ms.is_none()).count(),
        dashboard_missed: samples.iter().filter(|s| s.dashboard_ms.is_none()).count(),
        device_ms,
        dashboard_ms,
        confirmed_ms,
        samples,
        cpu_per_second,
        dashboard_unmatched: c.dashboard_unmatched,
        dashboard_lagged: c.dashboard_lagged,
        dashboard_polled: c.dashboard_polled,
        ticks_dropped: c.ticks_dropped,
        server_cpu_percent: percent(a.0, b.0),
        bench_cpu_percent: percent(a.1, b.1),
        server_rss_mib: 0.0,
    })
}

/// Aborts the phone and dashboard tasks when the measurement ends, also on an error.
struct AbortAll(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

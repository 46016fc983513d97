//! The pure-Rust API the apps' UIs (through [`crate::ffi`]) and Rust tests call: open a
//! store, enroll, read and edit cases, notes, appointments, hours and availability, and
//! steer the sync. Every edit is stored durably before the call returns; the sync task
//! hears about it at once. Only the facade lives here: the state it shares with the sync
//! and offers tasks, and the REST plumbing, are [`crate::shared`]'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lotse_protocol::schema::generation;
use lotse_protocol::{
    AppointmentId, AppointmentUpdate, AppointmentView, AvailabilitySlot, CaseDoc, CaseView,
    DocKind, DocumentId, HoursId, HoursView, Millis, NewAppointment, NewCase, NewHours, NewNote,
    NoteId, NoteView, ScheduleDoc, Status, Topic,
};
use serde::Deserialize;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::crypto::{SecretKey, aad};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::events::{Events, Listener, Subscription, SyncState};
use crate::generations;
use crate::offer_types::{OfferAction, OfferAnswer, OfferList};
use crate::offers;
use crate::push::{self, PushEvent, PushKeys, PushSubscriptionKeys};
use crate::repo::{Identity, Repo, SyncStatus};
use crate::shared::{
    Command, Misconfigured, Shared, Transport, json_answer, network, now, schedule_id,
};
use crate::sync;

/// The earliest and latest instants the API accepts (1970-01-01 to 9999-12-31, in ms).
pub const MIN_TIME: Millis = 0;
pub const MAX_TIME: Millis = 253_402_300_799_999;
const MAX_CODE: usize = 64;
const MAX_DEVICE_NAME: usize = 100;
const MAX_URL: usize = 2048;
const DB_FILE: &str = "lotse.db";
const META_PUSH_KEYS: &str = "push_keys";

/// What `open` needs. `key` comes from the Android Keystore / iOS Keychain.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// e.g. `https://lotse.example.org` (the `/sync` WebSocket and `/api/v1` live under it).
    pub server_url: String,
    pub key: [u8; 32],
    /// PEM CA certificates to trust besides the built-in roots, for a server whose
    /// certificate comes from the network's own CA. `None` for a publicly trusted server.
    pub trusted_certificates_pem: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("server_url", &self.server_url)
            .field(
                "trusted_certificates_pem",
                &self.trusted_certificates_pem.is_some(),
            )
            .finish_non_exhaustive()
    }
}

/// The device after enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub device_id: String,
    pub volunteer_id: String,
}

/// A row of the case list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseItem {
    pub id: DocumentId,
    pub label: String,
    pub topic: Topic,
    pub status: Status,
    pub languages: Vec<String>,
    pub note_count: u32,
    pub next_appointment: Option<AppointmentView>,
    pub sync: SyncStatus,
}

/// One case with everything in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseDetail {
    pub id: DocumentId,
    pub case: CaseView,
    pub sync: SyncStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCaseInput {
    /// Pseudonymous: initials or a code.
    pub label: String,
    pub topic: Topic,
    pub languages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentInput {
    pub start: Millis,
    pub end: Millis,
    pub place: String,
    pub purpose: String,
}

/// An appointment in the volunteer's schedule, with the case it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledAppointment {
    pub case_id: Option<DocumentId>,
    pub appointment: AppointmentView,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursInput {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub minutes: u32,
    pub travel_minutes: u32,
    pub kind: String,
}

/// The volunteer's hours in one month, over all cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthTotal {
    pub year: u16,
    pub month: u8,
    pub minutes: u64,
    pub travel_minutes: u64,
    pub entries: u32,
}

#[derive(Deserialize)]
struct Enrolled {
    device_id: String,
    token: String,
    volunteer_id: String,
}

fn check_time(field: &str, t: Millis) -> Result<()> {
    if (MIN_TIME..=MAX_TIME).contains(&t) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be between 1970-01-01 and 9999-12-31 (milliseconds since 1970)",
        ))
    }
}

fn check_note_text(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid("text", "a note must not be empty"));
    }
    Ok(())
}

/// The phone's core. Cheap to clone; the last clone dropped stops the sync task.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.command(Command::Shutdown);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = runtime {
            // Never blocks, so dropping the client inside async code is fine.
            rt.shutdown_background();
        }
    }
}

/// How long the case data on this phone stays readable without contact with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// No lease yet (the server has not answered a sync since enrollment), or the store
    /// holds nothing to protect (wiped).
    None,
    /// Readable until then (ms since the epoch, this phone's clock); every sync renews it.
    Until(Millis),
    /// The lease ran out: keys and data were destroyed just now. Enroll again.
    Lapsed,
}

impl Client {
    /// Opens (or creates) the store in `data_dir` with the app's key and starts the sync
    /// task. A key that does not match the store's is [`Error::WrongKey`].
    ///
    /// A server address that must not be used (plain `http://` to a host that is not on
    /// this device or the local network) or an unreadable `trusted_certificates_pem` does
    /// not stop the store from opening: every call that needs the server then fails with
    /// [`Error::InvalidInput`] naming that setting, the sync state says the same, and the
    /// data on the phone stays readable and editable.
    pub async fn open(config: Config) -> Result<Self> {
        if config.server_url.len() > MAX_URL {
            return Err(Error::invalid("server_url", "too long"));
        }
        let base_url = reqwest::Url::parse(config.server_url.trim())
            .map_err(|e| Error::invalid("server_url", e.to_string()))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(Error::invalid(
                "server_url",
                "must be an http:// or https:// address",
            ));
        }
        if config.data_dir.as_os_str().is_empty() {
            return Err(Error::invalid("data_dir", "must not be empty"));
        }
        let transport = Transport::new(&base_url, config.trusted_certificates_pem.as_deref())?;
        if let Err(m) = &transport {
            tracing::warn!(field = m.field, reason = %m.reason, "the server settings are unusable; the store opens without network");
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Storage(format!("creating the data folder: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lotse-core")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the runtime: {e}")))?;
        // The database's background tasks belong on our runtime, not the caller's.
        let path = config.data_dir.join(DB_FILE);
        let key = SecretKey::from_bytes(config.key);
        let server = base_url.to_string();
        let repo = runtime
            .spawn(async move {
                let db = Db::open(&path).await?;
                let opened = match Repo::open(db.clone(), key, crate::shared::now()).await {
                    Ok(repo) => repo.pinned_server(&server).await.map(|same| (repo, same)),
                    Err(e) => Err(e),
                };
                if opened.is_err() {
                    db.close().await;
                }
                opened
            })
            .await
            .map_err(|e| Error::Internal(format!("opening the store: {e}")));
        let (repo, same_server) = match repo {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) | Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let lapsed_at_open = repo.lapsed_at_open;
        // An enrolled phone talks to the server it enrolled with and no other: a changed
        // address (a typo, or a setting someone slipped in) must not receive its token and
        // notes. The notes stay readable.
        let transport = match transport {
            Ok(_) if !same_server => {
                tracing::warn!(
                    "server_url is not the server this phone enrolled with; the store opens without network"
                );
                Err(Misconfigured {
                    field: "server_url",
                    reason: "not the server this phone enrolled with (a phone moves to \
                             another server only by being revoked and enrolled again)"
                        .into(),
                })
            }
            t => t,
        };
        let (commands, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            repo: Mutex::new(Some(repo)),
            events: Arc::new(Events::default()),
            commands,
            base_url,
            transport,
            network: AtomicBool::new(true),
            offers_wake: Notify::new(),
        });
        if lapsed_at_open {
            tracing::warn!(
                "no contact with the server for longer than the lease; local data destroyed"
            );
            shared.events.set_state(SyncState::LeaseLapsed);
        }
        runtime.spawn(sync::run(shared.clone(), rx));
        runtime.spawn(offers::run(shared.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                runtime: std::sync::Mutex::new(Some(runtime)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The crate's runtime, for the FFI layer to run calls on.
    pub(crate) fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        self.inner
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|rt| rt.handle().clone())
    }

    /// Stops syncing, stores the sync bookkeeping and closes the database. Every call
    /// afterwards fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.shared().command(Command::Shutdown);
        let repo = self.shared().repo.lock().await.take();
        if let Some(mut repo) = repo {
            let flushed = repo.flush_sync().await;
            repo.close().await;
            flushed?;
        }
        self.shared().events.set_state(SyncState::Offline);
        Ok(())
    }

    async fn with_repo<T>(&self, f: impl AsyncFnOnce(&mut Repo) -> Result<T>) -> Result<T> {
        let mut guard = self.shared().repo.lock().await;
        let repo = guard.as_mut().ok_or(Error::Closed)?;
        self.shared().enforce_lease(repo, now()).await?;
        f(repo).await
    }

    /// Checks the lease now; see [`Client::check_lease_at`]. Cheap: apps call it from a
    /// background job, so a phone that stays offline destroys its data on time even if
    /// nobody opens the app.
    pub async fn check_lease(&self) -> Result<LeaseStatus> {
        self.check_lease_at(now()).await
    }

    /// The lease as of `now` (ms; tests pass a clock of their own). Once it has lapsed,
    /// the store is wiped before this returns [`LeaseStatus::Lapsed`]; a store wiped
    /// earlier (by a lapse or a revocation) answers [`LeaseStatus::None`].
    pub async fn check_lease_at(&self, now: Millis) -> Result<LeaseStatus> {
        let mut guard = self.shared().repo.lock().await;
        let repo = guard.as_mut().ok_or(Error::Closed)?;
        match self.shared().enforce_lease(repo, now).await {
            Ok(()) => Ok(match repo.lease_until() {
                Some(until) => LeaseStatus::Until(until),
                None => LeaseStatus::None,
            }),
            Err(Error::LeaseLapsed) => Ok(LeaseStatus::Lapsed),
            Err(e) => Err(e),
        }
    }

    /// After an edit: tell the listeners and the sync task.
    fn edited(&self, id: DocumentId) {
        self.shared().events.changed(vec![id]);
        self.shared().command(Command::LocalChange(vec![id]));
    }

    // Enrollment.

    /// Exchanges a one-time code for a device token, stored encrypted. Needs the network.
    pub async fn enroll(&self, code: &str, device_name: &str) -> Result<Enrollment> {
        let code = code.trim();
        let device_name = device_name.trim();
        if code.is_empty() || code.chars().count() > MAX_CODE {
            return Err(Error::invalid(
                "code",
                "an enrollment code like 7KQ2M-X9D4T",
            ));
        }
        if device_name.is_empty() || device_name.chars().count() > MAX_DEVICE_NAME {
            return Err(Error::invalid(
                "device_name",
                format!("1 to {MAX_DEVICE_NAME} characters"),
            ));
        }
        self.with_repo(async |repo| match &repo.identity {
            Some(_) => Err(Error::InvalidState("this store is enrolled already".into())),
            None => Ok(()),
        })
        .await?;
        let shared = self.shared();
        let response = shared
            .transport()?
            .http
            .post(shared.api("/api/v1/devices/enroll"))
            .json(&serde_json::json!({"code": code, "device_name": device_name}))
            .send()
            .await
            .map_err(network)?;
        let enrolled: Enrolled = json_answer(response).await?;
        // The code is used up now: keep the token whatever happens next. The organisation
        // is fetched later if this lookup fails.
        let organisation_id = shared
            .me(&enrolled.token)
            .await
            .ok()
            .map(|m| m.organisation_id);
        let identity = Identity {
            device_id: enrolled.device_id.clone(),
            volunteer_id: enrolled.volunteer_id.clone(),
            organisation_id,
            token: enrolled.token,
        };
        let server = shared.base_url.to_string();
        self.with_repo(async |repo| {
            repo.set_identity(identity).await?;
            repo.pin_server(&server).await
        })
        .await?;
        shared.command(Command::Enrolled);
        Ok(Enrollment {
            device_id: enrolled.device_id,
            volunteer_id: enrolled.volunteer_id,
        })
    }

    pub async fn enrollment(&self) -> Result<Option<Enrollment>> {
        self.with_repo(async |repo| {
            Ok(repo.identity.as_ref().map(|i| Enrollment {
                device_id: i.device_id.clone(),
                volunteer_id: i.volunteer_id.clone(),
            }))
        })
        .await
    }

    // Cases.

    pub async fn list_cases(&self) -> Result<Vec<CaseItem>> {
        let now = now();
        self.with_repo(async |repo| {
            // One item a case: while an old generation waits for its successor (or the
            // other way round, for a moment) both are held; the newer one is the case.
            let mut newest: BTreeMap<DocumentId, (u64, DocumentId)> = BTreeMap::new();
            for (id, doc) in &repo.docs {
                if doc.kind() != Some(DocKind::Case) {
                    continue;
                }
                let line = generation::lineage(&doc.doc)?;
                let case_id = generations::case_id_of(repo, id);
                let slot = newest.entry(case_id).or_insert((line.generation, *id));
                if line.generation > slot.0 {
                    *slot = (line.generation, *id);
                }
            }
            let mut items = Vec::new();
            for (case_id, (_, id)) in newest {
                let doc = repo.doc(&id, "case")?;
                let view = CaseDoc::read(&doc.doc)?;
                items.push(CaseItem {
                    id: case_id,
                    next_appointment: lotse_protocol::schema::appointment::next_after(
                        &view.appointments,
                        now,
                    )
                    .cloned(),
                    note_count: view.notes.len() as u32,
                    label: view.label,
                    topic: view.topic,
                    status: view.status,
                    languages: view.languages,
                    sync: doc.status(),
                });
            }
            items.sort_by(|a, b| (&a.label, a.id).cmp(&(&b.label, b.id)));
            Ok(items)
        })
        .await
    }

    pub async fn get_case(&self, id: &DocumentId) -> Result<CaseDetail> {
        self.with_repo(async |repo| {
            let held = generations::resolve(repo, id);
            let doc = repo.doc(&held, "case")?;
            Ok(CaseDetail {
                id: generations::case_id_of(repo, &held),
                case: read_case(doc, &held)?,
                sync: doc.status(),
            })
        })
        .await
    }

    /// Every held document with its whole history, uncompressed (automerge's saved form):
    /// what a check that erased content is gone from the phone searches, history
    /// included. Decrypted, so for tests and diagnostics on the device only.
    #[doc(hidden)]
    pub async fn saved_documents(&self) -> Result<Vec<(DocumentId, Vec<u8>)>> {
        self.with_repo(async |repo| {
            Ok(repo
                .docs
                .iter()
                .map(|(id, d)| (*id, d.doc.save_nocompress()))
                .collect())
        })
        .await
    }

    pub async fn case_sync_status(&self, id: &DocumentId) -> Result<SyncStatus> {
        self.with_repo(async |repo| {
            let held = generations::resolve(repo, id);
            Ok(repo.doc(&held, "case")?.status())
        })
        .await
    }

    /// A new case, made offline on this phone (e.g. a long-term mentoring pair); it
    /// becomes this volunteer's on the server when it first syncs.
    pub async fn create_case(&self, input: &NewCaseInput) -> Result<DocumentId> {
        let id = self
            .with_repo(async |repo| {
                let organisation_id = repo
                    .identity
                    .as_ref()
                    .ok_or_else(|| Error::InvalidState("enroll this device first".into()))?
                    .organisation_id
                    .clone()
                    .ok_or_else(|| {
                        Error::InvalidState(
                            "the organisation is not known yet; connect once after enrolling"
                                .into(),
                        )
                    })?;
                let new = NewCase {
                    organisation_id,
                    label: input.label.clone(),
                    languages: input.languages.clone(),
                    topic: input.topic,
                    status: Status::Active,
                };
                repo.create(|doc| CaseDoc::create(doc, &new, now())).await
            })
            .await?;
        self.edited(id);
        Ok(id)
    }

    async fn edit_case<T>(
        &self,
        id: &DocumentId,
        edit: impl FnOnce(
            &mut lotse_protocol::automerge::Automerge,
        ) -> Result<T, lotse_protocol::SchemaError>,
    ) -> Result<T> {
        let (held, out) = self
            .with_repo(async |repo| {
                // The app names the case; the edit goes to the document holding it now.
                let held = generations::resolve(repo, id);
                let doc = repo.doc(&held, "case")?;
                if doc.kind() != Some(DocKind::Case) {
                    return Err(Error::NotFound {
                        kind: "case",
                        id: id.to_string(),
                    });
                }
                Ok((held, repo.edit(&held, "case", edit).await?))
            })
            .await?;
        self.edited(held);
        Ok(out)
    }

    pub async fn set_case_status(&self, id: &DocumentId, status: Status) -> Result<()> {
        self.edit_case(id, |doc| CaseDoc::set_status(doc, status, now()))
            .await
    }

    // Notes.

    pub async fn add_note(&self, case_id: &DocumentId, text: &str) -> Result<NoteId> {
        check_note_text(text)?;
        let author = self.author().await?;
        let note = NewNote {
            author,
            text: text.to_owned(),
        };
        self.edit_case(case_id, |doc| CaseDoc::add_note(doc, &note, now()))
            .await
    }

    /// Replaces the note's text; only the differing characters are written, so a
    /// concurrent edit elsewhere in the same note (another device) survives the merge.
    pub async fn edit_note(
        &self,
        case_id: &DocumentId,
        note_id: &NoteId,
        text: &str,
    ) -> Result<()> {
        check_note_text(text)?;
        self.edit_case(case_id, |doc| {
            CaseDoc::set_note_text(doc, note_id, text, now())
        })
        .await
    }

    pub async fn list_notes(&self, case_id: &DocumentId) -> Result<Vec<NoteView>> {
        Ok(self.get_case(case_id).await?.case.notes)
    }

    async fn author(&self) -> Result<String> {
        self.with_repo(async |repo| {
            repo.identity
                .as_ref()
                .map(|i| i.volunteer_id.clone())
                .ok_or_else(|| Error::InvalidState("enroll this device first".into()))
        })
        .await
    }

    // Appointments.

    pub async fn add_appointment(
        &self,
        case_id: &DocumentId,
        input: &AppointmentInput,
    ) -> Result<AppointmentId> {
        check_time("start", input.start)?;
        check_time("end", input.end)?;
        let new = NewAppointment {
            start: input.start,
            end: input.end,
            place: input.place.clone(),
            purpose: input.purpose.clone(),
            case_id: None,
        };
        self.edit_case(case_id, |doc| CaseDoc::add_appointment(doc, &new, now()))
            .await
    }

    pub async fn change_appointment(
        &self,
        case_id: &DocumentId,
        appointment_id: &AppointmentId,
        update: &AppointmentUpdate,
    ) -> Result<()> {
        if let Some(start) = update.start {
            check_time("start", start)?;
        }
        if let Some(end) = update.end {
            check_time("end", end)?;
        }
        self.edit_case(case_id, |doc| {
            CaseDoc::update_appointment(doc, appointment_id, update, now())
        })
        .await
    }

    pub async fn cancel_appointment(
        &self,
        case_id: &DocumentId,
        appointment_id: &AppointmentId,
    ) -> Result<()> {
        self.edit_case(case_id, |doc| {
            CaseDoc::cancel_appointment(doc, appointment_id, now())
        })
        .await
    }

    /// The volunteer's schedule: appointments of all cases (and of the schedule document)
    /// that overlap `[from, to)`, cancelled ones included (flagged), earliest first.
    pub async fn appointments_between(
        &self,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ScheduledAppointment>> {
        check_time("from", from)?;
        check_time("to", to)?;
        if to < from {
            return Err(Error::invalid("to", "must not be before from"));
        }
        self.with_repo(async |repo| {
            let mut out = Vec::new();
            for (id, doc) in &repo.docs {
                let (case_id, appointments) = match doc.kind() {
                    Some(DocKind::Case) => (
                        Some(generations::case_id_of(repo, id)),
                        read_case(doc, id)?.appointments,
                    ),
                    Some(DocKind::Schedule) => (None, ScheduleDoc::read(&doc.doc)?.appointments),
                    None => continue,
                };
                for a in appointments {
                    if a.start < to && a.end >= from {
                        out.push(ScheduledAppointment {
                            case_id: case_id.or(a.case_id),
                            appointment: a,
                        });
                    }
                }
            }
            out.sort_by(|a, b| {
                (a.appointment.start, &a.appointment.id)
                    .cmp(&(b.appointment.start, &b.appointment.id))
            });
            Ok(out)
        })
        .await
    }

    // Hours.

    pub async fn log_hours(&self, case_id: &DocumentId, input: &HoursInput) -> Result<HoursId> {
        let author = self.author().await?;
        let new = NewHours {
            author,
            date: input.date.clone(),
            minutes: input.minutes,
            travel_minutes: input.travel_minutes,
            kind: input.kind.clone(),
        };
        self.edit_case(case_id, |doc| CaseDoc::log_hours(doc, &new, now()))
            .await
    }

    pub async fn list_hours(&self, case_id: &DocumentId) -> Result<Vec<HoursView>> {
        Ok(self.get_case(case_id).await?.case.hours)
    }

    /// This volunteer's hours per month of `year` over all cases: twelve entries.
    pub async fn monthly_hours(&self, year: u16) -> Result<Vec<MonthTotal>> {
        if !(1970..=9999).contains(&year) {
            return Err(Error::invalid("year", "must be between 1970 and 9999"));
        }
        self.with_repo(async |repo| {
            let volunteer = repo.identity.as_ref().map(|i| i.volunteer_id.clone());
            let mut months: Vec<MonthTotal> = (1..=12)
                .map(|month| MonthTotal {
                    year,
                    month,
                    minutes: 0,
                    travel_minutes: 0,
                    entries: 0,
                })
                .collect();
            let prefix = format!("{year:04}-");
            for (id, doc) in &repo.docs {
                if doc.kind() != Some(DocKind::Case) {
                    continue;
                }
                for h in read_case(doc, id)?.hours {
                    if volunteer.as_ref().is_some_and(|v| *v != h.author) {
                        continue;
                    }
                    let Some(rest) = h.date.strip_prefix(&prefix) else {
                        continue;
                    };
                    let Some(month) = rest.get(..2).and_then(|m| m.parse::<usize>().ok()) else {
                        continue;
                    };
                    if let Some(total) = months.get_mut(month.wrapping_sub(1)) {
                        total.minutes += u64::from(h.minutes);
                        total.travel_minutes += u64::from(h.travel_minutes);
                        total.entries += 1;
                    }
                }
            }
            Ok(months)
        })
        .await
    }

    // Availability (the volunteer's schedule document).

    pub async fn availability(&self) -> Result<Vec<AvailabilitySlot>> {
        self.with_repo(async |repo| match schedule_id(repo) {
            None => Ok(Vec::new()),
            Some(id) => {
                let doc = repo.doc(&id, "schedule")?;
                Ok(ScheduleDoc::read(&doc.doc)?.availability)
            }
        })
        .await
    }

    pub async fn set_availability(&self, slots: &[AvailabilitySlot]) -> Result<()> {
        for slot in slots {
            slot.validate()?;
        }
        if self.author().await.is_err() {
            return Err(Error::InvalidState("enroll this device first".into()));
        }
        let id = match self.with_repo(async |repo| Ok(schedule_id(repo))).await? {
            Some(id) => id,
            None => self
                .shared()
                .ensure_schedule()
                .await?
                .ok_or_else(|| Error::InvalidState("enroll this device first".into()))?,
        };
        self.with_repo(async |repo| {
            repo.edit(&id, "schedule", |doc| {
                ScheduleDoc::set_availability(doc, slots, now())
            })
            .await
        })
        .await?;
        self.edited(id);
        Ok(())
    }

    // Sync.

    /// The app's view of connectivity; `false` closes the connection at once, `true`
    /// connects at once (no backoff wait).
    pub fn set_network_available(&self, available: bool) {
        let was = self.shared().network.swap(available, Ordering::SeqCst);
        if was != available {
            self.shared().command(Command::Network(available));
            if available {
                self.shared().offers_wake.notify_one();
            }
        }
    }

    /// Connects if needed and returns once the server and this phone hold the same
    /// documents (the server said in sync). Fails with [`Error::Offline`], a network or
    /// server error, [`Error::Cancelled`] after [`Self::cancel_sync`], or
    /// [`Error::Revoked`].
    pub async fn sync_now(&self) -> Result<()> {
        if self.shared().repo.lock().await.is_none() {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.shared().command(Command::SyncNow(tx));
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Ends the running sync (pending `sync_now` calls fail with `Cancelled`); the
    /// background task tries again after its backoff. Swift's task cancellation does not
    /// reach Rust, so apps call this explicitly.
    pub fn cancel_sync(&self) {
        self.shared().command(Command::Cancel);
    }

    pub fn sync_state(&self) -> SyncState {
        self.shared().events.state()
    }

    /// The listener gets the current state at once, then every change, on a thread of
    /// its own, until the returned handle is dropped.
    pub fn subscribe(&self, listener: Arc<dyn Listener>) -> Subscription {
        self.shared().events.subscribe(listener)
    }

    // Push.

    /// Makes a new P-256 key pair and 16-byte auth secret for a Web Push subscription,
    /// stored sealed (replacing earlier keys: register the subscription again), and
    /// returns the public half for the push service and the server.
    pub async fn create_push_subscription_keys(&self) -> Result<PushSubscriptionKeys> {
        let keys = PushKeys::generate();
        self.with_repo(async |repo| {
            repo.set_sealed_meta(META_PUSH_KEYS, aad::PUSH_KEYS, &keys.to_bytes())
                .await
        })
        .await?;
        Ok(keys.subscription_keys())
    }

    /// The public half of the stored push keys, if any.
    pub async fn push_subscription_keys(&self) -> Result<Option<PushSubscriptionKeys>> {
        Ok(self.push_keys().await?.map(|k| k.subscription_keys()))
    }

    async fn push_keys(&self) -> Result<Option<PushKeys>> {
        let bytes = self
            .with_repo(async |repo| repo.sealed_meta(META_PUSH_KEYS, aad::PUSH_KEYS).await)
            .await?;
        bytes
            .map(|b| {
                PushKeys::from_bytes(&b)
                    .ok_or_else(|| Error::Corrupt("stored push keys are malformed".into()))
            })
            .transpose()
    }

    /// Registers the push endpoint (from the UnifiedPush distributor or FCM bridge) with
    /// the server, with the stored keys. Returns the server's subscription id. Needs the
    /// network; registering the same endpoint again refreshes its keys.
    pub async fn register_push(&self, endpoint: &str) -> Result<String> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() || endpoint.len() > MAX_URL {
            return Err(Error::invalid("endpoint", "a push endpoint URL"));
        }
        let keys = self
            .push_keys()
            .await?
            .ok_or_else(|| Error::InvalidState("create the push subscription keys first".into()))?;
        let token = self.shared().token().await?;
        let transport = self.shared().transport()?;
        if !self.shared().network_available() {
            return Err(Error::Offline);
        }
        let public = keys.subscription_keys();
        let shared = self.shared();
        let response = transport
            .http
            .post(shared.api("/api/v1/push/subscriptions"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "endpoint": endpoint,
                "keys": {"p256dh": public.p256dh, "auth": public.auth},
            }))
            .send()
            .await
            .map_err(network)?;
        let created: serde_json::Value = json_answer(response).await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Network("unexpected answer from the server: id".into()))
    }

    /// Decrypts a push message (RFC 8291 aes128gcm) with the stored keys and reads the
    /// server's notice. Unreadable input is [`Error::Push`].
    pub async fn decrypt_push(&self, body: &[u8]) -> Result<PushEvent> {
        let keys = self.push_keys().await?.ok_or(push::PushError::NoKeys)?;
        Ok(push::decrypt_event(&keys, body)?)
    }

    // Offers.

    /// This volunteer's offers: fetched from the server when it can be reached (and
    /// stored), else the stored list (`fresh == false`); each with this phone's answer.
    /// Server settings that rule the network out give `InvalidInput` (the stored list is
    /// still there through [`Self::cached_offers`]).
    pub async fn list_offers(&self) -> Result<OfferList> {
        offers::list(self.shared()).await
    }

    /// The stored offer list, without asking the server.
    pub async fn cached_offers(&self) -> Result<OfferList> {
        offers::cached(self.shared()).await
    }

    /// Accepts an offer: stored at once, sent now or when the phone is next connected.
    /// The outcome reaches listeners (`on_offer_answered`) and [`Self::offer_answers`].
    /// Answering again returns the existing answer (a settled one does not change).
    pub async fn accept_offer(&self, request_id: &str) -> Result<OfferAnswer> {
        offers::answer(self.shared(), request_id, OfferAction::Accept).await
    }

    pub async fn decline_offer(&self, request_id: &str) -> Result<OfferAnswer> {
        offers::answer(self.shared(), request_id, OfferAction::Decline).await
    }

    /// Every answer this phone gave that is queued or settled recently.
    pub async fn offer_answers(&self) -> Result<Vec<OfferAnswer>> {
        offers::answers(self.shared()).await
    }

    pub async fn offer_answer(&self, request_id: &str) -> Result<Option<OfferAnswer>> {
        let id = offers::check_request_id(request_id)?;
        Ok(self
            .offer_answers()
            .await?
            .into_iter()
            .find(|a| a.request_id == id))
    }
}

fn read_case(doc: &crate::repo::Doc, id: &DocumentId) -> Result<CaseView> {
    if doc.kind() != Some(DocKind::Case) {
        return Err(Error::NotFound {
            kind: "case",
            id: id.to_string(),
        });
    }
    Ok(CaseDoc::read(&doc.doc)?)
}

//! Requests (Einsatzanfragen) and offers. Who gets a request is decided here, in SQL:
//! the first valid accept wins, atomically on SQLite and PostgreSQL alike.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::timefmt::Timestamp;

use super::invalid::{Invalid, check_one_of, check_optional, check_text};
use super::{
    Notice, Query, Recipients, Result, Store, StoreError, Volunteer, enqueue_each, json_column,
    load_scoped, new_id, now_ms, to_json, volunteers,
};

pub const STATUSES: [&str; 6] = [
    "open",
    "offered",
    "assigned",
    "done",
    "cancelled",
    "expired",
];
pub const INSTITUTION_KINDS: [&str; 9] = [
    "behoerde",
    "jobcenter",
    "auslaenderbehoerde",
    "beratungsstelle",
    "schule",
    "kita",
    "arztpraxis",
    "migrantin",
    "sonstige",
];
pub const URGENCIES: [&str; 2] = ["normal", "dringend"];

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub source: &'static str,
    pub institution_kind: String,
    pub institution_name: String,
    pub contact: Option<String>,
    pub person_label: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub place_area: String,
    pub place_address: Option<String>,
    pub urgency: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Request {
    pub id: String,
    pub organisation_id: String,
    /// `coordinator` or `intake` (the public form).
    pub source: String,
    pub institution_kind: String,
    pub institution_name: String,
    pub contact: Option<String>,
    /// Pseudonymous label of the person (initials or a code).
    pub person_label: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub place_area: String,
    pub place_address: Option<String>,
    pub urgency: String,
    pub description: String,
    /// open, offered, assigned, done, cancelled, expired.
    pub status: String,
    pub assigned_volunteer_id: Option<String>,
    pub case_document_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the retention purge erased its contact, address, description and label; such
    /// a request is kept for the figures and can no longer be changed.
    pub erased_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestEvent {
    pub at: Timestamp,
    pub actor_kind: String,
    pub actor_id: String,
    /// created, updated, offered, accepted, declined, taken, cancelled, done, expired.
    pub action: String,
    pub volunteer_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OfferStatus {
    pub volunteer_id: String,
    /// offered, accepted, declined, taken (someone else won), withdrawn.
    pub status: String,
    pub offered_at: Timestamp,
    pub answered_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestPatch {
    pub institution_kind: Option<String>,
    pub institution_name: Option<String>,
    pub contact: Option<Option<String>>,
    pub person_label: Option<String>,
    pub topic: Option<String>,
    pub languages: Option<Vec<String>>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub place_area: Option<String>,
    pub place_address: Option<Option<String>>,
    pub urgency: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
}

/// A new request as a person typed it into a form or a program sent it, before the rules:
/// empty text is "not given", a time the caller could not read is `None` (the caller
/// words its own format; the rules only say that a time is missing).
#[derive(Debug, Clone, Default)]
pub struct RequestDraft {
    pub institution_kind: String,
    pub institution_name: String,
    pub contact: String,
    pub person_label: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub place_area: String,
    pub place_address: String,
    /// Empty: `normal`.
    pub urgency: String,
    pub description: String,
}

/// Every refusal of a draft, by the API's field name, in the order of the form; a page
/// shows each at its field, the API answers with the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals(pub Vec<(&'static str, Invalid)>);

impl Refusals {
    pub fn first(&self) -> Option<&(&'static str, Invalid)> {
        self.0.first()
    }

    /// The value, or `None` with the refusal noted against `field`.
    fn keep<T>(&mut self, field: &'static str, checked: Result<T, Invalid>) -> Option<T> {
        checked.map_err(|e| self.0.push((field, e))).ok()
    }
}

/// The rules for a request's fields, one set for the API, the intake form and the
/// dashboard (each words the refusals itself). Each returns the value as it is stored.
impl Request {
    pub const MAX_INSTITUTION_NAME_CHARS: usize = 120;
    pub const MAX_CONTACT_CHARS: usize = 200;
    /// A pseudonym (initials or a code), never a full name: kept short on purpose.
    pub const MAX_PERSON_LABEL_CHARS: usize = 40;
    pub const MAX_PLACE_AREA_CHARS: usize = 80;
    pub const MAX_PLACE_ADDRESS_CHARS: usize = 200;
    pub const MAX_DESCRIPTION_CHARS: usize = 1000;
    /// One appointment, not a standing arrangement: longer help is a case.
    pub const MAX_WINDOW_HOURS: i64 = 24;
    /// Shown where a request has no person label.
    pub const NO_PERSON_LABEL: &'static str = "—";

    pub fn check_institution_kind(kind: &str) -> Result<String, Invalid> {
        check_one_of(kind, &INSTITUTION_KINDS)
    }

    pub fn check_institution_name(name: &str) -> Result<String, Invalid> {
        check_text(name, Self::MAX_INSTITUTION_NAME_CHARS, true)
    }

    pub fn check_contact(contact: &str) -> Result<Option<String>, Invalid> {
        check_optional(contact, Self::MAX_CONTACT_CHARS)
    }

    pub fn check_person_label(label: &str) -> Result<String, Invalid> {
        check_text(label, Self::MAX_PERSON_LABEL_CHARS, true)
    }

    pub fn check_topic(topic: &str) -> Result<String, Invalid> {
        Volunteer::check_topics(&[topic.to_owned()]).map(|mut t| t.remove(0))
    }

    pub fn check_place_area(area: &str) -> Result<String, Invalid> {
        check_text(area, Self::MAX_PLACE_AREA_CHARS, true)
    }

    pub fn check_place_address(address: &str) -> Result<Option<String>, Invalid> {
        check_optional(address, Self::MAX_PLACE_ADDRESS_CHARS)
    }

    pub fn check_urgency(urgency: &str) -> Result<String, Invalid> {
        check_one_of(urgency, &URGENCIES)
    }

    pub fn check_description(description: &str) -> Result<String, Invalid> {
        check_text(description, Self::MAX_DESCRIPTION_CHARS, false)
    }

    pub fn check_status(status: &str) -> Result<String, Invalid> {
        check_one_of(status, &STATUSES)
    }

    /// Ends after it starts, at most [`Request::MAX_WINDOW_HOURS`] later.
    pub fn check_window(starts_at: Timestamp, ends_at: Timestamp) -> Result<(), Invalid> {
        if ends_at <= starts_at {
            return Err(Invalid::EndBeforeStart);
        }
        if ends_at.ms() - starts_at.ms() > Self::MAX_WINDOW_HOURS * 3_600_000 {
            return Err(Invalid::WindowTooLong {
                hours: Self::MAX_WINDOW_HOURS,
            });
        }
        Ok(())
    }
}

impl NewRequest {
    /// Checks every field of `draft`. A request created at `now` (ms) must not be over
    /// already, since nobody could serve it and it would only expire; a form that edits
    /// an existing request passes `None`, so a past request can still be corrected.
    pub fn check(
        draft: RequestDraft,
        source: &'static str,
        now: Option<i64>,
    ) -> Result<Self, Refusals> {
        let mut refused = Refusals(Vec::new());
        let institution_kind = refused.keep(
            "institution_kind",
            Request::check_institution_kind(&draft.institution_kind),
        );
        let institution_name = refused.keep(
            "institution_name",
            Request::check_institution_name(&draft.institution_name),
        );
        let contact = refused.keep("contact", Request::check_contact(&draft.contact));
        let person_label = refused.keep(
            "person_label",
            check_optional(&draft.person_label, Request::MAX_PERSON_LABEL_CHARS),
        );
        let topic = refused.keep("topic", Request::check_topic(&draft.topic));
        let languages = refused.keep("languages", Volunteer::check_languages(&draft.languages));
        let window = match (
            draft.starts_at.map(Timestamp::from),
            draft.ends_at.map(Timestamp::from),
        ) {
            (Some(start), Some(end)) => refused.keep(
                "ends_at",
                Request::check_window(start, end).and_then(|()| {
                    if now.is_some_and(|now| end.ms() <= now) {
                        Err(Invalid::InThePast)
                    } else {
                        Ok((start, end))
                    }
                }),
            ),
            (None, _) => refused.keep("starts_at", Err(Invalid::NoTime)),
            (Some(_), None) => refused.keep("ends_at", Err(Invalid::NoTime)),
        };
        let place_area = refused.keep("place_area", Request::check_place_area(&draft.place_area));
        let place_address = refused.keep(
            "place_address",
            Request::check_place_address(&draft.place_address),
        );
        let urgency = refused.keep(
            "urgency",
            if draft.urgency.trim().is_empty() {
                Ok("normal".to_owned())
            } else {
                Request::check_urgency(&draft.urgency)
            },
        );
        let description = refused.keep(
            "description",
            Request::check_description(&draft.description),
        );
        // Every field is `Some` exactly when nothing was refused.
        let all_kept = || {
            let (starts_at, ends_at) = window?;
            Some(NewRequest {
                source,
                institution_kind: institution_kind?,
                institution_name: institution_name?,
                contact: contact?,
                person_label: person_label?.unwrap_or_else(|| Request::NO_PERSON_LABEL.into()),
                topic: topic?,
                languages: languages?,
                starts_at,
                ends_at,
                place_area: place_area?,
                place_address: place_address?,
                urgency: urgency?,
                description: description?,
            })
        };
        all_kept().ok_or(refused)
    }
}

/// Who acted, for the history.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

impl<'a> Actor<'a> {
    pub fn coordinator(id: &'a str) -> Self {
        Self {
            kind: "coordinator",
            id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("a request that is {from} cannot become {to}")]
    Transition { from: String, to: String },
    #[error("the request is {0}; it can no longer be offered")]
    Closed(String),
    #[error("volunteer {0} is not an active volunteer of this organisation")]
    NotAVolunteer(String),
    #[error("{0}")]
    Window(Invalid),
    #[error(
        "the request's personal data was erased after its retention period; it can no longer be changed"
    )]
    Erased,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RequestError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What an accept came to.
#[derive(Debug, Clone)]
pub enum AcceptOutcome {
    /// This volunteer has the request (now, or already: accepts are idempotent).
    Won(Box<Request>),
    /// Another volunteer was first.
    Taken,
    /// No offer to this volunteer (or not in their organisation).
    NotOffered,
    /// Cancelled, expired or done before anyone accepted.
    Closed(String),
}

const COLUMNS: &str = "id, organisation_id, source, institution_kind, institution_name, contact, \
    person_label, topic, languages, starts_at, ends_at, place_area, place_address, urgency, \
    description, status, assigned_volunteer_id, case_document_id, created_at, updated_at";
/// What is read: the written columns and when the purge erased the request.
const READ_COLUMNS: &str = "id, organisation_id, source, institution_kind, institution_name, \
    contact, person_label, topic, languages, starts_at, ends_at, place_area, place_address, \
    urgency, description, status, assigned_volunteer_id, case_document_id, created_at, \
    updated_at, erased_at";
/// For `load_scoped`.
const TABLE: (&str, &str) = ("requests", READ_COLUMNS);

fn request(row: &AnyRow) -> Result<Request> {
    Ok(Request {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        source: row.try_get("source")?,
        institution_kind: row.try_get("institution_kind")?,
        institution_name: row.try_get("institution_name")?,
        contact: row.try_get("contact")?,
        person_label: row.try_get("person_label")?,
        topic: row.try_get("topic")?,
        languages: json_column(row.try_get("languages")?, "request languages")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        place_area: row.try_get("place_area")?,
        place_address: row.try_get("place_address")?,
        urgency: row.try_get("urgency")?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        assigned_volunteer_id: row.try_get("assigned_volunteer_id")?,
        case_document_id: row.try_get("case_document_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        erased_at: row.try_get("erased_at")?,
    })
}

/// Binds what a coordinator may edit, in the order both the insert's columns and the
/// update's `SET` list name them, so the two cannot drift apart.
fn bind_editable<'q>(query: Query<'q>, r: &'q Request) -> Query<'q> {
    query
        .bind(&r.institution_kind)
        .bind(&r.institution_name)
        .bind(&r.contact)
        .bind(&r.person_label)
        .bind(&r.topic)
        .bind(to_json(&r.languages))
        .bind(r.starts_at)
        .bind(r.ends_at)
        .bind(&r.place_area)
        .bind(&r.place_address)
        .bind(&r.urgency)
        .bind(&r.description)
        .bind(&r.status)
}

/// An offer's state, from a row that names its columns `o_volunteer`, `o_status`,
/// `o_offered` and `o_answered` (a join with `requests` has a `status` of its own).
fn offer_status(row: &AnyRow) -> Result<OfferStatus> {
    Ok(OfferStatus {
        volunteer_id: row.try_get("o_volunteer")?,
        status: row.try_get("o_status")?,
        offered_at: row.try_get("o_offered")?,
        answered_at: row.try_get("o_answered")?,
    })
}

/// The status of the offer of `request_id` to `volunteer_id`, if the request is the
/// organisation's and there is one.
async fn offer_to(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    volunteer_id: &str,
    request_id: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT o.status FROM offers o JOIN requests r ON r.id = o.request_id \
         WHERE o.request_id = $1 AND o.volunteer_id = $2 AND r.organisation_id = $3",
    )
    .bind(request_id)
    .bind(volunteer_id)
    .bind(organisation_id)
    .fetch_optional(conn)
    .await?)
}

/// Records a volunteer's answer (`accepted`, `declined`), given on their phone: the
/// offer's status, and the same word in the request's history.
async fn answer_offer(
    conn: &mut sqlx::AnyConnection,
    request_id: &str,
    volunteer_id: &str,
    device_id: &str,
    answer: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE offers SET status = $1, answered_at = $2 WHERE request_id = $3 AND volunteer_id = $4",
    )
    .bind(answer)
    .bind(now)
    .bind(request_id)
    .bind(volunteer_id)
    .execute(&mut *conn)
    .await?;
    device_event(conn, request_id, device_id, answer, volunteer_id).await
}

/// Closes the offers of `request_id` nobody answered yet, but the one to `except` (a
/// volunteer id, or "" for none): `withdrawn` when the request ends, `taken` when someone
/// else won it.
async fn close_open_offers(
    conn: &mut sqlx::AnyConnection,
    request_id: &str,
    status: &str,
    except: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE offers SET status = $1 \
         WHERE request_id = $2 AND volunteer_id <> $3 AND status = 'offered'",
    )
    .bind(status)
    .bind(request_id)
    .bind(except)
    .execute(conn)
    .await?;
    Ok(())
}

async fn event(
    conn: &mut sqlx::AnyConnection,
    request_id: &str,
    actor: Actor<'_>,
    action: &str,
    volunteer_id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO request_events \
         (id, request_id, at, actor_kind, actor_id, action, volunteer_id, seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, \
         (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_events WHERE request_id = $8))",
    )
    .bind(new_id())
    .bind(request_id)
    .bind(now_ms())
    .bind(actor.kind)
    .bind(actor.id)
    .bind(action)
    .bind(volunteer_id)
    .bind(request_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A volunteer's phone answered the offer of `request_id`.
async fn device_event(
    conn: &mut sqlx::AnyConnection,
    request_id: &str,
    device_id: &str,
    action: &str,
    volunteer_id: &str,
) -> Result<()> {
    let actor = Actor {
        kind: "device",
        id: device_id,
    };
    event(conn, request_id, actor, action, Some(volunteer_id)).await
}

/// Which status changes a coordinator may make by hand.
fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("open" | "offered" | "assigned", "cancelled")
            | ("assigned", "done")
            | ("cancelled" | "expired", "open")
    ) || from == to
}

/// Kinds of notice the requests code sends (Web Push): to volunteers' phones an offer,
/// "someone else took it" and "cancelled"; to coordinators' browsers a request that came
/// in through the intake form and a request a volunteer accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Offer,
    Taken,
    Cancelled,
    NewRequest,
    Accepted,
}

/// What a push says about a request: no names, no places (see `notice.rs`).
fn notice(kind: NoticeKind, r: &Request) -> Notice {
    Notice {
        kind,
        request_id: r.id.clone(),
        topic: r.topic.clone(),
        languages: r.languages.clone(),
        window_start: r.starts_at.ms(),
        window_end: r.ends_at.ms(),
    }
}

/// Queues pushes in the transaction and commits it, so they go out with the decision or
/// not at all; taking the transaction keeps it to one call per transaction (see
/// `enqueue_each` in `push.rs`).
async fn commit_notifying(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    r: &Request,
    notices: &[(Recipients<'_>, NoticeKind)],
) -> Result<()> {
    let built: Vec<Notice> = notices.iter().map(|(_, k)| notice(*k, r)).collect();
    let each: Vec<(Recipients<'_>, &Notice)> = notices
        .iter()
        .zip(&built)
        .map(|((to, _), n)| (*to, n))
        .collect();
    enqueue_each(&mut tx, &each).await?;
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Marks requests whose window has passed without an assignment as expired.
    pub async fn expire_requests(&self) -> Result<u64> {
        let now = now_ms();
        // Called before every read of requests: stay a plain read unless something is due,
        // so listing does not take SQLite's write lock.
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE status IN ('open', 'offered') AND ends_at < $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if due == 0 {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM requests WHERE status IN ('open', 'offered') AND ends_at < $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for id in &expired {
            sqlx::query("UPDATE requests SET status = 'expired', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            close_open_offers(&mut tx, id, "withdrawn", "").await?;
            event(
                &mut tx,
                id,
                Actor {
                    kind: "system",
                    id: "expiry",
                },
                "expired",
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(expired.len() as u64)
    }

    pub async fn create_request(
        &self,
        organisation_id: &str,
        actor: Actor<'_>,
        new: NewRequest,
    ) -> Result<Request> {
        let now = now_ms();
        let r = Request {
            id: new_id(),
            organisation_id: organisation_id.to_owned(),
            source: new.source.to_owned(),
            institution_kind: new.institution_kind,
            institution_name: new.institution_name,
            contact: new.contact,
            person_label: new.person_label,
            topic: new.topic,
            languages: new.languages,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            place_area: new.place_area,
            place_address: new.place_address,
            urgency: new.urgency,
            description: new.description,
            status: "open".into(),
            assigned_volunteer_id: None,
            case_document_id: None,
            created_at: now.into(),
            updated_at: now.into(),
            erased_at: None,
        };
        let mut tx = self.begin_write().await?;
        let insert = sqlx::query(safe_sql!(
            "INSERT INTO requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ))
        .bind(&r.id)
        .bind(&r.organisation_id)
        .bind(&r.source);
        bind_editable(insert, &r)
            .bind(&r.assigned_volunteer_id)
            .bind(&r.case_document_id)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await?;
        event(&mut tx, &r.id, actor, "created", None).await?;
        // A coordinator knows what they entered themselves; a request from outside (the
        // intake form) is news for the desk.
        let org = r.organisation_id.clone();
        let desk = if actor.kind == "coordinator" {
            Vec::new()
        } else {
            vec![(Recipients::Coordinators(&org), NoticeKind::NewRequest)]
        };
        commit_notifying(tx, &r, &desk).await?;
        Ok(r)
    }

    /// Requests of an organisation, soonest first; `status` filters.
    pub async fn requests(
        &self,
        organisation_id: &str,
        status: Option<&str>,
    ) -> Result<Vec<Request>> {
        self.expire_requests().await?;
        let rows = sqlx::query(safe_sql!(
            "SELECT {READ_COLUMNS} FROM requests WHERE organisation_id = $1 AND ($2 = '' OR status = $2) \
             ORDER BY starts_at, id"
        ))
        .bind(organisation_id)
        .bind(status.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request).collect()
    }

    pub async fn request(&self, organisation_id: &str, id: &str) -> Result<Option<Request>> {
        let mut conn = self.pool.acquire().await?;
        load_scoped(&mut conn, TABLE, organisation_id, id, request).await
    }

    pub async fn request_history(&self, request_id: &str) -> Result<Vec<RequestEvent>> {
        let rows = sqlx::query(
            "SELECT at, actor_kind, actor_id, action, volunteer_id FROM request_events \
             WHERE request_id = $1 ORDER BY seq, at, id",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RequestEvent {
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    action: r.try_get("action")?,
                    volunteer_id: r.try_get("volunteer_id")?,
                })
            })
            .collect()
    }

    pub async fn request_offers(&self, request_id: &str) -> Result<Vec<OfferStatus>> {
        let rows = sqlx::query(
            "SELECT volunteer_id AS o_volunteer, status AS o_status, offered_at AS o_offered, \
             answered_at AS o_answered FROM offers WHERE request_id = $1 \
             ORDER BY offered_at, volunteer_id",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(offer_status).collect()
    }

    pub async fn update_request(
        &self,
        organisation_id: &str,
        actor: Actor<'_>,
        id: &str,
        patch: RequestPatch,
    ) -> Result<Option<Request>, RequestError> {
        let mut tx = self.begin_write().await?;
        let Some(mut r) = load_scoped(&mut tx, TABLE, organisation_id, id, request).await? else {
            return Ok(None);
        };
        if r.erased_at.is_some() {
            return Err(RequestError::Erased);
        }
        let before = r.status.clone();
        if let Some(to) = &patch.status
            && !transition_allowed(&before, to)
        {
            return Err(RequestError::Transition {
                from: before,
                to: to.clone(),
            });
        }
        apply_patch!(patch => r:
            institution_kind,
            institution_name,
            contact,
            person_label,
            topic,
            languages,
            starts_at,
            ends_at,
            place_area,
            place_address,
            urgency,
            description,
        );
        Request::check_window(r.starts_at, r.ends_at).map_err(RequestError::Window)?;
        if let Some(to) = patch.status {
            r.status = to;
        }
        r.updated_at = now_ms().into();
        let update = sqlx::query(
            "UPDATE requests SET institution_kind = $1, institution_name = $2, contact = $3, person_label = $4, \
             topic = $5, languages = $6, starts_at = $7, ends_at = $8, place_area = $9, place_address = $10, \
             urgency = $11, description = $12, status = $13, updated_at = $14 WHERE id = $15",
        );
        bind_editable(update, &r)
            .bind(r.updated_at)
            .bind(&r.id)
            .execute(&mut *tx)
            .await?;
        let action = match (before.as_str(), r.status.as_str()) {
            (a, b) if a == b => "updated",
            (_, "cancelled") => "cancelled",
            (_, "done") => "done",
            _ => "reopened",
        };
        event(&mut tx, &r.id, actor, action, None).await?;
        // Only a request cancelled just now has volunteers to tell.
        let mut told: Vec<String> = Vec::new();
        if r.status == "cancelled" && before != "cancelled" {
            told = sqlx::query_scalar(
                "SELECT volunteer_id FROM offers WHERE request_id = $1 AND status IN ('offered', 'accepted')",
            )
            .bind(&r.id)
            .fetch_all(&mut *tx)
            .await?;
            close_open_offers(&mut tx, &r.id, "withdrawn", "").await?;
        }
        let cancelled = [(Recipients::Volunteers(&told), NoticeKind::Cancelled)];
        commit_notifying(tx, &r, &cancelled).await?;
        Ok(Some(r))
    }

    /// Offers an open request to volunteers; returns the request and who was newly
    /// offered (offering twice to the same volunteer is a no-op).
    pub async fn offer_request(
        &self,
        organisation_id: &str,
        actor: Actor<'_>,
        id: &str,
        volunteer_ids: &[String],
    ) -> Result<Option<(Request, Vec<String>)>, RequestError> {
        self.expire_requests().await?;
        let mut tx = self.begin_write().await?;
        let Some(mut r) = load_scoped(&mut tx, TABLE, organisation_id, id, request).await? else {
            return Ok(None);
        };
        if !matches!(r.status.as_str(), "open" | "offered") {
            return Err(RequestError::Closed(r.status));
        }
        let now = now_ms();
        let mut fresh = Vec::new();
        for v in volunteer_ids {
            if !volunteers::is_active(&mut tx, organisation_id, v).await? {
                return Err(RequestError::NotAVolunteer(v.clone()));
            }
            let inserted = sqlx::query(
                "INSERT INTO offers (request_id, volunteer_id, status, offered_at) VALUES ($1, $2, 'offered', $3) \
                 ON CONFLICT (request_id, volunteer_id) DO NOTHING",
            )
            .bind(&r.id)
            .bind(v)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                event(&mut tx, &r.id, actor, "offered", Some(v)).await?;
                fresh.push(v.clone());
            }
        }
        if r.status == "open" && !fresh.is_empty() {
            r.status = "offered".into();
            r.updated_at = now.into();
            sqlx::query("UPDATE requests SET status = 'offered', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&r.id)
                .execute(&mut *tx)
                .await?;
        }
        let offered = [(Recipients::Volunteers(&fresh), NoticeKind::Offer)];
        commit_notifying(tx, &r, &offered).await?;
        Ok(Some((r, fresh)))
    }

    /// Requests assigned to each volunteer and not yet done: the "load" in matching.
    pub async fn volunteer_loads(&self, organisation_id: &str) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT assigned_volunteer_id AS v, COUNT(*) AS n FROM requests WHERE organisation_id = $1 \
             AND status = 'assigned' AND assigned_volunteer_id IS NOT NULL GROUP BY assigned_volunteer_id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("v")?, r.try_get("n")?)))
            .collect()
    }

    /// A volunteer's offers: open ones and those answered in the last 14 days.
    pub async fn offers_for(&self, volunteer_id: &str) -> Result<Vec<(Request, OfferStatus)>> {
        self.expire_requests().await?;
        let since = now_ms() - 14 * 24 * 3_600_000;
        let columns: String = READ_COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(safe_sql!(
            "SELECT {columns}, o.volunteer_id AS o_volunteer, o.status AS o_status, o.offered_at AS o_offered, \
             o.answered_at AS o_answered FROM offers o JOIN requests r ON r.id = o.request_id \
             WHERE o.volunteer_id = $1 AND (o.status = 'offered' OR o.answered_at > $2 OR r.updated_at > $2) \
             ORDER BY r.starts_at, r.id"
        ))
        .bind(volunteer_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((request(row)?, offer_status(row)?)))
            .collect()
    }

    /// The first valid accept wins: the guarded UPDATE is atomic on both backends (a
    /// second writer re-checks the guard after the first commits and changes nothing).
    pub async fn accept_offer(
        &self,
        organisation_id: &str,
        volunteer_id: &str,
        device_id: &str,
        request_id: &str,
    ) -> Result<AcceptOutcome> {
        self.expire_requests().await?;
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if offer_to(&mut tx, organisation_id, volunteer_id, request_id)
            .await?
            .is_none()
        {
            return Ok(AcceptOutcome::NotOffered);
        }
        let won = sqlx::query(
            "UPDATE requests SET status = 'assigned', assigned_volunteer_id = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('open', 'offered') AND assigned_volunteer_id IS NULL",
        )
        .bind(volunteer_id)
        .bind(now)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
        let r = load_scoped(&mut tx, TABLE, organisation_id, request_id, request)
            .await?
            .ok_or_else(|| StoreError::Corrupt("request vanished".into()))?;
        if won.rows_affected() == 1 {
            answer_offer(
                &mut tx,
                request_id,
                volunteer_id,
                device_id,
                "accepted",
                now,
            )
            .await?;
            let losers: Vec<String> = sqlx::query_scalar(
                "SELECT volunteer_id FROM offers WHERE request_id = $1 AND volunteer_id <> $2 AND status = 'offered'",
            )
            .bind(request_id)
            .bind(volunteer_id)
            .fetch_all(&mut *tx)
            .await?;
            close_open_offers(&mut tx, request_id, "taken", volunteer_id).await?;
            let org = r.organisation_id.clone();
            let notices = [
                (Recipients::Volunteers(&losers), NoticeKind::Taken),
                (Recipients::Coordinators(&org), NoticeKind::Accepted),
            ];
            commit_notifying(tx, &r, &notices).await?;
            return Ok(AcceptOutcome::Won(Box::new(r)));
        }
        let outcome = if r.assigned_volunteer_id.as_deref() == Some(volunteer_id) {
            AcceptOutcome::Won(Box::new(r))
        } else if r.assigned_volunteer_id.is_some() {
            // Record the late answer once, so the history shows who also wanted it.
            let marked = sqlx::query(
                "UPDATE offers SET status = 'taken', answered_at = $1 WHERE request_id = $2 AND volunteer_id = $3 \
                 AND answered_at IS NULL",
            )
            .bind(now)
            .bind(request_id)
            .bind(volunteer_id)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 1 {
                device_event(
                    &mut tx,
                    request_id,
                    device_id,
                    "accept_too_late",
                    volunteer_id,
                )
                .await?;
            }
            AcceptOutcome::Taken
        } else {
            AcceptOutcome::Closed(r.status)
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// `None` when there is no offer to this volunteer.
    pub async fn decline_offer(
        &self,
        organisation_id: &str,
        volunteer_id: &str,
        device_id: &str,
        request_id: &str,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let Some(status) = offer_to(&mut tx, organisation_id, volunteer_id, request_id).await?
        else {
            return Ok(None);
        };
        if status == "offered" {
            answer_offer(
                &mut tx,
                request_id,
                volunteer_id,
                device_id,
                "declined",
                now_ms(),
            )
            .await?;
            tx.commit().await?;
            return Ok(Some("declined".into()));
        }
        tx.commit().await?;
        Ok(Some(status))
    }

    /// Records a finished assignment in the past in one go (demo data: the regular path
    /// would expire a request whose window has passed before it could be offered).
    pub(crate) async fn record_past_assignment(
        &self,
        actor: Actor<'_>,
        request_id: &str,
        volunteer_id: &str,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO offers (request_id, volunteer_id, status, offered_at, answered_at) \
             VALUES ($1, $2, 'accepted', $3, $3)",
        )
        .bind(request_id)
        .bind(volunteer_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE requests SET status = 'done', assigned_volunteer_id = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(volunteer_id)
        .bind(now)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
        for action in ["offered", "accepted", "done"] {
            event(&mut tx, request_id, actor, action, Some(volunteer_id)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Links the case created for the winner; only the first link counts.
    pub async fn link_case(&self, request_id: &str, document_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE requests SET case_document_id = $1 WHERE id = $2 AND case_document_id IS NULL",
        )
        .bind(document_id)
        .bind(request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Organisation by its public slug (intake form).
    pub async fn organisation_by_slug(&self, slug: &str) -> Result<Option<super::Organisation>> {
        let row = sqlx::query("SELECT id, name, slug FROM organisations WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(super::Organisation {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                slug: row.try_get("slug")?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Invalid, NewRequest, RequestDraft, transition_allowed};

    fn draft() -> RequestDraft {
        RequestDraft {
            institution_kind: " Jobcenter ".into(),
            institution_name: " Jobcenter Mitte ".into(),
            topic: "arbeit".into(),
            languages: vec!["AR".into(), "ar".into()],
            starts_at: Some(10 * 3_600_000),
            ends_at: Some(11 * 3_600_000),
            place_area: "Innenstadt".into(),
            description: "Termin\r\nzur Beratung".into(),
            ..RequestDraft::default()
        }
    }

    #[test]
    fn a_draft_becomes_a_request_as_stored() {
        let r = NewRequest::check(draft(), "coordinator", Some(0)).unwrap();
        assert_eq!(r.institution_kind, "jobcenter");
        assert_eq!(r.institution_name, "Jobcenter Mitte");
        assert_eq!(r.languages, ["ar"]);
        assert_eq!((r.contact, r.place_address), (None, None));
        assert_eq!(r.person_label, "—");
        assert_eq!(r.urgency, "normal");
        assert_eq!(r.description, "Termin\nzur Beratung");
    }

    #[test]
    fn every_refusal_is_named_in_the_order_of_the_form() {
        let d = RequestDraft {
            institution_kind: "verein".into(),
            institution_name: String::new(),
            languages: vec![],
            ends_at: Some(35 * 3_600_000),
            urgency: "sofort".into(),
            ..draft()
        };
        let refused = NewRequest::check(d, "coordinator", None).unwrap_err();
        let fields: Vec<&str> = refused.0.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "institution_kind",
                "institution_name",
                "languages",
                "ends_at",
                "urgency"
            ]
        );
        assert_eq!(refused.0[3].1, Invalid::WindowTooLong { hours: 24 });
        // Over already: refused for a new request, fine for an edit (`None`).
        let over = |now| NewRequest::check(draft(), "intake", now);
        assert_eq!(
            over(Some(12 * 3_600_000)).unwrap_err().0,
            [("ends_at", Invalid::InThePast)]
        );
        assert!(over(None).is_ok());
    }

    #[test]
    fn transitions() {
        assert!(transition_allowed("open", "cancelled"));
        assert!(transition_allowed("assigned", "done"));
        assert!(
            !transition_allowed("open", "assigned"),
            "assignment only by accepting"
        );
        assert!(!transition_allowed("done", "open"));
        assert!(transition_allowed("cancelled", "open"));
    }
}

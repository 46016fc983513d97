//! Volunteers (Lotsinnen und Lotsen): profile, languages, topics, availability, trainings.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::timefmt::Timestamp;

use super::access::AccessChange;
use super::audit::Audit;
use super::invalid::Invalid;
use super::{Query, Result, Store, json_column, load_scoped, new_id, now_ms, to_json};

/// A weekly availability window, e.g. Tuesdays 14:00-18:00.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// ISO weekday, 1 = Monday ... 7 = Sunday.
    pub weekday: u8,
    /// Start, "HH:MM".
    pub from: String,
    /// End, "HH:MM", after `from`.
    pub to: String,
}

/// A training the volunteer completed: the Basislehrgang, a Schulung, Supervision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// e.g. "Basislehrgang", "Schulung Aufenthaltsrecht".
    pub name: String,
    /// YYYY-MM-DD.
    pub completed_on: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Volunteer {
    pub id: String,
    pub organisation_id: String,
    pub display_name: String,
    /// ISO 639-1 codes, e.g. `["ar", "de"]`.
    pub languages: Vec<String>,
    pub topics: Vec<String>,
    pub availability: Vec<Slot>,
    pub active: bool,
    /// Date the confidentiality pledge (Schweigepflichterklärung) was signed, YYYY-MM-DD.
    pub pledge_signed_on: Option<String>,
    /// Completed trainings, oldest first.
    pub trainings: Vec<Training>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When their profile, contact and device data were erased (Art. 17); the row then
    /// holds nothing but its id, so that their hours keep counting without a name.
    pub erased_at: Option<Timestamp>,
}

pub struct NewVolunteer {
    pub display_name: String,
    pub languages: Vec<String>,
    pub topics: Vec<String>,
    pub availability: Vec<Slot>,
    pub active: bool,
    pub pledge_signed_on: Option<String>,
    pub trainings: Vec<Training>,
}

/// Fields left `None` stay as they are; `pledge_signed_on: Some(None)` clears the date.
#[derive(Default)]
pub struct VolunteerPatch {
    pub display_name: Option<String>,
    pub languages: Option<Vec<String>>,
    pub topics: Option<Vec<String>>,
    pub availability: Option<Vec<Slot>>,
    pub active: Option<bool>,
    pub pledge_signed_on: Option<Option<String>>,
    pub trainings: Option<Vec<Training>>,
}

/// The rules for a volunteer's fields, one set for the API and the dashboard, so both
/// accept the same data. Each returns the value as it is stored (trimmed, lower case,
/// without repeats). The API applies the name and language rules to other records too.
impl Volunteer {
    /// The topics a request or a volunteer can have (DOMAIN.md), in the order pages and
    /// reports list them.
    pub const TOPICS: [&'static str; 8] = [
        "behoerden",
        "gesundheit",
        "bildung",
        "erziehung",
        "arbeit",
        "beruf",
        "soziales",
        "wohnen",
    ];
    pub const MAX_NAME_CHARS: usize = 100;
    pub const MAX_LANGUAGES: usize = 30;
    pub const MAX_SLOTS: usize = 50;
    pub const MAX_TRAININGS: usize = 100;

    pub fn check_name(name: &str) -> Result<String, Invalid> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Invalid::Empty);
        }
        if name.chars().count() > Self::MAX_NAME_CHARS {
            return Err(Invalid::TooLong {
                max: Self::MAX_NAME_CHARS,
            });
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::ControlCharacters);
        }
        Ok(name.to_owned())
    }

    /// ISO 639-1 codes, at least one.
    pub fn check_languages(languages: &[String]) -> Result<Vec<String>, Invalid> {
        if languages.is_empty() {
            return Err(Invalid::NoLanguage);
        }
        if languages.len() > Self::MAX_LANGUAGES {
            return Err(Invalid::TooManyLanguages {
                max: Self::MAX_LANGUAGES,
            });
        }
        let mut out: Vec<String> = Vec::with_capacity(languages.len());
        for code in languages {
            let code = code.trim().to_ascii_lowercase();
            if isolang::Language::from_639_1(&code).is_none() {
                return Err(Invalid::NotALanguage(code));
            }
            if !out.contains(&code) {
                out.push(code);
            }
        }
        Ok(out)
    }

    /// From [`Volunteer::TOPICS`]; none is fine.
    pub fn check_topics(topics: &[String]) -> Result<Vec<String>, Invalid> {
        let mut out: Vec<String> = Vec::with_capacity(topics.len());
        for topic in topics {
            let topic = topic.trim().to_lowercase();
            if !Self::TOPICS.contains(&topic.as_str()) {
                return Err(Invalid::NotATopic(topic));
            }
            if !out.contains(&topic) {
                out.push(topic);
            }
        }
        Ok(out)
    }

    pub fn check_availability(slots: &[Slot]) -> Result<Vec<Slot>, Invalid> {
        if slots.len() > Self::MAX_SLOTS {
            return Err(Invalid::TooManySlots {
                max: Self::MAX_SLOTS,
            });
        }
        for slot in slots {
            slot.check()?;
        }
        Ok(slots.to_vec())
    }

    /// Each with a name (the rules of a display name) and a date; sorted oldest first.
    pub fn check_trainings(trainings: &[Training]) -> Result<Vec<Training>, Invalid> {
        if trainings.len() > Self::MAX_TRAININGS {
            return Err(Invalid::TooManyTrainings {
                max: Self::MAX_TRAININGS,
            });
        }
        let mut out = trainings
            .iter()
            .map(|t| {
                Ok(Training {
                    name: Self::check_name(&t.name)?,
                    completed_on: Self::check_date(t.completed_on.trim())?,
                })
            })
            .collect::<Result<Vec<_>, Invalid>>()?;
        out.sort_by(|a, b| a.completed_on.cmp(&b.completed_on));
        Ok(out)
    }

    /// A calendar date, YYYY-MM-DD.
    pub fn check_date(date: &str) -> Result<String, Invalid> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(date, &format)
            .map(|_| date.to_owned())
            .map_err(|_| Invalid::Date)
    }
}

impl Slot {
    /// A weekday 1 to 7 and "HH:MM" times, ending after it starts.
    pub fn check(&self) -> Result<(), Invalid> {
        if !(1..=7).contains(&self.weekday) {
            return Err(Invalid::Weekday);
        }
        let (Some(from), Some(to)) = (minutes_of(&self.from), minutes_of(&self.to)) else {
            return Err(Invalid::Time);
        };
        if from >= to {
            return Err(Invalid::SlotOrder);
        }
        Ok(())
    }
}

fn minutes_of(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

const COLUMNS: &str = "id, organisation_id, display_name, languages, topics, availability, \
                       active, pledge_signed_on, trainings, created_at, updated_at";
/// What is read: the written columns and when the volunteer was erased.
const READ_COLUMNS: &str = "id, organisation_id, display_name, languages, topics, availability, \
                            active, pledge_signed_on, trainings, created_at, updated_at, erased_at";
/// For `load_scoped`.
const TABLE: (&str, &str) = ("volunteers", READ_COLUMNS);

/// What an erased volunteer is called wherever their id still shows up (reports,
/// statements, a case's history of shares).
pub const ERASED_NAME: &str = "(gelöscht)";

fn volunteer(row: &AnyRow) -> Result<Volunteer> {
    Ok(Volunteer {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        display_name: row.try_get("display_name")?,
        languages: json_column(row.try_get("languages")?, "volunteer languages")?,
        topics: json_column(row.try_get("topics")?, "volunteer topics")?,
        availability: json_column(row.try_get("availability")?, "volunteer availability")?,
        active: row.try_get::<i64, _>("active")? != 0,
        pledge_signed_on: row.try_get("pledge_signed_on")?,
        trainings: json_column(row.try_get("trainings")?, "volunteer trainings")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        erased_at: row.try_get("erased_at")?,
    })
}

impl Store {
    pub async fn create_volunteer(
        &self,
        organisation_id: &str,
        actor_id: &str,
        new: NewVolunteer,
    ) -> Result<Volunteer> {
        let now = now_ms();
        let v = Volunteer {
            id: new_id(),
            organisation_id: organisation_id.to_owned(),
            display_name: new.display_name,
            languages: new.languages,
            topics: new.topics,
            availability: new.availability,
            active: new.active,
            pledge_signed_on: new.pledge_signed_on,
            trainings: new.trainings,
            created_at: now.into(),
            updated_at: now.into(),
            erased_at: None,
        };
        let mut tx = self.begin_write().await?;
        let insert = sqlx::query(safe_sql!(
            "INSERT INTO volunteers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&v.id)
        .bind(&v.organisation_id);
        bind_editable(insert, &v)
            .bind(v.created_at)
            .bind(v.updated_at)
            .execute(&mut *tx)
            .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "volunteer.create",
            ("volunteer", &v.id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(v)
    }

    /// Volunteers of one organisation, by name. Organisation scoping is part of the query.
    pub async fn volunteers(&self, organisation_id: &str) -> Result<Vec<Volunteer>> {
        let rows = sqlx::query(safe_sql!(
            "SELECT {READ_COLUMNS} FROM volunteers WHERE organisation_id = $1 ORDER BY display_name, id"
        ))
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(volunteer).collect()
    }

    /// `None` both when the volunteer does not exist and when it belongs to another
    /// organisation, so callers cannot tell the two apart.
    pub async fn volunteer(&self, organisation_id: &str, id: &str) -> Result<Option<Volunteer>> {
        let mut conn = self.pool.acquire().await?;
        load_scoped(&mut conn, TABLE, organisation_id, id, volunteer).await
    }

    pub async fn update_volunteer(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &str,
        patch: VolunteerPatch,
    ) -> Result<Option<(Volunteer, Vec<AccessChange>)>> {
        let mut tx = self.begin_write().await?;
        let Some(mut v) = load_scoped(&mut tx, TABLE, organisation_id, id, volunteer).await? else {
            return Ok(None);
        };
        let was_active = v.active;
        apply_patch!(patch => v:
            display_name,
            languages,
            topics,
            availability,
            active,
            pledge_signed_on,
            trainings,
        );
        v.updated_at = now_ms().into();
        let update = sqlx::query(
            "UPDATE volunteers SET display_name = $1, languages = $2, topics = $3, \
             availability = $4, active = $5, pledge_signed_on = $6, trainings = $7, \
             updated_at = $8 WHERE organisation_id = $9 AND id = $10 AND erased_at IS NULL",
        );
        bind_editable(update, &v)
            .bind(v.updated_at)
            .bind(organisation_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "volunteer.update",
            ("volunteer", id),
        )
        .write(&mut tx)
        .await?;
        let shrunk = if was_active && !v.active {
            offboard(&mut tx, organisation_id, actor_id, id, v.updated_at.ms()).await?
        } else {
            Vec::new()
        };
        self.notify_access(&mut tx, &shrunk).await?;
        tx.commit().await?;
        Ok(Some((v, shrunk)))
    }

    /// Art. 17 for a volunteer, in one transaction: offboarded as when set inactive (every
    /// device revoked, open offers withdrawn), taken off every case, their profile emptied,
    /// their devices' names, tokens and push subscriptions, enrollment codes and sync
    /// states deleted. The row keeps its id, so hours written under it stay in the
    /// reports, named [`ERASED_NAME`]. `None`: no such volunteer here; erasing again
    /// changes nothing more. Returns the rights taken away and the documents the
    /// volunteer's devices created for them alone (schedules), for the caller to delete.
    pub async fn erase_volunteer(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &str,
    ) -> Result<Option<Erased>> {
        let mut tx = self.begin_write().await?;
        let Some(v) = load_scoped(&mut tx, TABLE, organisation_id, id, volunteer).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let mut shrunk = if v.active {
            offboard(&mut tx, organisation_id, actor_id, id, now).await?
        } else {
            Vec::new()
        };
        let shared: Vec<String> = sqlx::query_scalar(
            "SELECT document_id FROM document_access WHERE volunteer_id = $1 ORDER BY document_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM document_access WHERE volunteer_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        shrunk.extend(
            shared
                .into_iter()
                .map(|document_id| AccessChange::Unshared {
                    volunteer_id: id.to_owned(),
                    document_id,
                }),
        );
        let devices: Vec<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE volunteer_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for device in &devices {
            sqlx::query("DELETE FROM push_subscriptions WHERE device_id = $1")
                .bind(device)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sync_states WHERE peer_key LIKE $1")
                .bind(format!("device:{device}:%"))
                .execute(&mut *tx)
                .await?;
            // The token's hash goes too: nothing could ever match the placeholder.
            sqlx::query(
                "UPDATE devices SET name = '', token_hash = $1, last_seen_at = NULL, \
                 revoked_at = COALESCE(revoked_at, $2) WHERE id = $3",
            )
            .bind(format!("erased:{device}"))
            .bind(now)
            .bind(device)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM enrollment_codes WHERE volunteer_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE volunteers SET display_name = $1, languages = '[]', topics = '[]', \
             availability = '[]', active = 0, pledge_signed_on = NULL, trainings = '[]', \
             updated_at = $2, erased_at = COALESCE(erased_at, $2) WHERE id = $3",
        )
        .bind(ERASED_NAME)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let own: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM documents WHERE owner_volunteer_id = $1 AND kind <> 'case' ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "volunteer.erase",
            ("volunteer", id),
        )
        .write(&mut tx)
        .await?;
        self.notify_access(&mut tx, &shrunk).await?;
        tx.commit().await?;
        // The old profile must not live on in the WAL's page copies.
        self.scrub_files().await;
        Ok(Some(Erased {
            access: shrunk,
            own_documents: own,
        }))
    }
}

impl Store {
    /// A volunteer sets their own weekly availability from their device (the matching
    /// ranks by it). `false`: no active, unerased volunteer of that id here.
    pub async fn set_own_availability(
        &self,
        organisation_id: &str,
        device_id: &str,
        volunteer_id: &str,
        slots: &[Slot],
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE volunteers SET availability = $1, updated_at = $2 WHERE organisation_id = $3 \
             AND id = $4 AND active = 1 AND erased_at IS NULL",
        )
        .bind(to_json(&slots))
        .bind(now_ms())
        .bind(organisation_id)
        .bind(volunteer_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        Audit {
            organisation_id,
            actor_kind: "device",
            actor_id: device_id,
            action: "volunteer.availability",
            subject_kind: "volunteer",
            subject_id: volunteer_id,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// What erasing a volunteer took away, for the hub and the caller.
pub struct Erased {
    pub access: Vec<AccessChange>,
    /// Documents only the volunteer had (their schedules): deleted next, as any document.
    pub own_documents: Vec<String>,
}

/// Binds what a coordinator may edit, in the order both the insert's columns and the
/// update's `SET` list name them.
fn bind_editable<'q>(query: Query<'q>, v: &'q Volunteer) -> Query<'q> {
    query
        .bind(&v.display_name)
        .bind(to_json(&v.languages))
        .bind(to_json(&v.topics))
        .bind(to_json(&v.availability))
        .bind(i64::from(v.active))
        .bind(&v.pledge_signed_on)
        .bind(to_json(&v.trainings))
}

/// Whether `id` is an active volunteer of the organisation.
pub(super) async fn is_active(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    id: &str,
) -> Result<bool> {
    let active: Option<i64> =
        sqlx::query_scalar("SELECT active FROM volunteers WHERE id = $1 AND organisation_id = $2")
            .bind(id)
            .bind(organisation_id)
            .fetch_optional(conn)
            .await?;
    Ok(active == Some(1))
}

/// A volunteer who leaves is gone at once (issue "access that shrinks"): every device is
/// revoked, so its sockets close and its phone wipes at the next contact, and open offers
/// to them are withdrawn (a request left with no open offer is open again). Their cases
/// stay shared, so that reactivating them restores their work on a new device.
async fn offboard(
    tx: &mut sqlx::AnyConnection,
    organisation_id: &str,
    actor_id: &str,
    volunteer_id: &str,
    now: i64,
) -> Result<Vec<AccessChange>> {
    let devices: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE volunteer_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(volunteer_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE devices SET revoked_at = $1 WHERE volunteer_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(volunteer_id)
    .execute(&mut *tx)
    .await?;
    for device in &devices {
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "device.revoke",
            ("device", device),
        )
        .write(&mut *tx)
        .await?;
    }
    let requests: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM offers WHERE volunteer_id = $1 AND status = 'offered'",
    )
    .bind(volunteer_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE offers SET status = 'withdrawn', answered_at = $1 \
         WHERE volunteer_id = $2 AND status = 'offered'",
    )
    .bind(now)
    .bind(volunteer_id)
    .execute(&mut *tx)
    .await?;
    for request in &requests {
        sqlx::query(
            "UPDATE requests SET status = 'open', updated_at = $1 WHERE id = $2 \
             AND status = 'offered' AND NOT EXISTS \
             (SELECT 1 FROM offers o WHERE o.request_id = $2 AND o.status = 'offered')",
        )
        .bind(now)
        .bind(request)
        .execute(&mut *tx)
        .await?;
    }
    Ok(devices
        .into_iter()
        .map(|device_id| AccessChange::DeviceRevoked { device_id })
        .collect())
}

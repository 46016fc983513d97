//! Who wrote with which automerge actor. The first write with an actor binds it to the
//! device (and its volunteer) or the coordinator behind it, in the transaction that stores
//! the changes; a later write with the same actor by anyone else is refused. Readers then
//! attribute a note or an hours entry by the actor that created it, so the `author` field
//! a client writes is a claim to compare, never the truth.

use std::collections::HashMap;

use lotse_protocol::CaseView;
use lotse_protocol::automerge::ActorId;
use lotse_protocol::quota::{Refusal, Rule};
use lotse_protocol::schema::Creators;
use sqlx::Row;

use super::{Result, Store, StoreError, now_ms};

/// Who writes with an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// A volunteer's enrolled device (over sync, or a REST call it made).
    Device {
        device_id: String,
        volunteer_id: String,
    },
    /// A coordinator (the dashboard, the API, a coordinator's sync socket).
    Coordinator { coordinator_id: String },
    /// A volunteer without a device: only the demo network writes like this.
    Volunteer { volunteer_id: String },
}

impl Writer {
    /// The id a document's `author` field should carry for this writer: the volunteer's,
    /// or the coordinator's.
    pub fn author_id(&self) -> &str {
        match self {
            Self::Device { volunteer_id, .. } | Self::Volunteer { volunteer_id } => volunteer_id,
            Self::Coordinator { coordinator_id } => coordinator_id,
        }
    }

    pub fn is_coordinator(&self) -> bool {
        matches!(self, Self::Coordinator { .. })
    }

    fn columns(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Self::Device {
                device_id,
                volunteer_id,
            } => (Some(device_id), Some(volunteer_id), None),
            Self::Volunteer { volunteer_id } => (None, Some(volunteer_id), None),
            Self::Coordinator { coordinator_id } => (None, None, Some(coordinator_id)),
        }
    }

    fn from_columns(
        device_id: Option<String>,
        volunteer_id: Option<String>,
        coordinator_id: Option<String>,
    ) -> Option<Self> {
        match (device_id, volunteer_id, coordinator_id) {
            (Some(device_id), Some(volunteer_id), None) => Some(Self::Device {
                device_id,
                volunteer_id,
            }),
            (None, Some(volunteer_id), None) => Some(Self::Volunteer { volunteer_id }),
            (None, None, Some(coordinator_id)) => Some(Self::Coordinator { coordinator_id }),
            _ => None,
        }
    }
}

/// New changes and who wrote them: the actors are bound (or checked) with the write.
#[derive(Debug, Clone, Copy)]
pub struct Authored<'a> {
    pub writer: &'a Writer,
    pub actors: &'a [ActorId],
}

/// Who wrote an entry, against who the entry says wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// From the actor of the change that created the entry; `None` for an actor written
    /// before authorship was recorded (or by a peer that never synced it here).
    pub writer: Option<Writer>,
    /// The entry's own `author` field.
    pub claimed: String,
}

impl Attribution {
    /// The author to show and count: the writer where known, else the claim.
    pub fn author(&self) -> &str {
        self.writer
            .as_ref()
            .map_or(self.claimed.as_str(), Writer::author_id)
    }

    /// The entry names someone other than who wrote it.
    pub fn mismatch(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.author_id() != self.claimed)
    }

    /// Whether the author is derived (`false`: only the claim is known).
    pub fn verified(&self) -> bool {
        self.writer.is_some()
    }
}

fn foreign() -> StoreError {
    StoreError::Refused(Refusal {
        rule: Rule::ForeignActor,
        limit: 0,
    })
}

/// Binds each actor to the writer unless bound already, and refuses the whole write if
/// one is bound to anybody else. Runs inside the caller's write transaction, so two
/// writers racing for one actor cannot both win.
pub(crate) async fn bind(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    authored: &Authored<'_>,
) -> Result<()> {
    let (device_id, volunteer_id, coordinator_id) = authored.writer.columns();
    let now = now_ms();
    for actor in authored.actors {
        let hex = actor.to_hex_string();
        sqlx::query(
            "INSERT INTO actors (actor_id, organisation_id, device_id, volunteer_id, coordinator_id, first_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (actor_id) DO NOTHING",
        )
        .bind(&hex)
        .bind(organisation_id)
        .bind(device_id)
        .bind(volunteer_id)
        .bind(coordinator_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(
            "SELECT organisation_id, device_id, volunteer_id, coordinator_id FROM actors WHERE actor_id = $1",
        )
        .bind(&hex)
        .fetch_one(&mut *conn)
        .await?;
        let bound = Writer::from_columns(
            row.try_get("device_id")?,
            row.try_get("volunteer_id")?,
            row.try_get("coordinator_id")?,
        );
        let org: String = row.try_get("organisation_id")?;
        if org != organisation_id || bound.as_ref() != Some(authored.writer) {
            return Err(foreign());
        }
    }
    Ok(())
}

/// Who wrote each note and hours entry of a case.
#[derive(Debug, Clone, Default)]
pub struct Attributions {
    pub notes: HashMap<String, Attribution>,
    pub hours: HashMap<String, Attribution>,
    /// Every bound actor of the entries.
    pub writers: HashMap<ActorId, Writer>,
}

impl Attributions {
    pub fn note(&self, id: &str, claimed: &str) -> Attribution {
        Self::of(&self.notes, id, claimed)
    }

    pub fn hours(&self, id: &str, claimed: &str) -> Attribution {
        Self::of(&self.hours, id, claimed)
    }

    fn of(map: &HashMap<String, Attribution>, id: &str, claimed: &str) -> Attribution {
        map.get(id).cloned().unwrap_or_else(|| Attribution {
            writer: None,
            claimed: claimed.to_owned(),
        })
    }
}

impl Store {
    /// Attributes a case's notes and hours by the actors that created them: in the
    /// document's own history, or, for entries carried over from an earlier generation of
    /// a rewritten case, as the server recorded when it rewrote it.
    pub async fn attribute(
        &self,
        organisation_id: &str,
        document: &lotse_protocol::DocumentId,
        created: &Creators,
        view: &CaseView,
    ) -> Result<Attributions> {
        let carried = self.carried_creators(document).await?;
        let mut created = created.clone();
        created.notes.extend(carried.notes);
        created.hours.extend(carried.hours);
        let created = &created;
        let writers = self.writers(organisation_id, &created.actors()).await?;
        let attribute = |actor: Option<&ActorId>, claimed: &str| Attribution {
            writer: actor.and_then(|a| writers.get(a)).cloned(),
            claimed: claimed.to_owned(),
        };
        let notes = view
            .notes
            .iter()
            .map(|n| {
                let id = n.id.as_str().to_owned();
                let a = attribute(created.notes.get(&id), &n.author);
                (id, a)
            })
            .collect();
        let hours = view
            .hours
            .iter()
            .map(|h| {
                let id = h.id.as_str().to_owned();
                let a = attribute(created.hours.get(&id), &h.author);
                (id, a)
            })
            .collect();
        Ok(Attributions {
            notes,
            hours,
            writers,
        })
    }

    /// The writers of these actors, where bound, within the organisation.
    pub async fn writers(
        &self,
        organisation_id: &str,
        actors: &[ActorId],
    ) -> Result<HashMap<ActorId, Writer>> {
        let mut out = HashMap::new();
        // A case has a handful of actors; larger lists go in slices to stay within any
        // backend's limit on bound parameters.
        for slice in actors.chunks(500) {
            let placeholders: Vec<String> =
                (0..slice.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = safe_sql!(
                "SELECT actor_id, device_id, volunteer_id, coordinator_id FROM actors \
                 WHERE organisation_id = $1 AND actor_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sql).bind(organisation_id);
            for actor in slice {
                query = query.bind(actor.to_hex_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                let hex: String = row.try_get("actor_id")?;
                let Some(writer) = Writer::from_columns(
                    row.try_get("device_id")?,
                    row.try_get("volunteer_id")?,
                    row.try_get("coordinator_id")?,
                ) else {
                    continue;
                };
                let actor = hex::decode(&hex)
                    .map(ActorId::from)
                    .map_err(|e| StoreError::Corrupt(format!("actor id: {e}")))?;
                out.insert(actor, writer);
            }
        }
        Ok(out)
    }

    /// Adds `bytes` to what the device's changes take and refuses, rolling back with the
    /// caller's transaction, if that goes beyond `limit`.
    pub(crate) async fn charge_device(
        conn: &mut sqlx::AnyConnection,
        device_id: &str,
        bytes: u64,
        limit: u64,
    ) -> Result<()> {
        let total: i64 = sqlx::query_scalar(
            "UPDATE devices SET stored_bytes = stored_bytes + $1 WHERE id = $2 RETURNING stored_bytes",
        )
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(device_id)
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(0);
        if u64::try_from(total).unwrap_or(0) > limit {
            return Err(StoreError::Refused(Refusal {
                rule: Rule::DeviceBytes,
                limit,
            }));
        }
        Ok(())
    }
}

//! Who works on a case: coordinators take volunteers off a case and add others. The
//! volunteers of a case are those it is shared with and, for a case a volunteer's phone
//! created, that volunteer (its owner); the list is replaced as a whole.

use std::collections::BTreeSet;

use lotse_protocol::DocumentId;

use super::access::AccessChange;
use super::audit::Audit;
use super::{Result, Store, StoreError, now_ms};
use crate::timefmt::Timestamp;

/// What replacing a case's volunteers did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassigned {
    /// Now on the case, sorted.
    pub volunteer_ids: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// For the hub: the removed volunteers' devices stop receiving the case.
    pub shrunk: Vec<AccessChange>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReassignError {
    #[error("no such case")]
    NotFound,
    #[error("volunteer {0} is not an active volunteer of this organisation")]
    NotAVolunteer(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReassignError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    /// The volunteers of case `id` in `organisation_id`, sorted; `None`: no such case.
    pub async fn case_volunteers(
        &self,
        organisation_id: &str,
        id: &DocumentId,
    ) -> Result<Option<Vec<String>>> {
        let mut conn = self.pool.acquire().await?;
        Ok(current(&mut conn, organisation_id, &id.to_string())
            .await?
            .map(|set| set.into_iter().collect()))
    }

    /// Replaces the volunteers of case `id` with `volunteer_ids` (each an active volunteer
    /// of the organisation), audited per volunteer added or removed. Removed volunteers
    /// lose the case at once on every instance; added ones are told as for a new share.
    pub async fn set_case_volunteers(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &DocumentId,
        volunteer_ids: &[String],
    ) -> Result<Reassigned, ReassignError> {
        let doc = id.to_string();
        let mut tx = self.begin_write().await?;
        let Some(before) = current(&mut tx, organisation_id, &doc).await? else {
            return Err(ReassignError::NotFound);
        };
        let wanted: BTreeSet<String> = volunteer_ids.iter().cloned().collect();
        for volunteer in &wanted {
            let active: Option<i64> = sqlx::query_scalar(
                "SELECT active FROM volunteers WHERE id = $1 AND organisation_id = $2",
            )
            .bind(volunteer)
            .bind(organisation_id)
            .fetch_optional(&mut *tx)
            .await?;
            // Someone already on the case may stay even if paused later; newcomers must
            // be active.
            if active.is_none() || (active == Some(0) && !before.contains(volunteer)) {
                return Err(ReassignError::NotAVolunteer(volunteer.clone()));
            }
        }
        let added: Vec<String> = wanted.difference(&before).cloned().collect();
        let removed: Vec<String> = before.difference(&wanted).cloned().collect();
        for volunteer in &removed {
            sqlx::query("DELETE FROM document_access WHERE document_id = $1 AND volunteer_id = $2")
                .bind(&doc)
                .bind(volunteer)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE documents SET owner_volunteer_id = NULL \
                 WHERE id = $1 AND owner_volunteer_id = $2",
            )
            .bind(&doc)
            .bind(volunteer)
            .execute(&mut *tx)
            .await?;
        }
        for volunteer in &added {
            sqlx::query("INSERT INTO document_access (document_id, volunteer_id) VALUES ($1, $2)")
                .bind(&doc)
                .bind(volunteer)
                .execute(&mut *tx)
                .await?;
        }
        let lines = added
            .iter()
            .map(|v| ("case.share", v))
            .chain(removed.iter().map(|v| ("case.unshare", v)));
        for (action, volunteer) in lines {
            // One line names both: the trail has one subject per line.
            Audit::by_coordinator(
                organisation_id,
                actor_id,
                action,
                ("case_volunteer", &format!("{doc}:{volunteer}")),
            )
            .write(&mut tx)
            .await?;
        }
        if !added.is_empty() || !removed.is_empty() {
            sqlx::query("UPDATE documents SET updated_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(&doc)
                .execute(&mut *tx)
                .await?;
        }
        let shrunk: Vec<AccessChange> = removed
            .iter()
            .map(|volunteer_id| AccessChange::Unshared {
                volunteer_id: volunteer_id.clone(),
                document_id: doc.clone(),
            })
            .collect();
        self.notify_access(&mut tx, &shrunk).await?;
        for volunteer in &added {
            self.notify_shared(&mut tx, volunteer).await?;
        }
        tx.commit().await?;
        Ok(Reassigned {
            volunteer_ids: wanted.into_iter().collect(),
            added,
            removed,
            shrunk,
        })
    }
}

/// Owner and shares of a case; `None` when it is not a case of the organisation.
async fn current(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    doc: &str,
) -> Result<Option<BTreeSet<String>>> {
    let owner: Option<Option<String>> = sqlx::query_scalar(
        "SELECT owner_volunteer_id FROM documents \
         WHERE id = $1 AND organisation_id = $2 AND kind = 'case'",
    )
    .bind(doc)
    .bind(organisation_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let shared: Vec<String> =
        sqlx::query_scalar("SELECT volunteer_id FROM document_access WHERE document_id = $1")
            .bind(doc)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(shared.into_iter().chain(owner).collect()))
}

/// What a device could hold, for the assessment after a phone is lost (DSGVO Art. 33):
/// the cases of its volunteer now, and those taken from them since the device's last
/// contact (it has not heard of that yet).
#[derive(Debug, Clone)]
pub struct Exposure {
    pub device: super::Device,
    /// Case id and pseudonymous label, by label.
    pub cases: Vec<(String, String)>,
    /// The device's last contact with the server (ms), when its lease was last renewed.
    pub last_contact: Option<i64>,
    /// When the device destroys its keys if it stays offline (ms).
    pub lease_lapses_at: Option<i64>,
}

impl Store {
    pub async fn device_exposure(
        &self,
        organisation_id: &str,
        device_id: &str,
    ) -> Result<Option<Exposure>> {
        let Some(device) = self
            .device_of_organisation(organisation_id, device_id)
            .await?
        else {
            return Ok(None);
        };
        let last_contact = device
            .last_seen_at
            .max(device.last_sync_at)
            .map(Timestamp::ms);
        let since = last_contact.unwrap_or(device.created_at.ms());
        let mut ids: BTreeSet<String> = sqlx::query_scalar(
            "SELECT id FROM documents WHERE organisation_id = $1 AND kind = 'case' AND \
             (owner_volunteer_id = $2 OR id IN \
             (SELECT document_id FROM document_access WHERE volunteer_id = $2))",
        )
        .bind(organisation_id)
        .bind(&device.volunteer_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let unshared: Vec<String> = sqlx::query_scalar(
            "SELECT subject_id FROM audit_events WHERE organisation_id = $1 \
             AND action = 'case.unshare' AND subject_kind = 'case_volunteer' AND at >= $2",
        )
        .bind(organisation_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let suffix = format!(":{}", device.volunteer_id);
        ids.extend(
            unshared
                .iter()
                .filter_map(|s| s.strip_suffix(&suffix))
                .map(str::to_owned),
        );
        // One query for the labels, not one per case.
        let labels: std::collections::HashMap<String, String> =
            sqlx::query_as("SELECT document_id, label FROM case_index WHERE organisation_id = $1")
                .bind(organisation_id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut cases: Vec<(String, String)> = ids
            .into_iter()
            .map(|id| {
                let label = labels.get(&id).cloned().unwrap_or_default();
                (id, label)
            })
            .collect();
        cases.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let lease_ms = self
            .organisation_settings(organisation_id)
            .await?
            .and_then(|s| i64::try_from(s.lease_ms()).ok());
        Ok(Some(Exposure {
            lease_lapses_at: last_contact.zip(lease_ms).map(|(at, ms)| at + ms),
            device,
            cases,
            last_contact,
        }))
    }
}

//! Volunteers' devices: one-time enrollment codes, device tokens (hashes only), revocation.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::timefmt::Timestamp;

use super::access::AccessChange;
use super::audit::Audit;
use super::{Result, Store, StoreError, new_id, now_ms};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    pub volunteer_id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub last_seen_at: Option<Timestamp>,
    /// Last time the device synced documents.
    pub last_sync_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A device found by its token, with what access checks need.
#[derive(Debug, Clone)]
pub struct EnrolledDevice {
    pub device: Device,
    pub organisation_id: String,
    /// `false` once the volunteer left: the device is then refused like a revoked one,
    /// even if its own revocation was missed.
    pub volunteer_active: bool,
}

impl EnrolledDevice {
    /// Whether the device may still sync and call the API.
    pub fn may_connect(&self) -> bool {
        self.device.revoked_at.is_none() && self.volunteer_active
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EnrollmentCode {
    pub code: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("unknown enrollment code")]
    Unknown,
    #[error("enrollment code already used")]
    Used,
    #[error("enrollment code expired")]
    Expired,
    #[error("volunteer is not active")]
    Inactive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EnrollmentError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

const COLUMNS: &str =
    "d.id, d.volunteer_id, d.name, d.created_at, d.last_seen_at, d.last_sync_at, d.revoked_at";

fn device(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        id: row.try_get("id")?,
        volunteer_id: row.try_get("volunteer_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        last_sync_at: row.try_get("last_sync_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// How often `last_seen_at` is written at most; a write per request would be waste.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

impl Store {
    /// Stores the hash of a new code for a volunteer of `organisation_id`. `Ok(None)` when
    /// the volunteer is not in that organisation.
    pub async fn create_enrollment_code(
        &self,
        organisation_id: &str,
        actor_id: &str,
        volunteer_id: &str,
        code_hash: &str,
        expires_at: i64,
    ) -> Result<Option<()>> {
        let mut tx = self.begin_write().await?;
        let found: Option<String> =
            // An erased volunteer gets no new phone.
            sqlx::query_scalar(
                "SELECT id FROM volunteers WHERE organisation_id = $1 AND id = $2 \
                 AND erased_at IS NULL",
            )
            .bind(organisation_id)
            .bind(volunteer_id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO enrollment_codes (code_hash, volunteer_id, created_by, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code_hash)
        .bind(volunteer_id)
        .bind(actor_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "enrollment_code.create",
            ("volunteer", volunteer_id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(Some(()))
    }

    /// Redeems a code once and creates the device in the same transaction, so a code can
    /// never yield two devices even when two phones race with it.
    pub async fn enroll_device(
        &self,
        code_hash: &str,
        device_name: &str,
        token_hash: &str,
    ) -> Result<EnrolledDevice, EnrollmentError> {
        let now = now_ms();
        let device_id = new_id();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT e.volunteer_id, e.expires_at, e.used_at, v.organisation_id, v.active \
             FROM enrollment_codes e JOIN volunteers v ON v.id = e.volunteer_id \
             WHERE e.code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(EnrollmentError::Unknown);
        };
        let volunteer_id: String = row.try_get("volunteer_id")?;
        let organisation_id: String = row.try_get("organisation_id")?;
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Err(EnrollmentError::Used);
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Err(EnrollmentError::Expired);
        }
        if row.try_get::<i64, _>("active")? == 0 {
            return Err(EnrollmentError::Inactive);
        }
        // The guard on used_at makes the redemption atomic on PostgreSQL too, where the
        // SELECT above does not lock the row.
        let redeemed = sqlx::query(
            "UPDATE enrollment_codes SET used_at = $1, device_id = $2 \
             WHERE code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&device_id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        if redeemed.rows_affected() != 1 {
            return Err(EnrollmentError::Used);
        }
        sqlx::query(
            "INSERT INTO devices (id, volunteer_id, name, token_hash, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&device_id)
        .bind(&volunteer_id)
        .bind(device_name)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Audit {
            organisation_id: &organisation_id,
            actor_kind: "device",
            actor_id: &device_id,
            action: "device.enroll",
            subject_kind: "volunteer",
            subject_id: &volunteer_id,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(EnrolledDevice {
            device: Device {
                id: device_id,
                volunteer_id,
                name: device_name.to_owned(),
                created_at: now.into(),
                last_seen_at: Some(now.into()),
                last_sync_at: None,
                revoked_at: None,
            },
            organisation_id,
            // Enrollment refuses a volunteer who left (above).
            volunteer_active: true,
        })
    }

    /// The device holding this token, revoked or not: callers decide what a revoked
    /// device may still learn (that it was revoked, so it can wipe itself).
    pub async fn device_by_token(&self, token_hash: &str) -> Result<Option<EnrolledDevice>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS}, v.organisation_id, v.active FROM devices d \
             JOIN volunteers v ON v.id = d.volunteer_id WHERE d.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(EnrolledDevice {
                device: device(&row)?,
                organisation_id: row.try_get("organisation_id")?,
                volunteer_active: row.try_get::<i64, _>("active")? != 0,
            })
        })
        .transpose()
    }

    pub async fn touch_device(&self, device: &Device) -> Result<()> {
        let now = now_ms();
        if device
            .last_seen_at
            .is_some_and(|seen| now - seen.ms() < LAST_SEEN_RESOLUTION_MS)
        {
            return Ok(());
        }
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&device.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the device exists, is not revoked and its volunteer has not left. A sync
    /// connection asks before it tells its device anything new: the event that closes a
    /// revoked device's connection travels separately and may arrive after other news.
    pub async fn device_is_active(&self, device_id: &str) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM devices d JOIN volunteers v ON v.id = d.volunteer_id \
             WHERE d.id = $1 AND d.revoked_at IS NULL AND v.active <> 0",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// A device of the organisation's volunteers, revoked or not.
    pub async fn device_of_organisation(
        &self,
        organisation_id: &str,
        device_id: &str,
    ) -> Result<Option<Device>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM devices d JOIN volunteers v ON v.id = d.volunteer_id \
             WHERE d.id = $1 AND v.organisation_id = $2"
        ))
        .bind(device_id)
        .bind(organisation_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device).transpose()
    }

    /// `None` when the volunteer is not in the organisation.
    pub async fn devices_of(
        &self,
        organisation_id: &str,
        volunteer_id: &str,
    ) -> Result<Option<Vec<Device>>> {
        if self
            .volunteer(organisation_id, volunteer_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let rows = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM devices d WHERE d.volunteer_id = $1 ORDER BY d.created_at, d.id"
        ))
        .bind(volunteer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device).collect::<Result<_>>().map(Some)
    }

    /// Revokes a device of the organisation; revoking twice keeps the first time. The
    /// change is for the hub: the device's open connections close.
    pub async fn revoke_device(
        &self,
        organisation_id: &str,
        actor_id: &str,
        device_id: &str,
    ) -> Result<Option<(Device, Vec<AccessChange>)>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND volunteer_id IN (SELECT id FROM volunteers WHERE organisation_id = $3)",
        )
        .bind(now_ms())
        .bind(device_id)
        .bind(organisation_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM devices d JOIN volunteers v ON v.id = d.volunteer_id \
             WHERE d.id = $1 AND v.organisation_id = $2"
        ))
        .bind(device_id)
        .bind(organisation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(found) = row.as_ref().map(device).transpose()? else {
            return Ok(None);
        };
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "device.revoke",
            ("device", device_id),
        )
        .write(&mut tx)
        .await?;
        let revoked = [AccessChange::DeviceRevoked {
            device_id: found.id.clone(),
        }];
        self.notify_access(&mut tx, &revoked).await?;
        tx.commit().await?;
        Ok(Some((found, revoked.into())))
    }
}

//! Organisations: one Integrationslotsen network each; every other row belongs to one.

use serde::Serialize;
use sqlx::Row;

use super::audit::Audit;
use super::invalid::Invalid;
use super::{Result, Store, new_id, now_ms};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    pub slug: String,
}

/// What a network decides for itself. Changes are audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrganisationSettings {
    /// Days a phone keeps its case data readable without contact with the server; then it
    /// destroys its keys (a lost phone that stays offline). 1 to 365, default 30.
    pub device_lease_days: u32,
    /// Months after a case was closed before the purge job deletes it (its de-identified
    /// figures stay for the reports). 0 to 120, default 24; 0 deletes closed cases at the
    /// next purge.
    pub case_retention_months: u32,
    /// Days after a request was done, cancelled or expired before the purge job erases
    /// its contact, address, description and person label. 0 to 730, default 30; 0
    /// erases them at the next purge.
    pub request_retention_days: u32,
    /// Months the audit trail is kept. 1 to 120, default 24.
    pub audit_retention_months: u32,
}

impl Default for OrganisationSettings {
    fn default() -> Self {
        Self {
            device_lease_days: Self::DEFAULT_LEASE_DAYS,
            case_retention_months: Self::DEFAULT_CASE_MONTHS,
            request_retention_days: Self::DEFAULT_REQUEST_DAYS,
            audit_retention_months: Self::DEFAULT_AUDIT_MONTHS,
        }
    }
}

/// The number `raw` if it lies in `range`.
fn in_range(raw: i64, range: std::ops::RangeInclusive<u32>) -> Result<u32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|d| range.contains(d))
        .ok_or(Invalid::OutOfRange {
            min: i64::from(*range.start()),
            max: i64::from(*range.end()),
        })
}

impl OrganisationSettings {
    pub const LEASE_DAYS: std::ops::RangeInclusive<u32> = 1..=365;
    pub const DEFAULT_LEASE_DAYS: u32 = 30;
    pub const CASE_MONTHS: std::ops::RangeInclusive<u32> = 0..=120;
    pub const DEFAULT_CASE_MONTHS: u32 = 24;
    pub const REQUEST_DAYS: std::ops::RangeInclusive<u32> = 0..=730;
    pub const DEFAULT_REQUEST_DAYS: u32 = 30;
    /// At least a month: the trail must outlive the purge that writes into it.
    pub const AUDIT_MONTHS: std::ops::RangeInclusive<u32> = 1..=120;
    pub const DEFAULT_AUDIT_MONTHS: u32 = 24;

    pub fn lease_ms(&self) -> u64 {
        u64::from(self.device_lease_days) * 24 * 3_600_000
    }

    pub fn check_lease_days(days: i64) -> Result<u32, Invalid> {
        in_range(days, Self::LEASE_DAYS)
    }

    pub fn check_case_months(months: i64) -> Result<u32, Invalid> {
        in_range(months, Self::CASE_MONTHS)
    }

    pub fn check_request_days(days: i64) -> Result<u32, Invalid> {
        in_range(days, Self::REQUEST_DAYS)
    }

    pub fn check_audit_months(months: i64) -> Result<u32, Invalid> {
        in_range(months, Self::AUDIT_MONTHS)
    }

    /// From a row with the four setting columns; a stored value out of range (written by
    /// hand) counts as the default rather than failing every reader.
    pub(super) fn of_row(row: &sqlx::any::AnyRow) -> Result<Self> {
        let d = Self::default();
        let get = |column: &str, default: u32| -> Result<u32> {
            let v: i64 = row.try_get(column)?;
            Ok(u32::try_from(v).unwrap_or(default))
        };
        Ok(Self {
            device_lease_days: get("device_lease_days", d.device_lease_days)?,
            case_retention_months: get("case_retention_months", d.case_retention_months)?,
            request_retention_days: get("request_retention_days", d.request_retention_days)?,
            audit_retention_months: get("audit_retention_months", d.audit_retention_months)?,
        })
    }
}

/// The columns `OrganisationSettings::of_row` reads.
pub(super) const SETTINGS_COLUMNS: &str =
    "device_lease_days, case_retention_months, request_retention_days, audit_retention_months";

impl Store {
    pub async fn organisation_settings(
        &self,
        organisation_id: &str,
    ) -> Result<Option<OrganisationSettings>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {SETTINGS_COLUMNS} FROM organisations WHERE id = $1"
        ))
        .bind(organisation_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(OrganisationSettings::of_row).transpose()
    }

    pub async fn set_organisation_settings(
        &self,
        organisation_id: &str,
        actor_id: &str,
        settings: &OrganisationSettings,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE organisations SET device_lease_days = $1, case_retention_months = $2, \
             request_retention_days = $3, audit_retention_months = $4 WHERE id = $5",
        )
        .bind(i64::from(settings.device_lease_days))
        .bind(i64::from(settings.case_retention_months))
        .bind(i64::from(settings.request_retention_days))
        .bind(i64::from(settings.audit_retention_months))
        .bind(organisation_id)
        .execute(&mut *tx)
        .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "organisation.settings",
            ("organisation", organisation_id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the organisation requires a second factor of every coordinator (Leitung
    /// always needs one).
    pub async fn two_factor_for_all(&self, organisation_id: &str) -> Result<bool> {
        let on: Option<i64> =
            sqlx::query_scalar("SELECT two_factor_for_all FROM organisations WHERE id = $1")
                .bind(organisation_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(on.unwrap_or(0) != 0)
    }

    pub async fn set_two_factor_for_all(
        &self,
        organisation_id: &str,
        actor_id: &str,
        on: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE organisations SET two_factor_for_all = $1 WHERE id = $2")
            .bind(i64::from(on))
            .bind(organisation_id)
            .execute(&mut *tx)
            .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "organisation.two_factor",
            ("organisation", organisation_id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns the organisation called `name`, creating it when new.
    pub async fn ensure_organisation(&self, name: &str) -> Result<Organisation> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query("SELECT id, name, slug FROM organisations WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let org = match existing {
            Some(row) => Organisation {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                slug: row.try_get("slug")?,
            },
            None => {
                let base = slugify(name);
                let taken: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM organisations WHERE slug = $1")
                        .bind(&base)
                        .fetch_one(&mut *tx)
                        .await?;
                let slug = if taken == 0 {
                    base
                } else {
                    format!("{base}-{}", &new_id()[..6])
                };
                let org = Organisation {
                    id: new_id(),
                    name: name.to_owned(),
                    slug,
                };
                sqlx::query(
                    "INSERT INTO organisations (id, name, slug, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&org.id)
                .bind(&org.name)
                .bind(&org.slug)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                org
            }
        };
        tx.commit().await?;
        Ok(org)
    }

    pub async fn organisation(&self, id: &str) -> Result<Option<Organisation>> {
        let row = sqlx::query("SELECT id, name, slug FROM organisations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Organisation {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                slug: row.try_get("slug")?,
            })
        })
        .transpose()
    }

    pub async fn is_empty(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organisations")
            .fetch_one(&self.pool)
            .await?;
        Ok(n == 0)
    }
}

/// A URL-safe name for the public intake form: "Stadt Neuss" -> "stadt-neuss".
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' => slug.push(c),
            'ä' => slug.push_str("ae"),
            'ö' => slug.push_str("oe"),
            'ü' => slug.push_str("ue"),
            'ß' => slug.push_str("ss"),
            _ if !slug.is_empty() && !slug.ends_with('-') => slug.push('-'),
            _ => {}
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "netzwerk".into()
    } else {
        slug
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_readable() {
        assert_eq!(
            slugify("Integrationslotsen Osnabrück"),
            "integrationslotsen-osnabrueck"
        );
        assert_eq!(slugify("  Landkreis Günzburg!! "), "landkreis-guenzburg");
        assert_eq!(slugify("???"), "netzwerk");
    }
}

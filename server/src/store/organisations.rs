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
}

impl Default for OrganisationSettings {
    fn default() -> Self {
        Self {
            device_lease_days: Self::DEFAULT_LEASE_DAYS,
        }
    }
}

impl OrganisationSettings {
    pub const LEASE_DAYS: std::ops::RangeInclusive<u32> = 1..=365;
    pub const DEFAULT_LEASE_DAYS: u32 = 30;

    pub fn lease_ms(&self) -> u64 {
        u64::from(self.device_lease_days) * 24 * 3_600_000
    }

    pub fn check_lease_days(days: i64) -> Result<u32, Invalid> {
        u32::try_from(days)
            .ok()
            .filter(|d| Self::LEASE_DAYS.contains(d))
            .ok_or(Invalid::OutOfRange {
                min: i64::from(*Self::LEASE_DAYS.start()),
                max: i64::from(*Self::LEASE_DAYS.end()),
            })
    }
}

impl Store {
    pub async fn organisation_settings(
        &self,
        organisation_id: &str,
    ) -> Result<Option<OrganisationSettings>> {
        let days: Option<i64> =
            sqlx::query_scalar("SELECT device_lease_days FROM organisations WHERE id = $1")
                .bind(organisation_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(days.map(|d| OrganisationSettings {
            device_lease_days: u32::try_from(d).unwrap_or(OrganisationSettings::DEFAULT_LEASE_DAYS),
        }))
    }

    pub async fn set_organisation_settings(
        &self,
        organisation_id: &str,
        actor_id: &str,
        settings: &OrganisationSettings,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE organisations SET device_lease_days = $1 WHERE id = $2")
            .bind(i64::from(settings.device_lease_days))
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

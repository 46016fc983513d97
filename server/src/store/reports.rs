//! Read-only queries of the coordinators' dashboard: device sync per volunteer, the live
//! fingerprint, case documents to inspect, names for histories, and report rows. Every
//! query is scoped by organisation.

use sqlx::Row;

use super::{Result, Store, json_column};

/// A volunteer's devices that are not revoked, and when the newest of them last synced.
#[derive(Debug, Clone)]
pub struct VolunteerSync {
    pub volunteer_id: String,
    pub active_devices: i64,
    pub last_sync_at: Option<i64>,
    /// When the newest of those devices was enrolled.
    pub newest_enrolled_at: Option<i64>,
}

/// A case document as the dashboard inspects it for things to look at.
#[derive(Debug, Clone)]
pub struct CaseDocument {
    pub id: String,
    /// Status in the case index (what the last sync left).
    pub status: String,
    /// Comma-separated heads: changes when the document changes.
    pub heads: String,
    /// When the server last wrote the index row.
    pub index_updated_at: i64,
}

/// The fields of a request the reports count.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub topic: String,
    pub languages: Vec<String>,
    pub status: String,
    pub starts_at: i64,
}

impl Store {
    /// For every volunteer of the organisation with at least one device: how many are
    /// not revoked and when the newest of those last synced.
    pub async fn volunteer_sync(&self, organisation_id: &str) -> Result<Vec<VolunteerSync>> {
        let rows = sqlx::query(
            "SELECT v.id AS volunteer_id, \
             SUM(CASE WHEN d.revoked_at IS NULL THEN 1 ELSE 0 END) AS active_devices, \
             MAX(CASE WHEN d.revoked_at IS NULL THEN d.last_sync_at ELSE NULL END) AS last_sync_at, \
             MAX(CASE WHEN d.revoked_at IS NULL THEN d.created_at ELSE NULL END) AS newest_enrolled_at \
             FROM volunteers v JOIN devices d ON d.volunteer_id = v.id \
             WHERE v.organisation_id = $1 GROUP BY v.id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VolunteerSync {
                    volunteer_id: r.try_get("volunteer_id")?,
                    active_devices: r.try_get("active_devices")?,
                    last_sync_at: r.try_get("last_sync_at")?,
                    newest_enrolled_at: r.try_get("newest_enrolled_at")?,
                })
            })
            .collect()
    }

    /// Numbers that change whenever something the dashboard shows changes (requests,
    /// offers, devices, synced cases). Open dashboards poll it to update live.
    pub async fn dashboard_fingerprint(&self, organisation_id: &str) -> Result<Vec<i64>> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COALESCE(MAX(updated_at), 0) FROM requests WHERE organisation_id = $1) AS a, \
             (SELECT COUNT(*) FROM request_events e JOIN requests r ON r.id = e.request_id \
              WHERE r.organisation_id = $1) AS b, \
             (SELECT COALESCE(MAX(d.last_sync_at), 0) FROM devices d JOIN volunteers v \
              ON v.id = d.volunteer_id WHERE v.organisation_id = $1) AS c, \
             (SELECT COUNT(*) FROM devices d JOIN volunteers v ON v.id = d.volunteer_id \
              WHERE v.organisation_id = $1 AND d.revoked_at IS NOT NULL) AS d, \
             (SELECT COUNT(*) FROM devices d JOIN volunteers v ON v.id = d.volunteer_id \
              WHERE v.organisation_id = $1) AS e, \
             (SELECT COALESCE(MAX(updated_at), 0) FROM case_index WHERE organisation_id = $1) AS f, \
             (SELECT COUNT(*) FROM case_index WHERE organisation_id = $1) AS g, \
             (SELECT COALESCE(MAX(updated_at), 0) FROM volunteers WHERE organisation_id = $1) AS h",
        )
        .bind(organisation_id)
        .fetch_one(&self.pool)
        .await?;
        ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|k| row.try_get::<i64, _>(*k).map_err(Into::into))
            .collect()
    }

    /// Case documents whose index row the server wrote at or after `since`, newest first,
    /// at most `limit`.
    pub async fn case_documents_since(
        &self,
        organisation_id: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<CaseDocument>> {
        let rows = sqlx::query(
            "SELECT c.document_id, c.status, c.updated_at, d.heads FROM case_index c \
             JOIN documents d ON d.id = c.document_id \
             WHERE c.organisation_id = $1 AND c.updated_at >= $2 \
             ORDER BY c.updated_at DESC, c.document_id LIMIT $3",
        )
        .bind(organisation_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CaseDocument {
                    id: r.try_get("document_id")?,
                    status: r.try_get("status")?,
                    heads: r.try_get("heads")?,
                    index_updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Ids of every case document of the organisation.
    pub async fn case_document_ids(&self, organisation_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM documents WHERE organisation_id = $1 AND kind = 'case' ORDER BY id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Coordinators of the organisation: (id, display name).
    pub async fn coordinator_names(&self, organisation_id: &str) -> Result<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT id, display_name FROM coordinators WHERE organisation_id = $1")
                .bind(organisation_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("display_name")?)))
            .collect()
    }

    /// Devices of the organisation: (device id, device name, volunteer id).
    pub async fn device_names(
        &self,
        organisation_id: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT d.id, d.name, d.volunteer_id FROM devices d \
             JOIN volunteers v ON v.id = d.volunteer_id WHERE v.organisation_id = $1",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    r.try_get("volunteer_id")?,
                ))
            })
            .collect()
    }

    /// Requests whose appointment starts in `[from, to)`.
    pub async fn report_requests(
        &self,
        organisation_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ReportRequest>> {
        let rows = sqlx::query(
            "SELECT topic, languages, status, starts_at FROM requests \
             WHERE organisation_id = $1 AND starts_at >= $2 AND starts_at < $3",
        )
        .bind(organisation_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportRequest {
                    topic: r.try_get("topic")?,
                    languages: json_column(r.try_get("languages")?, "request languages")?,
                    status: r.try_get("status")?,
                    starts_at: r.try_get("starts_at")?,
                })
            })
            .collect()
    }
}

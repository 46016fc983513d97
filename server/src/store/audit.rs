//! The audit trail (DSGVO): who did what to which record, when. Never the content.

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, new_id, now_ms};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
}

pub(crate) struct Audit<'a> {
    pub organisation_id: &'a str,
    pub actor_kind: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
}

impl Audit<'_> {
    /// Written inside the caller's transaction so the record and its trail commit together.
    pub(crate) async fn write(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, organisation_id, at, actor_kind, actor_id, action, \
             subject_kind, subject_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(self.organisation_id)
        .bind(now_ms())
        .bind(self.actor_kind)
        .bind(self.actor_id)
        .bind(self.action)
        .bind(self.subject_kind)
        .bind(self.subject_id)
        .execute(conn)
        .await?;
        Ok(())
    }
}

impl Store {
    pub async fn audit_events(&self, organisation_id: &str, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT at, actor_kind, actor_id, action, subject_kind, subject_id FROM audit_events \
             WHERE organisation_id = $1 ORDER BY at DESC LIMIT $2",
        )
        .bind(organisation_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    action: r.try_get("action")?,
                    subject_kind: r.try_get("subject_kind")?,
                    subject_id: r.try_get("subject_id")?,
                })
            })
            .collect()
    }
}

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

impl<'a> Audit<'a> {
    /// A coordinator's action on a record: `subject` is (kind, id).
    pub(crate) fn by_coordinator(
        organisation_id: &'a str,
        actor_id: &'a str,
        action: &'a str,
        (subject_kind, subject_id): (&'a str, &'a str),
    ) -> Self {
        Self {
            organisation_id,
            actor_kind: "coordinator",
            actor_id,
            action,
            subject_kind,
            subject_id,
        }
    }

    /// Written inside the caller's transaction so the record and its trail commit together.
    pub(crate) async fn write(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        insert_row(
            conn,
            self.organisation_id,
            now_ms(),
            [self.actor_kind, self.actor_id, self.action],
            [self.subject_kind, self.subject_id],
        )
        .await
    }
}

/// One owned entry, inside the caller's transaction.
pub(crate) async fn insert(conn: &mut sqlx::AnyConnection, e: &AuditEntry) -> Result<()> {
    insert_row(
        conn,
        &e.organisation_id,
        e.at,
        [e.actor_kind, &e.actor_id, e.action],
        [e.subject_kind, &e.subject_id],
    )
    .await
}

async fn insert_row(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    at: i64,
    [actor_kind, actor_id, action]: [&str; 3],
    [subject_kind, subject_id]: [&str; 2],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, organisation_id, at, actor_kind, actor_id, action, \
         subject_kind, subject_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(organisation_id)
    .bind(at)
    .bind(actor_kind)
    .bind(actor_id)
    .bind(action)
    .bind(subject_kind)
    .bind(subject_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// An audit entry written on its own (not inside the transaction of a record): reads,
/// and what the sync connections batch up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub organisation_id: String,
    /// `coordinator` or `device`.
    pub actor_kind: &'static str,
    pub actor_id: String,
    /// e.g. `document.read`, `document.sync`, `document.change`, `document.create`.
    pub action: &'static str,
    pub subject_kind: &'static str,
    pub subject_id: String,
    pub at: i64,
}

impl AuditEntry {
    /// A line about a document, now.
    pub fn document(
        organisation_id: &str,
        actor_kind: &'static str,
        actor_id: &str,
        action: &'static str,
        document: &str,
    ) -> Self {
        Self {
            organisation_id: organisation_id.to_owned(),
            actor_kind,
            actor_id: actor_id.to_owned(),
            action,
            subject_kind: "document",
            subject_id: document.to_owned(),
            at: now_ms(),
        }
    }
}

/// An audit event of one record with the actor's name, for the record's page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectAuditEvent {
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    /// The coordinator's name, or the volunteer's name and the device's name.
    pub actor_name: String,
    pub action: String,
}

/// How many audit events a record's page and its API show at most.
pub const SUBJECT_AUDIT_LIMIT: i64 = 200;

impl Store {
    /// Writes entries in one transaction. Entries of another organisation's records are
    /// the caller's mistake; nothing here checks them.
    pub async fn audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for e in entries {
            insert(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Who read or changed one record, newest first, with names to show.
    pub async fn audit_of_subject(
        &self,
        organisation_id: &str,
        subject_kind: &str,
        subject_id: &str,
    ) -> Result<Vec<SubjectAuditEvent>> {
        let rows = sqlx::query(
            "SELECT a.at, a.actor_kind, a.actor_id, a.action, c.display_name AS coordinator_name, \
             v.display_name AS volunteer_name, d.name AS device_name \
             FROM audit_events a \
             LEFT JOIN coordinators c ON a.actor_kind = 'coordinator' AND c.id = a.actor_id \
             LEFT JOIN devices d ON a.actor_kind = 'device' AND d.id = a.actor_id \
             LEFT JOIN volunteers v ON v.id = d.volunteer_id \
             WHERE a.organisation_id = $1 AND a.subject_kind = $2 AND a.subject_id = $3 \
             ORDER BY a.at DESC, a.id LIMIT $4",
        )
        .bind(organisation_id)
        .bind(subject_kind)
        .bind(subject_id)
        .bind(SUBJECT_AUDIT_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let coordinator: Option<String> = r.try_get("coordinator_name")?;
                let volunteer: Option<String> = r.try_get("volunteer_name")?;
                let device: Option<String> = r.try_get("device_name")?;
                let actor_name = match (coordinator, volunteer, device) {
                    (Some(c), _, _) => c,
                    (None, Some(v), Some(d)) => format!("{v} ({d})"),
                    _ => String::new(),
                };
                Ok(SubjectAuditEvent {
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_name,
                    action: r.try_get("action")?,
                })
            })
            .collect()
    }

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

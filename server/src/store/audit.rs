//! The audit trail (DSGVO): who did what to which record, when. Never the content. Lines
//! are written here, read per record (`audit_of_subject`) and searched over the whole
//! organisation (`audit_search`, the dashboard's Protokoll page and its CSV).

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

/// Whose lines to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditActor {
    Coordinator(String),
    /// A volunteer acts through their devices: the lines of any device of theirs.
    Volunteer(String),
}

/// Which lines of an organisation's trail to list; each field that is set narrows the
/// list, the organisation is always part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<AuditActor>,
    /// Any actor's id as written in the line (a device, a coordinator, `retention`).
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub subject_kind: Option<String>,
    /// Lines about any of these ids (a case's ids over its generations); empty: any.
    pub subject_ids: Vec<String>,
    /// From this moment on (milliseconds, inclusive).
    pub from: Option<i64>,
    /// Before this moment (milliseconds, exclusive).
    pub until: Option<i64>,
}

/// Where a page of the trail ended: the next page starts with the line after this one
/// (newest first; lines of the same millisecond ordered by id, so none is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: i64,
    pub id: String,
}

/// One line of an organisation's trail with the actor's name.
#[derive(Debug, Clone, Serialize)]
pub struct OrgAuditEvent {
    pub id: String,
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    /// The coordinator's name, or the volunteer's name and the device's name; empty for
    /// the system and for actors deleted since.
    pub actor_name: String,
    /// The volunteer a device belongs to.
    pub actor_volunteer_id: Option<String>,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
}

impl OrgAuditEvent {
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at: self.at,
            id: self.id.clone(),
        }
    }
}

/// How many lines one search returns at most, whatever the caller asks for.
pub const AUDIT_SEARCH_MAX: i64 = 100_000;

/// The name to show for the actor of a row joined as in `audit_of_subject`.
fn actor_name(r: &sqlx::any::AnyRow) -> Result<String> {
    let coordinator: Option<String> = r.try_get("coordinator_name")?;
    let volunteer: Option<String> = r.try_get("volunteer_name")?;
    let device: Option<String> = r.try_get("device_name")?;
    Ok(match (coordinator, volunteer, device) {
        (Some(c), _, _) => c,
        (None, Some(v), Some(d)) => format!("{v} ({d})"),
        _ => String::new(),
    })
}

enum Bound {
    Text(String),
    Number(i64),
}

/// The WHERE clause of a search and what its placeholders stand for. Only fixed text is
/// put together here; every value a caller gave is bound.
fn search_conditions(
    organisation_id: &str,
    filter: &AuditFilter,
    before: Option<&AuditCursor>,
) -> (String, Vec<Bound>) {
    let mut binds = vec![Bound::Text(organisation_id.to_owned())];
    let mut conditions = vec!["a.organisation_id = $1".to_owned()];
    let mut bind = |value: Bound| {
        binds.push(value);
        format!("${}", binds.len())
    };
    match &filter.actor {
        Some(AuditActor::Coordinator(id)) => {
            let p = bind(Bound::Text(id.clone()));
            conditions.push(format!("a.actor_kind = 'coordinator' AND a.actor_id = {p}"));
        }
        Some(AuditActor::Volunteer(id)) => {
            let p = bind(Bound::Text(id.clone()));
            conditions.push(format!(
                "a.actor_kind = 'device' AND a.actor_id IN \
                 (SELECT dv.id FROM devices dv WHERE dv.volunteer_id = {p})"
            ));
        }
        None => {}
    }
    for (column, value) in [
        ("a.actor_id", &filter.actor_id),
        ("a.action", &filter.action),
        ("a.subject_kind", &filter.subject_kind),
    ] {
        if let Some(v) = value {
            let p = bind(Bound::Text(v.clone()));
            conditions.push(format!("{column} = {p}"));
        }
    }
    if !filter.subject_ids.is_empty() {
        let ps: Vec<String> = filter
            .subject_ids
            .iter()
            .map(|id| bind(Bound::Text(id.clone())))
            .collect();
        conditions.push(format!("a.subject_id IN ({})", ps.join(", ")));
    }
    if let Some(from) = filter.from {
        let p = bind(Bound::Number(from));
        conditions.push(format!("a.at >= {p}"));
    }
    if let Some(until) = filter.until {
        let p = bind(Bound::Number(until));
        conditions.push(format!("a.at < {p}"));
    }
    if let Some(c) = before {
        let at = bind(Bound::Number(c.at));
        let id = bind(Bound::Text(c.id.clone()));
        conditions.push(format!("(a.at < {at} OR (a.at = {at} AND a.id < {id}))"));
    }
    (conditions.join(" AND "), binds)
}

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
                Ok(SubjectAuditEvent {
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_name: actor_name(r)?,
                    action: r.try_get("action")?,
                })
            })
            .collect()
    }

    /// The organisation's lines that `filter` lets through, newest first, after `before`
    /// (a page's last line), at most `limit` (capped at `AUDIT_SEARCH_MAX`).
    pub async fn audit_search(
        &self,
        organisation_id: &str,
        filter: &AuditFilter,
        before: Option<&AuditCursor>,
        limit: i64,
    ) -> Result<Vec<OrgAuditEvent>> {
        let (conditions, binds) = search_conditions(organisation_id, filter, before);
        let limit_at = binds.len() + 1;
        let mut query = sqlx::query(safe_sql!(
            "SELECT a.id, a.at, a.actor_kind, a.actor_id, a.action, a.subject_kind, \
             a.subject_id, c.display_name AS coordinator_name, v.display_name AS volunteer_name, \
             d.name AS device_name, d.volunteer_id AS device_volunteer_id \
             FROM audit_events a \
             LEFT JOIN coordinators c ON a.actor_kind = 'coordinator' AND c.id = a.actor_id \
             LEFT JOIN devices d ON a.actor_kind = 'device' AND d.id = a.actor_id \
             LEFT JOIN volunteers v ON v.id = d.volunteer_id \
             WHERE {conditions} ORDER BY a.at DESC, a.id DESC LIMIT ${limit_at}"
        ));
        for b in binds {
            query = match b {
                Bound::Text(t) => query.bind(t),
                Bound::Number(n) => query.bind(n),
            };
        }
        let rows = query
            .bind(limit.clamp(0, AUDIT_SEARCH_MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OrgAuditEvent {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_name: actor_name(r)?,
                    actor_volunteer_id: r.try_get("device_volunteer_id")?,
                    action: r.try_get("action")?,
                    subject_kind: r.try_get("subject_kind")?,
                    subject_id: r.try_get("subject_id")?,
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

//! Retention (issue 15): what the purge job (`crate::purge`) reads and writes: the closed
//! cases that are due, erasing the personal fields of finished requests, deleting old
//! audit lines, and the PostgreSQL advisory lock under which one instance purges at a
//! time. Also the de-identified figures a deleted case leaves for the reports, written by
//! `delete_document` in the transaction that deletes the case, and read back by the
//! reports beside the live cases.

use std::collections::BTreeMap;

use lotse_protocol::{CaseView, HoursView};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::Audit;
use super::organisations::SETTINGS_COLUMNS;
use super::{Backend, OrganisationSettings, Result, Store, json_column, new_id, to_json};

/// The session-level advisory lock one purge holds on PostgreSQL ("LotsePrg").
const PURGE_LOCK: i64 = 0x4c6f_7473_6550_7267;

/// Who the purge writes into the audit trail as.
pub const PURGE_ACTOR: (&str, &str) = ("system", "retention");

/// The request statuses after which a request's personal fields are no longer needed.
const FINISHED: &str = "('done', 'cancelled', 'expired')";

/// What is kept of a case when it is deleted: what the reports count, nothing that
/// names or describes the person. Hours are summed per person and month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFigures {
    /// The local month (`YYYY-MM`) the case began; empty if its start does not read.
    pub started: String,
    pub topic: String,
    pub languages: Vec<String>,
    /// The case's kind, once the case schema has one.
    pub kind: Option<String>,
    pub hours: Vec<HoursFigure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursFigure {
    /// `YYYY-MM` of the entries' days.
    pub month: String,
    /// Whose time it was, as the readers attribute it.
    pub author_id: String,
    pub minutes: u64,
    pub travel_minutes: u64,
}

impl CaseFigures {
    /// The figures of `view`, with `author` naming whose time each hours entry was.
    pub fn of(view: &CaseView, author: impl Fn(&HoursView) -> String) -> Self {
        let mut sums: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for h in &view.hours {
            // The schema keeps days as YYYY-MM-DD; what the reports count is the month.
            // A day without one is left out, as the reports leave it out of live cases.
            let Some(month) = h.date.get(..7) else {
                continue;
            };
            let sum = sums.entry((month.to_owned(), author(h))).or_default();
            sum.0 += u64::from(h.minutes);
            sum.1 += u64::from(h.travel_minutes);
        }
        Self {
            started: local_month(view.created_at).unwrap_or_default(),
            topic: view.topic.as_str().to_owned(),
            languages: view.languages.clone(),
            kind: view.kind.clone(),
            hours: sums
                .into_iter()
                .map(
                    |((month, author_id), (minutes, travel_minutes))| HoursFigure {
                        month,
                        author_id,
                        minutes,
                        travel_minutes,
                    },
                )
                .collect(),
        }
    }
}

/// Kept figures of deleted cases in a span of months, for the reports.
#[derive(Debug, Clone, Default)]
pub struct KeptFigures {
    /// Deleted cases that began in the span.
    pub cases: Vec<KeptCase>,
    /// Their hours in the span, one row per case, month and person.
    pub hours: Vec<KeptHours>,
}

#[derive(Debug, Clone)]
pub struct KeptCase {
    pub started: String,
    pub topic: String,
    pub languages: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KeptHours {
    pub month: String,
    pub topic: String,
    pub languages: Vec<String>,
    pub minutes: u64,
    pub travel_minutes: u64,
}

/// The local month (`YYYY-MM`, Europe/Berlin as the reports count) of a time.
pub fn local_month(ms: i64) -> Option<String> {
    let z = jiff::Timestamp::from_millisecond(ms)
        .ok()?
        .to_zoned(local_tz());
    Some(format!("{:04}-{:02}", z.year(), z.month()))
}

/// The time `months` calendar months before `now` (local time). Where that cannot be
/// computed, a time before anything, so that nothing is purged by mistake.
pub fn months_before(now: i64, months: u32) -> i64 {
    let earlier = || -> Option<i64> {
        let span = jiff::Span::new().try_months(i64::from(months)).ok()?;
        let z = jiff::Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(local_tz());
        Some(z.checked_sub(span).ok()?.timestamp().as_millisecond())
    };
    earlier().unwrap_or(i64::MIN)
}

/// The time `days` days of 24 hours before `now`.
pub fn days_before(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days).saturating_mul(24 * 3_600_000))
}

fn local_tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(crate::matching::LOCAL_TZ).unwrap_or(jiff::tz::TimeZone::UTC)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(row: &AnyRow, column: &str) -> Result<u64> {
    let v: i64 = row.try_get(column)?;
    Ok(u64::try_from(v).unwrap_or(0))
}

/// Writes the figures of a case being deleted, inside the deleting transaction.
pub(super) async fn keep(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
    figures: &CaseFigures,
) -> Result<()> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO kept_cases (id, organisation_id, started, topic, languages, kind) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(organisation_id)
    .bind(&figures.started)
    .bind(&figures.topic)
    .bind(to_json(&figures.languages))
    .bind(figures.kind.as_deref())
    .execute(&mut *conn)
    .await?;
    for h in &figures.hours {
        sqlx::query(
            "INSERT INTO kept_hours (kept_case_id, organisation_id, month, author_id, minutes, \
             travel_minutes) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(organisation_id)
        .bind(&h.month)
        .bind(&h.author_id)
        .bind(count(h.minutes))
        .bind(count(h.travel_minutes))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether the case is still closed and was closed at or before `closed_before`, inside
/// the deleting transaction: a case reopened since the purge listed it stays.
pub(super) async fn still_due(
    conn: &mut sqlx::AnyConnection,
    document_id: &str,
    closed_before: i64,
) -> Result<bool> {
    let closed_at: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT closed_at FROM case_index WHERE document_id = $1 AND status = 'closed'",
    )
    .bind(document_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(closed_at.flatten().is_some_and(|at| at <= closed_before))
}

/// Held while one purge runs. On PostgreSQL a session-level advisory lock on one
/// connection of the pool: another instance's `try_purge_lock` gets `None` meanwhile, and
/// should this process die, the database ends the session and the lock with it. On
/// SQLite there is one instance, and nothing to hold.
pub struct PurgeLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl PurgeLock {
    /// Gives the lock back and the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PURGE_LOCK)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                // Closing the connection ends its session, which releases the lock.
                tracing::warn!(error = %e, "could not release the purge lock; closing its connection");
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for PurgeLock {
    fn drop(&mut self) {
        // Dropped without `release` (an error or a cancelled task): a connection still
        // holding the lock must not go back to the pool, where the lock would outlive
        // the purge; closed, its session and the lock end.
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

impl Store {
    /// The purge lock if no other purge holds it (`None`: another instance is purging).
    pub async fn try_purge_lock(&self) -> Result<Option<PurgeLock>> {
        if self.backend != Backend::Postgres {
            return Ok(Some(PurgeLock { conn: None }));
        }
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then_some(PurgeLock { conn: Some(conn) }))
    }

    /// Every organisation with its settings.
    pub async fn all_organisation_settings(&self) -> Result<Vec<(String, OrganisationSettings)>> {
        let rows = sqlx::query(safe_sql!(
            "SELECT id, {SETTINGS_COLUMNS} FROM organisations ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, OrganisationSettings::of_row(r)?)))
            .collect()
    }

    /// The organisation's closed cases that were closed at or before `closed_before`,
    /// longest closed first.
    pub async fn closed_cases_due(
        &self,
        organisation_id: &str,
        closed_before: i64,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT document_id FROM case_index WHERE organisation_id = $1 AND status = 'closed' \
             AND closed_at <= $2 ORDER BY closed_at, document_id",
        )
        .bind(organisation_id)
        .bind(closed_before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Erases the contact, place address, description and person label (and the name a
    /// migrant gave as the requester) of the organisation's requests that were done,
    /// cancelled or expired at or before `finished_before`, marks them erased and writes
    /// an audit line for each, in one transaction. What the reports count (topic,
    /// languages, status, time) stays. Returns how many were erased.
    pub async fn erase_finished_requests(
        &self,
        organisation_id: &str,
        finished_before: i64,
        now: i64,
    ) -> Result<u64> {
        // Finished when the event that finished it was written; a request without such
        // an event (older data) by its last change.
        let due = safe_sql!(
            "SELECT r.id FROM requests r WHERE r.organisation_id = $1 AND r.erased_at IS NULL \
             AND r.status IN {FINISHED} AND COALESCE((SELECT MAX(e.at) FROM request_events e \
             WHERE e.request_id = r.id AND e.action IN {FINISHED}), r.updated_at) <= $2"
        );
        // A plain read first, so an hourly purge with nothing to do takes no write lock.
        let any: Option<String> = sqlx::query_scalar(safe_sql!("{} LIMIT 1", due.0))
            .bind(organisation_id)
            .bind(finished_before)
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(due)
            .bind(organisation_id)
            .bind(finished_before)
            .fetch_all(&mut *tx)
            .await?;
        for id in &ids {
            sqlx::query(
                "UPDATE requests SET contact = NULL, place_address = NULL, description = '', \
                 person_label = '', institution_name = CASE WHEN institution_kind = 'migrantin' \
                 THEN '' ELSE institution_name END, erased_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Audit {
                organisation_id,
                actor_kind: PURGE_ACTOR.0,
                actor_id: PURGE_ACTOR.1,
                action: "request.erase",
                subject_kind: "request",
                subject_id: id,
            }
            .write(&mut tx)
            .await?;
        }
        tx.commit().await?;
        // The old values must not stay readable in the WAL either.
        self.scrub_files().await;
        Ok(ids.len() as u64)
    }

    /// Deletes the organisation's audit lines written before `before`.
    pub async fn delete_audit_before(&self, organisation_id: &str, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit_events WHERE organisation_id = $1 AND at < $2")
            .bind(organisation_id)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The kept figures of deleted cases for the months `from` to `to` (`YYYY-MM`,
    /// inclusive): the cases that began then and the hours spent then.
    /// Minutes and travel minutes of deleted cases' hours in `month` (`YYYY-MM`), by
    /// whose time they were: what monthly statements add for cases gone since.
    pub async fn kept_hours_by_author(
        &self,
        organisation_id: &str,
        month: &str,
    ) -> Result<std::collections::HashMap<String, (u64, u64)>> {
        let rows = sqlx::query(
            // PostgreSQL sums BIGINT to NUMERIC: cast back for one reader on both.
            "SELECT author_id, CAST(SUM(minutes) AS BIGINT) AS minutes, \
             CAST(SUM(travel_minutes) AS BIGINT) AS travel \
             FROM kept_hours WHERE organisation_id = $1 AND month = $2 GROUP BY author_id",
        )
        .bind(organisation_id)
        .bind(month)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let minutes: i64 = r.try_get("minutes")?;
                let travel: i64 = r.try_get("travel")?;
                Ok((
                    r.try_get("author_id")?,
                    (minutes.max(0) as u64, travel.max(0) as u64),
                ))
            })
            .collect()
    }

    pub async fn kept_figures(
        &self,
        organisation_id: &str,
        from: &str,
        to: &str,
    ) -> Result<KeptFigures> {
        let cases = sqlx::query(
            "SELECT started, topic, languages FROM kept_cases \
             WHERE organisation_id = $1 AND started >= $2 AND started <= $3",
        )
        .bind(organisation_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let hours = sqlx::query(
            "SELECT h.month, c.topic, c.languages, h.minutes, h.travel_minutes \
             FROM kept_hours h JOIN kept_cases c ON c.id = h.kept_case_id \
             WHERE h.organisation_id = $1 AND h.month >= $2 AND h.month <= $3",
        )
        .bind(organisation_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(KeptFigures {
            cases: cases
                .iter()
                .map(|r| {
                    Ok(KeptCase {
                        started: r.try_get("started")?,
                        topic: r.try_get("topic")?,
                        languages: json_column(r.try_get("languages")?, "kept languages")?,
                    })
                })
                .collect::<Result<_>>()?,
            hours: hours
                .iter()
                .map(|r| {
                    Ok(KeptHours {
                        month: r.try_get("month")?,
                        topic: r.try_get("topic")?,
                        languages: json_column(r.try_get("languages")?, "kept languages")?,
                        minutes: unsigned(r, "minutes")?,
                        travel_minutes: unsigned(r, "travel_minutes")?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lotse_protocol::{HoursId, Status, Topic};

    use super::*;

    fn hours(author: &str, date: &str, minutes: u32, travel: u32) -> HoursView {
        HoursView {
            correction: None,
            id: HoursId::new(format!("{author}{date}{minutes}")),
            author: author.into(),
            date: date.into(),
            minutes,
            travel_minutes: travel,
            kind: "begleitung".into(),
        }
    }

    #[test]
    fn figures_sum_hours_per_person_and_month_and_keep_no_label() {
        let view = CaseView {
            kind: Some("patenschaft".into()),
            schema: 1,
            organisation_id: "org".into(),
            label: "F.K.".into(),
            languages: vec!["ar".into(), "fr".into()],
            topic: Topic::Gesundheit,
            status: Status::Closed,
            // 2026-02-28 23:30 UTC is already March in Berlin.
            created_at: 1_772_321_400_000,
            notes: vec![],
            appointments: vec![],
            hours: vec![
                hours("amira", "2026-03-04", 90, 30),
                hours("amira", "2026-03-20", 60, 10),
                hours("amira", "2026-04-01", 30, 0),
                hours("olena", "2026-03-05", 45, 15),
            ],
        };
        let f = CaseFigures::of(&view, |h| h.author.clone());
        assert_eq!(f.started, "2026-03");
        assert_eq!(f.topic, "gesundheit");
        assert_eq!(f.languages, ["ar", "fr"]);
        let sums: Vec<(&str, &str, u64, u64)> = f
            .hours
            .iter()
            .map(|h| {
                (
                    h.month.as_str(),
                    h.author_id.as_str(),
                    h.minutes,
                    h.travel_minutes,
                )
            })
            .collect();
        assert_eq!(
            sums,
            [
                ("2026-03", "amira", 150, 40),
                ("2026-03", "olena", 45, 15),
                ("2026-04", "amira", 30, 0),
            ]
        );
    }

    #[test]
    fn retention_counts_calendar_months_and_never_purges_on_nonsense() {
        // 2026-03-31 12:00 UTC; a month earlier is the end of February.
        let now = 1_774_958_400_000;
        assert_eq!(local_month(months_before(now, 1)).unwrap(), "2026-02");
        assert_eq!(local_month(months_before(now, 24)).unwrap(), "2024-03");
        assert_eq!(months_before(now, 0), now);
        assert_eq!(months_before(now, u32::MAX), i64::MIN);
        assert_eq!(days_before(now, 1), now - 86_400_000);
    }
}

//! The purge job (issue 15): carries out each organisation's retention settings. Closed
//! cases past their retention are deleted through the one deletion path
//! (`Hub::delete_if`: tombstone, figures kept for the reports, phones told, SQLite files
//! scrubbed), the personal fields of finished requests past theirs are erased, and audit
//! lines older than the audit retention are deleted.
//!
//! [`run_once`] is one pass, which the tests call with the time they need; [`spawn`]
//! runs it every hour. On PostgreSQL a pass runs under an advisory lock, so of several
//! instances sharing a database one purges at a time and the others skip that hour
//! (their own timers try again). Each deletion re-checks in its own transaction that the
//! case is still closed and due, so even two passes at once could not delete a case that
//! was reopened, nor delete one twice. The log says how many, never which or what.

use std::time::Duration;

use lotse_protocol::DocumentId;

use crate::hub::Hub;
use crate::store::{
    AuditEntry, Deleted, DeletionReason, PURGE_ACTOR, Store, StoreError, days_before, months_before,
};

/// How often the purge runs.
pub const EVERY: Duration = Duration::from_secs(60 * 60);
/// How long after the start the first pass runs: a server that restarts often still
/// purges, and one that has just started (a test, a deployment) is not busy with it.
pub const FIRST_AFTER: Duration = Duration::from_secs(120);

/// What one pass did: counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// `false`: another instance held the purge lock, and this pass did nothing.
    pub ran: bool,
    pub organisations: u64,
    pub cases_deleted: u64,
    pub requests_erased: u64,
    pub audit_lines_deleted: u64,
    /// Steps that failed (a case that could not be deleted, a query of one
    /// organisation); the next pass tries them again.
    pub failed: u64,
}

/// One pass over every organisation, as if it were `now` (ms).
pub async fn run_once(store: &Store, hub: &Hub, now: i64) -> Result<PurgeReport, StoreError> {
    let Some(lock) = store.try_purge_lock().await? else {
        tracing::info!("retention purge skipped: another instance is purging");
        return Ok(PurgeReport::default());
    };
    let mut report = PurgeReport {
        ran: true,
        ..PurgeReport::default()
    };
    let result = purge(store, hub, now, &mut report).await;
    lock.release().await;
    result?;
    tracing::info!(
        organisations = report.organisations,
        cases_deleted = report.cases_deleted,
        requests_erased = report.requests_erased,
        audit_lines_deleted = report.audit_lines_deleted,
        failed = report.failed,
        "retention purge done"
    );
    Ok(report)
}

async fn purge(
    store: &Store,
    hub: &Hub,
    now: i64,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    for (organisation_id, settings) in store.all_organisation_settings().await? {
        report.organisations += 1;
        let org = organisation_id.as_str();
        let closed_before = months_before(now, settings.case_retention_months);
        match store.closed_cases_due(org, closed_before).await {
            Ok(ids) => {
                for raw in ids {
                    match delete_case(hub, org, &raw, closed_before).await {
                        Ok(true) => report.cases_deleted += 1,
                        // Reopened or deleted since it was listed.
                        Ok(false) => {}
                        Err(e) => {
                            report.failed += 1;
                            tracing::warn!(document_id = %raw, error = %e, "purge: a closed case could not be deleted");
                        }
                    }
                }
            }
            Err(e) => failed(report, "closed cases", &e),
        }
        let finished_before = days_before(now, settings.request_retention_days);
        match store
            .erase_finished_requests(org, finished_before, now)
            .await
        {
            Ok(n) => report.requests_erased += n,
            Err(e) => failed(report, "requests", &e),
        }
        let audit_before = months_before(now, settings.audit_retention_months);
        match store.delete_audit_before(org, audit_before).await {
            Ok(n) => report.audit_lines_deleted += n,
            Err(e) => failed(report, "audit lines", &e),
        }
    }
    Ok(())
}

fn failed(report: &mut PurgeReport, what: &str, e: &StoreError) {
    report.failed += 1;
    tracing::warn!(what, error = %e, "purge: a step failed");
}

async fn delete_case(
    hub: &Hub,
    organisation_id: &str,
    raw: &str,
    closed_before: i64,
) -> Result<bool, String> {
    let id: DocumentId = raw
        .parse()
        .map_err(|_| "unreadable document id".to_owned())?;
    let (actor_kind, actor_id) = PURGE_ACTOR;
    let audit = AuditEntry::document(
        organisation_id,
        actor_kind,
        actor_id,
        "document.delete",
        raw,
    );
    let deleted = hub
        .delete_if(
            organisation_id,
            &id,
            DeletionReason::Retention,
            &audit,
            Some(closed_before),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(matches!(deleted, Deleted::Done(_)))
}

/// The running purge timer; dropping it stops the timer (a pass in flight is abandoned,
/// its open transaction rolled back).
pub struct Purger(tokio::task::JoinHandle<()>);

impl Drop for Purger {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs [`run_once`] [`FIRST_AFTER`] the start and then every [`EVERY`].
pub fn spawn(store: Store, hub: std::sync::Arc<Hub>) -> Purger {
    spawn_every(store, hub, FIRST_AFTER, EVERY)
}

/// [`spawn`] with other times (tests).
pub fn spawn_every(
    store: Store,
    hub: std::sync::Arc<Hub>,
    first: Duration,
    every: Duration,
) -> Purger {
    Purger(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        // A pass that took long (or a suspended machine) is not followed by a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&store, &hub, crate::store::now_ms()).await {
                tracing::warn!(error = %e, "retention purge failed; it runs again in an hour");
            }
        }
    }))
}

//! Web Push storage: subscriptions (each owned by one device or one coordinator) and the
//! outbox that the push worker drains, and queueing notices (`notice.rs`) into it. Only
//! SQL lives here; encryption, headers and the sending itself are `crate::push`'s.
//!
//! The outbox is at-least-once: a row is written in the transaction of the decision it
//! announces and deleted only after the push service accepted it. A worker claims a row
//! with a token and a lease (`next_attempt_at` moves to the lease's end); a completion
//! counts only while the token still matches, so a row replaced or re-claimed meanwhile
//! is never lost to a stale completion.
//!
//! Pushes must never make the decision they announce fail. `enqueue_rows` runs
//! in the requests code's transaction, so nothing here may form a lock cycle with it on
//! PostgreSQL: claims skip locked rows instead of waiting, outbox rows carry no foreign
//! key (a subscription deleted while a notice for it is queued leaves an orphan row that
//! the next claim discards), and a subscription's pending rows are deleted after the
//! transaction that deleted it, one statement on its own.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::Audit;
use super::notice::Notice;
use super::{Backend, OnConflict, Result, Store, new_id, now_ms};

/// At most this many subscriptions per device or coordinator: a new one beyond it
/// replaces the least recently registered (browsers and distributors re-subscribe with
/// new endpoints and rarely say goodbye to the old one).
pub const MAX_SUBSCRIPTIONS_PER_OWNER: usize = 10;

/// Who a subscription belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOwner<'a> {
    Device(&'a str),
    /// A coordinator's browser, heard only while `session` (the hash of the login that
    /// registered it) lasts; the login's end removes it.
    Coordinator {
        id: &'a str,
        session: &'a str,
    },
}

impl<'a> PushOwner<'a> {
    fn column(self) -> &'static str {
        match self {
            Self::Device(_) => "device_id",
            Self::Coordinator { .. } => "coordinator_id",
        }
    }

    fn owner_id(&self) -> &str {
        match self {
            Self::Device(id) | Self::Coordinator { id, .. } => id,
        }
    }

    fn session(self) -> Option<&'a str> {
        match self {
            Self::Device(_) => None,
            Self::Coordinator { session, .. } => Some(session),
        }
    }

    fn actor_kind(self) -> &'static str {
        match self {
            Self::Device(_) => "device",
            Self::Coordinator { .. } => "coordinator",
        }
    }
}

/// A validated subscription: keys are base64url without padding.
#[derive(Debug, Clone)]
pub struct NewPushSubscription<'a> {
    pub endpoint: &'a str,
    pub p256dh: &'a str,
    pub auth: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedPushSubscription {
    Created(String),
    /// The caller had registered this endpoint already; its keys are refreshed.
    Updated(String),
}

/// Which of the caller's subscriptions to remove.
#[derive(Debug, Clone, Copy)]
pub enum PushSubscriptionRef<'a> {
    Endpoint(&'a str),
    Id(&'a str),
}

/// A pending send, as the outbox stores it (built from a `Notice`, see `notice.rs`).
#[derive(Debug, Clone)]
pub struct OutboxEntry<'a> {
    pub kind: &'a str,
    /// The Web Push `Topic` header; a newer entry with the same topic for the same
    /// subscription replaces a pending one.
    pub push_topic: &'a str,
    pub payload: &'a str,
    pub urgency: &'a str,
    pub expires_at: i64,
}

/// A claimed outbox row with what sending it needs.
#[derive(Debug, Clone)]
pub struct ClaimedPush {
    pub id: String,
    pub claim_token: String,
    pub subscription_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub kind: String,
    pub push_topic: String,
    pub payload: String,
    pub urgency: String,
    pub expires_at: i64,
    /// Including the attempt this claim is for.
    pub attempts: i64,
    /// The subscription's device was revoked: the row must not be sent.
    pub device_revoked: bool,
}

fn claimed(row: &AnyRow, claim_token: String) -> Result<ClaimedPush> {
    Ok(ClaimedPush {
        id: row.try_get("id")?,
        claim_token,
        subscription_id: row.try_get("subscription_id")?,
        endpoint: row.try_get("endpoint")?,
        p256dh: row.try_get("p256dh")?,
        auth: row.try_get("auth")?,
        kind: row.try_get("kind")?,
        push_topic: row.try_get("push_topic")?,
        payload: row.try_get("payload")?,
        urgency: row.try_get("urgency")?,
        expires_at: row.try_get("expires_at")?,
        attempts: row.try_get("attempts")?,
        device_revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

/// The push subscriptions of the volunteers' devices that are not revoked.
pub async fn volunteer_subscriptions(
    conn: &mut sqlx::AnyConnection,
    volunteer_ids: &[String],
) -> Result<Vec<String>> {
    let mut volunteer_ids: Vec<&String> = volunteer_ids.iter().collect();
    volunteer_ids.sort_unstable();
    volunteer_ids.dedup();
    let mut subscriptions: Vec<String> = Vec::new();
    for volunteer_id in volunteer_ids {
        subscriptions.extend(
            sqlx::query_scalar::<_, String>(
                "SELECT s.id FROM push_subscriptions s JOIN devices d ON d.id = s.device_id \
                 WHERE d.volunteer_id = $1 AND d.revoked_at IS NULL",
            )
            .bind(volunteer_id)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(subscriptions)
}

/// The push subscriptions of the organisation's coordinators (their browsers) whose
/// login still lasts: one registered before a logout or an expired session stays silent.
pub async fn coordinator_subscriptions(
    conn: &mut sqlx::AnyConnection,
    organisation_id: &str,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT s.id FROM push_subscriptions s JOIN coordinators c ON c.id = s.coordinator_id \
         JOIN coordinator_sessions l ON l.token_hash = s.session_hash \
         AND l.coordinator_id = s.coordinator_id \
         WHERE c.organisation_id = $1 AND s.organisation_id = $1 AND l.expires_at > $2",
    )
    .bind(organisation_id)
    .bind(now_ms())
    .fetch_all(&mut *conn)
    .await?)
}

/// Queues each entry for its subscription, in the caller's transaction; returns how many
/// rows were queued or refreshed. Call it once per transaction with everything that
/// transaction queues: rows are locked in ascending (subscription, topic), the order
/// `Store::finish_pushes` locks them in too, so a queueing transaction and the worker's
/// cleanup never wait for each other in a cycle on PostgreSQL (touching the same rows in
/// opposite orders was a deadlock).
pub async fn enqueue_rows(
    conn: &mut sqlx::AnyConnection,
    mut rows: Vec<(String, OutboxEntry<'_>)>,
) -> Result<u64> {
    rows.sort_by(|a, b| (&a.0, a.1.push_topic).cmp(&(&b.0, b.1.push_topic)));
    rows.dedup_by(|a, b| a.0 == b.0 && a.1.push_topic == b.1.push_topic);
    let now = now_ms();
    let mut queued = 0;
    for (subscription_id, entry) in &rows {
        // A pending row of the same topic is replaced, and its claim (if a worker is
        // sending the old text right now) voided, so the newer text goes out next.
        sqlx::query(
            "INSERT INTO push_outbox (id, subscription_id, kind, push_topic, payload, urgency, \
             expires_at, attempts, next_attempt_at, claim_token, claimed_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, NULL, NULL, $8) \
             ON CONFLICT (subscription_id, push_topic) DO UPDATE SET kind = excluded.kind, \
             payload = excluded.payload, urgency = excluded.urgency, \
             expires_at = excluded.expires_at, attempts = 0, \
             next_attempt_at = excluded.next_attempt_at, claim_token = NULL, claimed_at = NULL",
        )
        .bind(new_id())
        .bind(subscription_id)
        .bind(entry.kind)
        .bind(entry.push_topic)
        .bind(entry.payload)
        .bind(entry.urgency)
        .bind(entry.expires_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// Who a notice is for.
#[derive(Debug, Clone, Copy)]
pub enum Recipients<'a> {
    /// The volunteers' devices that are not revoked.
    Volunteers(&'a [String]),
    /// The browsers of the organisation's coordinators.
    Coordinators(&'a str),
}

/// Queues each notice for its recipients' push subscriptions inside the caller's
/// transaction, so the pushes commit (or roll back) with the decision they announce.
/// Give it everything one transaction queues, in one call: the rows are then locked in
/// the one order the worker uses too (see `enqueue_rows`). Returns how many sends
/// were queued. Call `Push::wake` after the commit.
pub async fn enqueue_each(
    conn: &mut sqlx::AnyConnection,
    notices: &[(Recipients<'_>, &Notice)],
) -> Result<u64> {
    let now = now_ms();
    let prepared: Vec<_> = notices.iter().map(|(_, n)| n.prepare(now)).collect();
    let mut rows = Vec::new();
    for ((to, _), p) in notices.iter().zip(&prepared) {
        let subscriptions = match to {
            Recipients::Volunteers([]) => continue,
            Recipients::Volunteers(ids) => volunteer_subscriptions(conn, ids).await?,
            Recipients::Coordinators(org) => coordinator_subscriptions(conn, org).await?,
        };
        rows.extend(subscriptions.into_iter().map(|s| (s, p.entry())));
    }
    enqueue_rows(conn, rows).await
}

/// Queues `notice` for the volunteers' devices (see `enqueue_each`).
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    volunteer_ids: &[String],
    notice: &Notice,
) -> Result<u64> {
    enqueue_each(conn, &[(Recipients::Volunteers(volunteer_ids), notice)]).await
}

impl Store {
    /// Due outbox rows to claim. PostgreSQL locks them at once and skips rows another
    /// transaction holds (another worker's claim, or a requests transaction replacing a
    /// pending notice), so a claim never waits and never deadlocks; SQLite has one writer
    /// at a time anyway.
    fn due_pushes_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => {
                "SELECT id FROM push_outbox WHERE next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, id LIMIT $2"
            }
            Backend::Postgres => {
                "SELECT id FROM push_outbox WHERE next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
            }
        }
    }

    /// Registers (or refreshes) a subscription for `owner` in `organisation_id`. An
    /// endpoint registered by someone else moves to the new owner (the same browser, now
    /// used by another coordinator; a phone enrolled anew), and what was pending for the
    /// old owner is dropped with it.
    pub async fn save_push_subscription(
        &self,
        organisation_id: &str,
        owner: PushOwner<'_>,
        sub: &NewPushSubscription<'_>,
    ) -> Result<SavedPushSubscription> {
        let now = now_ms();
        let mut removed = Vec::new();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT id, organisation_id, device_id, coordinator_id FROM push_subscriptions \
             WHERE endpoint = $1",
        )
        .bind(sub.endpoint)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let id: String = row.try_get("id")?;
            let org: String = row.try_get("organisation_id")?;
            let current: Option<String> = row.try_get(owner.column())?;
            if org == organisation_id && current.as_deref() == Some(owner.owner_id()) {
                // A coordinator's browser registers again after each login: the
                // subscription now lasts as long as that login.
                sqlx::query(
                    "UPDATE push_subscriptions SET p256dh = $1, auth = $2, updated_at = $3, \
                     session_hash = $4 WHERE id = $5",
                )
                .bind(sub.p256dh)
                .bind(sub.auth)
                .bind(now)
                .bind(owner.session())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(SavedPushSubscription::Updated(id));
            }
            delete_subscription(&mut tx, &id).await?;
            removed.push(id);
        }
        let id = new_id();
        let (device_id, coordinator_id) = match owner {
            PushOwner::Device(d) => (Some(d), None),
            PushOwner::Coordinator { id, .. } => (None, Some(id)),
        };
        sqlx::query(
            "INSERT INTO push_subscriptions (id, organisation_id, device_id, coordinator_id, \
             session_hash, endpoint, p256dh, auth, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&id)
        .bind(organisation_id)
        .bind(device_id)
        .bind(coordinator_id)
        .bind(owner.session())
        .bind(sub.endpoint)
        .bind(sub.p256dh)
        .bind(sub.auth)
        .bind(now)
        .execute(&mut *tx)
        .await
        .on_conflict("push subscription")?;
        let mine: Vec<String> = sqlx::query_scalar(safe_sql!(
            "SELECT id FROM push_subscriptions WHERE {} = $1 ORDER BY updated_at DESC, id DESC",
            owner.column()
        ))
        .bind(owner.owner_id())
        .fetch_all(&mut *tx)
        .await?;
        // The new one stays; the oldest of the others go.
        let surplus = mine
            .into_iter()
            .filter(|other| *other != id)
            .skip(MAX_SUBSCRIPTIONS_PER_OWNER - 1);
        for old in surplus {
            delete_subscription(&mut tx, &old).await?;
            removed.push(old);
        }
        Audit {
            organisation_id,
            actor_kind: owner.actor_kind(),
            actor_id: owner.owner_id(),
            action: "push_subscription.create",
            subject_kind: "push_subscription",
            subject_id: &id,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        for old in &removed {
            self.forget_pending(old).await?;
        }
        Ok(SavedPushSubscription::Created(id))
    }

    /// Removes one of `owner`'s own subscriptions and what is pending for it. `false`
    /// when the owner has no such subscription (someone else's looks the same).
    pub async fn delete_push_subscription(
        &self,
        organisation_id: &str,
        owner: PushOwner<'_>,
        which: PushSubscriptionRef<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let (column, value) = match which {
            PushSubscriptionRef::Endpoint(e) => ("endpoint", e),
            PushSubscriptionRef::Id(id) => ("id", id),
        };
        let found: Option<String> = sqlx::query_scalar(safe_sql!(
            "SELECT id FROM push_subscriptions WHERE {column} = $1 AND {} = $2 \
             AND organisation_id = $3",
            owner.column()
        ))
        .bind(value)
        .bind(owner.owner_id())
        .bind(organisation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = found else {
            return Ok(false);
        };
        delete_subscription(&mut tx, &id).await?;
        Audit {
            organisation_id,
            actor_kind: owner.actor_kind(),
            actor_id: owner.owner_id(),
            action: "push_subscription.delete",
            subject_kind: "push_subscription",
            subject_id: &id,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        self.forget_pending(&id).await?;
        Ok(true)
    }

    /// The push service said the subscription is gone (404/410), or it can never be
    /// sent to again: remove it with everything pending for it.
    pub async fn drop_push_subscription(&self, subscription_id: &str) -> Result<()> {
        delete_subscription(&mut *self.pool.acquire().await?, subscription_id).await?;
        self.forget_pending(subscription_id).await
    }

    /// Removes the coordinators' subscriptions whose login has ended (logged out, logged
    /// out everywhere, expired and swept), with what was pending for them. Called after
    /// sessions are deleted; the sending side skips them already (see
    /// `coordinator_subscriptions`), this is the cleanup.
    pub(super) async fn drop_sessionless_subscriptions(&self) -> Result<()> {
        let gone: Vec<String> = sqlx::query_scalar(
            "SELECT s.id FROM push_subscriptions s WHERE s.coordinator_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM coordinator_sessions l \
             WHERE l.token_hash = s.session_hash AND l.coordinator_id = s.coordinator_id)",
        )
        .fetch_all(&self.pool)
        .await?;
        for id in &gone {
            self.drop_push_subscription(id).await?;
        }
        Ok(())
    }

    /// Deletes what is pending for a deleted subscription: one statement outside any
    /// other transaction, so it waits for nobody while holding a lock of its own.
    async fn forget_pending(&self, subscription_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM push_outbox WHERE subscription_id = $1")
            .bind(subscription_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims up to `limit` due rows for `lease_ms`, counting the attempt now, so that a
    /// send cut short by a crash still counts and a row cannot crash-loop forever.
    pub async fn claim_pushes(&self, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedPush>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let due: Vec<String> = sqlx::query_scalar(self.due_pushes_sql())
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let token = new_id();
            // The repeated due-check makes the claim exclusive on PostgreSQL too: a
            // concurrent claimer waits for our row lock, then sees the moved time.
            let claim = sqlx::query(
                "UPDATE push_outbox SET claim_token = $1, claimed_at = $2, next_attempt_at = $3, \
                 attempts = attempts + 1 WHERE id = $4 AND next_attempt_at <= $2",
            )
            .bind(&token)
            .bind(now)
            .bind(now + lease_ms)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if claim.rows_affected() != 1 {
                continue;
            }
            let row = sqlx::query(
                "SELECT o.id, o.subscription_id, o.kind, o.push_topic, o.payload, o.urgency, \
                 o.expires_at, o.attempts, s.endpoint, s.p256dh, s.auth, d.revoked_at \
                 FROM push_outbox o JOIN push_subscriptions s ON s.id = o.subscription_id \
                 LEFT JOIN devices d ON d.id = s.device_id WHERE o.id = $1",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => out.push(claimed(&row, token)?),
                // Queued while its subscription was being deleted.
                None => {
                    sqlx::query("DELETE FROM push_outbox WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The push service accepted these messages, or they are dropped for good: forget the
    /// rows, except those replaced or re-claimed since their claim. One transaction for a
    /// whole batch, since a fan-out to thousands of phones would otherwise pay a commit
    /// (an fsync on SQLite) per message. Returns how many were deleted.
    pub async fn finish_pushes(&self, done: &[(String, String)]) -> Result<u64> {
        if done.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Lock the rows in the order queueing transactions lock them (see
            // `enqueue_for`) before deleting any; completion order is arbitrary.
            let list = (1..=done.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Only numbered placeholders are formatted in; the ids are bound.
            let sql = safe_sql!(
                "SELECT id FROM push_outbox WHERE id IN ({list}) \
                 ORDER BY subscription_id, push_topic FOR UPDATE"
            );
            let mut lock = sqlx::query(sql);
            for (id, _) in done {
                lock = lock.bind(id);
            }
            lock.fetch_all(&mut *tx).await?;
        }
        let mut deleted = 0;
        for (id, claim_token) in done {
            deleted += sqlx::query("DELETE FROM push_outbox WHERE id = $1 AND claim_token = $2")
                .bind(id)
                .bind(claim_token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Schedules the next attempt of a claimed row at `at` (ms) and releases the claim.
    pub async fn retry_push(&self, id: &str, claim_token: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE push_outbox SET next_attempt_at = $1, claim_token = NULL, claimed_at = NULL \
             WHERE id = $2 AND claim_token = $3",
        )
        .bind(at)
        .bind(id)
        .bind(claim_token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes rows claimed before `before` (ms) due at once: for a worker that knows no
    /// other process can be sending them (one server per SQLite file).
    pub async fn release_push_claims(&self, before: i64) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE push_outbox SET next_attempt_at = $1, claim_token = NULL, claimed_at = NULL \
             WHERE claim_token IS NOT NULL AND claimed_at < $2",
        )
        .bind(now_ms())
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }

    /// When the earliest pending row is due (ms), if any.
    pub async fn next_push_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM push_outbox")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// How many sends are pending (claimed or not), for tests and the dashboard.
    pub async fn pending_pushes(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM push_outbox")
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many subscriptions a device or coordinator has.
    pub async fn push_subscription_count(&self, owner: PushOwner<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(safe_sql!(
            "SELECT COUNT(*) FROM push_subscriptions WHERE {} = $1",
            owner.column()
        ))
        .bind(owner.owner_id())
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Deletes the subscription row only; see `Store::forget_pending` for its outbox rows.
async fn delete_subscription(conn: &mut sqlx::AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

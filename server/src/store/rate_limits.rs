//! Rate-limit counters (`rate_limits`): how often a key failed lately, kept in the database
//! so that every instance of one database counts the same attempts. The policy (free
//! failures, then waits that double) is applied inside the statement that counts, so a
//! check and its count are one atomic step on either backend.

use std::time::Duration;

use sqlx::Row;

use super::{Result, Store};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before waits begin.
    pub free_failures: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Policy {
    /// `free_failures`, then waits from `first_wait` doubling up to `max_wait`; failures
    /// are forgotten after `max_wait`.
    pub fn escalating(free_failures: u32, first_wait: Duration, max_wait: Duration) -> Self {
        Self {
            free_failures,
            first_wait,
            max_wait,
            window: max_wait,
        }
    }

    /// The wait that `failures` counted failures impose after the last of them.
    pub fn wait(&self, failures: i64) -> Duration {
        let over = failures - i64::from(self.free_failures);
        if over <= 0 {
            return Duration::ZERO;
        }
        let doublings = over - 1;
        if doublings >= self.doublings_to_max() {
            self.max_wait
        } else {
            // Below the cap, which is at most 40, and below the longest wait: no overflow.
            let first = u64::try_from(self.first_wait.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(first.saturating_mul(1 << doublings))
        }
    }

    /// How many doublings of the first wait reach the longest: from there on the wait is
    /// the longest. Bounds the shift in SQL, which must not overflow.
    fn doublings_to_max(&self) -> i64 {
        let mut wait = self.first_wait.max(Duration::from_millis(1));
        let mut n = 0;
        while wait < self.max_wait && n < 40 {
            wait *= 2;
            n += 1;
        }
        n
    }
}

/// Checks and counts in one statement. A key that is waiting is left as it is (no row
/// comes back): attempts during a wait neither count nor prolong it. Otherwise the
/// failure is counted, from 1 again when the old ones fell out of the window. The wait
/// is `Policy::wait` in SQL: `last_failure` plus the first wait doubled once per failure
/// beyond the first paid one, at most the longest.
const COUNT: &str = "
INSERT INTO rate_limits (key, failures, last_failure, expires_at)
VALUES ($1, 1, $2, $3)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN rate_limits.expires_at <= $2 THEN 1
                    ELSE rate_limits.failures + 1 END,
    last_failure = $2,
    expires_at = $3
WHERE rate_limits.expires_at <= $2
   OR rate_limits.failures <= $4
   OR rate_limits.last_failure + CASE
          WHEN rate_limits.failures - $4 - 1 >= $5 THEN $6
          ELSE $7 * (CAST(1 AS BIGINT) << CAST(rate_limits.failures - $4 - 1 AS INTEGER))
      END <= $2
RETURNING failures";

impl Store {
    /// Counts one attempt of `key` as a failure unless the key is waiting; `Err(wait)`
    /// then, with how long it still waits. `now` is milliseconds since the epoch: every
    /// instance must share a clock (NTP) for the waits to agree.
    pub async fn count_attempt(
        &self,
        key: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<std::result::Result<(), Duration>> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let counted: Option<i64> = sqlx::query_scalar(COUNT)
            .bind(key)
            .bind(now)
            .bind(now.saturating_add(ms(policy.window)))
            .bind(i64::from(policy.free_failures))
            .bind(policy.doublings_to_max())
            .bind(ms(policy.max_wait))
            .bind(ms(policy.first_wait))
            .fetch_optional(&self.pool)
            .await?;
        if counted.is_some() {
            return Ok(Ok(()));
        }
        // Only to say how long: the verdict was given above.
        let row = sqlx::query("SELECT failures, last_failure FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let wait = match row {
            Some(row) => {
                let failures: i64 = row.try_get("failures")?;
                let last: i64 = row.try_get("last_failure")?;
                let until = last.saturating_add(ms(policy.wait(failures)));
                Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
            }
            None => Duration::ZERO,
        };
        Ok(Err(wait))
    }

    /// Takes back one counted failure of `key` (the attempt succeeded); a key that is
    /// back within its free failures waits no longer.
    pub async fn refund_attempt(&self, key: &str) -> Result<()> {
        sqlx::query(
            "UPDATE rate_limits SET failures = failures - 1 WHERE key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets every failure of `key`.
    pub async fn clear_attempts(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM rate_limits WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the counters whose window has passed at `now`; how many.
    pub async fn forget_expired_attempts(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// How many counters the table holds, for tests and operators.
    pub async fn rate_limit_rows(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM rate_limits")
            .fetch_one(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest() {
        let p = Policy::escalating(3, Duration::from_secs(30), Duration::from_secs(15 * 60));
        let secs = |f| p.wait(f).as_secs();
        assert_eq!([secs(0), secs(3)], [0, 0]);
        assert_eq!([secs(4), secs(5), secs(6)], [30, 60, 120]);
        assert_eq!(
            [secs(7), secs(8), secs(9), secs(1000)],
            [240, 480, 900, 900]
        );
        assert_eq!(p.doublings_to_max(), 5);
    }
}

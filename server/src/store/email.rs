//! The e-mail outbox: messages are queued in the transaction that made them (an
//! invitation, a reset link) and sent by the mail worker (`crate::email`), which claims
//! due rows with a lease like the push worker does, deletes what the SMTP server took
//! and retries the rest with backoff.

use sqlx::Row;

use super::{Result, Store, new_id, now_ms};

/// The sealing context of queued bodies (they may hold a one-time link).
const EMAIL_BODY: &str = "email_outbox.body";

/// An e-mail to queue. Never case content: only who is invited and a link.
#[derive(Debug, Clone)]
pub struct NewEmail<'a> {
    pub organisation_id: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// A queued e-mail a worker holds for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: String,
    pub claim_token: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

impl Store {
    pub(crate) async fn queue_email(
        &self,
        conn: &mut sqlx::AnyConnection,
        mail: &NewEmail<'_>,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO email_outbox (id, organisation_id, recipient, subject, body, created_at, \
             next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(new_id())
        .bind(mail.organisation_id)
        .bind(mail.recipient)
        .bind(mail.subject)
        .bind(self.seal_value(EMAIL_BODY, mail.body))
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due e-mails for `lease_ms`, counting the attempt now.
    pub async fn claim_emails(&self, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedEmail>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM email_outbox WHERE next_attempt_at <= $1 ORDER BY next_attempt_at \
             LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let token = new_id();
            let claim = sqlx::query(
                "UPDATE email_outbox SET claim_token = $1, next_attempt_at = $2, \
                 attempts = attempts + 1 WHERE id = $3 AND next_attempt_at <= $4",
            )
            .bind(&token)
            .bind(now + lease_ms)
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if claim.rows_affected() != 1 {
                continue;
            }
            let row = sqlx::query(
                "SELECT recipient, subject, body, attempts FROM email_outbox WHERE id = $1",
            )
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let body: String = row.try_get("body")?;
            out.push(ClaimedEmail {
                id,
                claim_token: token,
                recipient: row.try_get("recipient")?,
                subject: row.try_get("subject")?,
                body: self.open_value(EMAIL_BODY, &body)?,
                attempts: row.try_get("attempts")?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The SMTP server took it, or it is given up: the row (and its link) goes.
    pub async fn finish_email(&self, id: &str, claim_token: &str) -> Result<()> {
        sqlx::query("DELETE FROM email_outbox WHERE id = $1 AND claim_token = $2")
            .bind(id)
            .bind(claim_token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Schedules the next attempt at `at` (ms), with what went wrong (no content).
    pub async fn retry_email(
        &self,
        id: &str,
        claim_token: &str,
        at: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE email_outbox SET next_attempt_at = $1, claim_token = NULL, last_error = $2 \
             WHERE id = $3 AND claim_token = $4",
        )
        .bind(at)
        .bind(error)
        .bind(id)
        .bind(claim_token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims of a process that ended: due at once (one server per SQLite file).
    pub async fn release_email_claims(&self) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE email_outbox SET next_attempt_at = $1, claim_token = NULL \
             WHERE claim_token IS NOT NULL",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn next_email_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM email_outbox")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// E-mails waiting (claimed or not), for the team page and tests.
    pub async fn pending_emails(&self, organisation_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM email_outbox WHERE organisation_id = $1")
                .bind(organisation_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

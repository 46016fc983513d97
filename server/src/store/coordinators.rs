//! Coordinators (Fachkoordination) and their login sessions.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::access::AccessChange;
use super::audit::Audit;
use super::{OnConflict, Result, Store, new_id, now_ms};

#[derive(Debug, Clone, Serialize)]
pub struct Coordinator {
    pub id: String,
    pub organisation_id: String,
    pub email: String,
    pub display_name: String,
    #[serde(skip)]
    pub password_hash: String,
}

pub struct NewCoordinator<'a> {
    pub organisation_id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
}

fn coordinator(row: &AnyRow) -> Result<Coordinator> {
    Ok(Coordinator {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
    })
}

const COLUMNS: &str = "id, organisation_id, email, display_name, password_hash";

impl Store {
    /// Emails are compared case-insensitively; they are stored lowercased.
    pub async fn create_coordinator(&self, new: NewCoordinator<'_>) -> Result<Coordinator> {
        let c = Coordinator {
            id: new_id(),
            organisation_id: new.organisation_id.to_owned(),
            email: new.email.trim().to_lowercase(),
            display_name: new.display_name.to_owned(),
            password_hash: new.password_hash.to_owned(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO coordinators (id, organisation_id, email, display_name, password_hash, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.organisation_id)
        .bind(&c.email)
        .bind(&c.display_name)
        .bind(&c.password_hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .on_conflict("a coordinator with this email")?;
        Audit {
            organisation_id: &c.organisation_id,
            actor_kind: "system",
            actor_id: "cli",
            action: "coordinator.create",
            subject_kind: "coordinator",
            subject_id: &c.id,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(c)
    }

    pub async fn coordinator_by_email(&self, email: &str) -> Result<Option<Coordinator>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM coordinators WHERE email = $1"
        ))
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(coordinator).transpose()
    }

    pub async fn create_session(
        &self,
        coordinator: &Coordinator,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO coordinator_sessions (token_hash, coordinator_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(&coordinator.id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        Audit::by_coordinator(
            &coordinator.organisation_id,
            &coordinator.id,
            "session.login",
            ("coordinator", &coordinator.id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The coordinator owning an unexpired session.
    pub async fn coordinator_by_session(&self, token_hash: &str) -> Result<Option<Coordinator>> {
        Ok(self.session(token_hash).await?.map(|(c, _)| c))
    }

    /// The coordinator of an unexpired session, and when the session expires (ms).
    pub async fn session(&self, token_hash: &str) -> Result<Option<(Coordinator, i64)>> {
        let row = sqlx::query(
            "SELECT c.id, c.organisation_id, c.email, c.display_name, c.password_hash, \
             s.expires_at FROM coordinator_sessions s JOIN coordinators c ON c.id = s.coordinator_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| Ok((coordinator(r)?, r.try_get("expires_at")?)))
            .transpose()
    }

    /// Logout: ends the session (and sweeps expired ones), and with them the browser
    /// notifications they turned on.
    /// The change is for the hub: the session's open sockets close.
    pub async fn delete_session(&self, token_hash: &str) -> Result<Vec<AccessChange>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM coordinator_sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let ended = vec![AccessChange::SessionEnded {
            session_hash: token_hash.to_owned(),
        }];
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        self.sweep_subscriptions().await;
        Ok(ended)
    }

    /// Logout everywhere: ends every session of the coordinator, and every browser
    /// notification they turned on.
    /// The change is for the hub: every socket of the coordinator closes.
    pub async fn delete_sessions_of(
        &self,
        coordinator_id: &str,
    ) -> Result<(u64, Vec<AccessChange>)> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM coordinator_sessions WHERE coordinator_id = $1")
            .bind(coordinator_id)
            .execute(&mut *tx)
            .await?;
        let ended = vec![AccessChange::SessionsEnded {
            coordinator_id: coordinator_id.to_owned(),
        }];
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        self.sweep_subscriptions().await;
        Ok((done.rows_affected(), ended))
    }

    /// Nothing is sent to a subscription whose login ended, so a failed cleanup must
    /// not fail the logout; the next logout sweeps again.
    async fn sweep_subscriptions(&self) {
        if let Err(e) = self.drop_sessionless_subscriptions().await {
            tracing::warn!(error = %e, "could not remove push subscriptions of ended logins");
        }
    }
}

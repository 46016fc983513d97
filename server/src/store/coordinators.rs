//! Coordinators (Fachkoordination), their roles, login sessions, one-time links
//! (invitations, password resets) and second factors.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::access::AccessChange;
use super::audit::Audit;
use super::{OnConflict, Result, Store, StoreError, new_id, now_ms};

/// What a coordinator may do. Leitung manages the team, the organisation's settings and
/// deletions; Koordination does the daily work with requests, cases and volunteers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leitung,
    Koordination,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leitung => "leitung",
            Role::Koordination => "koordination",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "leitung" => Some(Role::Leitung),
            "koordination" => Some(Role::Koordination),
            _ => None,
        }
    }
}

/// The password hash of a coordinator who was invited and has not chosen one yet: no
/// password matches it.
pub const NO_PASSWORD: &str = "!";

#[derive(Debug, Clone, Serialize)]
pub struct Coordinator {
    pub id: String,
    pub organisation_id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// ms; a deactivated coordinator cannot log in and has no sessions.
    pub deactivated_at: Option<i64>,
    /// Whether a second factor is set up.
    pub two_factor: bool,
    #[serde(skip)]
    pub password_hash: String,
}

impl Coordinator {
    pub fn is_leitung(&self) -> bool {
        self.role == Role::Leitung
    }

    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }

    /// Invited, and no password chosen yet.
    pub fn is_invited(&self) -> bool {
        self.password_hash == NO_PASSWORD
    }
}

pub struct NewCoordinator<'a> {
    pub organisation_id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Set a first password.
    Invite,
    /// Set a new password (every session ends).
    Reset,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invite => "invite",
            LinkPurpose::Reset => "reset",
        }
    }
}

fn coordinator(row: &AnyRow) -> Result<Coordinator> {
    let role: String = row.try_get("role")?;
    let totp: Option<String> = row.try_get("totp_secret")?;
    Ok(Coordinator {
        id: row.try_get("id")?,
        organisation_id: row.try_get("organisation_id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        deactivated_at: row.try_get("deactivated_at")?,
        two_factor: totp.is_some(),
        password_hash: row.try_get("password_hash")?,
    })
}

const COLUMNS: &str = "id, organisation_id, email, display_name, password_hash, role, \
                       deactivated_at, totp_secret";

/// The sealing context of second-factor secrets.
const TOTP_SECRET: &str = "coordinator.totp_secret";

impl Store {
    /// Emails are compared case-insensitively; they are stored lowercased.
    pub async fn create_coordinator(&self, new: NewCoordinator<'_>) -> Result<Coordinator> {
        let c = Coordinator {
            id: new_id(),
            organisation_id: new.organisation_id.to_owned(),
            email: new.email.trim().to_lowercase(),
            display_name: new.display_name.to_owned(),
            password_hash: new.password_hash.to_owned(),
            role: new.role,
            deactivated_at: None,
            two_factor: false,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO coordinators (id, organisation_id, email, display_name, password_hash, \
             created_at, role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.organisation_id)
        .bind(&c.email)
        .bind(&c.display_name)
        .bind(&c.password_hash)
        .bind(now_ms())
        .bind(c.role.as_str())
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
            "SELECT c.id, c.organisation_id, c.email, c.display_name, c.password_hash, c.role, \
             c.deactivated_at, c.totp_secret, s.expires_at FROM coordinator_sessions s \
             JOIN coordinators c ON c.id = s.coordinator_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND c.deactivated_at IS NULL",
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

/// Why a change to the team was refused.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    #[error("no such coordinator")]
    NotFound,
    #[error("the organisation needs at least one active Leitung")]
    LastLeitung,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TeamError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A one-time link that still works: whose it is and what for.
#[derive(Debug, Clone)]
pub struct OpenLink {
    pub coordinator: Coordinator,
    pub purpose: LinkPurpose,
}

impl Store {
    pub async fn coordinator_by_id(
        &self,
        organisation_id: &str,
        id: &str,
    ) -> Result<Option<Coordinator>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM coordinators WHERE id = $1 AND organisation_id = $2"
        ))
        .bind(id)
        .bind(organisation_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(coordinator).transpose()
    }

    /// The organisation's coordinators, active ones first, by name.
    pub async fn coordinators_of(&self, organisation_id: &str) -> Result<Vec<Coordinator>> {
        let rows = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM coordinators WHERE organisation_id = $1 \
             ORDER BY (deactivated_at IS NOT NULL), display_name, email"
        ))
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(coordinator).collect()
    }

    /// Invites a coordinator: a row without a password and the invitation link's hash,
    /// in one transaction with its audit line. `mail` is queued with it when given.
    pub async fn invite_coordinator(
        &self,
        new: NewCoordinator<'_>,
        invited_by: &str,
        link_hash: &str,
        link_expires_at: i64,
        mail: Option<super::email::NewEmail<'_>>,
    ) -> Result<Coordinator> {
        let c = Coordinator {
            id: new_id(),
            organisation_id: new.organisation_id.to_owned(),
            email: new.email.trim().to_lowercase(),
            display_name: new.display_name.trim().to_owned(),
            password_hash: NO_PASSWORD.to_owned(),
            role: new.role,
            deactivated_at: None,
            two_factor: false,
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO coordinators (id, organisation_id, email, display_name, password_hash, \
             created_at, role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.organisation_id)
        .bind(&c.email)
        .bind(&c.display_name)
        .bind(&c.password_hash)
        .bind(now)
        .bind(c.role.as_str())
        .execute(&mut *tx)
        .await
        .on_conflict("a coordinator with this email")?;
        insert_link(
            &mut tx,
            &c.id,
            LinkPurpose::Invite,
            invited_by,
            link_hash,
            link_expires_at,
        )
        .await?;
        Audit::by_coordinator(
            &c.organisation_id,
            invited_by,
            "coordinator.invite",
            ("coordinator", &c.id),
        )
        .write(&mut tx)
        .await?;
        if let Some(mail) = mail {
            self.queue_email(&mut tx, &mail).await?;
        }
        tx.commit().await?;
        Ok(c)
    }

    /// A password reset link for a coordinator of the organisation (earlier links of
    /// theirs stop working). `None` when there is no such active coordinator.
    pub async fn create_reset_link(
        &self,
        organisation_id: &str,
        id: &str,
        created_by: &str,
        link_hash: &str,
        expires_at: i64,
        mail: Option<super::email::NewEmail<'_>>,
    ) -> Result<Option<Coordinator>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM coordinators WHERE id = $1 AND organisation_id = $2 \
             AND deactivated_at IS NULL"
        ))
        .bind(id)
        .bind(organisation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(c) = row.as_ref().map(coordinator).transpose()? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM coordinator_links WHERE coordinator_id = $1 AND used_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let purpose = if c.is_invited() {
            LinkPurpose::Invite
        } else {
            LinkPurpose::Reset
        };
        insert_link(&mut tx, id, purpose, created_by, link_hash, expires_at).await?;
        Audit::by_coordinator(
            organisation_id,
            created_by,
            "coordinator.reset_link",
            ("coordinator", id),
        )
        .write(&mut tx)
        .await?;
        if let Some(mail) = mail {
            self.queue_email(&mut tx, &mail).await?;
        }
        tx.commit().await?;
        Ok(Some(c))
    }

    /// The link of `token_hash` if it is unused, unexpired and its coordinator active.
    pub async fn open_link(&self, token_hash: &str) -> Result<Option<OpenLink>> {
        let row = sqlx::query(
            "SELECT c.id, c.organisation_id, c.email, c.display_name, c.password_hash, c.role, \
             c.deactivated_at, c.totp_secret, l.purpose FROM coordinator_links l \
             JOIN coordinators c ON c.id = l.coordinator_id \
             WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2 \
             AND c.deactivated_at IS NULL",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let purpose: String = row.try_get("purpose")?;
        Ok(Some(OpenLink {
            coordinator: coordinator(&row)?,
            purpose: if purpose == "invite" {
                LinkPurpose::Invite
            } else {
                LinkPurpose::Reset
            },
        }))
    }

    /// Uses a one-time link: sets the password, marks the link used and ends every
    /// session of the coordinator (a reset means someone else may know the old one).
    /// `None` when the link no longer works (used meanwhile, expired).
    pub async fn use_link(
        &self,
        token_hash: &str,
        password_hash: &str,
    ) -> Result<Option<(Coordinator, Vec<AccessChange>)>> {
        let Some(link) = self.open_link(token_hash).await? else {
            return Ok(None);
        };
        let c = link.coordinator;
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "UPDATE coordinator_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
             AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query("UPDATE coordinators SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM coordinator_sessions WHERE coordinator_id = $1")
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        let action = match link.purpose {
            LinkPurpose::Invite => "coordinator.accept_invite",
            LinkPurpose::Reset => "coordinator.password_reset",
        };
        Audit::by_coordinator(&c.organisation_id, &c.id, action, ("coordinator", &c.id))
            .write(&mut tx)
            .await?;
        let ended = vec![AccessChange::SessionsEnded {
            coordinator_id: c.id.clone(),
        }];
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        Ok(Some((c, ended)))
    }

    /// Changes one's own password; every other session of the coordinator ends.
    pub async fn change_password(
        &self,
        c: &Coordinator,
        keep_session: &str,
        password_hash: &str,
    ) -> Result<Vec<AccessChange>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE coordinators SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT token_hash FROM coordinator_sessions WHERE coordinator_id = $1 AND token_hash <> $2",
        )
        .bind(&c.id)
        .bind(keep_session)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM coordinator_sessions WHERE coordinator_id = $1 AND token_hash <> $2",
        )
        .bind(&c.id)
        .bind(keep_session)
        .execute(&mut *tx)
        .await?;
        Audit::by_coordinator(
            &c.organisation_id,
            &c.id,
            "coordinator.password_change",
            ("coordinator", &c.id),
        )
        .write(&mut tx)
        .await?;
        let ended: Vec<AccessChange> = others
            .into_iter()
            .map(|session_hash| AccessChange::SessionEnded { session_hash })
            .collect();
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Changes a coordinator's role; the organisation keeps at least one active Leitung.
    pub async fn set_role(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &str,
        role: Role,
    ) -> Result<Coordinator, TeamError> {
        let mut tx = self.begin_write().await?;
        let c = locked_coordinator(&mut tx, organisation_id, id).await?;
        if c.role == Role::Leitung && role != Role::Leitung && c.is_active() {
            check_other_leitung(&mut tx, organisation_id, id).await?;
        }
        sqlx::query("UPDATE coordinators SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "coordinator.role",
            ("coordinator", id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(Coordinator { role, ..c })
    }

    /// Deactivates (every session ends at once, open dashboards and sockets close) or
    /// reactivates a coordinator. The organisation keeps at least one active Leitung.
    pub async fn set_coordinator_active(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &str,
        active: bool,
    ) -> Result<(Coordinator, Vec<AccessChange>), TeamError> {
        let mut tx = self.begin_write().await?;
        let c = locked_coordinator(&mut tx, organisation_id, id).await?;
        if c.is_active() == active {
            return Ok((c, Vec::new()));
        }
        if !active && c.role == Role::Leitung {
            check_other_leitung(&mut tx, organisation_id, id).await?;
        }
        let at = (!active).then(now_ms);
        sqlx::query("UPDATE coordinators SET deactivated_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut ended = Vec::new();
        if !active {
            sqlx::query("DELETE FROM coordinator_sessions WHERE coordinator_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM coordinator_links WHERE coordinator_id = $1 AND used_at IS NULL",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            ended.push(AccessChange::SessionsEnded {
                coordinator_id: id.to_owned(),
            });
        }
        let action = if active {
            "coordinator.reactivate"
        } else {
            "coordinator.deactivate"
        };
        Audit::by_coordinator(organisation_id, actor_id, action, ("coordinator", id))
            .write(&mut tx)
            .await?;
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        self.sweep_subscriptions().await;
        Ok((
            Coordinator {
                deactivated_at: at,
                ..c
            },
            ended,
        ))
    }

    /// The second-factor secret (base32) of a coordinator, opened.
    pub async fn totp_secret(&self, coordinator_id: &str) -> Result<Option<String>> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT totp_secret FROM coordinators WHERE id = $1")
                .bind(coordinator_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        stored.map(|s| self.open_value(TOTP_SECRET, &s)).transpose()
    }

    /// Sets up the second factor with the step whose code confirmed it (so that code
    /// cannot log in again) and replaces the recovery codes.
    pub async fn enable_two_factor(
        &self,
        c: &Coordinator,
        secret_base32: &str,
        confirmed_step: i64,
        recovery_hashes: &[String],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE coordinators SET totp_secret = $1, totp_last_step = $2 WHERE id = $3")
            .bind(self.seal_value(TOTP_SECRET, secret_base32))
            .bind(confirmed_step)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE coordinator_id = $1")
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (coordinator_id, code_hash) VALUES ($1, $2)")
                .bind(&c.id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        Audit::by_coordinator(
            &c.organisation_id,
            &c.id,
            "coordinator.two_factor_on",
            ("coordinator", &c.id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a coordinator's second factor (a Leitung for someone who lost it, with
    /// the recovery codes); every session of theirs ends.
    pub async fn reset_two_factor(
        &self,
        organisation_id: &str,
        actor_id: &str,
        id: &str,
    ) -> Result<Option<Vec<AccessChange>>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE coordinators SET totp_secret = NULL, totp_last_step = NULL \
             WHERE id = $1 AND organisation_id = $2",
        )
        .bind(id)
        .bind(organisation_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE coordinator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM coordinator_sessions WHERE coordinator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Audit::by_coordinator(
            organisation_id,
            actor_id,
            "coordinator.two_factor_reset",
            ("coordinator", id),
        )
        .write(&mut tx)
        .await?;
        let ended = vec![AccessChange::SessionsEnded {
            coordinator_id: id.to_owned(),
        }];
        self.notify_access(&mut tx, &ended).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }

    /// Records that a code of time step `step` was used; false when that step (or a
    /// later one) was used already, so the same code cannot log in twice.
    pub async fn take_totp_step(&self, coordinator_id: &str, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE coordinators SET totp_last_step = $1 WHERE id = $2 \
             AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(coordinator_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses a recovery code; false when it is unknown or was used.
    pub async fn take_recovery_code(&self, c: &Coordinator, code_hash: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE coordinator_id = $2 AND code_hash = $3 \
             AND used_at IS NULL",
        )
        .bind(now_ms())
        .bind(&c.id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        Audit::by_coordinator(
            &c.organisation_id,
            &c.id,
            "coordinator.recovery_code",
            ("coordinator", &c.id),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Unused recovery codes of a coordinator.
    pub async fn recovery_codes_left(&self, coordinator_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE coordinator_id = $1 AND used_at IS NULL",
        )
        .bind(coordinator_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

async fn insert_link(
    tx: &mut sqlx::AnyConnection,
    coordinator_id: &str,
    purpose: LinkPurpose,
    created_by: &str,
    token_hash: &str,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO coordinator_links (token_hash, coordinator_id, purpose, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(coordinator_id)
    .bind(purpose.as_str())
    .bind(created_by)
    .bind(now_ms())
    .bind(expires_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// The coordinator, read inside the write transaction after a write to the
/// organisation's row: that serialises the team changes of one organisation on PostgreSQL
/// too (SQLite's write transactions already are), so two Leitungen demoting each other at
/// once cannot both succeed.
async fn locked_coordinator(
    tx: &mut sqlx::AnyConnection,
    organisation_id: &str,
    id: &str,
) -> Result<Coordinator, TeamError> {
    sqlx::query("UPDATE organisations SET id = id WHERE id = $1")
        .bind(organisation_id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(safe_sql!(
        "SELECT {COLUMNS} FROM coordinators WHERE id = $1 AND organisation_id = $2"
    ))
    .bind(id)
    .bind(organisation_id)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref()
        .map(coordinator)
        .transpose()?
        .ok_or(TeamError::NotFound)
}

async fn check_other_leitung(
    tx: &mut sqlx::AnyConnection,
    organisation_id: &str,
    except: &str,
) -> Result<(), TeamError> {
    let others: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM coordinators WHERE organisation_id = $1 AND role = 'leitung' \
         AND deactivated_at IS NULL AND password_hash <> '!' AND id <> $2",
    )
    .bind(organisation_id)
    .bind(except)
    .fetch_all(&mut *tx)
    .await?;
    if others.is_empty() {
        return Err(TeamError::LastLeitung);
    }
    Ok(())
}

impl Store {
    /// An active coordinator by id, whatever the organisation: for the second step of a
    /// login, whose first step (the password) named them.
    pub async fn active_coordinator(&self, id: &str) -> Result<Option<Coordinator>> {
        let row = sqlx::query(safe_sql!(
            "SELECT {COLUMNS} FROM coordinators WHERE id = $1 AND deactivated_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(coordinator).transpose()
    }
}

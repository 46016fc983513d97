//! The team's changes that the API and the dashboard both make: inviting a coordinator
//! and making a password-reset link (each with its e-mail when SMTP is on), changing a
//! role, deactivating. Each is stored in one transaction with its audit line; ended
//! sessions close their sockets and event streams at once.

use super::AppState;
use super::caller::CoordinatorCaller;
use super::error::Error;
use crate::auth;
use crate::store::{Coordinator, LinkPurpose, NewCoordinator, NewEmail, Role, TeamError, now_ms};
use crate::team::{self, INVITE_HOURS, LINK_PREFIX, RESET_HOURS};

/// A one-time link made for a coordinator, to show once.
pub struct IssuedLink {
    pub coordinator: Coordinator,
    pub link: String,
    pub expires_at: i64,
    /// The link also went into the e-mail outbox.
    pub emailed: bool,
}

impl From<TeamError> for Error {
    fn from(e: TeamError) -> Self {
        match e {
            TeamError::NotFound => Error::NotFound("coordinator"),
            TeamError::LastLeitung => Error::bad_request(
                "last_leitung",
                "the organisation needs at least one active Leitung; make someone else Leitung first",
            ),
            TeamError::Store(e) => Error::Store(e),
        }
    }
}

/// An e-mail address as far as we check it: one `@`, something either side, no spaces.
pub fn plausible_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 320
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
}

impl AppState {
    async fn link_mail(
        &self,
        by: &CoordinatorCaller,
        purpose: LinkPurpose,
        link: &str,
        expires_at: i64,
    ) -> Result<Option<(String, String)>, Error> {
        if !self.mail.enabled() {
            return Ok(None);
        }
        let org = self
            .store
            .organisation(by.organisation_id())
            .await?
            .map(|o| o.name)
            .unwrap_or_default();
        let until = crate::timefmt::local_de(expires_at);
        Ok(Some(team::link_email(
            purpose,
            &org,
            &by.coordinator.display_name,
            link,
            &until,
        )))
    }

    /// Invites a coordinator by a one-time link (`base`: this server's address).
    pub async fn invite_coordinator(
        &self,
        by: &CoordinatorCaller,
        email: &str,
        display_name: &str,
        role: Role,
        base: &str,
    ) -> Result<IssuedLink, Error> {
        by.require_leitung("invite coordinators")?;
        let email = email.trim().to_lowercase();
        if !plausible_email(&email) {
            return Err(Error::invalid("email", "not an e-mail address"));
        }
        let display_name = display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 120 {
            return Err(Error::invalid("display_name", "1 to 120 characters"));
        }
        let token = auth::new_token(LINK_PREFIX);
        let link = team::link_url(base, &token);
        let expires_at = now_ms() + INVITE_HOURS * 3_600_000;
        let mail = self
            .link_mail(by, LinkPurpose::Invite, &link, expires_at)
            .await?;
        let c = self
            .store
            .invite_coordinator(
                NewCoordinator {
                    organisation_id: by.organisation_id(),
                    email: &email,
                    display_name,
                    password_hash: crate::store::NO_PASSWORD,
                    role,
                },
                by.id(),
                &auth::token_hash(&token),
                expires_at,
                mail.as_ref().map(|(subject, body)| NewEmail {
                    organisation_id: by.organisation_id(),
                    recipient: &email,
                    subject,
                    body,
                }),
            )
            .await?;
        if mail.is_some() {
            self.mail.wake();
        }
        tracing::info!(coordinator_id = %c.id, role = role.as_str(), "coordinator invited");
        Ok(IssuedLink {
            coordinator: c,
            link,
            expires_at,
            emailed: mail.is_some(),
        })
    }

    /// A new one-time link for a coordinator who forgot their password (or whose
    /// invitation lapsed); earlier links stop working.
    pub async fn reset_link(
        &self,
        by: &CoordinatorCaller,
        id: &str,
        base: &str,
    ) -> Result<IssuedLink, Error> {
        by.require_leitung("reset passwords")?;
        let target = self
            .store
            .coordinator_by_id(by.organisation_id(), id)
            .await?
            .filter(Coordinator::is_active)
            .ok_or(Error::NotFound("coordinator"))?;
        let (purpose, hours) = if target.is_invited() {
            (LinkPurpose::Invite, INVITE_HOURS)
        } else {
            (LinkPurpose::Reset, RESET_HOURS)
        };
        let token = auth::new_token(LINK_PREFIX);
        let link = team::link_url(base, &token);
        let expires_at = now_ms() + hours * 3_600_000;
        let mail = self.link_mail(by, purpose, &link, expires_at).await?;
        let c = self
            .store
            .create_reset_link(
                by.organisation_id(),
                id,
                by.id(),
                &auth::token_hash(&token),
                expires_at,
                mail.as_ref().map(|(subject, body)| NewEmail {
                    organisation_id: by.organisation_id(),
                    recipient: &target.email,
                    subject,
                    body,
                }),
            )
            .await?
            .ok_or(Error::NotFound("coordinator"))?;
        if mail.is_some() {
            self.mail.wake();
        }
        tracing::info!(coordinator_id = %c.id, "password link made");
        Ok(IssuedLink {
            coordinator: c,
            link,
            expires_at,
            emailed: mail.is_some(),
        })
    }

    pub async fn set_coordinator_role(
        &self,
        by: &CoordinatorCaller,
        id: &str,
        role: Role,
    ) -> Result<Coordinator, Error> {
        by.require_leitung("change roles")?;
        Ok(self
            .store
            .set_role(by.organisation_id(), by.id(), id, role)
            .await?)
    }

    /// Deactivating ends every session of the coordinator at once.
    pub async fn set_coordinator_active(
        &self,
        by: &CoordinatorCaller,
        id: &str,
        active: bool,
    ) -> Result<Coordinator, Error> {
        by.require_leitung("deactivate coordinators")?;
        let (c, ended) = self
            .store
            .set_coordinator_active(by.organisation_id(), by.id(), id, active)
            .await?;
        self.access_shrank(ended);
        Ok(c)
    }

    /// Removes a coordinator's second factor (they set up a new one at the next login).
    pub async fn reset_second_factor(&self, by: &CoordinatorCaller, id: &str) -> Result<(), Error> {
        by.require_leitung("reset second factors")?;
        let ended = self
            .store
            .reset_two_factor(by.organisation_id(), by.id(), id)
            .await?
            .ok_or(Error::NotFound("coordinator"))?;
        self.access_shrank(ended);
        Ok(())
    }

    /// Changes the caller's own password after checking the current one (a wrong one
    /// counts toward the login lockout); their other sessions end.
    pub async fn change_own_password(
        &self,
        by: &CoordinatorCaller,
        current: String,
        new: &str,
    ) -> Result<(), Error> {
        if let Some((de, _)) = team::password_problem(new) {
            return Err(Error::invalid("new_password", de));
        }
        let key = format!("password-change:{}", by.id());
        self.limits.login_account.attempt(&key).await?;
        if current.len() > team::MAX_PASSWORD_BYTES
            || !self
                .check_password(current, by.coordinator.password_hash.clone())
                .await
        {
            return Err(Error::InvalidCredentials);
        }
        self.limits.login_account.success(&key).await;
        let hash = self.hash_password(new.to_owned()).await?;
        let ended = self
            .store
            .change_password(&by.coordinator, &by.session_hash, &hash)
            .await?;
        self.access_shrank(ended);
        Ok(())
    }

    /// Sets a password through a one-time link. `None`: the link no longer works.
    pub async fn use_link(
        &self,
        token: &str,
        password: &str,
    ) -> Result<Option<Coordinator>, Error> {
        if let Some((de, _)) = team::password_problem(password) {
            return Err(Error::invalid("password", de));
        }
        let hash = self.hash_password(password.to_owned()).await?;
        let Some((c, ended)) = self.store.use_link(&auth::token_hash(token), &hash).await? else {
            return Ok(None);
        };
        self.access_shrank(ended);
        Ok(Some(c))
    }
}

//! Logging a coordinator in, for the API and the dashboard alike: the password (rate
//! limited per account and address), then, where one is set up, the second factor (a
//! TOTP code or a recovery code, each accepted once), then the session.
//!
//! Attempts are counted before anything is checked, so parallel guesses cannot slip
//! between check and record; a right password takes its count back. Each code tried
//! counts on the account's budget like a password, so wrong codes lead to the same
//! lockout as wrong passwords; only a complete login clears it.

use super::AppState;
use super::error::Error;
use crate::auth::{self, SESSION_PREFIX};
use crate::store::{Coordinator, now_ms};

/// What the password step found.
pub enum Step {
    /// Logged in once a session is opened.
    Done(Coordinator),
    /// The password was right; the second factor comes next.
    NeedsCode(Coordinator),
}

fn account_key(email: &str, client: std::net::IpAddr) -> String {
    format!("login-account:{}:{client}", email.trim().to_lowercase())
}

/// Checks email and password.
pub async fn password(
    state: &AppState,
    email: &str,
    password: String,
    client: std::net::IpAddr,
) -> Result<Step, Error> {
    if email.len() > 320 || password.len() > crate::team::MAX_PASSWORD_BYTES {
        return Err(Error::InvalidCredentials);
    }
    // Per account and address: wrong passwords from one address must not lock the owner
    // out from another; the address budget limits guessing across accounts.
    let account = account_key(email, client);
    let address = format!("login-address:{client}");
    let limits = &state.limits;
    limits.login_account.attempt(&account).await?;
    if let Err(refused) = limits.login_address.attempt(&address).await {
        limits.login_account.refund(&account).await;
        return Err(refused.into());
    }
    let coordinator = state
        .store
        .coordinator_by_email(email)
        .await?
        .filter(Coordinator::is_active);
    let hash = coordinator
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let ok = state.check_password(password, hash).await;
    let coordinator = match coordinator {
        Some(c) if ok => c,
        _ => {
            tracing::info!("failed coordinator login");
            return Err(Error::InvalidCredentials);
        }
    };
    limits.login_address.refund(&address).await;
    if coordinator.two_factor {
        // The password was no guess; each code tried from here counts on its own.
        limits.login_account.refund(&account).await;
        return Ok(Step::NeedsCode(coordinator));
    }
    limits.login_account.success(&account).await;
    Ok(Step::Done(coordinator))
}

/// Checks the second factor of a coordinator whose password was right: a six-digit code
/// of the current time (each time step once) or an unused recovery code.
pub async fn second_factor(
    state: &AppState,
    c: &Coordinator,
    code: &str,
    client: std::net::IpAddr,
) -> Result<(), Error> {
    let account = account_key(&c.email, client);
    state.limits.login_account.attempt(&account).await?;
    let ok = if crate::team::is_recovery_code(code) {
        state
            .store
            .take_recovery_code(c, &crate::team::recovery_hash(code))
            .await?
    } else {
        match state.store.totp_secret(&c.id).await? {
            Some(secret) => {
                let now = u64::try_from(now_ms() / 1000).unwrap_or_default();
                match crate::team::check_code(&secret, code, now) {
                    Some(step) => state.store.take_totp_step(&c.id, step).await?,
                    None => false,
                }
            }
            None => false,
        }
    };
    if !ok {
        tracing::info!(coordinator_id = %c.id, "wrong second-factor code");
        return Err(Error::SecondFactor);
    }
    state.limits.login_account.success(&account).await;
    Ok(())
}

/// Opens a session: its token and when it expires (ms).
pub async fn open_session(state: &AppState, c: &Coordinator) -> Result<(String, i64), Error> {
    let token = auth::new_token(SESSION_PREFIX);
    let expires_at = now_ms() + state.config.session_ttl.as_millis() as i64;
    state
        .store
        .create_session(c, &auth::token_hash(&token), expires_at)
        .await?;
    tracing::info!(coordinator_id = %c.id, "coordinator logged in");
    Ok((token, expires_at))
}

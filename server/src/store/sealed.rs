//! The server's secret settings (VAPID private key, CSRF key) in the `settings` table,
//! sealed under the server key when the store has one (`crate::secrets`). Without a key
//! they are stored in plain text, as before; a key given later seals them at the next
//! start. A sealed value that the key does not open, or a sealed value without a key,
//! stops the start with an error that says what to do.

use std::sync::Arc;

use super::{Result, Store, StoreError};
use crate::secrets::{ServerKey, is_sealed};

/// The setting of the VAPID private key (raw 32-byte P-256 scalar, base64url).
pub const VAPID_PRIVATE_KEY: &str = "push.vapid_private_key";
/// The setting of the dashboard's CSRF key (32 bytes, hex).
pub const CSRF_KEY: &str = "dashboard.csrf_key";
const SECRETS: [&str; 2] = [VAPID_PRIVATE_KEY, CSRF_KEY];

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "LOTSE_SECRET_KEY does not open the stored secret {0}: it is not the key the \
         database's secrets were sealed with (or the stored value was altered); start \
         with that key"
    )]
    WrongKey(&'static str),
    #[error(
        "the secret {0} is stored sealed, but LOTSE_SECRET_KEY is not set; start with \
         the key it was sealed with"
    )]
    KeyMissing(&'static str),
}

impl Store {
    /// This store seals secret settings under `key` (from `LOTSE_SECRET_KEY`).
    pub fn with_server_key(mut self, key: Option<ServerKey>) -> Self {
        self.server_key = key.map(Arc::new);
        self
    }

    /// Whether secret settings are sealed (a server key was given).
    pub fn seals_secrets(&self) -> bool {
        self.server_key.is_some()
    }

    /// At start: seals the secrets still stored in plain text (with a server key), and
    /// checks that every sealed one opens, so that a wrong or missing key stops the start
    /// instead of the first push or dashboard visit.
    pub async fn open_secrets(&self) -> Result<()> {
        for name in SECRETS {
            let stored = self.setting(name).await?;
            if let (Some(key), Some(plain)) = (&self.server_key, &stored)
                && !is_sealed(plain)
            {
                // Another instance sealing at the same moment: the first one's stays.
                sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
                    .bind(key.seal(name, plain))
                    .bind(name)
                    .bind(plain)
                    .execute(&self.pool)
                    .await?;
                tracing::info!(setting = name, "secret setting sealed with the server key");
            }
            if let Some(stored) = self.setting(name).await? {
                self.open_secret(name, &stored)?;
            }
        }
        Ok(())
    }

    /// The secret setting `name` in plain text; made by `make` and stored (sealed when
    /// there is a server key) if missing. Two instances making it at once agree on the
    /// first one stored.
    pub async fn secret_or_insert(
        &self,
        name: &'static str,
        make: impl FnOnce() -> String,
    ) -> Result<String> {
        if let Some(stored) = self.setting(name).await? {
            return self.open_secret(name, &stored);
        }
        let fresh = make();
        let stored = match &self.server_key {
            Some(key) => key.seal(name, &fresh),
            None => fresh,
        };
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(name)
        .bind(&stored)
        .execute(&self.pool)
        .await?;
        let stored = self
            .setting(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} vanished")))?;
        self.open_secret(name, &stored)
    }

    fn open_secret(&self, name: &'static str, stored: &str) -> Result<String> {
        if !is_sealed(stored) {
            return Ok(stored.to_owned());
        }
        let key = self
            .server_key
            .as_ref()
            .ok_or(SecretError::KeyMissing(name))?;
        Ok(key
            .open(name, stored)
            .map_err(|_| SecretError::WrongKey(name))?)
    }

    /// A secret of one row (a second factor, a queued e-mail), sealed under the server
    /// key when there is one; `what` binds the sealed value to its place and names it in
    /// errors.
    pub(crate) fn seal_value(&self, what: &'static str, plain: &str) -> String {
        match &self.server_key {
            Some(key) => key.seal(what, plain),
            None => plain.to_owned(),
        }
    }

    pub(crate) fn open_value(&self, what: &'static str, stored: &str) -> Result<String> {
        self.open_secret(what, stored)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

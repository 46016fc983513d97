//! The server's VAPID identity (RFC 8292): one P-256 key pair, made at the first start and
//! kept in the `settings` table so every instance and every restart signs with the same
//! key (subscriptions are bound to it), and the JWT each push carries.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use web_push::{PartialVapidSignatureBuilder, SubscriptionInfo, VapidSignature, WebPushError};

use crate::store::{Store, StoreError};

/// The settings key of the private key: the raw 32-byte scalar, base64url (sealed under
/// the server key when there is one).
const SETTING: &str = crate::store::VAPID_PRIVATE_KEY;

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
pub const JWT_VALIDITY_SECS: u64 = 12 * 3600;

/// A token is reused for the same push service this long. Push services accept it until
/// its `exp`; signing anew costs an ECDSA signature per message of a fan-out.
const REUSE_SECS: u64 = 3600;
/// Bounds the cache; real deployments meet a handful of push services.
const MAX_CACHED_AUDIENCES: usize = 256;

pub struct VapidKey {
    signer: PartialVapidSignatureBuilder,
    public_key: String,
    /// (audience, subject) -> (signed at, seconds since the epoch; token).
    recent: Mutex<HashMap<(String, String), (u64, VapidSignature)>>,
}

impl VapidKey {
    pub async fn load_or_create(store: &Store) -> Result<Self, StoreError> {
        // Two instances starting at once both generate one; the setting keeps the first.
        let stored = store
            .secret_or_insert(SETTING, || {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                URL_SAFE_NO_PAD.encode(secret.to_bytes())
            })
            .await?;
        Self::from_private_base64(&stored)
    }

    fn from_private_base64(encoded: &str) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("setting {SETTING} is not a P-256 key"));
        // Checked here: jwt-simple panics on a key of the wrong length.
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| corrupt())?;
        if raw.len() != 32 || p256::SecretKey::from_slice(&raw).is_err() {
            return Err(corrupt());
        }
        let signer =
            web_push::VapidSignatureBuilder::from_base64_no_sub(encoded).map_err(|_| corrupt())?;
        let public = signer.get_public_key();
        if public.len() != 65 {
            return Err(corrupt());
        }
        Ok(Self {
            public_key: URL_SAFE_NO_PAD.encode(&public),
            signer,
            recent: Mutex::new(HashMap::new()),
        })
    }

    /// Uncompressed P-256 point, base64url without padding (`applicationServerKey`).
    pub fn public_key_base64(&self) -> &str {
        &self.public_key
    }

    /// The `vapid t=..., k=...` credentials for one push. `audience` is the push
    /// resource's origin with its port (web-push would drop a non-default port, which
    /// push services on such a port reject); `subject` is our contact from the config.
    /// A token signed for the same audience within the last hour is reused.
    pub fn sign(
        &self,
        subscription: &SubscriptionInfo,
        audience: &str,
        subject: &str,
    ) -> Result<VapidSignature, WebPushError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let key = (audience.to_owned(), subject.to_owned());
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((signed_at, token)) = recent.get(&key)
            && now.saturating_sub(*signed_at) < REUSE_SECS
        {
            return Ok(token.clone());
        }
        let mut builder = self.signer.clone().add_sub_info(subscription);
        builder.add_claim("aud", audience);
        builder.add_claim("sub", subject);
        builder.add_claim("exp", now + JWT_VALIDITY_SECS);
        let token = builder.build()?;
        if recent.len() >= MAX_CACHED_AUDIENCES {
            recent.clear();
        }
        recent.insert(key, (now, token.clone()));
        Ok(token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};

    #[test]
    fn jwt_has_our_audience_subject_and_a_valid_signature() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let key =
            VapidKey::from_private_base64(&URL_SAFE_NO_PAD.encode(secret.to_bytes())).unwrap();
        let sub = SubscriptionInfo::new(
            "http://127.0.0.1:18081/push/abc",
            "BH1HTeKM7-NwaLGHEqxeu2IamQaVVLkcsFHPIHmsCnqxcBHPQBprF41bEMOr3O1hUQ2jU1opNEm1F_lZV_sxMP8",
            "sBXU5_tIYz-5w7G2B25BEw",
        );
        let sig = key
            .sign(&sub, "http://127.0.0.1:18081", "mailto:ops@example.org")
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(&sig.auth_k), key.public_key_base64());
        let parts: Vec<&str> = sig.auth_t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "http://127.0.0.1:18081");
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 24 * 3600, "exp {exp}, now {now}");
        let verifying = VerifyingKey::from_sec1_bytes(&sig.auth_k).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        verifying
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn a_token_is_reused_per_audience_only() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let key =
            VapidKey::from_private_base64(&URL_SAFE_NO_PAD.encode(secret.to_bytes())).unwrap();
        let sub = |endpoint: &str| {
            SubscriptionInfo::new(
                endpoint,
                "BH1HTeKM7-NwaLGHEqxeu2IamQaVVLkcsFHPIHmsCnqxcBHPQBprF41bEMOr3O1hUQ2jU1opNEm1F_lZV_sxMP8",
                "sBXU5_tIYz-5w7G2B25BEw",
            )
        };
        let subject = "mailto:ops@example.org";
        let a1 = key
            .sign(&sub("https://a.example/p/1"), "https://a.example", subject)
            .unwrap();
        let a2 = key
            .sign(&sub("https://a.example/p/2"), "https://a.example", subject)
            .unwrap();
        let b = key
            .sign(&sub("https://b.example/p/1"), "https://b.example", subject)
            .unwrap();
        assert_eq!(a1.auth_t, a2.auth_t);
        assert_ne!(a1.auth_t, b.auth_t);
        let aud = |t: &str| {
            let claims: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(t.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            claims["aud"].as_str().unwrap().to_owned()
        };
        assert_eq!(aud(&b.auth_t), "https://b.example");
    }

    #[test]
    fn a_stored_key_that_is_not_a_key_is_reported() {
        assert!(matches!(
            VapidKey::from_private_base64("bm90IGEga2V5"),
            Err(StoreError::Corrupt(_))
        ));
    }
}

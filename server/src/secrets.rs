//! The server key (`LOTSE_SECRET_KEY`) and what it seals. The database holds two secrets
//! of the server itself: the VAPID private key (who holds it can send pushes as this
//! server) and the CSRF key (who holds it can forge the dashboard's form tokens). With a
//! server key they are stored as XChaCha20-Poly1305 ciphertext, so a copy of the database
//! (a backup, a dump, a stolen disk) gives neither away; the key itself lives only in the
//! environment of the server processes. `store/sealed.rs` decides when to seal and open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// A server key shorter than this is refused: it is not a password but key material,
/// derived without a slow hash, so it must not be guessable.
pub const MIN_KEY_CHARS: usize = 32;

/// Marks a sealed value; the plain values (base64url, hex) never contain a colon.
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// The key derived from `LOTSE_SECRET_KEY`; it never appears in a log or `Debug`.
#[derive(Clone)]
pub struct ServerKey(Key);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

/// A sealed value that this key does not open: another key, or altered bytes.
#[derive(Debug)]
pub struct Unopened;

impl ServerKey {
    /// From the text of `LOTSE_SECRET_KEY` (clap's value parser): at least
    /// `MIN_KEY_CHARS` characters, stretched to a cipher key with HKDF-SHA256.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() < MIN_KEY_CHARS {
            return Err(format!(
                "the server key needs at least {MIN_KEY_CHARS} characters; make one with `openssl rand -base64 32`"
            ));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(b"lotse-server secret settings"), text.as_bytes());
        let mut key = [0u8; 32];
        hkdf.expand(b"xchacha20poly1305 v1", &mut key)
            .map_err(|_| "cannot derive the server key".to_owned())?;
        Ok(Self(Key::from(key)))
    }

    /// `plain` sealed for the setting `name` (bound to it: a value copied to another
    /// setting does not open).
    pub fn seal(&self, name: &str, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: name.as_bytes(),
        };
        let sealed = XChaCha20Poly1305::new(&self.0)
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 seals any setting's length");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(blob))
    }

    /// The plain value of a sealed one (see `is_sealed`).
    pub fn open(&self, name: &str, stored: &str) -> Result<String, Unopened> {
        let blob = stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(Unopened)?;
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: name.as_bytes(),
        };
        let plain = XChaCha20Poly1305::new(&self.0)
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| Unopened)?;
        String::from_utf8(plain).map_err(|_| Unopened)
    }
}

/// Whether a stored setting is sealed (else it is the plain value).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let key = ServerKey::parse(KEY).unwrap();
        let sealed = key.seal("a", "geheim");
        assert!(is_sealed(&sealed) && !sealed.contains("geheim"));
        assert_ne!(sealed, key.seal("a", "geheim"), "a fresh nonce each time");
        assert_eq!(key.open("a", &sealed).unwrap(), "geheim");
        assert!(key.open("b", &sealed).is_err(), "bound to its setting");
        let other = ServerKey::parse(&format!("{KEY}!")).unwrap();
        assert!(other.open("a", &sealed).is_err());
        assert!(key.open("a", "sealed:v1:AAAA").is_err());
    }

    #[test]
    fn a_short_key_is_refused() {
        let err = ServerKey::parse("kurz").unwrap_err();
        assert!(err.contains("32 characters"), "{err}");
        assert_eq!(
            format!("{:?}", ServerKey::parse(KEY).unwrap()),
            "ServerKey(..)"
        );
    }
}

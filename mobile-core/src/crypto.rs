//! Encryption at rest (DESIGN.md decision 8). The app's 32-byte key (from the Android
//! Keystore / iOS Keychain) never encrypts content directly: it wraps one random key per
//! document, the device token and a key-check value. Everything uses XChaCha20-Poly1305
//! with a fresh random 24-byte nonce stored in front of the ciphertext, and associated
//! data that binds each blob to its purpose and document, so a blob copied to another row
//! does not decrypt.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use lotse_protocol::DocumentId;

use crate::error::{Error, Result};

const NONCE_LEN: usize = 24;
const KEY_CHECK_PLAINTEXT: &[u8] = b"lotse key check v1";

/// Why a blob did not decrypt: wrong key, or bytes changed on disk.
#[derive(Debug)]
pub struct Unreadable;

/// One XChaCha20-Poly1305 key.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Key::from(bytes))
    }

    pub fn random() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0)
    }

    /// `nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Internal("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, Unreadable> {
        if blob.len() < NONCE_LEN {
            return Err(Unreadable);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| Unreadable)
    }
}

/// Associated data, one function per kind of blob.
pub mod aad {
    use super::DocumentId;

    pub const KEY_CHECK: &[u8] = b"lotse:key-check";
    pub const DEVICE_TOKEN: &[u8] = b"lotse:device-token";
    pub const PUSH_KEYS: &[u8] = b"lotse:push-keys";
    pub const OFFERS: &[u8] = b"lotse:offers";
    pub const LEASE: &[u8] = b"lotse:lease";
    pub const SERVER_URL: &[u8] = b"lotse:server-url";

    pub fn doc_key(id: &DocumentId) -> Vec<u8> {
        [b"lotse:doc-key:".as_slice(), id.as_bytes()].concat()
    }

    pub fn chunk(id: &DocumentId, seq: i64) -> Vec<u8> {
        [
            b"lotse:chunk:".as_slice(),
            id.as_bytes(),
            &seq.to_be_bytes(),
        ]
        .concat()
    }

    pub fn sync_state(id: &DocumentId) -> Vec<u8> {
        [b"lotse:sync-state:".as_slice(), id.as_bytes()].concat()
    }
}

/// The key-check value written when a store is created.
pub fn key_check(app: &SecretKey) -> Result<Vec<u8>> {
    app.seal(KEY_CHECK_PLAINTEXT, aad::KEY_CHECK)
}

/// Whether `app` is the key the store was created with.
pub fn verify_key_check(app: &SecretKey, stored: &[u8]) -> Result<()> {
    match app.open(stored, aad::KEY_CHECK) {
        Ok(plain) if plain == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(Error::WrongKey),
    }
}

pub fn wrap_doc_key(app: &SecretKey, id: &DocumentId, key: &SecretKey) -> Result<Vec<u8>> {
    app.seal(key.0.as_slice(), &aad::doc_key(id))
}

pub fn unwrap_doc_key(app: &SecretKey, id: &DocumentId, wrapped: &[u8]) -> Result<SecretKey> {
    let bytes = app
        .open(wrapped, &aad::doc_key(id))
        .map_err(|_| Error::Corrupt(format!("the key of document {id} does not decrypt")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("the key of document {id} has a wrong length")))?;
    Ok(SecretKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_to_aad() {
        let key = SecretKey::random();
        let blob = key.seal(b"Termin Jobcenter", b"a").unwrap();
        assert_eq!(key.open(&blob, b"a").unwrap(), b"Termin Jobcenter");
        assert!(key.open(&blob, b"b").is_err());
        assert!(SecretKey::random().open(&blob, b"a").is_err());
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(key.open(&flipped, b"a").is_err());
        assert!(key.open(&blob[..10], b"a").is_err());
        // Fresh nonce each time.
        assert_ne!(key.seal(b"x", b"a").unwrap(), key.seal(b"x", b"a").unwrap());
    }

    #[test]
    fn key_check_tells_wrong_keys() {
        let app = SecretKey::from_bytes([7; 32]);
        let check = key_check(&app).unwrap();
        verify_key_check(&app, &check).unwrap();
        assert!(matches!(
            verify_key_check(&SecretKey::from_bytes([8; 32]), &check),
            Err(Error::WrongKey)
        ));
    }

    #[test]
    fn doc_keys_are_bound_to_their_document() {
        let app = SecretKey::random();
        let (a, b) = (DocumentId::random(), DocumentId::random());
        let key = SecretKey::random();
        let wrapped = wrap_doc_key(&app, &a, &key).unwrap();
        let back = unwrap_doc_key(&app, &a, &wrapped).unwrap();
        assert_eq!(back.0, key.0);
        assert!(unwrap_doc_key(&app, &b, &wrapped).is_err());
    }
}

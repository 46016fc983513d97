//! The receiving side of Web Push (RFC 8291, RFC 8188) for the server's tests: a phone's or
//! browser's keys, its subscription JSON, and decryption written from the RFCs rather than
//! from the web-push crate the server sends with.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use serde_json::{Value, json};
use sha2::Sha256;

pub struct Subscriber {
    pub secret: p256::SecretKey,
    pub auth: [u8; 16],
}

impl Subscriber {
    pub fn new() -> Self {
        let mut auth = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut auth);
        Self {
            secret: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth,
        }
    }

    pub fn public_bytes(&self) -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    pub fn subscription(&self, endpoint: &str) -> Value {
        json!({
            "endpoint": endpoint,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(self.public_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth),
            }
        })
    }

    /// Checks the aes128gcm header (RFC 8188 section 2.1: salt, rs, idlen, keyid) and
    /// decrypts the single record (RFC 8291 section 3.4), written from the RFCs.
    pub fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        assert!(body.len() > 21 + 65 + 16, "header, key and tag: {body:?}");
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
        assert_eq!(rs, 4096, "the record size web-push uses");
        let id_len = body[20] as usize;
        assert_eq!(id_len, 65, "keyid is the sender's public key");
        let sender = &body[21..21 + id_len];
        assert_eq!(sender[0], 4, "an uncompressed P-256 point");
        let record = &body[21 + id_len..];
        assert!(record.len() <= rs, "one record");
        let sender_key = p256::PublicKey::from_sec1_bytes(sender).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender_key.as_affine());
        let mut key_info = b"WebPush: info\0".to_vec();
        key_info.extend(self.public_bytes());
        key_info.extend(sender);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&key_info, &mut ikm)
            .unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let mut cek = [0u8; 16];
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .unwrap();
        let mut nonce = [0u8; 12];
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .unwrap();
        let mut plain = Aes128Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt(Nonce::from_slice(&nonce), record)
            .unwrap();
        while plain.last() == Some(&0) {
            plain.pop();
        }
        assert_eq!(plain.pop(), Some(2), "last-record delimiter");
        plain
    }
}

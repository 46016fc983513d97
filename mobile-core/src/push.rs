//! Web Push on the phone: the subscription's key pair and auth secret (RFC 8291 section
//! 2) and the aes128gcm decryption of what the push service delivers (RFC 8291 section 3,
//! RFC 8188). The notice inside (request id, topic, languages, time window, kind) is read
//! by `lotse_protocol::notice`, which the server writes it with. The keys live sealed in
//! the store like the device token. Every malformed input gives a [`PushError`]; nothing
//! here panics on foreign bytes.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use lotse_protocol::notice::{PayloadError, PushPayload};

/// What a notice is about; a kind this version does not know is `Unknown`.
pub use lotse_protocol::PushKind;
/// A decrypted notice, as the server wrote it. It carries no personal data: the app
/// fetches the offer itself.
pub use lotse_protocol::PushPayload as PushEvent;

/// Sender public key (uncompressed P-256 point) length, also the `keyid` of RFC 8291.
const POINT_LEN: usize = 65;
const AUTH_LEN: usize = 16;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// salt (16) + record size (4) + key id length (1).
const HEADER_LEN: usize = SALT_LEN + 4 + 1;
/// Push services deliver at most 4096 bytes; anything far above is not a push.
pub const MAX_PUSH_BYTES: usize = 64 * 1024;

/// Why a push message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// `create_push_subscription_keys` was never called (or the store was wiped).
    #[error("no push keys: create them and register the subscription first")]
    NoKeys,
    #[error("the push message is larger than {MAX_PUSH_BYTES} bytes")]
    TooLarge,
    /// Shorter than its header says, or cut off after a record.
    #[error("the push message is truncated")]
    Truncated,
    /// The aes128gcm header is not usable (`reason` names what).
    #[error("malformed push header: {0}")]
    Header(&'static str),
    /// Authentication failed: not encrypted for our keys, or changed on the way.
    #[error("the push message does not decrypt with this phone's keys")]
    Decrypt,
    /// Decrypted, but the record's padding delimiter is missing or wrong.
    #[error("the push message has invalid padding")]
    Padding,
    /// Decrypted, but not a notice this app understands.
    #[error("the push payload is not a Lotse notice: {0}")]
    Payload(String),
}

/// The phone's half of a Web Push subscription.
#[derive(Clone)]
pub struct PushKeys {
    secret: SecretKey,
    auth: [u8; AUTH_LEN],
}

impl std::fmt::Debug for PushKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushKeys(..)")
    }
}

/// What the server needs to encrypt for this phone, base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscriptionKeys {
    /// The uncompressed P-256 public key (65 bytes).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

impl PushKeys {
    pub fn generate() -> Self {
        let mut auth = [0u8; AUTH_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut auth);
        Self {
            secret: SecretKey::random(&mut rand::rngs::OsRng),
            auth,
        }
    }

    /// From the raw private scalar (32 bytes) and auth secret, e.g. a test vector.
    pub fn from_parts(secret: &[u8], auth: &[u8]) -> Option<Self> {
        Some(Self {
            secret: SecretKey::from_slice(secret).ok()?,
            auth: auth.try_into().ok()?,
        })
    }

    /// The uncompressed point (P-256 does not compress by default), as RFC 8291 wants.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.secret.public_key().to_sec1_bytes().into_vec()
    }

    pub fn subscription_keys(&self) -> PushSubscriptionKeys {
        PushSubscriptionKeys {
            p256dh: URL_SAFE_NO_PAD.encode(self.public_bytes()),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }

    /// `secret (32) || auth (16)`: what the store seals.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.secret.to_bytes().to_vec();
        out.extend_from_slice(&self.auth);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 + AUTH_LEN {
            return None;
        }
        let (secret, auth) = bytes.split_at(32);
        Self::from_parts(secret, auth)
    }

    /// Decrypts one aes128gcm push message (RFC 8291 section 3.4, RFC 8188 section 2).
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, PushError> {
        if body.len() > MAX_PUSH_BYTES {
            return Err(PushError::TooLarge);
        }
        let header = body.get(..HEADER_LEN).ok_or(PushError::Truncated)?;
        let (salt, rest) = header.split_at(SALT_LEN);
        let rs = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let id_len = rest[4] as usize;
        if rs <= TAG_LEN {
            return Err(PushError::Header("record size too small"));
        }
        let key_id = body
            .get(HEADER_LEN..HEADER_LEN + id_len)
            .ok_or(PushError::Truncated)?;
        if id_len != POINT_LEN {
            return Err(PushError::Header(
                "the key id must be the sender's 65-byte public key",
            ));
        }
        let sender =
            PublicKey::from_sec1_bytes(key_id).map_err(|_| PushError::Header("sender key"))?;
        let ciphertext = &body[HEADER_LEN + id_len..];
        if ciphertext.is_empty() {
            return Err(PushError::Truncated);
        }

        // RFC 8291 section 3.3/3.4: the input keying material from ECDH and the auth
        // secret, then the RFC 8188 content key and nonce from the salt.
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender.as_affine());
        let mut key_info = Vec::with_capacity(14 + 2 * POINT_LEN);
        key_info.extend_from_slice(b"WebPush: info\0");
        key_info.extend_from_slice(&self.public_bytes());
        key_info.extend_from_slice(key_id);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&key_info, &mut ikm)
            .map_err(|_| PushError::Decrypt)?;
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let mut cek = [0u8; 16];
        let mut nonce = [0u8; 12];
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .map_err(|_| PushError::Decrypt)?;
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .map_err(|_| PushError::Decrypt)?;
        let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| PushError::Decrypt)?;

        let records: Vec<&[u8]> = ciphertext.chunks(rs).collect();
        let mut plain = Vec::with_capacity(ciphertext.len());
        for (seq, record) in records.iter().enumerate() {
            let last = seq + 1 == records.len();
            if record.len() <= TAG_LEN {
                return Err(PushError::Truncated);
            }
            let mut n = nonce;
            for (b, s) in n[4..].iter_mut().zip((seq as u64).to_be_bytes()) {
                *b ^= s;
            }
            let mut data = cipher
                .decrypt(Nonce::from_slice(&n), *record)
                .map_err(|_| PushError::Decrypt)?;
            // Padding: zeros after a delimiter, 2 in the last record, 1 before it.
            let end = data
                .iter()
                .rposition(|b| *b != 0)
                .ok_or(PushError::Padding)?;
            match (data[end], last) {
                (2, true) | (1, false) => {}
                // A message that stops after a non-last record was cut off.
                (1, true) => return Err(PushError::Truncated),
                _ => return Err(PushError::Padding),
            }
            data.truncate(end);
            plain.extend_from_slice(&data);
        }
        Ok(plain)
    }
}

/// Parses a decrypted payload.
pub fn parse_event(plain: &[u8]) -> Result<PushEvent, PushError> {
    PushPayload::parse(plain).map_err(PushError::from)
}

impl From<PayloadError> for PushError {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e.to_string())
    }
}

/// Decrypts and parses a push message.
pub fn decrypt_event(keys: &PushKeys, body: &[u8]) -> Result<PushEvent, PushError> {
    parse_event(&keys.decrypt(body)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    // RFC 8291 section 5 (and appendix A): the example message and keys.
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const MESSAGE: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn rfc_keys() -> PushKeys {
        PushKeys::from_parts(&b64(UA_PRIVATE), &b64(AUTH)).unwrap()
    }

    #[test]
    fn rfc8291_example_decrypts() {
        let keys = rfc_keys();
        assert_eq!(keys.public_bytes(), b64(UA_PUBLIC));
        let message = b64(MESSAGE);
        // The header names the application server's key as in the RFC.
        assert_eq!(&message[21..86], b64(AS_PUBLIC).as_slice());
        assert_eq!(
            keys.decrypt(&message).unwrap(),
            b"When I grow up, I want to be a watermelon"
        );
        // Not a Lotse notice, though.
        assert!(matches!(
            decrypt_event(&keys, &message),
            Err(PushError::Payload(_))
        ));
    }

    #[test]
    fn keys_round_trip_through_bytes() {
        let keys = PushKeys::generate();
        let back = PushKeys::from_bytes(&keys.to_bytes()).unwrap();
        assert_eq!(back.public_bytes(), keys.public_bytes());
        assert_eq!(back.auth, keys.auth);
        let sub = keys.subscription_keys();
        assert_eq!(b64(&sub.p256dh).len(), 65);
        assert_eq!(b64(&sub.p256dh)[0], 4);
        assert_eq!(b64(&sub.auth).len(), 16);
        assert!(PushKeys::from_bytes(&[0; 48]).is_none(), "zero scalar");
        assert!(PushKeys::from_bytes(&[1; 20]).is_none());
    }

    #[test]
    fn bad_messages_give_typed_errors() {
        let keys = rfc_keys();
        let message = b64(MESSAGE);
        // Every truncation, never a panic.
        for n in 0..message.len() {
            let e = keys.decrypt(&message[..n]).unwrap_err();
            assert!(
                matches!(e, PushError::Truncated | PushError::Decrypt),
                "{n}: {e:?}"
            );
        }
        for n in 0..HEADER_LEN + POINT_LEN + 1 {
            assert_eq!(
                keys.decrypt(&message[..n]).unwrap_err(),
                PushError::Truncated
            );
        }
        // Another phone's keys.
        assert_eq!(
            PushKeys::generate().decrypt(&message).unwrap_err(),
            PushError::Decrypt
        );
        // Every single flipped bit: header errors or authentication failure. (Except in
        // the record size: a larger one still frames this single record correctly.)
        for i in (0..16).chain(20..message.len()) {
            let mut m = message.clone();
            m[i] ^= 0x01;
            assert!(keys.decrypt(&m).is_err(), "bit flip at {i} accepted");
        }
        // Header fields.
        let mut m = message.clone();
        m[16..20].copy_from_slice(&16u32.to_be_bytes());
        assert_eq!(
            keys.decrypt(&m).unwrap_err(),
            PushError::Header("record size too small")
        );
        let mut m = message.clone();
        m[20] = 0;
        assert!(matches!(keys.decrypt(&m), Err(PushError::Header(_))));
        let mut m = message.clone();
        m[21] = 0x07; // not an uncompressed point
        assert!(matches!(keys.decrypt(&m), Err(PushError::Header(_))));
        assert_eq!(
            keys.decrypt(&vec![0; MAX_PUSH_BYTES + 1]).unwrap_err(),
            PushError::TooLarge
        );
        // Random garbage of many lengths.
        for len in [0, 1, 20, 21, 86, 87, 103, 200, 4096] {
            let mut junk = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut junk);
            assert!(keys.decrypt(&junk).is_err());
        }
    }

    #[test]
    fn payloads_parse_into_events() {
        let event = parse_event(
            br#"{"v":1,"kind":"offer","request_id":"6f1c","topic":"behoerden","languages":["ar","de"],"window_start":1,"window_end":2,"new":true}"#,
        )
        .unwrap();
        assert_eq!(event.kind, PushKind::Offer);
        assert_eq!(event.languages, ["ar", "de"]);
        assert_eq!((event.window_start, event.window_end), (1, 2));
        let later = parse_event(
            br#"{"v":2,"kind":"reminder","request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2}"#,
        )
        .unwrap();
        assert_eq!(
            later.kind,
            PushKind::Unknown {
                code: "reminder".into()
            }
        );
        for bad in [
            &b"not json"[..],
            br#"{"v":1,"kind":"offer"}"#,
            br#"{"v":0,"kind":"offer","request_id":"x","topic":"t","languages":[],"window_start":1,"window_end":2}"#,
            br#"[]"#,
            b"",
        ] {
            assert!(matches!(parse_event(bad), Err(PushError::Payload(_))));
        }
    }
}

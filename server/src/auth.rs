//! Secrets: argon2id password hashes, random tokens and codes, and the hashes we keep
//! of them. The database never holds a token or code, only its SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Coordinator session tokens start with this, device tokens with `DEVICE_PREFIX`, so a
/// token's kind is known before any lookup.
pub const SESSION_PREFIX: &str = "lts_";
pub const DEVICE_PREFIX: &str = "ltd_";

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fixed hash to verify against when the account does not exist, so a wrong email
/// costs as much time as a wrong password and reveals nothing.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Crockford's base32 without I, L, O, U: nothing to confuse when read aloud or typed.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
pub const CODE_LEN: usize = 10;

/// A one-time enrollment code such as `7KQ2M-X9D4T` (50 bits).
pub fn new_enrollment_code() -> String {
    let mut rng = rand::thread_rng();
    let mut code = String::with_capacity(CODE_LEN + 1);
    for i in 0..CODE_LEN {
        if i == CODE_LEN / 2 {
            code.push('-');
        }
        code.push(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char);
    }
    code
}

/// Canonical form of a typed code: case, spaces and dashes do not matter, and the
/// letters people confuse with digits are read as those digits.
pub fn normalize_code(input: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !CODE_ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

pub fn code_hash(code: &str) -> Option<String> {
    normalize_code(code).map(|c| token_hash(&c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let h = hash_password("Korrekt Pferd Batterie").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Korrekt Pferd Batterie", &h));
        assert!(!verify_password("korrekt pferd batterie", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn codes_normalise() {
        let code = new_enrollment_code();
        assert_eq!(code.len(), CODE_LEN + 1);
        assert_eq!(
            code_hash(&code),
            code_hash(&code.to_lowercase().replace('-', " "))
        );
        assert_eq!(normalize_code("o1il0-abcde").as_deref(), Some("01110ABCDE"));
        assert_eq!(normalize_code("short"), None);
        assert_eq!(normalize_code("ÄBCDE-FGHJK"), None);
    }

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let a = new_token(DEVICE_PREFIX);
        let b = new_token(DEVICE_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(DEVICE_PREFIX));
        assert_eq!(token_hash(&a).len(), 64);
    }
}

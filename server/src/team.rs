//! The team's rules, shared by the API and the dashboard: who must have a second
//! factor, TOTP codes (RFC 6238, through totp-rs) and recovery codes, one-time links for
//! invitations and password resets with the e-mails that carry them, and the password
//! rule.

use rand::Rng;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::store::{Coordinator, LinkPurpose};

/// Hours an invitation link works.
pub const INVITE_HOURS: i64 = 72;
/// Hours a password reset link works.
pub const RESET_HOURS: i64 = 24;
/// One-time link tokens start with this.
pub const LINK_PREFIX: &str = "ltl_";
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Lotse";

/// Whether this coordinator must log in with a second factor: Leitung always, everyone
/// when the organisation asks for it.
pub fn needs_second_factor(c: &Coordinator, organisation_requires_it: bool) -> bool {
    c.is_leitung() || organisation_requires_it
}

/// Why a new password is refused, in both languages.
pub fn password_problem(password: &str) -> Option<(&'static str, &'static str)> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Some((
            "Das Passwort braucht mindestens 12 Zeichen.",
            "The password needs at least 12 characters.",
        ))
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some(("Das Passwort ist zu lang.", "The password is too long."))
    } else {
        None
    }
}

/// A fresh second-factor secret (160 bits, as RFC 4226 recommends), base32.
pub fn new_totp_secret() -> String {
    let bytes: [u8; 20] = rand::thread_rng().r#gen();
    Secret::from(bytes.to_vec()).to_base32()
}

fn totp(secret_base32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        // The account name shows in the authenticator app; a colon is not allowed there.
        .with_account_name(account.replace(':', " "))
        .build()
        .ok()
}

/// The `otpauth://` address an authenticator app reads from the QR code.
pub fn otpauth_url(secret_base32: &str, account: &str) -> Option<String> {
    totp(secret_base32, account)?.to_url().ok()
}

/// The time step a code is valid for (one step either side for clocks a little off),
/// or `None` for a wrong code. The caller must accept each step only once.
pub fn check_code(secret_base32: &str, code: &str, unix_secs: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = totp(secret_base32, "x")?.check(&code, unix_secs)?;
    i64::try_from(step).ok()
}

/// The code of `unix_secs`, for tests and for showing a clock check.
pub fn code_at(secret_base32: &str, unix_secs: u64) -> Option<String> {
    Some(totp(secret_base32, "x")?.generate(unix_secs).to_string())
}

/// Whether `input` looks like a recovery code rather than a six-digit code.
pub fn is_recovery_code(input: &str) -> bool {
    normalize_recovery(input).len() == 12
}

/// Ten recovery codes such as `k7qm-x9dt-4rwa` (60 bits each), shown once.
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..12)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            format!(
                "{}-{}-{}",
                chars[..4].iter().collect::<String>(),
                chars[4..8].iter().collect::<String>(),
                chars[8..].iter().collect::<String>()
            )
        })
        .collect()
}

fn normalize_recovery(input: &str) -> String {
    input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What the store keeps of a recovery code. The codes are random (60 bits), so a plain
/// hash suffices.
pub fn recovery_hash(code: &str) -> String {
    hex::encode(Sha256::digest(normalize_recovery(code).as_bytes()))
}

/// The address of a one-time link. The token travels in the query: only the path of a
/// request is logged.
pub fn link_url(base: &str, token: &str) -> String {
    format!("{base}/dashboard/welcome?token={token}")
}

/// The e-mail carrying a one-time link: who sent it, for which network, until when. No
/// case content, ever.
pub fn link_email(
    purpose: LinkPurpose,
    organisation: &str,
    sender: &str,
    link: &str,
    valid_until: &str,
) -> (String, String) {
    match purpose {
        LinkPurpose::Invite => (
            format!("Einladung in die Koordination: {organisation} / Invitation to coordinate"),
            format!(
                "Guten Tag,\n\n{sender} lädt Sie in die Koordination von {organisation} in Lotse ein.\n\
                 Legen Sie über diesen Link Ihr Passwort fest (gültig bis {valid_until}, nur einmal):\n\n\
                 {link}\n\n\
                 Wenn Sie diese Einladung nicht erwartet haben, ignorieren Sie diese E-Mail.\n\n\
                 ---\n\n\
                 {sender} invites you to coordinate {organisation} in Lotse.\n\
                 Set your password through this link (valid until {valid_until}, once):\n\n\
                 {link}\n\n\
                 If you did not expect this invitation, ignore this e-mail.\n"
            ),
        ),
        LinkPurpose::Reset => (
            format!("Neues Passwort für Lotse ({organisation}) / New password"),
            format!(
                "Guten Tag,\n\n{sender} hat für Ihr Konto bei {organisation} in Lotse ein neues Passwort veranlasst.\n\
                 Legen Sie es über diesen Link fest (gültig bis {valid_until}, nur einmal):\n\n\
                 {link}\n\n\
                 Ihr altes Passwort gilt weiter, bis Sie ein neues festlegen.\n\n\
                 ---\n\n\
                 {sender} started a password reset for your account at {organisation} in Lotse.\n\
                 Set a new password through this link (valid until {valid_until}, once):\n\n\
                 {link}\n\n\
                 Your old password keeps working until you set a new one.\n"
            ),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_accepted_in_its_window_only() {
        let secret = new_totp_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = check_code(&secret, &code, now).unwrap();
        assert_eq!(step as u64, now / 30);
        // One step of clock drift either way is fine, two are not.
        assert!(check_code(&secret, &code, now + 30).is_some());
        assert!(check_code(&secret, &code, now + 90).is_none());
        assert!(check_code(&secret, "12345", now).is_none());
        assert!(check_code(&secret, "abcdef", now).is_none());
    }

    #[test]
    fn rfc_6238_vector() {
        // RFC 6238, appendix B: SHA-1, secret "12345678901234567890", T = 59 s.
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let c = &codes[0];
        assert!(is_recovery_code(c));
        assert_eq!(
            recovery_hash(c),
            recovery_hash(&c.to_uppercase().replace('-', " "))
        );
        assert!(!is_recovery_code("123456"));
    }

    #[test]
    fn otpauth_url_names_issuer_and_account() {
        let url = otpauth_url(&new_totp_secret(), "leitung@example.org").unwrap();
        assert!(url.starts_with("otpauth://totp/Lotse:"), "{url}");
        assert!(url.contains("issuer=Lotse"), "{url}");
    }
}

//! Document ids: 16 random bytes, written as bs58check exactly as automerge-repo writes
//! them, so ids minted here and ids minted by a JavaScript repo are interchangeable.

use std::fmt;
use std::str::FromStr;

/// The prefix of the URL form (`automerge:<id>`) used by automerge-repo.
pub const URL_PREFIX: &str = "automerge:";

/// bs58 of 20 bytes (16 id + 4 checksum) is at most 28 characters. Anything much longer
/// is rejected before decoding because base58 decoding is quadratic in the input length
/// and the input may come straight off the network.
const MAX_ENCODED_LEN: usize = 40;

/// The id of an automerge document.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId([u8; 16]);

/// Why a string or byte slice is not a document id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    #[error("document id is empty")]
    Empty,
    #[error("document id is too long ({len} characters)")]
    TooLong { len: usize },
    #[error("document id contains {character:?}, which is not a base58 character")]
    InvalidCharacter { character: char },
    #[error("document id has a wrong bs58check checksum")]
    BadChecksum,
    #[error("document id must be 16 bytes, found {len}")]
    WrongLength { len: usize },
    #[error("document id is not valid bs58check")]
    NotBase58Check,
    #[error("not an automerge URL (expected automerge:<id>)")]
    NotAnAutomergeUrl,
}

impl DocumentId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh id from the operating system's randomness (a UUID v4, as automerge-repo
    /// uses), so ids minted offline on different devices never collide.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().into_bytes())
    }

    /// The `automerge:<id>` form understood by automerge-repo.
    pub fn to_url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Parses the `automerge:<id>` form. Heads (`#...`) or paths (`/...`) are not part of a
    /// document id and are rejected.
    pub fn from_url(url: &str) -> Result<Self, DocumentIdError> {
        match url.strip_prefix(URL_PREFIX) {
            Some(id) => Self::from_bs58check(id),
            None => Err(DocumentIdError::NotAnAutomergeUrl),
        }
    }

    /// Parses the bare bs58check form only, as it travels in `documentId` on the wire.
    pub fn from_bs58check(s: &str) -> Result<Self, DocumentIdError> {
        if s.is_empty() {
            return Err(DocumentIdError::Empty);
        }
        if s.len() > MAX_ENCODED_LEN {
            return Err(DocumentIdError::TooLong { len: s.len() });
        }
        let bytes = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|e| match e {
                bs58::decode::Error::InvalidCharacter { character, .. } => {
                    DocumentIdError::InvalidCharacter { character }
                }
                bs58::decode::Error::NonAsciiCharacter { index } => {
                    DocumentIdError::InvalidCharacter {
                        character: s[index..].chars().next().unwrap_or('\u{fffd}'),
                    }
                }
                bs58::decode::Error::InvalidChecksum { .. } => DocumentIdError::BadChecksum,
                _ => DocumentIdError::NotBase58Check,
            })?;
        Self::try_from(bytes.as_slice())
    }
}

impl TryFrom<&[u8]> for DocumentId {
    type Error = DocumentIdError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 16]>::try_from(bytes)
            .map(Self)
            .map_err(|_| DocumentIdError::WrongLength { len: bytes.len() })
    }
}

impl From<[u8; 16]> for DocumentId {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

/// Accepts the bare id and the `automerge:<id>` URL form.
impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with(URL_PREFIX) {
            Self::from_url(s)
        } else {
            Self::from_bs58check(s)
        }
    }
}

impl serde::Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DocumentId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bs58check document id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DocumentId, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // From automerge-repo's packages/automerge-repo/test/AutomergeUrl.test.ts.
    const JS_ID: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";
    const JS_BYTES: [u8; 16] = [
        241, 194, 156, 132, 116, 200, 74, 222, 184, 0, 190, 71, 98, 125, 51, 191,
    ];

    #[test]
    fn matches_automerge_repo_encoding() {
        let id = DocumentId::from_bytes(JS_BYTES);
        assert_eq!(id.to_string(), JS_ID);
        assert_eq!(JS_ID.parse::<DocumentId>().unwrap(), id);
        assert_eq!(id.to_url(), format!("automerge:{JS_ID}"));
        assert_eq!(DocumentId::from_url(&id.to_url()).unwrap(), id);
        assert_eq!(id.to_url().parse::<DocumentId>().unwrap(), id);
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(
            "badbadbad".parse::<DocumentId>(),
            Err(DocumentIdError::BadChecksum)
        );
        assert_eq!("".parse::<DocumentId>(), Err(DocumentIdError::Empty));
        assert_eq!(
            "automerge:".parse::<DocumentId>(),
            Err(DocumentIdError::Empty)
        );
        assert!(matches!(
            "4NMNnkMhL8jXrdJ9jamS58PAVdX0".parse::<DocumentId>(),
            Err(DocumentIdError::InvalidCharacter { character: '0' })
        ));
        assert!(matches!(
            "4NMNnkMhL8jXrdJ9jamS58PAVdXü".parse::<DocumentId>(),
            Err(DocumentIdError::InvalidCharacter { character: 'ü' })
        ));
        // Valid bs58check, but 8 bytes: automerge-repo's "badUuidDocumentId".
        let short = bs58::encode([1u8, 2, 3, 4, 42, 255, 69, 9])
            .with_check()
            .into_string();
        assert_eq!(
            short.parse::<DocumentId>(),
            Err(DocumentIdError::WrongLength { len: 8 })
        );
        assert!(matches!(
            "x".repeat(10_000).parse::<DocumentId>(),
            Err(DocumentIdError::TooLong { .. })
        ));
        assert!(DocumentId::from_url(&format!("yjs:{JS_ID}")).is_err());
        assert_eq!(
            DocumentId::from_url(JS_ID),
            Err(DocumentIdError::NotAnAutomergeUrl)
        );
        assert!(DocumentId::from_url(&format!("automerge:{JS_ID}#abc")).is_err());
        assert_eq!(
            DocumentId::try_from(&[0u8; 15][..]),
            Err(DocumentIdError::WrongLength { len: 15 })
        );
    }

    #[test]
    fn random_ids_round_trip() {
        let a = DocumentId::random();
        let b = DocumentId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<DocumentId>().unwrap(), a);
        // UUID v4 layout, as automerge-repo mints them.
        assert_eq!(a.as_bytes()[6] >> 4, 4);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id = DocumentId::from_bytes(JS_BYTES);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{JS_ID}\""));
        assert_eq!(serde_json::from_str::<DocumentId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<DocumentId>("\"badbadbad\"").is_err());
    }
}

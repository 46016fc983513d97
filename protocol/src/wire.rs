//! The messages that travel in WebSocket binary frames: automerge-repo network protocol v1
//! (one CBOR map with text keys per frame, as the JavaScript client's cbor-x writes it) and
//! Lotse's catch-up extension (`lotse-*` types, see DESIGN.md decision 2).
//!
//! Decoding is lenient where JavaScript is loose (unknown keys, `undefined`/`null` for absent
//! optional fields, floats for counters) and strict where a mistake would reach storage or
//! the sync engine (document ids, empty sync data, missing fields). It never panics and puts
//! no limit on sizes: the server caps frame sizes before calling [`Message::decode`].

use std::collections::BTreeMap;

use ciborium::value::Value;

use crate::docid::{DocumentId, DocumentIdError};

/// The only protocol version automerge-repo has defined.
pub const PROTOCOL_VERSION: &str = "1";

/// Our frames nest four levels at most (`remoteHeadsChanged.newHeads.<id>.heads`); a low
/// limit keeps hostile nesting far away from the stack size of an async worker thread.
const MAX_NESTING: usize = 16;

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// Names the peer's storage; keys its persisted sync state.
    pub storage_id: Option<String>,
    /// `true`: do not persist sync state for this peer.
    pub is_ephemeral: Option<bool>,
}

/// One storage peer's heads in a `remote-heads-changed` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadsInfo {
    /// bs58check-encoded change hashes, as automerge-repo writes them.
    pub heads: Vec<String>,
    /// Milliseconds since the epoch, on the clock of the peer that first saw the heads.
    pub timestamp: u64,
}

/// One frame of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client -> server, first frame. A missing `supportedProtocolVersions` decodes as `["1"]`.
    Join {
        sender_id: String,
        peer_metadata: PeerMetadata,
        supported_protocol_versions: Vec<String>,
    },
    /// Server -> client, answer to `join`.
    Peer {
        sender_id: String,
        target_id: String,
        peer_metadata: PeerMetadata,
        selected_protocol_version: String,
    },
    /// The sender has no copy yet; `data` is an automerge sync message.
    Request {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// An automerge sync message for one document.
    Sync {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// "I do not have it" - also the answer when access is denied.
    DocUnavailable {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
    },
    /// Application payload relayed to peers of the document, never stored.
    Ephemeral {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    },
    /// Sent before closing the connection.
    Error {
        sender_id: String,
        target_id: Option<String>,
        message: String,
    },
    /// Advisory: the sender is going away.
    Leave { sender_id: String },
    /// Subscribe to or unsubscribe from heads of other storage ids.
    RemoteSubscriptionChange {
        sender_id: String,
        target_id: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// Heads of a document at other storage peers.
    RemoteHeadsChanged {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        new_heads: BTreeMap<String, HeadsInfo>,
    },
    /// `lotse-catchup`, client -> server: [`crate::catchup::digest`] over all documents the
    /// client holds, and how many those are.
    Catchup {
        sender_id: String,
        target_id: String,
        digest: [u8; 32],
        count: u64,
    },
    /// `lotse-in-sync`, server -> client: the digest matched; the reconnect is done.
    InSync {
        sender_id: String,
        target_id: String,
    },
    /// `lotse-manifest`, server -> client: every document the client may hold, with
    /// [`crate::catchup::heads_digest`] of the server's heads.
    Manifest {
        sender_id: String,
        target_id: String,
        entries: Vec<(DocumentId, [u8; 8])>,
    },
    /// `lotse-revoked`, server -> client: the device was revoked and must wipe its data.
    Revoked {
        sender_id: String,
        target_id: String,
    },
    /// `lotse-shared`, server -> client: documents were shared with the client's volunteer
    /// since its last catch-up; send `lotse-catchup` to learn which. Names no document, so
    /// it cannot tell anyone about a case they may not see.
    Shared {
        sender_id: String,
        target_id: String,
    },
    /// `lotse-lease`, server -> device, after each catch-up verdict: keep the documents
    /// readable for `lease_ms` from now (the device's own clock) without further contact,
    /// then destroy the keys. A duration, not a date, so the two clocks need not agree.
    Lease {
        sender_id: String,
        target_id: String,
        lease_ms: u64,
    },
    /// `lotse-refused`, server -> client: the client's last sync message for the document
    /// broke `rule` (a [`crate::quota::Rule`] code) with its `limit`; nothing of it was
    /// stored or forwarded. Only this document is refused; the connection goes on.
    Refused {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        rule: String,
        limit: u64,
    },
    /// `lotse-deleted`, server -> client: the network deleted the document (a coordinator,
    /// or the retention period). Delete the local copy and its key; changes to it are
    /// refused for ever. With `superseded`, the case lives on in a newer generation
    /// (docs/sync.md): replay unsynced edits onto it before deleting the copy.
    Deleted {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        superseded: Option<Superseded>,
    },
}

/// Where a rewritten case lives on: `successor` (wire field `successor`, a document id),
/// and the changes the server held of the document deleted (`known`, the hashes one after
/// another), so the peer can tell which of its own it must replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub successor: DocumentId,
    pub known: crate::schema::generation::KnownChanges,
}

/// Why a frame is not a message. The text is meant for the peer (in an `error` message)
/// and for logs; it never repeats the frame's content beyond key and type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame is not valid CBOR: {0}")]
    Cbor(String),
    #[error("frame has {0} bytes after the message")]
    TrailingBytes(usize),
    #[error("frame is not a CBOR map")]
    NotAMap,
    #[error("key {0:?} appears more than once")]
    DuplicateKey(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("message lacks required field {0}")]
    MissingField(&'static str),
    #[error("field {field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field {0} must not be empty")]
    Empty(&'static str),
    #[error("field {0} must be a non-negative integer")]
    InvalidNumber(&'static str),
    #[error("field {field} must be {expected} bytes long, found {found}")]
    WrongLength {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("invalid documentId: {0}")]
    InvalidDocumentId(#[from] DocumentIdError),
}

mod types {
    pub const JOIN: &str = "join";
    pub const PEER: &str = "peer";
    pub const REQUEST: &str = "request";
    pub const SYNC: &str = "sync";
    pub const DOC_UNAVAILABLE: &str = "doc-unavailable";
    pub const EPHEMERAL: &str = "ephemeral";
    pub const ERROR: &str = "error";
    pub const LEAVE: &str = "leave";
    pub const REMOTE_SUBSCRIPTION_CHANGE: &str = "remote-subscription-change";
    pub const REMOTE_HEADS_CHANGED: &str = "remote-heads-changed";
    pub const CATCHUP: &str = "lotse-catchup";
    pub const IN_SYNC: &str = "lotse-in-sync";
    pub const MANIFEST: &str = "lotse-manifest";
    pub const REVOKED: &str = "lotse-revoked";
    pub const SHARED: &str = "lotse-shared";
    pub const LEASE: &str = "lotse-lease";
    pub const REFUSED: &str = "lotse-refused";
    pub const DELETED: &str = "lotse-deleted";
}

impl Message {
    /// The value of the `type` key.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Join { .. } => types::JOIN,
            Self::Peer { .. } => types::PEER,
            Self::Request { .. } => types::REQUEST,
            Self::Sync { .. } => types::SYNC,
            Self::DocUnavailable { .. } => types::DOC_UNAVAILABLE,
            Self::Ephemeral { .. } => types::EPHEMERAL,
            Self::Error { .. } => types::ERROR,
            Self::Leave { .. } => types::LEAVE,
            Self::RemoteSubscriptionChange { .. } => types::REMOTE_SUBSCRIPTION_CHANGE,
            Self::RemoteHeadsChanged { .. } => types::REMOTE_HEADS_CHANGED,
            Self::Catchup { .. } => types::CATCHUP,
            Self::InSync { .. } => types::IN_SYNC,
            Self::Manifest { .. } => types::MANIFEST,
            Self::Revoked { .. } => types::REVOKED,
            Self::Shared { .. } => types::SHARED,
            Self::Lease { .. } => types::LEASE,
            Self::Refused { .. } => types::REFUSED,
            Self::Deleted { .. } => types::DELETED,
        }
    }

    /// Whether this is one of our `lotse-*` messages, which must only be sent to peers that
    /// used the extension first.
    pub fn is_extension(&self) -> bool {
        matches!(
            self,
            Self::Catchup { .. }
                | Self::InSync { .. }
                | Self::Manifest { .. }
                | Self::Revoked { .. }
                | Self::Shared { .. }
                | Self::Lease { .. }
                | Self::Refused { .. }
                | Self::Deleted { .. }
        )
    }

    pub fn sender_id(&self) -> &str {
        match self {
            Self::Join { sender_id, .. }
            | Self::Peer { sender_id, .. }
            | Self::Request { sender_id, .. }
            | Self::Sync { sender_id, .. }
            | Self::DocUnavailable { sender_id, .. }
            | Self::Ephemeral { sender_id, .. }
            | Self::Error { sender_id, .. }
            | Self::Leave { sender_id }
            | Self::RemoteSubscriptionChange { sender_id, .. }
            | Self::RemoteHeadsChanged { sender_id, .. }
            | Self::Catchup { sender_id, .. }
            | Self::InSync { sender_id, .. }
            | Self::Manifest { sender_id, .. }
            | Self::Revoked { sender_id, .. }
            | Self::Shared { sender_id, .. }
            | Self::Lease { sender_id, .. }
            | Self::Refused { sender_id, .. }
            | Self::Deleted { sender_id, .. } => sender_id,
        }
    }

    /// `None` for `join`, `leave` and an `error` without a target.
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Self::Join { .. } | Self::Leave { .. } => None,
            Self::Error { target_id, .. } => target_id.as_deref(),
            Self::Peer { target_id, .. }
            | Self::Request { target_id, .. }
            | Self::Sync { target_id, .. }
            | Self::DocUnavailable { target_id, .. }
            | Self::Ephemeral { target_id, .. }
            | Self::RemoteSubscriptionChange { target_id, .. }
            | Self::RemoteHeadsChanged { target_id, .. }
            | Self::Catchup { target_id, .. }
            | Self::InSync { target_id, .. }
            | Self::Manifest { target_id, .. }
            | Self::Revoked { target_id, .. }
            | Self::Shared { target_id, .. }
            | Self::Lease { target_id, .. }
            | Self::Refused { target_id, .. }
            | Self::Deleted { target_id, .. } => Some(target_id),
        }
    }

    pub fn document_id(&self) -> Option<&DocumentId> {
        match self {
            Self::Request { document_id, .. }
            | Self::Sync { document_id, .. }
            | Self::DocUnavailable { document_id, .. }
            | Self::Ephemeral { document_id, .. }
            | Self::RemoteHeadsChanged { document_id, .. }
            | Self::Refused { document_id, .. }
            | Self::Deleted { document_id, .. } => Some(document_id),
            _ => None,
        }
    }

    /// Parses one frame.
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        let mut rest = frame;
        let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_NESTING)
            .map_err(|e| WireError::Cbor(cbor_error_text(&e)))?;
        if !rest.is_empty() {
            return Err(WireError::TrailingBytes(rest.len()));
        }
        let Value::Map(entries) = value else {
            return Err(WireError::NotAMap);
        };
        let f = Fields::new(entries)?;
        let ty = f.text("type")?;
        let message = match ty.as_str() {
            types::JOIN => Self::Join {
                sender_id: f.text("senderId")?,
                peer_metadata: f.peer_metadata()?,
                supported_protocol_versions: f
                    .opt_text_list("supportedProtocolVersions")?
                    .unwrap_or_else(|| vec![PROTOCOL_VERSION.to_owned()]),
            },
            types::PEER => Self::Peer {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                peer_metadata: f.peer_metadata()?,
                selected_protocol_version: f.text("selectedProtocolVersion")?,
            },
            types::REQUEST => Self::Request {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                data: f.non_empty_bytes("data")?,
            },
            types::SYNC => Self::Sync {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                data: f.non_empty_bytes("data")?,
            },
            // The same fields: what differs is what the receiver does.
            types::DOC_UNAVAILABLE | types::DELETED => {
                let (sender_id, target_id) = (f.text("senderId")?, f.text("targetId")?);
                let document_id = f.document_id()?;
                if ty == types::DELETED {
                    Self::Deleted {
                        sender_id,
                        target_id,
                        document_id,
                        superseded: f.superseded()?,
                    }
                } else {
                    Self::DocUnavailable {
                        sender_id,
                        target_id,
                        document_id,
                    }
                }
            }
            types::EPHEMERAL => Self::Ephemeral {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                session_id: f.text("sessionId")?,
                count: f.number("count")?,
                data: f.bytes("data")?,
            },
            types::ERROR => Self::Error {
                sender_id: f.text("senderId")?,
                target_id: f.opt_text("targetId")?,
                message: f.text("message")?,
            },
            types::LEAVE => Self::Leave {
                sender_id: f.text("senderId")?,
            },
            types::REMOTE_SUBSCRIPTION_CHANGE => Self::RemoteSubscriptionChange {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                add: f.opt_text_list("add")?.unwrap_or_default(),
                remove: f.opt_text_list("remove")?.unwrap_or_default(),
            },
            types::REMOTE_HEADS_CHANGED => Self::RemoteHeadsChanged {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                new_heads: f.new_heads()?,
            },
            types::CATCHUP => Self::Catchup {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                digest: fixed_bytes(f.bytes("digest")?, "digest")?,
                count: f.number("count")?,
            },
            types::IN_SYNC => Self::InSync {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
            },
            types::MANIFEST => Self::Manifest {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                entries: f.manifest_entries()?,
            },
            types::REVOKED => Self::Revoked {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
            },
            types::SHARED => Self::Shared {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
            },
            types::LEASE => Self::Lease {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                lease_ms: f.number("leaseMs")?,
            },
            types::REFUSED => Self::Refused {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                rule: f.text("rule")?,
                limit: f.number("limit")?,
            },
            _ => return Err(WireError::UnknownType(ty)),
        };
        Ok(message)
    }

    /// Serialises one frame. Callers must not build `request`/`sync` with empty `data`:
    /// the JavaScript client would never send one and ours reject them.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = MapBuilder::new(self.type_name());
        match self {
            Self::Join {
                sender_id,
                peer_metadata,
                supported_protocol_versions,
            } => {
                m.text("senderId", sender_id);
                m.peer_metadata(peer_metadata);
                m.text_list("supportedProtocolVersions", supported_protocol_versions);
            }
            Self::Peer {
                sender_id,
                target_id,
                peer_metadata,
                selected_protocol_version,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.peer_metadata(peer_metadata);
                m.text("selectedProtocolVersion", selected_protocol_version);
            }
            Self::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
            | Self::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
                m.bytes("data", data);
            }
            Self::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
            }
            Self::Deleted {
                sender_id,
                target_id,
                document_id,
                superseded,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
                if let Some(s) = superseded {
                    m.text("successor", &s.successor.to_string());
                    m.bytes("known", &s.known.to_bytes());
                }
            }
            Self::Ephemeral {
                sender_id,
                target_id,
                document_id,
                session_id,
                count,
                data,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
                m.text("sessionId", session_id);
                m.uint("count", *count);
                m.bytes("data", data);
            }
            Self::Error {
                sender_id,
                target_id,
                message,
            } => {
                m.text("senderId", sender_id);
                if let Some(target_id) = target_id {
                    m.text("targetId", target_id);
                }
                m.text("message", message);
            }
            Self::Leave { sender_id } => m.text("senderId", sender_id),
            Self::RemoteSubscriptionChange {
                sender_id,
                target_id,
                add,
                remove,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                if !add.is_empty() {
                    m.text_list("add", add);
                }
                if !remove.is_empty() {
                    m.text_list("remove", remove);
                }
            }
            Self::RemoteHeadsChanged {
                sender_id,
                target_id,
                document_id,
                new_heads,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
                let heads = new_heads
                    .iter()
                    .map(|(storage_id, info)| {
                        let info = vec![
                            (key("heads"), text_list(&info.heads)),
                            (key("timestamp"), Value::Integer(info.timestamp.into())),
                        ];
                        (Value::Text(storage_id.clone()), Value::Map(info))
                    })
                    .collect();
                m.value("newHeads", Value::Map(heads));
            }
            Self::Catchup {
                sender_id,
                target_id,
                digest,
                count,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.bytes("digest", digest);
                m.uint("count", *count);
            }
            Self::Lease {
                sender_id,
                target_id,
                lease_ms,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.uint("leaseMs", *lease_ms);
            }
            Self::Refused {
                sender_id,
                target_id,
                document_id,
                rule,
                limit,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                m.document_id(document_id);
                m.text("rule", rule);
                m.uint("limit", *limit);
            }
            Self::InSync {
                sender_id,
                target_id,
            }
            | Self::Revoked {
                sender_id,
                target_id,
            }
            | Self::Shared {
                sender_id,
                target_id,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
            }
            Self::Manifest {
                sender_id,
                target_id,
                entries,
            } => {
                m.text("senderId", sender_id);
                m.text("targetId", target_id);
                let entries = entries
                    .iter()
                    .map(|(id, heads)| {
                        Value::Array(vec![
                            Value::Bytes(id.as_bytes().to_vec()),
                            Value::Bytes(heads.to_vec()),
                        ])
                    })
                    .collect();
                m.value("entries", Value::Array(entries));
            }
        }
        m.finish()
    }
}

/// ciborium's messages can quote the offending input; keep only the kind and offset.
fn cbor_error_text(e: &ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => "frame ends inside a value".to_owned(),
        Error::Syntax(offset) => format!("syntax error at byte {offset}"),
        Error::Semantic(Some(offset), _) => format!("unsupported value at byte {offset}"),
        Error::Semantic(None, _) => "unsupported value".to_owned(),
        Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    }
}

fn key(k: &str) -> Value {
    Value::Text(k.to_owned())
}

fn text_list(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::Text).collect())
}

fn fixed_bytes<const N: usize>(bytes: Vec<u8>, field: &'static str) -> Result<[u8; N], WireError> {
    let found = bytes.len();
    <[u8; N]>::try_from(bytes).map_err(|_| WireError::WrongLength {
        field,
        expected: N,
        found,
    })
}

/// Reads a JavaScript number that must be a non-negative integer. cbor-x writes numbers
/// above 2^32 and fractional ones as floats; fractions of timestamps are dropped.
fn number(value: &Value, field: &'static str) -> Result<u64, WireError> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| WireError::InvalidNumber(field)),
        Value::Float(f) if f.is_finite() && *f >= 0.0 && *f < 18_446_744_073_709_551_616.0 => {
            // In range and finite, so the truncating cast is exact for the integer part.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f.trunc() as u64)
        }
        _ => Err(WireError::InvalidNumber(field)),
    }
}

fn as_text(value: &Value, field: &'static str) -> Result<String, WireError> {
    match value {
        Value::Text(s) => Ok(s.clone()),
        _ => Err(WireError::WrongType {
            field,
            expected: "a text string",
        }),
    }
}

fn as_text_list(value: &Value, field: &'static str) -> Result<Vec<String>, WireError> {
    let wrong = WireError::WrongType {
        field,
        expected: "an array of text strings",
    };
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Text(s) => Ok(s.clone()),
                _ => Err(wrong.clone()),
            })
            .collect(),
        _ => Err(wrong),
    }
}

fn as_bytes(value: &Value, field: &'static str) -> Result<Vec<u8>, WireError> {
    match value {
        Value::Bytes(b) => Ok(b.clone()),
        _ => Err(WireError::WrongType {
            field,
            expected: "a byte string",
        }),
    }
}

/// The text-keyed entries of a CBOR map. `null` and `undefined` count as absent, because
/// cbor-x writes an optional JavaScript property that is `undefined` as CBOR `undefined`.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn new(entries: Vec<(Value, Value)>) -> Result<Self, WireError> {
        let mut fields: Vec<(String, Value)> = Vec::with_capacity(entries.len().min(16));
        for (k, v) in entries {
            // Non-text keys are unknown keys, and unknown keys are ignored.
            let Value::Text(k) = k else { continue };
            if fields.iter().any(|(seen, _)| *seen == k) {
                return Err(WireError::DuplicateKey(k));
            }
            if !v.is_null() {
                fields.push((k, v));
            }
        }
        Ok(Self(fields))
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }

    fn required(&self, field: &'static str) -> Result<&Value, WireError> {
        self.get(field).ok_or(WireError::MissingField(field))
    }

    fn text(&self, field: &'static str) -> Result<String, WireError> {
        as_text(self.required(field)?, field)
    }

    fn opt_text(&self, field: &'static str) -> Result<Option<String>, WireError> {
        self.get(field).map(|v| as_text(v, field)).transpose()
    }

    fn opt_text_list(&self, field: &'static str) -> Result<Option<Vec<String>>, WireError> {
        self.get(field).map(|v| as_text_list(v, field)).transpose()
    }

    fn bytes(&self, field: &'static str) -> Result<Vec<u8>, WireError> {
        as_bytes(self.required(field)?, field)
    }

    fn non_empty_bytes(&self, field: &'static str) -> Result<Vec<u8>, WireError> {
        let bytes = self.bytes(field)?;
        if bytes.is_empty() {
            return Err(WireError::Empty(field));
        }
        Ok(bytes)
    }

    fn number(&self, field: &'static str) -> Result<u64, WireError> {
        number(self.required(field)?, field)
    }

    /// Text as JavaScript sends it; 16 raw bytes as samod can.
    fn document_id(&self) -> Result<DocumentId, WireError> {
        match self.required("documentId")? {
            Value::Text(s) => Ok(DocumentId::from_bs58check(s)?),
            Value::Bytes(b) => Ok(DocumentId::try_from(b.as_slice())?),
            _ => Err(WireError::WrongType {
                field: "documentId",
                expected: "a text string",
            }),
        }
    }

    /// `successor` and `known` of a `lotse-deleted`, both or neither.
    fn superseded(&self) -> Result<Option<Superseded>, WireError> {
        let Some(successor) = self.opt_text("successor")? else {
            return Ok(None);
        };
        let known = crate::schema::generation::KnownChanges::from_bytes(&self.bytes("known")?)
            .ok_or(WireError::WrongType {
                field: "known",
                expected: "change hashes of 32 bytes each",
            })?;
        Ok(Some(Superseded {
            successor: DocumentId::from_bs58check(&successor)?,
            known,
        }))
    }

    fn peer_metadata(&self) -> Result<PeerMetadata, WireError> {
        let Some(value) = self.get("peerMetadata") else {
            return Ok(PeerMetadata::default());
        };
        let Value::Map(entries) = value else {
            return Err(WireError::WrongType {
                field: "peerMetadata",
                expected: "a map",
            });
        };
        let inner = Fields::new(entries.clone())?;
        let is_ephemeral = match inner.get("isEphemeral") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(WireError::WrongType {
                    field: "peerMetadata.isEphemeral",
                    expected: "a boolean",
                });
            }
        };
        Ok(PeerMetadata {
            storage_id: inner
                .get("storageId")
                .map(|v| as_text(v, "peerMetadata.storageId"))
                .transpose()?,
            is_ephemeral,
        })
    }

    fn new_heads(&self) -> Result<BTreeMap<String, HeadsInfo>, WireError> {
        let wrong_map = WireError::WrongType {
            field: "newHeads",
            expected: "a map of storage ids to {heads, timestamp}",
        };
        let Value::Map(entries) = self.required("newHeads")? else {
            return Err(wrong_map);
        };
        let mut out = BTreeMap::new();
        for (storage_id, info) in entries {
            let (Value::Text(storage_id), Value::Map(info)) = (storage_id, info) else {
                return Err(wrong_map);
            };
            let info = Fields::new(info.clone())?;
            let heads = HeadsInfo {
                heads: as_text_list(
                    info.get("heads")
                        .ok_or(WireError::MissingField("newHeads.heads"))?,
                    "newHeads.heads",
                )?,
                timestamp: number(
                    info.get("timestamp")
                        .ok_or(WireError::MissingField("newHeads.timestamp"))?,
                    "newHeads.timestamp",
                )?,
            };
            if out.insert(storage_id.clone(), heads).is_some() {
                return Err(WireError::DuplicateKey(storage_id.clone()));
            }
        }
        Ok(out)
    }

    fn manifest_entries(&self) -> Result<Vec<(DocumentId, [u8; 8])>, WireError> {
        let wrong = WireError::WrongType {
            field: "entries",
            expected: "an array of [documentId bytes, heads digest bytes] pairs",
        };
        let Value::Array(items) = self.required("entries")? else {
            return Err(wrong);
        };
        items
            .iter()
            .map(|item| match item {
                Value::Array(pair) => match pair.as_slice() {
                    [Value::Bytes(id), Value::Bytes(digest)] => Ok((
                        DocumentId::try_from(id.as_slice())?,
                        fixed_bytes(digest.clone(), "entries.headsDigest")?,
                    )),
                    _ => Err(wrong.clone()),
                },
                _ => Err(wrong.clone()),
            })
            .collect()
    }
}

/// Builds the CBOR map of one frame, `type` first like the JavaScript client.
struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    fn new(ty: &str) -> Self {
        Self(vec![(key("type"), key(ty))])
    }

    fn value(&mut self, k: &str, v: Value) {
        self.0.push((key(k), v));
    }

    fn text(&mut self, k: &str, v: &str) {
        self.value(k, Value::Text(v.to_owned()));
    }

    fn text_list(&mut self, k: &str, v: &[String]) {
        self.value(k, text_list(v));
    }

    fn bytes(&mut self, k: &str, v: &[u8]) {
        self.value(k, Value::Bytes(v.to_vec()));
    }

    fn uint(&mut self, k: &str, v: u64) {
        self.value(k, Value::Integer(v.into()));
    }

    fn document_id(&mut self, id: &DocumentId) {
        self.text("documentId", &id.to_string());
    }

    /// Always written, even when empty: the JavaScript client reads it from `peer`.
    fn peer_metadata(&mut self, meta: &PeerMetadata) {
        let mut entries = Vec::new();
        if let Some(storage_id) = &meta.storage_id {
            entries.push((key("storageId"), Value::Text(storage_id.clone())));
        }
        if let Some(is_ephemeral) = meta.is_ephemeral {
            entries.push((key("isEphemeral"), Value::Bool(is_ephemeral)));
        }
        self.value("peerMetadata", Value::Map(entries));
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(self.0), &mut out)
            .expect("serialising a CBOR value into a Vec cannot fail");
        out
    }
}

#[cfg(test)]
mod tests;

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn cbor(value: Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).unwrap();
    out
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}

const JS_DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

fn js_doc() -> DocumentId {
    JS_DOC.parse().unwrap()
}

fn every_message() -> Vec<Message> {
    let doc = js_doc();
    vec![
        Message::Join {
            sender_id: "phone-1".into(),
            peer_metadata: PeerMetadata {
                storage_id: Some("st-1".into()),
                is_ephemeral: Some(false),
            },
            supported_protocol_versions: vec!["1".into()],
        },
        Message::Join {
            sender_id: "browser".into(),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: vec![],
        },
        Message::Peer {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            peer_metadata: PeerMetadata {
                storage_id: Some("srv".into()),
                is_ephemeral: Some(false),
            },
            selected_protocol_version: "1".into(),
        },
        Message::Request {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![0x42, 0, 0, 1, 0, 0, 0, 2, 2, 0x84],
        },
        Message::Sync {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![1, 2, 3],
        },
        Message::DocUnavailable {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
        },
        Message::Ephemeral {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            session_id: "s1".into(),
            count: u64::MAX,
            data: vec![0xa0],
        },
        Message::Error {
            sender_id: "server".into(),
            target_id: Some("a".into()),
            message: "unsupported protocol version".into(),
        },
        Message::Error {
            sender_id: "server".into(),
            target_id: None,
            message: "bad frame".into(),
        },
        Message::Leave {
            sender_id: "a".into(),
        },
        Message::RemoteSubscriptionChange {
            sender_id: "a".into(),
            target_id: "b".into(),
            add: vec!["st-1".into(), "st-2".into()],
            remove: vec!["st-3".into()],
        },
        Message::RemoteSubscriptionChange {
            sender_id: "a".into(),
            target_id: "b".into(),
            add: vec![],
            remove: vec![],
        },
        Message::RemoteHeadsChanged {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            new_heads: BTreeMap::from([(
                "st-1".into(),
                HeadsInfo {
                    heads: vec!["2dKhP2bUGKFa87U5RquAXHtyfVfM".into()],
                    timestamp: 1_700_000_000_123,
                },
            )]),
        },
        Message::Catchup {
            sender_id: "phone-1".into(),
            target_id: "server".into(),
            digest: [7; 32],
            count: 1000,
        },
        Message::InSync {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
        },
        Message::Manifest {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            entries: vec![
                (doc, [1, 2, 3, 4, 5, 6, 7, 8]),
                (DocumentId::random(), [0; 8]),
            ],
        },
        Message::Manifest {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            entries: vec![],
        },
        Message::Revoked {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
        },
        Message::Shared {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
        },
        Message::Refused {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            document_id: DocumentId::random(),
            rule: "document-bytes".into(),
            limit: 8 * 1024 * 1024,
        },
        Message::Deleted {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            document_id: DocumentId::random(),
            superseded: None,
        },
        Message::Deleted {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            document_id: DocumentId::random(),
            superseded: Some(Superseded {
                successor: DocumentId::random(),
                known: crate::schema::generation::KnownChanges::of(&crate::testing::sample_case()),
            }),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for message in every_message() {
        let frame = message.encode();
        assert_eq!(Message::decode(&frame).unwrap(), message, "{message:?}");
    }
}

#[test]
fn encoded_frames_use_js_key_names() {
    let frame = Message::Ephemeral {
        sender_id: "a".into(),
        target_id: "b".into(),
        document_id: js_doc(),
        session_id: "s".into(),
        count: 3,
        data: vec![1],
    }
    .encode();
    let Value::Map(entries) = ciborium::de::from_reader::<Value, _>(frame.as_slice()).unwrap()
    else {
        panic!("not a map")
    };
    let keys: Vec<_> = entries
        .iter()
        .map(|(k, _)| k.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "senderId",
            "targetId",
            "documentId",
            "sessionId",
            "count",
            "data"
        ]
    );
    // documentId travels as text, data as a plain (untagged) byte string.
    assert!(entries.contains(&(t("documentId"), t(JS_DOC))));
    assert!(entries.contains(&(t("data"), Value::Bytes(vec![1]))));
}

#[test]
fn extension_messages_are_marked() {
    for message in every_message() {
        assert_eq!(
            message.is_extension(),
            message.type_name().starts_with("lotse-"),
            "{message:?}"
        );
    }
}

#[test]
fn shared_round_trips_and_names_no_document() {
    let message = Message::Shared {
        sender_id: "server".into(),
        target_id: "phone-1".into(),
    };
    let frame = message.encode();
    assert_eq!(Message::decode(&frame).unwrap(), message);
    assert_eq!(message.type_name(), "lotse-shared");
    assert!(message.is_extension());
    assert_eq!(message.sender_id(), "server");
    assert_eq!(message.target_id(), Some("phone-1"));
    assert_eq!(message.document_id(), None);
    // Only the envelope travels: nothing about which cases were shared.
    let Value::Map(entries) = ciborium::de::from_reader::<Value, _>(frame.as_slice()).unwrap()
    else {
        panic!("not a map")
    };
    assert_eq!(
        entries,
        [
            (t("type"), t("lotse-shared")),
            (t("senderId"), t("server")),
            (t("targetId"), t("phone-1")),
        ]
    );
    // Unknown keys are ignored as in every message; a missing target is an error.
    let with_extra = cbor(map(vec![
        ("type", t("lotse-shared")),
        ("senderId", t("server")),
        ("targetId", t("phone-1")),
        ("documentId", t(JS_DOC)),
    ]));
    assert_eq!(Message::decode(&with_extra).unwrap(), message);
    let without_target = cbor(map(vec![
        ("type", t("lotse-shared")),
        ("senderId", t("server")),
    ]));
    assert_eq!(
        Message::decode(&without_target),
        Err(WireError::MissingField("targetId"))
    );
}

// Frames captured from @automerge/automerge-repo 2.5.6 with the stock WebSocket client
// adapter (cbor-x), byte for byte.
mod from_javascript {
    use super::*;

    fn js(hex: &str) -> Message {
        Message::decode(&unhex(hex)).unwrap()
    }

    #[test]
    fn join_with_and_without_storage() {
        let join = |sender: &str, storage_id: Option<&str>, is_ephemeral| Message::Join {
            sender_id: sender.into(),
            peer_metadata: PeerMetadata {
                storage_id: storage_id.map(Into::into),
                is_ephemeral: Some(is_ephemeral),
            },
            supported_protocol_versions: vec!["1".into()],
        };
        assert_eq!(
            js(
                "b900046474797065646a6f696e6873656e64657249646770686f6e652d316c706565724d6574616461\
                 7461b900026973746f726167654964782461363561653134322d313532622d346537382d393163382d\
                 3234663138393430636562666b6973457068656d6572616cf47819737570706f7274656450726f746f\
                 636f6c56657273696f6e73816131"
            ),
            join(
                "phone-1",
                Some("a65ae142-152b-4e78-91c8-24f18940cebf"),
                false
            )
        );
        // peerMetadata: {storageId: undefined, isEphemeral: true}
        assert_eq!(
            js(
                "b900046474797065646a6f696e6873656e64657249646962726f777365722d376c706565724d657461\
                 64617461b900026973746f726167654964f76b6973457068656d6572616cf5781973757070\
                 6f7274656450726f746f636f6c56657273696f6e73816131"
            ),
            join("browser-7", None, true)
        );
    }

    #[test]
    fn sync() {
        let message = js(
            "b9000564747970656473796e636874617267657449646673657276657264646174615830420104c6e4\
             da566a8b186cf40376c960eacde268ff4f1eb9c430c447925e00568c1400010006020a071a54a40002\
             02846a646f63756d656e744964781c32644b6850326255474b46613837553552717541584874796656\
             664d6873656e64657249646770686f6e652d31",
        );
        let Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } = message
        else {
            panic!("not a sync message")
        };
        assert_eq!(sender_id, "phone-1");
        assert_eq!(target_id, "server");
        assert_eq!(document_id.to_string(), "2dKhP2bUGKFa87U5RquAXHtyfVfM");
        assert_eq!(data.len(), 48);
        // It is a real automerge sync message.
        automerge::sync::Message::decode(&data).unwrap();
    }

    #[test]
    fn request() {
        let message = js(
            "b9000564747970656772657175657374687461726765744964667365727665726a646f63756d656e74\
             4964781c344e4d4e6e6b4d684c386a5872644a396a616d53353850415664587564646174614a420000\
             010000000202846873656e64657249646770686f6e652d31",
        );
        assert_eq!(
            message,
            Message::Request {
                sender_id: "phone-1".into(),
                target_id: "server".into(),
                document_id: js_doc(),
                data: unhex("42000001000000020284"),
            }
        );
    }

    #[test]
    fn ephemeral() {
        let message = js(
            "b90007647479706569657068656d6572616c687461726765744964667365727665726a646f63756d65\
             6e744964781c32644b6850326255474b46613837553552717541584874796656664d64646174614bb9\
             000166637572736f720365636f756e74016973657373696f6e49646b6e647770377470693139636873\
             656e64657249646770686f6e652d31",
        );
        let Message::Ephemeral {
            count,
            session_id,
            data,
            ..
        } = message
        else {
            panic!("not ephemeral")
        };
        assert_eq!(count, 1);
        assert_eq!(session_id, "ndwp7tpi19c");
        assert_eq!(data.len(), 11);
    }

    #[test]
    fn ephemeral_with_float_count() {
        // count: 2**53, which cbor-x writes as a float64.
        let message = js(
            "b90007647479706569657068656d6572616c6873656e6465724964616168746172676574496461626a\
             646f63756d656e744964781c344e4d4e6e6b4d684c386a5872644a396a616d53353850415664587569\
             73657373696f6e4964617365636f756e74fb434000000000000064646174614101",
        );
        let Message::Ephemeral { count, .. } = message else {
            panic!("not ephemeral")
        };
        assert_eq!(count, 1 << 53);
    }

    #[test]
    fn remote_heads_changed_with_fractional_timestamp() {
        let message = js(
            "b9000564747970657472656d6f74652d68656164732d6368616e6765646873656e6465724964616168\
             746172676574496461626a646f63756d656e744964781c344e4d4e6e6b4d684c386a5872644a396a61\
             6d533538504156645875686e65774865616473b900016473742d31b900026568656164738178\
             1c32644b6850326255474b46613837553552717541584874796656664d6974696d657374616d70fb42\
             78bcfe5687b800",
        );
        let Message::RemoteHeadsChanged { new_heads, .. } = message else {
            panic!("not remote-heads-changed")
        };
        assert_eq!(new_heads["st-1"].timestamp, 1_700_000_000_123);
        assert_eq!(new_heads["st-1"].heads, ["2dKhP2bUGKFa87U5RquAXHtyfVfM"]);
    }

    #[test]
    fn remote_subscription_change_with_undefined_remove() {
        let message = js(
            "b900056474797065781a72656d6f74652d737562736372697074696f6e2d6368616e67656873656e64\
             657249646161687461726765744964616263616464816473742d316672656d6f7665f7",
        );
        assert_eq!(
            message,
            Message::RemoteSubscriptionChange {
                sender_id: "a".into(),
                target_id: "b".into(),
                add: vec!["st-1".into()],
                remove: vec![],
            }
        );
    }
}

#[test]
fn unknown_keys_are_ignored() {
    let frame = cbor(map(vec![
        ("type", t("leave")),
        ("senderId", t("a")),
        ("future", map(vec![("x", Value::Integer(1.into()))])),
    ]));
    let mut with_int_key = match ciborium::de::from_reader::<Value, _>(frame.as_slice()).unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    };
    with_int_key.push((Value::Integer(7.into()), t("x")));
    for frame in [frame, cbor(Value::Map(with_int_key))] {
        assert_eq!(
            Message::decode(&frame).unwrap(),
            Message::Leave {
                sender_id: "a".into()
            }
        );
    }
}

#[test]
fn join_without_versions_means_version_one() {
    let frame = cbor(map(vec![("type", t("join")), ("senderId", t("a"))]));
    assert_eq!(
        Message::decode(&frame).unwrap(),
        Message::Join {
            sender_id: "a".into(),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: vec!["1".into()],
        }
    );
}

#[test]
fn document_id_may_be_raw_bytes() {
    let frame = cbor(map(vec![
        ("type", t("doc-unavailable")),
        ("senderId", t("a")),
        ("targetId", t("b")),
        ("documentId", Value::Bytes(js_doc().as_bytes().to_vec())),
    ]));
    assert_eq!(
        Message::decode(&frame).unwrap().document_id(),
        Some(&js_doc())
    );
}

fn sync_frame(overrides: Vec<(&str, Option<Value>)>) -> Vec<u8> {
    let mut fields = vec![
        ("type", Some(t("sync"))),
        ("senderId", Some(t("a"))),
        ("targetId", Some(t("b"))),
        ("documentId", Some(t(JS_DOC))),
        ("data", Some(Value::Bytes(vec![0x42]))),
    ];
    for (k, v) in overrides {
        match fields.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => fields.push((k, v)),
        }
    }
    cbor(map(fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()))
}

#[test]
fn rejects_malformed_frames() {
    use WireError as E;
    let int = |i: i64| Value::Integer(i.into());
    let catchup = |digest_len: usize, count: Value| {
        cbor(map(vec![
            ("type", t("lotse-catchup")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("digest", Value::Bytes(vec![0; digest_len])),
            ("count", count),
        ]))
    };
    // A manifest with one entry.
    let manifest = |entry: Vec<Value>| {
        cbor(map(vec![
            ("type", t("lotse-manifest")),
            ("senderId", t("a")),
            ("targetId", t("b")),
            ("entries", Value::Array(vec![Value::Array(entry)])),
        ]))
    };
    let cases: Vec<(Vec<u8>, E)> = vec![
        (vec![], E::Cbor("frame ends inside a value".into())),
        (cbor(t("sync")), E::NotAMap),
        (cbor(Value::Array(vec![])), E::NotAMap),
        (
            {
                let mut f = sync_frame(vec![]);
                f.push(0);
                f
            },
            E::TrailingBytes(1),
        ),
        (sync_frame(vec![("type", None)]), E::MissingField("type")),
        (
            sync_frame(vec![("type", Some(t("teleport")))]),
            E::UnknownType("teleport".into()),
        ),
        (
            sync_frame(vec![("type", Some(Value::Integer(1.into())))]),
            E::WrongType {
                field: "type",
                expected: "a text string",
            },
        ),
        (
            sync_frame(vec![("senderId", None)]),
            E::MissingField("senderId"),
        ),
        (
            sync_frame(vec![("targetId", Some(Value::Null))]),
            E::MissingField("targetId"),
        ),
        (sync_frame(vec![("data", None)]), E::MissingField("data")),
        (
            sync_frame(vec![("data", Some(Value::Bytes(vec![])))]),
            E::Empty("data"),
        ),
        (
            sync_frame(vec![("data", Some(t("AQID")))]),
            E::WrongType {
                field: "data",
                expected: "a byte string",
            },
        ),
        (
            sync_frame(vec![(
                "data",
                Some(Value::Tag(64, Box::new(Value::Bytes(vec![1])))),
            )]),
            E::WrongType {
                field: "data",
                expected: "a byte string",
            },
        ),
        (
            sync_frame(vec![("documentId", Some(t("badbadbad")))]),
            E::InvalidDocumentId(DocumentIdError::BadChecksum),
        ),
        (
            sync_frame(vec![(
                "documentId",
                Some(t(&format!("automerge:{JS_DOC}"))),
            )]),
            E::InvalidDocumentId(DocumentIdError::InvalidCharacter { character: ':' }),
        ),
        (
            sync_frame(vec![("documentId", Some(Value::Bytes(vec![1; 15])))]),
            E::InvalidDocumentId(DocumentIdError::WrongLength { len: 15 }),
        ),
        (
            sync_frame(vec![("documentId", None)]),
            E::MissingField("documentId"),
        ),
        (
            sync_frame(vec![
                ("type", Some(t("request"))),
                ("data", Some(Value::Bytes(vec![]))),
            ]),
            E::Empty("data"),
        ),
        (
            cbor(map(vec![
                ("type", t("leave")),
                ("senderId", t("a")),
                ("senderId", t("b")),
            ])),
            E::DuplicateKey("senderId".into()),
        ),
        (
            cbor(map(vec![
                ("type", t("join")),
                ("senderId", t("a")),
                ("peerMetadata", t("x")),
            ])),
            E::WrongType {
                field: "peerMetadata",
                expected: "a map",
            },
        ),
        (
            cbor(map(vec![
                ("type", t("join")),
                ("senderId", t("a")),
                (
                    "supportedProtocolVersions",
                    Value::Array(vec![Value::Integer(1.into())]),
                ),
            ])),
            E::WrongType {
                field: "supportedProtocolVersions",
                expected: "an array of text strings",
            },
        ),
        (
            catchup(31, int(1)),
            E::WrongLength {
                field: "digest",
                expected: 32,
                found: 31,
            },
        ),
        (catchup(32, int(-1)), E::InvalidNumber("count")),
        (
            catchup(32, Value::Float(f64::NAN)),
            E::InvalidNumber("count"),
        ),
        (catchup(32, Value::Float(-0.5)), E::InvalidNumber("count")),
        (
            manifest(vec![Value::Bytes(vec![0; 16]), Value::Bytes(vec![0; 9])]),
            E::WrongLength {
                field: "entries.headsDigest",
                expected: 8,
                found: 9,
            },
        ),
        (
            manifest(vec![Value::Bytes(vec![0; 16])]),
            E::WrongType {
                field: "entries",
                expected: "an array of [documentId bytes, heads digest bytes] pairs",
            },
        ),
        (
            cbor(map(vec![
                ("type", t("remote-heads-changed")),
                ("senderId", t("a")),
                ("targetId", t("b")),
                ("documentId", t(JS_DOC)),
                (
                    "newHeads",
                    map(vec![("st", map(vec![("heads", Value::Array(vec![]))]))]),
                ),
            ])),
            E::MissingField("newHeads.timestamp"),
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(
            Message::decode(&frame),
            Err(expected.clone()),
            "expected {expected}"
        );
        // Every error can be shown to the peer.
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let mut frame = vec![0x81; 100_000];
    frame.push(0x00);
    assert!(matches!(Message::decode(&frame), Err(WireError::Cbor(_))));
    // A byte string that claims to be far longer than the frame.
    let frame = unhex("a164646174615b00ffffffffffffff");
    assert!(matches!(Message::decode(&frame), Err(WireError::Cbor(_))));
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<f64>().prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        prop_oneof![
            Just(JS_DOC.to_owned()),
            Just("1".to_owned()),
            "[a-z-]{0,12}",
            ".{0,8}"
        ]
        .prop_map(Value::Text),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
            (0u64..300, inner).prop_map(|(tag, v)| Value::Tag(tag, Box::new(v))),
        ]
    })
}

const KEYS: &[&str] = &[
    "type",
    "senderId",
    "targetId",
    "documentId",
    "data",
    "peerMetadata",
    "storageId",
    "isEphemeral",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "sessionId",
    "count",
    "message",
    "add",
    "remove",
    "newHeads",
    "heads",
    "timestamp",
    "digest",
    "entries",
];

const TYPES: &[&str] = &[
    "join",
    "peer",
    "request",
    "sync",
    "doc-unavailable",
    "ephemeral",
    "error",
    "leave",
    "remote-subscription-change",
    "remote-heads-changed",
    "lotse-catchup",
    "lotse-in-sync",
    "lotse-manifest",
    "lotse-revoked",
    "lotse-shared",
];

/// Maps that look like messages, so the fuzzing reaches the field checks.
fn arb_message_like() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(TYPES),
        proptest::collection::vec((proptest::sample::select(KEYS), arb_value()), 0..8),
    )
        .prop_map(|(ty, fields)| {
            let mut entries = vec![(t("type"), t(ty))];
            entries.extend(fields.into_iter().map(|(k, v)| (t(k), v)));
            Value::Map(entries)
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let id = "[a-zA-Z0-9-]{0,20}";
    let doc = any::<[u8; 16]>().prop_map(DocumentId::from_bytes);
    let data = proptest::collection::vec(any::<u8>(), 1..64);
    prop_oneof![
        (
            id,
            proptest::option::of(id),
            any::<Option<bool>>(),
            proptest::collection::vec(id, 0..3)
        )
            .prop_map(|(s, storage_id, is_ephemeral, versions)| Message::Join {
                sender_id: s,
                peer_metadata: PeerMetadata {
                    storage_id,
                    is_ephemeral
                },
                supported_protocol_versions: versions,
            }),
        (id, id, doc.clone(), data.clone()).prop_map(|(s, t, d, data)| Message::Sync {
            sender_id: s,
            target_id: t,
            document_id: d,
            data
        }),
        (
            id,
            id,
            doc.clone(),
            id,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(s, t, d, session, count, data)| Message::Ephemeral {
                sender_id: s,
                target_id: t,
                document_id: d,
                session_id: session,
                count,
                data
            }),
        (id, proptest::option::of(id), ".{0,40}").prop_map(|(s, t, m)| Message::Error {
            sender_id: s,
            target_id: t,
            message: m
        }),
        (id, id, any::<[u8; 32]>(), any::<u64>()).prop_map(|(s, t, digest, count)| {
            Message::Catchup {
                sender_id: s,
                target_id: t,
                digest,
                count,
            }
        }),
        (
            id,
            id,
            proptest::collection::vec((doc.clone(), any::<[u8; 8]>()), 0..20)
        )
            .prop_map(|(s, t, entries)| {
                Message::Manifest {
                    sender_id: s,
                    target_id: t,
                    entries,
                }
            }),
        (
            id,
            id,
            doc.clone(),
            proptest::option::of((
                doc.clone(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..4)
            ))
        )
            .prop_map(|(s, t, d, superseded)| Message::Deleted {
                sender_id: s,
                target_id: t,
                document_id: d,
                superseded: superseded.map(|(successor, hashes)| Superseded {
                    successor,
                    known: crate::schema::generation::KnownChanges::from_bytes(&hashes.concat())
                        .expect("whole hashes"),
                }),
            }),
        (id, id, doc, "[a-z-]{1,20}", any::<u64>()).prop_map(|(s, t, d, rule, limit)| {
            Message::Refused {
                sender_id: s,
                target_id: t,
                document_id: d,
                rule,
                limit,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn random_cbor_never_panics(value in arb_value()) {
        let _ = Message::decode(&cbor(value));
    }

    #[test]
    fn message_like_maps_never_panic(value in arb_message_like()) {
        if let Ok(message) = Message::decode(&cbor(value)) {
            // Whatever we accept, we can write back and read again unchanged.
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn truncated_and_flipped_frames_never_panic(
        index in 0usize..20, cut in any::<proptest::sample::Index>(), flip in any::<(proptest::sample::Index, u8)>()
    ) {
        let messages = every_message();
        let frame = messages[index % messages.len()].encode();
        let _ = Message::decode(&frame[..cut.index(frame.len() + 1)]);
        let mut flipped = frame.clone();
        let at = flip.0.index(flipped.len());
        flipped[at] ^= flip.1;
        let _ = Message::decode(&flipped);
    }

    #[test]
    fn arbitrary_messages_round_trip(message in arb_message()) {
        prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
    }
}

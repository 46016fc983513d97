//! What one document, and one device, may grow to on the server, and the rule a refusal
//! names (`lotse-refused`). The server refuses a sync message that would break a rule for
//! that document alone: nothing of it is stored or forwarded, the socket stays open, and
//! the phone shows the document as failed with the rule while the others keep syncing.
//!
//! The limits are far above what a volunteer writes (a case of ten years of weekly notes
//! is a few hundred KiB); they exist so that one broken or hostile client cannot fill the
//! server's disk or make every other peer download megabytes.

use automerge::{Automerge, ObjType, ROOT, ReadDoc, Value};

use crate::code::code_enum;

code_enum! {
    /// The rule a refused sync message would have broken.
    pub enum Rule {
        /// The document's stored size ([`Quotas::document_bytes`]).
        DocumentBytes = "document-bytes",
        /// Notes, appointments and hours entries of one document ([`Quotas::entries`]).
        Entries = "entries",
        /// One note's text ([`Quotas::text_chars`]).
        TextLength = "text-length",
        /// Everything one device has written, over all documents ([`Quotas::device_bytes`]).
        DeviceBytes = "device-bytes",
        /// A change written with an automerge actor that belongs to another device or to a
        /// coordinator: authorship is derived from the actor, so it cannot be borrowed.
        ForeignActor = "foreign-actor",
    }
}

impl Rule {
    /// A sentence for logs and the phone's status line; names no content.
    pub fn explain(&self) -> &'static str {
        match self {
            Self::DocumentBytes => "the document would exceed its size limit",
            Self::Entries => "the document would hold more entries than allowed",
            Self::TextLength => "a note would be longer than allowed",
            Self::DeviceBytes => "this device would exceed the total it may store",
            Self::ForeignActor => "the changes carry another writer's identity",
            Self::Unknown { .. } => "the server refused the document",
        }
    }
}

/// The limits, with defaults documented in `docs/sync.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes the server stores for one document (its snapshot and the changes since).
    pub document_bytes: u64,
    /// Entries (notes, appointments, hours, availability slots, ...) in one document.
    pub entries: usize,
    /// Characters of one note's text. The schema's own limit on writing is the same, so
    /// only a foreign or broken client meets this one.
    pub text_chars: usize,
    /// Bytes one device's changes may take on the server, over all documents.
    pub device_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            document_bytes: 8 * 1024 * 1024,
            entries: 10_000,
            text_chars: crate::schema::MAX_NOTE_CHARS,
            device_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A broken rule and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub limit: u64,
}

impl Quotas {
    /// Checks what a document holds after applying a peer's changes: its entries and the
    /// length of its notes. Sizes are the caller's to check (it knows what it stores).
    /// Reads lengths only, never content, so it costs little even for a large document.
    pub fn check_content(&self, doc: &Automerge) -> Result<(), Refusal> {
        let mut entries = 0usize;
        for item in doc.map_range(ROOT, ..) {
            let id = item.id();
            if let Ok(ObjType::Map | ObjType::List) = doc.object_type(&id) {
                entries += doc.length(&id);
            }
        }
        if entries > self.entries {
            return Err(Refusal {
                rule: Rule::Entries,
                limit: self.entries as u64,
            });
        }
        if let Ok(Some((_, notes))) = doc.get(ROOT, "notes") {
            for note in doc.map_range(&notes, ..) {
                let len = match doc.get(note.id(), "text") {
                    Ok(Some((Value::Object(ObjType::Text), text))) => doc.length(&text),
                    Ok(Some((Value::Scalar(s), _))) => s.as_str().map_or(0, |t| t.chars().count()),
                    _ => 0,
                };
                if len > self.text_chars {
                    return Err(Refusal {
                        rule: Rule::TextLength,
                        limit: self.text_chars as u64,
                    });
                }
            }
        }
        Ok(())
    }

    /// A document that would store `bytes`.
    pub fn check_document_bytes(&self, bytes: u64) -> Result<(), Refusal> {
        if bytes > self.document_bytes {
            return Err(Refusal {
                rule: Rule::DocumentBytes,
                limit: self.document_bytes,
            });
        }
        Ok(())
    }

    /// A device whose changes would take `bytes` in all.
    pub fn check_device_bytes(&self, bytes: u64) -> Result<(), Refusal> {
        if bytes > self.device_bytes {
            return Err(Refusal {
                rule: Rule::DeviceBytes,
                limit: self.device_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema::{CaseDoc, NewNote};
    use crate::testing::sample_case as case;
    use automerge::transaction::Transactable;

    fn note(doc: &mut Automerge, text: &str) {
        let note = NewNote {
            author: "vol-1".into(),
            text: text.into(),
        };
        CaseDoc::add_note(doc, &note, 2_000).unwrap();
    }

    #[test]
    fn entries_over_the_limit_are_refused() {
        // Every element of a top-level collection counts: three notes and one language.
        let quotas = Quotas {
            entries: 4,
            ..Quotas::default()
        };
        let mut doc = case();
        for _ in 0..3 {
            note(&mut doc, "kurz");
        }
        assert_eq!(quotas.check_content(&doc), Ok(()));
        note(&mut doc, "einer zu viel");
        assert_eq!(quotas.check_content(&doc).unwrap_err().rule, Rule::Entries);
    }

    #[test]
    fn a_long_note_is_refused_whether_text_or_string() {
        let quotas = Quotas {
            text_chars: 10,
            ..Quotas::default()
        };
        let mut doc = case();
        note(&mut doc, "zehn Zeich");
        assert_eq!(quotas.check_content(&doc), Ok(()));
        note(&mut doc, "elf Zeichen");
        assert_eq!(
            quotas.check_content(&doc).unwrap_err().rule,
            Rule::TextLength
        );

        // A foreign client may write the text as a plain string.
        let mut doc = case();
        let mut tx = doc.transaction();
        let (_, notes) = tx.get(ROOT, "notes").unwrap().unwrap();
        let n = tx.put_object(&notes, "x", ObjType::Map).unwrap();
        tx.put(&n, "text", "elf Zeichen").unwrap();
        tx.commit();
        assert_eq!(
            quotas.check_content(&doc).unwrap_err().rule,
            Rule::TextLength
        );
    }

    #[test]
    fn sizes_are_checked_against_their_limits() {
        let q = Quotas::default();
        assert!(q.check_document_bytes(q.document_bytes).is_ok());
        assert_eq!(
            q.check_document_bytes(q.document_bytes + 1),
            Err(Refusal {
                rule: Rule::DocumentBytes,
                limit: q.document_bytes
            })
        );
        assert!(q.check_device_bytes(q.device_bytes).is_ok());
        assert_eq!(
            q.check_device_bytes(q.device_bytes + 1).unwrap_err().rule,
            Rule::DeviceBytes
        );
    }

    #[test]
    fn rules_travel_as_codes() {
        for rule in Rule::KNOWN {
            assert_eq!(&Rule::from_code(rule.code()), rule);
        }
        assert!(!Rule::from_code("from-the-future").is_known());
    }
}

//! Access that shrinks. Whatever takes a right away (a device revoked, a volunteer
//! deactivated, a volunteer taken off a case, a coordinator's session ended) is written
//! here as an `AccessChange`, in the same transaction as the change itself, and told to
//! every server instance: on PostgreSQL by `NOTIFY lotse_access` (delivered on commit, so
//! nobody acts on a change that did not happen), and in this process by the caller handing
//! the committed changes to the hub. Open connections then close or check again.

use super::{Backend, Store};

/// PostgreSQL channel of `'<instance>:<change>'`, see [`AccessChange::payload`].
pub const ACCESS_CHANNEL: &str = "lotse_access";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// The device was revoked, by hand or because its volunteer left: its connections
    /// close and its token is refused.
    DeviceRevoked { device_id: String },
    /// The volunteer was taken off the document: their devices stop receiving it.
    Unshared {
        volunteer_id: String,
        document_id: String,
    },
    /// One coordinator session ended (logout); `session_hash` is the token's hash.
    SessionEnded { session_hash: String },
    /// Every session of the coordinator ended (logout everywhere).
    SessionsEnded { coordinator_id: String },
    /// The network deleted the document: every peer that follows it is told, every
    /// instance drops its copy.
    Deleted { document_id: String },
}

impl AccessChange {
    /// Ids and a token hash only: a notification must not carry anything a log of the
    /// database could leak.
    pub fn payload(&self) -> String {
        match self {
            Self::DeviceRevoked { device_id } => format!("device:{device_id}"),
            Self::Unshared {
                volunteer_id,
                document_id,
            } => format!("unshared:{volunteer_id}:{document_id}"),
            Self::SessionEnded { session_hash } => format!("session:{session_hash}"),
            Self::SessionsEnded { coordinator_id } => format!("coordinator:{coordinator_id}"),
            Self::Deleted { document_id } => format!("deleted:{document_id}"),
        }
    }

    pub fn parse(payload: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once(':')?;
        let id = |s: &str| (!s.is_empty() && !s.contains(':')).then(|| s.to_owned());
        Some(match kind {
            "device" => Self::DeviceRevoked {
                device_id: id(rest)?,
            },
            "unshared" => {
                let (volunteer, document) = rest.split_once(':')?;
                Self::Unshared {
                    volunteer_id: id(volunteer)?,
                    document_id: id(document)?,
                }
            }
            "session" => Self::SessionEnded {
                session_hash: id(rest)?,
            },
            "coordinator" => Self::SessionsEnded {
                coordinator_id: id(rest)?,
            },
            "deleted" => Self::Deleted {
                document_id: id(rest)?,
            },
            _ => return None,
        })
    }
}

impl Store {
    /// Tells other instances of `changes` once the transaction on `conn` commits.
    pub(crate) async fn notify_access(
        &self,
        conn: &mut sqlx::AnyConnection,
        changes: &[AccessChange],
    ) -> super::Result<()> {
        if self.backend == Backend::Postgres {
            for change in changes {
                self.notify(conn, ACCESS_CHANNEL, &change.payload()).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::AccessChange;

    #[test]
    fn payloads_read_back() {
        let changes = [
            AccessChange::DeviceRevoked {
                device_id: "d1".into(),
            },
            AccessChange::Unshared {
                volunteer_id: "v1".into(),
                document_id: "3x9".into(),
            },
            AccessChange::SessionEnded {
                session_hash: "ab12".into(),
            },
            AccessChange::SessionsEnded {
                coordinator_id: "c1".into(),
            },
        ];
        for c in changes {
            assert_eq!(AccessChange::parse(&c.payload()), Some(c));
        }
        for bad in ["", "device:", "unshared:v1", "session:a:b", "other:x"] {
            assert_eq!(AccessChange::parse(bad), None, "{bad}");
        }
    }
}

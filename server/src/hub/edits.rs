//! Changes the server writes into a case on someone's behalf: a coordinator's note,
//! appointment or status from the dashboard or the API. Each is an ordinary automerge
//! change, so it merges with what phones typed offline and reaches them like any other;
//! it is stored and bound to the coordinator exactly as a peer's change would be.

use lotse_protocol::automerge::{ActorId, Automerge};
use lotse_protocol::{CaseDoc, DocumentId, SchemaError};

use super::{Applied, Creator, Hub, HubError, prepare};
use crate::store::Writer;

impl Hub {
    /// Applies `edit` to the organisation's case `id` as `writer`, stores it and tells the
    /// connections. `None` if there is no such case in the organisation. A refused edit
    /// (schema validation, a missing entry) writes nothing.
    pub async fn edit_case<T>(
        &self,
        organisation_id: &str,
        id: &DocumentId,
        writer: &Writer,
        edit: impl FnOnce(&mut Automerge) -> Result<T, SchemaError>,
    ) -> Result<Option<T>, HubError> {
        let entry = self.entry(*id);
        let mut slot = entry.state.lock().await;
        let loaded = self.ensure_loaded(&entry, &mut slot).await?;
        if !loaded.persisted {
            return Ok(None);
        }
        match CaseDoc::read(&loaded.doc) {
            Ok(view) if view.organisation_id == organisation_id => {}
            _ => return Ok(None),
        }
        // A fresh actor for every edit: bound to the writer when stored, and never shared
        // with another instance writing the same case at the same moment.
        loaded.doc.set_actor(ActorId::random());
        let before = loaded.doc.get_heads();
        let out = match edit(&mut loaded.doc) {
            Ok(out) => out,
            Err(e) => {
                // Each of our edits is one transaction and a refused one rolls back, but
                // an edit made of several may have written some before one failed: the
                // copy goes, and the next use loads what the database holds.
                *slot = None;
                return Err(HubError::Invalid(e));
            }
        };
        if loaded.doc.get_heads() == before {
            return Ok(Some(out));
        }
        let loaded = slot.take().expect("loaded above");
        let prepared = match prepare(&loaded, &self.quotas()) {
            Applied::Changed(prepared) => prepared,
            // Not stored: the copy goes, and the next use loads what the database holds.
            Applied::Refused(refusal) => return Err(HubError::Refused(refusal)),
            Applied::Invalid(e) => return Err(e.into()),
            // The heads moved, so there is something to store; never reached.
            Applied::Unchanged => return Err(HubError::Worker),
        };
        let creator = Creator {
            organisation_id: organisation_id.to_owned(),
            volunteer_id: None,
            writer: writer.clone(),
        };
        self.store_prepared(*id, slot, loaded, *prepared, &creator, 0)
            .await?;
        Ok(Some(out))
    }
}

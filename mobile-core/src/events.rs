//! What the app observes: the sync state and which documents changed. Each subscription
//! has its own thread that calls the listener, so a slow or blocking listener (it runs
//! foreign code) never stalls the sync task, and the app must hop to its UI thread itself.
//! The current state is delivered at once; dropping the [`Subscription`] ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

use lotse_protocol::DocumentId;

use crate::offer_types::OfferAnswer;

/// The connection to the server as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// No network (as the app said), not enrolled, or waiting to reconnect.
    Offline,
    Connecting,
    /// Catching up: `done` of `total` documents that differed are in sync.
    Syncing {
        done: u32,
        total: u32,
    },
    /// Connected, everything in sync; changes flow live.
    Idle,
    /// The last attempt failed; a retry follows with backoff.
    Error {
        reason: String,
    },
    /// The server revoked this device; all local data was wiped.
    Revoked,
    /// The device had no contact with the server for longer than its lease: the keys and
    /// all local data were destroyed. Enroll the device again.
    LeaseLapsed,
}

/// Receives sync events on a Rust thread (not the app's UI thread).
pub trait Listener: Send + Sync + 'static {
    fn on_sync_state(&self, state: SyncState);
    /// Documents whose content or sync status changed (ids in bs58check form).
    fn on_documents_changed(&self, ids: Vec<DocumentId>);
    /// An answer to an offer (accept or decline) got its final outcome from the server.
    fn on_offer_answered(&self, answer: OfferAnswer) {
        let _ = answer;
    }
    /// The network deleted this case (a coordinator, or its retention period ran out):
    /// it and its key are gone from the phone, with any changes to it that had not
    /// synced. Say so to the user ("Fall vom Netzwerk gelöscht").
    fn on_case_deleted(&self, id: DocumentId) {
        let _ = id;
    }
    /// The network rewrote this case (an entry was erased from its history, or the
    /// history compacted): the phone moved onto the new document, carrying over what it
    /// typed offline, except edits to entries that no longer exist (`dropped`: tell the
    /// user, e.g. "Ihre Änderung an einer gelöschten Notiz wurde verworfen"). The case
    /// keeps its id.
    fn on_case_replaced(&self, replaced: CaseReplaced) {
        let _ = replaced;
    }
}

/// A case moved onto its newer generation (see [`Listener::on_case_replaced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReplaced {
    /// The id the app knows the case by; it stays the same.
    pub case_id: DocumentId,
    /// The document that holds the case now.
    pub document_id: DocumentId,
    /// Offline edits that could not be carried over.
    pub dropped: Vec<DroppedEdit>,
}

/// An entry whose offline edits were dropped: it was erased, or removed by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEdit {
    /// `note`, `appointment` or `hours`.
    pub kind: String,
    pub id: String,
}

enum Event {
    State(SyncState),
    Changed(Vec<DocumentId>),
    Offer(OfferAnswer),
    Deleted(DocumentId),
    Replaced(CaseReplaced),
}

#[derive(Default)]
pub struct Events {
    state: Mutex<Option<SyncState>>,
    subscribers: Mutex<Vec<(u64, mpsc::Sender<Event>)>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Events {
    pub fn state(&self) -> SyncState {
        lock(&self.state).clone().unwrap_or(SyncState::Offline)
    }

    /// Publishes a new state if it differs from the current one.
    pub fn set_state(&self, state: SyncState) {
        {
            let mut current = lock(&self.state);
            if current.as_ref() == Some(&state) {
                return;
            }
            *current = Some(state.clone());
        }
        self.send(|| Event::State(state.clone()));
    }

    pub fn changed(&self, ids: Vec<DocumentId>) {
        if !ids.is_empty() {
            self.send(|| Event::Changed(ids.clone()));
        }
    }

    pub fn case_deleted(&self, id: DocumentId) {
        self.send(|| Event::Deleted(id));
    }

    pub fn case_replaced(&self, replaced: CaseReplaced) {
        self.send(|| Event::Replaced(replaced.clone()));
    }

    pub fn offer_answered(&self, answer: OfferAnswer) {
        self.send(|| Event::Offer(answer.clone()));
    }

    fn send(&self, event: impl Fn() -> Event) {
        lock(&self.subscribers).retain(|(_, tx)| tx.send(event()).is_ok());
    }

    pub fn subscribe(self: &Arc<Self>, listener: Arc<dyn Listener>) -> Subscription {
        let (tx, rx) = mpsc::channel::<Event>();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            // Registered and seeded with the current state under one lock, so no state
            // published in between is lost or delivered out of order.
            let mut subs = lock(&self.subscribers);
            let _ = tx.send(Event::State(self.state()));
            subs.push((id, tx));
        }
        let spawned = std::thread::Builder::new()
            .name(format!("lotse-listener-{id}"))
            .spawn(move || {
                while let Ok(event) = rx.recv() {
                    // A panicking listener must not take the thread's other events down
                    // with it, nor cross back into foreign code.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match event {
                            Event::State(s) => listener.on_sync_state(s),
                            Event::Changed(ids) => listener.on_documents_changed(ids),
                            Event::Offer(answer) => listener.on_offer_answered(answer),
                            Event::Deleted(id) => listener.on_case_deleted(id),
                            Event::Replaced(r) => listener.on_case_replaced(r),
                        }));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a listener thread");
            lock(&self.subscribers).retain(|(i, _)| *i != id);
        }
        Subscription {
            id,
            events: Arc::downgrade(self),
        }
    }

    fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|(i, _)| *i != id);
    }
}

/// Ends the subscription when dropped (or cancelled). Events already queued may still be
/// delivered; none after that.
pub struct Subscription {
    id: u64,
    events: Weak<Events>,
}

impl Subscription {
    pub fn cancel(&self) {
        if let Some(events) = self.events.upgrade() {
            events.unsubscribe(self.id);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    struct Collect(mpsc::Sender<String>);
    impl Listener for Collect {
        fn on_sync_state(&self, state: SyncState) {
            let _ = self.0.send(format!("{state:?}"));
        }
        fn on_documents_changed(&self, ids: Vec<DocumentId>) {
            let _ = self.0.send(format!("changed {}", ids.len()));
        }
    }

    #[test]
    fn current_state_first_then_updates_until_dropped() {
        let events = Arc::new(Events::default());
        events.set_state(SyncState::Connecting);
        let (tx, rx) = mpsc::channel();
        let sub = events.subscribe(Arc::new(Collect(tx)));
        let next = || rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(next(), "Connecting");
        events.set_state(SyncState::Connecting); // unchanged: not repeated
        events.set_state(SyncState::Idle);
        events.changed(vec![DocumentId::random()]);
        assert_eq!(next(), "Idle");
        assert_eq!(next(), "changed 1");
        drop(sub);
        events.set_state(SyncState::Offline);
        // The thread ends (sender dropped) and nothing more arrives.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}

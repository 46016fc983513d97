//! The peers of the sync protocol as sans-I/O state machines (DESIGN.md decision 11): the
//! server's side of one connection ([`ServerPeer`]) and a client's ([`ClientPeer`]).
//!
//! A machine takes decoded messages, the time and the answers to what it asked for, and
//! hands back messages to send ([`ServerPeer::poll_transmit`]) and effects to carry out
//! (`poll_effect`). It never blocks and never does I/O, so the server's connection task,
//! the phone, the bench and the tests only feed it and carry out what comes out, and a
//! property test can drive whole networks of them without a runtime.
//!
//! Effects that need an answer are asked one at a time: while one is open, the machine
//! queues further input and works through it once the answer is in. So a driver may feed
//! input whenever it arrives, and every document sees its messages in order.

/// The three queues a driver drains after every input, the same for both machines.
macro_rules! drained_by_the_driver {
    ($effect:ty, $event:ty) => {
        /// The next message to send, in order.
        pub fn poll_transmit(&mut self) -> Option<crate::wire::Message> {
            self.q.transmit.pop_front()
        }

        /// The next thing to do; see the effect's doc for whether it wants an answer.
        pub fn poll_effect(&mut self) -> Option<$effect> {
            self.q.effects.pop_front()
        }

        /// The next piece of news for the application.
        pub fn poll_event(&mut self) -> Option<$event> {
            self.q.events.pop_front()
        }
    };
}

pub mod client;
pub mod memory;
pub mod server;

pub use client::{
    Applied, ClientConfig, ClientEffect, ClientError, ClientEvent, ClientPeer, Holding, Holdings,
    Offered,
};
pub use server::{
    Access, DocTask, ExchangeError, Exchanged, ServerConfig, ServerEffect, ServerEvent, ServerPeer,
};

use std::collections::VecDeque;

use crate::docid::DocumentId;
use crate::wire::Message;

/// An ephemeral message (presence, cursors) of one document: relayed, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub id: DocumentId,
    pub sender_id: String,
    pub session_id: String,
    pub count: u64,
    pub data: Vec<u8>,
}

impl Ephemeral {
    /// The payload of an `ephemeral` message; `None` for any other message.
    pub fn from_message(message: Message) -> Option<Self> {
        match message {
            Message::Ephemeral {
                sender_id,
                document_id,
                session_id,
                count,
                data,
                ..
            } => Some(Self {
                id: document_id,
                sender_id,
                session_id,
                count,
                data,
            }),
            _ => None,
        }
    }
}

/// What both machines keep between calls: input waiting its turn, the answer waited for,
/// and what is ready for the driver.
#[derive(Debug)]
struct Queues<J, W, E, V> {
    jobs: VecDeque<J>,
    waiting: Option<W>,
    transmit: VecDeque<Message>,
    effects: VecDeque<E>,
    events: VecDeque<V>,
}

impl<J, W, E, V> Default for Queues<J, W, E, V> {
    fn default() -> Self {
        Self {
            jobs: VecDeque::new(),
            waiting: None,
            transmit: VecDeque::new(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

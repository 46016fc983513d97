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

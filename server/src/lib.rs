//! lotse-server: the sync server, REST API and dashboard of a Lotse network. `app` is the
//! application root (state, events, the root router); `http`, `sync` and `dashboard` hang
//! off it and never use each other (see README.md, `scripts/check-layers`).

pub mod app;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod email;
pub mod exports;
pub mod http;
pub mod hub;
pub mod matching;
pub mod purge;
pub mod push;
pub mod ratelimit;
pub mod secrets;
pub mod statements;
pub mod store;
pub mod sync;
pub mod team;
pub mod timefmt;
pub mod webapp;

pub use app::{AppState, serve};

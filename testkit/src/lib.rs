//! The one test harness of the workspace: fresh databases (`db`), lotse-server started
//! in-process on a free loopback port with HTTP helpers for what tests set up (`server`),
//! the server binary as a child process (`process`), request bodies and documents as
//! data (`fixtures`), and waiting with a deadline (`wait`). The server's and
//! mobile-core's tests and the bench use it, so they agree on how a server is started.
// A harness that finds something wrong has nothing better to do than fail the test, with
// the message of the unwrap; `Result`s are kept for the bench's process helpers.
#![allow(clippy::unwrap_used)]

pub mod db;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod server;
pub mod wait;

pub use db::{Backend, TempDir, TestDb};
pub use http::{call_json, connect_sync};
pub use server::{Client, Options, TestServer};
pub use wait::{eventually, now_ms, within};

/// The password `TestServer::new_org` gives its coordinators.
pub const PASSWORD: &str = "ein langes Passwort 42";

/// Runs each named `async fn(Backend)` once per backend, as `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Postgres).await })*
        }
    };
}

//! Ferry im gateway: client sessions over TCP, message storage, HTTP API.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod console;
pub mod delivery;
pub mod disconnect;
pub mod feed;
pub mod forbidden;
/// The mutation fuzzer shared with `common/tests/fuzz_decoders.rs`.
#[cfg(test)]
#[path = "../../common/tests/fuzz_engine/mod.rs"]
mod fuzz_engine;
pub mod groups;
pub mod history;
pub mod hooks;
pub mod http;
pub mod limits;
pub mod messaging;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod own_relations;
pub mod presence;
pub mod registry;
pub mod relations;
pub mod resend;
pub mod rooms;
pub mod server;
pub mod session;
pub mod store;
pub mod wordfilter;

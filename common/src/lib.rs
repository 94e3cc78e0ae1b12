//! Shared code of Ferry: the client wire protocol, the im↔imr link protocol,
//! JWT tokens and the Rust client library.

pub mod client;
pub mod clock;
pub mod config;
pub mod gobelieve;
pub mod link;
pub mod protocol;
pub mod secret;
pub mod token;

pub use secret::redact_url;

//! Shared code of Ferry: the client wire protocol, the im↔imr link protocol,
//! JWT tokens and the Rust client library.

pub mod client;
pub mod gobelieve;
pub mod link;
pub mod protocol;
mod redact;
pub mod token;

pub use redact::redact_url;

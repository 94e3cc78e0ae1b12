//! Rust client library for gobelieve-compatible im servers (Ferry included).
//!
//! Used by integration tests, the `ferry bench` load tool and terminal chat
//! clients. A [`Client`] owns one TCP connection driven by a background task;
//! sending methods live on [`ClientHandle`] (`Client` derefs to it) and
//! everything the server pushes arrives as [`Event`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferry_common::client::ClientError> {
//! use ferry_common::client::{Client, Event};
//! let mut c = Client::connect("127.0.0.1:23000").await?;
//! c.auth("<jwt>", 3, "device-1", 2).await?;
//! let ack = c.send_im(42, "hello", 1).await?;
//! assert!(ack.is_ok());
//! while let Some(ev) = c.recv().await {
//!     if let Event::Closed(_) = ev { break; }
//! }
//! # Ok(()) }
//! ```
//!
//! Layout: [`sync`] is the personal sync loop as a pure state machine,
//! `connection` the socket task, `dispatch` the per-frame logic, `state`
//! what those two and the API share, `handle` the API.

mod ack;
mod connection;
mod dispatch;
mod error;
mod event;
mod handle;
mod options;
mod state;
pub mod sync;

#[cfg(test)]
mod tests;

pub use ack::Ack;
pub use error::{ClientError, CloseReason};
pub use event::Event;
pub use handle::{Client, ClientHandle, ClientStats, Events};
pub use options::ClientOptions;
pub use sync::SyncMachine;

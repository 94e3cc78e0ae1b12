//! Client transports. Raw TCP, TLS, WebSocket and secure WebSocket all run
//! the same [`drive`] loop over a [`Transport`]; they differ only in how
//! bytes become frames and frames become bytes.

pub mod drive;
#[cfg(test)]
mod fuzz;
pub mod guard;
mod read;
pub mod tcp;
pub mod tls;
pub mod wake_list;
pub mod ws;

pub use drive::{Io, Transport, serve};

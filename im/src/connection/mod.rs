//! Client transports. Each drives a [`crate::session::Session`].

pub mod guard;
mod read;
pub mod tcp;

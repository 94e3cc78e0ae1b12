//! Client transports. Each drives a [`crate::session::Session`].

mod read;
pub mod tcp;

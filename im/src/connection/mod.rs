//! Client transports. Each drives a [`crate::session::Session`].

#[cfg(test)]
mod fuzz;
pub mod guard;
mod read;
pub mod tcp;

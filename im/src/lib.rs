//! Ferry im gateway.
pub mod store;

//! Rust client library (being written).

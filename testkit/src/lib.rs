//! Test-only code shared by Ferry's crates: process harnesses (Redis,
//! MariaDB) and the mutation fuzzer. A dev-dependency only; no production
//! crate links it.
//!
//! It depends on no Ferry crate on purpose: a crate's unit tests (inside its
//! `src/`) can then use it without cargo linking a second copy of that crate,
//! which is what a testkit built on `ferry-im` would cause for im's own unit
//! tests. Suites that need Ferry's types stay with the crate they test.

pub mod fuzz;
pub mod mariadb;
pub mod net;
pub mod redis;

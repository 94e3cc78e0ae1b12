//! Ferry imr: the router between im gateway nodes (spec §4).
//!
//! Each im keeps one link here. The imr keeps one subscription table per
//! link, relays PUBLISH* frames to the links that hold the receiver, and
//! turns PUSH requests for users who are offline everywhere into JSON
//! entries on Redis lists for the push service (spec §3.12).
//!
//! Entry points: [`config::ImrOptions::resolve`] and [`server::run`] (or
//! [`server::Server::bind`] + [`server::Server::serve`] to learn the bound
//! addresses and read [`server::Server::stats`]).

pub mod config;
mod http;
pub mod link;
mod node_query;
pub mod outbox;
pub mod presence;
pub mod push;
pub mod registry;
pub mod relay;
pub mod server;
mod state;
pub mod stats;
pub mod table;

pub use ferry_common::link::PUBLISH_APP;

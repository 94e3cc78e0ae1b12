//! What the imr's link tasks, its HTTP API and its server share, in a module
//! of its own so that none of them has to import another for it.

use crate::push::queue::PushQueue;
use crate::registry::Registry;
use crate::stats::Stats;
use std::sync::Arc;

/// State shared by links, the HTTP API and the server.
pub(crate) struct ImrState {
    pub registry: Registry,
    pub stats: Arc<Stats>,
    /// None when push is disabled.
    pub push: Option<PushQueue>,
    pub secret: String,
    pub link_queue: usize,
}

//! The users waiting out `--presence-grace` before an offline event: state
//! only, kept by the node; [`super::presence`] fills and drains it.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Default)]
pub struct Tracker {
    /// Users whose last connection here ended, with their grace deadline.
    pending: Mutex<HashMap<(i64, i64), Instant>>,
}

impl Tracker {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Instant>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! Per-stream positions for [`super::Store::append_ordered`] in the embedded
//! stores: their single writer applies requests one at a time, so counting
//! here, as each request is applied, gives every stream's requests their
//! storage order.

use std::collections::HashMap;

/// Streams remembered at most; beyond, the counters start again (a reader
/// then sees positions it already passed and stops waiting).
const STREAMS_MAX: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Streams(HashMap<(i64, i64), u64>);

impl Streams {
    /// The next position of `stream` (1 for its first request).
    pub(crate) fn next(&mut self, stream: (i64, i64)) -> u64 {
        if self.0.len() >= STREAMS_MAX && !self.0.contains_key(&stream) {
            self.0.clear();
        }
        let n = self.0.entry(stream).or_insert(0);
        *n += 1;
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_per_stream() {
        let mut s = Streams::default();
        assert_eq!(s.next((7, 1)), 1);
        assert_eq!(s.next((7, 2)), 1);
        assert_eq!(s.next((7, 1)), 2);
        assert_eq!(s.next((8, 1)), 1);
    }
}

//! One connection type over standalone Redis and Redis Cluster.

use crate::store::StoreError;
use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// URL scheme selecting Redis Cluster: `redis+cluster://h1:p1,h2:p2,…`.
pub(super) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Reconnection attempts of one reconnect cycle. Small, so that a request
/// waiting for a reconnect to a dead server fails within a few seconds
/// (the next request starts a new cycle).
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);

/// A cheaply cloneable, multiplexed connection: every clone shares the same
/// socket(s), so concurrent commands from many tasks are pipelined.
#[derive(Clone)]
pub(super) enum Conn {
    /// Standalone server; reconnects by itself after a failure.
    Single(ConnectionManager),
    /// Redis Cluster; follows MOVED/ASK and refreshes its slot map.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Splits `redis+cluster://[user:pass@]h1:p1,h2:p2` into one `redis://` URL
/// per node (credentials apply to every node).
pub(super) fn cluster_nodes(url: &str) -> Result<Vec<String>, StoreError> {
    let rest = url
        .strip_prefix(CLUSTER_SCHEME)
        .ok_or_else(|| StoreError::Invalid(format!("not a {CLUSTER_SCHEME} url: {url}")))?;
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{auth}{h}"))
        .collect();
    if nodes.is_empty() {
        return Err(StoreError::Invalid(format!("no cluster nodes in {url}")));
    }
    Ok(nodes)
}

fn backend(context: &str, e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

/// Connects to `url` (`redis://…` or `redis+cluster://…`) and checks the
/// server answers. Fails fast when it does not.
pub(super) async fn connect(
    url: &str,
    response_timeout: Duration,
    connection_timeout: Duration,
) -> Result<Conn, StoreError> {
    if url.starts_with(CLUSTER_SCHEME) {
        let nodes = cluster_nodes(url)?;
        let client = ClusterClientBuilder::new(nodes)
            .connection_timeout(connection_timeout)
            .response_timeout(response_timeout)
            .overall_response_timeout(Some(response_timeout.saturating_mul(2)))
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64)
            .build()
            .map_err(|e| StoreError::Invalid(format!("bad cluster url {url}: {e}")))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| backend("cannot connect to redis cluster", e))?;
        return Ok(Conn::Cluster(conn));
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix:")) {
        return Err(StoreError::Invalid(format!(
            "store url must start with redis:// or {CLUSTER_SCHEME}: {url}"
        )));
    }
    let client = ::redis::Client::open(url)
        .map_err(|e| StoreError::Invalid(format!("bad redis url {url}: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(connection_timeout))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY);
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| backend("cannot connect to redis", e))?;
    Ok(Conn::Single(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_split_into_nodes() {
        assert_eq!(
            cluster_nodes("redis+cluster://a:1,b:2, c:3/").expect("nodes"),
            vec!["redis://a:1", "redis://b:2", "redis://c:3"]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@a:1,b:2").expect("nodes"),
            vec!["redis://u:p@a:1", "redis://u:p@b:2"]
        );
        assert!(matches!(
            cluster_nodes("redis+cluster://"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            cluster_nodes("redis://a:1"),
            Err(StoreError::Invalid(_))
        ));
    }
}

//! `ferry bench`: load scenarios against running im nodes, modelled on
//! gobelieve's `benchmark/*.go`, plus a bare fan-out baseline server.
//! Loopback targets only, bounded counts and an overall time limit, so a
//! typo cannot turn it into a long-running flood.

mod baseline;
mod connect;
mod connections;
mod group;
mod host;
mod http;
mod peer;
mod plot;
mod raw;
mod reconnect;
mod record;
mod report;
mod room;
mod scenario;

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// `ferry bench <scenario> ...`
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Peer messages, like benchmark.go: c senders each send n IMs (one in
    /// flight) to their own receiver; reports end-to-end msgs/s and ACK latency.
    Peer(peer::PeerArgs),
    /// Group messages: s senders and r receivers in one (new) group; each
    /// send waits for its ACK; reports deliveries/s.
    Group(group::GroupArgs),
    /// Chat room: s senders, r listeners in one room; reports deliveries/s.
    Room(room::RoomArgs),
    /// Opens N authenticated idle connections, holds them, and reports the
    /// server's RSS growth per connection.
    Connections(connections::ConnectionsArgs),
    /// Reconnect storm: N clients drop at once and come back; time until all
    /// are authenticated and synced.
    Reconnect(reconnect::ReconnectArgs),
    /// A bare Tokio fan-out server speaking just enough of the protocol for
    /// `ferry bench room` (the upper bound the room figure is compared to).
    BaselineServer(baseline::BaselineArgs),
    /// Draws runs saved with `--json` as one SVG: throughput over time and
    /// latency by percentile, runs overlaid for A/B comparison.
    Plot(plot::PlotArgs),
}

/// Where login tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenSource {
    /// HS256 JWTs signed with the server's secret (`ferry im --auth jwt`).
    Jwt,
    /// gobelieve-style `access_token_<token>` hashes written to Redis
    /// (`ferry im --auth redis`).
    Redis,
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// im address(es) (TCP, loopback only). Repeat or comma-separate to run
    /// cross-node: senders use the first, receivers/listeners the others.
    #[arg(long, default_value = "127.0.0.1:23000", value_delimiter = ',')]
    pub target: Vec<String>,
    /// appid of every bench user.
    #[arg(long, default_value_t = 7)]
    pub appid: i64,
    /// First uid; the scenario uses a contiguous range from here.
    #[arg(long, default_value_t = 1_000_000)]
    pub uid_base: i64,
    /// How tokens are made.
    #[arg(long, value_enum, default_value_t = TokenSource::Jwt)]
    pub token_source: TokenSource,
    /// JWT signing secret of the server (else read from <data-dir>/jwt_secret).
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The server's data dir, where `ferry im` keeps its generated jwt_secret.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Redis for `--token-source redis` (the one the server's `--redis` names).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Platform id sent in AUTH_TOKEN (3 = web: no device-id bookkeeping).
    #[arg(long, default_value_t = 3)]
    pub platform: u8,
    /// Protocol version of the connections (1 or 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub proto_version: u8,
    /// Connections opened concurrently per wave.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub connect_wave: u32,
    /// Source addresses 127.0.0.1..=127.0.0.N the connections are spread
    /// over (bind before connect), so many connections cannot exhaust the
    /// ephemeral ports of one address pair. 1 = let the kernel choose.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub source_ips: u8,
    /// Overall time limit in seconds (connect, drain and run); exceeding it is an error.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl ConnArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Runs the chosen scenario to completion and prints its results.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Peer(a) => peer::run(a).await,
        Scenario::Group(a) => group::run(a).await,
        Scenario::Room(a) => room::run(a).await,
        Scenario::Connections(a) => connections::run(a).await,
        Scenario::Reconnect(a) => reconnect::run(a).await,
        Scenario::BaselineServer(a) => baseline::run(a).await,
        Scenario::Plot(a) => plot::run(a),
    }
}

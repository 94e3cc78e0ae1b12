//! `ferry bench`: load scenarios against a running im, modelled on
//! gobelieve's `benchmark/*.go`. Loopback targets only, bounded message
//! counts and an overall time limit, so a typo cannot turn it into a
//! long-running flood.

mod connect;
mod peer;
mod report;

use clap::{Args, Subcommand};
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
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// im address (TCP); must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:23000")]
    pub target: String,
    /// appid of every bench user.
    #[arg(long, default_value_t = 7)]
    pub appid: i64,
    /// First uid; the scenario uses a contiguous range from here.
    #[arg(long, default_value_t = 1_000_000)]
    pub uid_base: i64,
    /// JWT signing secret of the server (else read from <data-dir>/jwt_secret).
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The server's data dir, where `ferry im` keeps its generated jwt_secret.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Platform id sent in AUTH_TOKEN (3 = web: no device-id bookkeeping).
    #[arg(long, default_value_t = 3)]
    pub platform: u8,
    /// Protocol version of the connections (1 or 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub proto_version: u8,
    /// Connections opened concurrently per wave.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub connect_wave: u32,
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
    }
}

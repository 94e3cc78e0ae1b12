//! The `ferry` command: `im` (gateway node), `imr` (router), `token` (mint a
//! login token), `bench` (load tool), `chat` (terminal client), `migrate`
//! (move an embedded store to the current format).

mod bench;
mod chat;
mod logging;
mod migrate;
mod token;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: a gobelieve-compatible instant-messaging server"
)]
struct Cli {
    /// Log format: `text` (default) or `json`. Levels via RUST_LOG (default info).
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an im gateway node (alone on its embedded store when given no --imr/--store).
    Im(Box<ferry_im::config::ImOptions>),
    /// Run an imr router that relays traffic between im nodes.
    Imr(Box<ferry_imr::config::ImrOptions>),
    /// Load tool: drives a running server and reports throughput and latency.
    Bench(bench::BenchArgs),
    /// Interactive terminal chat client: `@UID text` to send, incoming messages printed.
    Chat(chat::ChatArgs),
    /// Print a login token accepted by `ferry im --auth jwt` with the same secret/data dir.
    Token(token::TokenArgs),
    /// Move a stopped node's embedded store to the current store format.
    Migrate(migrate::MigrateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The servers' configuration is resolved before logging starts, as a
    // gobelieve file may set the default log level.
    let cmd = match cli.cmd {
        Command::Im(opts) => {
            let cfg = opts.resolve()?;
            logging::init(cli.log_format, cfg.log_filter);
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            tracing::debug!(config = ?cfg, "effective configuration");
            Resolved::Im(Box::new(cfg))
        }
        Command::Imr(opts) => {
            let cfg = opts.resolve()?;
            logging::init(cli.log_format, cfg.log_filter);
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            tracing::debug!(config = ?cfg, "effective configuration");
            Resolved::Imr(Box::new(cfg))
        }
        Command::Token(args) => {
            logging::init(cli.log_format, None);
            Resolved::Token(args)
        }
        Command::Bench(args) => {
            logging::init(cli.log_format, None);
            Resolved::Bench(args)
        }
        Command::Chat(args) => {
            logging::init(cli.log_format, None);
            Resolved::Chat(args)
        }
        Command::Migrate(args) => {
            logging::init(cli.log_format, None);
            Resolved::Migrate(args)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        match cmd {
            Resolved::Im(cfg) => {
                ferry_im::server::run(*cfg, shutdown_signal()?).await?;
                Ok(())
            }
            Resolved::Imr(cfg) => {
                ferry_imr::server::run(*cfg, shutdown_signal()?).await?;
                Ok(())
            }
            Resolved::Token(args) => token::run(args),
            Resolved::Migrate(args) => migrate::run(args),
            Resolved::Bench(args) => bench::run(args).await,
            Resolved::Chat(args) => chat::run(args).await,
        }
    })
}

/// A command after its configuration was read.
enum Resolved {
    Im(Box<ferry_im::config::ImConfig>),
    Imr(Box<ferry_imr::config::ImrConfig>),
    Token(token::TokenArgs),
    Bench(bench::BenchArgs),
    Chat(chat::ChatArgs),
    Migrate(migrate::MigrateArgs),
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before
/// the server binds its listeners: a signal that arrives as soon as a port
/// accepts must stop the server gracefully, not kill it with the default
/// action (a lazily installed handler left that window open).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

//! Log setup: readable text by default, JSON for machines; filters from
//! RUST_LOG (e.g. `RUST_LOG=info,ferry_im::session=debug`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging; `default_filter` (e.g. from a gobelieve `[log] level`)
/// applies when RUST_LOG is unset, else `info`.
pub fn init(format: LogFormat, default_filter: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter.unwrap_or("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

//! Log setup: readable text by default, JSON for machines; filters from
//! RUST_LOG (e.g. `RUST_LOG=info,ferry_im::session=debug`).
//!
//! Colour only on a terminal: escape codes in a journal, a file or a pipe
//! are noise, so text logs are plain unless stderr is a tty, and `NO_COLOR`
//! (any non-empty value, <https://no-color.org>) turns colour off anyway.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Without RUST_LOG: our own INFO lines (or the level of a gobelieve
/// `[log] level`), but only warnings from the embedded store's crates, whose
/// INFO lines (journal recovery, segment rotation) say nothing an operator
/// acts on.
const QUIET_STORE: &str = "fjall=warn,lsm_tree=warn,value_log=warn";

pub fn init(format: LogFormat, default_level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{},{QUIET_STORE}", default_level.unwrap_or("info")))
    });
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour when stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour(stderr_is_tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_tty && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}

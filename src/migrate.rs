//! `ferry migrate`: moves an embedded store written by an older Ferry to the
//! current store format, in place (see "Store format versions" in the
//! README). The node must be stopped: the store is opened exclusively.

use anyhow::Context;
use ferry_im::store::{FjallStore, Migrated};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The data dir of the stopped node.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

pub fn run(a: MigrateArgs) -> anyhow::Result<()> {
    let done = FjallStore::migrate(&a.data_dir)
        .with_context(|| format!("migrating the store in {}", a.data_dir.display()))?;
    match done {
        Migrated::Empty => println!("{}: no embedded store, nothing to do", a.data_dir.display()),
        Migrated::Current => println!("{}: already in the current format", a.data_dir.display()),
        Migrated::Upgraded {
            from,
            dedup_records,
        } => println!(
            "{}: migrated from store format {from}; dropped {dedup_records} dedup records \
             (resends of messages sent before the upgrade are no longer recognised)",
            a.data_dir.display()
        ),
    }
    Ok(())
}

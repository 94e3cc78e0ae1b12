//! `ferry token`: mint a JWT for a user with the same secret the server uses
//! (`--jwt-secret`, `FERRY_JWT_SECRET`, or the one kept in the data dir).

use anyhow::Context;
use ferry_common::token::{Claims, sign};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long)]
    uid: i64,
    #[arg(long, default_value_t = 7)]
    appid: i64,
    /// Lifetime in seconds (default: no expiry, like gobelieve tokens).
    #[arg(long)]
    ttl: Option<i64>,
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

pub fn run(a: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.uid != 0, "--uid must not be 0");
    let key = ferry_im::auth::load_or_create_secret(a.jwt_secret.as_deref(), &a.data_dir)
        .with_context(|| format!("loading the JWT secret from {}", a.data_dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let claims = Claims {
        appid: a.appid,
        uid: a.uid,
        exp: a.ttl.map(|t| now + t),
        nbf: None,
    };
    println!("{}", sign(&claims, &key));
    Ok(())
}

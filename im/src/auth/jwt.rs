//! `--auth jwt`: HMAC-signed tokens with claims `uid`, `appid`, optional `exp`.

use super::{AuthError, Identity};
use std::io::Write;
use std::path::Path;

pub struct JwtAuth {
    key: Vec<u8>,
}

impl JwtAuth {
    pub fn new(key: Vec<u8>) -> JwtAuth {
        JwtAuth { key }
    }

    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let c = ferry_common::token::verify(token, &self.key, now)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Identity {
            appid: c.appid,
            uid: c.uid,
            forbidden: false,
            notification_on: false,
        })
    }
}

/// File in the data dir holding the generated secret.
pub const SECRET_FILE: &str = "jwt_secret";

/// The JWT secret: the configured one, else the one kept in
/// `<data_dir>/jwt_secret`, generated (32 random bytes, hex, mode 0600) on
/// first use so `ferry im` and `ferry token` agree without configuration.
pub fn load_or_create_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data_dir.join(format!("{SECRET_FILE}.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
    }
    // Publish atomically; if another process won the race, use its secret.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let _ = std::fs::remove_file(&tmp);
    let s = std::fs::read_to_string(&path)?;
    Ok(s.trim().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_generated_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_secret(None, dir.path()).expect("create");
        let b = load_or_create_secret(None, dir.path()).expect("load");
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            load_or_create_secret(Some("x"), dir.path()).expect("cfg"),
            b"x".to_vec()
        );
    }
}

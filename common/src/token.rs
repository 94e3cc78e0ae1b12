//! HMAC-signed JWT access tokens (HS256/384/512), the `--auth jwt` method.
//!
//! Written on top of `hmac` + `sha2` rather than a JWT crate: the format we
//! accept is tiny (claims `uid`, `appid`, optional `exp`/`nbf`) and this keeps
//! a C crypto library out of the build. Signature checks are constant-time.

use crate::secret::constant_time_eq;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha384, Sha512};

/// Identity carried by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub appid: i64,
    #[serde(default)]
    pub uid: i64,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Why a token was refused. Never includes the token or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not three base64url parts")]
    Malformed,
    #[error("unsupported algorithm (only HS256/HS384/HS512)")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("claims are not valid JSON: {0}")]
    Claims(String),
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
}

fn mac(alg: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, TokenError> {
    // new_from_slice accepts keys of any length for HMAC; the error arm is unreachable
    // in practice but mapped rather than unwrapped.
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h>>::new_from_slice(key).map_err(|_| TokenError::Signature)?;
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }};
    }
    match alg {
        "HS256" => run!(Sha256),
        "HS384" => run!(Sha384),
        "HS512" => run!(Sha512),
        _ => Err(TokenError::Algorithm),
    }
}

/// Signs `claims` with HS256.
pub fn sign(claims: &Claims, key: &[u8]) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = mac("HS256", key, signing_input.as_bytes()).unwrap_or_default();
    format!("{signing_input}.{}", B64.encode(sig))
}

/// Verifies `token` against `key` at time `now` (Unix seconds).
pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = B64.decode(h).map_err(|_| TokenError::Malformed)?;
    let header: JwtHeader =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    let expected = mac(&header.alg, key, signing_input.as_bytes())?;
    if !constant_time_eq(&expected, &sig) {
        return Err(TokenError::Signature);
    }
    let payload = B64.decode(p).map_err(|_| TokenError::Malformed)?;
    let claims: Claims =
        serde_json::from_slice(&payload).map_err(|e| TokenError::Claims(e.to_string()))?;
    if let Some(exp) = claims.exp
        && now >= exp
    {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && now < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Claims {
            appid: 7,
            uid: 42,
            exp: None,
            nbf: None,
        };
        let t = sign(&c, b"secret");
        assert_eq!(verify(&t, b"secret", 0), Ok(c));
    }

    #[test]
    fn wrong_key_and_tamper() {
        let c = Claims {
            appid: 7,
            uid: 42,
            exp: None,
            nbf: None,
        };
        let t = sign(&c, b"secret");
        assert_eq!(verify(&t, b"other", 0), Err(TokenError::Signature));
        let forged = sign(&Claims { uid: 43, ..c }, b"x");
        let spliced = format!(
            "{}.{}",
            &t[..t.rfind('.').unwrap_or(0)]
                .split('.')
                .next()
                .unwrap_or(""),
            forged.split('.').skip(1).collect::<Vec<_>>().join(".")
        );
        assert_eq!(verify(&spliced, b"secret", 0), Err(TokenError::Signature));
        assert_eq!(verify("a.b", b"secret", 0), Err(TokenError::Malformed));
        assert_eq!(verify("", b"secret", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn expiry_and_not_before() {
        let c = Claims {
            appid: 1,
            uid: 2,
            exp: Some(100),
            nbf: Some(50),
        };
        let t = sign(&c, b"k");
        assert!(verify(&t, b"k", 60).is_ok());
        assert_eq!(verify(&t, b"k", 100), Err(TokenError::Expired));
        assert_eq!(verify(&t, b"k", 10), Err(TokenError::NotYetValid));
    }

    #[test]
    fn rejects_none_algorithm() {
        let h = B64.encode(br#"{"alg":"none"}"#);
        let p = B64.encode(br#"{"uid":1,"appid":1}"#);
        assert_eq!(
            verify(&format!("{h}.{p}."), b"k", 0),
            Err(TokenError::Algorithm)
        );
    }

    #[test]
    fn accepts_gobelieve_style_hs512_without_exp() {
        let h = B64.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let p = B64.encode(br#"{"appid":7,"uid":9}"#);
        let input = format!("{h}.{p}");
        let sig = mac("HS512", b"k", input.as_bytes()).expect("mac");
        let t = format!("{input}.{}", B64.encode(sig));
        let c = verify(&t, b"k", 0).expect("valid");
        assert_eq!((c.appid, c.uid), (7, 9));
    }
}

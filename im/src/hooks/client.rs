//! The hook HTTP client: HTTP/1.1 with a keep-alive pool (hyper-util's
//! client), every body signed. One client per node, shared by every
//! connection and the event worker; requests from different connections
//! run on different pooled sockets, so a slow hook never makes one
//! connection wait for another's request.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-ferry-signature";
/// Header naming the request type (`before_send` or `events`).
pub const TYPE_HEADER: &str = "x-ferry-hook";
/// Largest hook answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a hook request failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("hook answered HTTP {0}")]
    Status(u16),
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[derive(Clone)]
pub struct HookClient {
    http: Client<HttpConnector, Full<Bytes>>,
    url: hyper::Uri,
    secret: Option<Arc<[u8]>>,
}

impl HookClient {
    /// `url` was checked by the configuration (an `http://` URL); an
    /// unparsable one fails every request with a clear error instead.
    pub fn new(url: String, secret: Option<String>) -> HookClient {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(conn);
        HookClient {
            http,
            url: url.parse().unwrap_or_default(),
            secret: secret.map(|s| s.into_bytes().into()),
        }
    }

    /// POSTs `body` (JSON) and returns the answer body of a 2xx answer.
    pub async fn post(
        &self,
        kind: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, HookError> {
        match tokio::time::timeout(timeout, self.post_inner(kind, body)).await {
            Ok(r) => r,
            Err(_) => Err(HookError::Timeout(timeout)),
        }
    }

    async fn post_inner(&self, kind: &'static str, body: Bytes) -> Result<Bytes, HookError> {
        if self.url.host().is_none() {
            return Err(HookError::Request("invalid --hook-url".into()));
        }
        let mut req = hyper::Request::post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(TYPE_HEADER, HeaderValue::from_static(kind));
        if let Some(s) = &self.secret {
            req = req.header(SIGNATURE_HEADER, sign(s, &body));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| HookError::Request(e.to_string()))?;
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| HookError::Request(e.to_string()))?;
        let status = res.status();
        let answer = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| HookError::BadAnswer(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(HookError::Status(status.as_u16()));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! Just enough HTTP/1.1 for the bench to call the im HTTP API (one request
//! per connection, `Connection: close`), without an HTTP client dependency.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status code and body of a response.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `POST path` with a JSON body (and a bearer token when given).
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    json: &str,
    bearer: Option<&str>,
) -> anyhow::Result<Response> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the HTTP API at {addr}"))?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response from {addr}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed HTTP status line from {addr}"))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

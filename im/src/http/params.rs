//! Request inputs: query parameters (decimal i64, as gobelieve parses them),
//! raw bodies and JSON bodies, each failing with an [`ApiError`] that names
//! what was wrong.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::request::Parts;
use ferry_common::protocol::MAX_CLIENT_BODY;
use serde::de::DeserializeOwned;

/// Largest request body accepted (axum `DefaultBodyLimit`); larger → 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The query string's `name=value` pairs, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }

    /// First value of `name` (Go's `url.Values.Get`); an empty value counts
    /// as absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A raw value (empty counts as absent).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    /// A required decimal i64.
    pub fn i64(&self, name: &str) -> Result<i64, ApiError> {
        self.opt_i64(name)?
            .ok_or_else(|| ApiError::bad_request(format!("invalid query param: {name} (missing)")))
    }

    /// An optional decimal i64: absent or empty → `None`, anything else must parse.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid query param: {name} (not a decimal i64)"
                    ))
                })
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Params::from_uri(&parts.uri)
    }
}

/// The whole request body, at most [`BODY_LIMIT`] bytes.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body too large (limit {BODY_LIMIT} bytes)"),
                    )
                } else {
                    ApiError::new(e.status(), e.body_text())
                }
            })
    }
}

/// A JSON body, whatever the Content-Type (as gobelieve reads it).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(body) = RawBody::from_request(req, state).await?;
        parse_json(&body).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid json format: {e}")))
}

/// Content must fit a client frame (body < 32 KiB) behind a `header`-byte
/// fixed part, so every client can receive what the API accepts.
pub fn check_content(len: usize, header: usize) -> Result<(), ApiError> {
    let max = MAX_CLIENT_BODY - header;
    if len > max {
        return Err(ApiError::bad_request(format!(
            "content too large: {len} bytes, at most {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn params(q: &str) -> Params {
        Params::from_uri(&format!("/x?{q}").parse::<Uri>().expect("uri")).expect("params")
    }

    #[test]
    fn parses_decimal_i64_first_value_wins() {
        let p = params("appid=7&uid=-3&uid=9&big=9223372036854775807&plus=%2B5");
        assert_eq!(p.i64("appid"), Ok(7));
        assert_eq!(p.i64("uid"), Ok(-3));
        assert_eq!(p.i64("big"), Ok(i64::MAX));
        assert_eq!(p.i64("plus"), Ok(5));
    }

    #[test]
    fn missing_and_invalid_name_the_param() {
        let p = params("appid=x&uid=&limit=1.5&over=9223372036854775808");
        let msg = |r: Result<i64, ApiError>| r.expect_err("error").message;
        assert_eq!(
            msg(p.i64("appid")),
            "invalid query param: appid (not a decimal i64)"
        );
        assert_eq!(msg(p.i64("uid")), "invalid query param: uid (missing)");
        assert_eq!(
            msg(p.i64("receiver")),
            "invalid query param: receiver (missing)"
        );
        assert_eq!(
            msg(p.i64("limit")),
            "invalid query param: limit (not a decimal i64)"
        );
        assert_eq!(
            msg(p.i64("over")),
            "invalid query param: over (not a decimal i64)"
        );
        assert_eq!(
            p.i64("appid").expect_err("error").status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn optional_param() {
        let p = params("sync_key=&a=5&b=z");
        assert_eq!(p.opt_i64("sync_key"), Ok(None));
        assert_eq!(p.opt_i64("nope"), Ok(None));
        assert_eq!(p.opt_i64("a"), Ok(Some(5)));
        assert!(p.opt_i64("b").is_err());
        assert!(
            Params::from_uri(&"/x".parse::<Uri>().expect("uri"))
                .expect("params")
                .opt_i64("a")
                .is_ok()
        );
    }

    #[test]
    fn json_errors_are_400_invalid_json_format() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            appid: i64,
        }
        for body in [&b"{"[..], b"{\"appid\":\"7\"}", b"{}", b""] {
            let e = parse_json::<T>(body).expect_err("error");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                e.message.starts_with("invalid json format: "),
                "{}",
                e.message
            );
        }
        assert_eq!(
            parse_json::<T>(b"{\"appid\":7,\"x\":1}").expect("ok").appid,
            7
        );
    }

    #[test]
    fn content_limit_leaves_room_for_the_body_header() {
        assert!(check_content(MAX_CLIENT_BODY - 24, 24).is_ok());
        let e = check_content(MAX_CLIENT_BODY - 23, 24).expect_err("too large");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            format!(
                "content too large: {} bytes, at most {}",
                MAX_CLIENT_BODY - 23,
                MAX_CLIENT_BODY - 24
            )
        );
        assert!(check_content(0, 36).is_ok());
    }
}

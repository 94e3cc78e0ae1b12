//! The API's error type: gobelieve's `{"meta":{"code":<status>,"message":"<text>"}}`
//! body, sent with that same HTTP status.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer. Every handler and extractor of the API fails with this,
/// so no request ever gets axum's plain-text rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        json!({ "meta": { "code": self.status.as_u16(), "message": self.message } })
    }
}

impl From<StoreError> for ApiError {
    /// Storage failures are 500: the request was valid, nothing is reported
    /// as delivered.
    fn from(e: StoreError) -> ApiError {
        if let StoreError::ReadOnly(why) = e {
            return ApiError::new(StatusCode::CONFLICT, why);
        }
        tracing::warn!(error = %e, "http api: storage error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_gobelieve_shape() {
        let e = ApiError::bad_request("invalid query param: uid (missing)");
        assert_eq!(
            e.body(),
            json!({"meta": {"code": 400, "message": "invalid query param: uid (missing)"}})
        );
    }

    #[test]
    fn store_errors_are_500() {
        let e = ApiError::from(StoreError::Closed);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.starts_with("storage error"), "{}", e.message);
    }
}

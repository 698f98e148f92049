//! What handlers take from a request besides the caller: a JSON body whose rejections are API
//! errors like any other, and a client's idempotency key.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;
use api_model::ErrorCode;

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A JSON body; malformed or too large ones answer `invalid_request` or `payload_too_large`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body over {} bytes; send less", super::MAX_BODY),
        )
    } else {
        ApiError::invalid(format!("malformed request body: {}", rejection.body_text()))
    }
}

/// The `Idempotency-Key` header, checked like an id, when the client sent one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .map_err(|_| ApiError::invalid("the Idempotency-Key header is not text"))?;
        ids::idempotency_key(key)?;
        Ok(Self(Some(key.to_string())))
    }
}

impl IdempotencyKey {
    /// The one key of a request that may carry it in the body (`from_body`) and in the header;
    /// both at once must agree.
    pub fn merge(self, from_body: Option<String>, field: &str) -> Result<Option<String>, ApiError> {
        match (self.0, from_body) {
            (Some(header), Some(body)) if header != body => Err(ApiError::invalid(format!(
                "the Idempotency-Key header ({header}) and `{field}` ({body}) differ; send one of them"
            ))),
            (header, body) => Ok(body.or(header)),
        }
    }
}

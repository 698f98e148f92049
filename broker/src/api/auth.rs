//! Bearer-token authentication: every request is scoped to the caller's tenant from here on.

use std::collections::HashMap;

use api_model::ErrorCode;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use crate::config::ApiToken;

/// The analyst behind a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub user: String,
}

/// Tokens by the hex SHA-256 of their value.
#[derive(Clone, Debug, Default)]
pub struct Tokens(HashMap<String, Caller>);

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| {
                    let caller = Caller {
                        tenant: t.tenant.clone(),
                        user: t.user.clone(),
                    };
                    (t.token_sha256.to_ascii_lowercase(), caller)
                })
                .collect(),
        )
    }

    fn caller(&self, token: &str) -> Option<&Caller> {
        self.0.get(&sha256_hex(token))
    }
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        token
            .and_then(|t| state.tokens.caller(t))
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "missing or invalid bearer token; set LR_TOKEN to a token this cluster knows",
                )
            })
    }
}

//! Request extractors: the caller (from the bearer token), JSON bodies (400 when malformed, 413
//! over the limit, 415 when not JSON), and typed reading of a JSON value that names the field at
//! fault (422).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use posthorn_core::Invalid;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::AppState;

/// Who is calling. Owners are `admin` or an application id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
}

impl Caller {
    /// The owner name of what this caller creates.
    pub fn owner(&self) -> &str {
        match self {
            Caller::Admin => "admin",
        }
    }

    /// Whether this caller may see an object owned by `owner`.
    pub fn sees(&self, _owner: &str) -> bool {
        match self {
            Caller::Admin => true,
        }
    }

    /// `None` when the caller sees every owner's objects.
    pub fn scope(&self) -> Option<String> {
        match self {
            Caller::Admin => None,
        }
    }
}

/// Compares without an early exit, so that timing does not reveal how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        if same(token.as_bytes(), state.admin_token.as_bytes()) {
            return Ok(Caller::Admin);
        }
        Err(ApiError::Unauthorized)
    }
}

/// A JSON request body, parsed but not yet typed.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::Malformed(e.to_string()))
    }
}

/// Reads a `T` out of `value`; a value of the wrong shape is a 422 naming the field, as a path
/// below `prefix`.
pub fn typed<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        let message = e.inner().to_string();
        if path == "." {
            path.clear();
        }
        // serde reports a missing field at its parent; point at the field itself.
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            path = join(&path, field);
        }
        Invalid::one(join(prefix, &path), message)
    })
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        name: String,
        inner: Inner,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        list: Vec<u32>,
    }

    #[test]
    fn typed_names_the_field() {
        let v = serde_json::json!({"name": "x", "inner": {"n": "no", "list": []}});
        assert_eq!(typed::<T>(&v, "").unwrap_err().0[0].field, "inner.n");
        let v = serde_json::json!({"name": "x", "inner": {"n": 1, "list": [1, "a"]}});
        assert_eq!(
            typed::<T>(&v, "[3]").unwrap_err().0[0].field,
            "[3].inner.list[1]"
        );
        let v = serde_json::json!({"inner": {"n": 1, "list": []}});
        assert_eq!(typed::<T>(&v, "").unwrap_err().0[0].field, "name");
        let v = serde_json::json!({"name": "x", "inner": {"list": []}});
        assert_eq!(typed::<T>(&v, "").unwrap_err().0[0].field, "inner.n");
    }
}

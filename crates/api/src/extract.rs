//! Request extractors: JSON bodies (400 when malformed, 413 over the limit, 415 when not JSON),
//! and typed reading of a JSON value that names the field at fault (422). The caller is read by
//! [`crate::auth`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use posthorn_core::json::JsonFault;
use posthorn_core::validation::invalid_at;
pub use posthorn_core::validation::typed;
use posthorn_core::Invalid;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// A path parameter (`/v1/subscriptions/{id}`), whose rejection — `%ff` that does not decode to
/// UTF-8, a segment that is not what the route takes — is a problem+json like every error.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r| ApiError::BadRequest(format!("the path is not usable: {}", r.body_text())))
    }
}

/// The `{id}` of a path, as the id of one kind of object (`PathId<Sub>`: a subscription's). An id
/// that is not of that kind names nothing: 404, as an id of the kind that does not exist.
pub struct PathId<K>(pub posthorn_core::id::Id<K>);

impl<K, S> FromRequestParts<S> for PathId<K>
where
    K: posthorn_core::id::Kind + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        posthorn_core::id::Id::parse(&raw)
            .map(PathId)
            .ok_or(ApiError::NotFound(K::NOUN))
    }
}

/// A JSON request body, parsed but not yet typed.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawJson(bytes) = RawJson::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::Malformed(e.to_string()))
    }
}

/// A JSON request body checked to be well-formed JSON, left as text: for the hot path (publish),
/// which reads it straight into typed values instead of building a `Value` tree first.
pub struct RawJson(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let limit = req
            .extensions()
            .get::<crate::BodyLimit>()
            .map_or(0, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })?;
        // Well-formed first (400), whatever its shape; then usable by every later reading (no
        // duplicate key, not too deep: 422 naming where); typed reading then reports shapes (422).
        posthorn_core::json::check(&bytes).map_err(|fault| match fault {
            JsonFault::Malformed(m) => ApiError::Malformed(m),
            JsonFault::Unusable { path, message } => Invalid::one(path, message).into(),
        })?;
        Ok(RawJson(bytes))
    }
}

/// Reads a `T` out of JSON text already known to be well-formed (one value, nothing after it),
/// as [`typed`] does out of a value: a value of the wrong shape is a 422 naming the field, as a
/// path below `prefix`.
pub fn typed_text<T: DeserializeOwned>(json: &str, prefix: &str) -> Result<T, Invalid> {
    if !json.trim_start().starts_with('{') {
        return Err(Invalid::one(prefix, "must be a JSON object"));
    }
    // Read plainly first: tracking the path of every field costs on every request, and only an
    // error needs it, so only an error reads the text again with it.
    if let Ok(value) = serde_json::from_str(json) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        // The text's line and column mean nothing to the caller, who is told the field.
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        let message = inner.to_string();
        let message = message.strip_suffix(&position).unwrap_or(&message);
        invalid_at(prefix, e.path().to_string(), message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
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

    #[test]
    fn typed_text_names_the_field_as_typed_does() {
        let cases = [
            r#"{"name": "x", "inner": {"n": "no", "list": []}}"#,
            r#"{"name": "x", "inner": {"n": 1, "list": [1, "a"]}}"#,
            r#"{"inner": {"n": 1, "list": []}}"#,
            r#"{"name": "x", "inner": {"list": []}}"#,
            r#"[1]"#,
        ];
        for text in cases {
            let value: Value = serde_json::from_str(text).unwrap();
            let from_value = typed::<T>(&value, "[3]").unwrap_err().0;
            let from_text = typed_text::<T>(text, "[3]").unwrap_err().0;
            assert_eq!(from_text[0].field, from_value[0].field, "{text}");
            assert_eq!(from_text[0].message, from_value[0].message, "{text}");
        }
        let ok: T = typed_text(r#"{"name": "x", "inner": {"n": 1, "list": [2]}}"#, "").unwrap();
        assert_eq!((ok.name.as_str(), ok.inner.list), ("x", vec![2]));
    }
}

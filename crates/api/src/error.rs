//! The one place where errors become HTTP responses: `application/problem+json` (RFC 9457),
//! `{"type","title","status","detail","errors":[{"field","message"}]}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use posthorn_core::Invalid;
use posthorn_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("no {0} with that id")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of {0} bytes (set with --body-limit)")]
    TooLarge(usize),
    #[error("no route {0}; the API is described at /docs and /openapi.json")]
    NoRoute(String),
    #[error("{method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("send the body as JSON, with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the database is unavailable; try again")]
    Unavailable(StoreError),
    /// A stored row that cannot be read: the server's fault, not a passing one (a 500, logged
    /// and counted as an alarm; trying again would not help).
    #[error("a stored record could not be read; the operator has been alerted")]
    Corrupt(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // A limit reached is the caller's to hear about, not database trouble.
            StoreError::Quota(why) => ApiError::Conflict(why),
            e @ StoreError::Corrupt(_) => ApiError::Corrupt(e),
            e => ApiError::Unavailable(e),
        }
    }
}

pub use posthorn_wire::api::Problem;

impl ApiError {
    /// The HTTP status this error answers with (front doors that shape errors their own way use
    /// it with the error's message).
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            ),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            Self::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid request",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Corrupt(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        match &self {
            Self::Unavailable(e) => tracing::error!(error = %e, "request failed on the database"),
            Self::Corrupt(e) => {
                tracing::error!(error = %e, "a stored row could not be read: the database holds what Posthorn did not write");
                metrics::counter!(posthorn_core::metric::STORED_DATA_UNREADABLE).increment(1);
            }
            _ => {}
        }
        let errors = match &self {
            Self::Invalid(Invalid(errors)) => errors.clone(),
            _ => Vec::new(),
        };
        let detail = match &self {
            Self::Invalid(Invalid(errors)) if errors.len() == 1 => {
                let e = &errors[0];
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            }
            Self::Invalid(Invalid(errors)) => {
                format!("{} fields are invalid; see errors", errors.len())
            }
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("urn:posthorn:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::MethodNotAllowed { allowed, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(allowed) {
                response.headers_mut().insert(header::ALLOW, v);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The database is away: a client may try again shortly (nothing was stored).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

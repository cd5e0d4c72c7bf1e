//! wazo-webhookd's error shape: `{"message","error_id","details","timestamp"}`, and a 400 for
//! every validation failure.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use posthorn_core::time::now_ms;
use serde_json::{json, Value};

use super::wire::WazoErrorBody;
use crate::error::ApiError;

/// A wazo-webhookd error.
pub(crate) struct WazoError {
    pub status: StatusCode,
    pub message: String,
    pub error_id: &'static str,
    pub details: Value,
}

impl IntoResponse for WazoError {
    fn into_response(self) -> Response {
        let body = WazoErrorBody {
            message: self.message,
            error_id: self.error_id,
            details: self.details,
            timestamp: now_ms() as f64 / 1000.0,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ApiError> for WazoError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let (error_id, details) = match &e {
            ApiError::Invalid(invalid) => (
                "invalid-data",
                Value::Object(
                    invalid
                        .0
                        .iter()
                        .map(|f| {
                            (
                                f.field.clone(),
                                json!({"message": f.message, "constraint_id": "invalid"}),
                            )
                        })
                        .collect(),
                ),
            ),
            ApiError::NotFound(_) => ("not-found", json!({})),
            ApiError::Unauthorized => ("unauthorized", json!({})),
            _ => ("error", json!({})),
        };
        // wazo answers every validation failure with a 400.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        WazoError {
            status,
            message: e.to_string(),
            error_id,
            details,
        }
    }
}

impl From<posthorn_store::StoreError> for WazoError {
    fn from(e: posthorn_store::StoreError) -> Self {
        WazoError::from(ApiError::from(e))
    }
}

impl From<posthorn_core::Invalid> for WazoError {
    fn from(e: posthorn_core::Invalid) -> Self {
        WazoError::from(ApiError::Invalid(e))
    }
}

pub(crate) fn not_found() -> WazoError {
    WazoError {
        status: StatusCode::NOT_FOUND,
        message: "No such subscription".into(),
        error_id: "not-found",
        details: json!({"resource": "subscription"}),
    }
}

pub(crate) fn unauthorized() -> WazoError {
    WazoError {
        status: StatusCode::UNAUTHORIZED,
        message: "Unauthorized".into(),
        error_id: "unauthorized",
        details: json!({}),
    }
}

pub(crate) fn forbidden(message: &str) -> WazoError {
    WazoError {
        status: StatusCode::FORBIDDEN,
        message: message.into(),
        error_id: "forbidden",
        details: json!({}),
    }
}

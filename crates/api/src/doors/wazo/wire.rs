//! What the wazo-webhookd door answers, typed as wazo-webhookd's `api.yml` describes it, so that
//! `/openapi.json` and `/docs` show each field (and the handlers cannot drift from it).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A subscription as wazo-webhookd shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoSubscription {
    /// The subscription's id (the one `/v1` shows).
    pub uuid: String,
    pub name: String,
    /// `http`, or another delivery service Posthorn runs.
    pub service: String,
    /// An `http` subscription's `url`, `method`, `verify_certificate` and, when it has one,
    /// `body` and `content_type` (all strings, as wazo gives them; a URL's password masked);
    /// another service's own config.
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    pub events: Vec<String>,
    /// Only this user's events (the bus message's `user_uuid:<uuid>` header).
    pub events_user_uuid: Option<String>,
    /// Only the events of this wazo (the message's `origin_uuid`).
    pub events_wazo_uuid: Option<String>,
    /// The user who made it through `users/me`.
    pub owner_user_uuid: Option<String>,
    /// The tenant (application) that owns it.
    pub owner_tenant_uuid: String,
    pub metadata: BTreeMap<String, String>,
}

/// A list of subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoSubscriptionList {
    pub total: usize,
    pub items: Vec<WazoSubscription>,
}

/// The delivery services, by name (each an empty object, as wazo-webhookd answers).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoServices {
    #[schema(value_type = Object)]
    pub services: BTreeMap<String, Map<String, Value>>,
}

/// One attempt of a subscription, as wazo-webhookd logs it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoLog {
    /// The delivery's id and the attempt's number: `dlv_….N`.
    pub uuid: String,
    /// `success`; `failure` (will be retried); `error` (final).
    #[schema(pattern = "^(success|failure|error)$")]
    pub status: &'static str,
    /// This attempt's number, from 1.
    pub attempts: i64,
    pub max_attempts: u32,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub ended_at: String,
    pub event: WazoLogEvent,
    pub detail: WazoLogDetail,
}

/// The event an attempt carried.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoLogEvent {
    pub name: String,
    pub origin_uuid: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// What the attempt sent and got, as its service logs it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoLogDetail {
    #[schema(value_type = Object)]
    pub request: Value,
    #[schema(value_type = Option<Object>)]
    pub response: Option<Value>,
    pub error: Option<String>,
}

/// A page of a subscription's logs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoLogList {
    /// Every attempt logged for the subscription (from `from_date`, if given).
    pub total: u64,
    pub items: Vec<WazoLog>,
}

/// One part of the daemon's status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoCheck {
    /// `ok` or `fail`.
    #[schema(pattern = "^(ok|fail)$")]
    pub status: &'static str,
    /// Why it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl WazoCheck {
    pub(crate) fn ok() -> Self {
        WazoCheck {
            status: "ok",
            detail: None,
        }
    }
    pub(crate) fn fail(detail: String) -> Self {
        WazoCheck {
            status: "fail",
            detail: Some(detail),
        }
    }
}

/// The daemon's status, as wazo-webhookd reports it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoStatus {
    pub bus_consumer: WazoCheck,
    pub master_tenant: WazoCheck,
    pub rest_api: WazoCheck,
    pub database: WazoCheck,
}

/// A message source the daemon consumes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoSource {
    /// `amqp` or `nats`.
    pub kind: String,
    pub name: String,
}

/// The sources the daemon consumes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoBus {
    pub sources: Vec<WazoSource>,
}

/// The REST API's settings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoRestApi {
    /// How long an access token from `/oauth/token` lives.
    pub token_ttl_s: u64,
}

/// What the daemon runs with (no secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoConfig {
    pub debug: bool,
    pub enabled_services: Vec<String>,
    pub bus: WazoBus,
    pub rest_api: WazoRestApi,
}

/// wazo-webhookd's error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WazoErrorBody {
    pub message: String,
    /// `invalid-data`, `not-found`, `unauthorized`, `forbidden` or `error`.
    pub error_id: &'static str,
    /// For `invalid-data`, each field at fault: `{"FIELD": {"message", "constraint_id"}}`.
    #[schema(value_type = Object)]
    pub details: Value,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

//! The API's wire types: what the server answers (`*View`, [`Page`], [`Problem`]) and the
//! request bodies that are not domain types of their own (a subscription is written as a
//! [`SubscriptionSpec`], an event as a [`PublishRequest`]). The server serializes them, the
//! client reads them back: one definition, so the two cannot drift apart.

use std::collections::BTreeMap;

use posthorn_core::subscription::{DisabledReason, Order, RetrySpec, SubscriptionSpec};
use posthorn_core::validation::FieldError;
use posthorn_core::{AttemptOutcome, DeliveryId, DeliveryStatus, SubscriptionId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;

pub use posthorn_core::event::PublishRequest;

/// A page of a list: `items` newest first, and the cursor of the next page (`?cursor=`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An error, as RFC 9457 problem+json.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:posthorn:problem:{slug}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The fields at fault, for a 422.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// `active` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    Active,
    Disabled,
}

/// A subscription as the API shows it: what its owner wrote, and what the service keeps.
///
/// The written part is spelled out rather than flattened from [`SubscriptionSpec`] (serde
/// cannot read a flattened struct that refuses unknown fields); [`SubscriptionView::spec`] and
/// the server's constructor destructure the spec whole, so a field added there fails to
/// compile until it is added here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    pub id: SubscriptionId,
    pub owner: String,
    pub name: String,
    pub service: String,
    #[schema(value_type = Object)]
    pub config: Value,
    pub events: Vec<String>,
    pub filter: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub enabled: bool,
    pub retry: Option<RetrySpec>,
    pub rate_limit_per_s: Option<u32>,
    pub max_in_flight: u32,
    pub ordered: Order,
    /// With `ordered: "key"`: the path of the event's ordering key (else the event's
    /// `ordering_key`).
    #[serde(default)]
    pub order_key: Option<String>,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<DisabledReason>,
    /// The signing secret: shown on create and on rotation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub circuit: CircuitView,
    /// Since when every attempt has failed (RFC 3339): what `--disable-after-days` counts from;
    /// null while it succeeds.
    #[serde(default)]
    pub failing_since: Option<String>,
    /// When a credential in the config stops working (RFC 3339): a client certificate's expiry.
    /// Absent when the config holds none that expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_expires_at: Option<String>,
}

/// What the service keeps of a subscription beside its spec.
#[derive(Debug)]
pub struct SubscriptionState {
    pub id: SubscriptionId,
    pub owner: String,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<DisabledReason>,
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub circuit: CircuitView,
    pub failing_since: Option<String>,
    pub credential_expires_at: Option<String>,
}

impl SubscriptionView {
    pub fn new(spec: SubscriptionSpec, state: SubscriptionState) -> Self {
        let SubscriptionSpec {
            name,
            service,
            config,
            events,
            filter,
            metadata,
            enabled,
            retry,
            rate_limit_per_s,
            max_in_flight,
            ordered,
            order_key,
        } = spec;
        let SubscriptionState {
            id,
            owner,
            status,
            disabled_reason,
            secret,
            created_at,
            updated_at,
            circuit,
            failing_since,
            credential_expires_at,
        } = state;
        Self {
            id,
            owner,
            name,
            service,
            config,
            events,
            filter,
            metadata,
            enabled,
            retry,
            rate_limit_per_s,
            max_in_flight,
            ordered,
            order_key,
            status,
            disabled_reason,
            secret,
            created_at,
            updated_at,
            circuit,
            failing_since,
            credential_expires_at,
        }
    }

    /// The part its owner writes: what `PUT` takes back.
    pub fn spec(&self) -> SubscriptionSpec {
        SubscriptionSpec {
            name: self.name.clone(),
            service: self.service.clone(),
            config: self.config.clone(),
            events: self.events.clone(),
            filter: self.filter.clone(),
            metadata: self.metadata.clone(),
            enabled: self.enabled,
            retry: self.retry.clone(),
            rate_limit_per_s: self.rate_limit_per_s,
            max_in_flight: self.max_in_flight,
            ordered: self.ordered,
            order_key: self.order_key.clone(),
        }
    }
}

/// A read of a poll subscription's feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Feed {
    /// The entries not yet acknowledged after the cursor asked for, in publish order.
    pub items: Vec<FeedItem>,
    /// The cursor after the last entry (what to acknowledge, or to read `after`); the one asked
    /// for when there is none; null when neither.
    pub cursor: Option<String>,
}

/// One entry of a feed: the webhook that would have been pushed, signed per Standard Webhooks
/// when read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedItem {
    /// This entry's place: acknowledge up to it, or read after it.
    pub cursor: String,
    pub delivery_id: DeliveryId,
    pub event_name: String,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`: verify `body` with them.
    pub headers: BTreeMap<String, String>,
    /// The event's envelope, the exact bytes signed.
    pub body: String,
}

/// `POST /v1/subscriptions/{id}/feed/ack`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Every entry up to this cursor is acknowledged.
    #[schema(pattern = "^[0-9]{1,18}$")]
    pub cursor: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Acknowledged {
    /// How many entries this acknowledged (those acknowledged before are not counted again).
    pub acknowledged: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CircuitState {
    Closed,
    /// Its backlog waits until `until`, when one probe goes.
    Open,
    /// The pause is over and the probe's outcome not yet known.
    Probing,
}

/// The subscription's circuit breaker as the dispatchers last set it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CircuitView {
    /// A retry, recover or enable closes it.
    pub state: CircuitState,
    pub until: Option<String>,
    /// Failed attempts in a row when it opened.
    pub failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestSent {
    pub event_id: String,
    pub delivery_id: DeliveryId,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// RFC 3339: dead deliveries created since then are queued again.
    pub since: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Recovered {
    pub requeued: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub number: i64,
    pub started_at: String,
    pub duration_ms: i64,
    /// `{"method","url","headers","body"}`.
    #[schema(value_type = Object)]
    pub request: Value,
    /// `{"status","headers","body"}` (body up to 16 KiB), or null when no response came.
    #[schema(value_type = Option<Object>)]
    pub response: Option<Value>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_name: String,
    pub subscription_id: SubscriptionId,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the next attempt is due; null unless pending, and for a pulled delivery (it is
    /// never attempted: its consumer reads it).
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Its ordering key, when its subscription orders by key (`ordered: "key"`): read from the
    /// event at the subscription's `order_key` path, or the publisher's `ordering_key`; a key
    /// longer than 256 bytes is shown as `sha256:` and its digest. Absent when the event had
    /// none: such a delivery waits for no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// Why a pending delivery waits past its schedule: its subscription's open circuit (a
    /// retry, recover or enable sends it now), an earlier delivery of its ordered line, its
    /// subscription being disabled, or a consumer that has yet to pull it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Its latest attempt in brief: how it ended, how long it took, the HTTP status of the
    /// answer (absent before the first attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<LastAttemptView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LastAttemptView {
    pub outcome: AttemptOutcome,
    pub duration_ms: i64,
    /// The HTTP status the receiver answered; absent when it did not answer, or for a service
    /// other than `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeldReason {
    /// The subscription's circuit opened after failed attempts in a row; one probe goes at
    /// `until`.
    CircuitOpen,
    /// The subscription is ordered (`ordered: true`, or `"key"` and this delivery has a key): it
    /// waits behind `behind`, the first pending delivery of its line, next attempted at `until`.
    Ordered,
    /// The subscription is disabled: it goes when the subscription is enabled.
    SubscriptionDisabled,
    /// The subscription is pulled (the `poll` service): it waits in the feed until its consumer
    /// acknowledges it.
    Pulled,
}

/// Why a pending delivery is not attempted at its schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Held {
    pub reason: HeldReason,
    /// Until when, where that is known: when the circuit's probe goes (`circuit_open`), when
    /// the delivery ahead is next attempted (`ordered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The delivery it waits behind (`ordered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<DeliveryId>,
}

/// What `POST /v1/events` answers for one event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub name: String,
    pub occurred_at: String,
    /// How many deliveries the event made.
    pub deliveries: u64,
    /// Present and true when the id had been published before: nothing new was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptedBatch {
    pub items: Vec<Accepted>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    /// A delivery status (`pending`, `succeeded`, `dead`, `cancelled`).
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    pub origin: Option<String>,
    pub tenant: Option<String>,
    /// Routing attributes beside the data (empty when it has none).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    pub occurred_at: String,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliverySummary>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeRequest {
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema 2020-12 for the event's `data` (an object, or `true` or `false`), or null for
    /// none.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub examples: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventTypeView {
    pub name: String,
    pub description: Option<String>,
    /// Its JSON Schema (an object, or `true` or `false`), or null.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    pub examples: Vec<Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// 1–128 characters.
    pub name: String,
    /// What its tokens may do: `subscriptions`, `publish`.
    pub scopes: Vec<String>,
}

/// `POST /v1/applications/{id}/portal-link`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortalLink {
    /// Opens the dashboard as the application until `expires_at`; its ticket is in the
    /// fragment, which browsers do not send to servers or proxies.
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplicationView {
    pub id: String,
    pub name: String,
    pub client_id: String,
    /// Shown on create and on rotation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/stats/deliveries`: attempts over the last hour (by minute) or day (by half hour).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryStats {
    /// `hour` or `day`.
    pub window: String,
    /// The width of each bucket, in seconds.
    pub bucket_s: u32,
    /// Oldest first; every bucket of the window, empty ones included.
    pub buckets: Vec<StatsBucket>,
    pub totals: OutcomeCounts,
    /// Attempt durations over the whole window.
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsBucket {
    /// The bucket's start (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub outcomes: OutcomeCounts,
    pub latency_ms: Percentiles,
}

/// Attempts by outcome.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct OutcomeCounts {
    pub success: u64,
    /// Failed, and retried later.
    pub retry: u64,
    /// Failed for good: the delivery went dead.
    pub r#final: u64,
}

/// Duration percentiles, each the upper bound of the histogram class it falls in (5, 10, 25, 50,
/// 100, 250, 500 ms, 1, 2.5, 5, 10, 30 s; a figure above 30 s reads 30000); null without attempts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
}

/// One source's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceStatus {
    /// `amqp` or `nats`.
    pub kind: String,
    /// The source's name: its queue, or its stream and consumer.
    pub name: String,
    /// Connected and consuming.
    pub connected: bool,
    /// The last error, while it lasts (cleared once connected again).
    pub last_error: Option<String>,
    /// Messages stored as events (a redelivered one counts again; it makes no second event).
    pub taken: u64,
    /// Messages refused for good (not JSON, no usable name, failing their event type's schema).
    pub rejected: u64,
}

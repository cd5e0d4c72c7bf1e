//! What operators watch: `GET /metrics` (Prometheus text) and one log line per request.
//!
//! The counters and histograms are recorded where things happen, through the `metrics` facade
//! (the binary installs the Prometheus recorder); a scrape adds what is read at that moment: the
//! delivery queue from the database, and the per-subscription attempt counts with a bounded label
//! set (the subscriptions with the most failures by id, the rest as one series).

use foldhash::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Instant;

use metrics::{Counter, Histogram};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use posthorn_store::tally::{Counts, SubscriptionTally};

use crate::auth::Credentials;
use crate::error::ApiError;
use crate::AppState;

/// What `/metrics` serves from.
pub struct Metrics {
    /// The installed recorder's handle: renders what the facade recorded.
    pub handle: PrometheusHandle,
    pub tally: SubscriptionTally,
    /// How many subscriptions get a series of their own.
    pub top_subscriptions: usize,
    /// When set, a scrape must carry `Authorization: Bearer` with it.
    pub token: Option<String>,
}

/// The header that carries a request's id, taken from the request when it has a usable one.
pub const REQUEST_ID: &str = "x-request-id";

/// Prometheus text (format 0.0.4): events received, attempts by service and outcome, latency
/// histograms, the delivery queue read now, per-subscription failures (bounded). Open unless the
/// server runs with `--metrics-token`, which a scrape then sends as a bearer token.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json")),
    security((), ("bearer" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(m) = &state.metrics else {
        return ApiError::NoRoute("/metrics".into()).into_response();
    };
    if let Some(token) = &m.token {
        let given = match Credentials::from_headers(&headers) {
            Some(Credentials::Bearer(t)) => t,
            _ => String::new(),
        };
        if !crate::auth::same(given.as_bytes(), token.as_bytes()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    match state.store.queue_depth().await {
        Ok(q) => {
            metrics::gauge!(posthorn_core::metric::STORE_UP).set(1.0);
            metrics::gauge!(posthorn_core::metric::QUEUE_PENDING).set(q.pending as f64);
            metrics::gauge!(posthorn_core::metric::QUEUE_DUE).set(q.due as f64);
            metrics::gauge!(posthorn_core::metric::QUEUE_LEASE_EXPIRED).set(q.lease_expired as f64);
            metrics::gauge!(posthorn_core::metric::QUEUE_HELD, "by" => "circuit")
                .set(q.held_by_circuit as f64);
        }
        Err(e) => {
            // The rest is still worth scraping; the queue gauges keep their last values.
            tracing::warn!(error = %e, "metrics: the queue cannot be read");
            metrics::gauge!(posthorn_core::metric::STORE_UP).set(0.0);
        }
    }
    match state.store.queue_table().await {
        Ok(Some(t)) => {
            let name = posthorn_core::metric::QUEUE_TABLE_TUPLES;
            metrics::gauge!(name, "state" => "live").set(t.live as f64);
            metrics::gauge!(name, "state" => "dead").set(t.dead as f64);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the deliveries table's counts cannot be read")
        }
    }
    match state.store.feed_lag().await {
        Ok(lag) => {
            metrics::gauge!(posthorn_core::metric::FEED_WAITING).set(lag.waiting as f64);
            let age = lag.oldest.map_or(0.0, |t| {
                (posthorn_core::time::now_ms() - t).max(0) as f64 / 1000.0
            });
            metrics::gauge!(posthorn_core::metric::FEED_OLDEST_WAITING).set(age);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the feeds cannot be read"),
    }
    let mut body = m.handle.render();
    per_subscription(&mut body, &m.tally, m.top_subscriptions);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn per_subscription(out: &mut String, tally: &SubscriptionTally, top: usize) {
    let shown = tally.top_failing(top);
    let _ = writeln!(
        out,
        "# HELP posthorn_subscription_attempts_total Attempts per subscription since the process \
         started: the {top} with the most failures by id, every other summed as \
         subscription=\"_other\" (which can go down when one of them joins the top)."
    );
    let _ = writeln!(out, "# TYPE posthorn_subscription_attempts_total counter");
    let mut line = |id: &str, c: Counts| {
        let id = label(id);
        let _ = writeln!(
            out,
            "posthorn_subscription_attempts_total{{subscription=\"{id}\",outcome=\"failed\"}} {}",
            c.failed
        );
        let _ = writeln!(
            out,
            "posthorn_subscription_attempts_total{{subscription=\"{id}\",outcome=\"succeeded\"}} {}",
            c.succeeded
        );
    };
    for (id, c) in &shown.top {
        line(id, *c);
    }
    line("_other", shown.others);
}

/// A label value as the text format escapes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One line per request, after it is answered: its id (also sent back as `X-Request-Id`),
/// method, route (the template, so that no id, token or query is logged), status and duration
/// (at DEBUG for the probes and `/metrics` that answer well); and the request counters.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| posthorn_core::id::new_id("req"));
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let mut response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let duration_ms = elapsed.as_micros() as f64 / 1000.0;
    if status.is_server_error() {
        tracing::warn!(target: "posthorn::request", request_id = %id, method = %method, route = %route, status = status.as_u16(), duration_ms, "request");
    } else if matches!(route, "/healthz" | "/readyz" | "/metrics") {
        // Probes and scrapes come every few seconds: at DEBUG, unless they fail.
        tracing::debug!(target: "posthorn::request", request_id = %id, method = %method, route = %route, status = status.as_u16(), duration_ms, "request");
    } else {
        tracing::info!(target: "posthorn::request", request_id = %id, method = %method, route = %route, status = status.as_u16(), duration_ms, "request");
    }
    route_meters(route, |m| {
        m.count(method, status_class(status));
        m.duration.record(elapsed.as_secs_f64());
    });
    response
}

/// A route's request metrics, their handles kept (a lookup in the recorder hashes the name and
/// every label, and copies the route, on each request).
struct RouteMeters {
    route: String,
    duration: Histogram,
    requests: Mutex<HashMap<(&'static str, &'static str), Counter>>,
}

impl RouteMeters {
    fn count(&self, method: &'static str, status: &'static str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests
            .entry((method, status))
            .or_insert_with(|| {
                metrics::counter!(posthorn_core::metric::HTTP_REQUESTS, "method" => method, "route" => self.route.clone(), "status" => status)
            })
            .increment(1);
    }
}

fn route_meters(route: &str, f: impl FnOnce(&RouteMeters)) {
    static ROUTES: OnceLock<RwLock<HashMap<String, RouteMeters>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(RwLock::default);
    if let Some(m) = routes.read().unwrap_or_else(|p| p.into_inner()).get(route) {
        return f(m);
    }
    let mut all = routes.write().unwrap_or_else(|p| p.into_inner());
    let m = all.entry(route.to_owned()).or_insert_with(|| RouteMeters {
        route: route.to_owned(),
        duration: metrics::histogram!(posthorn_core::metric::HTTP_REQUEST_DURATION, "route" => route.to_owned()),
        requests: Mutex::default(),
    });
    f(m)
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A request id a client sent is kept when it is short and plain (it goes into logs).
fn usable_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

//! Operating it: `/metrics` read with a Prometheus text parser, its counters moving with
//! traffic and its per-subscription series bounded; one log line per request with its id.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_parse::{Sample, Value as Metric};
use serde_json::json;

use crate::util::{
    scrape, value, wait_for, Answer, Backend, Receiver, Server, ServerOptions, TOKEN,
};

async fn metrics_move_with_traffic(backend: Backend) {
    // Per-subscription series (tenants' ids) only when asked for.
    let plain = Server::start(backend).await;
    let sub = plain
        .api()
        .subscribe("https://example.com/h", &["x"], json!({}))
        .await;
    let (_, scraped) = scrape(&plain.base, None).await;
    assert!(
        scraped
            .unwrap()
            .samples
            .iter()
            .all(|s| s.labels.get("subscription").is_none_or(|id| id == "_other")),
        "no subscription id by default ({})",
        sub["id"]
    );
    let server = Server::start_with(ServerOptions {
        extra: vec!["--metrics-top-subscriptions".into(), "20".into()],
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/fail", Answer::status(500));
    let api = server.api();
    let ok = api
        .subscribe(&receiver.url, &["order.paid"], json!({}))
        .await;
    let failing = api
        .subscribe(
            &receiver.at("/fail"),
            &["order.paid"],
            json!({"retry": {"schedule_s": []}}),
        )
        .await;
    let (_, before) = scrape(&server.base, None).await;
    let before = before.unwrap();
    assert_eq!(
        value(
            &before,
            "posthorn_events_received_total",
            &[("source", "http")]
        ),
        0.0
    );
    assert_eq!(value(&before, "posthorn_store_up", &[]), 1.0);

    for i in 0..3 {
        api.publish(json!({"name": "order.paid", "data": {"i": i}}))
            .await;
    }
    receiver.wait_hits(6, Duration::from_secs(10)).await;
    let failing_id = failing["id"].as_str().unwrap();
    let ok_id = ok["id"].as_str().unwrap();
    // Outcomes are counted as attempts end; wait until the six are.
    let after = wait_for(Duration::from_secs(10), "the attempts counted", || async {
        let (_, s) = scrape(&server.base, None).await;
        let s = s.unwrap();
        let count = |outcome: &str| {
            value(
                &s,
                "posthorn_attempts_total",
                &[("service", "http"), ("outcome", outcome)],
            )
        };
        // Both kinds: an attempt's outcome is counted after its receiver answered.
        (count("final") == 3.0 && count("success") == 3.0).then_some(s)
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels);
    assert_eq!(
        v("posthorn_events_received_total", &[("source", "http")]),
        3.0
    );
    assert_eq!(
        v(
            "posthorn_attempts_total",
            &[("service", "http"), ("outcome", "success")]
        ),
        3.0
    );
    assert_eq!(
        v("posthorn_attempt_duration_seconds", &[("service", "http")]),
        6.0
    );
    assert!(
        v(
            "posthorn_http_requests_total",
            &[("route", "/v1/events"), ("status", "2xx")]
        ) >= 3.0
    );
    assert!(v("posthorn_group_commit_rows", &[]) >= 1.0);
    assert_eq!(v("posthorn_queue_due", &[]), 0.0);
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "posthorn_queue_pending"));
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "posthorn_attempts_in_flight"));
    // The failing subscription has a series of its own; the healthy one is summed in the rest.
    assert_eq!(
        v(
            "posthorn_subscription_attempts_total",
            &[("subscription", failing_id), ("outcome", "failed")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "posthorn_subscription_attempts_total",
            &[("subscription", ok_id), ("outcome", "succeeded")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "posthorn_subscription_attempts_total",
            &[("subscription", "_other"), ("outcome", "succeeded")]
        ),
        3.0
    );
    // A histogram, with its buckets: not a summary.
    let hist = after
        .samples
        .iter()
        .find(|s| s.metric == "posthorn_attempt_duration_seconds")
        .unwrap();
    assert!(matches!(&hist.value, Metric::Histogram(b) if b.len() > 5));
}

async fn metrics_can_require_a_token(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        extra: vec!["--metrics-token".into(), "scrape-secret-123".into()],
        ..ServerOptions::on(backend)
    })
    .await;
    assert_eq!(scrape(&server.base, None).await.0, 401);
    assert_eq!(scrape(&server.base, Some("wrong")).await.0, 401);
    // The admin token is not the metrics token.
    assert_eq!(scrape(&server.base, Some(TOKEN)).await.0, 401);
    let (status, scraped) = scrape(&server.base, Some("scrape-secret-123")).await;
    assert_eq!(status, 200);
    assert_eq!(value(&scraped.unwrap(), "posthorn_store_up", &[]), 1.0);
    assert!(!server.log().contains("scrape-secret-123"));
}

async fn every_request_is_logged_once_with_its_id(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api.get("/v1/subscriptions/sub_nothing_here").await;
    assert_eq!(r.status, 404);
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "{id}");
    // A usable id from the caller is kept, a hostile one replaced.
    let given = reqwest::Client::new()
        .get(format!("{}/v1/services", server.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc.123");
    // Probes come every few seconds: logged at DEBUG, not at INFO.
    let probe = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.headers()["x-request-id"], "probe-1");
    let hostile = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "a\"b c")
        .send()
        .await
        .unwrap();
    assert!(hostile.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let line = wait_for(Duration::from_secs(5), "the request's log line", || async {
        server
            .log()
            .lines()
            .find(|l| l.contains(&id))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("route=/v1/subscriptions/{id}"), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    assert!(line.contains("duration_ms="), "{line}");
    assert!(
        !line.contains("sub_nothing_here"),
        "the path's id is not logged: {line}"
    );
    assert_eq!(server.log().matches(&id).count(), 1);
    assert!(server.log().contains("request_id=trace-abc.123"));
    assert!(!server.log().contains("probe-1"), "{}", server.log());
    assert!(!server.log().contains(TOKEN), "the token is never logged");
}

/// JSON logs: one object per line, the request's fields as fields.
#[tokio::test]
async fn json_request_logs_are_objects() {
    let server = Server::start_with(ServerOptions {
        extra: vec!["--log-format".into(), "json".into()],
        ..ServerOptions::default()
    })
    .await;
    let r = server.api().get("/v1/subscriptions").await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let line = wait_for(Duration::from_secs(5), "the request's log line", || async {
        server
            .log()
            .lines()
            .find(|l| l.contains(&id))
            .map(str::to_owned)
    })
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["fields"]["route"], "/v1/subscriptions");
    assert_eq!(entry["fields"]["status"], 200);
    assert_eq!(entry["fields"]["request_id"], id.as_str());
}

/// 10,000 subscriptions that all failed make 20 series of their own and one for the rest, not
/// 10,000; the three that failed most are the first.
#[tokio::test]
async fn per_subscription_series_stay_bounded() {
    let server = Server::start_with(ServerOptions {
        extra: vec!["--metrics-top-subscriptions".into(), "20".into()],
        ..ServerOptions::default()
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(500));
    let api = server.api();
    let url = receiver.url.clone();
    let created: Vec<String> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let api = api.clone();
            let url = url.clone();
            async move {
                let events: &[&str] = if i < 3 {
                    &["spread", "worst"]
                } else {
                    &["spread"]
                };
                let s = api
                    .subscribe(&url, events, json!({"retry": {"schedule_s": []}}))
                    .await;
                s["id"].as_str().unwrap().to_owned()
            }
        })
        .buffered(16)
        .collect()
        .await;
    api.publish(json!({"name": "spread", "data": {}})).await;
    for _ in 0..2 {
        api.publish(json!({"name": "worst", "data": {}})).await;
    }
    let scraped = wait_for(
        Duration::from_secs(120),
        "10,006 attempts counted",
        || async {
            let (_, s) = scrape(&server.base, None).await;
            let s = s.unwrap();
            let n = value(
                &s,
                "posthorn_attempts_total",
                &[("service", "http"), ("outcome", "final")],
            );
            (n == 10_006.0).then_some(s)
        },
    )
    .await;
    let per_sub: Vec<&Sample> = scraped
        .samples
        .iter()
        .filter(|s| s.metric == "posthorn_subscription_attempts_total")
        .collect();
    let subs: HashMap<&str, f64> = per_sub
        .iter()
        .filter(|s| s.labels.get("outcome") == Some("failed"))
        .map(|s| {
            let v = match s.value {
                Metric::Counter(v) | Metric::Untyped(v) => v,
                _ => panic!("a counter"),
            };
            (s.labels.get("subscription").unwrap(), v)
        })
        .collect();
    assert_eq!(subs.len(), 21, "20 subscriptions and the rest");
    assert_eq!(per_sub.len(), 42);
    for worst in &created[..3] {
        assert_eq!(subs[worst.as_str()], 3.0, "{worst} failed three times");
    }
    assert_eq!(subs["_other"], 10_006.0 - 9.0 - 17.0);
}

both_backends!(
    metrics_move_with_traffic,
    metrics_can_require_a_token,
    every_request_is_logged_once_with_its_id
);

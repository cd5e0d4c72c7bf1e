//! Delivery in the real world: endpoints that are gone, ask to wait, hang, or must be served in
//! order; fairness between subscriptions; recovery; the service's own events; auto-disable and
//! retention.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{wait_for, Answer, Backend, Receiver, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

async fn first_delivery(api: &crate::util::Api, sub: &str) -> String {
    wait_for(WAIT, "a delivery", || async {
        api.deliveries(sub)
            .await
            .last()
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn a_410_deletes_the_subscription_and_says_so(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_at(
        "/gone",
        Answer::status(410).after(Duration::from_millis(300)),
    );
    let api = server.api();
    let watcher = api
        .subscribe(
            &receiver.at("/events"),
            &["posthorn.subscription.deleted"],
            json!({}),
        )
        .await;
    let gone = api
        .subscribe(
            &receiver.at("/gone"),
            &["e"],
            json!({"max_in_flight": 1, "config": {"url": receiver.at("/gone")}}),
        )
        .await;
    api.publish(json!({"name": "e", "data": {"n": 1}})).await;
    api.publish(json!({"name": "e", "data": {"n": 2}})).await;
    let hit = wait_for(WAIT, "posthorn.subscription.deleted", || async {
        receiver.hits_at("/events").into_iter().next()
    })
    .await;
    assert_eq!(
        hit.header("posthorn-event"),
        "posthorn.subscription.deleted"
    );
    assert_eq!(hit.json()["data"]["subscription_id"], gone["id"]);
    crate::util::verify(watcher["secret"].as_str().unwrap(), &hit).unwrap();

    let gone_id = id(&gone);
    assert_eq!(
        api.get(&format!("/v1/subscriptions/{gone_id}"))
            .await
            .status,
        404
    );
    // Its log stays readable: the 410, and the delivery that was waiting, cancelled.
    let deliveries = api.deliveries(&gone_id).await;
    let statuses: Vec<&str> = deliveries
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(
        statuses.contains(&"dead") && statuses.contains(&"cancelled"),
        "{statuses:?}"
    );
    let dead = deliveries.iter().find(|d| d["status"] == "dead").unwrap();
    let d = api.get(&format!("/v1/deliveries/{}", id(dead))).await.body;
    assert_eq!(d["attempt_log"][0]["response"]["status"], 410);
    assert_eq!(d["attempt_log"][0]["outcome"], "final");
    assert_eq!(receiver.hits_at("/gone").len(), 1);
}

async fn retry_after_is_honoured_over_the_schedule(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([
        Answer::status(429).header("retry-after", "3"),
        Answer::status(204),
    ]);
    let api = server.api();
    api.subscribe(&receiver.url, &["e"], json!({"retry": {"schedule_s": [1]}}))
        .await;
    api.publish(json!({"name": "e", "data": {}})).await;
    let hits = receiver.wait_hits(2, WAIT).await;
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(2900),
        "waited {gap:?}, not the 3 s asked"
    );
    assert!(gap < Duration::from_secs(6), "waited {gap:?}");
    let d = api
        .delivery_with_status(hits[0].header("posthorn-delivery"), "succeeded", WAIT)
        .await;
    assert_eq!(d["attempt_log"][0]["response"]["status"], 429);
    assert_eq!(d["attempt_log"][0]["outcome"], "retry");
}

async fn a_hanging_endpoint_does_not_slow_a_healthy_one(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/hang", Answer::status(204).after(Duration::from_secs(30)));
    let api = server.api();
    api.subscribe(
        &receiver.at("/hang"),
        &["slow"],
        json!({"config": {"url": receiver.at("/hang"), "timeout_ms": 2000}}),
    )
    .await;
    api.subscribe(
        &receiver.at("/fast"),
        &["fast"],
        json!({"config": {"url": receiver.at("/fast")}}),
    )
    .await;
    let mut sent = HashMap::new();
    for i in 0..60 {
        api.publish(json!({"name": "slow", "data": {"i": i}})).await;
        let e = api.publish(json!({"name": "fast", "data": {"i": i}})).await;
        sent.insert(id(&e), Instant::now());
    }
    let hits = wait_for(WAIT, "60 healthy deliveries", || async {
        let h = receiver.hits_at("/fast");
        (h.len() >= 60).then_some(h)
    })
    .await;
    let mut latencies: Vec<Duration> = hits
        .iter()
        .map(|h| h.at.saturating_duration_since(sent[h.header("webhook-id")]))
        .collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    assert!(p99 < Duration::from_secs(1), "healthy p99 {p99:?}");
    // The hanging one never had more than its default 10 attempts in flight.
    assert!(
        receiver.hits_at("/hang").len() <= 10 + 10,
        "{}",
        receiver.hits_at("/hang").len()
    );
}

async fn max_in_flight_is_never_exceeded(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(300)));
    let api = server.api();
    api.subscribe(&receiver.url, &["e"], json!({"max_in_flight": 2}))
        .await;
    for i in 0..10 {
        api.publish(json!({"name": "e", "data": {"i": i}})).await;
    }
    receiver.wait_hits(10, WAIT).await;
    assert_eq!(receiver.most_in_progress(), 2);
}

async fn a_rate_limit_spreads_deliveries(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(
        &receiver.url,
        &["e"],
        json!({"rate_limit_per_s": 5, "max_in_flight": 100}),
    )
    .await;
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"name": "e", "data": {"i": i}}))
        .collect();
    assert_eq!(
        api.post("/v1/events", Value::Array(batch)).await.status,
        202
    );
    let hits = receiver.wait_hits(20, WAIT).await;
    let span = hits[19].at - hits[0].at;
    assert!(span >= Duration::from_secs(3), "20 deliveries in {span:?}");
    // No window of 800 ms holds more than 5. The limit spaces sends 200 ms apart; arrivals carry
    // the network's and the scheduler's jitter (a first request also opens its connection), so
    // the window leaves 200 ms of it: with 950 ms a loaded machine once saw six, sent 1 s apart.
    // Sends 150 ms apart (a limit of about 7/s) would still put six in it.
    for (i, h) in hits.iter().enumerate() {
        let within = hits[i..]
            .iter()
            .take_while(|o| o.at - h.at < Duration::from_millis(800))
            .count();
        assert!(within <= 5, "{within} deliveries within 800 ms");
    }
}

/// A limit is reached when nothing else holds the subscription back: at 200/s with ten in
/// flight to a receiver on loopback, 400 deliveries take about two seconds, not seven (the rate
/// once waited in the queue, re-claimed every 20 ms: about 60/s).
async fn a_high_rate_limit_is_reached(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["e"], json!({"rate_limit_per_s": 200}))
        .await;
    // Proven first (a new subscription has one attempt in flight until one succeeds).
    api.publish(json!({"name": "e", "data": {}})).await;
    let first = api.first_delivery(sub["id"].as_str().unwrap(), WAIT).await;
    api.delivery_with_status(&first, "succeeded", WAIT).await;
    for chunk in 0..4 {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"name": "e", "data": {"i": chunk * 100 + i}}))
            .collect();
        assert_eq!(
            api.post("/v1/events", Value::Array(batch)).await.status,
            202
        );
    }
    let hits = receiver.wait_hits(401, WAIT).await;
    let span = hits[400].at - hits[1].at;
    assert!(
        span < Duration::from_millis(4500),
        "400 deliveries at 200/s took {span:?}"
    );
    for (i, h) in hits.iter().enumerate() {
        let within = hits[i..]
            .iter()
            .take_while(|o| o.at - h.at < Duration::from_millis(950))
            .count();
        assert!(within <= 201, "{within} deliveries within a second");
    }
}

async fn ordered_delivery_keeps_order_through_retries_of_the_head(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(500), Answer::status(500)]);
    let api = server.api();
    api.subscribe(
        &receiver.url,
        &["e"],
        json!({"ordered": true, "retry": {"schedule_s": [1, 1, 1]}}),
    )
    .await;
    for i in 0..5 {
        api.publish(json!({"name": "e", "data": {"i": i}})).await;
    }
    let hits = wait_for(WAIT, "5 events delivered", || async {
        let h = receiver.hits();
        (h.len() >= 7).then_some(h)
    })
    .await;
    let order: Vec<i64> = hits
        .iter()
        .map(|h| h.json()["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(receiver.most_in_progress(), 1);
}

async fn recover_requeues_dead_deliveries(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(500));
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["e"], json!({"retry": {"schedule_s": []}}))
        .await;
    let sub_id = id(&sub);
    for _ in 0..3 {
        api.publish(json!({"name": "e", "data": {}})).await;
    }
    wait_for(WAIT, "3 dead deliveries", || async {
        let dead = api
            .get(&format!(
                "/v1/subscriptions/{sub_id}/deliveries?status=dead"
            ))
            .await
            .body;
        (dead["items"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    receiver.answer_by_default(Answer::status(204));
    let r = api
        .post(
            &format!("/v1/subscriptions/{sub_id}/recover"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"requeued": 3}));
    wait_for(WAIT, "3 recovered deliveries", || async {
        let ok = api
            .get(&format!(
                "/v1/subscriptions/{sub_id}/deliveries?status=succeeded"
            ))
            .await
            .body;
        (ok["items"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    let r = api
        .post(
            &format!("/v1/subscriptions/{sub_id}/recover"),
            json!({"since": "soon"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].clone()),
        (422, json!("since"))
    );
}

async fn a_dead_delivery_is_announced(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/broken", Answer::status(500));
    let api = server.api();
    api.subscribe(
        &receiver.at("/events"),
        &["posthorn.delivery.dead"],
        json!({}),
    )
    .await;
    let broken = api
        .subscribe(
            &receiver.at("/broken"),
            &["e"],
            json!({"retry": {"schedule_s": []}, "config": {"url": receiver.at("/broken")}}),
        )
        .await;
    api.publish(json!({"name": "e", "data": {}})).await;
    let notice = wait_for(WAIT, "posthorn.delivery.dead", || async {
        receiver.hits_at("/events").into_iter().next()
    })
    .await;
    let data = notice.json()["data"].clone();
    assert_eq!(data["subscription_id"], broken["id"]);
    assert_eq!(data["event_name"], "e");
    let dlv = first_delivery(&api, &id(&broken)).await;
    assert_eq!(data["delivery_id"], dlv.as_str());
}

async fn a_subscription_failing_too_long_is_disabled_until_enabled(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        // Disabled after 2 seconds of failures.
        extra: vec!["--disable-after-days".into(), "0.000023".into()],
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/broken", Answer::status(503));
    let api = server.api();
    api.subscribe(
        &receiver.at("/events"),
        &["posthorn.subscription.disabled"],
        json!({}),
    )
    .await;
    let broken = api
        .subscribe(
            &receiver.at("/broken"),
            &["e"],
            json!({"retry": {"schedule_s": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]},
            "config": {"url": receiver.at("/broken")}}),
        )
        .await;
    let path = format!("/v1/subscriptions/{}", id(&broken));
    api.publish(json!({"name": "e", "data": {}})).await;
    let disabled = wait_for(
        Duration::from_secs(40),
        "the subscription disabled",
        || async {
            let s = api.get(&path).await.body;
            (s["status"] == "disabled").then_some(s)
        },
    )
    .await;
    assert_eq!(disabled["disabled_reason"], "failing");
    let notice = wait_for(WAIT, "posthorn.subscription.disabled", || async {
        receiver.hits_at("/events").into_iter().next()
    })
    .await;
    assert_eq!(notice.json()["data"]["subscription_id"], broken["id"]);
    // A disabled subscription receives nothing new; enabling clears the reason.
    assert_eq!(
        api.publish(json!({"name": "e", "data": {}})).await["deliveries"],
        0
    );
    let on = api.post(&format!("{path}/enable"), json!({})).await.body;
    assert_eq!(
        (on["status"].clone(), on["disabled_reason"].clone()),
        (json!("active"), Value::Null)
    );
    assert_eq!(
        api.publish(json!({"name": "e", "data": {}})).await["deliveries"],
        1
    );
}

async fn old_events_are_purged_but_never_pending_ones(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        // A retention of about 1.7 s, checked every second.
        extra: vec![
            "--retention-days".into(),
            "0.00002".into(),
            "--purge-every-s".into(),
            "1".into(),
        ],
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/later", Answer::status(500));
    let api = server.api();
    api.subscribe(
        &receiver.at("/later"),
        &["waiting"],
        json!({"retry": {"schedule_s": [3600]},
        "config": {"url": receiver.at("/later")}}),
    )
    .await;
    let sub = api.subscribe(&receiver.url, &["done"], json!({})).await;
    let waiting = api.publish(json!({"name": "waiting", "data": {}})).await;
    let done = api.publish(json!({"name": "done", "data": {}})).await;
    let dlv = first_delivery(&api, &id(&sub)).await;
    api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    wait_for(WAIT, "the finished event purged", || async {
        (api.get(&format!("/v1/events/{}", id(&done))).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(api.get(&format!("/v1/deliveries/{dlv}")).await.status, 404);
    // Older still, but its delivery is pending: kept.
    assert_eq!(
        api.get(&format!("/v1/events/{}", id(&waiting)))
            .await
            .status,
        200
    );
}

/// "My endpoint was down, I fixed it, I pressed retry": the retry goes now, not when the circuit
/// that the outage opened would have let a probe through; and while the circuit is open, the API
/// says so on the subscription and on each delivery it holds back.
async fn a_retry_closes_the_circuit_and_goes_now(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    // Nothing listens there: the connection is refused, no answer, the circuit opens at once.
    let dead = "http://127.0.0.1:9/hook";
    let sub = api
        .subscribe(dead, &["e"], json!({"retry": {"schedule_s": [600]}}))
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sub["circuit"],
        json!({"state": "closed", "until": null, "failures": 0})
    );
    api.publish(json!({"name": "e", "data": {"n": 1}})).await;
    let first = first_delivery(&api, &id).await;
    let circuit = wait_for(WAIT, "the circuit to open", || async {
        let s = api.get(&format!("/v1/subscriptions/{id}")).await.body;
        (s["circuit"]["state"] == "open").then(|| s["circuit"].clone())
    })
    .await;
    assert!(circuit["failures"].as_u64().unwrap() >= 1, "{circuit}");
    let until = chrono::DateTime::parse_from_rfc3339(circuit["until"].as_str().unwrap()).unwrap();
    // An event published meanwhile waits for the circuit, and says so.
    api.publish(json!({"name": "e", "data": {"n": 2}})).await;
    let second = wait_for(WAIT, "the second delivery", || async {
        let list = api.deliveries(&id).await;
        (list.len() == 2).then(|| list[0]["id"].as_str().unwrap().to_owned())
    })
    .await;
    let held = api.get(&format!("/v1/deliveries/{second}")).await.body;
    assert_eq!(held["status"], "pending", "{held}");
    assert_eq!(held["held"]["reason"], "circuit_open", "{held}");
    assert_eq!(held["held"]["until"], circuit["until"], "{held}");
    // The endpoint is fixed; the retry goes at once, well before the circuit would close.
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"config": {"url": receiver.url}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .post(&format!("/v1/deliveries/{first}/retry"), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let d = api.delivery_with_status(&first, "succeeded", WAIT).await;
    let done = chrono::DateTime::parse_from_rfc3339(d["updated_at"].as_str().unwrap()).unwrap();
    assert!(
        done < until,
        "the retry waited for the circuit: succeeded at {done}, the circuit was open until {until}"
    );
    // The backlog the circuit held goes too, and the circuit shows closed.
    api.delivery_with_status(&second, "succeeded", WAIT).await;
    let s = api.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(s["circuit"]["state"], "closed", "{s}");
    assert_eq!(receiver.hits().len(), 2);
}

both_backends!(
    a_retry_closes_the_circuit_and_goes_now,
    a_410_deletes_the_subscription_and_says_so,
    retry_after_is_honoured_over_the_schedule,
    a_hanging_endpoint_does_not_slow_a_healthy_one,
    max_in_flight_is_never_exceeded,
    a_rate_limit_spreads_deliveries,
    a_high_rate_limit_is_reached,
    ordered_delivery_keeps_order_through_retries_of_the_head,
    recover_requeues_dead_deliveries,
    a_dead_delivery_is_announced,
    a_subscription_failing_too_long_is_disabled_until_enabled,
    old_events_are_purged_but_never_pending_ones,
);

/// One owner's costly filters cannot stall the others: 1,000 subscriptions with distinct
/// 4,000-character `contains` filters over a large field, then four publishes of a 900 KiB event
/// at once (matching each scans ~0.9 GB). Meanwhile `/healthz` and an unrelated small
/// publish stay fast: large events are matched on blocking threads, not the async workers. An
/// application is held to its subscription quota with a clear 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_filters_stall_no_one_else_and_the_quota_answers() {
    let server = Server::start_with(ServerOptions {
        extra: vec!["--max-subscriptions-per-application".into(), "3".into()],
        ..ServerOptions::default()
    })
    .await;
    let api = server.api();
    let receiver = Receiver::start().await;
    // The quota: three, then a 409 naming the limit; the admin's are not counted.
    let app = crate::util::application(&api, &["subscriptions"]).await;
    let as_app = api.with_token(&crate::util::token(&api.base, &app).await);
    for n in 0..4 {
        let r = as_app
            .post(
                "/v1/subscriptions",
                json!({"name": format!("s{n}"), "service": "http",
                "config": {"url": receiver.url}, "events": ["a"]}),
            )
            .await;
        if n < 3 {
            assert_eq!(r.status, 201, "{}", r.body);
        } else {
            assert_eq!(r.status, 409, "{}", r.body);
            let detail = r.body["detail"].as_str().unwrap();
            assert!(
                detail.contains("--max-subscriptions-per-application 3"),
                "{detail}"
            );
        }
    }
    // The costly filters (the admin's, not held to the quota).
    let needle = "x".repeat(3_990);
    let mut creating = Vec::new();
    for n in 0..1_000 {
        let api = api.clone();
        let filter = format!("text contains \"{needle}{n:06}\"");
        creating.push(tokio::spawn(async move {
            let r = api
                .post(
                    "/v1/subscriptions",
                    json!({"name": format!("costly {n}"), "service": "http",
                    "config": {"url": "https://example.com/never"}, "events": ["big"],
                    "filter": filter}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }));
        if creating.len() >= 16 {
            for c in creating.drain(..) {
                c.await.unwrap();
            }
        }
    }
    for c in creating {
        c.await.unwrap();
    }
    api.subscribe(&receiver.url, &["small"], json!({})).await;
    let text = "y".repeat(900 * 1024);
    let big: Vec<_> = (0..4)
        .map(|_| {
            let (api, text) = (api.clone(), text.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let e = api
                    .publish(json!({"name": "big", "data": {"text": text}}))
                    .await;
                assert_eq!(e["deliveries"], 0);
                started.elapsed()
            })
        })
        .collect();
    let http = reqwest::Client::new();
    let mut worst_health = Duration::ZERO;
    let mut worst_publish = Duration::ZERO;
    while big.iter().any(|b| !b.is_finished()) {
        let started = Instant::now();
        let r = http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        worst_health = worst_health.max(started.elapsed());
        let started = Instant::now();
        api.publish(json!({"name": "small", "data": {"n": 1}}))
            .await;
        worst_publish = worst_publish.max(started.elapsed());
    }
    let mut slowest_big = Duration::ZERO;
    for b in big {
        slowest_big = slowest_big.max(b.await.unwrap());
    }
    eprintln!(
        "1,000 costly filters, 4 x 900 KiB events: each matched within {slowest_big:?}; \
         /healthz at worst {worst_health:?}, a small publish at worst {worst_publish:?}"
    );
    assert!(
        worst_health < Duration::from_millis(750),
        "/healthz took {worst_health:?}"
    );
    assert!(
        worst_publish < Duration::from_secs(1),
        "a small publish took {worst_publish:?}"
    );
}

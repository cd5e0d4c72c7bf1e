//! Order per key (`ordered: "key"`): each key's events arrive in publish order, one at a time;
//! different keys go in parallel; a failing key holds back only its own events (its retries
//! keep their order); an event without a key waits for none. On both backends, and with two
//! processes on one PostgreSQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{postgres_available, wait_for, Answer, Backend, Receiver, Server, ServerOptions};

const KEYS: usize = 5;
const PER_KEY: usize = 4;
/// How long the receiver takes to answer each request.
const ANSWER: Duration = Duration::from_millis(600);

/// Publishes `PER_KEY` events for each of `KEYS` keys, interleaved (through `servers` in turn),
/// to a receiver whose path `/k/k1` fails until the others are done; checks what arrived.
async fn keyed(servers: &[Server]) {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(204).after(ANSWER));
    receiver.answer_at("/k/k1", Answer::status(500).after(ANSWER));
    let api = servers[0].api();
    let sub = api
        .subscribe(
            &receiver.at("/k/{{ event.data.order.id }}"),
            &["order.*"],
            json!({"ordered": "key", "order_key": "order.id", "max_in_flight": 20,
                "retry": {"schedule_s": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}}),
        )
        .await;
    assert_eq!(sub["ordered"], "key", "{sub}");
    assert_eq!(sub["order_key"], "order.id", "{sub}");
    // Every process knows the subscription before the events go.
    for server in servers {
        let api = server.api();
        wait_for(
            Duration::from_secs(5),
            "the subscription everywhere",
            || async {
                let e = api
                    .publish(json!({"name": "order.probe", "data": {"order": {"id": "probe"}}}))
                    .await;
                (e["deliveries"] == 1).then_some(())
            },
        )
        .await;
    }
    wait_for(Duration::from_secs(10), "the probes", || async {
        (receiver.hits().len() == servers.len()).then_some(())
    })
    .await;

    let start = Instant::now();
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let api = servers[(n * KEYS + k) % servers.len()].api();
            api.publish(json!({"name": "order.updated", "data": {"order": {"id": format!("k{k}")}, "n": n}}))
                .await;
        }
    }
    // An event without the key waits for nothing.
    api.publish(json!({"name": "order.note", "data": {"order": {}, "n": 99}}))
        .await;

    let by_key = |hits: &[crate::util::Hit]| {
        let mut keys: BTreeMap<String, Vec<(i64, Instant)>> = BTreeMap::new();
        for h in hits {
            if let Some(k) = h.path.strip_prefix("/k/").filter(|k| !k.is_empty()) {
                if let Some(n) = h.json()["data"]["n"].as_i64() {
                    keys.entry(k.to_owned()).or_default().push((n, h.at));
                }
            }
        }
        keys
    };
    // Every key but k1 delivered, while k1 still fails on its first event.
    let hits = wait_for(
        Duration::from_secs(60),
        "the keys that do not fail",
        || async {
            let hits = receiver.hits();
            let keys = by_key(&hits);
            let done = (0..KEYS).filter(|k| *k != 1).all(|k| {
                keys.get(&format!("k{k}"))
                    .is_some_and(|v| v.len() == PER_KEY)
            });
            done.then_some(hits)
        },
    )
    .await;
    let took = start.elapsed();
    let keys = by_key(&hits);
    for (key, got) in &keys {
        let order: Vec<i64> = got.iter().map(|(n, _)| *n).collect();
        if key == "k1" {
            assert!(
                order.iter().all(|n| *n == 0),
                "k1 is held at its first: {order:?}"
            );
            continue;
        }
        assert_eq!(order, [0, 1, 2, 3], "{key} in publish order");
        // One at a time: each arrived after the one before was answered.
        for pair in got.windows(2) {
            assert!(
                pair[1].1 - pair[0].1 >= ANSWER - Duration::from_millis(50),
                "{key}: two at once"
            );
        }
    }
    assert!(
        hits.iter()
            .any(|h| h.path == "/k/" && h.json()["data"]["n"] == 99),
        "the event without a key"
    );
    // Keys in parallel: about as long as one key takes, not as long as all of them.
    let serial = ANSWER * ((KEYS - 1) * PER_KEY) as u32;
    assert!(
        took < serial * 2 / 3,
        "{took:?} for the keys that do not fail; one after another would take {serial:?}"
    );
    assert!(receiver.most_in_progress() >= 3, "keys in parallel");

    // k1 recovers: its four arrive in order, the first after its failed attempts.
    receiver.answer_at("/k/k1", Answer::status(204).after(ANSWER));
    let k1 = wait_for(Duration::from_secs(60), "k1", || async {
        let keys = by_key(&receiver.hits());
        let k1 = keys.get("k1").cloned().unwrap_or_default();
        (k1.iter().filter(|(n, _)| *n > 0).count() == PER_KEY - 1).then_some(k1)
    })
    .await;
    let order: Vec<i64> = k1.iter().map(|(n, _)| *n).collect();
    assert!(order.len() > PER_KEY, "k1 was retried: {order:?}");
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "k1's retries kept its order: {order:?}"
    );
    assert_eq!(order[order.len() - 3..], [1, 2, 3], "{order:?}");
}

async fn events_of_one_key_arrive_in_order_and_keys_in_parallel(backend: Backend) {
    let server = Server::start(backend).await;
    keyed(std::slice::from_ref(&server)).await;
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn two_processes_keep_each_keys_order() {
    if !postgres_available() {
        return;
    }
    let servers = Server::start_many(2, ServerOptions::on(Backend::Postgres)).await;
    keyed(&servers).await;
}

/// What an ordering key may be: `ordered: "key"` with a path that parses; a publisher's
/// `ordering_key` of 1 to 256 characters; each fault named by its field.
async fn ordering_keys_are_checked(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    for (more, field) in [
        (json!({"ordered": "keys"}), "ordered"),
        (
            json!({"ordered": true, "order_key": "order.id"}),
            "order_key",
        ),
        (
            json!({"ordered": "key", "order_key": "order.id = 1"}),
            "order_key",
        ),
    ] {
        let mut body = json!({"name": "n", "service": "http", "events": ["e"],
            "config": {"url": receiver.url}});
        body.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        let r = api.post("/v1/subscriptions", body).await;
        assert_eq!(r.status, 422, "{more}: {}", r.body);
        assert_eq!(r.body["errors"][0]["field"], field, "{more}: {}", r.body);
    }
    let r = api
        .post(
            "/v1/events",
            json!({"name": "e", "data": {}, "ordering_key": "k".repeat(257)}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "ordering_key", "{}", r.body);

    // Set by a merge patch too.
    let sub = api.subscribe(&receiver.url, &["p"], json!({})).await;
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
            Some(&json!({"ordered": "key", "order_key": "$event.attributes.customer"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["order_key"], "$event.attributes.customer");

    // The publisher's key: a subscription without `order_key` orders by it.
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(300)));
    api.subscribe(&receiver.url, &["e"], json!({"ordered": "key"}))
        .await;
    for n in 0..3 {
        api.publish(json!({"name": "e", "data": {"n": n}, "ordering_key": "one"}))
            .await;
    }
    let hits = receiver.wait_hits(3, Duration::from_secs(20)).await;
    let order: Vec<i64> = hits
        .iter()
        .map(|h| h.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2]);
    assert_eq!(receiver.most_in_progress(), 1, "one key: one at a time");
}

/// A delivery that waits for an earlier one of its line says so, and names it; each delivery
/// shows the key it was given, so that a path that finds none is seen rather than silently
/// unordered.
async fn a_waiting_delivery_says_what_it_waits_behind(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_at("/k/a", Answer::status(500));
    receiver.answer_at("/all", Answer::status(500));
    let api = server.api();
    // One failed attempt, then a retry a minute later: the first of each line stays pending.
    let retry = json!({"schedule_s": [60]});
    let keyed = api
        .subscribe(
            &receiver.at("/k/{{ event.data.order.id }}"),
            &["order.*"],
            json!({"ordered": "key", "order_key": "order.id", "retry": retry}),
        )
        .await;
    let all = api
        .subscribe(
            &receiver.at("/all"),
            &["all.*"],
            json!({"ordered": true, "retry": retry}),
        )
        .await;
    for (key, n) in [("a", 0), ("b", 0), ("a", 1), ("a", 2)] {
        api.publish(json!({"name": "order.updated", "data": {"order": {"id": key}, "n": n}}))
            .await;
    }
    // The key's path finds nothing here (`order.number`): this one has no key and waits for
    // none.
    api.publish(json!({"name": "order.updated", "data": {"order": {"number": "a"}, "n": 9}}))
        .await;
    for n in 0..2 {
        api.publish(json!({"name": "all.updated", "data": {"n": n}}))
            .await;
    }
    wait_for(Duration::from_secs(20), "the first attempts", || async {
        (receiver.hits_at("/k/a").len() == 1
            && receiver.hits_at("/k/b").len() == 1
            && receiver.hits_at("/k/").len() == 1
            && receiver.hits_at("/all").len() == 1)
            .then_some(())
    })
    .await;
    let sub_id = |s: &serde_json::Value| s["id"].as_str().unwrap().to_owned();
    // The receiver answers before the outcome is recorded: wait for the records.
    let mut ds = wait_for(Duration::from_secs(20), "the attempts recorded", || async {
        let ds = api.deliveries(&sub_id(&keyed)).await;
        let settled = ds.iter().filter(|d| d["status"] == "succeeded").count();
        let failed = ds
            .iter()
            .filter(|d| d["attempts"] == 1 && d["status"] == "pending")
            .count();
        (settled == 2 && failed == 1).then_some(ds)
    })
    .await;
    // Oldest first: a0, b0, a1, a2, the one without a key.
    ds.reverse();
    assert_eq!(ds.len(), 5, "{ds:?}");
    let keys: Vec<&serde_json::Value> = ds.iter().map(|d| &d["order_key"]).collect();
    assert_eq!(
        keys,
        [
            &json!("a"),
            &json!("b"),
            &json!("a"),
            &json!("a"),
            &json!(null)
        ]
    );
    let (a0, b0, a1, a2, none) = (&ds[0], &ds[1], &ds[2], &ds[3], &ds[4]);
    assert_eq!(a0["status"], "pending", "{a0}");
    assert_eq!(a0["attempts"], 1, "{a0}");
    assert!(a0.get("held").is_none(), "the first of its key: {a0}");
    for later in [a1, a2] {
        assert_eq!(later["status"], "pending", "{later}");
        assert_eq!(later["attempts"], 0, "{later}");
        assert_eq!(later["held"]["reason"], "ordered", "{later}");
        assert_eq!(later["held"]["behind"], a0["id"], "{later}");
        assert_eq!(later["held"]["until"], a0["next_attempt_at"], "{later}");
    }
    assert_eq!(b0["status"], "succeeded", "{b0}");
    assert!(b0.get("held").is_none(), "{b0}");
    assert_eq!(none["status"], "succeeded", "{none}");
    // One delivery, shown alone, says the same.
    let shown = api
        .get(&format!("/v1/deliveries/{}", a2["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(shown["held"]["behind"], a0["id"], "{shown}");
    assert_eq!(shown["order_key"], "a", "{shown}");

    // `ordered: true`: one line for the whole subscription, with no key.
    let mut ds = wait_for(
        Duration::from_secs(20),
        "the first attempt recorded",
        || async {
            let ds = api.deliveries(&sub_id(&all)).await;
            ds.iter().any(|d| d["attempts"] == 1).then_some(ds)
        },
    )
    .await;
    ds.reverse();
    assert_eq!(ds.len(), 2, "{ds:?}");
    assert!(ds[0].get("held").is_none(), "{}", ds[0]);
    assert!(ds[1].get("order_key").is_none(), "{}", ds[1]);
    assert_eq!(ds[1]["held"]["reason"], "ordered", "{}", ds[1]);
    assert_eq!(ds[1]["held"]["behind"], ds[0]["id"], "{}", ds[1]);

    // A retry of the first by hand lets the line move: once it succeeds, the next goes.
    receiver.answer_at("/k/a", Answer::status(204));
    let r = api
        .post(
            &format!("/v1/deliveries/{}/retry", a0["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let hits = wait_for(Duration::from_secs(20), "key a", || async {
        let hits = receiver.hits_at("/k/a");
        (hits.len() == 4).then_some(hits)
    })
    .await;
    let order: Vec<i64> = hits
        .iter()
        .map(|h| h.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [0, 0, 1, 2]);
}

both_backends!(
    events_of_one_key_arrive_in_order_and_keys_in_parallel,
    ordering_keys_are_checked,
    a_waiting_delivery_says_what_it_waits_behind
);

//! Pull delivery (the `poll` service): a consumer that cannot receive reads its subscription's
//! feed with long polling, acknowledges part of it, "crashes", resumes, and gets every event at
//! least once and in order, each signed per Standard Webhooks; a Server-Sent Events client
//! resumes with `Last-Event-ID`; a caller without the right credential gets 401, 403 or 404.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{application, token, Backend, Receiver, Server};

/// An access token of `app` narrowed to `scope`.
async fn token_for(base: &str, app: &crate::util::App, scope: &str) -> String {
    let (status, _, body) = crate::applications::token_request(
        base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
            ("scope", scope),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Checks an entry's signature with the Standard Webhooks library, as a consumer does, and
/// gives its event.
fn verified(secret: &str, item: &Value) -> Value {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in item["headers"].as_object().unwrap() {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.as_str().unwrap().parse().unwrap(),
        );
    }
    let body = item["body"].as_str().unwrap();
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(body.as_bytes(), &headers)
        .unwrap_or_else(|e| panic!("entry {item} does not verify: {e}"));
    serde_json::from_str(body).unwrap()
}

fn ns(feed: &Value, secret: &str) -> Vec<i64> {
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| verified(secret, i)["data"]["n"].as_i64().unwrap())
        .collect()
}

/// One Server-Sent Events frame: its `id`, `event` and `data`.
#[derive(Debug)]
struct Frame {
    id: String,
    event: String,
    data: Value,
}

/// Reads frames from an SSE response until `n` have come.
async fn frames(resp: &mut reqwest::Response, n: usize) -> Vec<Frame> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("the stream sends in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim_start().to_owned())
            };
            if let (Some(id), Some(data)) = (field("id"), field("data")) {
                out.push(Frame {
                    id,
                    event: field("event").unwrap_or_default(),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
        }
    }
    out
}

async fn a_consumer_pulls_its_feed_and_resumes_where_it_acknowledged(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let app = application(&admin, &["subscriptions", "consume"]).await;
    let manage = admin.with_token(&token(&server.base, &app).await);
    let sub = manage
        .post(
            "/v1/subscriptions",
            json!({"name": "laptop", "service": "poll", "config": {}, "events": ["order.*"]}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let id = sub.body["id"].as_str().unwrap().to_owned();
    let secret = sub.body["secret"].as_str().unwrap().to_owned();
    let consumer = admin.with_token(&token_for(&server.base, &app, "consume").await);
    let feed = format!("/v1/subscriptions/{id}/feed");

    // Long polling: an empty feed is held open for the wait asked, then answered empty.
    let start = Instant::now();
    let empty = consumer.get(&format!("{feed}?wait=1")).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["items"], json!([]));
    assert!(start.elapsed() >= Duration::from_millis(800), "it waited");
    // A read waiting when an event comes answers with it, before its wait is out.
    let waiting = {
        let consumer = consumer.clone();
        let feed = feed.clone();
        tokio::spawn(async move { consumer.get(&format!("{feed}?wait=20")).await })
    };
    let start = Instant::now();
    admin
        .publish(json!({"name": "order.created", "data": {"n": 0}}))
        .await;
    let got = waiting.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(ns(&got.body, &secret), [0]);
    for n in 1..10 {
        admin
            .publish(json!({"name": "order.updated", "data": {"n": n}}))
            .await;
    }

    // How far behind the consumer is, on /metrics; a feed is not the push queue.
    let (_, scraped) = crate::util::scrape(&server.base, None).await;
    let scraped = scraped.expect("metrics");
    assert_eq!(
        crate::util::value(&scraped, "posthorn_feed_waiting", &[]),
        10.0
    );
    assert!(crate::util::value(&scraped, "posthorn_feed_oldest_waiting_seconds", &[]) >= 0.0);
    assert_eq!(
        crate::util::value(&scraped, "posthorn_queue_pending", &[]),
        0.0
    );

    // In the log, what waits in a feed says so; it is never pushed, so a retry is refused.
    let waiting = manage
        .get(&format!(
            "/v1/subscriptions/{id}/deliveries?status=pending&limit=100"
        ))
        .await
        .body;
    let waiting = waiting["items"].as_array().unwrap().clone();
    assert_eq!(waiting.len(), 10);
    for d in &waiting {
        assert_eq!(d["held"], json!({"reason": "pulled"}), "{d}");
        assert_eq!(d["next_attempt_at"], Value::Null, "{d}");
    }
    let one = waiting[0]["id"].as_str().unwrap();
    let r = manage
        .post(&format!("/v1/deliveries/{one}/retry"), json!({}))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("feed"),
        "{}",
        r.body
    );
    let shown = manage.get(&format!("/v1/deliveries/{one}")).await.body;
    assert_eq!(shown["held"]["reason"], "pulled", "{shown}");

    // Four read and acknowledged.
    let first = consumer.get(&format!("{feed}?limit=4")).await.body;
    assert_eq!(ns(&first, &secret), [0, 1, 2, 3]);
    let ack = consumer
        .post(&format!("{feed}/ack"), json!({"cursor": first["cursor"]}))
        .await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert_eq!(ack.body, json!({"acknowledged": 4}));
    // Four more read, then the consumer "crashes" before acknowledging them.
    let lost = consumer.get(&format!("{feed}?limit=4")).await.body;
    assert_eq!(ns(&lost, &secret), [4, 5, 6, 7]);
    // Resumed: what was not acknowledged comes again, in order, then the rest.
    let resumed = consumer.get(&feed).await.body;
    assert_eq!(ns(&resumed, &secret), [4, 5, 6, 7, 8, 9]);
    // Reading on after a cursor does not wait for the acknowledgement.
    let after = consumer
        .get(&format!(
            "{feed}?after={}",
            lost["cursor"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(ns(&after, &secret), [8, 9]);
    let ack = consumer
        .post(&format!("{feed}/ack"), json!({"cursor": resumed["cursor"]}))
        .await;
    assert_eq!(ack.body, json!({"acknowledged": 6}));
    assert_eq!(consumer.get(&feed).await.body["items"], json!([]));
    // Acknowledged entries are delivered deliveries, in the log like any other.
    let done = manage
        .get(&format!(
            "/v1/subscriptions/{id}/deliveries?status=succeeded&limit=100"
        ))
        .await
        .body;
    assert_eq!(done["items"].as_array().unwrap().len(), 10, "{done}");

    // Server-Sent Events: live entries; a reconnection with Last-Event-ID acknowledges up to it
    // and goes on after it.
    let stream_url = format!("{}{feed}/stream", server.base);
    let bearer = consumer_token(&consumer);
    let client = reqwest::Client::new();
    let mut live = client
        .get(&stream_url)
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    for n in 10..13 {
        admin
            .publish(json!({"name": "order.shipped", "data": {"n": n}}))
            .await;
    }
    let seen = frames(&mut live, 2).await;
    assert_eq!(seen[0].event, "order.shipped");
    let sse_n = |f: &Frame| verified(&secret, &f.data)["data"]["n"].as_i64().unwrap();
    assert_eq!(seen.iter().map(sse_n).collect::<Vec<_>>(), [10, 11]);
    drop(live);
    let mut again = client
        .get(&stream_url)
        .bearer_auth(&bearer)
        .header("last-event-id", &seen[1].id)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let next = frames(&mut again, 1).await;
    assert_eq!(sse_n(&next[0]), 12);
    let done = manage
        .get(&format!(
            "/v1/subscriptions/{id}/deliveries?status=succeeded&limit=100"
        ))
        .await
        .body;
    assert_eq!(done["items"].as_array().unwrap().len(), 12, "{done}");

    // Credentials: like every other route.
    let r = admin
        .with_token("no-such-token-0123456789")
        .get(&feed)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let no_consume = admin.with_token(&token_for(&server.base, &app, "subscriptions").await);
    let r = no_consume.get(&feed).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("consume"),
        "{}",
        r.body
    );
    let other = application(&admin, &["consume"]).await;
    let stranger = admin.with_token(&token(&server.base, &other).await);
    assert_eq!(stranger.get(&feed).await.status, 404);
    assert_eq!(
        stranger
            .post(&format!("{feed}/ack"), json!({"cursor": "1"}))
            .await
            .status,
        404
    );
    assert_eq!(
        admin.get(&feed).await.status,
        200,
        "the admin sees every feed"
    );
    // A pushed subscription has no feed; a cursor is a number this feed gave.
    let receiver = Receiver::start().await;
    let pushed = admin.subscribe(&receiver.url, &["x"], json!({})).await;
    let r = admin
        .get(&format!(
            "/v1/subscriptions/{}/feed",
            pushed["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = consumer
        .post(&format!("{feed}/ack"), json!({"cursor": "soon"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "cursor", "{}", r.body);
    let r = consumer.get(&format!("{feed}?wait=31")).await;
    assert_eq!(r.status, 422, "{}", r.body);
    // A poll subscription takes no config.
    let r = manage
        .post(
            "/v1/subscriptions",
            json!({"name": "x", "service": "poll", "config": {"url": "https://x"}, "events": ["e"]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "config.url", "{}", r.body);
}

fn consumer_token(api: &crate::util::Api) -> String {
    api.token().expect("a token").to_owned()
}

both_backends!(a_consumer_pulls_its_feed_and_resumes_where_it_acknowledged);

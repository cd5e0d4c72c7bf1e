//! Broker destinations against the machine's RabbitMQ and NATS: each event arrives in the
//! subscriber's queue or stream, as its envelope, with the event id as the message id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{Backend, Server};

const WAIT: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", crate::util::run_id())
}

async fn amqp_subscriptions_publish_confirmed_messages(backend: Backend) {
    use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::FieldTable;
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ at POSTHORN_TEST_AMQP_URL");
    let channel = conn.create_channel().await.unwrap();
    let queue = unique("posthorn-test");
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post("/v1/subscriptions", json!({"name": "to rabbit", "service": "amqp", "events": ["order.*"],
            "config": {"url": url, "exchange": "", "routing_key": queue, "headers": {"source": "posthorn"}}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut ids = Vec::new();
    for n in 0..3 {
        let e = api
            .publish(json!({"name": "order.paid", "data": {"n": n}}))
            .await;
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} of 3 messages arrived",
            got.len()
        );
        match channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => got.push(m),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // In any order (deliveries go side by side), each with its event's id.
    let mut seen = Vec::new();
    for m in &got {
        let props = &m.delivery.properties;
        let id = props
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap();
        assert_eq!(*props.delivery_mode(), Some(2), "persistent");
        let body: Value = serde_json::from_slice(&m.delivery.data).unwrap();
        assert_eq!(
            (body["id"].as_str(), body["name"].as_str()),
            (Some(id.as_str()), Some("order.paid"))
        );
        let headers = props.headers().as_ref().unwrap();
        assert!(
            headers.inner().contains_key("source")
                && headers.inner().contains_key("posthorn-delivery")
        );
        seen.push(id);
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let sub = r.body["id"].as_str().unwrap();
    // The broker's password is write-only: shown masked.
    let shown = api.get(&format!("/v1/subscriptions/{sub}")).await.body;
    let shown_url = shown["config"]["url"].as_str().unwrap();
    assert!(
        shown_url.contains(":********@") && !shown_url.contains("guest:guest"),
        "{shown_url}"
    );
    let d = api.first_delivery(sub, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    assert_eq!(d["attempt_log"][0]["response"]["confirmation"], "ack");
    assert!(
        !d.to_string().contains("guest:guest"),
        "the broker's password stays out of the log"
    );
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

async fn nats_subscriptions_publish_acknowledged_messages(backend: Backend) {
    use futures_util::StreamExt;
    let Ok(url) = std::env::var("POSTHORN_TEST_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url)
        .await
        .expect("NATS at POSTHORN_TEST_NATS_URL");
    let js = async_nats::jetstream::new(client);
    let prefix = unique("posthorn-test");
    let stream_name = prefix.to_uppercase().replace('-', "_");
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "to nats", "service": "nats", "events": ["order.*"],
            "config": {"url": url, "subject": format!("{prefix}.{{{{ event.name }}}}")}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut ids = Vec::new();
    for n in 0..2 {
        let e = api
            .publish(json!({"name": "order.paid", "data": {"n": n}}))
            .await;
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {} of 2 messages arrived",
            got.len()
        );
        let mut batch = consumer
            .fetch()
            .max_messages(2)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            let _ = m.ack().await;
            got.push(m);
        }
    }
    let mut seen: Vec<String> = got
        .iter()
        .map(|m| {
            assert_eq!(m.subject.as_str(), format!("{prefix}.order.paid"));
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            let id = m
                .headers
                .as_ref()
                .unwrap()
                .get("Nats-Msg-Id")
                .unwrap()
                .as_str()
                .to_owned();
            assert_eq!(body["id"].as_str(), Some(id.as_str()));
            id
        })
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let sub = r.body["id"].as_str().unwrap();
    let d = api.first_delivery(sub, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    assert_eq!(
        d["attempt_log"][0]["response"]["stream"],
        stream_name.as_str()
    );
    js.delete_stream(&stream_name).await.unwrap();
}

/// A queue of this test's own on the RabbitMQ of `url`, consumed (no acks): the channel (to
/// delete the queue at the end), its name, and the consumer.
async fn consumed_queue(url: &str, prefix: &str) -> (lapin::Channel, String, lapin::Consumer) {
    use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ at POSTHORN_TEST_AMQP_URL");
    let channel = conn.create_channel().await.unwrap();
    let queue = unique(prefix);
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consumer = channel
        .basic_consume(
            queue.clone().into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (channel, queue, consumer)
}

/// A listener that accepts connections and never answers: a hung broker.
async fn hung_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// Publishes `n` events one after another and measures, for each, the time until the next
/// message is reported on `arrived`; the 99th percentile and the median.
async fn publish_latencies(
    api: &crate::util::Api,
    n: usize,
    arrived: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        api.publish(json!({"name": "order.paid", "data": {"n": i}}))
            .await;
        tokio::time::timeout(WAIT, arrived.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("event {i} did not arrive within {WAIT:?}"));
        took.push(started.elapsed());
    }
    took.sort();
    let p99 = took[(took.len() * 99).div_ceil(100) - 1];
    (p99, took[took.len() / 2])
}

/// How many hung brokers the containment tests put beside the healthy one.
const HUNG: usize = 5;

async fn a_hung_amqp_broker_delays_only_its_own_subscriptions(backend: Backend) {
    use futures_util::StreamExt;
    use lapin::options::QueueDeleteOptions;
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let (channel, queue, mut consumer) = consumed_queue(&url, "posthorn-hung").await;
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "healthy", "service": "amqp", "events": ["order.*"],
            "config": {"url": url, "routing_key": queue}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(_)) = consumer.next().await {
            let _ = tx.send(());
        }
    });
    let (alone, _) = publish_latencies(&api, 20, &mut arrived).await;

    let mut hung = Vec::new();
    for i in 0..HUNG {
        let (port, task) = hung_listener().await;
        hung.push(task);
        let r = api
            .post("/v1/subscriptions", json!({"name": format!("hung {i}"), "service": "amqp",
                "events": ["order.*"], "config": {"url": format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
                "routing_key": "nowhere"}}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (beside, median) = publish_latencies(&api, 100, &mut arrived).await;
    assert!(
        beside <= alone + Duration::from_secs(1),
        "beside {HUNG} hung brokers the healthy p99 was {beside:?} (median {median:?}), alone {alone:?}"
    );
    eprintln!("amqp: healthy p99 alone {alone:?}, beside {HUNG} hung brokers {beside:?} (median {median:?})");
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    hung.iter().for_each(|t| t.abort());
}

async fn a_hung_nats_server_delays_only_its_own_subscriptions(backend: Backend) {
    use futures_util::StreamExt;
    let Ok(url) = std::env::var("POSTHORN_TEST_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url)
        .await
        .expect("NATS at POSTHORN_TEST_NATS_URL");
    let js = async_nats::jetstream::new(client.clone());
    let prefix = unique("posthorn-hung");
    let stream_name = prefix.to_uppercase().replace('-', "_");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    // A plain subscriber sees each message as the stream takes it.
    let mut watch = client.subscribe(format!("{prefix}.>")).await.unwrap();
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "healthy", "service": "nats", "events": ["order.*"],
            "config": {"url": url, "subject": format!("{prefix}.order")}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while watch.next().await.is_some() {
            let _ = tx.send(());
        }
    });
    let (alone, _) = publish_latencies(&api, 20, &mut arrived).await;

    let mut hung = Vec::new();
    for i in 0..HUNG {
        let (port, task) = hung_listener().await;
        hung.push(task);
        let r = api
            .post(
                "/v1/subscriptions",
                json!({"name": format!("hung {i}"), "service": "nats",
                "events": ["order.*"], "config": {"url": format!("nats://127.0.0.1:{port}"),
                "subject": "nowhere"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (beside, median) = publish_latencies(&api, 100, &mut arrived).await;
    assert!(
        beside <= alone + Duration::from_secs(1),
        "beside {HUNG} hung servers the healthy p99 was {beside:?} (median {median:?}), alone {alone:?}"
    );
    eprintln!("nats: healthy p99 alone {alone:?}, beside {HUNG} hung servers {beside:?} (median {median:?})");
    js.delete_stream(&stream_name).await.unwrap();
    hung.iter().for_each(|t| t.abort());
}

/// Two applications each publish `order-1`; the wire ids the two events must carry.
async fn same_client_id_from_two_applications(admin: &crate::util::Api) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let app = crate::util::application(admin, &["publish"]).await;
        let api = admin.with_token(&crate::util::token(&admin.base, &app).await);
        let r = api
            .post(
                "/v1/events",
                json!({"name": "order.paid", "id": "order-1", "data": {}}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push(format!("{}:order-1", app.id));
    }
    ids.sort();
    ids
}

async fn amqp_message_ids_do_not_collide_across_publishers(backend: Backend) {
    use futures_util::StreamExt;
    use lapin::options::QueueDeleteOptions;
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let (channel, queue, mut consumer) = consumed_queue(&url, "posthorn-ids").await;
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "shared", "service": "amqp", "events": ["order.*"],
            "config": {"url": url, "routing_key": queue}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ids = same_client_id_from_two_applications(&api).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {seen:?} arrived within {WAIT:?}"))
            .expect("the consumer ends")
            .expect("a message");
        let id = m
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned());
        seen.push(id.expect("a message id"));
    }
    seen.sort();
    assert_eq!(seen, ids);
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

async fn jetstream_keeps_both_publishers_events_with_one_client_id(backend: Backend) {
    let Ok(url) = std::env::var("POSTHORN_TEST_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url)
        .await
        .expect("NATS at POSTHORN_TEST_NATS_URL");
    let js = async_nats::jetstream::new(client);
    let prefix = unique("posthorn-ids");
    let stream_name = prefix.to_uppercase().replace('-', "_");
    // JetStream drops a message whose Nats-Msg-Id it saw within the window (2 minutes).
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "shared", "service": "nats", "events": ["order.*"],
            "config": {"url": url, "subject": format!("{prefix}.orders")}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sub = r.body["id"].as_str().unwrap().to_owned();
    let ids = same_client_id_from_two_applications(&api).await;
    let deliveries = crate::util::wait_for(WAIT, "both deliveries settle", || async {
        let ds = api.deliveries(&sub).await;
        (ds.len() == 2 && ds.iter().all(|d| d["status"] == "succeeded")).then_some(ds)
    })
    .await;
    for d in &deliveries {
        let d = api
            .get(&format!("/v1/deliveries/{}", d["id"].as_str().unwrap()))
            .await
            .body;
        assert_eq!(
            d["attempt_log"][0]["response"]["duplicate"], false,
            "JetStream took neither event for the other: {d}"
        );
    }
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 2, "the stream holds both events");
    let mut seen = Vec::new();
    for seq in 1..=2 {
        let m = stream.get_raw_message(seq).await.unwrap();
        seen.push(m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ids);
    js.delete_stream(&stream_name).await.unwrap();
}

broker_backends! {
    amqp_tests
        "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
        "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
        => [amqp_subscriptions_publish_confirmed_messages, a_hung_amqp_broker_delays_only_its_own_subscriptions, amqp_message_ids_do_not_collide_across_publishers];
    nats_tests
        "POSTHORN_TEST_NATS_URL is not set: the NATS tests are skipped"
        "POSTHORN_TEST_NATS_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
        => [nats_subscriptions_publish_acknowledged_messages, a_hung_nats_server_delays_only_its_own_subscriptions, jetstream_keeps_both_publishers_events_with_one_client_id];
}

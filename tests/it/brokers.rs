//! Broker destinations against the machine's RabbitMQ and NATS: each event arrives in the
//! subscriber's queue or stream, as its envelope, with the event id as the message id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{Backend, Server};

const WAIT: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", crate::util::run_id())
}

#[tokio::test]
#[cfg_attr(
    not(amqp_tests),
    ignore = "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
)]
async fn amqp_subscriptions_publish_confirmed_messages() {
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
    let server = Server::start(Backend::Sqlite).await;
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

#[tokio::test]
#[cfg_attr(
    not(nats_tests),
    ignore = "POSTHORN_TEST_NATS_URL is not set: the NATS tests are skipped"
)]
async fn nats_subscriptions_publish_acknowledged_messages() {
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
    let server = Server::start(Backend::Sqlite).await;
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

//! Events from RabbitMQ: a wazo-shaped message on a headers exchange reaches an http
//! subscription; a routing key names an event; a malformed message is rejected and not
//! redelivered; messages published while Posthorn was stopped arrive when it starts; a
//! redelivered message (same id) makes one event.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use serde_json::{json, Value};

use crate::util::{wait_for, Backend, Receiver, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

async fn publish(
    channel: &lapin::Channel,
    exchange: &str,
    key: &str,
    name: Option<&str>,
    id: Option<&str>,
    body: &[u8],
) {
    let mut headers = FieldTable::default();
    if let Some(n) = name {
        headers.insert("name".into(), AMQPValue::LongString(n.to_owned().into()));
    }
    let mut props = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    if let Some(id) = id {
        props = props.with_message_id(id.to_owned().into());
    }
    channel
        .basic_publish(
            exchange.to_owned().into(),
            key.to_owned().into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn events_named(api: &crate::util::Api, name: &str) -> Vec<Value> {
    api.get(&format!("/v1/events?name={name}")).await.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
#[cfg_attr(
    not(amqp_tests),
    ignore = "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
)]
async fn rabbitmq_messages_become_events_sqlite() {
    rabbitmq_messages_become_events(Backend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(
    not(all(amqp_tests, postgres_tests)),
    ignore = "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
)]
async fn rabbitmq_messages_become_events_postgres() {
    rabbitmq_messages_become_events(Backend::Postgres).await;
}

async fn rabbitmq_messages_become_events(backend: Backend) {
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let run = crate::util::run_id();
    let (wazo_exchange, wazo_queue) = (
        format!("posthorn-test-headers-{run}"),
        format!("posthorn-test-wazo-{run}"),
    );
    let (topic_exchange, topic_queue) = (
        format!("posthorn-test-topic-{run}"),
        format!("posthorn-test-orders-{run}"),
    );
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    // Declared as the source will declare them, and a message published before Posthorn runs.
    channel
        .exchange_declare(
            wazo_exchange.clone().into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            wazo_queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-match".into(), AMQPValue::LongString("all".into()));
    args.insert("name".into(), AMQPValue::LongString("user_created".into()));
    channel
        .queue_bind(
            wazo_queue.clone().into(),
            wazo_exchange.clone().into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        )
        .await
        .unwrap();
    publish(
        &channel,
        &wazo_exchange,
        "",
        Some("user_created"),
        Some("early-1"),
        br#"{"name": "user_created", "origin_uuid": "wazo-1", "data": {"id": 1}}"#,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posthorn.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[sources.amqp]]
url = "{url}"
exchange = "{wazo_exchange}"
exchange_type = "headers"
queue = "{wazo_queue}"
bindings = ["user_created"]
prefetch = 50

[[sources.amqp]]
url = "{url}"
exchange = "{topic_exchange}"
exchange_type = "topic"
queue = "{topic_queue}"
bindings = ["order.*"]
"#
        ),
    )
    .unwrap();
    let server = Server::start_with(ServerOptions {
        extra: vec!["--config".into(), path.display().to_string()],
        ..ServerOptions::on(backend)
    })
    .await;
    let api = server.api();
    let receiver = Receiver::start().await;
    // What waited in the broker arrives.
    let early = wait_for(WAIT, "the message published before the start", || async {
        events_named(&api, "user_created").await.into_iter().next()
    })
    .await;
    assert_eq!(
        (early["id"].as_str(), early["origin"].as_str()),
        (Some("early-1"), Some("wazo-1"))
    );
    assert_eq!(early["data"], json!({"id": 1}));
    let sources = wait_for(WAIT, "both sources to connect", || async {
        let s = api.get("/v1/sources").await.body;
        s["items"]
            .as_array()?
            .iter()
            .all(|x| x["connected"] == true)
            .then_some(s)
    })
    .await;
    assert_eq!(sources["items"].as_array().unwrap().len(), 2);

    let sub = api
        .subscribe(&receiver.url, &["user_created", "order.*"], json!({}))
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    // A wazo bus message on the headers exchange, delivered; sent twice, one event.
    for _ in 0..2 {
        publish(
            &channel,
            &wazo_exchange,
            "",
            Some("user_created"),
            Some("m-2"),
            br#"{"name": "user_created", "origin_uuid": "wazo-1", "data": {"id": 2}}"#,
        )
        .await;
    }
    // A routing key names an event whose body is any object.
    publish(
        &channel,
        &topic_exchange,
        "order.paid",
        None,
        Some("o-1"),
        br#"{"order": 7}"#,
    )
    .await;
    // Malformed: rejected, counted, not redelivered.
    publish(
        &channel,
        &wazo_exchange,
        "",
        Some("user_created"),
        Some("bad-1"),
        b"not json",
    )
    .await;

    let hits = receiver.wait_hits(2, WAIT).await;
    let mut names: Vec<String> = hits
        .iter()
        .map(|h| {
            serde_json::from_slice::<Value>(&h.body).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["order.paid", "user_created"]);
    wait_for(WAIT, "the malformed message to be rejected", || async {
        let s = api.get("/v1/sources").await.body;
        (s["items"][0]["rejected"] == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let user_events = events_named(&api, "user_created").await;
    assert_eq!(
        user_events.len(),
        2,
        "early-1 and m-2, once: {user_events:?}"
    );
    assert_eq!(
        events_named(&api, "order.paid").await[0]["data"],
        json!({"order": 7})
    );
    assert_eq!(
        receiver.hits().len(),
        2,
        "the redelivered message made no second delivery"
    );
    let deliveries = api.deliveries(&sub).await;
    assert_eq!(deliveries.len(), 2);
    // Nothing is left in the queue: the bad message was not requeued.
    let q = channel
        .queue_declare(
            wazo_queue.clone().into(),
            QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    let log = server.log();
    assert!(
        log.contains("AMQP message rejected"),
        "the rejection is logged"
    );
    // The broker drops this source's connection between two halves of a flood: nothing is lost,
    // nothing is doubled (unacknowledged messages come back; their ids make no second event).
    let flood = 200;
    for n in 0..flood / 2 {
        let id = format!("flood-{n}");
        let body = format!(r#"{{"n": {n}}}"#);
        channel
            .basic_publish(
                topic_exchange.clone().into(),
                "order.flooded".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(id.into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    // This source's connection only (other tests share the broker): found by its name.
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--no-table-headers",
            "--quiet",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let ours: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains(&format!("posthorn source {topic_queue}")))
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(ours.len(), 1, "{listed}");
    let closed = std::process::Command::new("rabbitmqctl")
        .args([
            "close_connection",
            ours[0],
            "posthorn test: dropped mid-stream",
        ])
        .output()
        .expect("rabbitmqctl");
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    // And the second half while the source reconnects.
    for n in flood / 2..flood {
        let id = format!("flood-{n}");
        let body = format!(r#"{{"n": {n}}}"#);
        channel
            .basic_publish(
                topic_exchange.clone().into(),
                "order.flooded".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(id.into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(60),
        "every flooded message as one event",
        || async {
            let n = api
                .get("/v1/events?name=order.flooded&limit=1000")
                .await
                .body["items"]
                .as_array()
                .map_or(0, Vec::len);
            (n == flood).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = api
        .get("/v1/events?name=order.flooded&limit=1000")
        .await
        .body["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(n, flood, "no message made two events");
    wait_for(WAIT, "the source to reconnect", || async {
        let s = api.get("/v1/sources").await.body;
        s["items"]
            .as_array()?
            .iter()
            .all(|x| x["connected"] == true)
            .then_some(())
    })
    .await;
    for (q, x) in [(wazo_queue, wazo_exchange), (topic_queue, topic_exchange)] {
        let _ = channel.queue_delete(q.into(), Default::default()).await;
        let _ = channel.exchange_delete(x.into(), Default::default()).await;
    }
}

/// A NATS message becomes an event named by its subject less the prefix, once per `Nats-Msg-Id`;
/// one that cannot be an event is terminated, not redelivered.
#[tokio::test]
#[cfg_attr(
    not(nats_tests),
    ignore = "POSTHORN_TEST_NATS_URL is not set: the NATS tests are skipped"
)]
async fn nats_messages_become_events_sqlite() {
    nats_messages_become_events(Backend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(
    not(all(nats_tests, postgres_tests)),
    ignore = "POSTHORN_TEST_NATS_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
)]
async fn nats_messages_become_events_postgres() {
    nats_messages_become_events(Backend::Postgres).await;
}

async fn nats_messages_become_events(backend: Backend) {
    let Ok(url) = std::env::var("POSTHORN_TEST_NATS_URL") else {
        return;
    };
    let run = crate::util::run_id();
    let (stream, prefix) = (format!("POSTHORN_SRC_{run}"), format!("src{run}."));
    let client = async_nats::connect(&url).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posthorn.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[sources.nats]]
url = "{url}"
stream = "{stream}"
subjects = ["{prefix}>"]
strip_prefix = "{prefix}"
consumer = "posthorn"
"#
        ),
    )
    .unwrap();
    let server = Server::start_with(ServerOptions {
        extra: vec!["--config".into(), path.display().to_string()],
        ..ServerOptions::on(backend)
    })
    .await;
    let api = server.api();
    let receiver = Receiver::start().await;
    api.subscribe(&receiver.url, &["invoice.*"], json!({}))
        .await;
    wait_for(WAIT, "the source to connect", || async {
        let s = api.get("/v1/sources").await.body;
        (s["items"][0]["connected"] == true).then_some(())
    })
    .await;
    for body in [
        &br#"{"total": 12}"#[..],
        &br#"{"total": 12}"#[..],
        &b"not json"[..],
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            if body == b"not json" {
                "bad-1"
            } else {
                "inv-1"
            },
        );
        // The second copy: the stream's own window may drop it; either way, one event.
        js.publish_with_headers(
            format!("{prefix}invoice.paid"),
            headers,
            body.to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let hits = receiver.wait_hits(1, WAIT).await;
    let body: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(
        (body["name"].as_str(), body["id"].as_str()),
        (Some("invoice.paid"), Some("inv-1"))
    );
    assert_eq!(body["data"], json!({"total": 12}));
    wait_for(WAIT, "the malformed message to be terminated", || async {
        let s = api.get("/v1/sources").await.body;
        (s["items"][0]["rejected"] == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events_named(&api, "invoice.paid").await.len(), 1);
    assert_eq!(receiver.hits().len(), 1);
    let _ = js.delete_stream(&stream).await;
}

/// Messages published while Posthorn was stopped are delivered once it starts again; `/readyz`
/// shows the source.
#[tokio::test]
#[cfg_attr(
    not(amqp_tests),
    ignore = "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
)]
async fn messages_sent_while_stopped_are_delivered_after_the_start_sqlite() {
    messages_sent_while_stopped_are_delivered_after_the_start(Backend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(
    not(all(amqp_tests, postgres_tests)),
    ignore = "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
)]
async fn messages_sent_while_stopped_are_delivered_after_the_start_postgres() {
    messages_sent_while_stopped_are_delivered_after_the_start(Backend::Postgres).await;
}

async fn messages_sent_while_stopped_are_delivered_after_the_start(backend: Backend) {
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let run = crate::util::run_id();
    let (exchange, queue) = (
        format!("posthorn-test-stop-{run}"),
        format!("posthorn-test-stopq-{run}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posthorn.toml");
    std::fs::write(
        &path,
        format!("[[sources.amqp]]\nurl = \"{url}\"\nexchange = \"{exchange}\"\nexchange_type = \"direct\"\nqueue = \"{queue}\"\nbindings = [\"ticket.opened\"]\n"),
    )
    .unwrap();
    let mut server = Server::start_with(ServerOptions {
        extra: vec!["--config".into(), path.display().to_string()],
        ..ServerOptions::on(backend)
    })
    .await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let sub = api
        .subscribe(&receiver.url, &["ticket.opened"], json!({}))
        .await;
    let ready = wait_for(WAIT, "the source in /readyz", || async {
        let r = api.without_token().get("/readyz").await.body;
        (r["sources"][0]["connected"] == true).then_some(r)
    })
    .await;
    assert_eq!(ready["sources"][0]["name"], queue.as_str());
    server.terminate().await;
    // Posthorn is stopped: the messages wait in its (durable) queue.
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for n in 0..5 {
        let body = format!(r#"{{"ticket": {n}}}"#);
        publish(
            &channel,
            &exchange,
            "ticket.opened",
            None,
            Some(&format!("t-{n}")),
            body.as_bytes(),
        )
        .await;
    }
    server.restart().await;
    let hits = receiver.wait_hits(5, WAIT).await;
    assert_eq!(hits.len(), 5);
    let api = server.api();
    assert_eq!(api.deliveries(sub["id"].as_str().unwrap()).await.len(), 5);
    let _ = channel.queue_delete(queue.into(), Default::default()).await;
    let _ = channel
        .exchange_delete(exchange.into(), Default::default())
        .await;
}

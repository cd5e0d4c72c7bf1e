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

/// A message exactly as wazo-bus's `WazoEventMixin` publishes a user's event: the body is the
/// headers with `data` beside them, the headers `name`, `origin_uuid`, `timestamp`,
/// `required_access`, `required_acl`, `tenant_uuid` and `user_uuid:<uuid>` (true).
async fn publish_bus(
    channel: &lapin::Channel,
    exchange: &str,
    name: &str,
    user: &str,
    data: Value,
) {
    let mut head = serde_json::Map::new();
    head.insert("tenant_uuid".into(), json!("t-1"));
    head.insert(format!("user_uuid:{user}"), json!(true));
    head.insert("required_access".into(), json!(format!("event.{name}")));
    head.insert(
        "required_acl".into(),
        json!(format!("events.users.{user}.{name}")),
    );
    head.insert("name".into(), json!(name));
    head.insert("origin_uuid".into(), json!("w-1"));
    head.insert("timestamp".into(), json!("2026-12-06T08:00:00.123456"));
    let mut headers = FieldTable::default();
    for (k, v) in &head {
        let v = match v {
            Value::Bool(b) => AMQPValue::Boolean(*b),
            v => AMQPValue::LongString(v.as_str().unwrap().to_owned().into()),
        };
        headers.insert(k.clone().into(), v);
    }
    let mut body = head.clone();
    body.insert("data".into(), data);
    channel
        .basic_publish(
            exchange.to_owned().into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&body).unwrap(),
            BasicProperties::default()
                .with_headers(headers)
                .with_content_type("application/json".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The wazo door fed by a real wazo bus: a source on a headers exchange with no `bindings`,
/// `/1.0` subscriptions to `call_ended` (one narrowed to user u-1 by `events_user_uuid`, one to
/// another wazo by `events_wazo_uuid`, one not narrowed). The queue is bound to `call_ended` as
/// soon as a subscription asks for it, on every process; each subscription gets exactly the
/// event's `data`, narrowed as wazo narrows; once no subscription asks, it is unbound.
async fn a_real_wazo_bus_reaches_wazo_subscriptions(backend: Backend, processes: usize) {
    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    let run = crate::util::run_id();
    let (exchange, queue) = (
        format!("posthorn-test-bus-{run}"),
        format!("posthorn-test-busq-{run}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posthorn.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources.amqp]]\nurl = \"{url}\"\nexchange = \"{exchange}\"\n\
             exchange_type = \"headers\"\nqueue = \"{queue}\"\n"
        ),
    )
    .unwrap();
    let options = ServerOptions {
        extra: vec!["--config".into(), path.display().to_string()],
        ..ServerOptions::on(backend)
    };
    // One process: its own database (SQLite's lives in the server's folder); several: one shared.
    let servers = if processes == 1 {
        vec![Server::start_with(options).await]
    } else {
        Server::start_many(processes, options).await
    };
    let api = servers[0].api();
    wait_for(WAIT, "every source connected", || async {
        let mut all = true;
        for s in &servers {
            let b = s.api().get("/v1/sources").await.body;
            all &= b["items"][0]["connected"] == true;
        }
        all.then_some(())
    })
    .await;
    // wazo's status says the bus is consumed.
    let status: Value = reqwest::Client::new()
        .get(format!("{}/1.0/status", servers[0].base))
        .header("x-auth-token", crate::util::TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["bus_consumer"]["status"], "ok", "{status}");
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();

    let receiver = Receiver::start().await;
    let wazo = |body: Value| {
        let base = servers[servers.len() - 1].base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/1.0/subscriptions"))
                .header("x-auth-token", crate::util::TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            r.json::<Value>().await.unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut subs = Vec::new();
    for (path, narrowing) in [
        ("/u1", json!({"events_user_uuid": "u-1"})),
        ("/all", json!({})),
        ("/other-wazo", json!({"events_wazo_uuid": "w-2"})),
    ] {
        let mut body = json!({"name": path, "service": "http", "events": ["call_ended"],
            "config": {"url": receiver.at(path), "method": "post"}});
        body.as_object_mut()
            .unwrap()
            .extend(narrowing.as_object().unwrap().clone());
        subs.push(wazo(body).await);
    }
    // A user's own subscription, made with a token that acts for u-1 (as a wazo user token).
    let app = crate::util::application(&api, &["subscriptions"]).await;
    let user_token = reqwest::Client::new()
        .post(format!("{}/oauth/token", servers[0].base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.secret.as_str()),
            ("user", "u-1"),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = reqwest::Client::new()
        .post(format!("{}/1.0/users/me/subscriptions", servers[0].base))
        .header("x-auth-token", &user_token)
        .json(
            &json!({"name": "mine", "service": "http", "events": ["call_ended"],
            "config": {"url": receiver.at("/me"), "method": "post"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mine: Value = r.json().await.unwrap();
    assert_eq!(
        (
            mine["owner_user_uuid"].as_str(),
            mine["events_user_uuid"].as_str()
        ),
        (Some("u-1"), Some("u-1"))
    );
    subs.push(mine["uuid"].as_str().unwrap().to_owned());
    // Bound within about a second: probes (another user's calls) until one is an event.
    let mut probe = 0;
    wait_for(WAIT, "call_ended bound to the queue", || {
        probe += 1;
        let (channel, exchange, api) = (&channel, &exchange, &api);
        async move {
            publish_bus(
                channel,
                exchange,
                "call_ended",
                "u-9",
                json!({"probe": probe}),
            )
            .await;
            (!events_named(api, "call_ended").await.is_empty()).then_some(())
        }
    })
    .await;
    for user in ["u-1", "u-2"] {
        publish_bus(
            &channel,
            &exchange,
            "call_ended",
            user,
            json!({"call_id": format!("call-{user}"), "user_uuid": user}),
        )
        .await;
    }
    let u1 = wait_for(WAIT, "u-1's call at its subscription", || async {
        let hits = receiver.hits_at("/u1");
        (!hits.is_empty()).then_some(hits)
    })
    .await;
    let got: Vec<Value> = u1.iter().map(|h| h.json()).collect();
    assert_eq!(
        got,
        vec![json!({"call_id": "call-u-1", "user_uuid": "u-1"})],
        "exactly the event's data"
    );
    wait_for(
        WAIT,
        "both calls at the unnarrowed subscription",
        || async {
            let calls: Vec<Value> = receiver
                .hits_at("/all")
                .iter()
                .map(|h| h.json())
                .filter(|b| b.get("call_id").is_some())
                .collect();
            (calls.len() == 2).then_some(())
        },
    )
    .await;
    // Everything settled: the narrowed ones got nothing else.
    for sub in &subs {
        wait_for(WAIT, "every delivery settled", || async {
            let ds = api.deliveries(sub).await;
            ds.iter().all(|d| d["status"] == "succeeded").then_some(())
        })
        .await;
    }
    assert_eq!(
        receiver.hits_at("/u1").len(),
        1,
        "only u-1's call reaches the u-1 subscription"
    );
    let me: Vec<Value> = receiver.hits_at("/me").iter().map(|h| h.json()).collect();
    assert_eq!(
        me,
        vec![json!({"call_id": "call-u-1", "user_uuid": "u-1"})],
        "a user's own subscription gets only its user's events"
    );
    assert!(
        receiver.hits_at("/other-wazo").is_empty(),
        "another wazo's subscription gets nothing"
    );
    let event = events_named(&api, "call_ended")
        .await
        .into_iter()
        .find(|e| e["data"]["call_id"] == "call-u-1")
        .unwrap();
    assert_eq!(event["origin"], "w-1");
    assert_eq!(event["attributes"]["user_uuid:u-1"], "true");
    assert_eq!(event["attributes"]["tenant_uuid"], "t-1");

    // No subscription asks for call_ended any more: unbound. A subscription to user_created
    // (bound in the same pass that unbinds) tells when the pass has run.
    for sub in &subs {
        let r = reqwest::Client::new()
            .delete(format!("{}/1.0/subscriptions/{sub}", servers[0].base))
            .header("x-auth-token", crate::util::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    wazo(
        json!({"name": "users", "service": "http", "events": ["user_created"],
        "config": {"url": receiver.at("/users"), "method": "post"}}),
    )
    .await;
    let before = events_named(&api, "call_ended").await.len();
    let mut probe = 0;
    wait_for(WAIT, "user_created bound", || {
        probe += 1;
        let (channel, exchange, api) = (&channel, &exchange, &api);
        async move {
            publish_bus(
                channel,
                exchange,
                "call_ended",
                "u-1",
                json!({"late": probe}),
            )
            .await;
            publish_bus(
                channel,
                exchange,
                "user_created",
                "u-1",
                json!({"probe": probe}),
            )
            .await;
            (!events_named(api, "user_created").await.is_empty()).then_some(())
        }
    })
    .await;
    // Once a user_created arrived, the follower that bound it had unbound call_ended first: a
    // call_ended sent now, before a last user_created that arrives, is not taken.
    publish_bus(
        &channel,
        &exchange,
        "call_ended",
        "u-1",
        json!({"late": "after"}),
    )
    .await;
    publish_bus(
        &channel,
        &exchange,
        "user_created",
        "u-1",
        json!({"probe": "last"}),
    )
    .await;
    wait_for(WAIT, "the last user_created", || async {
        events_named(&api, "user_created")
            .await
            .iter()
            .any(|e| e["data"]["probe"] == "last")
            .then_some(())
    })
    .await;
    let late: Vec<Value> = events_named(&api, "call_ended")
        .await
        .into_iter()
        .filter(|e| e["data"]["late"] == "after")
        .collect();
    assert!(
        late.is_empty(),
        "call_ended is still bound after its last subscription went"
    );
    assert!(events_named(&api, "call_ended").await.len() >= before);
    let _ = channel
        .exchange_delete(exchange.into(), Default::default())
        .await;
    let _ = channel.queue_delete(queue.into(), Default::default()).await;
}

#[tokio::test]
#[cfg_attr(
    not(amqp_tests),
    ignore = "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
)]
async fn a_real_wazo_bus_reaches_wazo_subscriptions_sqlite() {
    a_real_wazo_bus_reaches_wazo_subscriptions(Backend::Sqlite, 1).await;
}

#[tokio::test]
#[cfg_attr(
    not(all(amqp_tests, postgres_tests)),
    ignore = "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
)]
async fn a_real_wazo_bus_reaches_wazo_subscriptions_on_two_postgres_processes() {
    if crate::util::postgres_available() {
        a_real_wazo_bus_reaches_wazo_subscriptions(Backend::Postgres, 2).await;
    }
}

broker_backends! {
    amqp_tests
        "POSTHORN_TEST_AMQP_URL is not set: the RabbitMQ tests are skipped"
        "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
        => [rabbitmq_messages_become_events, messages_sent_while_stopped_are_delivered_after_the_start];
    nats_tests
        "POSTHORN_TEST_NATS_URL is not set: the NATS tests are skipped"
        "POSTHORN_TEST_NATS_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
        => [nats_messages_become_events];
}

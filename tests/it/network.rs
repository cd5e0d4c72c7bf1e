//! Targets are checked after DNS resolution: loopback and private addresses are refused unless
//! admitted. A URL whose host is such an address (or `localhost`) is refused when the
//! subscription is written; one that only resolves there (a name, a templated URL) is refused at
//! the attempt, which is final (waiting does not change a policy) and makes no connection.

use std::time::Duration;

use serde_json::json;

use crate::util::{Backend, Receiver, Server, ServerOptions};

async fn a_loopback_target_is_refused_when_written(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        allow_loopback: false,
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    for url in [receiver.url.clone(), by_name, "http://[::1]:9/hook".into()] {
        let body = json!({"name": "n", "service": "http", "config": {"url": url}, "events": ["e"]});
        let r = api.post("/v1/subscriptions", body.clone()).await;
        assert_eq!(r.status, 422, "{url}: {}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "config.url", "{}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("loopback"), "{message}");
        assert!(message.contains("--allow-network"), "{message}");
        assert!(message.contains("--dev"), "{message}");
    }
    // A public address is fine, and a replace or a patch is checked the same way.
    let sub = api
        .subscribe("http://192.0.2.1.example.com/hook", &["e"], json!({}))
        .await;
    let id = sub["id"].as_str().unwrap();
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"config": {"url": receiver.url}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "config.url");
    assert!(receiver.hits().is_empty(), "no connection was made");
}

async fn a_target_that_resolves_to_loopback_is_final_at_the_attempt(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        allow_loopback: false,
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // The host comes from the event: known only at the attempt. The default schedule would
    // retry a network failure 5 s later; a refusal is final at once.
    let sub = api
        .subscribe(
            &format!("http://{{{{ event.data.host }}}}:{port}/hook"),
            &["e"],
            json!({}),
        )
        .await;
    let id = sub["id"].as_str().unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let event = api
            .publish(json!({"name": "e", "data": {"host": host}}))
            .await;
        let event_id = event["id"].as_str().unwrap();
        let dlv = crate::util::wait_for(Duration::from_secs(20), "the delivery", || async {
            let list = api
                .get(&format!("/v1/subscriptions/{id}/deliveries"))
                .await
                .body;
            list["items"]
                .as_array()?
                .iter()
                .find(|d| d["event_id"] == event_id)
                .map(|d| d["id"].as_str().unwrap().to_owned())
        })
        .await;
        let d = api
            .delivery_with_status(&dlv, "dead", Duration::from_secs(10))
            .await;
        let log = &d["attempt_log"];
        assert_eq!(log.as_array().unwrap().len(), 1, "{d}");
        assert_eq!(log[0]["outcome"], "final", "{d}");
        let error = log[0]["error"].as_str().unwrap();
        assert!(error.contains("refused target"), "{error}");
        assert!(error.contains("loopback"), "{error}");
        assert!(error.contains("--allow-network"), "{error}");
        assert_eq!(log[0]["response"], serde_json::Value::Null);
    }
    assert!(receiver.hits().is_empty(), "no connection was made");
    let logged = server.log();
    assert!(
        logged.contains(id) && logged.contains("refused by the network policy"),
        "the server log names the subscription"
    );
}

both_backends!(
    a_loopback_target_is_refused_when_written,
    a_target_that_resolves_to_loopback_is_final_at_the_attempt,
);

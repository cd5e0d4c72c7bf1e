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
    let port = receiver.port();
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

/// Credentials in a URL are refused when written, and kept out of the attempt log when a
/// template renders them.
async fn credentials_in_a_url_stay_out_of_logs(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let body = json!({"name": "n", "service": "http",
        "config": {"url": "https://user:hunter2@example.com/h"}, "events": ["e"]});
    let r = api.post("/v1/subscriptions", body).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "config.url");
    assert!(!r.body.to_string().contains("hunter2"));
    let templated = receiver.url.replace(
        "http://",
        "http://{{ event.data.user }}:{{ event.data.pw }}@",
    );
    let sub = api
        .subscribe(&templated, &["e"], json!({"retry": {"schedule_s": []}}))
        .await;
    api.publish(json!({"name": "e", "data": {"user": "u", "pw": "hunter2"}}))
        .await;
    let dlv = api
        .first_delivery(sub["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    let d = wait_for_settled(&api, &dlv).await;
    let logged = d["attempt_log"][0]["request"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // (The event's own data, in the body, holds it: that is the publisher's business.)
    assert!(
        logged.contains("***@") && !logged.contains("hunter2"),
        "{logged}"
    );
    let headers = d["attempt_log"][0]["request"]["headers"].to_string();
    assert!(!headers.contains("hunter2"), "{headers}");
}

async fn wait_for_settled(api: &crate::util::Api, id: &str) -> serde_json::Value {
    crate::util::wait_for(
        Duration::from_secs(20),
        "the delivery to settle",
        || async {
            let d = api.get(&format!("/v1/deliveries/{id}")).await.body;
            (d["status"] != "pending").then_some(d)
        },
    )
    .await
}

both_backends!(
    credentials_in_a_url_stay_out_of_logs,
    a_loopback_target_is_refused_when_written,
    a_target_that_resolves_to_loopback_is_final_at_the_attempt,
);

/// `--egress-bind` sends deliveries from the address it names (a receiver that allow-lists it
/// sees it); without it, the system chooses.
#[tokio::test]
async fn deliveries_go_out_from_the_egress_bind_address() {
    let receiver = crate::util::Receiver::start().await;
    for (bind, expected) in [(Some("127.0.0.2"), "127.0.0.2"), (None, "127.0.0.1")] {
        let server = Server::start_with(ServerOptions {
            extra: bind
                .map(|b| vec!["--egress-bind".to_owned(), b.to_owned()])
                .unwrap_or_default(),
            ..ServerOptions::default()
        })
        .await;
        let api = server.api();
        let sub = api
            .post(
                "/v1/subscriptions",
                json!({"name": "n", "service": "http", "events": [expected],
                    "config": {"url": receiver.url}}),
            )
            .await;
        assert_eq!(sub.status, 201, "{}", sub.body);
        api.publish(json!({"name": expected, "data": {}})).await;
        let hit = crate::util::wait_for(Duration::from_secs(10), "the delivery", || async {
            receiver
                .hits()
                .into_iter()
                .find(|h| h.json()["name"] == expected)
        })
        .await;
        assert_eq!(
            hit.peer.unwrap().ip().to_string(),
            expected,
            "bind {bind:?}"
        );
    }
}

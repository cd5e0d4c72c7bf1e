//! Targets are checked after DNS resolution: loopback and private addresses are refused unless
//! admitted, with a clear error in the attempt log and no connection.

use std::time::Duration;

use serde_json::json;

use crate::util::{Backend, Receiver, Server, ServerOptions};

async fn a_loopback_target_is_refused_without_allow_network(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        allow_loopback: false,
        ..ServerOptions::on(backend)
    })
    .await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    for url in [receiver.url.clone(), by_name] {
        let sub = api
            .subscribe(&url, &["e"], json!({"retry": {"schedule_s": []}}))
            .await;
        let id = sub["id"].as_str().unwrap();
        api.publish(json!({"name": "e", "data": {}})).await;
        let dlv = api.first_delivery(id, Duration::from_secs(20)).await;
        let d = api
            .delivery_with_status(&dlv, "dead", Duration::from_secs(20))
            .await;
        let error = d["attempt_log"][0]["error"].as_str().unwrap();
        assert!(error.contains("refused target"), "{error}");
        assert!(error.contains("loopback"), "{error}");
        assert!(error.contains("--allow-network"), "{error}");
        assert_eq!(d["attempt_log"][0]["response"], serde_json::Value::Null);
        api.send("DELETE", &format!("/v1/subscriptions/{id}"), None)
            .await;
    }
    assert!(receiver.hits().is_empty(), "no connection was made");
}

both_backends!(a_loopback_target_is_refused_without_allow_network,);

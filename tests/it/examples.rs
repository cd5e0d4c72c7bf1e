//! The example receivers in `examples/receivers/` verify real webhooks: each is started as a user
//! would start it, with the subscription's secret, and must accept what Posthorn sends and refuse
//! a forged or stale request.

use std::time::Duration;

use serde_json::json;

use crate::util::{free_port, wait_for, Server};

/// Where the example receivers are.
fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/receivers")
}

/// Starts `program` with `args` and the port to listen on, as the example's usage says.
async fn the_receiver_verifies(program: &str, args: &[&str]) {
    let script = args.last().copied().unwrap_or(program);
    let server = Server::start(crate::util::Backend::Sqlite).await;
    let api = server.api();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let sub = api.subscribe(&url, &["e"], json!({})).await;
    let secret = sub["secret"].as_str().unwrap();
    let id = sub["id"].as_str().unwrap();
    let mut receiver = tokio::process::Command::new(program)
        .args(args)
        .arg(port.to_string())
        .env("POSTHORN_WEBHOOK_SECRET", secret)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    let http = reqwest::Client::new();
    wait_for(
        Duration::from_secs(20),
        "the receiver to listen",
        || async { http.get(&url).send().await.ok().map(|_| ()) },
    )
    .await;
    api.publish(json!({"name": "e", "data": {"hello": "world"}}))
        .await;
    let dlv = api.first_delivery(id, Duration::from_secs(20)).await;
    let d = api
        .delivery_with_status(&dlv, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(d["attempt_log"][0]["response"]["status"], 204, "{d}");
    // A forged signature, and a genuine one replayed an hour late: refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = http
        .post(&url)
        .header("webhook-id", "evt_1")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401, "{script} accepted a forged signature");
    let log = &d["attempt_log"][0]["request"];
    let mut stale = http.post(&url).body(
        log["body"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| log.to_string()),
    );
    for h in ["webhook-id", "webhook-signature"] {
        stale = stale.header(h, log["headers"][h].as_str().unwrap());
    }
    let stale = stale
        .header("webhook-timestamp", (now - 3600).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401, "{script} accepted a stale timestamp");
    let _ = receiver.kill().await;
}

#[tokio::test]
async fn the_python_receiver_verifies_webhooks() {
    let script = examples().join("receiver.py");
    the_receiver_verifies("python3", &[script.to_str().unwrap()]).await;
}

#[tokio::test]
#[cfg_attr(
    not(node_tests),
    ignore = "node is not installed: the Node receiver example is skipped"
)]
async fn the_node_receiver_verifies_webhooks() {
    let script = examples().join("receiver.js");
    the_receiver_verifies("node", &[script.to_str().unwrap()]).await;
}

/// Built with `go build` (so that killing it kills the receiver, which `go run` would leave
/// behind), offline: the example uses the standard library alone.
#[tokio::test]
#[cfg_attr(
    not(go_tests),
    ignore = "go is not installed: the Go receiver example is skipped"
)]
async fn the_go_receiver_verifies_webhooks() {
    let out = tempfile::tempdir().unwrap();
    let binary = out.path().join("receiver");
    let built = tokio::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(examples().join("go"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .await
        .unwrap();
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    the_receiver_verifies(binary.to_str().unwrap(), &[]).await;
}

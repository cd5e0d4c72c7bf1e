//! The command line against a running server, as a person or a script uses it: the exit code,
//! what it prints, and what the server and the receiver saw.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::util::{wait_for, Answer, Backend, Receiver, Server, TOKEN};

/// What a `posthorn` command did.
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// `posthorn ARGS` with the server's URL and the admin token in the environment.
pub(crate) async fn cli(server: &Server, args: &[&str]) -> Run {
    cli_with(&server.base, Some(TOKEN), args, None).await
}

pub(crate) async fn cli_with(
    url: &str,
    token: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_posthorn"));
    cmd.args(args)
        .env("POSTHORN_URL", url)
        .env_remove("POSTHORN_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("POSTHORN_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run posthorn");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command ends")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn subscriptions_from_the_command_line(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    // An empty list says so, and how to make the first.
    let empty = cli(&server, &["subscriptions", "list"]).await;
    assert!(
        empty
            .stdout
            .starts_with("no subscriptions yet: `posthorn subscriptions create"),
        "{}",
        empty.stdout
    );
    let created = cli(
        &server,
        &[
            "subscriptions",
            "create",
            "--target-url",
            &receiver.url,
            "--events",
            "order.*,refund.created",
            "--filter",
            "amount > 5",
            "--retry-schedule",
            "5,30",
            "--json",
        ],
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let sub = created.json();
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(sub["events"], json!(["order.*", "refund.created"]));
    assert_eq!(sub["retry"]["schedule_s"], json!([5, 30]));
    assert!(sub["secret"].as_str().unwrap().starts_with("whsec_"));

    let list = cli(&server, &["subscriptions", "list"]).await;
    assert_eq!(list.code, 0);
    assert!(
        list.stdout.contains(&id) && list.stdout.contains("active"),
        "{}",
        list.stdout
    );

    let shown = cli(&server, &["subscriptions", "show", &id]).await;
    assert!(
        shown.stdout.contains("filter:  amount > 5"),
        "{}",
        shown.stdout
    );
    assert!(
        !shown.stdout.contains("whsec_"),
        "the secret is shown on create only"
    );

    let updated = cli(
        &server,
        &[
            "subscriptions",
            "update",
            &id,
            "--set",
            r#"{"filter": null, "name": "orders"}"#,
            "--json",
        ],
    )
    .await;
    assert_eq!(updated.code, 0, "{}", updated.stderr);
    assert_eq!(updated.json()["filter"], Value::Null);
    assert_eq!(updated.json()["name"], "orders");

    let disabled = cli(&server, &["subscriptions", "disable", &id, "--json"]).await;
    assert_eq!(disabled.json()["status"], "disabled");
    let test = cli(&server, &["subscriptions", "test", &id]).await;
    assert_eq!(test.code, 1, "a disabled subscription cannot be tested");
    assert!(test.stderr.contains("Conflict (409)"), "{}", test.stderr);
    let enabled = cli(&server, &["subscriptions", "enable", &id, "--json"]).await;
    assert_eq!(enabled.json()["status"], "active");
    let test = cli(&server, &["subscriptions", "test", &id]).await;
    assert_eq!(test.code, 0, "{}", test.stderr);
    let hits = receiver.wait_hits(1, Duration::from_secs(10)).await;
    assert_eq!(hits[0].header("posthorn-event"), "posthorn.ping");

    let rotated = cli(&server, &["subscriptions", "rotate-secret", &id, "--json"]).await;
    assert_ne!(rotated.json()["secret"], sub["secret"]);

    let deleted = cli(&server, &["subscriptions", "delete", &id]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let gone = cli(&server, &["subscriptions", "show", &id]).await;
    assert_eq!(gone.code, 5);
    assert!(gone.stderr.contains("Not found (404)"), "{}", gone.stderr);

    // From a whole JSON document on standard input.
    let doc = json!({"name": "from-file", "service": "http", "config": {"url": receiver.url}, "events": ["a"]});
    let from = cli_with(
        &server.base,
        Some(TOKEN),
        &["subscriptions", "create", "--from", "@-", "--json"],
        Some(&doc.to_string()),
    )
    .await;
    assert_eq!(from.code, 0, "{}", from.stderr);
    assert_eq!(from.json()["name"], "from-file");
}

async fn errors_are_clear_with_exit_codes(backend: Backend) {
    let server = Server::start(backend).await;
    // A wrong token.
    let denied = cli_with(
        &server.base,
        Some("not-the-token-at-all"),
        &["subscriptions", "list"],
        None,
    )
    .await;
    assert_eq!(denied.code, 4);
    assert!(
        denied.stderr.contains("Unauthorized (401)"),
        "{}",
        denied.stderr
    );
    assert!(!denied.stderr.contains("not-the-token-at-all"));
    assert!(
        denied.stderr.contains("POSTHORN_TOKEN") && denied.stderr.contains("posthorn admin-token"),
        "the way to a token: {}",
        denied.stderr
    );
    // No token.
    assert_eq!(
        cli_with(&server.base, None, &["deliveries", "list"], None)
            .await
            .code,
        4
    );
    // An unknown id.
    let missing = cli(&server, &["deliveries", "show", "dlv_nothing"]).await;
    assert_eq!(missing.code, 5);
    // Invalid JSON, refused before anything is sent.
    let bad = cli(&server, &["publish", "order.paid", "--data", "{amount: 1}"]).await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("--data is not JSON"), "{}", bad.stderr);
    // What the server refuses, with its field messages.
    let refused = cli(
        &server,
        &[
            "subscriptions",
            "create",
            "--target-url",
            "ftp://example.com/x",
            "--events",
            "a",
            "--filter",
            "a =",
        ],
    )
    .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("Unprocessable") || refused.stderr.contains("(422)"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("config.url"), "{}", refused.stderr);
    assert!(refused.stderr.contains("filter"), "{}", refused.stderr);
    // The reserved prefix.
    let reserved = cli(&server, &["publish", "posthorn.ping", "--data", "{}"]).await;
    assert_eq!(reserved.code, 1);
    assert!(reserved.stderr.contains("name"), "{}", reserved.stderr);
    // No server.
    let port = crate::util::free_port();
    let down = cli_with(
        &format!("http://127.0.0.1:{port}"),
        Some(TOKEN),
        &["subscriptions", "list"],
        None,
    )
    .await;
    assert_eq!(down.code, 3);
    assert!(
        down.stderr.contains("cannot reach") && down.stderr.contains("refused"),
        "{}",
        down.stderr
    );
    // The command line itself wrong: clap's code.
    assert_eq!(cli(&server, &["subscriptions", "frobnicate"]).await.code, 2);
}

async fn publish_a_file_of_events(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    server
        .api()
        .subscribe(&receiver.url, &["order.paid"], json!({}))
        .await;
    let put = cli(
        &server,
        &[
            "event-types",
            "put",
            "order.paid",
            "--description",
            "An order was paid",
            "--schema",
            r#"{"type":"object","required":["amount"]}"#,
            "--example",
            r#"{"amount": 3}"#,
        ],
    )
    .await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert!(put.stdout.contains("order.paid"));
    let types = cli(&server, &["event-types", "list", "--json"]).await;
    assert_eq!(types.json()["items"][0]["name"], "order.paid");

    let mut lines = Vec::new();
    for i in 0..250 {
        lines.push(match i {
            17 => "{not json".to_owned(),
            // Refused by the server: the schema wants an amount.
            140 => json!({"note": "no amount"}).to_string(),
            _ => json!({"amount": i}).to_string(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let run = cli(
        &server,
        &[
            "publish",
            "order.paid",
            "--file",
            file.to_str().unwrap(),
            "--batch",
            "50",
        ],
    )
    .await;
    assert_eq!(
        run.code, 1,
        "two lines refused: {}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout
            .contains("published 248 events (0 duplicates, 2 refused)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("248 deliveries"), "{}", run.stdout);
    assert!(run.stderr.contains("line 18: not JSON"), "{}", run.stderr);
    assert!(run.stderr.contains("line 141: data"), "{}", run.stderr);
    receiver.wait_hits(248, Duration::from_secs(30)).await;

    // Whole events on standard input, for scripts: JSON summary.
    let events = [
        json!({"name": "order.paid", "data": {"amount": 1}, "id": "fixed-1"}),
        json!({"name": "order.paid", "data": {"amount": 1}, "id": "fixed-1"}),
    ]
    .map(|e| e.to_string())
    .join("\n");
    let piped = cli_with(
        &server.base,
        Some(TOKEN),
        &["publish", "--file", "-", "--json"],
        Some(&events),
    )
    .await;
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert_eq!(piped.json()["published"], 1);
    assert_eq!(piped.json()["duplicates"], 1);

    let one = cli(
        &server,
        &[
            "publish",
            "order.paid",
            "--data",
            r#"{"amount": 9}"#,
            "--json",
        ],
    )
    .await;
    assert_eq!(one.code, 0);
    assert_eq!(one.json()["deliveries"], 1);
    let deleted = cli(&server, &["event-types", "delete", "order.paid"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
}

async fn deliveries_retry_and_recover(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(500));
    let api = server.api();
    let sub = api
        .subscribe(
            &receiver.url,
            &["job.done"],
            json!({"name": "Jobs hook", "retry": {"schedule_s": []}}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for i in 0..3 {
        api.publish(json!({"name": "job.done", "data": {"i": i}}))
            .await;
    }
    let dead = wait_for(Duration::from_secs(10), "three dead deliveries", || async {
        let run = cli(
            &server,
            &[
                "deliveries",
                "list",
                "--subscription",
                sub_id,
                "--status",
                "dead",
                "--json",
            ],
        )
        .await;
        let items = run.json()["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 3).then_some(items)
    })
    .await;
    let first = dead[0]["id"].as_str().unwrap();
    let table = cli(&server, &["deliveries", "list", "--subscription", sub_id]).await;
    assert!(
        table.stdout.contains(first) && table.stdout.contains("dead"),
        "{}",
        table.stdout
    );
    // The subscription is named by its name.
    assert!(
        table.stdout.contains("Jobs hook") && !table.stdout.contains(sub_id),
        "{}",
        table.stdout
    );
    let shown = cli(&server, &["deliveries", "show", first]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("attempt 1"), "{}", shown.stdout);
    assert!(shown.stdout.contains("← 500"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("\"job.done\""),
        "the request body, pretty: {}",
        shown.stdout
    );

    // The receiver is fixed: a retry succeeds.
    receiver.answer_by_default(Answer::status(204));
    let retried = cli(&server, &["deliveries", "retry", first]).await;
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    api.delivery_with_status(first, "succeeded", Duration::from_secs(10))
        .await;

    // The other two come back with recover, which follows them until delivered.
    let recovered = cli(&server, &["recover", sub_id, "--since", &since]).await;
    assert_eq!(recovered.code, 0, "{}", recovered.stderr);
    assert!(
        recovered.stdout.contains("requeued 2 dead deliveries"),
        "{}",
        recovered.stdout
    );
    let left = cli(
        &server,
        &[
            "deliveries",
            "list",
            "--subscription",
            sub_id,
            "--status",
            "dead",
            "--json",
        ],
    )
    .await;
    assert_eq!(left.json()["items"], json!([]));
    let bad_time = cli(&server, &["recover", sub_id, "--since", "yesterday"]).await;
    assert_eq!(bad_time.code, 1);
    assert!(bad_time.stderr.contains("since"), "{}", bad_time.stderr);
}

async fn applications_from_the_command_line(backend: Backend) {
    let server = Server::start(backend).await;
    let created = cli(
        &server,
        &[
            "applications",
            "create",
            "Acme CRM",
            "--scopes",
            "subscriptions,publish",
            "--json",
        ],
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let app = created.json();
    let id = app["id"].as_str().unwrap();
    assert!(app["client_secret"].is_string());
    let list = cli(&server, &["applications", "list"]).await;
    assert!(
        list.stdout.contains("Acme CRM") && list.stdout.contains("subscriptions,publish"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains(app["client_secret"].as_str().unwrap()));
    let rotated = cli(&server, &["applications", "rotate-secret", id, "--json"]).await;
    assert_ne!(rotated.json()["client_secret"], app["client_secret"]);
    assert_eq!(cli(&server, &["applications", "show", id]).await.code, 0);
    assert_eq!(cli(&server, &["applications", "delete", id]).await.code, 0);
    assert_eq!(cli(&server, &["applications", "show", id]).await.code, 5);
}

/// `posthorn listen` as the receiver: it verifies, prints and forwards real webhooks, and
/// refuses forged and stale ones.
#[tokio::test]
async fn listen_verifies_prints_and_forwards() {
    let server = Server::start(Backend::Sqlite).await;
    let app = Receiver::start().await;
    app.answer_by_default(Answer::status(202));
    let api = server.api();
    // A subscription first, for its secret; pointed at the listener once it runs.
    let sub = api
        .subscribe("http://127.0.0.1:9/", &["order.paid"], json!({}))
        .await;
    let secret = sub["secret"].as_str().unwrap();
    let mut listener = Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args([
            "listen",
            "--port",
            "0",
            "--secret",
            secret,
            "--forward",
            &app.at("/app"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(listener.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = out.next_line().await {
            seen.lock().unwrap().push(l);
        }
    });
    let id = sub["id"].as_str().unwrap();
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"config": {"url": format!("{url}hook")}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let event = api
        .publish(json!({"name": "order.paid", "data": {"amount": 42}}))
        .await;
    let hits = app.wait_hits(1, Duration::from_secs(10)).await;
    assert_eq!(hits[0].path, "/app");
    assert_eq!(hits[0].json()["data"]["amount"], 42);
    assert_eq!(hits[0].header("webhook-id"), event["id"].as_str().unwrap());
    // Posthorn saw the application's answer.
    let delivery = api.first_delivery(id, Duration::from_secs(5)).await;
    let d = api
        .delivery_with_status(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(d["attempt_log"][0]["response"]["status"], 202);
    let printed = wait_for(Duration::from_secs(5), "the webhook printed", || async {
        let all = lines.lock().unwrap().join("\n");
        all.contains("\"amount\": 42").then_some(all)
    })
    .await;
    assert!(
        printed.contains(&format!(
            "✓ order.paid /hook  id {}  attempt 1",
            event["id"].as_str().unwrap()
        )),
        "{printed}"
    );
    assert!(printed.contains("forwarded to"), "{printed}");

    // Forged: signed with another secret.
    let body = br#"{"forged":true}"#;
    let now = chrono::Utc::now().timestamp();
    let other = posthorn_secret();
    let forged = post_signed(&url, &other, "msg_forged", now, body).await;
    assert_eq!(forged, 401);
    // Stale: the right secret, ten minutes old.
    let stale = post_signed(&url, secret, "msg_stale", now - 600, body).await;
    assert_eq!(stale, 401);
    let fresh = post_signed(&url, secret, "msg_fresh", now, body).await;
    assert_eq!(fresh, 202, "forwarded, with the application's status");
    let printed = wait_for(Duration::from_secs(5), "the refusals printed", || async {
        let all = lines.lock().unwrap().join("\n");
        all.contains("away from now").then_some(all)
    })
    .await;
    assert!(
        printed.contains("✗ POST /hook rejected: no v1 signature matches"),
        "{printed}"
    );
    // Only the real ones reached the application.
    assert_eq!(app.hits().len(), 2);
}

fn posthorn_secret() -> String {
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()
}

/// POSTs `body` to the listener signed as Standard Webhooks does; returns the status.
async fn post_signed(url: &str, secret: &str, id: &str, ts: i64, body: &[u8]) -> u16 {
    use base64::Engine;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    reqwest::Client::new()
        .post(format!("{url}hook"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", format!("v1,{sig}"))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `posthorn verify` on a request saved from a real delivery, and on a tampered copy.
#[tokio::test]
async fn verify_a_saved_request() {
    let server = Server::start(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let sub = server
        .api()
        .subscribe(&receiver.url, &["saved"], json!({}))
        .await;
    server
        .api()
        .publish(json!({"name": "saved", "data": {"x": 1}}))
        .await;
    let hit = receiver
        .wait_hits(1, Duration::from_secs(10))
        .await
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers.txt");
    let mut text = String::from("POST /hook HTTP/1.1\r\n");
    for (k, v) in &hit.headers {
        text.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
    }
    std::fs::write(&headers, text).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, &hit.body).unwrap();
    let secret = sub["secret"].as_str().unwrap();
    let args = |b: &std::path::Path| {
        vec![
            "verify".to_owned(),
            "--secret".into(),
            secret.to_owned(),
            "--headers".into(),
            headers.to_str().unwrap().to_owned(),
            "--body".into(),
            b.to_str().unwrap().to_owned(),
        ]
    };
    let run = |a: Vec<String>| async move {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cli_with("http://127.0.0.1:9", None, &a, None).await
    };
    let ok = run(args(&body)).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("valid:"), "{}", ok.stdout);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(
        &tampered,
        String::from_utf8_lossy(&hit.body).replace("\"x\":1", "\"x\":2"),
    )
    .unwrap();
    let bad = run(args(&tampered)).await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("invalid: no v1 signature matches"),
        "{}",
        bad.stderr
    );
    // Headers as a JSON object work too; a tolerance makes an old request stale.
    let as_json: serde_json::Map<String, Value> = hit
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap().to_owned())))
        .collect();
    std::fs::write(&headers, Value::Object(as_json).to_string()).unwrap();
    assert_eq!(run(args(&body)).await.code, 0);
    let mut strict = args(&body);
    strict.extend(["--tolerance-s".into(), "0".into()]);
    // Until the saved timestamp is in the past, the request is not stale yet.
    let signed_at: i64 = hit.header("webhook-timestamp").parse().unwrap();
    wait_for(
        Duration::from_secs(5),
        "a second past the signature",
        || async { (chrono::Utc::now().timestamp() > signed_at).then_some(()) },
    )
    .await;
    let stale = run(strict).await;
    assert_eq!(stale.code, 1);
    assert!(stale.stderr.contains("away from now"), "{}", stale.stderr);
}

#[tokio::test]
async fn version_and_completions() {
    let v = cli_with("http://127.0.0.1:9", None, &["--version"], None).await;
    assert_eq!(v.code, 0);
    assert_eq!(
        v.stdout.trim(),
        concat!("posthorn ", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let c = cli_with("http://127.0.0.1:9", None, &["completions", shell], None).await;
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert!(
            c.stdout.contains("subscriptions") && c.stdout.contains("listen"),
            "{shell}"
        );
    }
}

both_backends!(
    subscriptions_from_the_command_line,
    errors_are_clear_with_exit_codes,
    publish_a_file_of_events,
    deliveries_retry_and_recover,
    applications_from_the_command_line
);

/// The endpoint's access from the command line: `create` with `--proxy`, the OAuth2 flags and a
/// client certificate, secrets from files; `show` says each, secrets never; `update` changes one
/// and keeps the rest. The proxy set this way carries the deliveries.
#[tokio::test]
async fn endpoint_access_from_the_command_line() {
    let server = Server::start(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let proxy =
        crate::proxy::TestProxy::start(crate::proxy::Kind::Connect, Some(("cli", "pr0xy-pw")))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let identity = rcgen::generate_simple_self_signed(vec!["posthorn-client".into()]).unwrap();
    let certificate = write("client.pem", &identity.cert.pem());
    let key = write("client.key", &identity.key_pair.serialize_pem());
    let secret = write("secret", "cl1ent-s3cret\n");
    let proxy_url = write(
        "proxy",
        &format!("http://cli:pr0xy-pw@127.0.0.1:{}\n", proxy.port),
    );
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let run = cli(
        &server,
        &[
            "subscriptions",
            "create",
            "--target-url",
            &by_name,
            "--events",
            "locked",
            "--proxy",
            &format!("@{proxy_url}"),
            "--client-certificate",
            &certificate,
            "--client-key",
            &key,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("client certificate: expires "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "proxy:   http://cli:********@127.0.0.1:{}",
            proxy.port
        )),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("pr0xy-pw") && !run.stdout.contains("PRIVATE KEY"),
        "{}",
        run.stdout
    );
    let id = run
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sub_"))
        .unwrap()
        .to_owned();

    // The deliveries go through the proxy the flag named.
    server
        .api()
        .publish(json!({"name": "locked", "data": {}}))
        .await;
    wait_for(Duration::from_secs(15), "the delivery", || async {
        receiver.hits().into_iter().next()
    })
    .await;
    assert_eq!(proxy.asked(), [format!("localhost:{}", receiver.port())]);

    // OAuth2 added by `update`, the secret from a file; the proxy and the certificate kept.
    let run = cli(
        &server,
        &[
            "subscriptions",
            "update",
            &id,
            "--oauth2-token-url",
            "https://sso.example.com/token",
            "--oauth2-client-id",
            "posthorn",
            "--oauth2-client-secret",
            &format!("@{secret}"),
            "--oauth2-scope",
            "webhooks",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "oauth2:  client posthorn at https://sso.example.com/token (secret write-only)"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("cl1ent-s3cret"), "{}", run.stdout);
    let shown = cli(&server, &["subscriptions", "--json", "show", &id])
        .await
        .json();
    let config = &shown["config"];
    assert_eq!(config["oauth2"]["client_secret"], "********", "{config}");
    assert_eq!(config["oauth2"]["scope"], "webhooks", "{config}");
    assert_eq!(
        config["client_certificate"]["private_key"], "********",
        "{config}"
    );
    assert!(
        config["proxy"].as_str().unwrap().contains("********"),
        "{config}"
    );
    assert!(shown["credential_expires_at"].is_string(), "{shown}");
    let holding = server.database_files_holding("cl1ent-s3cret");
    assert!(holding.is_empty(), "the client secret in {holding:?}");

    // A flag's mistake is the server's answer, on the field.
    let run = cli(
        &server,
        &["subscriptions", "update", &id, "--proxy", "ftp://x:1"],
    )
    .await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("config.proxy"), "{}", run.stderr);
    let run = cli(&server, &["subscriptions", "update", &id]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("--set"), "{}", run.stderr);
}

/// `posthorn feed`: prints what waits in a poll subscription's feed, verifies each entry with
/// `--secret`, acknowledges what it printed; a wrong secret stops it, nothing acknowledged.
#[tokio::test]
async fn feed_from_the_command_line() {
    let server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"name": "pulled", "service": "poll", "config": {}, "events": ["order.*"]}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let id = sub.body["id"].as_str().unwrap().to_owned();
    let secret = sub.body["secret"].as_str().unwrap().to_owned();
    for n in 0..3 {
        api.publish(json!({"name": "order.paid", "data": {"n": n}}))
            .await;
    }
    // A wrong secret: refused, exit 1, nothing acknowledged.
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let run = cli(&server, &["feed", &id, "--once", "--secret", wrong]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("does not verify"), "{}", run.stderr);
    // The right one: three lines, in order, then acknowledged.
    let run = cli(
        &server,
        &["feed", &id, "--once", "--json", "--secret", &secret],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let ns: Vec<i64> = run
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [0, 1, 2]);
    let left = api.get(&format!("/v1/subscriptions/{id}/feed")).await.body;
    assert_eq!(left["items"], json!([]), "acknowledged");
    // Following: an event published while it waits is printed as it comes.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(["feed", &id])
        .env("POSTHORN_URL", &server.base)
        .env("POSTHORN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    api.publish(json!({"name": "order.shipped", "data": {"n": 3}}))
        .await;
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("printed as it comes")
        .unwrap()
        .unwrap();
    assert!(line.contains("order.shipped"), "{line}");
    let _ = follow.kill().await;
}

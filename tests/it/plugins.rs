//! External plugins: `[[services]]` commands run once per attempt, in any language — listed with
//! their schema, their config checked against it, their exit status the verdict (0, 75, other),
//! their output in the attempt log, killed with their process group at the deadline.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{attempt_outcomes, Api, Backend, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

/// A plugin whose `config.mode` says what it does: `ok`, `retry` (exit 75), `fail` (exit 1 after
/// a word on stderr), `hang` (sleeps, beside a child of its own whose pid it writes down).
const SCRIPTED: &str = r#"
import json, os, subprocess, sys, time
request = json.load(sys.stdin)
mode = request["config"]["mode"]
out = os.environ["PLUGIN_OUT"]
with open(os.path.join(out, request["delivery"]["id"] + ".json"), "w") as f:
    json.dump(request, f)
if mode == "ok":
    print("done")
elif mode == "retry":
    print("busy, later", file=sys.stderr)
    sys.exit(75)
elif mode == "fail":
    print("boom: the mail server refused", file=sys.stderr)
    sys.exit(1)
else:
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(out, "grandchild.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
"#;

async fn setup(backend: Backend) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scripted.py"), SCRIPTED).unwrap();
    let example = format!("{}/examples/plugins/sleep.py", env!("CARGO_MANIFEST_DIR"));
    let config = format!(
        r#"
[[services]]
name = "example"
description = "Sleeps config.sleep_time seconds"
command = ["python3", "{example}"]
timeout_ms = 30000
config_schema = {{ type = "object", required = ["sleep_time"], properties = {{ sleep_time = {{ type = "number" }} }} }}

[[services]]
name = "scripted"
description = "Does what config.mode says"
command = ["python3", "{scripted}"]
timeout_ms = 1000
env = {{ PLUGIN_OUT = "{out}" }}
config_schema = {{ type = "object", required = ["mode"], properties = {{ mode = {{ enum = ["ok", "retry", "fail", "hang"] }} }} }}
"#,
        scripted = dir.path().join("scripted.py").display(),
        out = dir.path().display(),
    );
    let server = Server::start_with(ServerOptions::configured(backend, dir.path(), &config)).await;
    (server, dir)
}

async fn subscribe(api: &Api, service: &str, config: Value, retry: Value) -> String {
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": service, "service": service, "config": config, "events": ["e"], "retry": retry}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn plugins_run_as_their_exit_status_says(backend: Backend) {
    let (server, dir) = setup(backend).await;
    let api = server.api();
    let services = api.get("/v1/services").await.body;
    let names: Vec<&str> = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["http", "email", "amqp", "nats", "poll", "example", "scripted"]
    );
    let example = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "example")
        .unwrap();
    assert_eq!(example["config_schema"]["required"], json!(["sleep_time"]));
    // The schema of the entry is enforced.
    let r = api
        .post("/v1/subscriptions", json!({"name": "x", "service": "example", "config": {"sleep_time": "long"}, "events": ["e"]}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "config.sleep_time");
    // The reference page's example service, as a plugin: delivered after its sleep.
    let example = subscribe(&api, "example", json!({"sleep_time": 0.3}), json!(null)).await;
    let ok = subscribe(&api, "scripted", json!({"mode": "ok"}), json!(null)).await;
    let retry = subscribe(
        &api,
        "scripted",
        json!({"mode": "retry"}),
        json!({"schedule_s": [0, 0]}),
    )
    .await;
    let fail = subscribe(&api, "scripted", json!({"mode": "fail"}), json!(null)).await;
    let hang = subscribe(
        &api,
        "scripted",
        json!({"mode": "hang"}),
        json!({"schedule_s": []}),
    )
    .await;
    api.publish(json!({"name": "e", "data": {"user": 12}}))
        .await;

    let d = api.first_delivery(&example, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    let attempt = &d["attempt_log"][0];
    assert!(attempt["duration_ms"].as_i64().unwrap() >= 300, "{attempt}");
    assert_eq!(attempt["response"]["exit_code"], 0);
    assert!(
        attempt["response"]["stdout"]
            .as_str()
            .unwrap()
            .contains("slept 0.3 s for e"),
        "{attempt}"
    );

    let d = api.first_delivery(&ok, WAIT).await;
    api.delivery_with_status(&d, "succeeded", WAIT).await;
    let given: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{d}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(given["event"]["name"], "e");
    assert_eq!(given["event"]["data"], json!({"user": 12}));
    assert_eq!(given["delivery"], json!({"id": d, "attempt": 1}));
    assert_eq!(given["config"], json!({"mode": "ok"}));

    // 75: retried per the schedule, then dead.
    let d = api.first_delivery(&retry, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "retry", "final"]);
    assert!(
        d["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .contains("exit status 75"),
        "{d}"
    );

    // Any other status: dead at once, its stderr in the log.
    let d = api.first_delivery(&fail, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    assert_eq!(d["attempts"], 1);
    assert!(
        d["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "{d}"
    );
    assert!(
        d["attempt_log"][0]["response"]["stderr"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "{d}"
    );
    // The command line shows the command, its exit and its output.
    let shown = crate::cli::cli(&server, &["deliveries", "show", d["id"].as_str().unwrap()]).await;
    assert!(
        shown.stdout.contains("→ run python3")
            && shown.stdout.contains("← exit status 1")
            && shown.stdout.contains("stderr:")
            && shown.stdout.contains("boom: the mail server refused"),
        "{}",
        shown.stdout
    );

    // A plugin that hangs is killed at its deadline, with what it started.
    let d = api.first_delivery(&hang, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    let attempt = &d["attempt_log"][0];
    assert!(
        attempt["error"].as_str().unwrap().contains("timed out"),
        "{attempt}"
    );
    assert!(attempt["duration_ms"].as_i64().unwrap() < 5000, "{attempt}");
    let pid = std::fs::read_to_string(dir.path().join("grandchild.pid")).unwrap();
    crate::util::wait_for(
        Duration::from_secs(5),
        "the plugin's own child to be killed",
        || async {
            let state =
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            // Gone, or a zombie waiting for its parent (also killed).
            (state.is_empty() || state.contains(") Z ")).then_some(())
        },
    )
    .await;
}

/// A persistent plugin: it notes each start, then answers one request per line as
/// `config.mode` says (`garbage` answers a line that is not JSON, `exit` ends the process,
/// `hang` never answers).
const PERSISTENT: &str = r#"
import json, os, sys, time
out = os.environ["PLUGIN_OUT"]
with open(os.path.join(out, "starts"), "a") as f:
    f.write(f"{os.getpid()}\n")
for line in sys.stdin:
    request = json.loads(line)
    mode = request["config"]["mode"]
    print(f"working on {request['delivery']['id']}", file=sys.stderr, flush=True)
    if mode == "ok":
        answer = {"outcome": "success", "output": {"pid": os.getpid(), "attempt": request["delivery"]["attempt"]}}
    elif mode == "retry":
        answer = {"outcome": "retry", "error": "busy"}
    elif mode == "fail":
        answer = {"outcome": "fail", "error": "the mail server refused"}
    elif mode == "garbage":
        print("done!", flush=True)
        continue
    elif mode == "exit":
        print("giving up", file=sys.stderr, flush=True)
        sys.exit(3)
    else:
        time.sleep(60)
        continue
    print(json.dumps(answer), flush=True)
"#;

async fn persistent_plugins_keep_their_process(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("persistent.py"), PERSISTENT).unwrap();
    let config = format!(
        r#"
[[services]]
name = "kept"
command = ["python3", "{script}"]
mode = "persistent"
max_concurrent = 1
timeout_ms = 1500
env = {{ PLUGIN_OUT = "{out}" }}
config_schema = {{ type = "object", required = ["mode"], properties = {{ mode = {{ enum = ["ok", "retry", "fail", "garbage", "exit", "hang"] }} }} }}
"#,
        script = dir.path().join("persistent.py").display(),
        out = dir.path().display(),
    );
    let server = Server::start_with(ServerOptions::configured(backend, dir.path(), &config)).await;
    let api = server.api();
    let subscribe = |mode: &'static str, event: &'static str, retry: Value| {
        let api = api.clone();
        async move {
            let r = api
                .post(
                    "/v1/subscriptions",
                    json!({"name": mode, "service": "kept", "config": {"mode": mode},
                        "events": [event], "retry": retry}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let starts = || {
        std::fs::read_to_string(dir.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // Three deliveries, one process: started once, for all of them.
    let ok = subscribe("ok", "good", json!(null)).await;
    for n in 0..3 {
        api.publish(json!({"name": "good", "data": {"n": n}})).await;
    }
    let done = crate::util::wait_for(WAIT, "three successes", || async {
        let all = api.deliveries(&ok).await;
        (all.len() == 3 && all.iter().all(|d| d["status"] == "succeeded")).then_some(all)
    })
    .await;
    let mut pids = std::collections::HashSet::new();
    for d in &done {
        let d = api
            .get(&format!("/v1/deliveries/{}", d["id"].as_str().unwrap()))
            .await
            .body;
        let response = &d["attempt_log"][0]["response"];
        assert_eq!(response["outcome"], "success", "{d}");
        assert!(
            response["stderr"]
                .as_str()
                .unwrap()
                .contains(&format!("working on {}", d["id"].as_str().unwrap())),
            "each attempt's log has what the process wrote while on it: {d}"
        );
        pids.insert(response["output"]["pid"].clone());
    }
    assert_eq!(pids.len(), 1, "one process for all three: {pids:?}");
    assert_eq!(starts(), 1);

    // Each failure as the answer (or its absence) says; a broken process is replaced.
    let retry = subscribe("retry", "bad.retry", json!({"schedule_s": [0]})).await;
    let fail = subscribe("fail", "bad.fail", json!(null)).await;
    let garbage = subscribe("garbage", "bad.garbage", json!(null)).await;
    let exit = subscribe("exit", "bad.exit", json!({"schedule_s": []})).await;
    let hang = subscribe("hang", "bad.hang", json!({"schedule_s": []})).await;
    for name in [
        "bad.retry",
        "bad.fail",
        "bad.garbage",
        "bad.exit",
        "bad.hang",
    ] {
        api.publish(json!({"name": name, "data": {}})).await;
    }
    let dead = |id: String| {
        let api = api.clone();
        async move {
            let d = api.first_delivery(&id, WAIT).await;
            api.delivery_with_status(&d, "dead", WAIT).await
        }
    };
    let d = dead(retry).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "final"], "{d}");
    assert_eq!(d["attempt_log"][0]["error"], "retry later: busy");
    let d = dead(fail).await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["attempt_log"][0]["error"], "the mail server refused");
    let d = dead(garbage).await;
    assert_eq!(d["attempts"], 1, "a malformed answer is final: {d}");
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("not {\"outcome\""), "{error}");
    assert_eq!(d["attempt_log"][0]["response"]["answer"], "done!");
    let d = dead(exit).await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("ended without answering")
            && error.contains("exit status 3")
            && error.contains("giving up"),
        "{error}"
    );
    let d = dead(hang).await;
    let attempt = &d["attempt_log"][0];
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1500 ms"),
        "{attempt}"
    );

    // Whatever broke, the next delivery gets a working process.
    api.publish(json!({"name": "good", "data": {"n": 4}})).await;
    crate::util::wait_for(WAIT, "a fourth success", || async {
        let all = api.deliveries(&ok).await;
        (all.len() == 4 && all.iter().all(|d| d["status"] == "succeeded")).then_some(())
    })
    .await;
    assert!(starts() >= 2 && starts() <= 5, "{} starts", starts());
}

both_backends!(
    plugins_run_as_their_exit_status_says,
    persistent_plugins_keep_their_process,
);

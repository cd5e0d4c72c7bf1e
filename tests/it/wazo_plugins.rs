//! A wazo-webhookd service plugin runs unchanged: the reference page's example package, exactly
//! as written there, installed into a virtual environment beside `posthorn-wazo-plugin`, is a
//! Posthorn delivery service; a variant that raises is retried or dead as wazo would have it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::util::{attempt_outcomes, Backend, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

/// The files of the reference page (`setup.py`, `example_service/plugin.py`), verbatim.
const SETUP_PY: &str = r#"from setuptools import setup
from setuptools import find_packages

setup(
    name='wazo-webhookd-service-example',
    version='1.0',
    packages=find_packages(),
    entry_points={
    'wazo_webhookd.services': [
            # * "example" is the name of the service.
            #   It will be used when creating a subscription.
            # * "example_service" is the name of the directory above,
            #   the one that contains plugin.py
            # * "plugin" is the name of the above file "plugin.py"
            # * "Service" is the name of the class shown below
            'example = example_service.plugin:Service',
        ]
    }
)
"#;

const PLUGIN_PY: &str = r#"import time

class Service:

    def load(self, dependencies):
        celery_app = dependencies['celery']

        @celery_app.task
        def example_callback(options, event):
            '''
            * "options" contains the options configured by the subscription,
              e.g. for http: the url, the method, the body, etc.
            * "event" contains the Wazo event that triggered the webhook.
              "event" is of the form:
              {
                  "name": "user_created",
                  "origin_uuid": "the UUID of the Wazo server that sent the event",
                  "data": {
                    "id": 12,  # the ID of the user that was created
                  }
              }
            '''
            tired = options['sleep_time']
            time.sleep(tired)

        self._callback = example_callback

    def callback(self):
        return self._callback
"#;

/// A variant: a bound task that asks for a retry when told to, and raises otherwise.
const FLAKY_PY: &str = r#"
class Service:
    def load(self, dependencies):
        celery_app = dependencies['celery']

        @celery_app.task(bind=True, max_retries=10)
        def flaky_callback(task, options, event):
            if options['mode'] == 'retry':
                raise task.retry(exc=ConnectionError('the PBX is restarting'))
            raise ValueError('no such user: %s' % event['data']['id'])

        self._callback = flaky_callback

    def callback(self):
        return self._callback
"#;

/// Today's form, as wazo-webhookd's own `http` service is written: `load()` and a class method
/// `run(task, config, subscription, event)` returning the request's details, raising `HookRetry`
/// or `HookExpectedError` with details.
const MODERN_PY: &str = r#"
import os

from wazo_webhookd.services.helpers import HookExpectedError, HookRetry


class Service:
    loads = 0

    def load(self, dependencies):
        Service.loads += 1

    @classmethod
    def run(cls, task, config, subscription, event):
        options = subscription['config']
        detail = {'request_method': 'POST', 'request_url': options['url'],
                  'request_body': event['data'], 'response_status_code': None,
                  'attempt': task.request.retries + 1, 'max': config['hook_max_attempts'],
                  'subscription': subscription['uuid'], 'pid': os.getpid(), 'loads': cls.loads}
        if options['mode'] == 'retry':
            raise HookRetry(dict(detail, error='the PBX is restarting'))
        if options['mode'] == 'expected':
            raise HookExpectedError(dict(detail, response_status_code=410))
        return dict(detail, response_status_code=200)
"#;

fn run(dir: &Path, program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A package of `files` installed in development mode (the reference's package has no
/// `__init__.py`: installed as a copy, its module would be left out).
fn develop(venv_python: &Path, root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    run(root, venv_python, &["setup.py", "-q", "develop"]);
}

async fn wazo_service_plugins_run_unchanged(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    run(
        dir.path(),
        Path::new("python3"),
        &["-m", "venv", venv.to_str().unwrap()],
    );
    let python = venv.join("bin/python");
    // The adapter, from a copy of the repository's folder (its build leaves files behind).
    let adapter = dir.path().join("adapter");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/wazo");
    std::fs::create_dir_all(adapter.join("posthorn_wazo_plugin")).unwrap();
    for file in ["setup.py", "posthorn_wazo_plugin/__init__.py"] {
        std::fs::copy(source.join(file), adapter.join(file)).unwrap();
    }
    run(&adapter, &python, &["setup.py", "-q", "install"]);
    develop(
        &python,
        &dir.path().join("example"),
        &[
            ("setup.py", SETUP_PY),
            ("example_service/plugin.py", PLUGIN_PY),
        ],
    );
    let flaky_setup = SETUP_PY
        .replace(
            "wazo-webhookd-service-example",
            "wazo-webhookd-service-flaky",
        )
        .replace(
            "'example = example_service.plugin:Service'",
            "'flaky = flaky_service.plugin:Service'",
        );
    develop(
        &python,
        &dir.path().join("flaky"),
        &[
            ("setup.py", &flaky_setup),
            ("flaky_service/plugin.py", FLAKY_PY),
        ],
    );
    let modern_setup = SETUP_PY
        .replace(
            "wazo-webhookd-service-example",
            "wazo-webhookd-service-modern",
        )
        .replace(
            "'example = example_service.plugin:Service'",
            "'modern = modern_service.plugin:Service'",
        );
    develop(
        &python,
        &dir.path().join("modern"),
        &[
            ("setup.py", &modern_setup),
            ("modern_service/plugin.py", MODERN_PY),
        ],
    );
    let runner = venv.join("bin/posthorn-wazo-plugin");
    let config = format!(
        r#"
[[services]]
name = "example"
description = "wazo-webhookd's example service"
command = ["{runner}", "example"]
config_schema = {{ type = "object", required = ["sleep_time"], properties = {{ sleep_time = {{ type = "number" }} }} }}

[[services]]
name = "flaky"
command = ["{runner}", "flaky"]

[[services]]
name = "modern"
command = ["{runner}", "modern"]

[[services]]
name = "modern_kept"
command = ["{runner}", "--persistent", "modern"]
mode = "persistent"
max_concurrent = 1
"#,
        runner = runner.display()
    );
    let server = Server::start_with(ServerOptions::configured(backend, dir.path(), &config)).await;
    let api = server.api();
    let names = api.service_names().await;
    assert_eq!(
        names,
        [
            "http",
            "email",
            "amqp",
            "nats",
            "poll",
            "example",
            "flaky",
            "modern",
            "modern_kept"
        ]
    );
    let subscribe = |service: &'static str, config: serde_json::Value, retry: serde_json::Value| {
        let api = api.clone();
        async move {
            let r = api
                .post(
                    "/v1/subscriptions",
                    json!({"name": service, "service": service, "config": config,
                    "events": ["user_created"], "retry": retry}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let example = subscribe("example", json!({"sleep_time": 0.5}), json!(null)).await;
    let retried = subscribe(
        "flaky",
        json!({"mode": "retry"}),
        json!({"schedule_s": [0]}),
    )
    .await;
    let raising = subscribe("flaky", json!({"mode": "raise"}), json!(null)).await;
    let modern_ok = subscribe(
        "modern",
        json!({"mode": "ok", "url": "https://pbx.example/hook"}),
        json!(null),
    )
    .await;
    let modern_retry = subscribe(
        "modern",
        json!({"mode": "retry", "url": "https://pbx.example/hook"}),
        json!({"schedule_s": [0]}),
    )
    .await;
    let modern_expected = subscribe(
        "modern",
        json!({"mode": "expected", "url": "https://pbx.example/hook"}),
        json!(null),
    )
    .await;
    // The same service kept running (`--persistent`): loaded once for every delivery.
    let mut kept = Vec::new();
    for _ in 0..2 {
        kept.push(
            subscribe(
                "modern_kept",
                json!({"mode": "ok", "url": "https://pbx.example/hook"}),
                json!(null),
            )
            .await,
        );
    }
    let kept_retry = subscribe(
        "modern_kept",
        json!({"mode": "retry", "url": "https://pbx.example/hook"}),
        json!({"schedule_s": [0]}),
    )
    .await;
    api.publish(json!({"name": "user_created", "origin": "wazo-1", "data": {"id": 12}}))
        .await;

    let d = api.first_delivery(&example, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    assert!(
        d["attempt_log"][0]["duration_ms"].as_i64().unwrap() >= 500,
        "after the sleep: {d}"
    );

    let d = api.first_delivery(&retried, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "final"], "{d}");
    assert!(
        d["attempt_log"][0]["response"]["stderr"]
            .as_str()
            .unwrap()
            .contains("the PBX is restarting"),
        "{d}"
    );

    // Today's form: run() delivers; its details are in the attempt log.
    let stdout = |d: &serde_json::Value, n: usize| -> serde_json::Value {
        serde_json::from_str(
            d["attempt_log"][n]["response"]["stdout"]
                .as_str()
                .unwrap()
                .trim(),
        )
        .unwrap_or_else(|e| panic!("details on stdout: {e}: {d}"))
    };
    let d = api.first_delivery(&modern_ok, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    let detail = stdout(&d, 0);
    assert_eq!(detail["response_status_code"], 200, "{d}");
    assert_eq!(detail["request_body"], json!({"id": 12}));
    assert_eq!(detail["subscription"], modern_ok.as_str());
    assert_eq!(
        (detail["attempt"].as_i64(), detail["max"].as_i64()),
        (Some(1), Some(10))
    );
    let d = api.first_delivery(&modern_retry, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "final"], "HookRetry is retried: {d}");
    assert_eq!(stdout(&d, 1)["attempt"], 2, "the task counts retries");
    assert_eq!(stdout(&d, 0)["error"], "the PBX is restarting");
    let d = api.first_delivery(&modern_expected, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    assert_eq!(d["attempts"], 1, "HookExpectedError is final: {d}");
    assert_eq!(stdout(&d, 0)["response_status_code"], 410);

    let mut pids = Vec::new();
    for id in &kept {
        let d = api.first_delivery(id, WAIT).await;
        let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
        let output = &d["attempt_log"][0]["response"]["output"];
        assert_eq!(output["loads"], 1, "load() once per process: {d}");
        assert_eq!(output["request_body"], json!({"id": 12}));
        pids.push(output["pid"].clone());
    }
    assert_eq!(pids[0], pids[1], "one process for both deliveries");
    let d = api.first_delivery(&kept_retry, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{d}");
    assert_eq!(
        (log[0]["outcome"].as_str(), log[1]["outcome"].as_str()),
        (Some("retry"), Some("final")),
        "{d}"
    );
    assert_eq!(log[1]["response"]["output"]["attempt"], 2, "{d}");
    assert_eq!(log[0]["error"], "retry later: the PBX is restarting");

    let d = api.first_delivery(&raising, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    assert_eq!(d["attempts"], 1);
    let stderr = d["attempt_log"][0]["response"]["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("Traceback") && stderr.contains("no such user: 12"),
        "{stderr}"
    );
}

both_backends!(wazo_service_plugins_run_unchanged,);

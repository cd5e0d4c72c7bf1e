//! The API's conventions: auth, problem+json errors naming the field, lists and cursors,
//! subscription CRUD, health and OpenAPI.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{Backend, Receiver, Server};

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_token_is_required_and_must_be_right(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    for r in [
        api.without_token().get("/v1/subscriptions").await,
        api.with_token("wrong-token-wrong-token")
            .get("/v1/subscriptions")
            .await,
        api.without_token()
            .post("/v1/events", json!({"name": "a", "data": {}}))
            .await,
    ] {
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.body["status"], 401);
    }
    assert_eq!(api.without_token().get("/healthz").await.status, 200);
    let ready = api.without_token().get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(api.get("/v1/subscriptions").await.status, 200);
}

async fn invalid_requests_are_refused_naming_the_field(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();

    let r = api
        .raw(
            "POST",
            "/v1/subscriptions",
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "x", "service": "http",
                   "config": {"url": "ftp://example.com", "timeout_ms": 0, "headers": {"Webhook-Id": "x"}},
                   "events": ["ok", "not ok"]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(
        fields(&r.body),
        [
            "config.url",
            "config.headers.Webhook-Id",
            "config.timeout_ms",
            "events[1]"
        ]
    );

    let r = api
        .post("/v1/subscriptions", json!({"name": "x", "service": "http", "config": {"url": "https://e.com", "timeout_ms": "soon"}, "events": ["a"]}))
        .await;
    assert_eq!(
        (r.status, fields(&r.body)),
        (422, vec!["config.timeout_ms".to_owned()])
    );
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"service": "http", "config": {"url": "https://e.com"}, "events": ["a"]}),
        )
        .await;
    assert_eq!((r.status, fields(&r.body)), (422, vec!["name".to_owned()]));
    let r = api
        .post("/v1/subscriptions", json!({"name": "x", "service": "pigeon", "config": {"url": "https://e.com"}, "events": []}))
        .await;
    assert_eq!(fields(&r.body), ["service", "events"]);

    let r = api
        .post("/v1/events", json!({"name": "bad name", "data": []}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(fields(&r.body), ["name", "data"]);
    for reserved in [
        "posthorn.ping",
        "POSTHORN.ping",
        "PostHorn.subscription.deleted",
    ] {
        let r = api
            .post("/v1/events", json!({"name": reserved, "data": {}}))
            .await;
        assert_eq!(
            (r.status, fields(&r.body)),
            (422, vec!["name".to_owned()]),
            "{reserved}"
        );
    }
    let r = api
        .post(
            "/v1/events",
            json!([{"name": "a", "data": {}}, {"name": "b", "data": {}, "occurred_at": "later"}]),
        )
        .await;
    assert_eq!(
        (r.status, fields(&r.body)),
        (422, vec!["[1].occurred_at".to_owned()])
    );
    let r = api.post("/v1/events", json!([])).await;
    assert_eq!(r.status, 422);
    // A rejected batch stored nothing.
    assert_eq!(api.get("/v1/events").await.body["items"], json!([]));

    let r = api
        .raw("POST", "/v1/events", "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(r.status, 415);
    let big = format!(
        "{{\"name\":\"a\",\"data\":{{\"x\":\"{}\"}}}}",
        "y".repeat(1_100_000)
    );
    let r = api
        .raw("POST", "/v1/events", "application/json", big.into_bytes())
        .await;
    assert_eq!(r.status, 413);

    assert_eq!(api.get("/v1/subscriptions/sub_nope").await.status, 404);
    assert_eq!(api.get("/v1/events/nope").await.status, 404);
    assert_eq!(api.get("/v1/deliveries/dlv_nope").await.status, 404);
    let r = api.get("/v1/subscriptions?limit=0").await;
    assert_eq!((r.status, fields(&r.body)), (422, vec!["limit".to_owned()]));
}

async fn subscriptions_are_read_replaced_patched_disabled_and_deleted(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["a"], json!({"metadata": {"survey": "1"}, "config": {"url": receiver.url, "headers": {"ftrack-secret": "s3cr3t"}}}))
        .await;
    let id = sub["id"].as_str().unwrap();
    let path = format!("/v1/subscriptions/{id}");

    let got = api.get(&path).await;
    assert_eq!(got.status, 200);
    // A credential header is write-only: shown masked.
    assert_eq!(got.body["config"]["headers"]["ftrack-secret"], "********");
    assert_eq!(got.body["owner"], "admin");
    assert!(
        got.body.get("secret").is_none(),
        "the secret is shown on create only"
    );

    let patched = api
        .send(
            "PATCH",
            &path,
            Some(&json!({"name": "renamed", "config": {"timeout_ms": 2000}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["name"], "renamed");
    assert_eq!(patched.body["config"]["timeout_ms"], 2000);
    assert_eq!(patched.body["config"]["url"], receiver.url.as_str());
    let bad = api.send("PATCH", &path, Some(&json!({"events": []}))).await;
    assert_eq!(
        (bad.status, fields(&bad.body)),
        (422, vec!["events".to_owned()])
    );
    // An unknown field is refused even as `null` (a merge would drop it silently).
    for patch in [
        json!({"": null}),
        json!({"nmae": null}),
        json!({"nmae": "x"}),
    ] {
        let bad = api.send("PATCH", &path, Some(&patch)).await;
        assert_eq!(bad.status, 422, "{patch}: {}", bad.body);
    }
    // `null` removes a key: an optional one takes its default; a required one cannot go. The
    // document says both (`null` is a value of each optional key of the patch's schema).
    let reset = api
        .send(
            "PATCH",
            &path,
            Some(&json!({"ordered": null, "enabled": null, "max_in_flight": null, "metadata": null,
                         "retry": null, "filter": null, "rate_limit_per_s": null, "order_key": null})),
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.body["ordered"], json!(false), "{}", reset.body);
    assert_eq!(reset.body["metadata"], json!({}), "{}", reset.body);
    for key in ["name", "service", "config", "events"] {
        let bad = api.send("PATCH", &path, Some(&json!({ key: null }))).await;
        assert_eq!(bad.status, 422, "{key}: {}", bad.body);
    }
    let doc = api.without_token().get("/openapi.json").await.body;
    let schema = &doc["paths"]["/v1/subscriptions/{id}"]["patch"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    for key in [
        "ordered",
        "enabled",
        "max_in_flight",
        "metadata",
        "retry",
        "filter",
    ] {
        let text = schema[key].to_string();
        assert!(text.contains("null"), "{key}: {text}");
    }
    assert!(
        !schema["name"].to_string().contains("null"),
        "{}",
        schema["name"]
    );

    let replaced = api
        .send("PUT", &path, Some(&json!({"name": "r", "service": "http", "config": {"url": receiver.url}, "events": ["b"]})))
        .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.body["events"], json!(["b"]));
    assert_eq!(replaced.body["metadata"], json!({}));
    assert_eq!(replaced.body["created_at"], sub["created_at"]);

    let off = api.post(&format!("{path}/disable"), json!({})).await;
    assert_eq!(
        (
            off.body["status"].clone(),
            off.body["disabled_reason"].clone()
        ),
        (json!("disabled"), json!("manual"))
    );
    // A disabled subscription receives no new events.
    let e = api.publish(json!({"name": "b", "data": {}})).await;
    assert_eq!(e["deliveries"], 0);
    let on = api.post(&format!("{path}/enable"), json!({})).await;
    assert_eq!(
        (
            on.body["status"].clone(),
            on.body["disabled_reason"].clone()
        ),
        (json!("active"), Value::Null)
    );

    assert_eq!(api.send("DELETE", &path, None).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.send("DELETE", &path, None).await.status, 404);
    let e = api.publish(json!({"name": "b", "data": {}})).await;
    assert_eq!(e["deliveries"], 0);
}

async fn lists_page_newest_first_and_filter(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = api
            .subscribe("https://example.com/h", &["a", "rec.*"], json!({"metadata": {"n": i.to_string(), "team": if i % 2 == 0 {"even"} else {"odd"}}}))
            .await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let first = api.get("/v1/subscriptions?limit=2").await.body;
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, ids[..2]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = api
        .get(&format!("/v1/subscriptions?limit=2&cursor={cursor}"))
        .await
        .body;
    let page: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, ids[2..4]);
    let last = api
        .get(&format!(
            "/v1/subscriptions?limit=2&cursor={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next_cursor"], Value::Null);

    let even = api.get("/v1/subscriptions?metadata=team:even").await.body;
    assert_eq!(even["items"].as_array().unwrap().len(), 3);
    let one = api
        .get("/v1/subscriptions?metadata=team:even&metadata=n:2")
        .await
        .body;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/v1/subscriptions?event=rec.x").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        api.get("/v1/subscriptions?event=other").await.body["items"],
        json!([])
    );

    for i in 0..3 {
        api.publish(json!({"name": format!("n{i}"), "data": {}}))
            .await;
    }
    let events = api.get("/v1/events?limit=2").await.body;
    assert_eq!(events["items"][0]["name"], "n2");
    let more = api
        .get(&format!(
            "/v1/events?limit=2&cursor={}",
            events["next_cursor"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(more["items"][0]["name"], "n0");
    // The events list's cursor is digits, as the document says (`+1`, `-1` were taken).
    for bad in ["-1", "%2B1", "x", "1234567890123456789"] {
        let r = api.get(&format!("/v1/events?cursor={bad}")).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
    }
    assert_eq!(
        api.get("/v1/events?name=n1").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn services_and_openapi_describe_the_api(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let services = api.get("/v1/services").await.body;
    assert_eq!(services["items"][0]["name"], "http");
    assert_eq!(
        services["items"][0]["config_schema"]["required"],
        json!(["url"])
    );
    let doc = api.without_token().get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    // Operation ids are unique, and every operation says what it does.
    let mut ids = std::collections::HashSet::new();
    for (path, ops) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            let said = op["summary"].as_str().or(op["description"].as_str());
            assert!(
                said.is_some_and(|s| !s.is_empty()),
                "{method} {path} is not described"
            );
        }
    }
    // The batch form of a publish is described.
    let publish = &doc.body["paths"]["/v1/events"]["post"];
    let schema = &publish["requestBody"]["content"]["application/json"]["schema"];
    let shapes = doc.body["components"]["schemas"]
        [schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap()]["oneOf"]
        .as_array()
        .unwrap()
        .clone();
    assert!(shapes.iter().any(|s| s["type"] == "array"), "{shapes:?}");
    // A subscription's service is one this server runs, and its config is held to that
    // service's schema, as GET /v1/services gives it.
    let spec = &doc.body["components"]["schemas"]["SubscriptionSpec"];
    let names: Vec<&str> = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        spec["properties"]["service"]["enum"],
        json!(names),
        "{spec}"
    );
    let http = spec["allOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["if"]["properties"]["service"]["const"] == "http")
        .expect("a rule for http configs");
    let (config, own) = (
        &http["then"]["properties"]["config"],
        &services["items"][0]["config_schema"],
    );
    assert_eq!(config["required"], own["required"], "{config}");
    assert_eq!(
        config["properties"].as_object().map(|p| p.len()),
        own["properties"].as_object().map(|p| p.len())
    );
    // Its own definitions are components, so every reference in the document resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc.body, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let at = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}"));
        assert!(doc.body.pointer(at).is_some(), "{r} does not resolve");
    }
    // An integer written with a fraction is that integer, as JSON Schema reads it; a fraction
    // is still refused where an integer is asked.
    let body = |n: Value| {
        json!({"name": "n", "service": "http", "config": {"url": "https://example.com/h"},
            "events": ["e"], "max_in_flight": n, "retry": {"schedule_s": [1.0, 30]}})
    };
    let r = api.post("/v1/subscriptions", body(json!(5.0))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (&r.body["max_in_flight"], &r.body["retry"]["schedule_s"]),
        (&json!(5), &json!([1, 30]))
    );
    let r = api.post("/v1/subscriptions", body(json!(5.5))).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "max_in_flight", "{}", r.body);
    // The doors' answers are described field by field, not as any object.
    let wazo = &doc.body["paths"]["/1.0/subscriptions/{id}"]["get"]["responses"]["200"];
    let shown = wazo["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(
        doc.body["components"]["schemas"][shown]["properties"]["events_user_uuid"].is_object(),
        "{wazo}"
    );
    // Every answer is described: the errors any operation may give, as problem+json.
    let list = &doc.body["paths"]["/v1/subscriptions"]["get"]["responses"];
    for status in ["400", "401", "403", "422", "500", "503"] {
        assert!(
            list[status]["content"]["application/problem+json"].is_object(),
            "{status}: {list}"
        );
    }
    let limit = doc.body["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]
        .clone();
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(1000))
    );
    // A body of the wrong shape is refused, not read as a struct's fields in order; so is an
    // event type's example that is not an object.
    let r = api
        .raw(
            "PUT",
            "/v1/event-types/shape.test",
            "application/json",
            b"[null, null]".to_vec(),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["detail"], "must be a JSON object");
    let r = api
        .send(
            "PUT",
            "/v1/event-types/shape.test",
            Some(&json!({"examples": [[1]]})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "examples[0]");
    // And a page people can read, from the binary.
    let docs = reqwest::get(format!("{}/docs", server.base)).await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = docs.text().await.unwrap();
    assert!(page.contains("/v1/subscriptions/{id}/recover") && page.contains("createSubscription"));
    assert!(
        !page.contains("<script") && !page.contains("https://"),
        "nothing fetched from elsewhere"
    );
    // Text logs have no colour codes when they go to a file.
    assert!(
        !server.log().contains('\u{1b}'),
        "colour codes in a log file"
    );
    for path in [
        "/v1/events",
        "/v1/subscriptions/{id}",
        "/v1/deliveries/{id}/retry",
        "/v1/services",
        "/v1/applications",
        "/oauth/token",
        "/api/v2/webhooks/subscribe/",
        "/1.0/subscriptions/{id}/logs",
        "/1.0/users/me/subscriptions",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
}

async fn unknown_fields_are_refused_naming_the_closest_field(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let sub = json!({"name": "n", "service": "http", "config": {"url": "https://example.com/h"},
        "events": ["e"]});
    let with = |k: &str, v: Value| {
        let mut b = sub.clone();
        b[k] = v;
        b
    };
    let expect = |r: &crate::util::Reply, field: &str, suggestion: Option<&str>| {
        assert_eq!(r.status, 422, "{}", r.body);
        let e = &r.body["errors"][0];
        assert_eq!(e["field"], field, "{}", r.body);
        if let Some(s) = suggestion {
            let m = e["message"].as_str().unwrap();
            assert!(m.contains(&format!("did you mean `{s}`?")), "{m}");
        }
    };
    // A typo for `filter` would have subscribed to everything.
    let r = api
        .post("/v1/subscriptions", with("filters", json!("a = 1")))
        .await;
    expect(&r, "filters", Some("filter"));
    let r = api
        .post(
            "/v1/subscriptions",
            with(
                "config",
                json!({"url": "https://example.com/h", "methd": "put"}),
            ),
        )
        .await;
    expect(&r, "config.methd", Some("method"));
    let r = api
        .post("/v1/subscriptions", with("retry", json!({"schedule": [1]})))
        .await;
    expect(&r, "retry.schedule", Some("schedule_s"));
    let created = api.post("/v1/subscriptions", sub.clone()).await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap();
    let r = api
        .send(
            "PUT",
            &format!("/v1/subscriptions/{id}"),
            Some(&with("evnts", json!(["x"]))),
        )
        .await;
    expect(&r, "evnts", Some("events"));
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"filtre": "a = 1"})),
        )
        .await;
    expect(&r, "filtre", Some("filter"));
    // Nothing changed.
    let now = api.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(now["filter"], Value::Null);
    let r = api
        .post(
            "/v1/events",
            json!({"name": "e", "data": {}, "tenent": "app_1"}),
        )
        .await;
    expect(&r, "tenent", Some("tenant"));
    let r = api
        .post(
            "/v1/events",
            json!([{"name": "e", "data": {}}, {"name": "e", "data": {}, "orign": "x"}]),
        )
        .await;
    expect(&r, "[1].orign", Some("origin"));
    let r = api
        .post(
            "/v1/filters/evaluate",
            json!({"filter": "a = 1", "event": {"name": "e", "data": {}}, "x": 1}),
        )
        .await;
    expect(&r, "x", None);
}

/// A filter that reads `data.…` (the delivered envelope's field, not a path inside the data) is
/// refused when written, saying what to write; the evaluator says the same beside its answer;
/// `$event.data.…` reads the data.
async fn a_filter_reading_data_dot_is_told_what_to_write(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "feeds", "service": "http", "config": {"url": "https://example.com/h"},
                "events": ["new_feed_entry"], "filter": "data.feed.title = \"x\""}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let message = r.body["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(r.body["errors"][0]["field"], "filter", "{}", r.body);
    assert!(
        message.contains("column 1") && message.contains("Write `x` (or `$event.data.x`)"),
        "{message}"
    );
    let event = json!({"name": "new_feed_entry", "data": {"feed": {"title": "x"}}});
    let r = api
        .post(
            "/v1/filters/evaluate",
            json!({"filter": "data.feed.title = \"x\"", "event": event}),
        )
        .await;
    assert_eq!(r.body["matches"], false, "{}", r.body);
    assert!(
        r.body["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("paths start inside"),
        "{}",
        r.body
    );
    for filter in ["feed.title = \"x\"", "$event.data.feed.title = \"x\""] {
        let r = api
            .post(
                "/v1/filters/evaluate",
                json!({"filter": filter, "event": event}),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["matches"]),
            (200, &json!(true)),
            "{filter}"
        );
        assert!(r.body.get("hint").is_none(), "{}", r.body);
        let r = api
            .post(
                "/v1/subscriptions",
                json!({"name": "feeds", "service": "http", "config": {"url": "https://example.com/h"},
                    "events": ["new_feed_entry"], "filter": filter}),
            )
            .await;
        assert_eq!(r.status, 201, "{filter}: {}", r.body);
    }
}

/// A stored row Posthorn cannot read (written by something else) is the server's fault: a 500
/// with a problem that says so, counted in /metrics for an alarm, and logged; not a 503 that
/// tells the client to try again.
async fn a_corrupt_row_is_a_500_and_an_alarm(backend: Backend) {
    use sqlx::Connection;
    let server = Server::start(backend).await;
    let api = server.api();
    let event = api
        .publish(json!({"name": "e", "data": {"ok": true}}))
        .await;
    let id = event["id"].as_str().unwrap();
    let update = "UPDATE events SET data = '{not json' WHERE id = $1";
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&server.database)
                .await
                .unwrap();
            sqlx::query(update).bind(id).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&server.database).await.unwrap();
            sqlx::query(update).bind(id).execute(&mut c).await.unwrap();
        }
    }
    let r = api.get(&format!("/v1/events/{id}")).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        r.body["type"], "urn:posthorn:problem:internal",
        "{}",
        r.body
    );
    // The log names the row.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("could not be read") && l.contains(id)),
        "{log}"
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(crate::util::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("posthorn_stored_data_unreadable_total") && l.ends_with(" 1")),
        "{metrics}"
    );
}

/// "Show me everything failing now" is one call, not one per subscription.
async fn every_delivery_is_listed_and_filtered(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.answer_by_default(crate::util::Answer::status(500));
    let a = api.subscribe(&ok.url, &["x", "y"], json!({})).await;
    let b = api
        .subscribe(&failing.url, &["x"], json!({"retry": {"schedule_s": []}}))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let e1 = api.publish(json!({"name": "x", "data": {}})).await;
    api.publish(json!({"name": "y", "data": {}})).await;
    let e1 = e1["id"].as_str().unwrap();
    let all = crate::util::wait_for(
        Duration::from_secs(20),
        "every delivery to settle",
        || async {
            let list = api.get("/v1/deliveries").await.body;
            let items = list["items"].as_array()?.clone();
            (items.len() == 3 && items.iter().all(|d| d["status"] != "pending")).then_some(items)
        },
    )
    .await;
    assert_eq!(all.len(), 3);
    let ids = |path: &str| {
        let api = api.clone();
        let path = path.to_owned();
        async move {
            let r = api.get(&path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["subscription_id"].as_str().unwrap().to_owned(),
                        d["event_name"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids("/v1/deliveries?status=dead").await,
        [(b.to_owned(), "x".to_owned())]
    );
    assert_eq!(
        ids("/v1/deliveries?event_name=y").await,
        [(a.to_owned(), "y".to_owned())]
    );
    assert_eq!(
        ids(&format!("/v1/deliveries?subscription_id={a}"))
            .await
            .len(),
        2
    );
    assert_eq!(
        ids(&format!("/v1/deliveries?subscription_id={a}&status=dead"))
            .await
            .len(),
        0
    );
    assert_eq!(
        ids("/v1/deliveries?since=2999-01-01T00:00:00Z").await.len(),
        0
    );
    assert_eq!(
        ids("/v1/deliveries?until=2999-01-01T00:00:00Z&limit=1")
            .await
            .len(),
        1
    );
    let mut of_event = ids(&format!("/v1/events/{e1}/deliveries")).await;
    of_event.sort();
    let mut expected = vec![
        (a.to_owned(), "x".to_owned()),
        (b.to_owned(), "x".to_owned()),
    ];
    expected.sort();
    assert_eq!(of_event, expected);
    assert_eq!(
        ids(&format!("/v1/events/{e1}/deliveries?status=succeeded"))
            .await
            .len(),
        1
    );
    let r = api.get("/v1/deliveries?since=yesterday").await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "since");
    let r = api.get("/v1/events/evt_nope/deliveries").await;
    assert_eq!(r.status, 404);
}

/// Errors outside the handlers are problem+json that say what went wrong.
async fn errors_outside_the_handlers_say_what_is_wrong(backend: Backend) {
    let server = Server::start_with(crate::util::ServerOptions {
        extra: vec!["--body-limit".into(), "2048".into()],
        ..crate::util::ServerOptions::on(backend)
    })
    .await;
    let api = server.api();
    let r = api.get("/v1/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("GET /v1/nope") && detail.contains("/docs"),
        "{detail}"
    );
    let r = api.get("/v1/subscriptions/%ff").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = api.send("DELETE", "/v1/events", None).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.headers["allow"], "GET, POST");
    assert!(
        r.body["detail"].as_str().unwrap().contains("DELETE"),
        "{}",
        r.body
    );
    // Heads over the limits: problem+json too, not the HTTP parser's empty answers.
    let r = api
        .get(&format!("/v1/events?name={}", "a".repeat(20_000)))
        .await;
    assert_eq!(r.status, 414, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(
        r.body["detail"].as_str().unwrap().contains("16384"),
        "{}",
        r.body
    );
    let http = reqwest::Client::new();
    let mut many = http.get(format!("{}/v1/events", api.base));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let long = http
        .get(format!("{}/v1/events", api.base))
        .header("x-long", "b".repeat(70_000));
    for (req, says) in [(many, "100 header fields"), (long, "65536 bytes")] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 431);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 431);
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    }
    let big = json!({"name": "e", "data": {"pad": "x".repeat(4000)}});
    let r = api.post("/v1/events", big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("2048") && detail.contains("--body-limit"),
        "{detail}"
    );
}

/// What some later reading would fail on is refused when it comes: duplicate keys anywhere, data
/// nested too deep, a lone surrogate. Nothing is stored to be read back as `null`.
async fn unusable_json_is_refused_where_it_is(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let raw = |path: &'static str, body: String| {
        let base = api.base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}{path}"))
                .bearer_auth(crate::util::TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw(
        "/v1/subscriptions",
        r#"{"name": "a", "name": "b", "service": "http", "config": {"url": "https://e.com/h"}, "events": ["e"]}"#.into(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("name")),
        "{body}"
    );
    let (status, body) = raw(
        "/v1/subscriptions",
        r#"{"name": "a", "service": "http", "config": {"url": "https://e.com/h", "url": "https://other.com"}, "events": ["e"]}"#.into(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("config.url")),
        "{body}"
    );
    let (status, body) = raw(
        "/v1/events",
        r#"{"name": "e", "data": {"k": 1, "k": 2}}"#.into(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("data.k")),
        "{body}"
    );
    // An event type's schema is not bypassed by padding the data deep.
    let r = api
        .send(
            "PUT",
            "/v1/event-types/typed",
            Some(&json!({"schema": {"type": "object", "properties": {"s": {"type": "string"}}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deep = format!(
        r#"{{"name": "typed", "data": {{"s": 5, "pad": {}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (status, body) = raw("/v1/events", deep).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("data.pad"),
        "{body}"
    );
    let (status, _) = raw(
        "/v1/events",
        r#"{"name": "e", "data": {"s": "\ud800"}}"#.into(),
    )
    .await;
    assert_eq!(status, 400);
    // serde_json's raw-value key would make later reads see the JSON inside the string ([1,2])
    // instead of the object that was sent: refused, naming it.
    let (status, body) = raw(
        "/v1/events",
        r#"{"name": "e", "data": {"$serde_json::private::RawValue": "[1,2]"}}"#.into(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("data.$serde_json::private::RawValue")),
        "{body}"
    );
    // Nothing of these was stored.
    let events = api.get("/v1/events").await.body;
    assert_eq!(events["items"], json!([]), "{events}");
}

both_backends!(
    a_corrupt_row_is_a_500_and_an_alarm,
    a_filter_reading_data_dot_is_told_what_to_write,
    unusable_json_is_refused_where_it_is,
    errors_outside_the_handlers_say_what_is_wrong,
    every_delivery_is_listed_and_filtered,
    unknown_fields_are_refused_naming_the_closest_field,
    a_token_is_required_and_must_be_right,
    invalid_requests_are_refused_naming_the_field,
    subscriptions_are_read_replaced_patched_disabled_and_deleted,
    lists_page_newest_first_and_filter,
    services_and_openapi_describe_the_api,
);

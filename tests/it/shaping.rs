//! What subscribers can express: filters over the event, the body and URL they receive, and event
//! types whose schema published events must satisfy. Built on the reference systems' fixtures.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{fixture, verify, Backend, Receiver, Server};

const WAIT: Duration = Duration::from_secs(20);

async fn deliveries_of(api: &crate::util::Api, event_id: &str) -> usize {
    let e = api.get(&format!("/v1/events/{event_id}")).await;
    e.body["deliveries"].as_array().unwrap().len()
}

async fn an_ftrack_status_filter_lets_only_the_status_change_through(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let filter = r#"entity.entity_type = "AssetVersion" and entity.operation = "update" and entity.new.status_id != entity.old.status_id and entity.new.status_id = "a0b1-pending-approval""#;
    let sub = api
        .subscribe(
            &receiver.url,
            &["ftrack.entity"],
            json!({"filter": filter,
            "config": {"url": receiver.url, "headers": {"ftrack-secret": "s3cr3t"}}}),
        )
        .await;
    assert_eq!(sub["filter"], filter);
    let task = api.publish(fixture("ftrack-task-create.json")).await;
    let version = api
        .publish(fixture("ftrack-assetversion-status.json"))
        .await;
    assert_eq!(task["deliveries"], 0);
    assert_eq!(version["deliveries"], 1);
    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    assert_eq!(hit.json()["data"]["entity"]["entity_type"], "AssetVersion");
    assert_eq!(hit.header("ftrack-secret"), "s3cr3t");
    assert_eq!(deliveries_of(&api, task["id"].as_str().unwrap()).await, 0);

    // A filter changed later is honoured at once.
    let id = sub["id"].as_str().unwrap();
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"filter": "entity.operation = 'create'"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.publish(fixture("ftrack-task-create.json")).await["deliveries"],
        1
    );
    assert_eq!(
        api.publish(fixture("ftrack-assetversion-status.json"))
            .await["deliveries"],
        0
    );
}

/// Published data reaches the receiver as the publisher wrote it, less the spacing: numbers keep
/// their digits, and filters still see the data.
async fn data_is_delivered_as_written_and_filters_still_read_it(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(
        &receiver.url,
        &["order.paid"],
        json!({"filter": "total > 100 and customer.tier = 'gold'"}),
    )
    .await;
    let body = |total: &str| {
        format!(
            "{{ \"name\": \"order.paid\",\n  \"data\": {{\n    \"total\": {total},\n    \
             \"customer\": {{ \"tier\" : \"gold\", \"note\": \"a  b\\\" c\" }},\n    \
             \"ref\": 123456789012345678901234567890 }} }}"
        )
        .into_bytes()
    };
    let cheap = api
        .raw("POST", "/v1/events", "application/json", body("99"))
        .await;
    assert_eq!(cheap.status, 202, "{}", cheap.body);
    assert_eq!(cheap.body["deliveries"], 0, "the filter read the data");
    let paid = api
        .raw("POST", "/v1/events", "application/json", body("150"))
        .await;
    assert_eq!(paid.status, 202, "{}", paid.body);
    assert_eq!(paid.body["deliveries"], 1);
    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    let text = String::from_utf8(hit.body.to_vec()).unwrap();
    assert!(
        text.contains(
            r#""data":{"total":150,"customer":{"tier":"gold","note":"a  b\" c"},"ref":123456789012345678901234567890}"#
        ),
        "{text}"
    );
    let event = api
        .get(&format!("/v1/events/{}", paid.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(event.body["data"]["customer"]["note"], "a  b\" c");
}

async fn a_fluidsurveys_response_is_delivered_form_encoded(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(
            &receiver.url,
            &["response_complete"],
            json!({
            "config": {"url": receiver.url, "content_type": "application/x-www-form-urlencoded"},
            "filter": "survey = \"1\""}),
        )
        .await;
    let accepted = api
        .publish(fixture("fluidsurveys-response-complete.json"))
        .await;
    assert_eq!(accepted["deliveries"], 1);
    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    assert_eq!(
        hit.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let fields: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&hit.body)
        .into_owned()
        .collect();
    assert_eq!(fields["survey"], "1");
    assert_eq!(fields["collector"], "1");
    assert_eq!(fields["id"], "276");
    assert_eq!(fields["survey_url"], "http://example.com/surveys/bob/m3-1/");
    assert_eq!(fields["created_at"], "26/03/2013 02:26PM");
    assert_eq!(fields["score"], "0");
    verify(sub["secret"].as_str().unwrap(), &hit).expect("the signature covers the bytes sent");
    // A body that is not the default envelope is logged as it was sent.
    let d = api
        .delivery_with_status(hit.header("posthorn-delivery"), "succeeded", WAIT)
        .await;
    let logged = &d["attempt_log"][0]["request"];
    assert_eq!(logged["body"].as_str().unwrap().as_bytes(), &hit.body[..]);
    assert_eq!(logged.get("envelope"), None);
}

async fn a_wazo_style_template_shapes_url_body_and_method(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let base = receiver.url.trim_end_matches("/hook");
    let sub = api
        .subscribe(&receiver.url, &["user_created"], json!({"config": {
            "url": format!("{base}/users/{{{{ event.data.uuid }}}}?tenant={{{{ event.data.tenant_uuid | urlencode }}}}"),
            "method": "put",
            "content_type": "text/plain",
            "headers": {"X-Wazo-Tenant": "main"},
            "body": "user {{ event.data.id }} created by {{ wazo_uuid }}; {{ event.data | tojson }}"}}))
        .await;
    api.publish(fixture("wazo-user-created.json")).await;
    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    assert_eq!(hit.method, "PUT");
    assert_eq!(hit.path, "/users/8e58d2a7-cfed-4c2e-ac72-14e0b5c26dc2");
    assert_eq!(hit.header("x-wazo-tenant"), "main");
    assert_eq!(hit.header("content-type"), "text/plain");
    let body = String::from_utf8(hit.body.to_vec()).unwrap();
    assert!(
        body.starts_with("user 12 created by a1b2c3d4-0000-4000-8000-000000000001; {"),
        "{body}"
    );
    assert!(
        body.contains("\"tenant_uuid\":\"2a2c0b4e-9d4e-4f1e-9b8f-3d6a0c1e5f77\""),
        "{body}"
    );
    verify(sub["secret"].as_str().unwrap(), &hit).expect("the signature covers the bytes sent");
    let dlv = hit.header("posthorn-delivery").to_owned();
    let d = api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    assert!(d["attempt_log"][0]["request"]["url"]
        .as_str()
        .unwrap()
        .contains("tenant=2a2c0b4e"));
}

async fn a_template_failing_at_delivery_makes_the_delivery_dead(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(
            &receiver.url,
            &["e"],
            json!({"config": {"url": receiver.url,
            "body": "{{ no_such_function(event) }}", "content_type": "text/plain"}}),
        )
        .await;
    api.publish(json!({"name": "e", "data": {}})).await;
    let id = sub["id"].as_str().unwrap();
    let dlv = api.first_delivery(id, WAIT).await;
    let d = api.delivery_with_status(&dlv, "dead", WAIT).await;
    assert_eq!(d["attempt_log"][0]["outcome"], "final");
    assert!(d["attempt_log"][0]["error"]
        .as_str()
        .unwrap()
        .contains("body template failed"));
    assert!(receiver.hits().is_empty());
}

async fn an_event_breaking_its_schema_is_refused_naming_the_field(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let schema = json!({"type": "object", "required": ["feed"], "properties": {
        "feed": {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}}});
    let example = fixture("phraseanet-new-feed-entry.json")["data"].clone();
    let r = api
        .send(
            "PUT",
            "/v1/event-types/new_feed_entry",
            Some(&json!({"description": "A feed entry", "schema": schema, "examples": [example]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "new_feed_entry");

    let bad = api
        .post(
            "/v1/events",
            json!({"name": "new_feed_entry", "data": {"feed": {"title": 3}}}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["errors"][0]["field"], "data.feed.title");
    let batch = api
        .post("/v1/events", json!([fixture("phraseanet-new-feed-entry.json"), {"name": "new_feed_entry", "data": {}}]))
        .await;
    assert_eq!(batch.status, 422);
    assert_eq!(batch.body["errors"][0]["field"], "[1].data");
    assert_eq!(
        api.post("/v1/events", fixture("phraseanet-new-feed-entry.json"))
            .await
            .status,
        202
    );

    let not_schema = api
        .send(
            "PUT",
            "/v1/event-types/x",
            Some(&json!({"schema": {"type": 12}})),
        )
        .await;
    assert_eq!(
        (
            not_schema.status,
            not_schema.body["errors"][0]["field"].clone()
        ),
        (422, json!("schema"))
    );
    let bad_example = api
        .send(
            "PUT",
            "/v1/event-types/x",
            Some(&json!({"schema": schema, "examples": [{"feed": {}}]})),
        )
        .await;
    assert_eq!(bad_example.body["errors"][0]["field"], "examples[0].feed");

    let list = api.get("/v1/event-types").await;
    assert_eq!(list.body["items"][0]["name"], "new_feed_entry");
    // By name, paged by the last name shown; any text is a cursor (what sorts after it follows).
    for name in ["b.two", "a.one", "c.three"] {
        let r = api
            .send("PUT", &format!("/v1/event-types/{name}"), Some(&json!({})))
            .await;
        assert_eq!(r.status / 100, 2, "{}", r.body);
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = api.get("/v1/event-types?limit=2").await.body;
    assert_eq!(names(&first), ["a.one", "b.two"]);
    let next = first["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!("/v1/event-types?cursor={next}"))
        .await
        .body;
    assert_eq!(names(&rest), ["c.three", "new_feed_entry"]);
    let after = api.get("/v1/event-types?cursor=bz").await;
    assert_eq!(after.status, 200);
    assert_eq!(names(&after.body), ["c.three", "new_feed_entry"]);
    assert_eq!(
        api.get("/v1/event-types/new_feed_entry").await.body["description"],
        "A feed entry"
    );
    assert_eq!(
        api.send("DELETE", "/v1/event-types/new_feed_entry", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/v1/event-types/new_feed_entry").await.status, 404);
    // Without its type, the event is no longer checked.
    let r = api
        .post(
            "/v1/events",
            json!({"name": "new_feed_entry", "data": {"feed": {"title": 3}}}),
        )
        .await;
    assert_eq!(r.status, 202);
}

async fn broken_filters_and_templates_are_refused_at_create(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let base = json!({"name": "n", "service": "http", "events": ["e"], "config": {"url": "https://example.com/h"}});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let r = api
        .post(
            "/v1/subscriptions",
            with(json!({"filter": "entity.operation = "})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "filter");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("column 20"),
        "{}",
        r.body
    );
    let r = api
        .post(
            "/v1/subscriptions",
            with(json!({"filter": "a = 1 and (b = 2"})),
        )
        .await;
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expected ')'"),
        "{}",
        r.body
    );
    let r = api
        .post(
            "/v1/subscriptions",
            with(json!({"config": {"url": "https://e.com", "body": "{{ event.data "}})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].clone()),
        (422, json!("config.body"))
    );
    assert!(r.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
    let r = api
        .post(
            "/v1/subscriptions",
            with(json!({"config": {"url": "https://e.com/{% for %}"}})),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "config.url");
    let r = api
        .post(
            "/v1/subscriptions",
            with(json!({"config": {"url": "https://e.com", "content_type": "text/plain"}})),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "config.content_type");

    let eval = |filter: &str, event: Value| {
        let api = api.clone();
        let body = json!({"filter": filter, "event": event});
        async move { api.post("/v1/filters/evaluate", body).await }
    };
    let version = fixture("ftrack-assetversion-status.json");
    let r = eval(
        "entity.new.status_id != entity.old.status_id",
        version.clone(),
    )
    .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"matches": true})));
    let r = eval("entity.new.version != entity.old.version", version.clone()).await;
    assert_eq!(r.body, json!({"matches": false}));
    let r = eval(
        "$event.name = 'ftrack.entity' and not exists entity.gone",
        version,
    )
    .await;
    assert_eq!(r.body, json!({"matches": true}));
    let r = eval("a ==", json!({"name": "x", "data": {}})).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].clone()),
        (422, json!("filter"))
    );
    assert_eq!(
        r.body["errors"][0]["message"], "column 3: '==' is written '=' in a filter",
        "{}",
        r.body
    );
}

/// Hostile templates cost only their own delivery: compiled and rendered in worker processes with
/// a memory cap and a deadline, they cannot freeze the routes, grow the server, or take it down.
async fn hostile_templates_cost_only_their_own_delivery(backend: Backend) {
    let server = Server::start(backend).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    // Folded into a 300 MB constant when compiled: refused when saved.
    let folded = "{{ ('a' * 100000000) ~ ('a' * 100000000) ~ ('a' * 100000000) }}";
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "folded", "service": "http", "events": ["e"],
                "config": {"url": receiver.url, "body": folded, "content_type": "text/plain"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "config.body", "{}", r.body);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("memory"),
        "{}",
        r.body
    );
    // Doubles a string forty times: 2^40 bytes.
    let doubling = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
    // Allocates 90 MB two hundred times: many seconds of work that fuel does not count.
    let slow = "{% for i in range(500) %}{% set x = 'a' * (90000000 + i) %}{% endfor %}done";
    let mut hostile = Vec::new();
    for (name, body) in [("doubling", doubling), ("slow", slow)] {
        let sub = api
            .subscribe(
                &receiver.url,
                &["e"],
                json!({"name": name, "config": {"url": receiver.url, "body": body, "content_type": "text/plain"}}),
            )
            .await;
        hostile.push((name, sub["id"].as_str().unwrap().to_owned()));
    }
    let healthy = api.subscribe(&receiver.url, &["e"], json!({})).await;
    let healthy = healthy["id"].as_str().unwrap().to_owned();
    api.publish(json!({"name": "e", "data": {}})).await;
    // While they render, the routes answer at once.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let t = std::time::Instant::now();
        let r = api.without_token().get("/healthz").await;
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "/healthz took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dlv = api.first_delivery(&healthy, WAIT).await;
    api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    for (name, id) in &hostile {
        let dlv = api.first_delivery(id, WAIT).await;
        let d = api.delivery_with_status(&dlv, "dead", WAIT).await;
        let error = d["attempt_log"][0]["error"].as_str().unwrap();
        let why = if *name == "doubling" {
            "memory"
        } else {
            "longer than"
        };
        assert!(error.contains(why), "{name}: {error}");
    }
    // The server never held what the templates asked for.
    let rss = server.resident_bytes();
    assert!(
        rss < 150 * 1024 * 1024,
        "the server grew to {} MB",
        rss / (1024 * 1024)
    );
    // And templates keep working after the workers that died were replaced.
    let sub = api
        .subscribe(
            &receiver.url,
            &["after"],
            json!({"config": {"url": receiver.url, "body": "{{ event.name }}!", "content_type": "text/plain"}}),
        )
        .await;
    api.publish(json!({"name": "after", "data": {}})).await;
    let dlv = api.first_delivery(sub["id"].as_str().unwrap(), WAIT).await;
    api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    assert!(receiver.hits().iter().any(|h| &h.body[..] == b"after!"));
}

/// Named payload shapes: a Phraseanet receiver reads `body.feed.title` beside `body.name`
/// (`payload: "flat"`), an ftrack receiver gets the whole event as it was published
/// (`payload: "data"`), both signed; a shape with a body template is refused.
async fn payload_shapes_give_each_receiver_its_own_shape(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let phraseanet = api
        .subscribe(
            &receiver.at("/phraseanet"),
            &["new_feed_entry"],
            json!({"config": {"url": receiver.at("/phraseanet"), "payload": "flat"}}),
        )
        .await;
    assert_eq!(phraseanet["config"]["payload"], "flat");
    let ftrack = api
        .subscribe(
            &receiver.at("/ftrack"),
            &["ftrack.entity"],
            json!({"config": {"url": receiver.at("/ftrack"), "payload": "data"}}),
        )
        .await;
    let feed = fixture("phraseanet-new-feed-entry.json");
    let task = fixture("ftrack-task-create.json");
    api.publish(feed.clone()).await;
    api.publish(task.clone()).await;
    receiver.wait_hits(2, WAIT).await;
    let body = receiver.hits_at("/phraseanet")[0].json();
    // What a Phraseanet receiver reads.
    assert_eq!(body["name"], "new_feed_entry");
    assert_eq!(body["feed"]["title"], "Cannes Festival");
    let mut expected = serde_json::Map::new();
    expected.insert("name".into(), json!("new_feed_entry"));
    expected.extend(feed["data"].as_object().unwrap().clone());
    assert_eq!(
        body,
        Value::Object(expected),
        "exactly name beside the data's fields"
    );
    let hit = &receiver.hits_at("/ftrack")[0];
    assert_eq!(hit.json(), task["data"], "the whole event, as published");
    for (hit, sub) in [
        (&receiver.hits_at("/phraseanet")[0], &phraseanet),
        (hit, &ftrack),
    ] {
        verify(sub["secret"].as_str().unwrap(), hit).expect("signed over the shaped body");
    }
    // The attempt log shows the body that went out.
    let d = api
        .first_delivery(ftrack["id"].as_str().unwrap(), WAIT)
        .await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    let logged: Value =
        serde_json::from_str(d["attempt_log"][0]["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(logged, task["data"]);
    for config in [
        json!({"url": receiver.url, "payload": "flat", "body": "{{ event.name }}",
            "content_type": "text/plain"}),
        json!({"url": receiver.url, "payload": "data",
            "content_type": "application/x-www-form-urlencoded"}),
    ] {
        let r = api
            .post(
                "/v1/subscriptions",
                json!({"name": "x", "service": "http",
                "events": ["a"], "config": config}),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "config.payload");
    }
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "x", "service": "http", "events": ["a"],
            "config": {"url": receiver.url, "payload": "whole"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

both_backends!(
    payload_shapes_give_each_receiver_its_own_shape,
    hostile_templates_cost_only_their_own_delivery,
    an_ftrack_status_filter_lets_only_the_status_change_through,
    data_is_delivered_as_written_and_filters_still_read_it,
    a_fluidsurveys_response_is_delivered_form_encoded,
    a_wazo_style_template_shapes_url_body_and_method,
    a_template_failing_at_delivery_makes_the_delivery_dead,
    an_event_breaking_its_schema_is_refused_naming_the_field,
    broken_filters_and_templates_are_refused_at_create,
);

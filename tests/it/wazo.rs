//! The wazo-webhookd front door, walked as its users do: services, a subscription with a
//! templated URL and body delivered as wazo delivers it, its logs, `search_metadata`, `users/me`,
//! update, delete, status — with the token in `X-Auth-Token` and wazo's error shape.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{wait_for, Answer, Api, Backend, Receiver, Server};

struct Wazo {
    base: String,
    token: String,
}

impl Wazo {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-auth-token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn wazo_clients_work_unchanged(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let receiver = Receiver::start().await;
    let app = admin
        .post(
            "/v1/applications",
            json!({"name": "pbx", "scopes": ["subscriptions", "publish"]}),
        )
        .await
        .body;
    let token = reqwest::Client::new()
        .post(format!("{}/oauth/token", server.base))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wazo = Wazo {
        base: server.base.clone(),
        token: token.clone(),
    };
    let (status, services) = wazo.call("GET", "/1.0/subscriptions/services", None).await;
    assert_eq!(status, 200);
    assert_eq!(services["services"]["http"], json!({}));
    // A templated URL and body; unknown fields ignored, as wazo does.
    let templated = json!({"name": "user created", "service": "http", "events": ["user_created"],
        "config": {"url": format!("{}?user={{{{ event.user_uuid }}}}", receiver.url), "method": "POST",
                   "body": "{{ event_name }} for {{ event.user_uuid }} on {{ wazo_uuid }}"},
        "events_user_uuid": "u-1", "metadata": {"team": "a"}, "not_a_wazo_field": 1});
    let (status, sub) = wazo
        .call("POST", "/1.0/subscriptions", Some(templated))
        .await;
    assert_eq!(status, 201, "{sub}");
    let uuid = sub["uuid"].as_str().unwrap().to_owned();
    assert_eq!(sub["owner_tenant_uuid"], app["id"]);
    assert_eq!(sub["events_user_uuid"], "u-1");
    assert_eq!(sub["config"]["content_type"], "text/plain");
    assert_eq!(sub["config"]["method"], "post");
    assert_eq!(sub["metadata"], json!({"team": "a"}));
    let plain = receiver.url.replace("/hook", "/plain");
    let (status, _) = wazo
        .call(
            "POST",
            "/1.0/subscriptions",
            Some(json!({"name": "data",
        "service": "http", "events": ["user_created"], "config": {"url": plain, "method": "put"}})),
        )
        .await;
    assert_eq!(status, 201);
    // Events as the bus carries them: only u-1's reaches the narrowed subscription.
    for user in ["u-2", "u-1"] {
        admin
            .publish(json!({"name": "user_created", "origin": "wazo-1",
            "data": {"user_uuid": user, "firstname": "Ada"}}))
            .await;
    }
    let hits = receiver.wait_hits(3, Duration::from_secs(20)).await;
    let templated: Vec<_> = hits.iter().filter(|h| h.path == "/hook").collect();
    assert_eq!(templated.len(), 1, "only the u-1 event");
    assert_eq!(&templated[0].body[..], b"user_created for u-1 on wazo-1");
    assert_eq!(templated[0].headers["content-type"], "text/plain");
    let plain_hits: Vec<_> = hits.iter().filter(|h| h.path == "/plain").collect();
    assert_eq!(plain_hits.len(), 2);
    assert_eq!(plain_hits[0].method, "PUT");
    let data: Value = serde_json::from_slice(&plain_hits[0].body).unwrap();
    assert!(
        data == json!({"user_uuid": "u-2", "firstname": "Ada"})
            || data == json!({"user_uuid": "u-1", "firstname": "Ada"}),
        "{data}"
    );
    // Its logs.
    let logs = wait_for(Duration::from_secs(20), "a log", || async {
        let (_, logs) = wazo
            .call("GET", &format!("/1.0/subscriptions/{uuid}/logs"), None)
            .await;
        (logs["total"] == 1).then_some(logs)
    })
    .await;
    let log = &logs["items"][0];
    assert_eq!(
        (log["status"].as_str(), log["attempts"].as_i64()),
        (Some("success"), Some(1)),
        "{log}"
    );
    assert_eq!(log["max_attempts"], 10);
    assert_eq!(log["event"]["name"], "user_created");
    assert_eq!(log["event"]["origin_uuid"], "wazo-1");
    assert!(log["started_at"].is_string() && log["ended_at"].is_string());
    let (status, _) = wazo
        .call(
            "GET",
            &format!(
                "/1.0/subscriptions/{uuid}/logs?limit=1&offset=0&order=started_at&direction=asc"
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // search_metadata.
    let (_, found) = wazo
        .call("GET", "/1.0/subscriptions?search_metadata=team:a", None)
        .await;
    assert_eq!(found["total"], 1);
    let (_, none) = wazo
        .call("GET", "/1.0/subscriptions?search_metadata=team:b", None)
        .await;
    assert_eq!(none["total"], 0);
    // users/me: its own subscriptions as a user.
    let (status, mine) = wazo.call("POST", "/1.0/users/me/subscriptions", Some(json!({"name": "me",
        "service": "http", "events": ["call_ended"], "config": {"url": receiver.url, "method": "post"}}))).await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["owner_user_uuid"], app["id"]);
    let (_, listed) = wazo.call("GET", "/1.0/users/me/subscriptions", None).await;
    assert_eq!(listed["total"], 1);
    let (status, _) = wazo
        .call("GET", &format!("/1.0/users/me/subscriptions/{uuid}"), None)
        .await;
    assert_eq!(status, 404);
    // Update, seen through /v1 too; delete.
    let (status, edited) = wazo.call("PUT", &format!("/1.0/subscriptions/{uuid}"), Some(json!({"name": "renamed",
        "service": "http", "events": ["user_created"], "config": {"url": receiver.url, "method": "post"}}))).await;
    assert_eq!(
        (status, edited["name"].as_str()),
        (200, Some("renamed")),
        "{edited}"
    );
    let v1 = Api::new(&server.base, &token)
        .get(&format!("/v1/subscriptions/{uuid}"))
        .await;
    assert_eq!(
        (v1.status, v1.body["name"].as_str()),
        (200, Some("renamed"))
    );
    let (status, _) = wazo
        .call("DELETE", &format!("/1.0/subscriptions/{uuid}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, error) = wazo
        .call("GET", &format!("/1.0/subscriptions/{uuid}"), None)
        .await;
    assert_eq!(status, 404);
    for key in ["message", "error_id", "details", "timestamp"] {
        assert!(error.get(key).is_some(), "{error}");
    }
    let (status, error) = wazo
        .call(
            "POST",
            "/1.0/subscriptions",
            Some(json!({"name": "x", "service": "http",
        "events": ["e"]})),
        )
        .await;
    assert_eq!(
        (status, error["error_id"].as_str()),
        (400, Some("invalid-data")),
        "{error}"
    );
    assert!(error["details"].get("config").is_some(), "{error}");
    let (status, _) = wazo.call("GET", "/1.0/status", None).await;
    assert_eq!(status, 200);
    let anonymous = Wazo {
        base: server.base.clone(),
        token: "nope".into(),
    };
    let (status, error) = anonymous.call("GET", "/1.0/subscriptions", None).await;
    assert_eq!(
        (status, error["error_id"].as_str()),
        (401, Some("unauthorized"))
    );
    // The admin acts for the application with Wazo-Tenant.
    let r = reqwest::Client::new()
        .get(format!("{}/1.0/subscriptions", server.base))
        .header("x-auth-token", crate::util::TOKEN)
        .header("wazo-tenant", app["id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let tenant_view: Value = r.json().await.unwrap();
    assert_eq!(tenant_view["total"], 2, "{tenant_view}");
}

/// As wazo-webhookd: a receiver failing twice then answering logs three rows (`failure`,
/// `failure`, `success`); a `410 Gone` is a final `error` for that delivery, and the subscription
/// stays (Posthorn's own subscriptions are deleted by a 410). Logs page by the database.
async fn wazo_logs_are_per_attempt_and_a_410_keeps_the_subscription(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let admin = server.api();
    let wazo = Wazo {
        base: server.base.clone(),
        token: crate::util::TOKEN.into(),
    };
    receiver.answer_at("/flaky", Answer::status(500));
    let (status, sub) = wazo
        .call(
            "POST",
            "/1.0/subscriptions",
            Some(json!({"name": "flaky",
        "service": "http", "events": ["call_ended"],
        "config": {"url": receiver.at("/flaky"), "method": "post"}})),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    let flaky = sub["uuid"].as_str().unwrap().to_owned();
    // Retries a second apart.
    let r = admin
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{flaky}"),
            Some(&json!({"retry": {"schedule_s": [1, 1, 1]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    admin
        .publish(json!({"name": "call_ended", "data": {"call_id": "c1"}}))
        .await;
    receiver.wait_hits(2, Duration::from_secs(20)).await;
    receiver.answer_at("/flaky", Answer::status(200));
    let logs = wait_for(Duration::from_secs(30), "three attempts logged", || async {
        let (_, logs) = wazo
            .call(
                "GET",
                &format!("/1.0/subscriptions/{flaky}/logs?order=attempts&direction=asc"),
                None,
            )
            .await;
        (logs["total"] == 3).then_some(logs)
    })
    .await;
    let rows: Vec<(i64, &str)> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["attempts"].as_i64().unwrap(),
                l["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, vec![(1, "failure"), (2, "failure"), (3, "success")]);
    let (_, page) = wazo
        .call(
            "GET",
            &format!(
                "/1.0/subscriptions/{flaky}/logs?limit=1&offset=1&order=attempts&direction=asc"
            ),
            None,
        )
        .await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["items"][0]["attempts"].as_i64()
        ),
        (Some(3), Some(2))
    );

    // A 410: final error, subscription kept.
    receiver.answer_at("/gone", Answer::status(410));
    let (_, sub) = wazo
        .call(
            "POST",
            "/1.0/subscriptions",
            Some(json!({"name": "gone",
        "service": "http", "events": ["call_ended"],
        "config": {"url": receiver.at("/gone"), "method": "post"}})),
        )
        .await;
    let gone = sub["uuid"].as_str().unwrap().to_owned();
    let v1 = admin
        .subscribe(&receiver.at("/gone"), &["call_ended"], json!({}))
        .await;
    admin
        .publish(json!({"name": "call_ended", "data": {"call_id": "c2"}}))
        .await;
    let logs = wait_for(Duration::from_secs(20), "the 410 logged", || async {
        let (_, logs) = wazo
            .call("GET", &format!("/1.0/subscriptions/{gone}/logs"), None)
            .await;
        (logs["total"] == 1).then_some(logs)
    })
    .await;
    assert_eq!(logs["items"][0]["status"], "error");
    let (status, still) = wazo
        .call("GET", &format!("/1.0/subscriptions/{gone}"), None)
        .await;
    assert_eq!(status, 200, "the wazo subscription stays: {still}");
    let d = admin.first_delivery(&gone, Duration::from_secs(5)).await;
    let d = admin
        .delivery_with_status(&d, "dead", Duration::from_secs(5))
        .await;
    assert!(d["attempt_log"][0]["error"]
        .as_str()
        .unwrap()
        .contains("410"));
    // The /v1 one, to the same receiver, is deleted as ever.
    let v1 = v1["id"].as_str().unwrap().to_owned();
    wait_for(
        Duration::from_secs(20),
        "the /v1 subscription deleted",
        || async {
            (admin.get(&format!("/v1/subscriptions/{v1}")).await.status == 404).then_some(())
        },
    )
    .await;
}

/// `GET /1.0/status` tells the truth about the bus consumer; `?token=` authenticates as wazo's
/// APIs allow; `/1.0/config` is the admin's; `/1.0/api/api.yml` describes this door.
async fn wazo_status_config_spec_and_token_in_query(backend: Backend) {
    let server = Server::start(backend).await;
    let base = &server.base;
    let http = reqwest::Client::new();
    // No AMQP source: no bus is consumed.
    let status: Value = http
        .get(format!("{base}/1.0/status?token={}", crate::util::TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["bus_consumer"]["status"], "fail", "{status}");
    assert!(status["bus_consumer"]["detail"]
        .as_str()
        .unwrap()
        .contains("no AMQP source"));
    assert_eq!(status["database"]["status"], "ok");
    let r = http
        .get(format!("{base}/1.0/subscriptions?token=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!(
            "{base}/1.0/subscriptions?token={}",
            crate::util::TOKEN
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The token in the query is never logged.
    assert!(!server.log().contains(crate::util::TOKEN));
    let config = Wazo {
        base: base.clone(),
        token: crate::util::TOKEN.into(),
    }
    .call("GET", "/1.0/config", None)
    .await;
    assert_eq!(config.0, 200, "{}", config.1);
    assert!(config.1["enabled_services"]
        .as_array()
        .unwrap()
        .contains(&json!("http")));
    let admin = server.api();
    let app = crate::util::application(&admin, &["subscriptions"]).await;
    let token = crate::util::token(base, &app).await;
    let (status, _) = Wazo {
        base: base.clone(),
        token,
    }
    .call("GET", "/1.0/config", None)
    .await;
    assert_eq!(status, 403);
    let r = http
        .get(format!("{base}/1.0/api/api.yml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let spec: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(
        paths.contains_key("/1.0/subscriptions") && paths.keys().all(|p| p.starts_with("/1.0/"))
    );
}

both_backends!(
    wazo_status_config_spec_and_token_in_query,
    wazo_clients_work_unchanged,
    wazo_logs_are_per_attempt_and_a_410_keeps_the_subscription,
);

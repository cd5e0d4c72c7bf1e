//! The wazo-webhookd front door, walked as its users do: services, a subscription with a
//! templated URL and body delivered as wazo delivers it, its logs, `search_metadata`, `users/me`,
//! update, delete, status — with the token in `X-Auth-Token` and wazo's error shape.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{wait_for, Api, Backend, Receiver, Server};

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

both_backends!(wazo_clients_work_unchanged,);

//! The FluidSurveys front door, walked as its users do: subscribe (HTTP Basic or Bearer), 409 on a
//! URL they already have, list, form-encoded `response_complete` callbacks scoped by survey and
//! collector, unsubscribe, and a callback answered 410 that unsubscribes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{wait_for, Answer, Api, Backend, Receiver, Server};

async fn fs(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: &Auth,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    req = match auth {
        Auth::Basic(id, secret) => req.basic_auth(id, Some(secret)),
        Auth::Bearer(t) => req.bearer_auth(t),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "plain JSON, not problem+json"
    );
    (status, r.json().await.unwrap_or(Value::Null))
}

enum Auth {
    Basic(String, String),
    Bearer(String),
}

async fn fluidsurveys_clients_work_unchanged(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let base = server.base.as_str();
    let receiver = Receiver::start().await;
    let app = admin
        .post(
            "/v1/applications",
            json!({"name": "surveys", "scopes": ["subscriptions"]}),
        )
        .await
        .body;
    let basic = Auth::Basic(
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    let url = format!("{}?hook=responses", receiver.url);
    let (status, created) = fs(base, "POST", "/api/v2/webhooks/subscribe/",
        Some(json!({"subscription_url": url, "event": "response_complete", "survey": 1, "collector": 2})), &basic).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["event_type"], "response_complete");
    assert_eq!(
        (created["survey"].as_str(), created["collector"].as_str()),
        (Some("1"), Some("2"))
    );
    assert_eq!(created["subscription_url"], url.as_str());
    // The same URL again, with a Bearer token of the same application: 409.
    let (_, _, token) = {
        let r = reqwest::Client::new()
            .post(format!("{base}/oauth/token"))
            .basic_auth(
                app["client_id"].as_str().unwrap(),
                app["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        ((), (), body["access_token"].as_str().unwrap().to_owned())
    };
    let bearer = Auth::Bearer(token.clone());
    let (status, body) = fs(
        base,
        "POST",
        "/api/v2/webhooks/subscribe/",
        Some(json!({"subscription_url": url, "event": "survey_create"})),
        &bearer,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].is_string());
    for missing in [
        json!({"event": "response_complete"}),
        json!({"subscription_url": "https://example.com/x"}),
        // An id is a whole number (or a string), not 1.5.
        json!({"subscription_url": "https://example.com/y", "event": "response_complete", "survey": 1.5}),
    ] {
        let (status, body) = fs(
            base,
            "POST",
            "/api/v2/webhooks/subscribe/",
            Some(missing),
            &bearer,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    let (status, _) = fs(
        base,
        "GET",
        "/api/v2/webhooks/",
        None,
        &Auth::Basic(
            app["client_id"].as_str().unwrap().to_owned(),
            "phs_wrong".into(),
        ),
    )
    .await;
    assert_eq!(status, 401);
    let (status, list) = fs(base, "GET", "/api/v2/webhooks/", None, &bearer).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["webhooks"][0]["id"], created["id"]);
    // The same subscription through /v1.
    let v1 = Api::new(base, &token);
    let sub = v1
        .get(&format!(
            "/v1/subscriptions/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sub.status, 200);
    // Callbacks: only this survey's and collector's, form-encoded.
    for (survey, collector, n) in [(1, 2, 100), (1, 3, 101), (9, 2, 102)] {
        admin
            .publish(
                json!({"name": "response_complete", "data": {"survey": survey,
            "collector": collector, "id": n, "survey_name": "m3"}}),
            )
            .await;
    }
    let hits = receiver.wait_hits(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = if receiver.hits().len() > hits.len() {
        receiver.hits()
    } else {
        hits
    };
    assert_eq!(hits.len(), 1, "only the matching response is called back");
    assert_eq!(
        hits[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let body = String::from_utf8(hits[0].body.to_vec()).unwrap();
    assert!(
        body.contains("id=100") && body.contains("survey_name=m3"),
        "{body}"
    );
    // Unsubscribe; a second time there is none.
    let (status, _) = fs(
        base,
        "POST",
        "/api/v2/webhooks/unsubscribe/",
        Some(json!({"subscription_url": url})),
        &basic,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = fs(
        base,
        "POST",
        "/api/v2/webhooks/unsubscribe/",
        Some(json!({"subscription_url": url})),
        &basic,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // A callback answered 410 Gone unsubscribes.
    let gone = Receiver::start().await;
    gone.answer_by_default(Answer::status(410));
    let (status, _) = fs(
        base,
        "POST",
        "/api/v2/webhooks/subscribe/",
        Some(json!({"subscription_url": gone.url, "event": "contact_create"})),
        &basic,
    )
    .await;
    assert_eq!(status, 201);
    admin
        .publish(
            json!({"name": "contact_create", "data": {"name": "Joe", "email": "joe@example.com"}}),
        )
        .await;
    wait_for(
        Duration::from_secs(20),
        "the 410 to unsubscribe",
        || async {
            let (_, list) = fs(base, "GET", "/api/v2/webhooks/", None, &bearer).await;
            (list["total"] == 0).then_some(())
        },
    )
    .await;
    let hit = &gone.hits()[0];
    assert_eq!(&hit.body[..], b"name=Joe&email=joe%40example.com");
}

both_backends!(fluidsurveys_clients_work_unchanged,);

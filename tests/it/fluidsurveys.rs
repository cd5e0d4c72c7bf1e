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
    assert!(
        created["id"].is_u64(),
        "an integer id, as FluidSurveys gives"
    );
    // The same subscription through /v1.
    let v1 = Api::new(base, &token);
    let subs = v1.get("/v1/subscriptions").await.body;
    assert_eq!(subs["items"][0]["config"]["url"], url.as_str());
    assert_eq!(subs["items"][0]["metadata"]["door"], "fluidsurveys");
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

/// Each event narrows as FluidSurveys narrows it: `response_complete` by survey then collector,
/// `report_create` by survey only, `survey_create` and `contact_create` account-wide. One webhook
/// per event, each made with survey 1 and collector 2; events of every combination published.
/// The list shows only the active webhooks made through the door, ids stable integers.
async fn each_event_narrows_as_fluidsurveys_does(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let base = server.base.as_str();
    let app = crate::util::application(&admin, &["subscriptions"]).await;
    let basic = Auth::Basic(app.client_id.clone(), app.secret.clone());
    let receiver = Receiver::start().await;
    for event in [
        "survey_create",
        "response_complete",
        "report_create",
        "contact_create",
    ] {
        let (status, body) = fs(
            base,
            "POST",
            "/api/v2/webhooks/subscribe/",
            Some(
                json!({"subscription_url": receiver.at(&format!("/{event}")),
                "event": event, "survey": 1, "collector": 2}),
            ),
            &basic,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let combinations = [(1, 2), (1, 3), (9, 2), (9, 9)];
    for event in [
        "survey_create",
        "response_complete",
        "report_create",
        "contact_create",
    ] {
        for (n, (survey, collector)) in combinations.iter().enumerate() {
            admin
                .publish(
                    json!({"name": event, "data": {"survey": survey, "collector": collector,
                    "n": format!("{event}-{n}")}}),
                )
                .await;
        }
    }
    // Expected: every survey_create and contact_create (4 + 4), response_complete for (1, 2)
    // alone, report_create for survey 1 (two of them).
    let expected = 4 + 4 + 1 + 2;
    receiver.wait_hits(expected, Duration::from_secs(30)).await;
    // Everything published is settled: no more will come.
    let subs = admin.get("/v1/subscriptions").await.body;
    for sub in subs["items"].as_array().unwrap() {
        let id = sub["id"].as_str().unwrap();
        wait_for(
            Duration::from_secs(30),
            "every delivery settled",
            || async {
                let ds = admin.deliveries(id).await;
                ds.iter().all(|d| d["status"] == "succeeded").then_some(())
            },
        )
        .await;
    }
    let mut got: Vec<String> = receiver
        .hits()
        .iter()
        .map(|h| {
            let form = String::from_utf8(h.body.to_vec()).unwrap();
            let n = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .unwrap_or_default();
            format!("{} {n}", h.path.trim_start_matches('/'))
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = ["survey_create", "contact_create"]
        .iter()
        .flat_map(|e| (0..4).map(move |n| format!("{e} {e}-{n}")))
        .chain([
            "response_complete response_complete-0".to_owned(),
            "report_create report_create-0".to_owned(),
            "report_create report_create-1".to_owned(),
        ])
        .collect();
    want.sort();
    assert_eq!(got, want);

    // The list: the four, integers, the same twice; not a /v1 subscription, not a disabled one.
    let token = crate::util::token(base, &app).await;
    let v1 = Api::new(base, &token);
    v1.subscribe(&receiver.url, &["survey_create"], json!({}))
        .await;
    let (_, first) = fs(base, "GET", "/api/v2/webhooks/", None, &basic).await;
    assert_eq!(first["total"], 4, "{first}");
    let (_, again) = fs(base, "GET", "/api/v2/webhooks/", None, &basic).await;
    assert_eq!(first, again, "ids are stable");
    assert!(first["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["id"].is_u64()));
    let mine = v1
        .get("/v1/subscriptions?metadata=door:fluidsurveys")
        .await
        .body;
    let one = mine["items"][0]["id"].as_str().unwrap();
    let r = v1
        .post(&format!("/v1/subscriptions/{one}/disable"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, list) = fs(base, "GET", "/api/v2/webhooks/", None, &basic).await;
    assert_eq!(list["total"], 3, "a disabled webhook is not listed: {list}");
}

/// The platform names the survey and collector in routing attributes: the callback's form
/// fields are exactly the event's, as FluidSurveys' sample `response_complete` callback.
async fn callbacks_carry_exactly_the_events_fields(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let base = server.base.as_str();
    let app = crate::util::application(&admin, &["subscriptions"]).await;
    let basic = Auth::Basic(app.client_id.clone(), app.secret.clone());
    let receiver = Receiver::start().await;
    let (status, body) = fs(
        base,
        "POST",
        "/api/v2/webhooks/subscribe/",
        Some(
            json!({"subscription_url": receiver.url, "event": "response_complete",
            "survey": 1, "collector": 1}),
        ),
        &basic,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The seed's sample callback, field by field, in its order.
    let data = json!({"score": 0, "invite_email": "N/A", "invite_name": "N/A", "language": "en",
        "referrer": "http://fluidsurveys.com/account/", "created_at": "26/03/2013 02:26PM",
        "survey_name": "m3", "updated_at": "26/03/2013 02:26PM",
        "survey_url": "http://example.com/surveys/bob/m3-1/", "id": 276});
    for (survey, collector) in [("2", "1"), ("1", "1")] {
        let r = admin
            .post(
                "/v1/events",
                json!({"name": "response_complete", "data": data,
                "attributes": {"survey": survey, "collector": collector}}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let hit = receiver
        .wait_hits(1, Duration::from_secs(20))
        .await
        .remove(0);
    let form = String::from_utf8(hit.body.to_vec()).unwrap();
    assert_eq!(
        form,
        "score=0&invite_email=N%2FA&invite_name=N%2FA&language=en&referrer=http%3A%2F%2Ffluidsurveys.com%2Faccount%2F&created_at=26%2F03%2F2013+02%3A26PM&survey_name=m3&updated_at=26%2F03%2F2013+02%3A26PM&survey_url=http%3A%2F%2Fexample.com%2Fsurveys%2Fbob%2Fm3-1%2F&id=276"
    );
    let r = admin.get("/v1/events?name=response_complete").await;
    assert_eq!(
        r.body["items"][0]["attributes"],
        json!({"survey": "1", "collector": "1"})
    );
}

both_backends!(
    callbacks_carry_exactly_the_events_fields,
    fluidsurveys_clients_work_unchanged,
    each_event_narrows_as_fluidsurveys_does,
);

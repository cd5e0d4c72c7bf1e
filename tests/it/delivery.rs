//! Events published through the API reach a real receiver: signed, with the contract's headers,
//! retried on failure, logged, and sent again on request.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{attempt_outcomes, fixture, verify, Answer, Backend, Receiver, Server};

const WAIT: Duration = Duration::from_secs(20);

async fn a_published_event_arrives_signed_with_the_contract_headers(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["new_feed_entry"], json!({}))
        .await;
    let secret = sub["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(sub["status"], "active");
    assert!(sub["id"].as_str().unwrap().starts_with("sub_"));

    let event = fixture("phraseanet-new-feed-entry.json");
    let accepted = api.publish(event.clone()).await;
    assert_eq!(accepted["deliveries"], 1);
    assert_eq!(accepted["name"], "new_feed_entry");
    let event_id = accepted["id"].as_str().unwrap();
    assert!(event_id.starts_with("evt_"));

    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.path, "/hook");
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(hit.header("webhook-id"), event_id);
    assert_eq!(hit.header("posthorn-event"), "new_feed_entry");
    assert_eq!(hit.header("posthorn-attempt"), "1");
    assert!(hit.header("posthorn-delivery").starts_with("dlv_"));
    assert!(hit.header("user-agent").starts_with("posthorn/"));
    let ts: i64 = hit.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 60);
    assert!(hit.header("webhook-signature").starts_with("v1,"));

    let body = hit.json();
    assert_eq!(body["id"], event_id);
    assert_eq!(body["name"], "new_feed_entry");
    assert_eq!(body["data"], event["data"]);
    assert_eq!(body["origin"], Value::Null);
    assert_eq!(body["occurred_at"], accepted["occurred_at"]);
    // The publisher's key order is kept.
    let text = String::from_utf8(hit.body.to_vec()).unwrap();
    assert!(text.find("users_were_notified").unwrap() < text.find("\"feed\"").unwrap());

    // Verified by an independent implementation of Standard Webhooks.
    verify(secret, &hit).expect("signature verifies");
    // A wrong secret does not verify.
    let other = api.subscribe(&receiver.url, &["unused"], json!({})).await;
    assert!(verify(other["secret"].as_str().unwrap(), &hit).is_err());

    // The attempt is in the log.
    let dlv = hit.header("posthorn-delivery").to_owned();
    let d = api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    assert_eq!(d["event_id"], event_id);
    assert_eq!(d["subscription_id"], sub["id"]);
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["next_attempt_at"], Value::Null);
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["outcome"], "success");
    assert_eq!(log[0]["response"]["status"], 204);
    assert_eq!(log[0]["request"]["method"], "POST");
    assert_eq!(log[0]["request"]["url"], receiver.url);
    assert_eq!(log[0]["request"]["headers"]["webhook-id"], event_id);
    // The body as sent, byte for byte (the store logs the default envelope by reference and
    // rebuilds it here), and nothing but the contract's fields.
    assert_eq!(
        log[0]["request"]["body"].as_str().unwrap().as_bytes(),
        &hit.body[..]
    );
    let mut fields: Vec<&str> = log[0]["request"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["body", "headers", "method", "url"]);

    // The event shows its delivery.
    let e = api.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["data"], event["data"]);
    assert_eq!(e.body["deliveries"][0]["id"], dlv);
    assert_eq!(e.body["deliveries"][0]["status"], "succeeded");
}

async fn failures_are_retried_with_the_same_webhook_id_until_success(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([
        Answer::status(500),
        Answer::status(500),
        Answer::status(204),
    ]);
    let api = server.api();
    let sub = api
        .subscribe(
            &receiver.url,
            &["job.done"],
            json!({"retry": {"schedule_s": [1, 1, 1]}}),
        )
        .await;
    let accepted = api
        .publish(json!({"name": "job.done", "data": {"n": 1}}))
        .await;

    let hits = receiver.wait_hits(3, WAIT).await;
    assert_eq!(hits.len(), 3);
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit.header("webhook-id"), accepted["id"].as_str().unwrap());
        assert_eq!(hit.header("posthorn-attempt"), (i + 1).to_string());
        assert_eq!(hit.body, hits[0].body, "the same body every attempt");
        verify(sub["secret"].as_str().unwrap(), hit).unwrap();
    }
    let dlv = hits[0].header("posthorn-delivery");
    let d = api.delivery_with_status(dlv, "succeeded", WAIT).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "retry", "success"]);
    assert_eq!(d["attempt_log"][0]["response"]["status"], 500);
    assert_eq!(d["attempt_log"][0]["error"], "HTTP 500");
    assert_eq!(d["attempts"], 3);
}

async fn a_redirect_is_a_failure_and_is_not_followed_then_retry_sends_it_again(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let elsewhere = receiver.url.replace("/hook", "/elsewhere");
    receiver.script([Answer::status(302).header("location", &elsewhere)]);
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["a"], json!({"retry": {"schedule_s": []}}))
        .await;
    api.publish(json!({"name": "a", "data": {}})).await;
    let hits = receiver.wait_hits(1, WAIT).await;
    let dlv = hits[0].header("posthorn-delivery").to_owned();
    let d = api.delivery_with_status(&dlv, "dead", WAIT).await;
    assert_eq!(d["attempt_log"][0]["outcome"], "final");
    assert_eq!(d["attempt_log"][0]["response"]["status"], 302);
    assert!(d["attempt_log"][0]["error"]
        .as_str()
        .unwrap()
        .contains("redirect"));
    assert!(
        receiver.hits().iter().all(|h| h.path == "/hook"),
        "the redirect was not followed"
    );

    // A dead delivery is sent again by retry.
    let r = api
        .post(&format!("/v1/deliveries/{dlv}/retry"), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    let hits = receiver.wait_hits(2, WAIT).await;
    assert_eq!(hits[1].header("posthorn-attempt"), "2");
    assert_eq!(hits[1].header("webhook-id"), hits[0].header("webhook-id"));
    let d = api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["attempt_log"][1]["outcome"], "success");
    assert_eq!(hits.len(), 2);

    let dead = api
        .get(&format!(
            "/v1/subscriptions/{}/deliveries?status=dead",
            sub["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(dead.body["items"], json!([]));
    let missing = api.post("/v1/deliveries/dlv_nope/retry", json!({})).await;
    assert_eq!(missing.status, 404);
}

async fn a_duplicate_event_id_is_stored_and_delivered_once(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["order.paid"], json!({}))
        .await;
    let event = json!({"name": "order.paid", "id": "order-42", "data": {"total": 10}});
    let first = api.post("/v1/events", event.clone()).await;
    assert_eq!(first.status, 202);
    assert_eq!(first.body["id"], "order-42");
    assert_eq!(first.body.get("duplicate"), None);
    let again = api
        .post(
            "/v1/events",
            json!({"name": "order.paid", "id": "order-42", "data": {"total": 99}}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["deliveries"], 1);
    assert_eq!(again.body["occurred_at"], first.body["occurred_at"]);

    // A later event arrives; the duplicate never did.
    api.publish(json!({"name": "order.paid", "id": "order-43", "data": {}}))
        .await;
    let hits = receiver.wait_hits(2, WAIT).await;
    let ids: Vec<&str> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.iter().filter(|i| **i == "order-42").count(), 1);
    let stored = api.get("/v1/events/order-42").await;
    assert_eq!(stored.body["data"]["total"], 10, "the first event is kept");
    assert_eq!(stored.body["deliveries"].as_array().unwrap().len(), 1);

    // Within one batch too: the second use of an id is a duplicate of the first.
    let batch = api
        .post(
            "/v1/events",
            json!([
                {"name": "order.paid", "id": "order-44", "data": {"n": 1}},
                {"name": "order.paid", "id": "order-44", "data": {"n": 2}},
                {"name": "order.paid", "id": "order-42", "data": {}}
            ]),
        )
        .await;
    assert_eq!(batch.status, 202, "{}", batch.body);
    let items = batch.body["items"].as_array().unwrap();
    assert_eq!(items[0].get("duplicate"), None);
    assert_eq!(items[0]["deliveries"], 1);
    assert_eq!(items[1]["duplicate"], true);
    assert_eq!(items[1]["deliveries"], 1);
    assert_eq!(items[2]["duplicate"], true);
    let hits = receiver.wait_hits(3, WAIT).await;
    assert_eq!(
        hits.iter()
            .filter(|h| h.header("webhook-id") == "order-44")
            .count(),
        1
    );
    assert_eq!(api.get("/v1/events/order-44").await.body["data"]["n"], 1);

    // New events among duplicates, and a batch of new ones only, each event name with its own
    // subscription: each stored event keeps its own data and its own delivery.
    let mut subscription = std::collections::HashMap::new();
    for n in 45..=50 {
        let name = format!("order.n{n}");
        let sub = api.subscribe(&receiver.url, &[&name], json!({})).await;
        subscription.insert(n, sub["id"].as_str().unwrap().to_owned());
    }
    let event = |n: i64, id: i64| json!({"name": format!("order.n{n}"), "id": format!("order-{id}"), "data": {"n": n}});
    for batch in [
        json!([
            event(45, 45),
            event(45, 42),
            event(46, 46),
            event(47, 46),
            event(47, 47)
        ]),
        json!([event(48, 48), event(49, 49), event(50, 50)]),
    ] {
        let answer = api.post("/v1/events", batch).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    for n in 45..=50 {
        let id = format!("order-{n}");
        let stored = api.get(&format!("/v1/events/{id}")).await;
        assert_eq!(stored.body["data"]["n"], n, "{}", stored.body);
        let deliveries = stored.body["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "{}", stored.body);
        assert_eq!(
            deliveries[0]["subscription_id"],
            subscription[&n].as_str(),
            "{}",
            stored.body
        );
    }
    let hits = receiver.wait_hits(9, WAIT).await;
    for n in 45..=50 {
        let id = format!("order-{n}");
        let got: Vec<_> = hits
            .iter()
            .filter(|h| h.header("webhook-id") == id)
            .collect();
        assert_eq!(got.len(), 1, "{id}");
        assert_eq!(got[0].json()["data"]["n"], n);
    }
}

async fn patterns_choose_events_and_star_never_takes_posthorn_events(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let all = api.subscribe(&receiver.url, &["*"], json!({})).await;
    let records = api.subscribe(&receiver.url, &["record.*"], json!({})).await;
    let exact = api
        .subscribe(&receiver.url, &["user_created"], json!({}))
        .await;
    let ping = api
        .subscribe(&receiver.url, &["posthorn.*"], json!({}))
        .await;

    let subs_of = |event: Value| {
        let api = api.clone();
        async move {
            let id = event["id"].as_str().unwrap().to_owned();
            let e = api.get(&format!("/v1/events/{id}")).await;
            let mut subs: Vec<String> = e.body["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["subscription_id"].as_str().unwrap().to_owned())
                .collect();
            subs.sort();
            subs
        }
    };
    let sorted = |mut v: Vec<&Value>| {
        v.sort_by_key(|s| s["id"].as_str().unwrap().to_owned());
        v.into_iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let e = api
        .publish(json!({"name": "record.created", "data": {}}))
        .await;
    assert_eq!(e["deliveries"], 2);
    assert_eq!(subs_of(e).await, sorted(vec![&all, &records]));
    let e = api
        .publish(json!({"name": "user_created", "data": {}}))
        .await;
    assert_eq!(subs_of(e).await, sorted(vec![&all, &exact]));
    let e = api.publish(json!({"name": "recordings", "data": {}})).await;
    assert_eq!(subs_of(e).await, sorted(vec![&all]));

    // posthorn.ping through /test reaches only the subscription tested.
    let r = api
        .post(
            &format!("/v1/subscriptions/{}/test", ping["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let dlv = r.body["delivery_id"].as_str().unwrap().to_owned();
    api.delivery_with_status(&dlv, "succeeded", WAIT).await;
    let pings: Vec<_> = receiver
        .hits()
        .into_iter()
        .filter(|h| h.header("posthorn-event") == "posthorn.ping")
        .collect();
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].json()["data"]["subscription_id"], ping["id"]);
}

async fn a_batch_is_stored_and_each_event_delivered(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["ftrack.*", "response_complete"], json!({}))
        .await;
    let batch = json!([
        fixture("ftrack-task-create.json"),
        fixture("ftrack-assetversion-status.json"),
        fixture("fluidsurveys-response-complete.json"),
    ]);
    let r = api.post("/v1/events", batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["deliveries"] == 1));
    assert_eq!(items[2]["name"], "response_complete");
    let hits = receiver.wait_hits(3, WAIT).await;
    let mut names: Vec<String> = hits
        .iter()
        .map(|h| h.json()["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ftrack.entity", "ftrack.entity", "response_complete"]
    );
}

async fn after_a_rotation_both_secrets_verify(backend: Backend) {
    let server = Server::start(backend).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api.subscribe(&receiver.url, &["e"], json!({})).await;
    let id = sub["id"].as_str().unwrap();
    let rotated = api
        .post(&format!("/v1/subscriptions/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.body["secret"].as_str().unwrap();
    assert_ne!(new_secret, sub["secret"].as_str().unwrap());
    assert!(api
        .get(&format!("/v1/subscriptions/{id}"))
        .await
        .body
        .get("secret")
        .is_none());
    api.publish(json!({"name": "e", "data": {}})).await;
    let hit = receiver.wait_hits(1, WAIT).await.remove(0);
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 2);
    verify(new_secret, &hit).unwrap();
    verify(sub["secret"].as_str().unwrap(), &hit).unwrap();
}

both_backends!(
    a_published_event_arrives_signed_with_the_contract_headers,
    failures_are_retried_with_the_same_webhook_id_until_success,
    a_redirect_is_a_failure_and_is_not_followed_then_retry_sends_it_again,
    a_duplicate_event_id_is_stored_and_delivered_once,
    patterns_choose_events_and_star_never_takes_posthorn_events,
    a_batch_is_stored_and_each_event_delivered,
    after_a_rotation_both_secrets_verify,
);

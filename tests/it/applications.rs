//! Applications: OAuth2 clients that own their subscriptions and see nothing else — the token
//! endpoint as RFC 6749 says, isolation probe by probe, scopes, tenants, revocation and expiry,
//! and no secret in clear anywhere.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{application, token, wait_for, Api, Backend, Receiver, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(20);

/// `POST /oauth/token` with these form fields (and Basic credentials when given).
pub async fn token_request(
    base: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .form(form);
    if let Some((id, secret)) = basic {
        // RFC 6749 §2.3.1: each form-encoded, then Basic.
        let pair = format!(
            "{}:{}",
            urlencoding::encode(id),
            urlencoding::encode(secret)
        );
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair);
        req = req.header("authorization", format!("Basic {b64}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn two_applications_see_and_change_only_their_own(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let receiver = Receiver::start().await;
    let (a, b) = (
        application(&admin, &["subscriptions", "publish"]).await,
        application(&admin, &["subscriptions", "publish"]).await,
    );
    let api_a = Api::new(&server.base, &token(&server.base, &a).await);
    let api_b = Api::new(&server.base, &token(&server.base, &b).await);
    let sa = api_a.subscribe(&receiver.url, &["e"], json!({})).await;
    assert_eq!(sa["owner"], a.id.as_str());
    let sb = api_b.subscribe(&receiver.url, &["e"], json!({})).await;
    let admin_sub = admin.subscribe(&receiver.url, &["e"], json!({})).await;
    let (sa, sb) = (
        sa["id"].as_str().unwrap().to_owned(),
        sb["id"].as_str().unwrap().to_owned(),
    );
    // A's event carries A as its tenant: A's and the admin's subscriptions get it, B's does not;
    // A is told of its own delivery only.
    let event = api_a.publish(json!({"name": "e", "data": {"n": 1}})).await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["deliveries"], 1, "{event}");
    let da = api_a.first_delivery(&sa, WAIT).await;
    api_a.delivery_with_status(&da, "succeeded", WAIT).await;
    admin
        .first_delivery(admin_sub["id"].as_str().unwrap(), WAIT)
        .await;
    assert!(api_b.deliveries(&sb).await.is_empty());
    let shown = api_a.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(shown.body["tenant"], a.id.as_str());
    // An application cannot publish for another tenant.
    let r = api_a
        .post(
            "/v1/events",
            json!({"name": "e", "data": {}, "tenant": b.id}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("tenant"))
    );
    // Every probe of B at A's objects is a 404, never their data.
    let probes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/subscriptions/{sa}"), None),
        (
            "PUT",
            format!("/v1/subscriptions/{sa}"),
            Some(json!({"name": "x", "service": "http",
            "config": {"url": receiver.url}, "events": ["e"]})),
        ),
        (
            "PATCH",
            format!("/v1/subscriptions/{sa}"),
            Some(json!({"name": "x"})),
        ),
        ("POST", format!("/v1/subscriptions/{sa}/enable"), None),
        ("POST", format!("/v1/subscriptions/{sa}/disable"), None),
        ("POST", format!("/v1/subscriptions/{sa}/test"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sa}/rotate-secret"),
            None,
        ),
        (
            "POST",
            format!("/v1/subscriptions/{sa}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        ("GET", format!("/v1/subscriptions/{sa}/deliveries"), None),
        ("GET", format!("/v1/deliveries/{da}"), None),
        ("POST", format!("/v1/deliveries/{da}/retry"), None),
        ("GET", format!("/v1/events/{event_id}"), None),
        ("GET", format!("/v1/events/{event_id}/deliveries"), None),
        ("DELETE", format!("/v1/subscriptions/{sa}"), None),
    ];
    for (method, path, body) in &probes {
        let r = api_b.send(method, path, body.as_ref()).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(
            !r.body.to_string().contains(&sa) || path.contains(&sa),
            "{}",
            r.body
        );
    }
    // Lists hold only their own.
    let mine = api_b.get("/v1/subscriptions").await.body;
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sb.as_str()]);
    assert_eq!(api_b.get("/v1/deliveries").await.body["items"], json!([]));
    assert_eq!(api_b.get("/v1/events").await.body["items"], json!([]));
    // A's subscription is untouched, and A still sees it.
    let still = api_a.get(&format!("/v1/subscriptions/{sa}")).await;
    assert_eq!(
        (still.status, still.body["status"].as_str()),
        (200, Some("active"))
    );
    // The admin sees everything and may act for an application.
    let for_a = admin
        .post(
            "/v1/subscriptions",
            json!({"name": "by admin", "service": "http",
            "config": {"url": receiver.url}, "events": ["x"], "owner": a.id}),
        )
        .await;
    assert_eq!(for_a.status, 201, "{}", for_a.body);
    let listed = api_a.get("/v1/subscriptions").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let r = admin
        .post(
            "/v1/subscriptions",
            json!({"name": "n", "service": "http",
            "config": {"url": receiver.url}, "events": ["x"], "owner": "app_nope"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("owner"))
    );
    // Applications do not manage applications, nor set owners.
    assert_eq!(api_a.get("/v1/applications").await.status, 403);
    let r = api_a
        .post(
            "/v1/subscriptions",
            json!({"name": "n", "service": "http",
            "config": {"url": receiver.url}, "events": ["x"], "owner": b.id}),
        )
        .await;
    assert_eq!(r.status, 403);
}

async fn scopes_limit_what_a_token_does(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let publisher = application(&admin, &["publish"]).await;
    let manager = application(&admin, &["subscriptions"]).await;
    let p = Api::new(&server.base, &token(&server.base, &publisher).await);
    let m = Api::new(&server.base, &token(&server.base, &manager).await);
    let r = p.get("/v1/subscriptions").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(
        r.body["detail"].as_str().unwrap().contains("subscriptions"),
        "{}",
        r.body
    );
    assert_eq!(
        p.post("/v1/events", json!({"name": "e", "data": {}}))
            .await
            .status,
        202
    );
    let r = m.post("/v1/events", json!({"name": "e", "data": {}})).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body["detail"].as_str().unwrap().contains("publish"),
        "{}",
        r.body
    );
    assert_eq!(m.get("/v1/services").await.status, 200);
    assert_eq!(m.get("/v1/event-types").await.status, 200);
    assert_eq!(
        m.send("PUT", "/v1/event-types/x", Some(&json!({"schema": null})))
            .await
            .status,
        403
    );
    // A narrowed token has only what it asked for.
    let both = application(&admin, &["subscriptions", "publish"]).await;
    let (status, _, body) = token_request(
        &server.base,
        &[("grant_type", "client_credentials"), ("scope", "publish")],
        Some((&both.client_id, &both.secret)),
    )
    .await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("publish")),
        "{body}"
    );
    let narrowed = Api::new(&server.base, body["access_token"].as_str().unwrap());
    assert_eq!(narrowed.get("/v1/subscriptions").await.status, 403);
}

async fn the_token_endpoint_follows_rfc_6749(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let app = application(&admin, &["subscriptions", "publish"]).await;
    let base = server.base.as_str();
    let grant = [("grant_type", "client_credentials")];
    // Form fields, and HTTP Basic.
    let (status, headers, body) = token_request(
        base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "subscriptions publish");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, body) = token_request(base, &grant, Some((&app.client_id, &app.secret))).await;
    assert_eq!(status, 200, "{body}");
    // The errors of §5.2.
    let error = |expected_status: u16, expected: &'static str| {
        move |(status, headers, body): (u16, reqwest::header::HeaderMap, Value)| {
            assert_eq!(
                (status, body["error"].as_str()),
                (expected_status, Some(expected)),
                "{body}"
            );
            assert!(body["error_description"].is_string());
            assert_eq!(headers["cache-control"], "no-store");
            if expected_status == 401 {
                assert!(headers.contains_key("www-authenticate"));
            }
        }
    };
    error(401, "invalid_client")(
        token_request(base, &grant, Some((&app.client_id, "phs_wrong"))).await,
    );
    error(401, "invalid_client")(token_request(base, &grant, Some(("cli_nobody", "x"))).await);
    error(401, "invalid_client")(token_request(base, &grant, None).await);
    error(400, "invalid_request")(
        token_request(
            base,
            &[
                ("client_id", &app.client_id),
                ("client_secret", &app.secret),
            ],
            None,
        )
        .await,
    );
    error(400, "unsupported_grant_type")(
        token_request(
            base,
            &[("grant_type", "password")],
            Some((&app.client_id, &app.secret)),
        )
        .await,
    );
    error(400, "invalid_scope")(
        token_request(
            base,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            Some((&app.client_id, &app.secret)),
        )
        .await,
    );
    error(400, "invalid_request")(
        token_request(
            base,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.client_id),
                ("client_secret", &app.secret),
            ],
            Some((&app.client_id, &app.secret)),
        )
        .await,
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Guessing is slowed down: past a few wrong secrets, even the right one waits.
    let guessed = application(&admin, &["publish"]).await;
    // Wrong secrets until the client is locked (each one is checked at the cost of a hash, which a
    // loaded machine may make longer than the first lock's second: go on until it says so).
    let mut locked = false;
    for _ in 0..30 {
        let (_, headers, _) =
            token_request(base, &grant, Some((&guessed.client_id, "phs_guess"))).await;
        if headers.contains_key("retry-after") {
            locked = true;
            break;
        }
    }
    assert!(locked, "wrong secrets lock the client");
    let (status, headers, body) =
        token_request(base, &grant, Some((&guessed.client_id, &guessed.secret))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    // A rotated secret: the old one is refused, the new one works.
    let r = admin
        .post(
            &format!("/v1/applications/{}/rotate-secret", app.id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let new_secret = r.body["client_secret"].as_str().unwrap();
    error(401, "invalid_client")(
        token_request(base, &grant, Some((&app.client_id, &app.secret))).await,
    );
    let (status, _, _) = token_request(base, &grant, Some((&app.client_id, new_secret))).await;
    assert_eq!(status, 200);
    // The application is read without its secret, and listed.
    let shown = admin
        .get(&format!("/v1/applications/{}", app.id))
        .await
        .body;
    assert!(shown.get("client_secret").is_none(), "{shown}");
    let listed = admin.get("/v1/applications").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

async fn expired_and_revoked_tokens_are_refused(backend: Backend) {
    let server = Server::start_with(ServerOptions {
        extra: vec!["--token-ttl-s".into(), "1".into()],
        ..ServerOptions::on(backend)
    })
    .await;
    let admin = server.api();
    let app = application(&admin, &["subscriptions", "publish"]).await;
    let t = token(&server.base, &app).await;
    let api = Api::new(&server.base, &t);
    assert_eq!(api.get("/v1/subscriptions").await.status, 200);
    wait_for(Duration::from_secs(5), "the token to expire", || async {
        (api.get("/v1/subscriptions").await.status == 401).then_some(())
    })
    .await;
    // A deleted application: its token stops at once, its subscriptions go, their pending
    // deliveries are cancelled.
    let server = Server::start(backend).await;
    let admin = server.api();
    let app = application(&admin, &["subscriptions", "publish"]).await;
    let api = Api::new(&server.base, &token(&server.base, &app).await);
    let sub = api
        .subscribe(
            "http://127.0.0.1:9/hook",
            &["e"],
            json!({"retry": {"schedule_s": [600]}}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    api.publish(json!({"name": "e", "data": {}})).await;
    let dlv = admin.first_delivery(&sub, WAIT).await;
    assert_eq!(
        admin
            .send("DELETE", &format!("/v1/applications/{}", app.id), None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/v1/subscriptions").await.status, 401);
    assert_eq!(
        admin.get(&format!("/v1/subscriptions/{sub}")).await.status,
        404
    );
    admin.delivery_with_status(&dlv, "cancelled", WAIT).await;
    assert_eq!(
        admin
            .get(&format!("/v1/applications/{}", app.id))
            .await
            .status,
        404
    );
}

/// On one PostgreSQL database, a token revoked through one process is refused by another
/// within a second.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn a_deleted_applications_token_is_refused_by_every_process() {
    if !crate::util::postgres_available() {
        return;
    }
    let servers = Server::start_many(2, ServerOptions::on(Backend::Postgres)).await;
    let (one, two) = (servers[0].api(), &servers[1]);
    let app = application(&one, &["subscriptions"]).await;
    let t = token(&servers[0].base, &app).await;
    let on_two = Api::new(&two.base, &t);
    assert_eq!(on_two.get("/v1/subscriptions").await.status, 200);
    assert_eq!(
        one.send("DELETE", &format!("/v1/applications/{}", app.id), None)
            .await
            .status,
        204
    );
    let deleted = std::time::Instant::now();
    wait_for(
        Duration::from_secs(1),
        "the other process to refuse the token",
        || async { (on_two.get("/v1/subscriptions").await.status == 401).then_some(()) },
    )
    .await;
    assert!(deleted.elapsed() < Duration::from_secs(1));
}

/// `revoke-tokens` ends every access token of an application at once, on every process within a
/// second; the application and its secret stay, and a new token works.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn revoking_an_applications_tokens_reaches_every_process() {
    if !crate::util::postgres_available() {
        return;
    }
    let servers = Server::start_many(2, ServerOptions::on(Backend::Postgres)).await;
    let (one, two) = (servers[0].api(), &servers[1]);
    let app = application(&one, &["subscriptions"]).await;
    let (a, b) = (
        token(&servers[0].base, &app).await,
        token(&servers[0].base, &app).await,
    );
    let on_two = [Api::new(&two.base, &a), Api::new(&two.base, &b)];
    for api in &on_two {
        assert_eq!(api.get("/v1/subscriptions").await.status, 200);
    }
    let r = one
        .post(
            &format!("/v1/applications/{}/revoke-tokens", app.id),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["revoked"].as_u64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    let revoked = std::time::Instant::now();
    for api in &on_two {
        wait_for(
            Duration::from_secs(2),
            "the other process to refuse the token",
            || async { (api.get("/v1/subscriptions").await.status == 401).then_some(()) },
        )
        .await;
    }
    assert!(revoked.elapsed() < Duration::from_secs(2));
    let fresh = token(&servers[0].base, &app).await;
    assert_eq!(
        Api::new(&two.base, &fresh)
            .get("/v1/subscriptions")
            .await
            .status,
        200
    );
    // Only the admin may, and only an application that exists.
    let as_app = Api::new(&servers[0].base, &fresh);
    let r = as_app
        .post(
            &format!("/v1/applications/{}/revoke-tokens", app.id),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = one
        .post("/v1/applications/app_nope/revoke-tokens", json!({}))
        .await;
    assert_eq!(r.status, 404);
}

/// No client secret, access token or signing secret in clear in the log or the database file.
#[tokio::test]
async fn no_secret_is_kept_in_clear() {
    let mut server = Server::start(Backend::Sqlite).await;
    let admin = server.api();
    let app = application(&admin, &["subscriptions"]).await;
    let t = token(&server.base, &app).await;
    let api = Api::new(&server.base, &t);
    let sub = api
        .subscribe("https://example.com/h", &["a"], json!({}))
        .await;
    let signing = sub["secret"]
        .as_str()
        .unwrap()
        .trim_start_matches("whsec_")
        .to_owned();
    assert_eq!(api.get("/v1/subscriptions").await.status, 200);
    server.terminate().await;
    let log = server.log();
    for secret in [&app.secret, &t, &signing] {
        assert!(!log.contains(secret.as_str()), "the log holds a secret");
    }
    for secret in [&app.secret, &t, &signing] {
        let holding = server.database_files_holding(secret);
        assert!(holding.is_empty(), "{holding:?} hold a secret");
    }
}

/// Client ids are unique per publisher: two applications that both publish `order-1` make two
/// events, and a receiver they share (an admin subscription) sees two `webhook-id`s, each
/// signed, so that deduplicating on it drops neither. `evt_` ids are the service's to give.
async fn two_publishers_same_client_id_are_two_events_on_the_wire(backend: Backend) {
    let server = Server::start(backend).await;
    let admin = server.api();
    let receiver = Receiver::start().await;
    let sub = admin
        .subscribe(&receiver.url, &["order.paid"], json!({}))
        .await;
    let secret = sub["secret"].as_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let app = application(&admin, &["publish"]).await;
        let api = admin.with_token(&token(&admin.base, &app).await);
        let r = api
            .post(
                "/v1/events",
                json!({"name": "order.paid", "id": "order-1", "data": {}}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["id"].as_str()),
            (202, Some("order-1")),
            "{}",
            r.body
        );
        // The admin's subscription receives it, but the application is told only of its own.
        assert_eq!(r.body["deliveries"], 0, "{}", r.body);
        let again = api
            .post(
                "/v1/events",
                json!({"name": "order.paid", "id": "order-1", "data": {}}),
            )
            .await;
        assert_eq!((again.status, &again.body["deliveries"]), (200, &json!(0)));
        let r = api
            .post(
                "/v1/events",
                json!({"name": "order.paid", "id": "evt_mine", "data": {}}),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "id");
        ids.push(format!("{}:order-1", app.id));
    }
    let hits = receiver.wait_hits(2, WAIT).await;
    let mut seen: Vec<String> = hits
        .iter()
        .map(|h| {
            crate::util::verify(secret, h).expect("signed under the wire id");
            assert_eq!(
                h.json()["id"],
                "order-1",
                "the body keeps the publisher's id"
            );
            h.header("webhook-id").to_owned()
        })
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
}

/// What each operation of the document asks of its caller. A route the table does not name fails
/// the test below: a new route must say who may call it.
fn required(method: &str, path: &str) -> Option<&'static str> {
    const PUBLIC: &[&str] = &[
        "/healthz",
        "/readyz",
        "/oauth/token",
        "/metrics",
        "/1.0/api/api.yml",
    ];
    if PUBLIC.contains(&path) {
        return Some("public");
    }
    Some(match (method, path) {
        (_, p) if p.starts_with("/v1/applications") => "admin",
        ("PUT" | "DELETE", "/v1/event-types/{name}") => "admin",
        ("GET", "/v1/sources") => "admin",
        ("GET", "/1.0/config") => "admin",
        (_, "/v1/events" | "/v1/events/{id}") => "publish",
        (_, p) if p.starts_with("/v1/subscriptions/{id}/feed") => "consume",
        (_, p)
            if p.starts_with("/v1/subscriptions")
                || p.starts_with("/v1/deliveries")
                || p.starts_with("/v1/event-types")
                || p.starts_with("/1.0/")
                || p.starts_with("/api/v2/webhooks/") =>
        {
            "subscriptions"
        }
        (
            _,
            "/v1/events/{id}/deliveries"
            | "/v1/filters/evaluate"
            | "/v1/services"
            | "/v1/stats/deliveries",
        ) => "subscriptions",
        _ => return None,
    })
}

/// Every operation in `/openapi.json`, called by an application that lacks what it needs, is
/// refused with 403 before anything else is read; called by one that has it, it is not refused
/// for want of a scope. The scope is checked by the extractor the handler takes (`Can<P>`), so a
/// handler cannot forget it; this test holds the table of who may call what to the server.
#[tokio::test]
async fn every_route_refuses_an_application_without_its_scope() {
    let server = Server::start(Backend::Sqlite).await;
    let admin = server.api();
    let publisher = application(&admin, &["publish"]).await;
    let manager = application(&admin, &["subscriptions"]).await;
    let p = Api::new(&server.base, &token(&server.base, &publisher).await);
    let consumer = application(&admin, &["consume"]).await;
    let m = Api::new(&server.base, &token(&server.base, &manager).await);
    let c = Api::new(&server.base, &token(&server.base, &consumer).await);
    let doc = admin.get("/openapi.json").await.body;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let upper = method.to_ascii_uppercase();
            let need = required(&upper, path)
                .unwrap_or_else(|| panic!("{upper} {path}: say who may call it in `required`"));
            let url = path
                .replace("{id}", "sub_0000000000000000000000000a")
                .replace("{name}", "order.created");
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let (lacking, having): (Vec<&Api>, Vec<&Api>) = match need {
                "public" => continue,
                "admin" => (vec![&p, &m], vec![&admin]),
                "publish" => (vec![&m], vec![&p, &admin]),
                "consume" => (vec![&p, &m], vec![&c, &admin]),
                _ => (vec![&p], vec![&m, &admin]),
            };
            for caller in lacking {
                let r = caller.send(&upper, &url, body.as_ref()).await;
                assert_eq!(r.status, 403, "{upper} {path} without {need}: {}", r.body);
            }
            for caller in having {
                let r = caller.send(&upper, &url, body.as_ref()).await;
                assert!(
                    ![401, 403].contains(&r.status),
                    "{upper} {path} with {need}: {} {}",
                    r.status,
                    r.body
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations checked");
}

both_backends!(
    two_publishers_same_client_id_are_two_events_on_the_wire,
    two_applications_see_and_change_only_their_own,
    scopes_limit_what_a_token_does,
    the_token_endpoint_follows_rfc_6749,
    expired_and_revoked_tokens_are_refused,
);

/// `posthorn admin-token --rotate` reaches every running process within seconds: the old token
/// and its dashboard sessions are refused, the new one works, on both of two processes; a
/// sign-out ends its session on every process, a copy of the cookie included.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn admin_token_rotation_and_sign_out_reach_every_process() {
    if !crate::util::postgres_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let database = Backend::Postgres.database_url(tmp.path()).await;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    // Two processes whose admin token is the database's (no --admin-token).
    let mut servers = Vec::new();
    let mut printed = None;
    for n in 0..2 {
        let dir = tmp.path().join(format!("p{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--master-key",
            &key,
        ]
        .map(String::from)
        .into();
        let server = Server::spawn(&dir, &args, &dir).await;
        let token = server
            .stdout
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("admin token: ").map(str::to_owned));
        printed = printed.or(token);
        servers.push(server);
    }
    let old = printed.expect("the generated token is printed once");
    let http = reqwest::Client::new();
    let sign_in = |base: String, token: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/ui/login"))
                .json(&json!({"token": token}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let with_cookie = |base: &str, cookie: &str| {
        http.get(format!("{base}/v1/subscriptions"))
            .header("cookie", cookie.to_owned())
    };
    // A session opened on one process works on the other; signing out on the first ends it on
    // both (the copy of the cookie sent to the second included).
    let cookie = sign_in(servers[0].base.clone(), old.clone()).await;
    assert_eq!(
        with_cookie(&servers[1].base, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let out = http
        .post(format!("{}/ui/logout", servers[0].base))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204, "{}", servers[0].log());
    for s in &servers {
        wait_for(
            Duration::from_secs(3),
            "the signed-out session refused",
            || async {
                (with_cookie(&s.base, &cookie).send().await.unwrap().status() == 401).then_some(())
            },
        )
        .await;
    }
    // Rotation.
    let session = sign_in(servers[1].base.clone(), old.clone()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args([
            "admin-token",
            "--rotate",
            "--database",
            &database,
            "--master-key",
            &key,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let rotated = std::time::Instant::now();
    for s in &servers {
        let (with_old, with_new) = (Api::new(&s.base, &old), Api::new(&s.base, &fresh));
        wait_for(
            Duration::from_secs(5),
            "the rotation to reach the process",
            || async { (with_new.get("/v1/subscriptions").await.status == 200).then_some(()) },
        )
        .await;
        assert_eq!(with_old.get("/v1/subscriptions").await.status, 401);
        assert_eq!(
            with_cookie(&s.base, &session)
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "the old token's sessions end with it"
        );
    }
    assert!(rotated.elapsed() < Duration::from_secs(5));
}

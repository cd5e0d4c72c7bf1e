//! Delivery to receivers that authenticate Posthorn: OAuth2 client credentials (RFC 6749 §4.4)
//! against a token server and a resource server written here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use serde_json::{json, Value};

use crate::util::{spec_of, wait_for, Api, Backend, Server};

const SECRET: &str = "s3cret-client-secret";

/// A token server (`POST /token`) and the resource server it guards (`POST /hook`).
#[derive(Default)]
struct Auth {
    /// Tokens issued (`tok-1`, `tok-2`, …); `/hook` accepts those not revoked.
    issued: AtomicU64,
    /// The `expires_in` of the next tokens.
    expires_in: AtomicU64,
    /// `/token` answers 503 while set.
    down: AtomicBool,
    /// `/hook` refuses every token up to this one (a revocation).
    revoked_up_to: AtomicU64,
    /// What `/token` was sent: its form and its `Authorization`.
    token_requests: Mutex<Vec<(String, Option<String>)>>,
    /// `/hook`'s answers: the token it got and the status it gave.
    hook: Mutex<Vec<(Option<String>, u16)>>,
}

impl Auth {
    fn fetches(&self) -> u64 {
        self.issued.load(SeqCst)
    }

    fn delivered(&self) -> usize {
        self.hook
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 204)
            .count()
    }

    fn refusals(&self) -> usize {
        self.hook
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 401)
            .count()
    }
}

async fn start_auth() -> (Arc<Auth>, String) {
    let auth = Arc::new(Auth {
        expires_in: AtomicU64::new(3600),
        ..Auth::default()
    });
    let (a, b) = (auth.clone(), auth.clone());
    let app = axum::Router::new()
        .route(
            "/token",
            post(move |headers: HeaderMap, body: String| {
                let auth = a.clone();
                async move {
                    let basic = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    auth.token_requests
                        .lock()
                        .unwrap()
                        .push((body.clone(), basic.clone()));
                    if auth.down.load(SeqCst) {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({"error": "temporarily_unavailable",
                                "error_description": "maintenance"})),
                        )
                            .into_response();
                    }
                    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let expected = base64::engine::general_purpose::STANDARD
                        .encode(format!("posthorn:{SECRET}"));
                    let client_ok = basic.as_deref() == Some(&format!("Basic {expected}"))
                        || (field("client_id").as_deref() == Some("posthorn")
                            && field("client_secret").as_deref() == Some(SECRET));
                    if field("grant_type").as_deref() != Some("client_credentials") || !client_ok {
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": "invalid_client"})),
                        )
                            .into_response();
                    }
                    let n = auth.issued.fetch_add(1, SeqCst) + 1;
                    axum::Json(
                        json!({"access_token": format!("tok-{n}"), "token_type": "Bearer",
                        "expires_in": auth.expires_in.load(SeqCst)}),
                    )
                    .into_response()
                }
            }),
        )
        .route(
            "/hook",
            post(move |headers: HeaderMap| {
                let auth = b.clone();
                async move {
                    let given = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::to_owned);
                    let n: u64 = given
                        .as_deref()
                        .and_then(|t| t.strip_prefix("tok-"))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let ok = n > auth.revoked_up_to.load(SeqCst) && n <= auth.issued.load(SeqCst);
                    let status = if ok { 204 } else { 401 };
                    auth.hook.lock().unwrap().push((given, status));
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (auth, base)
}

async fn subscribe(api: &Api, base: &str, client_auth: &str) -> Value {
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "guarded", "service": "http", "events": ["order.*"],
                "retry": {"schedule_s": [1, 1, 1, 1, 1]},
                "config": {"url": format!("{base}/hook"),
                    "oauth2": {"token_url": format!("{base}/token"), "client_id": "posthorn",
                        "client_secret": SECRET, "scope": "webhooks", "client_auth": client_auth}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// One token for many deliveries, a new one after a 401 and before expiry, a failing token
/// endpoint logged and retried, and the secret in none of the API's answers, the logs or the
/// database file.
async fn oauth2_tokens_are_fetched_once_renewed_and_kept_secret(backend: Backend) {
    let (auth, base) = start_auth().await;
    let server = Server::start(backend).await;
    let api = server.api();
    let sub = subscribe(&api, &base, "basic").await;
    let sub_id = sub["id"].as_str().unwrap();
    assert_eq!(
        sub["config"]["oauth2"]["client_secret"], "********",
        "{sub}"
    );
    assert_eq!(sub["config"]["oauth2"]["client_id"], "posthorn");

    // Twenty deliveries, one token.
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"name": "order.paid", "data": {"i": i}}))
        .collect();
    assert_eq!(api.post("/v1/events", json!(batch)).await.status, 202);
    wait_for(Duration::from_secs(15), "twenty deliveries", || async {
        (auth.delivered() >= 20).then_some(())
    })
    .await;
    assert_eq!(auth.fetches(), 1, "one token fetch for twenty deliveries");
    let (form, basic) = auth.token_requests.lock().unwrap()[0].clone();
    assert!(form.contains("grant_type=client_credentials") && form.contains("scope=webhooks"));
    assert!(
        !form.contains(SECRET),
        "Basic client authentication keeps the secret out of the body"
    );
    assert!(basic.unwrap().starts_with("Basic "));

    // The receiver revokes the token: a 401, one new token, the same attempt delivered.
    auth.revoked_up_to.store(1, SeqCst);
    auth.expires_in.store(1, SeqCst);
    let e = api
        .publish(json!({"name": "order.paid", "data": {"after": "revocation"}}))
        .await;
    wait_for(
        Duration::from_secs(10),
        "the delivery after the revocation",
        || async { (auth.delivered() >= 21).then_some(()) },
    )
    .await;
    assert_eq!((auth.fetches(), auth.refusals()), (2, 1));
    let d = api.first_delivery_of_event(e["id"].as_str().unwrap()).await;
    let d = api
        .delivery_with_status(&d, "succeeded", Duration::from_secs(5))
        .await;
    assert_eq!(d["attempts"], 1, "renewed within the attempt: {d}");

    // That token lives one second: the next deliveries take a new one before it runs out, with no
    // 401 on the way.
    wait_for(
        Duration::from_secs(10),
        "a token renewed before expiry",
        || async {
            api.publish(json!({"name": "order.paid", "data": {"renewal": true}}))
                .await;
            (auth.fetches() >= 3).then_some(())
        },
    )
    .await;
    auth.expires_in.store(3600, SeqCst);
    wait_for(
        Duration::from_secs(10),
        "the deliveries of the renewal",
        || async {
            let hook = auth.hook.lock().unwrap();
            (hook.iter().filter(|(_, s)| *s == 204).count() + 1 == hook.len()).then_some(())
        },
    )
    .await;
    assert_eq!(
        auth.refusals(),
        1,
        "renewed before expiry, not after a refusal"
    );

    // The token endpoint fails: the attempt fails with its answer in the log, and is retried.
    auth.down.store(true, SeqCst);
    let renewed = auth.fetches();
    auth.revoked_up_to.store(renewed, SeqCst);
    let e = api
        .publish(json!({"name": "order.paid", "data": {"while": "down"}}))
        .await;
    let d = api.first_delivery_of_event(e["id"].as_str().unwrap()).await;
    let failed = wait_for(
        Duration::from_secs(10),
        "an attempt failed on the token",
        || async {
            let d = api.get(&format!("/v1/deliveries/{d}")).await.body;
            d["attempt_log"]
                .as_array()
                .and_then(|log| log.iter().find(|a| a["error"].is_string()).cloned())
        },
    )
    .await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("OAuth2 token endpoint")
            && error.contains("503")
            && error.contains("temporarily_unavailable"),
        "{error}"
    );
    auth.down.store(false, SeqCst);
    let d = api
        .delivery_with_status(&d, "succeeded", Duration::from_secs(15))
        .await;
    assert!(d["attempts"].as_i64().unwrap() >= 2, "{d}");

    // The secret and the tokens: in no answer, no log, not in the database file.
    let shown = api
        .get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .body
        .to_string();
    let deliveries = api
        .get(&format!("/v1/subscriptions/{sub_id}/deliveries?limit=100"))
        .await;
    let mut logs = String::new();
    for d in deliveries.body["items"].as_array().unwrap() {
        logs.push_str(
            &api.get(&format!("/v1/deliveries/{}", d["id"].as_str().unwrap()))
                .await
                .body
                .to_string(),
        );
    }
    for (what, text) in [
        ("the subscription", &shown),
        ("the attempt logs", &logs),
        ("the server's log", &server.log()),
    ] {
        assert!(!text.contains(SECRET), "the client secret in {what}");
        assert!(!text.contains("Bearer tok-"), "an access token in {what}");
    }
    assert!(
        logs.contains("authorization"),
        "the header is logged, masked: {logs}"
    );
    if backend == Backend::Sqlite {
        let holding = server.database_files_holding(SECRET);
        assert!(holding.is_empty(), "the client secret in {holding:?}");
    }
    // Written back as shown, the secret is kept.
    let spec = spec_of(&sub);
    let r = api
        .send("PUT", &format!("/v1/subscriptions/{sub_id}"), Some(&spec))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    auth.revoked_up_to.store(auth.fetches(), SeqCst);
    let before = auth.fetches();
    api.publish(json!({"name": "order.paid", "data": {"after": "rewrite"}}))
        .await;
    wait_for(
        Duration::from_secs(10),
        "a token fetched with the kept secret",
        || async { (auth.fetches() > before).then_some(()) },
    )
    .await;
}

/// `client_auth: form` sends the credentials as form fields, as some servers want.
async fn oauth2_client_credentials_can_go_in_the_form(backend: Backend) {
    let (auth, base) = start_auth().await;
    let server = Server::start(backend).await;
    let api = server.api();
    subscribe(&api, &base, "form").await;
    api.publish(json!({"name": "order.paid", "data": {}})).await;
    wait_for(Duration::from_secs(10), "a delivery", || async {
        (auth.delivered() >= 1).then_some(())
    })
    .await;
    let (form, basic) = auth.token_requests.lock().unwrap()[0].clone();
    assert!(basic.is_none(), "no Basic header with form credentials");
    assert!(form.contains("client_id=posthorn") && form.contains("client_secret="));
}

/// A token URL in a range the server does not deliver to is refused when the subscription is
/// written, naming the field.
#[tokio::test]
async fn oauth2_token_urls_are_under_the_network_policy() {
    let server = Server::start_with(crate::util::ServerOptions {
        allow_loopback: false,
        ..Default::default()
    })
    .await;
    let r = server
        .api()
        .post(
            "/v1/subscriptions",
            json!({"name": "n", "service": "http", "events": ["*"],
                "config": {"url": "https://example.com/hook",
                    "oauth2": {"token_url": "http://127.0.0.1:9/token", "client_id": "c",
                        "client_secret": "s"}}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["errors"][0]["field"], "config.oauth2.token_url",
        "{}",
        r.body
    );
}

both_backends!(
    oauth2_tokens_are_fetched_once_renewed_and_kept_secret,
    oauth2_client_credentials_can_go_in_the_form,
);

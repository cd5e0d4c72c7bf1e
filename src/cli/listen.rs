//! The receiving side. `posthorn listen` is a local receiver for developing against Posthorn:
//! it checks each webhook's signature and timestamp, prints it readably, and can forward it to
//! the application being developed, answering Posthorn with the application's status.
//! `posthorn verify` checks one saved request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use clap::Args;
use posthorn_core::signing::verify as check;
use posthorn_core::Secret;

use super::resources::print_body;
use super::{refuse, Exit};

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one, and prints it)
    #[arg(long, default_value_t = 8526)]
    pub port: u16,
    /// The subscription's signing secret (whsec_…)
    #[arg(long, env = "POSTHORN_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Send each verified webhook on to this URL (your application), and answer Posthorn with
    /// its status
    #[arg(long)]
    pub forward: Option<String>,
    /// Largest accepted distance between webhook-timestamp and now, in seconds
    #[arg(long, default_value_t = 300)]
    pub tolerance_s: i64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The subscription's signing secret (whsec_…)
    #[arg(long, env = "POSTHORN_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The request's headers: `Name: value` lines (as `curl -D` saves them), or a JSON object
    #[arg(long)]
    pub headers: String,
    /// The request's body, byte for byte
    #[arg(long)]
    pub body: String,
    /// Also check that webhook-timestamp is within this many seconds of now (a saved request is
    /// usually older; by default the timestamp is not checked)
    #[arg(long)]
    pub tolerance_s: Option<i64>,
}

struct Listener {
    secret: Secret,
    tolerance_s: i64,
    forward: Option<String>,
    http: reqwest::Client,
}

fn secret(s: &str) -> Result<Secret, Exit> {
    Secret::parse(s).map_err(|e| refuse(format!("--secret: {e}")))
}

fn now_s() -> i64 {
    posthorn_core::time::now_ms() / 1000
}

pub async fn listen(args: ListenArgs) -> Exit {
    let secret = match secret(&args.secret) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let state = Arc::new(Listener {
        secret,
        tolerance_s: args.tolerance_s,
        forward: args.forward.clone(),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .fallback(receive)
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(state);
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return refuse(format!("cannot listen on {addr}: {e}")),
    };
    let addr = listener.local_addr().unwrap_or(addr);
    println!("listening on http://{addr}/ (subscribe this URL; Ctrl-C to stop)");
    if let Some(f) = &args.forward {
        println!("forwarding verified webhooks to {f}");
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        Ok(()) => Exit::Ok,
        Err(e) => refuse(format!("the receiver stopped: {e}")),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(l): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let verified = check(
        &l.secret,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        now_s(),
        Some(l.tolerance_s),
    );
    if let Err(why) = verified {
        println!("✗ {method} {uri} rejected: {why}");
        // 401: Posthorn records the failure and retries, as it would for a real receiver.
        return (
            StatusCode::UNAUTHORIZED,
            format!("signature rejected: {why}\n"),
        );
    }
    println!(
        "✓ {} {}  id {}  attempt {}  delivery {}",
        header(&headers, "posthorn-event").unwrap_or("(event)"),
        uri.path(),
        header(&headers, "webhook-id").unwrap_or(""),
        header(&headers, "posthorn-attempt").unwrap_or("?"),
        header(&headers, "posthorn-delivery").unwrap_or("?"),
    );
    let text = String::from_utf8_lossy(&body);
    print_body("  ", &serde_json::Value::String(text.into_owned()));
    let Some(target) = &l.forward else {
        return (StatusCode::NO_CONTENT, String::new());
    };
    let mut req = l.http.request(method, target).body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status();
            println!("  → forwarded to {target}: {status}");
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, res.text().await.unwrap_or_default())
        }
        Err(e) => {
            println!("  → forwarding to {target} failed: {e}");
            (StatusCode::BAD_GATEWAY, format!("forwarding failed: {e}\n"))
        }
    }
}

/// Headers from a saved file: `Name: value` lines (a status line and blank lines are skipped),
/// or a JSON object of names to values.
fn read_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.trim_start().starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        return Ok(map
            .into_iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                (k.to_ascii_lowercase(), v)
            })
            .collect());
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect())
}

pub fn verify(args: VerifyArgs) -> Exit {
    let secret = match secret(&args.secret) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let headers = match std::fs::read_to_string(&args.headers) {
        Ok(t) => match read_headers(&t) {
            Ok(h) => h,
            Err(e) => return refuse(format!("{}: {e}", args.headers)),
        },
        Err(e) => return refuse(format!("cannot read {}: {e}", args.headers)),
    };
    let body = match std::fs::read(&args.body) {
        Ok(b) => b,
        Err(e) => return refuse(format!("cannot read {}: {e}", args.body)),
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match check(
        &secret,
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
        &body,
        now_s(),
        args.tolerance_s,
    ) {
        Ok(()) => {
            println!(
                "valid: {} signed at {}",
                get("webhook-id").unwrap_or(""),
                get("webhook-timestamp").unwrap_or("")
            );
            Exit::Ok
        }
        Err(why) => {
            eprintln!("invalid: {why}");
            Exit::Refused
        }
    }
}

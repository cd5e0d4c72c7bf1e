//! `posthorn subscriptions|deliveries|event-types|applications …` and `posthorn recover`: one
//! API call each, shown as a table (or the server's JSON with `--json`).

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use posthorn_client::Client;
use posthorn_wire::api::{
    ApplicationRequest, ApplicationView, DeliveryView, EventTypeRequest, EventTypeView, Held,
    HeldReason, SubscriptionStatus, SubscriptionView,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{cut, json_arg, print_json, refuse, report, table, Exit, Remote};

#[derive(Debug, Subcommand)]
pub enum Subscriptions {
    /// List subscriptions (newest first)
    List {
        /// Most to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only `active` or `disabled` ones
        #[arg(long)]
        status: Option<String>,
    },
    /// Create a subscription: from JSON (--from), or an HTTP one from --target-url and --events
    Create {
        /// The whole subscription as JSON, inline or @FILE (@- for standard input)
        #[arg(long, conflicts_with_all = ["target_url", "events", "retry_schedule"])]
        from: Option<String>,
        /// Where to POST each event (an `http` subscription)
        #[arg(long = "target-url", requires = "events")]
        target_url: Option<String>,
        /// Event names or patterns, comma-separated (`order.*`, `*`)
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// A filter expression over the event
        #[arg(long)]
        filter: Option<String>,
        /// A name people recognise it by [default: the target URL]
        #[arg(long)]
        name: Option<String>,
        /// Seconds to wait before each retry, comma-separated (`5,30`: three attempts in all)
        /// [default: 5 s, 30 s, 2 min, … over about a day]
        #[arg(long = "retry-schedule", value_delimiter = ',')]
        retry_schedule: Vec<u32>,
        /// Order: `false` (in parallel), `true` (one at a time) or `key` (per key, keys in
        /// parallel)
        #[arg(long, value_parser = ["false", "true", "key"])]
        ordered: Option<String>,
        /// With `--ordered key`: the path of the ordering key (e.g. `order.id`) [default: the
        /// event's ordering_key]
        #[arg(long = "order-key", value_name = "PATH")]
        order_key: Option<String>,
        #[command(flatten)]
        access: EndpointAccess,
    },
    /// Show one subscription
    Show { id: String },
    /// Change fields: a JSON merge patch (RFC 7396), inline or @FILE, and/or the endpoint's
    /// access (OAuth2, client certificate, proxy) by its flags
    Update {
        id: String,
        /// e.g. '{"events":["order.*"],"filter":null}'
        #[arg(long)]
        set: Option<String>,
        #[command(flatten)]
        access: EndpointAccess,
    },
    /// Delete a subscription (its pending deliveries are cancelled)
    Delete { id: String },
    /// Enable a subscription (its held deliveries go now)
    Enable { id: String },
    /// Disable a subscription (deliveries wait until it is enabled)
    Disable { id: String },
    /// A new signing secret (the previous one signs beside it for 24 hours)
    RotateSecret { id: String },
    /// Send a `posthorn.ping` event to it alone
    Test { id: String },
}

/// How an `http` subscription gets past a locked-down receiver: what `create` and `update` set
/// in its `config` (the flags given, merged into it). Secrets are taken inline or from @FILE
/// (@- for standard input), so that they need not show in the process list; they are write-only.
#[derive(Debug, Args)]
pub struct EndpointAccess {
    /// The receiver's OAuth2 token endpoint (client credentials grant)
    #[arg(long = "oauth2-token-url", value_name = "URL")]
    oauth2_token_url: Option<String>,
    /// The OAuth2 client id the receiver's authorization server issued
    #[arg(long = "oauth2-client-id", value_name = "ID")]
    oauth2_client_id: Option<String>,
    /// Its client secret, inline or @FILE (@- for standard input)
    #[arg(long = "oauth2-client-secret", value_name = "SECRET")]
    oauth2_client_secret: Option<String>,
    /// The scope to ask for
    #[arg(long = "oauth2-scope")]
    oauth2_scope: Option<String>,
    /// The audience to ask for
    #[arg(long = "oauth2-audience")]
    oauth2_audience: Option<String>,
    /// How the client authenticates to the token endpoint [default: basic]
    #[arg(long = "oauth2-client-auth", value_parser = ["basic", "form"])]
    oauth2_client_auth: Option<String>,
    /// PEM file of the client certificate for mutual TLS (the leaf first)
    #[arg(
        long = "client-certificate",
        value_name = "FILE",
        requires = "client_key"
    )]
    client_certificate: Option<std::path::PathBuf>,
    /// PEM file of its private key
    #[arg(
        long = "client-key",
        value_name = "FILE",
        requires = "client_certificate"
    )]
    client_key: Option<std::path::PathBuf>,
    /// The proxy its deliveries go through: http://host:port (CONNECT), socks5:// or socks5h://,
    /// inline or @FILE when it carries credentials
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
}

impl EndpointAccess {
    /// The `config` fields these flags set (empty when none is given).
    fn config(&self) -> Result<serde_json::Map<String, Value>, Exit> {
        let mut config = serde_json::Map::new();
        let mut oauth2 = serde_json::Map::new();
        for (key, value) in [
            ("token_url", &self.oauth2_token_url),
            ("client_id", &self.oauth2_client_id),
            ("scope", &self.oauth2_scope),
            ("audience", &self.oauth2_audience),
            ("client_auth", &self.oauth2_client_auth),
        ] {
            if let Some(v) = value {
                oauth2.insert(key.into(), Value::String(v.clone()));
            }
        }
        if let Some(secret) = &self.oauth2_client_secret {
            let secret = text_arg(secret, "--oauth2-client-secret")?;
            oauth2.insert("client_secret".into(), Value::String(secret));
        }
        if !oauth2.is_empty() {
            config.insert("oauth2".into(), Value::Object(oauth2));
        }
        if let (Some(certificate), Some(key)) = (&self.client_certificate, &self.client_key) {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| refuse(format!("{what}: cannot read {}: {e}", path.display())))
            };
            config.insert(
                "client_certificate".into(),
                json!({
                    "certificate": read(certificate, "--client-certificate")?,
                    "private_key": read(key, "--client-key")?,
                }),
            );
        }
        if let Some(proxy) = &self.proxy {
            let proxy = text_arg(proxy, "--proxy")?;
            config.insert("proxy".into(), Value::String(proxy));
        }
        Ok(config)
    }
}

/// A secret given inline or as @FILE (@- for standard input), without a file's final newline.
fn text_arg(arg: &str, what: &str) -> Result<String, Exit> {
    let text = super::text_arg(arg, what)?;
    Ok(if arg.starts_with('@') {
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        text
    })
}

/// `body.config`, with `fields` merged in.
fn merge_config(body: &mut Value, fields: serde_json::Map<String, Value>) {
    if fields.is_empty() {
        return;
    }
    if !body["config"].is_object() {
        body["config"] = json!({});
    }
    if let Some(config) = body["config"].as_object_mut() {
        config.extend(fields);
    }
}

#[derive(Debug, Subcommand)]
pub enum Deliveries {
    /// List deliveries (newest first): one subscription's with --subscription, or all you see
    List {
        #[arg(long)]
        subscription: Option<String>,
        /// `pending`, `succeeded`, `dead` or `cancelled`
        #[arg(long)]
        status: Option<String>,
        /// Only those created since this time (RFC 3339)
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a delivery with every attempt's request and response
    Show { id: String },
    /// One more attempt now, whatever its status
    Retry { id: String },
}

#[derive(Debug, Subcommand)]
pub enum EventTypes {
    /// List event types
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Create or replace an event type
    Put {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// JSON Schema (2020-12) that the event's data must satisfy, inline or @FILE
        #[arg(long)]
        schema: Option<String>,
        /// An example of its data, inline or @FILE (repeatable)
        #[arg(long)]
        example: Vec<String>,
    },
    /// Delete an event type
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum Applications {
    /// List applications (admin)
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Create an application; its client secret is shown once
    Create {
        name: String,
        /// What its tokens may do, comma-separated: subscriptions, publish
        #[arg(long, value_delimiter = ',', default_value = "subscriptions")]
        scopes: Vec<String>,
    },
    /// Show one application
    Show { id: String },
    /// Delete an application, its tokens and its subscriptions
    Delete { id: String },
    /// A new client secret (the old one stops working), shown once
    RotateSecret { id: String },
}

/// Runs a call and shows its answer with `show`, or as JSON.
async fn run<T: Serialize>(
    remote: &Remote,
    call: impl std::future::Future<Output = Result<T, posthorn_client::Error>>,
    show: impl FnOnce(&T),
) -> Exit {
    match call.await {
        Ok(answer) => {
            if remote.json {
                print_json(&answer);
            } else {
                show(&answer);
            }
            Exit::Ok
        }
        Err(e) => report(&e),
    }
}

fn limit(n: usize) -> (&'static str, String) {
    ("limit", n.clamp(1, 1000).to_string())
}

fn subscription_rows(subs: &[SubscriptionView]) {
    if subs.is_empty() {
        println!("no subscriptions yet: `posthorn subscriptions create --target-url URL --events NAMES` makes one");
        return;
    }
    let mut t = table(&["id", "name", "events", "service", "status", "circuit"]);
    for s in subs {
        let status = match (s.status, s.disabled_reason) {
            (SubscriptionStatus::Active, _) => "active".to_owned(),
            (SubscriptionStatus::Disabled, Some(r)) => format!("disabled ({})", r.as_str()),
            (SubscriptionStatus::Disabled, None) => "disabled".to_owned(),
        };
        let circuit = serde_json::to_value(s.circuit.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        t.add_row(vec![
            s.id.to_string(),
            cut(&s.name, 30),
            cut(&s.events.join(","), 30),
            s.service.clone(),
            status,
            circuit,
        ]);
    }
    println!("{t}");
}

fn subscription_detail(s: &SubscriptionView) {
    subscription_rows(std::slice::from_ref(s));
    if let Some(filter) = &s.filter {
        println!("filter:  {filter}");
    }
    println!(
        "config:  {}",
        serde_json::to_string(&s.config).unwrap_or_default()
    );
    match s.ordered {
        posthorn_core::subscription::Order::Unordered => {}
        posthorn_core::subscription::Order::All => println!("order:   one at a time"),
        posthorn_core::subscription::Order::Key => println!(
            "order:   per key ({})",
            s.order_key.as_deref().unwrap_or("the event's ordering_key")
        ),
    }
    if let Some(o) = s.config.get("oauth2") {
        println!(
            "oauth2:  client {} at {} (secret write-only)",
            o["client_id"].as_str().unwrap_or("?"),
            o["token_url"].as_str().unwrap_or("?")
        );
    }
    if s.config.get("client_certificate").is_some() {
        println!(
            "client certificate: expires {}",
            s.credential_expires_at.as_deref().unwrap_or("?")
        );
    }
    if let Some(proxy) = s.config.get("proxy").and_then(Value::as_str) {
        println!("proxy:   {proxy}");
    }
    if let Some(secret) = &s.secret {
        println!("secret:  {secret}   (shown once: keep it to verify signatures)");
    }
}

pub async fn subscriptions(remote: &Remote, cmd: Subscriptions) -> Exit {
    let c = remote.client();
    match cmd {
        Subscriptions::List { limit: n, status } => {
            let mut q = vec![limit(n)];
            if let Some(s) = status {
                q.push(("status", s));
            }
            run(remote, c.subscriptions(&q), |p| {
                subscription_rows(&p.items);
                more(p.next_cursor.as_deref());
            })
            .await
        }
        Subscriptions::Create {
            from,
            target_url,
            events,
            filter,
            name,
            retry_schedule,
            ordered,
            order_key,
            access,
        } => {
            let access = match access.config() {
                Ok(a) => a,
                Err(e) => return e,
            };
            let mut body = match (from, target_url) {
                (Some(from), _) => match json_arg(&from, "--from") {
                    Ok(v) => v,
                    Err(e) => return e,
                },
                (None, Some(url)) => {
                    let mut b = json!({
                        "name": name.unwrap_or_else(|| url.clone()),
                        "service": "http",
                        "config": {"url": url},
                        "events": events,
                    });
                    if let Some(f) = filter {
                        b["filter"] = Value::String(f);
                    }
                    if !retry_schedule.is_empty() {
                        b["retry"] = json!({"schedule_s": retry_schedule});
                    }
                    b
                }
                (None, None) => {
                    return refuse("give --from JSON, or --target-url URL --events NAMES")
                }
            };
            merge_config(&mut body, access);
            match ordered.as_deref() {
                Some("key") => body["ordered"] = json!("key"),
                Some(flag) => body["ordered"] = json!(flag == "true"),
                None => {}
            }
            if let Some(path) = order_key {
                body["order_key"] = json!(path);
            }
            run(remote, c.create_subscription(&body), subscription_detail).await
        }
        Subscriptions::Show { id } => run(remote, c.subscription(&id), subscription_detail).await,
        Subscriptions::Update { id, set, access } => {
            let access = match access.config() {
                Ok(a) => a,
                Err(e) => return e,
            };
            let mut patch = match set.as_deref().map(|s| json_arg(s, "--set")) {
                Some(Ok(v)) => v,
                Some(Err(e)) => return e,
                None if access.is_empty() => {
                    return refuse("give --set JSON, or a flag of the endpoint's access (--proxy, --oauth2-…, --client-certificate)")
                }
                None => json!({}),
            };
            merge_config(&mut patch, access);
            run(
                remote,
                c.patch_subscription(&id, &patch),
                subscription_detail,
            )
            .await
        }
        Subscriptions::Delete { id } => {
            run(remote, c.delete_subscription(&id), |_| {
                println!("deleted {id}")
            })
            .await
        }
        Subscriptions::Enable { id } => {
            run(
                remote,
                c.subscription_action(&id, "enable"),
                subscription_detail,
            )
            .await
        }
        Subscriptions::Disable { id } => {
            run(
                remote,
                c.subscription_action(&id, "disable"),
                subscription_detail,
            )
            .await
        }
        Subscriptions::RotateSecret { id } => {
            run(
                remote,
                c.subscription_action(&id, "rotate-secret"),
                subscription_detail,
            )
            .await
        }
        Subscriptions::Test { id } => {
            run(remote, c.test_subscription(&id), |t| {
                println!(
                    "sent posthorn.ping: event {}, delivery {}",
                    t.event_id, t.delivery_id
                )
            })
            .await
        }
    }
}

fn more(cursor: Option<&str>) {
    if let Some(c) = cursor {
        println!("(more: --limit, or the API's ?cursor={c})");
    }
}

/// Subscriptions' names by id, for tables that name a subscription (the first 1,000 the caller
/// sees; an id not among them, or a failed call, shows the id). Not read for `--json`.
async fn subscription_names(remote: &Remote, c: &Client) -> HashMap<String, String> {
    if remote.json {
        return HashMap::new();
    }
    c.subscriptions(&[limit(1000)])
        .await
        .map(|p| {
            p.items
                .into_iter()
                .map(|s| (s.id.into_string(), s.name))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a delivery is held, in a few words.
fn held_reason(held: &Held) -> String {
    match held.reason {
        HeldReason::CircuitOpen => "circuit open".to_owned(),
        HeldReason::Ordered => match &held.behind {
            Some(behind) => format!("ordered, behind {behind}"),
            None => "ordered".to_owned(),
        },
        HeldReason::SubscriptionDisabled => "subscription disabled".to_owned(),
        HeldReason::Pulled => "in its feed, for its consumer".to_owned(),
    }
}

fn delivery_rows(ds: &[DeliveryView], names: &HashMap<String, String>) {
    if ds.is_empty() {
        println!("no deliveries here");
        return;
    }
    let mut t = table(&[
        "id",
        "event",
        "subscription",
        "status",
        "last answer",
        "attempts",
        "next attempt",
    ]);
    for d in ds {
        let mut status = d.status.as_str().to_owned();
        if let Some(held) = &d.held {
            status.push_str(&format!(" (held: {})", held_reason(held)));
        }
        let last = d.last_attempt.as_ref().map_or_else(String::new, |l| {
            let answer = l
                .status
                .map_or_else(|| l.outcome.as_str().to_owned(), |s| s.to_string());
            format!("{answer}, {} ms", l.duration_ms)
        });
        t.add_row(vec![
            d.id.to_string(),
            cut(&d.event_name, 30),
            names
                .get(d.subscription_id.as_str())
                .map_or_else(|| d.subscription_id.to_string(), |n| cut(n, 30)),
            status,
            last,
            d.attempts.to_string(),
            d.next_attempt_at.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

/// A delivery and its attempts, each request and response pretty-printed.
fn delivery_detail(d: &DeliveryView, names: &HashMap<String, String>) {
    delivery_rows(std::slice::from_ref(d), names);
    if let Some(key) = &d.order_key {
        println!("ordering key: {key}");
    }
    if let Some(until) = d.held.as_ref().and_then(|h| h.until.as_deref()) {
        println!("held until {until}");
    }
    for a in d.attempt_log.iter().flatten() {
        println!();
        println!(
            "attempt {} at {}, {} ms: {}{}",
            a.number,
            a.started_at,
            a.duration_ms,
            a.outcome.as_str(),
            a.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        attempt_exchange(&a.request, a.response.as_ref());
    }
}

/// What an attempt sent and got, as its service logs it: an HTTP request and its status, a
/// plugin's command and its exit (or answer), a mail and the SMTP reply, a broker message and
/// its confirmation.
fn attempt_exchange(request: &Value, response: Option<&Value>) {
    let r = |key: &str| response.map_or(&Value::Null, |r| &r[key]);
    if let Some(command) = request["command"].as_array() {
        let words: Vec<String> = command.iter().map(str_of).collect();
        println!("  → run {}", words.join(" "));
        match response {
            None => println!("  ← no answer"),
            Some(resp) if resp.get("exit_code").is_some() => {
                let code = &resp["exit_code"];
                println!(
                    "  ← {}",
                    if code.is_null() {
                        "killed".to_owned()
                    } else {
                        format!("exit status {code}")
                    }
                );
            }
            Some(resp) => println!("  ← {}", str_of(&resp["outcome"])),
        }
        for key in ["output", "stdout", "stderr"] {
            let v = r(key);
            if !v.is_null() && v.as_str() != Some("") {
                println!("    {key}:");
                print_body("      ", v);
            }
        }
    } else if let Some(envelope) = request.get("envelope") {
        println!(
            "  → mail to {} via {}: {}",
            envelope["to"].as_array().map_or_else(
                || str_of(&envelope["to"]),
                |to| to.iter().map(str_of).collect::<Vec<_>>().join(", ")
            ),
            str_of(&request["server"]),
            str_of(&request["headers"]["subject"])
        );
        print_body("    ", &request["body"]);
        match response {
            Some(resp) => println!(
                "  ← SMTP {} {}",
                str_of(&resp["code"]),
                resp["message"].as_array().map_or_else(
                    || str_of(&resp["message"]),
                    |m| m.iter().map(str_of).collect::<Vec<_>>().join(" ")
                )
            ),
            None => println!("  ← no reply"),
        }
    } else if request.get("method").is_some() {
        println!(
            "  → {} {}",
            str_of(&request["method"]),
            str_of(&request["url"])
        );
        print_body("    ", &request["body"]);
        match response {
            Some(resp) => {
                println!("  ← {}", resp["status"]);
                print_body("    ", &resp["body"]);
            }
            None => println!("  ← no response"),
        }
    } else {
        // A broker message: where it went, then what the broker said.
        let mut to = request.clone();
        let body = to.as_object_mut().and_then(|m| m.remove("body"));
        println!("  → {}", to);
        if let Some(body) = body {
            print_body("    ", &body);
        }
        match response {
            Some(resp) => println!("  ← {resp}"),
            None => println!("  ← no confirmation"),
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// A logged body: pretty JSON when it is JSON text, else as it is; bounded.
pub fn print_body(indent: &str, body: &Value) {
    let text = match body {
        Value::Null => return,
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| s.clone()),
            Err(_) => s.clone(),
        },
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    for line in cut(&text, 4000).lines() {
        println!("{indent}{line}");
    }
}

pub async fn deliveries(remote: &Remote, cmd: Deliveries) -> Exit {
    let c = remote.client();
    match cmd {
        Deliveries::List {
            subscription,
            status,
            since,
            limit: n,
        } => {
            let mut q = vec![limit(n)];
            if let Some(s) = status {
                q.push(("status", s));
            }
            if let Some(s) = since {
                q.push(("since", s));
            }
            let names = subscription_names(remote, &c).await;
            run(remote, c.deliveries(subscription.as_deref(), &q), |p| {
                delivery_rows(&p.items, &names);
                more(p.next_cursor.as_deref());
            })
            .await
        }
        Deliveries::Show { id } => {
            let d = match c.delivery(&id).await {
                Ok(d) => d,
                Err(e) => return report(&e),
            };
            // Its one subscription's name, asked for by id (gone or unreadable: its id shows).
            let mut names = HashMap::new();
            if !remote.json {
                if let Ok(s) = c.subscription(&d.subscription_id).await {
                    names.insert(s.id.into_string(), s.name);
                }
            }
            run(remote, async { Ok(d) }, |d| delivery_detail(d, &names)).await
        }
        Deliveries::Retry { id } => {
            run(remote, c.retry(&id), |d| {
                println!("retrying {}: next attempt now", d.id)
            })
            .await
        }
    }
}

/// `posthorn recover SUB --since T`: queues the subscription's dead deliveries again, then
/// follows them until none is pending (or `--no-wait`).
pub async fn recover(remote: &Remote, id: &str, since: &str, wait: bool) -> Exit {
    let Some(since) = since_time(since, posthorn_core::time::now_ms()) else {
        return refuse(format!(
            "--since {since:?} is neither a time (2026-11-30T00:00:00Z) nor how long ago (30m, 2h, 7d)"
        ));
    };
    let since = since.as_str();
    let c = remote.client();
    let spinner = (!remote.json).then(|| {
        let s = ProgressBar::new_spinner().with_message(format!("recovering {id} since {since}"));
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    let recovered = match c.recover(id, since).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            return report(&e);
        }
    };
    if remote.json {
        print_json(&recovered);
        return Exit::Ok;
    }
    let spinner = spinner.expect("not --json");
    spinner.finish_and_clear();
    let n = recovered.requeued;
    println!(
        "requeued {n} dead {} of {id}",
        if n == 1 { "delivery" } else { "deliveries" }
    );
    if !wait || recovered.requeued == 0 {
        return Exit::Ok;
    }
    follow(&c, id, recovered.requeued).await
}

/// A bar of the requeued deliveries as they leave `pending`.
async fn follow(c: &Client, id: &str, requeued: u64) -> Exit {
    let bar = ProgressBar::new(requeued);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} delivered again {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let q = [("status", "pending".to_owned()), limit(1000)];
        match c.deliveries(Some(id), &q).await {
            Ok(page) => {
                let left = page.items.len() as u64;
                bar.set_position(requeued.saturating_sub(left));
                if left == 0 {
                    bar.finish_with_message("(done)");
                    return Exit::Ok;
                }
            }
            Err(e) => {
                bar.abandon();
                return report(&e);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn event_type_rows(ts: &[EventTypeView]) {
    if ts.is_empty() {
        println!("no event types yet: `posthorn event-types put NAME` registers one");
        return;
    }
    let mut t = table(&["name", "description", "schema", "updated"]);
    for e in ts {
        t.add_row(vec![
            e.name.clone(),
            cut(e.description.as_deref().unwrap_or(""), 40),
            if e.schema.is_some() { "yes" } else { "no" }.to_owned(),
            e.updated_at.clone(),
        ]);
    }
    println!("{t}");
}

pub async fn event_types(remote: &Remote, cmd: EventTypes) -> Exit {
    let c = remote.client();
    match cmd {
        EventTypes::List { limit: n } => {
            run(remote, c.event_types(&[limit(n)]), |p| {
                event_type_rows(&p.items);
                more(p.next_cursor.as_deref());
            })
            .await
        }
        EventTypes::Put {
            name,
            description,
            schema,
            example,
        } => {
            let schema = match schema.map(|s| json_arg(&s, "--schema")).transpose() {
                Ok(s) => s,
                Err(e) => return e,
            };
            let examples = match example
                .iter()
                .map(|e| json_arg(e, "--example"))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(e) => e,
                Err(e) => return e,
            };
            let body = EventTypeRequest {
                description,
                schema,
                examples,
            };
            run(remote, c.put_event_type(&name, &body), |t| {
                event_type_rows(std::slice::from_ref(t))
            })
            .await
        }
        EventTypes::Delete { name } => {
            run(remote, c.delete_event_type(&name), |_| {
                println!("deleted {name}")
            })
            .await
        }
    }
}

fn application_rows(apps: &[ApplicationView]) {
    if apps.is_empty() {
        println!("no applications yet: `posthorn applications create NAME --scopes subscriptions,publish` makes one");
        return;
    }
    let mut t = table(&["id", "name", "client id", "scopes", "created"]);
    for a in apps {
        t.add_row(vec![
            a.id.clone(),
            cut(&a.name, 30),
            a.client_id.clone(),
            a.scopes.join(","),
            a.created_at.clone(),
        ]);
    }
    println!("{t}");
}

fn application_detail(a: &ApplicationView) {
    application_rows(std::slice::from_ref(a));
    if let Some(secret) = &a.client_secret {
        println!("client secret: {secret}   (shown once)");
    }
}

pub async fn applications(remote: &Remote, cmd: Applications) -> Exit {
    let c = remote.client();
    match cmd {
        Applications::List { limit: n } => {
            run(remote, c.applications(&[limit(n)]), |p| {
                application_rows(&p.items);
                more(p.next_cursor.as_deref());
            })
            .await
        }
        Applications::Create { name, scopes } => {
            let body = ApplicationRequest { name, scopes };
            run(remote, c.create_application(&body), application_detail).await
        }
        Applications::Show { id } => run(remote, c.application(&id), application_detail).await,
        Applications::Delete { id } => {
            run(remote, c.delete_application(&id), |_| {
                println!("deleted {id}")
            })
            .await
        }
        Applications::RotateSecret { id } => {
            run(remote, c.rotate_application_secret(&id), application_detail).await
        }
    }
}

/// `--since`: an RFC 3339 time as given, or how long before `now` (`90s`, `30m`, `2h`, `7d`).
fn since_time(given: &str, now: posthorn_core::time::Millis) -> Option<String> {
    if posthorn_core::time::parse_rfc3339(given).is_some() {
        return Some(given.to_owned());
    }
    let unit = given.chars().last()?;
    let n: i64 = given[..given.len() - unit.len_utf8()].parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let ago = n.checked_mul(seconds * 1000)?;
    Some(posthorn_core::time::to_rfc3339(now.checked_sub(ago)?))
}

#[cfg(test)]
mod tests {
    use super::since_time;

    #[test]
    fn since_is_a_time_or_how_long_ago() {
        let now = posthorn_core::time::parse_rfc3339("2026-12-06T12:00:00Z").unwrap();
        let at = |s: &str| since_time(s, now);
        assert_eq!(
            at("2026-11-30T00:00:00Z").as_deref(),
            Some("2026-11-30T00:00:00Z")
        );
        let ago = |s: &str| posthorn_core::time::parse_rfc3339(&at(s).unwrap()).unwrap();
        assert_eq!(ago("30m"), now - 30 * 60_000);
        assert_eq!(ago("2h"), now - 2 * 3_600_000);
        assert_eq!(ago("7d"), now - 7 * 86_400_000);
        for bad in ["", "d", "yesterday", "5w", "-"] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}

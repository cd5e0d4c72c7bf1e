//! Posthorn's benchmark harness. It starts everything itself on loopback — a minimal HTTP sink,
//! the `posthorn` binary on SQLite (and PostgreSQL when a URL is given), a load generator — and
//! measures, in one run:
//!
//! 1. baseline: the same POSTs straight to the sink (the machine's HTTP limit here);
//! 2. ingest: single-event publishes and 1000-event batches, no subscriptions;
//! 3. end to end: events through one subscription to the sink;
//! 4. fan-out: one event to 1,000 (and 10,000) subscriptions, until all are delivered;
//! 5. latency: publish-to-arrival at fixed rates;
//! 6. failure storm: 1,000 subscriptions whose endpoint hangs, and 10 healthy ones;
//! 7. memory: the server's resident set idle, with 100,000 pending deliveries, and with a million
//!    held by open circuits;
//! 8. order per key: events of many keys, interleaved, to a subscription with `ordered: "key"`,
//!    against the same to one without order;
//! 9. pull: events to a `poll` subscription, read from its feed and acknowledged by a consumer;
//! 10. backlog: a burst to 20 subscriptions drained, the drain rate at its start and end, and on
//!     PostgreSQL the `deliveries` table's dead tuples and autovacuum runs meanwhile;
//! 11. scale-out (with `--postgres`): 1, 2 and 3 processes on one PostgreSQL database
//!     (`scale.rs`).
//!
//! Beside HTTP (`paths.rs`), each against a baseline of its own kind: events from RabbitMQ
//! (`--amqp`) and NATS JetStream (`--nats`) and deliveries to them, by email (`email`), and
//! through plugins (`plugins`).
//!
//! `--soak MINUTES` runs the soak instead (`soak.rs`): steady publishing with failing and hanging
//! subscriptions and periodic SIGKILLs, then every event accounted for.
//!
//! Run: `cargo build --release && target/release/posthorn-bench [--quick] [--postgres URL]`.
//! It prints each figure and its ratio to the baseline, and a markdown table. The machine's speed
//! drifts within minutes on a shared host, so each figure given as a ratio is divided by a
//! baseline measured again just before it, not by the one at the start of the run.

mod machine;
mod paths;
mod scale;
mod server;
mod sink;
mod soak;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

use machine::Machine;
use server::Server;
use sink::Sink;

#[derive(Debug, Parser)]
#[command(about = "Posthorn's benchmark harness")]
struct Args {
    /// Short runs (the whole harness in under two minutes)
    #[arg(long)]
    quick: bool,
    /// Also run against PostgreSQL, in a fresh database on this server
    #[arg(long, env = "POSTHORN_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Write the markdown table here too
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Concurrent connections of the load generator
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Also deliver end to end to a RabbitMQ queue (the `amqp` service) at this broker
    /// With `--postgres`: PostgreSQL's figures only, not SQLite's
    #[arg(long)]
    postgres_only: bool,
    #[arg(long, env = "POSTHORN_BENCH_AMQP_URL")]
    amqp: Option<String>,
    /// Also take events from a JetStream stream (2d) and deliver to one (3d), at this server
    #[arg(long, env = "POSTHORN_BENCH_NATS_URL")]
    nats: Option<String>,
    /// Only these scenarios (comma-separated: ingest, e2e, latency, fanout, storm, keyed, pull,
    /// backlog, email, plugins, memory, scale)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep each server's log in this directory
    #[arg(long)]
    logs: Option<std::path::PathBuf>,
    /// Run the soak instead, for this many minutes (5 in CI, 60 for the long run): steady
    /// publishing, 1 % of subscriptions failing or hanging, a SIGKILL and restart periodically,
    /// then every event accounted for and the memory compared (see `soak.rs`)
    #[arg(long)]
    soak: Option<f64>,
    /// The soak's rate, in events per second
    #[arg(long, default_value_t = 100)]
    soak_rate: u64,
    /// Minutes between the soak's restarts
    #[arg(long, default_value_t = 1.25)]
    soak_restart_every: f64,
    /// Processes the soak runs on one PostgreSQL database (with --postgres); the restarts go
    /// round them
    #[arg(long, default_value_t = 1)]
    soak_processes: usize,
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// A ~300-byte event, as platforms send.
fn event(name: &str, id: Option<String>) -> Value {
    let mut e = json!({"name": name, "data": {
        "entity": {"entity_type": "AssetVersion", "operation": "update", "id": "c7f0a1b2",
                   "new": {"status_id": "a0b1-pending-approval", "version": 3},
                   "old": {"status_id": "f00d-in-progress", "version": 3}},
        "metadata": {"date": "2026-05-02T10:15:00Z", "server_url": "https://studio.example.com"}}});
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

/// A body serialized once and a POST of it, the same for every throughput scenario (the baseline
/// too), so that the load generator's own cost per request is the same in all of them.
#[derive(Clone)]
struct Post {
    client: reqwest::Client,
    url: Arc<str>,
    auth: Option<HeaderValue>,
    body: Bytes,
}

impl Post {
    fn new(
        client: &reqwest::Client,
        url: String,
        token: Option<&str>,
        body: &impl serde::Serialize,
    ) -> Self {
        let auth = token.and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Self {
            client: client.clone(),
            url: url.into(),
            auth,
            body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        }
    }

    /// The status of the answer (0 when there was none).
    async fn send(&self) -> u16 {
        let mut req = self
            .client
            .post(&*self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req.send().await.map_or(0, |r| r.status().as_u16())
    }
}

struct Row {
    scenario: String,
    backend: &'static str,
    figure: String,
    ratio: Option<f64>,
    /// The baseline the ratio was taken against, and its unit (`req/s` for the HTTP one).
    baseline: f64,
    unit: &'static str,
}

struct Bench {
    args: Args,
    rows: Vec<Row>,
    baseline: f64,
    client: reqwest::Client,
}

/// Runs `concurrency` loops of `request` until `duration` has passed; returns how many succeeded
/// per second and how many failed.
async fn load<F, Fut>(concurrency: usize, duration: Duration, request: F) -> (f64, u64)
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (ok, failed, seq, request) =
                (ok.clone(), failed.clone(), seq.clone(), request.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    if request(n).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    )
}

/// The server's CPU time per event, as a figure's suffix.
fn cpu_per(cpu: Duration, events: f64) -> String {
    if events < 1.0 {
        return String::new();
    }
    format!(
        ", server CPU {:.0} µs/event",
        cpu.as_secs_f64() * 1e6 / events
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl Bench {
    fn seconds(&self) -> Duration {
        Duration::from_secs(if self.args.quick { 3 } else { 15 })
    }

    fn record(
        &mut self,
        scenario: &str,
        backend: &'static str,
        figure: String,
        per_s: Option<f64>,
    ) {
        let ratio = per_s.map(|v| v / self.baseline);
        match ratio {
            Some(r) => println!(
                "{scenario:<44} {backend:<10} {figure:>22}   {:>5.1} % of baseline ({:.0} req/s)",
                r * 100.0,
                self.baseline
            ),
            None => println!("{scenario:<44} {backend:<10} {figure:>22}"),
        }
        self.rows.push(Row {
            scenario: scenario.into(),
            backend,
            figure,
            ratio,
            baseline: self.baseline,
            unit: "req/s",
        });
    }

    /// Records a figure against a baseline of its own kind (a bare broker client, lettre, the
    /// plugin's command run by the harness), not the HTTP one.
    fn record_against(
        &mut self,
        scenario: &str,
        backend: &'static str,
        figure: String,
        per_s: f64,
        (baseline, unit): (f64, &'static str),
    ) {
        let ratio = per_s / baseline.max(1e-9);
        println!(
            "{scenario:<44} {backend:<10} {figure:>22}   {:>5.1} % of baseline ({baseline:.0} {unit})",
            ratio * 100.0
        );
        self.rows.push(Row {
            scenario: scenario.into(),
            backend,
            figure,
            ratio: Some(ratio),
            baseline,
            unit,
        });
    }

    async fn baseline(&mut self, sink: &Sink) {
        let rate = self.baseline_rate(sink, self.seconds()).await;
        self.baseline = rate;
        self.record(
            "1. baseline: POST to a 204 sink",
            "-",
            format!("{rate:.0} req/s"),
            Some(rate),
        );
    }

    /// Measures the baseline again (for a third of a throughput figure's time) so that the next
    /// ratio is taken against the machine as it is now.
    async fn rebaseline(&mut self, sink: &Sink) {
        let rate = self.baseline_rate(sink, self.seconds() / 3).await;
        println!(
            "{:<44} {:<10} {:>22}",
            "   (baseline again)",
            "-",
            format!("{rate:.0} req/s")
        );
        self.baseline = rate;
    }

    async fn baseline_rate(&self, sink: &Sink, duration: Duration) -> f64 {
        let post = Post::new(
            &self.client,
            sink.url("/baseline"),
            None,
            &event("baseline", None),
        );
        load(self.args.concurrency, duration, move |_| {
            let post = post.clone();
            async move { (200..300).contains(&post.send().await) }
        })
        .await
        .0
    }

    async fn ingest(&mut self, server: &Server, sink: &Sink) {
        self.rebaseline(sink).await;
        // Events without an id: the server gives each its own, so one body serves them all.
        let post = Post::new(
            &self.client,
            server.url("/v1/events"),
            Some(&server.token),
            &event("bench.ingest", None),
        );
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        let (rate, failed) = load(self.args.concurrency, self.seconds(), move |_| {
            let post = post.clone();
            async move { post.send().await == 202 }
        })
        .await;
        let cpu = cpu_per(server.cpu() - cpu, rate * start.elapsed().as_secs_f64());
        let machine = machine.since();
        self.record(
            "2a. ingest: single events",
            server.backend,
            format!("{rate:.0} events/s{}{cpu}{machine}", fails(failed)),
            Some(rate),
        );

        let batch: Vec<Value> = (0..1000).map(|_| event("bench.batch", None)).collect();
        let post = Post::new(
            &self.client,
            server.url("/v1/events"),
            Some(&server.token),
            &batch,
        );
        let (cpu, start) = (server.cpu(), Instant::now());
        let (rate, failed) = load(4, self.seconds(), move |_| {
            let post = post.clone();
            async move { post.send().await == 202 }
        })
        .await;
        let events = rate * 1000.0;
        let cpu = cpu_per(server.cpu() - cpu, events * start.elapsed().as_secs_f64());
        self.record(
            "2b. ingest: batches of 1000",
            server.backend,
            format!("{events:.0} events/s{}{cpu}", fails(failed)),
            None,
        );
    }

    /// Events through one subscription allowed `max_in_flight` attempts at once (`None`: the
    /// default, 10), each event to its own path and event name.
    async fn end_to_end(
        &mut self,
        server: &Server,
        sink: &Sink,
        max_in_flight: Option<usize>,
    ) -> anyhow::Result<()> {
        let (path, name, spec, label) = match max_in_flight {
            Some(n) => (
                format!("/e2e-{n}"),
                format!("bench.e2e{n}"),
                json!({ "max_in_flight": n }),
                format!("3. end to end: one subscription, max_in_flight {n}"),
            ),
            None => (
                "/e2e".to_owned(),
                "bench.e2e".to_owned(),
                json!({}),
                "3. end to end: one subscription, default max_in_flight (10)".to_owned(),
            ),
        };
        server
            .subscribe(&sink.url(&path), &[name.as_str()], spec)
            .await?;
        self.rebaseline(sink).await;
        let before = sink.count(&path);
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        let post = Post::new(
            &self.client,
            server.url("/v1/events"),
            Some(&server.token),
            &event(&name, None),
        );
        let published = Arc::new(AtomicU64::new(0));
        let p = published.clone();
        load(self.args.concurrency, self.seconds(), move |_| {
            let (post, p) = (post.clone(), p.clone());
            async move {
                let ok = post.send().await == 202;
                if ok {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await;
        let total = published.load(Ordering::Relaxed);
        let (at_end, end) = (sink.count(&path), Instant::now());
        let drained = sink
            .wait_count(&path, before + total, Duration::from_secs(300))
            .await;
        let secs = start.elapsed().as_secs_f64();
        let rate = (drained - before) as f64 / secs;
        let cpu = cpu_per(server.cpu() - cpu, (drained - before) as f64);
        // While publishing stopped: what delivery alone does, without the load generator.
        let drain_rate = (drained - at_end) as f64 / end.elapsed().as_secs_f64().max(1e-3);
        let mut note = format!(
            " ({} delivered; {:.0}/s while publishing, {drain_rate:.0}/s draining after)",
            drained - before,
            (at_end - before) as f64 / (end - start).as_secs_f64()
        );
        if drained < before + total {
            note += &format!(" ({} of {total} by the deadline)", drained - before);
        }
        let machine = machine.since();
        self.record(
            &label,
            server.backend,
            format!("{rate:.0} deliveries/s{note}{cpu}{machine}"),
            Some(rate),
        );
        Ok(())
    }

    /// A backlog of messages in a RabbitMQ queue taken by an `[[sources.amqp]]` source, until
    /// every one is a stored event: messages/s from the broker into the database.
    async fn ingest_amqp(&mut self, url: &str, postgres: Option<&str>) -> anyhow::Result<()> {
        let n: usize = if self.args.quick { 20_000 } else { 100_000 };
        let (_conn, channel, queue) = paths::filled_amqp_queue(url, "source", n).await?;
        let base = self.amqp_consumer_baseline(url, n).await?;
        let config = format!(
            "[[sources.amqp]]\nurl = \"{url}\"\nexchange = \"\"\nqueue = \"{queue}\"\nprefetch = 500\n"
        );
        let server = Server::start_with(postgres, None, Some(&config)).await?;
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        let stored = paths::stored_events(&server, n).await?;
        let secs = start.elapsed().as_secs_f64();
        let rate = stored as f64 / secs;
        let cpu = cpu_per(server.cpu() - cpu, stored as f64);
        let machine = machine.since();
        let note = if (stored as usize) < n {
            format!(" ({stored} of {n} by the deadline)")
        } else {
            format!(" ({n} messages, prefetch 500)")
        };
        self.record_against(
            "2c. ingest from a RabbitMQ queue (a backlog, acked once stored)",
            server.backend,
            format!("{rate:.0} messages/s{note}{cpu}{machine}"),
            rate,
            (base, "msgs/s, a bare consumer acking 250 at a time"),
        );
        server.stop().await;
        let _ = channel.queue_delete(queue.into(), Default::default()).await;
        Ok(())
    }

    /// Events through one `amqp` subscription to a RabbitMQ queue (persistent messages, each
    /// confirmed by the broker before its delivery counts), counted by a consumer of the queue.
    async fn end_to_end_amqp(
        &mut self,
        server: &Server,
        url: &str,
        max_in_flight: usize,
    ) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        use lapin::options::{BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        let queue = format!("posthorn-bench-{}", server.run);
        channel
            .queue_declare(
                queue.clone().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let received = Arc::new(AtomicU64::new(0));
        let mut consumer = channel
            .basic_consume(
                queue.clone().into(),
                "bench".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let counter = received.clone();
        let counting = tokio::spawn(async move {
            while let Some(Ok(_)) = consumer.next().await {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let base = self.amqp_publisher_baseline(url, max_in_flight).await?;
        let name = "bench.amqp";
        server
            .subscribe(
                "http://unused.example",
                &[name],
                json!({"service": "amqp", "max_in_flight": max_in_flight,
                    "config": {"url": url, "exchange": "", "routing_key": queue}}),
            )
            .await?;
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        let post = Post::new(
            &self.client,
            server.url("/v1/events"),
            Some(&server.token),
            &event(name, None),
        );
        let published = Arc::new(AtomicU64::new(0));
        let p = published.clone();
        load(self.args.concurrency, self.seconds(), move |_| {
            let (post, p) = (post.clone(), p.clone());
            async move {
                let ok = post.send().await == 202;
                if ok {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await;
        let total = published.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(300);
        while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = received.load(Ordering::Relaxed);
        let rate = got as f64 / start.elapsed().as_secs_f64();
        let cpu = cpu_per(server.cpu() - cpu, got as f64);
        let machine = machine.since();
        let mut note = format!(" ({got} delivered, each confirmed by the broker)");
        if got < total {
            note += &format!(" ({got} of {total} by the deadline)");
        }
        self.record_against(
            &format!("3c. end to end to a RabbitMQ queue (amqp), max_in_flight {max_in_flight}"),
            server.backend,
            format!("{rate:.0} deliveries/s{note}{cpu}{machine}"),
            rate,
            (base, "msgs/s, a bare publisher awaiting each confirm"),
        );
        counting.abort();
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?;
        Ok(())
    }

    async fn fan_out(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        let sizes: &[usize] = if self.args.quick {
            &[1000]
        } else {
            &[1000, 10_000]
        };
        let mut created = 0;
        for &n in sizes {
            // Paths are per server: the sink counts for the whole run.
            let path = format!("/fan{n}-{}", server.run);
            let name = format!("bench.fan{n}");
            let create_start = Instant::now();
            server.subscribe_many(&sink.url(&path), &name, n).await?;
            created += n;
            let create_secs = create_start.elapsed().as_secs_f64();
            let start = Instant::now();
            server.publish(&event(&name, None)).await?;
            let got = sink
                .wait_count(&path, n as u64, Duration::from_secs(120))
                .await;
            let took = start.elapsed();
            let note = if got < n as u64 {
                format!(" ({got} of {n})")
            } else {
                String::new()
            };
            self.record(
                &format!("4. fan-out to {n} subscriptions"),
                server.backend,
                format!("{}{note}", ms(took)),
                None,
            );
            println!("   ({n} subscriptions created through the API in {create_secs:.1} s)");
        }
        // Leave the later scenarios a server without thousands of subscriptions to match.
        let _ = created;
        Ok(())
    }

    /// Order per key: `keys × per_key` events, interleaved (each key's in publish order), in
    /// batches of 1,000, to a subscription without order, then to one with `ordered: "key"`;
    /// delivered per second each, from the first publish to the last arrival.
    async fn keyed(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        let (keys, per_key) = if self.args.quick {
            (200, 10)
        } else {
            (1000, 20)
        };
        let n = keys * per_key;
        let mut rates = Vec::new();
        for (i, more) in [json!({}), json!({"ordered": "key", "order_key": "k"})]
            .into_iter()
            .enumerate()
        {
            let path = format!("/keyed{i}-{}", server.run);
            let name = format!("bench.keyed{i}");
            let more = {
                let mut m = more;
                m["max_in_flight"] = json!(100);
                m
            };
            server.subscribe(&sink.url(&path), &[&name], more).await?;
            let events: Vec<Value> = (0..per_key)
                .flat_map(|seq| {
                    let name = name.clone();
                    (0..keys).map(move |k| json!({"name": name, "data": {"k": format!("key-{k}"), "seq": seq}}))
                })
                .collect();
            let start = Instant::now();
            for batch in events.chunks(1000) {
                server.publish(&Value::Array(batch.to_vec())).await?;
            }
            let got = sink
                .wait_count(&path, n as u64, Duration::from_secs(300))
                .await;
            let took = start.elapsed();
            rates.push((got, took));
        }
        let rate = |(got, took): (u64, Duration)| {
            let note = if got < n as u64 {
                format!(" ({got} of {n})")
            } else {
                String::new()
            };
            format!("{:.0}/s{note}", got as f64 / took.as_secs_f64())
        };
        self.record(
            &format!("8. order per key: {n} events over {keys} keys, delivered"),
            server.backend,
            format!("{} (without order: {})", rate(rates[1]), rate(rates[0])),
            None,
        );
        Ok(())
    }

    /// A backlog drained: `n` events (batches of 1,000) to 20 subscriptions, published faster
    /// than they can be delivered, then delivered. The figures: deliveries per second overall,
    /// in the first and the last 10 s window (a queue that slows as it churns shows here), and
    /// on PostgreSQL the `deliveries` table's most dead tuples and the autovacuum runs on it
    /// during the drain (`pg_stat_user_tables`; this depends on the server's `autovacuum`).
    async fn backlog(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        const SUBSCRIPTIONS: usize = 20;
        let n = if self.args.quick { 20_000 } else { 150_000 };
        let total = (n * SUBSCRIPTIONS) as u64;
        let name = "bench.backlog";
        let path = format!("/backlog-{}", server.run);
        server
            .subscribe_many(&sink.url(&path), name, SUBSCRIPTIONS)
            .await?;
        let pg = if server.backend == "PostgreSQL" {
            use sqlx::Connection;
            Some(sqlx::PgConnection::connect(&server.database).await?)
        } else {
            None
        };
        let mut pg = pg;
        let start = Instant::now();
        let publish = {
            let events: Vec<Value> = (0..n).map(|_| event(name, None)).collect();
            let server_url = server.url("/v1/events");
            let token = server.token.clone();
            let client = self.client.clone();
            tokio::spawn(async move {
                for batch in events.chunks(1000) {
                    client
                        .post(&server_url)
                        .bearer_auth(&token)
                        .json(&Value::Array(batch.to_vec()))
                        .send()
                        .await?
                        .error_for_status()?;
                }
                anyhow::Ok(())
            })
        };
        // The sink is read often, so that the drain's end is seen when it comes (read only at
        // each 10 s window's end, the overall rate was that of a whole number of windows: a
        // drain of 21 s counted as 30); the windows give the first and last rates.
        let window = Duration::from_secs(10);
        let poll = Duration::from_millis(20);
        let mut rates: Vec<f64> = Vec::new();
        let (mut most_dead, mut vacuums) = (0i64, 0i64);
        let (mut window_start, mut window_count) = (Instant::now(), 0u64);
        let deadline = start + Duration::from_secs(if self.args.quick { 300 } else { 1800 });
        let mut drained_at = None;
        while Instant::now() < deadline {
            tokio::time::sleep(poll).await;
            let now = sink.count(&path);
            let done = now >= total;
            if done || window_start.elapsed() >= window {
                rates.push((now - window_count) as f64 / window_start.elapsed().as_secs_f64());
                (window_start, window_count) = (Instant::now(), now);
                if let Some(conn) = pg.as_mut() {
                    let (dead, runs): (i64, i64) = sqlx::query_as(
                        "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables \
                         WHERE relname = 'deliveries'",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    most_dead = most_dead.max(dead);
                    vacuums = runs;
                }
            }
            if done {
                drained_at = Some(Instant::now());
                break;
            }
        }
        publish.await??;
        let took = drained_at.unwrap_or_else(Instant::now) - start;
        let got = sink.count(&path);
        let note = if got < total {
            format!(" ({got} of {total})")
        } else {
            String::new()
        };
        // The last window ends with the drain, shorter than the others: the one before it.
        let first = rates.first().copied().unwrap_or(0.0);
        let end = if rates.len() > 2 {
            rates[rates.len() - 2]
        } else {
            rates.last().copied().unwrap_or(0.0)
        };
        let mut figure = format!(
            "{:.0}/s{note}; first 10 s {first:.0}/s, last {end:.0}/s",
            got as f64 / took.as_secs_f64()
        );
        if pg.is_some() {
            figure.push_str(&format!(
                "; dead tuples at most {most_dead}, autovacuum runs {vacuums}"
            ));
        }
        self.record(
            &format!("10. backlog: {n} events to {SUBSCRIPTIONS} subscriptions, drained"),
            server.backend,
            figure,
            None,
        );
        Ok(())
    }

    /// Pull delivery: `n` events (batches of 1,000) to a `poll` subscription, then a consumer that
    /// reads the feed 1,000 at a time (each entry signed as it is read) and acknowledges each
    /// page: entries consumed per second, from the first read to the last acknowledgement.
    async fn pull(&mut self, server: &Server) -> anyhow::Result<()> {
        let n = if self.args.quick { 10_000 } else { 50_000 };
        let name = "bench.pull";
        let created: Value = serde_json::from_str(
            &self
                .client
                .post(server.url("/v1/subscriptions"))
                .bearer_auth(&server.token)
                .json(&json!({"name": "pull", "service": "poll", "config": {}, "events": [name]}))
                .send()
                .await?
                .text()
                .await?,
        )?;
        let id = created["id"]
            .as_str()
            .context("a subscription id")?
            .to_owned();
        let events: Vec<Value> = (0..n).map(|_| event(name, None)).collect();
        for batch in events.chunks(1000) {
            server.publish(&Value::Array(batch.to_vec())).await?;
        }
        let feed = server.url(&format!("/v1/subscriptions/{id}/feed?limit=1000"));
        let ack = server.url(&format!("/v1/subscriptions/{id}/feed/ack"));
        let start = Instant::now();
        let mut got = 0usize;
        while got < n {
            let page: Value = self
                .client
                .get(&feed)
                .bearer_auth(&server.token)
                .send()
                .await?
                .json()
                .await?;
            let items = page["items"].as_array().map_or(0, Vec::len);
            if items == 0 {
                break;
            }
            got += items;
            self.client
                .post(&ack)
                .bearer_auth(&server.token)
                .json(&json!({"cursor": page["cursor"]}))
                .send()
                .await?
                .error_for_status()?;
        }
        let took = start.elapsed();
        let note = if got < n {
            format!(" ({got} of {n})")
        } else {
            String::new()
        };
        self.record(
            &format!("9. pull: {n} entries read and acknowledged, 1,000 a page"),
            server.backend,
            format!("{:.0}/s{note}", got as f64 / took.as_secs_f64()),
            None,
        );
        Ok(())
    }

    async fn latency(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        let latency = format!("/latency-{}", server.run);
        server
            .subscribe(&sink.url(&latency), &["bench.latency"], json!({}))
            .await?;
        for rate in [100u64, 200, 1000] {
            let n = rate * self.seconds().as_secs();
            sink.start_recording();
            let before = sink.count(&latency);
            let sent = Arc::new(std::sync::Mutex::new(
                std::collections::HashMap::with_capacity(n as usize),
            ));
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let (start, machine) = (Instant::now(), Machine::now());
            let mut tasks = Vec::with_capacity(n as usize);
            for i in 0..n {
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let id = format!("lat-{rate}-{i}-{}", server.run);
                sent.lock()
                    .map_err(|_| anyhow::anyhow!("lock"))?
                    .insert(id.clone(), Instant::now());
                let (client, url, token) = (
                    self.client.clone(),
                    server.url("/v1/events"),
                    server.token.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let _ = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&event("bench.latency", Some(id)))
                        .send()
                        .await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            sink.wait_count(&latency, before + n, Duration::from_secs(60))
                .await;
            let arrivals = sink.take_recording();
            let sent = sent.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let mut latencies: Vec<Duration> = arrivals
                .iter()
                .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
                .collect();
            latencies.sort();
            self.record(
                &format!("5. latency at {rate} events/s (p50 / p99 / p99.9)"),
                server.backend,
                format!(
                    "{} / {} / {}{}",
                    ms(percentile(&latencies, 0.5)),
                    ms(percentile(&latencies, 0.99)),
                    ms(percentile(&latencies, 0.999)),
                    machine.since()
                ),
                None,
            );
        }
        Ok(())
    }

    async fn storm(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        let healthy = format!("/healthy-{}", server.run);
        server
            .subscribe_many_with(
                &sink.url(&format!("/hang-{}", server.run)),
                "bench.storm",
                1000,
                json!({"timeout_ms": 2000}),
            )
            .await?;
        server
            .subscribe_many(&sink.url(&healthy), "bench.storm", 10)
            .await?;
        sink.start_recording();
        let machine = Machine::now();
        let n = if self.args.quick { 20 } else { 60 };
        let mut sent = std::collections::HashMap::new();
        for i in 0..n {
            let id = format!("storm-{i}-{}", server.run);
            sent.insert(id.clone(), Instant::now());
            server.publish(&event("bench.storm", Some(id))).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let limit = Duration::from_secs(if self.args.quick { 15 } else { 120 });
        sink.wait_count(&healthy, n * 10, limit).await;
        let arrivals = sink.take_recording_for(&healthy);
        if std::env::var_os("POSTHORN_BENCH_VERBOSE").is_some() {
            for i in 0..n {
                let id = format!("storm-{i}-{}", server.run);
                let worst = arrivals
                    .iter()
                    .filter(|(a, _)| *a == id)
                    .map(|(_, at)| at.saturating_duration_since(sent[&id]))
                    .max();
                eprintln!("storm event {i}: slowest healthy arrival {worst:?}");
            }
        }
        let mut latencies: Vec<Duration> = arrivals
            .iter()
            .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
            .collect();
        latencies.sort();
        // The first event goes out while all 1,010 subscriptions are new to the server (a cold
        // fan-out, before any endpoint has answered or hung): shown apart.
        let first = format!("storm-0-{}", server.run);
        let mut warm: Vec<Duration> = arrivals
            .iter()
            .filter(|(id, _)| *id != first)
            .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
            .collect();
        warm.sort();
        let got = latencies.len();
        let note = if got < (n * 10) as usize {
            format!(" ({got} of {} arrived)", n * 10)
        } else {
            String::new()
        };
        self.record(
            "6. failure storm: healthy p50 / p99",
            server.backend,
            format!(
                "{} / {}{note} (p99 after the first event: {}){}",
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99)),
                ms(percentile(&warm, 0.99)),
                machine.since()
            ),
            None,
        );
        Ok(())
    }

    async fn memory(&mut self, server: &Server, sink: &Sink) -> anyhow::Result<()> {
        let idle = server.rss_mb();
        self.record(
            "7a. memory idle (fresh process)",
            server.backend,
            format!("{idle:.1} MB"),
            None,
        );
        // A backlog: 100,000 deliveries to an endpoint that answers slowly.
        server
            .subscribe(
                &sink.url("/slow"),
                &["bench.backlog"],
                json!({"config": {"url": sink.url("/slow"), "timeout_ms": 30000}}),
            )
            .await?;
        let batch: Vec<Value> = (0..1000).map(|_| event("bench.backlog", None)).collect();
        for _ in 0..100 {
            server.publish(&Value::Array(batch.clone())).await?;
        }
        let mut peak = 0.0f64;
        for _ in 0..if self.args.quick { 4 } else { 10 } {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak = peak.max(server.rss_mb());
        }
        self.record(
            "7b. memory with 100,000 pending deliveries",
            server.backend,
            format!("{peak:.1} MB"),
            None,
        );
        // A backlog held by circuits, as a platform's outage leaves it: 20 subscriptions whose
        // endpoint answers 500, 50,000 events each — a million pending deliveries — while an
        // operator scrapes /metrics and lists the dead and pending deliveries. The figure is the
        // largest resident set from the first publish to 10 s after the last.
        server
            .subscribe_many(&sink.url("/fail"), "bench.held", 20)
            .await?;
        let batch: Vec<Value> = (0..1000).map(|_| event("bench.held", None)).collect();
        let batch = Value::Array(batch);
        let mut peak = server.rss_mb();
        for i in 0..50 {
            server.publish(&batch).await?;
            if i % 10 == 9 {
                server.get("/metrics").await?;
                server
                    .get("/v1/deliveries?status=pending&limit=100")
                    .await?;
            }
            peak = peak.max(server.rss_mb());
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.get("/metrics").await?;
            peak = peak.max(server.rss_mb());
        }
        self.record(
            "7c. memory with 1,000,000 deliveries held by open circuits",
            server.backend,
            format!("{peak:.1} MB"),
            None,
        );
        Ok(())
    }
}

fn fails(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} failed)")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sqlx::any::install_default_drivers();
    // Interrupted, take the servers down too (they are not dropped when the process exits).
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        server::kill_all();
        std::process::exit(130);
    });
    let sink = Sink::start()?;
    if let Some(minutes) = args.soak {
        let soak = soak::Soak {
            minutes,
            rate: args.soak_rate.max(1),
            restart_every: args.soak_restart_every,
            postgres: args.postgres.clone(),
            processes: args.soak_processes.max(1),
        };
        return soak.run(&sink).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .context("HTTP client")?;
    let mut bench = Bench {
        args,
        rows: Vec::new(),
        baseline: 1.0,
        client,
    };
    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if bench.args.quick {
            "quick run"
        } else {
            "full run"
        }
    );
    bench.baseline(&sink).await;

    let mut backends = vec![None];
    if let Some(url) = bench.args.postgres.clone() {
        if bench.args.postgres_only {
            backends.clear();
        }
        backends.push(Some(url));
    }
    for pg in backends {
        // Each group of scenarios on a fresh server, so one's leftovers do not weigh on the next.
        let logs = bench.args.logs.clone();
        let start = |group: &'static str| {
            let pg = pg.clone();
            let logs = logs.clone();
            async move { Server::start(pg.as_deref(), logs.map(|d| d.join(group))).await }
        };
        let a = &bench.args;
        if a.runs("ingest") || a.runs("e2e") || a.runs("latency") {
            let s = start("throughput").await?;
            if bench.args.runs("ingest") {
                bench.ingest(&s, &sink).await;
                if let Some(url) = bench.args.amqp.clone() {
                    bench.ingest_amqp(&url, pg.as_deref()).await?;
                }
                if let Some(url) = bench.args.nats.clone() {
                    bench.ingest_nats(&url, pg.as_deref()).await?;
                }
            }
            if bench.args.runs("e2e") {
                // With the load generator's concurrency (the baseline's), then the default.
                let concurrency = bench.args.concurrency;
                bench.end_to_end(&s, &sink, Some(concurrency)).await?;
                bench.end_to_end(&s, &sink, None).await?;
                if let Some(url) = bench.args.amqp.clone() {
                    bench.end_to_end_amqp(&s, &url, concurrency).await?;
                }
                if let Some(url) = bench.args.nats.clone() {
                    bench.end_to_end_nats(&s, &url).await?;
                }
            }
            if bench.args.runs("latency") {
                bench.latency(&s, &sink).await?;
            }
            s.stop().await;
        }
        if bench.args.runs("fanout") {
            let s = start("fanout").await?;
            bench.fan_out(&s, &sink).await?;
            s.stop().await;
        }
        if bench.args.runs("storm") {
            let s = start("storm").await?;
            bench.storm(&s, &sink).await?;
            s.stop().await;
        }
        if bench.args.runs("keyed") {
            let s = start("keyed").await?;
            bench.keyed(&s, &sink).await?;
            s.stop().await;
        }
        if bench.args.runs("pull") {
            let s = start("pull").await?;
            bench.pull(&s).await?;
            s.stop().await;
        }
        if bench.args.runs("backlog") {
            let s = start("backlog").await?;
            bench.backlog(&s, &sink).await?;
            s.stop().await;
        }
        if bench.args.runs("email") {
            let smtp = paths::SmtpSink::start().await?;
            let config = paths::smtp_config(smtp.port);
            let logs = bench.args.logs.clone().map(|d| d.join("email"));
            let s = Server::start_with(pg.as_deref(), logs, Some(&config)).await?;
            bench.end_to_end_email(&s, &smtp).await?;
            s.stop().await;
        }
        if bench.args.runs("plugins") {
            let logs = bench.args.logs.clone().map(|d| d.join("plugins"));
            let config = paths::plugin_config();
            let s = Server::start_with(pg.as_deref(), logs, Some(&config)).await?;
            bench.end_to_end_plugins(&s).await?;
            s.stop().await;
        }
        if bench.args.runs("memory") {
            let s = start("memory").await?;
            bench.memory(&s, &sink).await?;
            s.stop().await;
        }
    }

    if let (true, Some(url)) = (bench.args.runs("scale"), bench.args.postgres.clone()) {
        bench.scale(&url, &sink).await?;
    }

    let mut table =
        String::from("| scenario | backend | figure | of baseline |\n| --- | --- | --- | --- |\n");
    for r in &bench.rows {
        let ratio = r
            .ratio
            .map(|x| format!("{:.1} % of {:.0} {}", x * 100.0, r.baseline, r.unit))
            .unwrap_or_default();
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.scenario, r.backend, r.figure, ratio
        ));
    }
    println!("\n{table}");
    if let Some(out) = &bench.args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

//! The soak: steady publishing for minutes or hours, with 1 % of the subscriptions failing or
//! hanging and the server killed (SIGKILL) and started again periodically, then an account of
//! every event. With `processes` above one (PostgreSQL), that many processes share the database;
//! the publisher spreads its events over them (and sends an unanswered one again to the next, as
//! a load balancer would), and the kills go round them, one at a time.
//!
//! 200 subscriptions each take one event name of 200 (`soak.s0` … `soak.s199`); `soak.s0`'s
//! endpoint answers 500, `soak.s1`'s never answers in time. A publisher sends events at a steady
//! rate, each with its own id, and sends it again (the same id) until it is answered 2xx — through
//! the restarts, as a careful platform does. At the end, after a drain:
//!
//! - every event answered 2xx is stored, once (`events`), and each one for a healthy subscription
//!   with its one delivery (`deliveries`);
//! - every event for a healthy subscription arrived at the sink (by `webhook-id`, duplicates
//!   after a kill counted apart);
//! - the failing and hanging subscriptions' deliveries are counted, with how many were attempted
//!   (a subscription paused or disabled for failing takes no more, as it should);
//! - the server's resident memory, sampled every 10 s, does not grow: the figure is the largest
//!   sample of the last half of the run against the largest of the first half (after warm-up;
//!   with several processes, each sample is the largest process's).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::server::Server;
use crate::sink::Sink;

/// The list, even if a publishing task panicked while holding it (its entries are still right).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Subscriptions, one per event name; the first two are the 1 % that fail and hang.
const SUBSCRIPTIONS: usize = 200;

pub struct Soak {
    pub minutes: f64,
    /// Events per second.
    pub rate: u64,
    /// Minutes between restarts.
    pub restart_every: f64,
    pub postgres: Option<String>,
    /// Processes on the one database (more than one needs PostgreSQL).
    pub processes: usize,
}

/// What the run measured, for `docs/reliability.md`.
struct Account {
    accepted: usize,
    stored: i64,
    deliveries: i64,
    healthy_expected: usize,
    healthy_arrived: usize,
    duplicates: usize,
    failing: HashMap<String, (i64, i64)>,
    restarts: usize,
    retried: u64,
    rss: Vec<(Duration, f64)>,
}

impl Soak {
    pub async fn run(&self, sink: &Sink) -> anyhow::Result<()> {
        if self.processes > 1 && self.postgres.is_none() {
            bail!("several processes share a PostgreSQL database: give --postgres");
        }
        // Processes on one database share its master key.
        let key = "master_key = \"c29hay1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=\"\n";
        let mut servers =
            vec![Server::start_with(self.postgres.as_deref(), None, Some(key)).await?];
        for _ in 1..self.processes {
            let another = servers[0].another().await?;
            servers.push(another);
        }
        let server = &servers[0];
        let backend = server.backend;
        println!(
            "soak on {backend}, {} process(es): {} min at {} events/s, {SUBSCRIPTIONS} subscriptions (1 % failing or hanging), a SIGKILL and restart every {} min",
            self.processes, self.minutes, self.rate, self.restart_every
        );
        for k in 0..SUBSCRIPTIONS {
            let path = match k {
                0 => "/fail".to_owned(),
                1 => "/hang".to_owned(),
                _ => format!("/ok/{k}"),
            };
            server
                .subscribe(&sink.url(&path), &[&format!("soak.s{k}")], json!({}))
                .await?;
        }
        sink.start_recording();

        let accepted = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
        let retried = Arc::new(AtomicU64::new(0));
        let bases: Arc<[String]> = servers.iter().map(|s| s.url("")).collect();
        let token = server.token.clone();
        let client = reqwest::Client::new();
        let run = Instant::now();
        let length = Duration::from_secs_f64(self.minutes * 60.0);
        let publishing = {
            let (accepted, retried) = (accepted.clone(), retried.clone());
            let rate = self.rate;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq = 0usize;
                let mut sends = Vec::new();
                while run.elapsed() < length {
                    tick.tick().await;
                    let (client, bases, token) = (client.clone(), bases.clone(), token.clone());
                    let (accepted, retried) = (accepted.clone(), retried.clone());
                    let k = seq % SUBSCRIPTIONS;
                    let id = format!("soak-{seq}");
                    sends.push(tokio::spawn(async move {
                        let body = json!({"name": format!("soak.s{k}"), "id": id,
                                          "data": {"k": k, "pad": "x".repeat(200)}});
                        // Each event to the next process; sent again, to the one after.
                        for attempt in seq.. {
                            let base = &bases[attempt % bases.len()];
                            let status = client
                                .post(format!("{base}/v1/events"))
                                .bearer_auth(&token)
                                .json(&body)
                                .timeout(Duration::from_secs(30))
                                .send()
                                .await
                                .map_or(0, |r| r.status().as_u16());
                            if (200..300).contains(&status) {
                                lock(&accepted).push((id, k));
                                return;
                            }
                            retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }));
                    seq += 1;
                    sends.retain(|s| !s.is_finished());
                }
                for s in sends {
                    let _ = s.await;
                }
            })
        };

        let mut rss = Vec::new();
        let mut restarts = 0;
        let restart_every = Duration::from_secs_f64(self.restart_every * 60.0);
        let mut next_restart = run + restart_every;
        let mut next_sample = run + Duration::from_secs(10);
        let mut started = vec![Instant::now(); servers.len()];
        while run.elapsed() < length {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = Instant::now();
            if now >= next_sample {
                next_sample += Duration::from_secs(10);
                // Right after a start a process is still warming up: not a sample of growth.
                let warm = servers
                    .iter()
                    .zip(&started)
                    .filter(|(_, at)| at.elapsed() > Duration::from_secs(20))
                    .map(|(s, _)| s.rss_mb())
                    .reduce(f64::max);
                if let Some(mb) = warm {
                    rss.push((run.elapsed(), mb));
                }
            }
            if now >= next_restart && run.elapsed() + Duration::from_secs(30) < length {
                next_restart += restart_every;
                let which = restarts % servers.len();
                servers[which].kill_and_restart().await?;
                started[which] = Instant::now();
                restarts += 1;
                println!(
                    "  {:>5.0} s: process {which} killed and restarted ({} accepted so far)",
                    run.elapsed().as_secs_f64(),
                    lock(&accepted).len()
                );
            }
        }
        publishing.await.context("the publisher")?;
        let accepted = std::mem::take(&mut *lock(&accepted));

        // Drain: every healthy event at the sink, within two minutes.
        let healthy: HashSet<&str> = accepted
            .iter()
            .filter(|(_, k)| *k >= 2)
            .map(|(id, _)| id.as_str())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        let arrivals = loop {
            let got = sink.recorded_ids();
            let arrived: HashSet<&str> = got
                .iter()
                .filter(|(p, _)| p.starts_with("/ok/"))
                .map(|(_, id)| id.as_str())
                .collect();
            if healthy.iter().all(|id| arrived.contains(id)) || Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut seen = HashMap::<&str, usize>::new();
        for (path, id) in &arrivals {
            if path.starts_with("/ok/") {
                *seen.entry(id.as_str()).or_default() += 1;
            }
        }
        let healthy_arrived = healthy.iter().filter(|id| seen.contains_key(*id)).count();
        let duplicates = seen.values().map(|n| n - 1).sum();

        let (stored, deliveries, failing) = count(&servers[0].database).await?;
        let account = Account {
            accepted: accepted.len(),
            stored,
            deliveries,
            healthy_expected: healthy.len(),
            healthy_arrived,
            duplicates,
            failing,
            restarts,
            retried: retried.load(Ordering::Relaxed),
            rss,
        };
        for server in servers {
            server.stop().await;
        }
        account.report(backend, self.processes, self.minutes)
    }
}

/// Events stored, deliveries stored, and per failing subscription (`/fail`, `/hang`) its
/// deliveries and how many of them were attempted.
async fn count(database: &str) -> anyhow::Result<(i64, i64, HashMap<String, (i64, i64)>)> {
    sqlx::any::install_default_drivers();
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database)
        .await
        .context("opening the database to count")?;
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&db)
        .await?;
    let (deliveries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&db)
        .await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT s.spec, COUNT(*), SUM(CASE WHEN d.attempts > 0 THEN 1 ELSE 0 END) \
         FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
         WHERE s.spec LIKE '%/fail%' OR s.spec LIKE '%/hang%' GROUP BY s.spec",
    )
    .fetch_all(&db)
    .await?;
    let failing = rows
        .into_iter()
        .map(|(spec, n, tried)| {
            let which = if spec.contains("/fail") {
                "failing"
            } else {
                "hanging"
            };
            (which.to_owned(), (n, tried))
        })
        .collect();
    db.close().await;
    Ok((events, deliveries, failing))
}

impl Account {
    fn report(&self, backend: &str, processes: usize, minutes: f64) -> anyhow::Result<()> {
        let half = self.rss.len() / 2;
        let max = |s: &[(Duration, f64)]| s.iter().map(|(_, m)| *m).fold(0.0, f64::max);
        let (first, last) = (max(&self.rss[..half]), max(&self.rss[half..]));
        println!(
            "  accepted {} events ({} publishes sent again through the restarts); stored {}, with {} deliveries",
            self.accepted, self.retried, self.stored, self.deliveries
        );
        println!(
            "  healthy subscriptions: {} of {} events arrived ({} duplicates after the kills)",
            self.healthy_arrived, self.healthy_expected, self.duplicates
        );
        for (which, (n, tried)) in &self.failing {
            println!("  the {which} subscription: {n} deliveries, {tried} attempted");
        }
        println!(
            "  resident memory: largest {first:.1} MB in the first half, {last:.1} MB in the second ({} samples, {} restarts)",
            self.rss.len(),
            self.restarts
        );
        println!(
            "\n| backend | processes | length | events accepted | stored | healthy arrived | duplicates | restarts | RSS first half / second half |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n| {backend} | {processes} | {minutes} min | {} | {} | {} / {} | {} | {} | {first:.1} / {last:.1} MB |",
            self.accepted, self.stored, self.healthy_arrived, self.healthy_expected,
            self.duplicates, self.restarts,
        );
        let mut wrong = Vec::new();
        if self.stored != self.accepted as i64 {
            wrong.push(format!(
                "{} stored for {} accepted",
                self.stored, self.accepted
            ));
        }
        let failing: i64 = self.failing.values().map(|(n, _)| n).sum();
        if self.deliveries - failing != self.healthy_expected as i64 {
            wrong.push(format!(
                "{} deliveries to the healthy subscriptions for {} events",
                self.deliveries - failing,
                self.healthy_expected
            ));
        }
        if self.healthy_arrived != self.healthy_expected {
            wrong.push(format!(
                "{} healthy events never arrived",
                self.healthy_expected - self.healthy_arrived
            ));
        }
        if half > 0 && last > first * 1.25 + 5.0 {
            wrong.push(format!(
                "resident memory grew from {first:.1} MB to {last:.1} MB"
            ));
        }
        if !wrong.is_empty() {
            bail!("the soak failed: {}", wrong.join("; "));
        }
        println!("  everything accounted for");
        Ok(())
    }
}

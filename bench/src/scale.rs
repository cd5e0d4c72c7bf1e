//! Scenario 11, scale-out: 1, 2 and 3 `posthorn serve` processes on one PostgreSQL database, all
//! on this machine's cores (so this shows what sharing one database costs and whether the
//! processes contend, not what more machines would add; docs/scaling.md says what it can and
//! cannot show).
//!
//! For each count of processes, on a fresh database:
//! - end to end: single-event publishes spread round-robin over the processes, to one
//!   subscription (`max_in_flight` 64), delivered to the sink: deliveries/s and the processes'
//!   CPU per delivery, summed;
//! - a backlog: events in batches of 1,000 to 5 subscriptions, spread over the processes, then
//!   drained: deliveries/s from the first publish to the last arrival. Deliveries not handed
//!   over at commit are claimed from the shared queue, so this is where processes meet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::machine::Machine;
use crate::server::Server;
use crate::sink::Sink;
use crate::{cpu_per, event, load, Bench, Post};

const MASTER_KEY: &str = "master_key = \"c29hay1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=\"\n";

/// CPU time used so far by every PostgreSQL process on this machine (user and system, from
/// `/proc`), to say what the database costs per delivery beside the servers.
fn postgres_cpu() -> Duration {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        ticks += rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum::<u64>();
    }
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// PostgreSQL's CPU per delivery, as a figure's suffix.
fn postgres_per(cpu: Duration, deliveries: u64) -> String {
    if deliveries == 0 {
        return String::new();
    }
    format!(
        ", PostgreSQL CPU {:.0} µs/delivery",
        cpu.as_secs_f64() * 1e6 / deliveries as f64
    )
}

impl Bench {
    pub async fn scale(&mut self, postgres: &str, sink: &Sink) -> anyhow::Result<()> {
        for k in 1..=3usize {
            let mut servers =
                vec![Server::start_with(Some(postgres), None, Some(MASTER_KEY)).await?];
            for _ in 1..k {
                let another = servers[0].another().await?;
                servers.push(another);
            }
            let run = servers[0].run;
            self.scale_end_to_end(&servers, sink, run).await?;
            self.scale_backlog(&servers, sink, run).await?;
            for s in servers {
                s.stop().await;
            }
        }
        Ok(())
    }

    async fn scale_end_to_end(
        &mut self,
        servers: &[Server],
        sink: &Sink,
        run: u128,
    ) -> anyhow::Result<()> {
        let k = servers.len();
        let path = format!("/scale-e2e-{run}");
        let name = "bench.scale";
        servers[0]
            .subscribe(&sink.url(&path), &[name], json!({"max_in_flight": 64}))
            .await?;
        // Each process learns of the subscription from the others' notification: wait until
        // every one delivers it.
        for s in servers {
            let before = sink.count(&path);
            s.publish(&event(name, None)).await?;
            sink.wait_count(&path, before + 1, Duration::from_secs(30))
                .await;
        }
        self.rebaseline(sink).await;
        let posts: Arc<Vec<Post>> = Arc::new(
            servers
                .iter()
                .map(|s| {
                    Post::new(
                        &self.client,
                        s.url("/v1/events"),
                        Some(&s.token),
                        &event(name, None),
                    )
                })
                .collect(),
        );
        let before = sink.count(&path);
        let cpu0: Duration = servers.iter().map(Server::cpu).sum();
        let pg0 = postgres_cpu();
        let (start, machine) = (Instant::now(), Machine::now());
        let published = Arc::new(AtomicU64::new(0));
        let p = published.clone();
        load(self.args.concurrency, self.seconds(), move |n| {
            let (posts, p) = (posts.clone(), p.clone());
            async move {
                let ok = posts[n as usize % posts.len()].send().await == 202;
                if ok {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await;
        let total = published.load(Ordering::Relaxed);
        let drained = sink
            .wait_count(&path, before + total, Duration::from_secs(300))
            .await;
        let got = drained - before;
        let rate = got as f64 / start.elapsed().as_secs_f64();
        let cpu: Duration = servers.iter().map(Server::cpu).sum::<Duration>() - cpu0;
        let cpu = cpu_per(cpu, got as f64) + &postgres_per(postgres_cpu() - pg0, got);
        let mut note = format!(" ({got} delivered)");
        if got < total {
            note = format!(" ({got} of {total} by the deadline)");
        }
        self.record(
            &format!("11a. {k} process(es) on one PostgreSQL: end to end, max_in_flight 64"),
            servers[0].backend,
            format!("{rate:.0} deliveries/s{note}{cpu}{}", machine.since()),
            Some(rate),
        );
        Ok(())
    }

    async fn scale_backlog(
        &mut self,
        servers: &[Server],
        sink: &Sink,
        run: u128,
    ) -> anyhow::Result<()> {
        let k = servers.len();
        let subscriptions = 5;
        let events: u64 = if self.args.quick { 20_000 } else { 100_000 };
        let path = format!("/scale-backlog-{run}");
        let name = "bench.scale.backlog";
        servers[0]
            .subscribe_many(&sink.url(&path), name, subscriptions)
            .await?;
        for s in servers {
            let before = sink.count(&path);
            s.publish(&event(name, None)).await?;
            sink.wait_count(
                &path,
                before + subscriptions as u64,
                Duration::from_secs(30),
            )
            .await;
        }
        let batch: Vec<Value> = (0..1000).map(|_| event(name, None)).collect();
        let posts: Arc<Vec<Post>> = Arc::new(
            servers
                .iter()
                .map(|s| Post::new(&self.client, s.url("/v1/events"), Some(&s.token), &batch))
                .collect(),
        );
        let expected = events * subscriptions as u64;
        let before = sink.count(&path);
        let cpu0: Duration = servers.iter().map(Server::cpu).sum();
        let pg0 = postgres_cpu();
        let (start, machine) = (Instant::now(), Machine::now());
        let batches = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (posts, batches) = (posts.clone(), batches.clone());
                tokio::spawn(async move {
                    loop {
                        let i = batches.fetch_add(1, Ordering::Relaxed);
                        if i >= events / 1000 {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let post = &posts[i as usize % posts.len()];
                        // A refused batch is sent again for a minute at most, then the run fails
                        // saying so (never a hang, never a batch silently missing).
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            let status = post.send().await;
                            if status == 202 {
                                break;
                            }
                            if Instant::now() > deadline {
                                anyhow::bail!("a batch was refused for a minute (HTTP {status})");
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let published = start.elapsed();
        let drained = sink
            .wait_count(&path, before + expected, Duration::from_secs(600))
            .await;
        let got = drained - before;
        let rate = got as f64 / start.elapsed().as_secs_f64();
        let cpu: Duration = servers.iter().map(Server::cpu).sum::<Duration>() - cpu0;
        let cpu = cpu_per(cpu, got as f64) + &postgres_per(postgres_cpu() - pg0, got);
        let mut note = format!(
            " ({got} delivered; published in {:.1} s)",
            published.as_secs_f64()
        );
        if got < expected {
            note = format!(" ({got} of {expected} by the deadline)");
        }
        self.record(
            &format!("11b. {k} process(es) on one PostgreSQL: a backlog to {subscriptions} subscriptions"),
            servers[0].backend,
            format!("{rate:.0} deliveries/s{note}{cpu}{}", machine.since()),
            None,
        );
        Ok(())
    }
}

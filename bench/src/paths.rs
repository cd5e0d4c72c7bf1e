//! The paths beside HTTP, each against a baseline of its own kind measured just before it:
//!
//! - 2c / 2d: events taken from a RabbitMQ queue and from a NATS JetStream stream (a backlog
//!   acknowledged once stored), against a bare consumer that drains and acknowledges the same
//!   backlog;
//! - 3c / 3d: deliveries to a RabbitMQ queue (publisher confirms) and to a JetStream stream
//!   (`PubAck`), against a bare publisher that waits for the same confirmation, at the same
//!   concurrency as the subscription's `max_in_flight`;
//! - 3e: deliveries by email to an SMTP server, against lettre sending the same mail to it
//!   straight, at the same concurrency;
//! - 3f / 3g: deliveries through a plugin run once per attempt (`sh -c 'cat >/dev/null'`) and
//!   through a persistent one (a Python line loop), against the harness itself running the same
//!   command on the same input, `max_concurrent` at a time.
//!
//! Every delivery scenario publishes a fixed number of events in batches of 100 as fast as they
//! are accepted (so that delivery, not publishing, is what is measured), and reports the
//! deliveries per second from the first publish to the last delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::machine::Machine;
use crate::server::Server;
use crate::{cpu_per, event, Bench};

/// Runs `concurrency` loops of `job` until `n` have been done; returns the rate per second.
async fn drain<F, Fut>(n: u64, concurrency: usize, job: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, job) = (next.clone(), job.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    job(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A run-unique suffix for queue, stream and subject names.
fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A small SMTP server that takes every mail and counts it.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<AtomicU64>,
}

impl SmtpSink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mails = Arc::new(AtomicU64::new(0));
        let counted = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let mails = counted.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 bench ESMTP\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let answer: &[u8] = if upper.starts_with("EHLO") {
                            b"250-bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                        } else if upper == "DATA" {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                            }
                            mails.fetch_add(1, Ordering::Relaxed);
                            b"250 2.0.0 queued\r\n"
                        } else if upper == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 OK\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self { port, mails })
    }
}

/// The persistent plugin of 3g: one answer line per attempt line.
const LINE_PLUGIN: &str = "import sys\nfor line in sys.stdin:\n    \
    sys.stdout.write('{\"outcome\": \"success\"}\\n')\n    sys.stdout.flush()\n";

/// The plugins' section of `posthorn.toml` for 3f and 3g.
pub fn plugin_config() -> String {
    format!(
        "[[services]]\nname = \"bench-once\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null\"]\n\
         max_concurrent = 4\n\n[[services]]\nname = \"bench-persistent\"\n\
         command = [\"python3\", \"-c\", {:?}]\nmode = \"persistent\"\nmax_concurrent = 4\n",
        LINE_PLUGIN
    )
}

/// The `[smtp]` section for 3e.
pub fn smtp_config(port: u16) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"Posthorn <posthorn@example.com>\"\n"
    )
}

/// Waits (up to 10 minutes) until the server has stored `n` events, as a source takes a
/// backlog in; returns how many it had by then. A count that fails is tried again at the next
/// poll; if the last one failed when time is up, its error is returned, not a count of 0.
pub async fn stored_events(server: &Server, n: usize) -> anyhow::Result<i64> {
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server.database)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut stored = Ok(0i64);
    while stored.as_ref().map_or(true, |&s| (s as usize) < n) && Instant::now() < deadline {
        // The poll interval of a loop that ends at a deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&db)
            .await;
    }
    stored.context("counting the stored events")
}

/// A durable queue of its own at `url`, holding `n` persistent messages (each an event's data,
/// `message_id` `m-<i>`) that the broker has confirmed: the connection, its channel (in confirm
/// mode) and the queue's name.
pub async fn filled_amqp_queue(
    url: &str,
    kind: &str,
    n: usize,
) -> anyhow::Result<(lapin::Connection, lapin::Channel, String)> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let queue = format!("posthorn-bench-{kind}-{}", run_id());
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let body = serde_json::to_vec(&event("bench.source", None)["data"])?;
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.clone().into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default()
                        .with_message_id(format!("m-{i}").into())
                        .with_delivery_mode(2),
                )
                .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    Ok((conn, channel, queue))
}

impl Bench {
    fn deliveries(&self) -> u64 {
        if self.args.quick {
            10_000
        } else {
            50_000
        }
    }

    /// Publishes `n` events named `name` in batches of 100, 4 batches at a time, as fast as they
    /// are accepted.
    async fn publish_batches(&self, server: &Server, name: &str, n: u64) -> anyhow::Result<()> {
        let batch: Vec<Value> = (0..100).map(|_| event(name, None)).collect();
        let body = bytes::Bytes::from(serde_json::to_vec(&batch)?);
        let (client, url, token) = (
            self.client.clone(),
            server.url("/v1/events"),
            server.token.clone(),
        );
        drain(n.div_ceil(100), 4, move |_| {
            let (client, url, token, body) =
                (client.clone(), url.clone(), token.clone(), body.clone());
            async move {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if r.status().as_u16() != 202 {
                    bail!("publish: {}", r.status());
                }
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// Publishes `n` events of `name` and waits (up to 5 minutes) until `delivered()` reaches
    /// `n`; records the rate from the first publish to the last delivery against `baseline`.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_and_count<F, Fut>(
        &mut self,
        server: &Server,
        name: &str,
        n: u64,
        label: &str,
        baseline: (f64, &'static str),
        delivered: F,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<u64>>,
    {
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        self.publish_batches(server, name, n).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut got = delivered().await?;
        while got < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            got = delivered().await?;
        }
        let rate = got as f64 / start.elapsed().as_secs_f64();
        let mut note = format!(" ({got} delivered)");
        if got < n {
            note = format!(" ({got} of {n} by the deadline)");
        }
        let cpu = cpu_per(server.cpu() - cpu, got as f64);
        self.record_against(
            label,
            server.backend,
            format!("{rate:.0} deliveries/s{note}{cpu}{}", machine.since()),
            rate,
            baseline,
        );
        Ok(())
    }

    /// 2c's baseline: a bare consumer draining and acknowledging `n` persistent messages of a
    /// queue, 500 unacknowledged at most (Posthorn's source's prefetch), 250 acknowledged at once.
    pub async fn amqp_consumer_baseline(&self, url: &str, n: usize) -> anyhow::Result<f64> {
        use futures_util::StreamExt;
        use lapin::options::{
            BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions,
        };
        use lapin::types::FieldTable;
        let (conn, channel, queue) = filled_amqp_queue(url, "baseline", n).await?;
        let consume = conn.create_channel().await?;
        consume.basic_qos(500, BasicQosOptions::default()).await?;
        let start = Instant::now();
        let mut consumer = consume
            .basic_consume(
                queue.clone().into(),
                "bench-baseline".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut got = 0;
        while got < n {
            let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                bail!("the baseline consumer stopped after {got} of {n}");
            };
            got += 1;
            // Acknowledged 250 at a time (half the prefetch): the broker's pace, not one
            // round of the consumer's loop per message.
            if got % 250 == 0 || got == n {
                delivery.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        Ok(rate)
    }

    /// 2d: a backlog in a JetStream stream taken by a `[[sources.nats]]` source, until every
    /// message is a stored event; against a bare pull consumer acknowledging the same backlog.
    pub async fn ingest_nats(&mut self, url: &str, postgres: Option<&str>) -> anyhow::Result<()> {
        use async_nats::jetstream::{self, consumer::pull};
        use futures_util::StreamExt;
        let n: usize = if self.args.quick { 20_000 } else { 100_000 };
        let run = run_id();
        let (stream_name, prefix) = (format!("PHBENCH{run}"), format!("phbench{run}."));
        let client = async_nats::connect(url)
            .await
            .context("connecting to NATS")?;
        let js = jetstream::new(client);
        let stream = js
            .create_stream(jetstream::stream::Config {
                name: stream_name.clone(),
                subjects: vec![format!("{prefix}>")],
                ..Default::default()
            })
            .await?;
        let body = bytes::Bytes::from(serde_json::to_vec(&event("bench.source", None)["data"])?);
        let subject = format!("{prefix}bench.source");
        for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
            let mut acks = Vec::with_capacity(chunk.len());
            for i in chunk {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("m-{i}").as_str());
                acks.push(
                    js.publish_with_headers(subject.clone(), headers, body.clone())
                        .await?,
                );
            }
            for a in acks {
                a.await?;
            }
        }
        // The baseline: a durable pull consumer of the harness's own, each message acknowledged.
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("bench-baseline".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await?;
        let start = Instant::now();
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(500)
            .messages()
            .await?;
        let mut got = 0;
        while got < n {
            let next = tokio::time::timeout(Duration::from_secs(30), messages.next()).await;
            let Ok(Some(Ok(message))) = next else {
                bail!("the baseline consumer stopped after {got} of {n}");
            };
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
        }
        let base = n as f64 / start.elapsed().as_secs_f64();
        drop(messages);

        let config = format!(
            "[[sources.nats]]\nurl = \"{url}\"\nstream = \"{stream_name}\"\n\
             subjects = [\"{prefix}>\"]\nstrip_prefix = \"{prefix}\"\nconsumer = \"posthorn\"\n"
        );
        let server = Server::start_with(postgres, None, Some(&config)).await?;
        let (cpu, start, machine) = (server.cpu(), Instant::now(), Machine::now());
        let stored = stored_events(&server, n).await?;
        let rate = stored as f64 / start.elapsed().as_secs_f64();
        let cpu = cpu_per(server.cpu() - cpu, stored as f64);
        let note = if (stored as usize) < n {
            format!(" ({stored} of {n} by the deadline)")
        } else {
            format!(" ({n} messages)")
        };
        self.record_against(
            "2d. ingest from a NATS JetStream stream (a backlog, acked once stored)",
            server.backend,
            format!("{rate:.0} messages/s{note}{cpu}{}", machine.since()),
            rate,
            (base, "msgs/s, a bare pull consumer acking each"),
        );
        server.stop().await;
        let _ = js.delete_stream(&stream_name).await;
        Ok(())
    }

    /// 3c's baseline: `concurrency` publishers of persistent messages to a queue, each waiting
    /// for the broker's confirm, for a third of a figure's time.
    pub async fn amqp_publisher_baseline(
        &self,
        url: &str,
        concurrency: usize,
    ) -> anyhow::Result<f64> {
        use futures_util::StreamExt;
        use lapin::options::{
            BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
            QueueDeleteOptions,
        };
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = format!("posthorn-bench-baseline-{}", run_id());
        channel
            .queue_declare(
                queue.clone().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // Drained as Posthorn's queue is, so that it does not grow.
        let reader = conn.create_channel().await?;
        let mut consumer = reader
            .basic_consume(
                queue.clone().into(),
                "bench-baseline".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let reading = tokio::spawn(async move { while let Some(Ok(_)) = consumer.next().await {} });
        let body = bytes::Bytes::from(serde_json::to_vec(&event("bench.amqp", None))?);
        let deadline = Instant::now() + self.seconds() / 3;
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (channel, queue, body, done) =
                    (channel.clone(), queue.clone(), body.clone(), done.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let confirm = channel
                            .basic_publish(
                                "".into(),
                                queue.clone().into(),
                                BasicPublishOptions::default(),
                                &body,
                                lapin::BasicProperties::default().with_delivery_mode(2),
                            )
                            .await?;
                        if confirm.await?.is_ack() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        reading.abort();
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        Ok(rate)
    }

    /// 3d: deliveries to a JetStream stream through a `nats` subscription, counted in the
    /// stream; against a bare publisher waiting for each `PubAck`, at the same concurrency.
    pub async fn end_to_end_nats(&mut self, server: &Server, url: &str) -> anyhow::Result<()> {
        use async_nats::jetstream;
        let concurrency = self.args.concurrency;
        let run = run_id();
        let stream_name = format!("PHBENCHD{run}");
        let client = async_nats::connect(url)
            .await
            .context("connecting to NATS")?;
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("phbenchd{run}.>")],
            ..Default::default()
        })
        .await?;
        let body = bytes::Bytes::from(serde_json::to_vec(&event("bench.nats", None))?);
        let n = self.deliveries();
        let base = {
            let (js, body) = (js.clone(), body.clone());
            let subject = format!("phbenchd{run}.baseline");
            drain(n / 3, concurrency, move |_| {
                let (js, body, subject) = (js.clone(), body.clone(), subject.clone());
                async move {
                    js.publish(subject, body).await?.await?;
                    Ok(())
                }
            })
            .await?
        };
        let name = "bench.nats";
        server
            .subscribe(
                "http://unused.example",
                &[name],
                json!({"service": "nats", "max_in_flight": concurrency,
                    "config": {"url": url, "subject": format!("phbenchd{run}.out")}}),
            )
            .await?;
        let before = n / 3;
        let count = || {
            let js = js.clone();
            let stream_name = stream_name.clone();
            async move {
                let mut stream = js.get_stream(&stream_name).await?;
                Ok(stream.info().await?.state.messages.saturating_sub(before))
            }
        };
        self.deliver_and_count(
            server,
            name,
            n,
            &format!("3d. to a NATS JetStream stream (nats), max_in_flight {concurrency}"),
            (base, "msgs/s, a bare publisher awaiting each PubAck"),
            count,
        )
        .await?;
        let _ = js.delete_stream(&stream_name).await;
        Ok(())
    }

    /// 3e: deliveries by email through an `email` subscription to the harness's SMTP server;
    /// against lettre sending the same mail there straight, at the same concurrency.
    pub async fn end_to_end_email(
        &mut self,
        server: &Server,
        smtp: &SmtpSink,
    ) -> anyhow::Result<()> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let concurrency = self.args.concurrency;
        let n = self.deliveries();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(smtp.port)
            .build();
        let text = serde_json::to_string(&event("bench.email", None)["data"])?;
        let mail = Message::builder()
            .from("Posthorn <posthorn@example.com>".parse()?)
            .to("bench@example.com".parse()?)
            .subject("bench.email")
            .body(text)?;
        let before = smtp.mails.load(Ordering::Relaxed);
        let base = drain(n / 3, concurrency, move |_| {
            let (transport, mail) = (transport.clone(), mail.clone());
            async move {
                transport.send(mail).await?;
                Ok(())
            }
        })
        .await?;
        let name = "bench.email";
        server
            .subscribe(
                "http://unused.example",
                &[name],
                json!({"service": "email", "max_in_flight": concurrency,
                    "config": {"to": ["bench@example.com"], "subject": "{{ event_name }}",
                               "body": "{{ event.data | tojson }}"}}),
            )
            .await?;
        let before = before + n / 3;
        let mails = smtp.mails.clone();
        self.deliver_and_count(
            server,
            name,
            n,
            &format!("3e. by email to an SMTP server, max_in_flight {concurrency}"),
            (base, "mails/s, lettre sending straight"),
            move || {
                let got = mails.load(Ordering::Relaxed).saturating_sub(before);
                async move { Ok(got) }
            },
        )
        .await
    }

    /// 3f and 3g: deliveries through the plugins of [`plugin_config`], counted in the database;
    /// against the harness running the same command on the same input, 4 at a time.
    pub async fn end_to_end_plugins(&mut self, server: &Server) -> anyhow::Result<()> {
        let db = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&server.database)
            .await?;
        let input = serde_json::to_vec(&json!({
            "config": {}, "event": event("bench.plugin", Some("evt_bench".into())),
            "delivery": {"id": "dlv_bench", "attempt": 1}, "subscription": {"id": "sub_bench"}}))?;
        for (service, label, n, baseline) in [
            (
                "bench-once",
                "3f. through a plugin run per attempt (sh: cat), max_concurrent 4",
                self.deliveries() / 5,
                self.plugin_once_baseline(&input, self.deliveries() / 15)
                    .await?,
            ),
            (
                "bench-persistent",
                "3g. through a persistent plugin (a Python line loop), max_concurrent 4",
                self.deliveries(),
                self.plugin_persistent_baseline(&input, self.deliveries() / 3)
                    .await?,
            ),
        ] {
            let name = format!("bench.{service}");
            server
                .subscribe(
                    "http://unused.example",
                    &[name.as_str()],
                    json!({"service": service, "config": {}}),
                )
                .await?;
            // One plugin scenario at a time on this server: its deliveries are the new ones.
            let sql = "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'";
            let before: i64 = sqlx::query_scalar(sql).fetch_one(&db).await?;
            let db = db.clone();
            self.deliver_and_count(
                server,
                &name,
                n,
                label,
                (baseline.0, baseline.1),
                move || {
                    let db = db.clone();
                    async move {
                        let c: i64 = sqlx::query_scalar(sql).fetch_one(&db).await?;
                        Ok((c - before).max(0) as u64)
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn plugin_once_baseline(
        &self,
        input: &[u8],
        n: u64,
    ) -> anyhow::Result<(f64, &'static str)> {
        let input = bytes::Bytes::copy_from_slice(input);
        let rate = drain(n, 4, move |_| {
            let input = input.clone();
            async move {
                let mut child = tokio::process::Command::new("sh")
                    .args(["-c", "cat >/dev/null"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()?;
                let mut stdin = child.stdin.take().context("stdin")?;
                stdin.write_all(&input).await?;
                drop(stdin);
                let out = child.wait_with_output().await?;
                if !out.status.success() {
                    bail!("the baseline plugin failed");
                }
                Ok(())
            }
        })
        .await?;
        Ok((rate, "runs/s, the command spawned by the harness"))
    }

    async fn plugin_persistent_baseline(
        &self,
        input: &[u8],
        n: u64,
    ) -> anyhow::Result<(f64, &'static str)> {
        let mut line = input.to_vec();
        line.push(b'\n');
        let line = bytes::Bytes::from(line);
        let mut processes = Vec::new();
        for _ in 0..4 {
            let mut child = tokio::process::Command::new("python3")
                .args(["-c", LINE_PLUGIN])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take().context("stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("stdout")?);
            processes.push((child, stdin, stdout));
        }
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = processes
            .into_iter()
            .map(|(child, mut stdin, mut stdout)| {
                let (next, line) = (next.clone(), line.clone());
                tokio::spawn(async move {
                    let _child = child;
                    let mut answer = String::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        stdin.write_all(&line).await?;
                        stdin.flush().await?;
                        answer.clear();
                        if stdout.read_line(&mut answer).await? == 0 {
                            bail!("the baseline plugin exited");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok((
            n as f64 / start.elapsed().as_secs_f64(),
            "lines/s, the harness driving 4 such processes",
        ))
    }
}

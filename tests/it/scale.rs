//! Several processes on one PostgreSQL database share the work: none of an accepted event is lost
//! when one is killed, duplicates are bounded by what it had sent and not recorded, and a change made through
//! one process holds on the others within seconds; a broker queue they share makes each message one
//! event. PostgreSQL only (SQLite is for one process).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{
    postgres_available, scrape, total, wait_for, wait_for_explained, Answer, Backend, Receiver,
    Server, ServerOptions,
};

const WORKERS: usize = 8;
/// The most attempts a killed process can have sent and not recorded: its workers' attempts in
/// flight, the finished ones queued for the writer, and the batch being written
/// (the dispatcher's `outcome_queue`: 2 × workers + 16, each). Only these can
/// arrive twice.
const UNRECORDED: usize = WORKERS + 2 * (2 * WORKERS + 16);

fn options() -> ServerOptions {
    ServerOptions {
        extra: vec!["--workers".into(), WORKERS.to_string()],
        ..ServerOptions::on(Backend::Postgres)
    }
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn three_processes_deliver_everything_when_one_is_killed() {
    if !postgres_available() {
        return;
    }
    let mut servers = Server::start_many(3, options()).await;
    let receiver = Receiver::start().await;
    // Slow enough that every process has attempts in flight when one is killed.
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(200)));
    let sub = servers[0]
        .api()
        .subscribe(&receiver.url, &["work"], json!({}))
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    // Every process learns of the subscription (announced by NOTIFY; at worst at its next poll).
    let mut accepted = Vec::new();
    for server in &servers {
        let api = server.api();
        let id = wait_for(
            Duration::from_secs(3),
            "the subscription on every process",
            || async {
                let e = api
                    .publish(json!({"name": "work", "data": {"probe": true}}))
                    .await;
                (e["deliveries"] == 1).then(|| e["id"].as_str().unwrap().to_owned())
            },
        )
        .await;
        accepted.push(id);
    }

    let mut alive = [true, true, true];
    for i in 0..300 {
        if i == 150 {
            servers[1].kill().await;
            alive[1] = false;
        }
        let mut k = i % 3;
        while !alive[k] {
            k = (k + 1) % 3;
        }
        let e = servers[k]
            .api()
            .publish(json!({"name": "work", "data": {"i": i}}))
            .await;
        assert_eq!(e["deliveries"], 1);
        accepted.push(e["id"].as_str().unwrap().to_owned());
    }

    let counts = || receiver.arrivals();
    wait_for_explained(
        Duration::from_secs(90),
        "every accepted event to arrive",
        || async {
            accepted
                .iter()
                .all(|id| counts().contains_key(id))
                .then_some(())
        },
        || async {
            let c = counts();
            let missing: Vec<&String> = accepted.iter().filter(|id| !c.contains_key(*id)).collect();
            let api = servers[0].api();
            let mut states = Vec::new();
            for id in missing.iter().take(5) {
                let e = api.get(&format!("/v1/events/{id}")).await.body;
                let d = &e["deliveries"][0]["id"];
                let d = api
                    .get(&format!("/v1/deliveries/{}", d.as_str().unwrap_or("none")))
                    .await
                    .body;
                states.push(format!("{id}: {e} / {d}"));
            }
            format!(
                "{} of the accepted events never arrived: {states:#?}\nlog of 0:\n{}",
                missing.len(),
                servers[0]
                    .log()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        },
    )
    .await;
    let duplicates: usize = counts().values().map(|n| n - 1).sum();
    assert!(
        duplicates <= UNRECORDED,
        "{duplicates} duplicates; at most the {UNRECORDED} attempts the killed process had sent and not recorded"
    );
    // The log agrees: the deliveries the killed process held were taken over by the others.
    let api = servers[0].api();
    wait_for(
        Duration::from_secs(60),
        "every delivery succeeded",
        || async {
            let all = api.deliveries(&sub).await;
            (all.len() == accepted.len() && all.iter().all(|d| d["status"] == "succeeded"))
                .then_some(())
        },
    )
    .await;
    // Every process did some of the work: the survivors by their attempts counted, the killed
    // one by its part of the accepted events (it published a third before it went).
    let mut by_process = Vec::new();
    for (s, alive) in servers.iter().zip(alive) {
        if alive {
            let (_, metrics) = scrape(&s.base, None).await;
            by_process.push(total(&metrics.unwrap(), "posthorn_attempts_total", &[]));
        }
    }
    assert!(
        by_process.iter().all(|n| *n > 0.0),
        "attempts per surviving process: {by_process:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn a_filter_changed_through_one_process_holds_on_another_within_3_seconds() {
    if !postgres_available() {
        return;
    }
    let servers = Server::start_many(2, options()).await;
    let receiver = Receiver::start().await;
    let (a, b) = (servers[0].api(), servers[1].api());
    let sub = a
        .subscribe(&receiver.url, &["probe"], json!({"filter": "n >= 0"}))
        .await;
    let id = sub["id"].as_str().unwrap();
    // Seen by the other process within its poll.
    wait_for(
        Duration::from_secs(3),
        "the new subscription on process B",
        || async {
            let e = b.publish(json!({"name": "probe", "data": {"n": 1}})).await;
            (e["deliveries"] == 1).then_some(())
        },
    )
    .await;

    let r = a
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"filter": "n < 0"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let changed = Instant::now();
    wait_for(
        Duration::from_secs(3),
        "the changed filter on process B",
        || async {
            let e = b.publish(json!({"name": "probe", "data": {"n": 1}})).await;
            (e["deliveries"] == 0).then_some(())
        },
    )
    .await;
    assert!(changed.elapsed() < Duration::from_secs(3));
    assert_eq!(
        b.publish(json!({"name": "probe", "data": {"n": -1}})).await["deliveries"],
        1
    );
}

/// Two processes on one PostgreSQL consume one RabbitMQ queue. Every message is sent twice with
/// one message id (a publisher's retry), so the two copies usually go to different processes and
/// race; one process is killed mid-stream, and what it held unacknowledged goes to the other.
/// Every message is still one event with one delivery, and the receiver gets each of them.
#[tokio::test]
#[cfg_attr(
    not(all(amqp_tests, postgres_tests)),
    ignore = "POSTHORN_TEST_AMQP_URL or POSTHORN_TEST_POSTGRES_URL is not set: skipped"
)]
async fn a_queue_shared_by_two_processes_makes_each_message_one_event() {
    use lapin::options::BasicPublishOptions;
    use lapin::BasicProperties;

    let Ok(url) = std::env::var("POSTHORN_TEST_AMQP_URL") else {
        return;
    };
    if !postgres_available() {
        return;
    }
    const MESSAGES: usize = 300;
    let run = crate::util::run_id();
    let (exchange, queue) = (
        format!("posthorn-test-shared-{run}"),
        format!("posthorn-test-sharedq-{run}"),
    );
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("posthorn.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources.amqp]]\nurl = \"{url}\"\nexchange = \"{exchange}\"\nexchange_type = \"topic\"\nqueue = \"{queue}\"\nbindings = [\"job.*\"]\nprefetch = 20\n"
        ),
    )
    .unwrap();
    let mut opts = options();
    opts.extra
        .extend(["--config".into(), path.display().to_string()]);
    let mut servers = Server::start_many(2, opts).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(20)));
    let api = servers[0].api();
    let sub = api.subscribe(&receiver.url, &["job.*"], json!({})).await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    // On both processes, before anything is sent: the source connected, and the subscription
    // known (announced by NOTIFY).
    for server in &servers {
        let api = server.api();
        wait_for(
            Duration::from_secs(30),
            "the source connected on every process",
            || async {
                let s = api.get("/v1/sources").await.body;
                (s["items"][0]["connected"] == true).then_some(())
            },
        )
        .await;
        wait_for(
            Duration::from_secs(3),
            "the subscription on every process",
            || async {
                let e = api.publish(json!({"name": "job.probe", "data": {}})).await;
                (e["deliveries"] == 1).then_some(())
            },
        )
        .await;
    }

    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for n in 0..MESSAGES {
        if n == MESSAGES / 2 {
            servers[1].kill().await;
        }
        let body = format!(r#"{{"job": {n}}}"#);
        for _ in 0..2 {
            channel
                .basic_publish(
                    exchange.clone().into(),
                    "job.done".into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default()
                        .with_message_id(format!("job-{n}").into())
                        .with_delivery_mode(2),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }

    let expected: Vec<String> = (0..MESSAGES).map(|n| format!("job-{n}")).collect();
    // On the wire a source's message id goes with the source in front (`webhook-id`).
    let wire: Vec<String> = expected
        .iter()
        .map(|id| format!("amqp:{queue}:{id}"))
        .collect();
    let arrived = || receiver.arrivals();
    wait_for(
        Duration::from_secs(90),
        "every message delivered",
        || async {
            let c = arrived();
            wire.iter().all(|id| c.contains_key(id)).then_some(())
        },
    )
    .await;
    // One event per message, and one delivery per event.
    let events = api.get("/v1/events?name=job.done&limit=1000").await.body;
    let mut ids: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort_by_key(|id| id[4..].parse::<usize>().unwrap_or(usize::MAX));
    assert_eq!(ids, expected, "one event per message id");
    let deliveries = wait_for(
        Duration::from_secs(60),
        "every delivery succeeded",
        || async {
            let all = api.deliveries(&sub).await;
            all.iter()
                .all(|d| d["status"] == "succeeded")
                .then_some(all)
        },
    )
    .await;
    // The probes, and one per message.
    assert_eq!(deliveries.len(), MESSAGES + servers.len());
    // The killed process had taken its share before it died: the survivor took fewer than every
    // copy (each message was sent twice).
    let taken = api.get("/v1/sources").await.body["items"][0]["taken"].clone();
    assert!(
        taken.as_u64().is_some_and(|n| n < 2 * MESSAGES as u64),
        "the survivor took {taken} of {} copies",
        2 * MESSAGES
    );
    // Only an attempt the killed process had sent and not recorded can arrive twice.
    let duplicates: usize = arrived().values().map(|n| n - 1).sum();
    assert!(
        duplicates <= UNRECORDED,
        "{duplicates} duplicates; at most the {UNRECORDED} attempts the killed process had sent and not recorded"
    );
    let _ = channel.queue_delete(queue.into(), Default::default()).await;
    let _ = channel
        .exchange_delete(exchange.into(), Default::default())
        .await;
}

/// A queue that churns keeps PostgreSQL's statistics of it current, autovacuum or not: without
/// them (autovacuum off), a backlog's claims were planned so badly that it drained at a
/// fifteenth of its rate. When autovacuum is off the server says so, and analyzes the table
/// itself once enough of it changed.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn a_churning_queue_keeps_its_statistics_current() {
    use sqlx::Connection;
    if !postgres_available() {
        return;
    }
    let server = Server::start(Backend::Postgres).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["churn.*"], json!({})).await;
    // 12,000 deliveries, each inserted and settled: 24,000 rows changed, past the 10,000 at
    // which the table is analyzed.
    for _ in 0..12 {
        let batch: Vec<_> = (0..1000)
            .map(|n| json!({"name": "churn.tick", "data": {"n": n}}))
            .collect();
        let r = api.post("/v1/events", json!(batch)).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let mut db = sqlx::PgConnection::connect(&server.database).await.unwrap();
    let (autovacuum,): (String,) = sqlx::query_as("SELECT current_setting('autovacuum')")
        .fetch_one(&mut db)
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(120),
        "the deliveries table analyzed",
        || async {
            let (analyzed,): (bool,) = sqlx::query_as(
                "SELECT GREATEST(last_analyze, last_autoanalyze) IS NOT NULL \
                 FROM pg_stat_user_tables WHERE relname = 'deliveries'",
            )
            .fetch_one(&mut sqlx::PgConnection::connect(&server.database).await.unwrap())
            .await
            .unwrap();
            analyzed.then_some(())
        },
    )
    .await;
    // What an operator watches: the table's live and dead rows, on /metrics.
    wait_for(
        Duration::from_secs(30),
        "the deliveries table's rows on /metrics",
        || async {
            let (status, scrape) = crate::util::scrape(&server.base, None).await;
            assert_eq!(status, 200);
            let scrape = scrape?;
            let live =
                crate::util::value(&scrape, "posthorn_queue_table_tuples", &[("state", "live")]);
            let dead = scrape.samples.iter().any(|s| {
                s.metric == "posthorn_queue_table_tuples" && s.labels.get("state") == Some("dead")
            });
            (live >= 12_000.0 && dead).then_some(())
        },
    )
    .await;
    if autovacuum == "off" {
        assert!(
            server.log().contains("autovacuum is off"),
            "the start says so"
        );
        // Analyzed by hand (by the server), not by autovacuum.
        let (by_hand,): (bool,) = sqlx::query_as(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'deliveries'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert!(by_hand, "the server analyzed it");
    }
}

//! Several processes on one PostgreSQL database share the work: none of an accepted event is lost
//! when one is killed, duplicates are bounded by what it had in flight, and a change made through
//! one process holds on the others within seconds. PostgreSQL only (SQLite is for one process).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{postgres_available, wait_for, Answer, Backend, Receiver, Server, ServerOptions};

const WORKERS: usize = 8;

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

    let counts = || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for hit in receiver.hits() {
            *counts
                .entry(hit.header("webhook-id").to_owned())
                .or_default() += 1;
        }
        counts
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !accepted.iter().all(|id| counts().contains_key(id)) {
        if Instant::now() > deadline {
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
            panic!(
                "{} of the accepted events never arrived: {states:#?}\nlog of 0:\n{}",
                missing.len(),
                servers[0]
                    .log()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let duplicates: usize = counts().values().map(|n| n - 1).sum();
    assert!(
        duplicates <= WORKERS,
        "{duplicates} duplicates; at most the {WORKERS} attempts the killed process had in flight"
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
    // Every process did some of the work.
    let by_process: Vec<usize> = servers
        .iter()
        .map(|s| s.log().matches("attempted").count())
        .collect();
    assert!(
        by_process.iter().all(|n| *n > 0),
        "work per process: {by_process:?}"
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

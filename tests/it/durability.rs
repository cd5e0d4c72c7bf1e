//! Nothing accepted is lost: a process killed with SIGKILL mid-delivery, or stopped with SIGTERM,
//! is followed by one on the same database that delivers every accepted event. And `--dev` on an
//! empty folder works with no setup.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::util::{
    received, spec_of, wait_for, Answer, Api, Backend, Receiver, Server, ServerOptions,
};

/// Two workers: most deliveries are still queued when the process dies, two are in flight.
fn two_workers(backend: Backend) -> ServerOptions {
    ServerOptions {
        extra: vec!["--workers".into(), "2".into()],
        ..ServerOptions::on(backend)
    }
}

const EVENTS: usize = 40;

async fn publish_many(server: &Server, receiver: &Receiver) -> HashSet<String> {
    let api = server.api();
    api.subscribe(&receiver.url, &["tick"], json!({"max_in_flight": 10}))
        .await;
    let mut ids = HashSet::new();
    for i in 0..EVENTS {
        let e = api.publish(json!({"name": "tick", "data": {"i": i}})).await;
        ids.insert(e["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn every_accepted_event_arrives_after_a_sigkill(backend: Backend) {
    let mut server = Server::start_with(two_workers(backend)).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(150)));
    let ids = publish_many(&server, &receiver).await;
    receiver.wait_hits(3, Duration::from_secs(20)).await;
    server.kill().await;
    let before = received(&receiver);
    assert!(
        before.len() < EVENTS,
        "killed while deliveries were in flight"
    );

    server.restart().await;
    // The two deliveries the dead process held come back when their lease expires.
    wait_for(
        Duration::from_secs(60),
        "every accepted event at the receiver",
        || async { (received(&receiver) == ids).then_some(()) },
    )
    .await;
    // And the log says so: the deliveries the dead process held were taken over and settled.
    let api = server.api();
    let sub = api.get("/v1/subscriptions").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(
        Duration::from_secs(60),
        "every delivery succeeded",
        || async {
            let all = api.deliveries(&sub).await;
            (all.len() == EVENTS && all.iter().all(|d| d["status"] == "succeeded")).then_some(())
        },
    )
    .await;
}

async fn sigterm_exits_zero_in_time_and_loses_nothing(backend: Backend) {
    let mut server = Server::start_with(two_workers(backend)).await;
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(204).after(Duration::from_millis(300)));
    let ids = publish_many(&server, &receiver).await;
    receiver.wait_hits(2, Duration::from_secs(20)).await;
    let (code, took) = server.terminate().await;
    assert_eq!(code, Some(0), "log:\n{}", server.log());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(server.log().contains("stopped"));

    server.restart().await;
    wait_for(
        Duration::from_secs(30),
        "every accepted event at the receiver",
        || async { (received(&receiver) == ids).then_some(()) },
    )
    .await;
}

/// SIGTERM after publishers wrote side by side (on PostgreSQL several group commits ran at once,
/// each committer keeping a connection between groups): the process still stops at once, and
/// everything it accepted is there when it starts again.
async fn sigterm_after_concurrent_batches_exits_in_time(backend: Backend) {
    let mut server = Server::start(backend).await;
    let api = server.api();
    let publishers = (0..4).map(|p| {
        let api = api.clone();
        async move {
            for b in 0..5 {
                let batch: Vec<_> = (0..300)
                    .map(|i| json!({"name": "batch", "id": format!("p{p}-b{b}-{i}"), "data": {}}))
                    .collect();
                let r = api.post("/v1/events", json!(batch)).await;
                assert_eq!(r.status, 202, "{}", r.body);
            }
        }
    });
    let publishers: Vec<_> = publishers.map(tokio::spawn).collect();
    for p in publishers {
        p.await.unwrap();
    }
    let (code, took) = server.terminate().await;
    assert_eq!(code, Some(0), "log:\n{}", server.log());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(server.log().contains("stopped"), "log:\n{}", server.log());

    server.restart().await;
    let api = server.api();
    for p in 0..4 {
        let r = api.get(&format!("/v1/events/p{p}-b4-299")).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// PostgreSQL drops every connection of the server (as on a restart or a failover): a publish may
/// be refused with 503 while the server notices, never answered otherwise, and publishing comes
/// back by itself; every event it accepted, before and after, is delivered.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "POSTHORN_TEST_POSTGRES_URL is not set: the PostgreSQL half is skipped"
)]
async fn publishing_recovers_when_postgresql_drops_the_connections() {
    use sqlx::Connection;
    if !crate::util::postgres_available() {
        return;
    }
    let server = Server::start(Backend::Postgres).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["tick"], json!({})).await;
    let mut accepted = HashSet::new();
    for i in 0..5 {
        let e = api.publish(json!({"name": "tick", "data": {"i": i}})).await;
        accepted.insert(e["id"].as_str().unwrap().to_owned());
    }

    let mut admin = sqlx::PgConnection::connect(&server.database).await.unwrap();
    drop_connections(&mut admin).await;

    // At once, while the committer's connection is fresh (it is not tested before use).
    let (stored, refused) = publish_ten(&api, "tick", 5).await;
    accepted.extend(stored.into_iter().map(|(id, _)| id));
    assert!(
        refused <= 1,
        "{refused} of 10 publishes refused after the drop"
    );
    wait_for(
        Duration::from_secs(30),
        "every accepted event at the receiver",
        || async { (received(&receiver) == accepted).then_some(()) },
    )
    .await;

    // Again, for events no subscription wants: such a group is one INSERT, run without a
    // transaction around it.
    drop_connections(&mut admin).await;
    let (stored, refused) = publish_ten(&api, "untracked", 0).await;
    assert!(
        refused <= 1,
        "{refused} of 10 publishes refused after the drop"
    );
    for (id, i) in stored {
        let event = api.get(&format!("/v1/events/{id}")).await;
        assert_eq!(event.status, 200, "{id}: {}", event.body);
        assert_eq!(event.body["data"]["i"], i);
    }
}

/// Terminates every connection to the server's database but `admin`'s.
async fn drop_connections(admin: &mut sqlx::PgConnection) {
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the server had connections to drop");
}

/// Publishes ten events named `name`, one after the other, with data `{"i": first..first + 10}`:
/// the id and `i` of each accepted, and how many were refused with 503 (any other answer fails
/// the test).
async fn publish_ten(api: &Api, name: &str, first: i64) -> (Vec<(String, i64)>, usize) {
    let (mut stored, mut refused) = (Vec::new(), 0);
    for i in first..first + 10 {
        let reply = api
            .post("/v1/events", json!({"name": name, "data": {"i": i}}))
            .await;
        match reply.status {
            202 => stored.push((reply.body["id"].as_str().unwrap().to_owned(), i)),
            503 => refused += 1,
            other => panic!("publish answered {other}: {}", reply.body),
        }
    }
    (stored, refused)
}

#[tokio::test]
async fn dev_mode_works_in_an_empty_folder_with_no_setup() {
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["serve", "--dev", "--listen", "127.0.0.1:0"]
        .map(String::from)
        .into();
    let server = Server::spawn(tmp.path(), &args, tmp.path()).await;
    assert!(tmp.path().join("posthorn-data/posthorn.db").exists());
    assert!(tmp.path().join("posthorn-data/master.key").exists());
    let token = {
        let lines = server.stdout.lock().unwrap().clone();
        lines
            .iter()
            .find_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("ph_admin_"))
                    .map(str::to_owned)
            })
            .expect("the admin token is printed")
    };
    let receiver = Receiver::start().await;
    let api = crate::util::Api::new(&server.base, &token);
    // --dev admits loopback targets.
    api.subscribe(&receiver.url, &["hello"], json!({})).await;
    api.publish(json!({"name": "hello", "data": {"who": "world"}}))
        .await;
    let hit = receiver
        .wait_hits(1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(hit.json()["data"]["who"], "world");
}

/// A SIGTERM that comes while the process is still starting (here: once it has printed its
/// admin token, before it listens) stops it gracefully as soon as it has started: exit 0 and
/// "stopped" in its log, not death by the signal (exit 143).
#[tokio::test]
async fn a_sigterm_while_starting_stops_it_gracefully() {
    use tokio::io::AsyncBufReadExt;

    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("admin token:") {
                return;
            }
        }
        panic!("the process ended before printing its admin token");
    })
    .await;
    assert!(printed.is_ok(), "no admin token within 30 s");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("the process did not exit within 40 s of SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(tmp.path().join("log")).unwrap();
    assert_eq!(status.code(), Some(0), "{status}; log:\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn secrets_are_not_in_the_database_file() {
    let mut server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let sub = api
        .subscribe("https://example.com/h", &["a"], json!({}))
        .await;
    let secret = sub["secret"]
        .as_str()
        .unwrap()
        .trim_start_matches("whsec_")
        .to_owned();
    server.terminate().await;
    let holding = server.database_files_holding(&secret);
    assert!(holding.is_empty(), "{holding:?} hold the secret");
}

/// Credentials in a subscription's config — an `Authorization` header, a header named in
/// `secret_headers` — are sealed at rest, write-only in the API (shown as `********`, kept when
/// written back so), masked in attempt logs, and sent in clear only to the receiver.
#[tokio::test]
async fn header_credentials_are_sealed_write_only_and_masked() {
    let mut server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let sub = api
        .subscribe(
            &receiver.url,
            &["a"],
            json!({"config": {"url": receiver.url, "secret_headers": ["X-Acme"],
                "headers": {"Authorization": "Bearer s3cr3t-abc", "X-Acme": "acme-k3y-9",
                    "X-Team": "blue"}}}),
        )
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    let shown = api.get(&format!("/v1/subscriptions/{id}")).await.body;
    let headers = &shown["config"]["headers"];
    assert_eq!(
        (
            headers["Authorization"].as_str(),
            headers["X-Acme"].as_str(),
            headers["X-Team"].as_str()
        ),
        (Some("********"), Some("********"), Some("blue")),
        "{shown}"
    );
    api.publish(json!({"name": "a", "data": {"n": 1}})).await;
    let hit = receiver
        .wait_hits(1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(hit.header("authorization"), "Bearer s3cr3t-abc");
    assert_eq!(hit.header("x-acme"), "acme-k3y-9");
    let d = api.first_delivery(&id, Duration::from_secs(10)).await;
    let d = api
        .delivery_with_status(&d, "succeeded", Duration::from_secs(10))
        .await;
    let logged = &d["attempt_log"][0]["request"]["headers"];
    assert_eq!(
        (logged["authorization"].as_str(), logged["x-acme"].as_str()),
        (Some("********"), Some("********"))
    );
    assert_eq!(logged["x-team"], "blue");
    // Written back as shown (PUT of what GET gave, less what the server owns): the credentials
    // stay; a PATCH of something else too; a PATCH of the header itself changes it.
    let spec = spec_of(&shown);
    let r = api
        .send("PUT", &format!("/v1/subscriptions/{id}"), Some(&spec))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.publish(json!({"name": "a", "data": {"n": 2}})).await;
    let hits = receiver.wait_hits(2, Duration::from_secs(20)).await;
    assert_eq!(
        hits[1].header("authorization"),
        "Bearer s3cr3t-abc",
        "kept when written back masked"
    );
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"config": {"headers": {"Authorization": "Bearer n3w-xyz"}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.publish(json!({"name": "a", "data": {"n": 3}})).await;
    let hits = receiver.wait_hits(3, Duration::from_secs(20)).await;
    assert_eq!(hits[2].header("authorization"), "Bearer n3w-xyz");
    // Nowhere in clear: not in the database file, not in the log.
    server.terminate().await;
    for entry in std::fs::read_dir(&server.dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if name.contains("posthorn.db") || name.ends_with(".log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for secret in ["s3cr3t-abc", "acme-k3y-9", "n3w-xyz"] {
                assert!(!text.contains(secret), "{name} holds {secret}");
            }
        }
    }
}

/// Processes started together on a new PostgreSQL database (one after the other on SQLite) with
/// different master keys: one starts, the
/// others refuse (a process that cannot open the subscriptions' secrets would skip them, and
/// publish events that reach none of them). A later start with another key refuses too.
async fn processes_with_another_master_key_refuse_to_start(backend: Backend) {
    use tokio::io::AsyncBufReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let database = backend.database_url(tmp.path()).await;
    let start = |n: u8| {
        let dir = tmp.path().join(format!("p{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [n; 32]);
        let log = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args([
                "--admin-token",
                "a-test-token-of-some-length",
                "--master-key",
                &key,
            ])
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let started = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("posthorn listening on ") {
                        return true;
                    }
                }
                false
            })
            .await
            .expect("the process neither started nor exited");
            let stderr = if started {
                String::new()
            } else {
                let status = child.wait().await.unwrap();
                assert!(!status.success());
                std::fs::read_to_string(dir.join("stderr")).unwrap()
            };
            (started, stderr, child)
        }
    };
    // SQLite is for one process (concurrent starts would race on its migrations): one after the
    // other there.
    let together = match backend {
        Backend::Postgres => futures_like_join(vec![start(1), start(2), start(3)]).await,
        Backend::Sqlite => {
            let mut all = Vec::new();
            for n in 1..=3 {
                all.push(start(n).await);
            }
            all
        }
    };
    let started: Vec<_> = together.iter().filter(|(s, _, _)| *s).collect();
    assert_eq!(started.len(), 1, "exactly one key wins");
    // On SQLite the running process's claim on the file refuses the others first.
    let refusal = match backend {
        Backend::Postgres => "master key",
        Backend::Sqlite => "another posthorn process is serving",
    };
    for (_, stderr, _) in together.iter().filter(|(s, _, _)| !*s) {
        assert!(stderr.contains(refusal), "{stderr}");
    }
    // Later, and with yet another key, the first one stopped: refused for the key.
    for (_, _, child) in together {
        drop(child);
    }
    let (started, stderr, _) = start(4).await;
    assert!(!started && stderr.contains("master key"), "{stderr}");
}

/// A task the process cannot do without ends (here the purge, made to panic by the debug build's
/// `POSTHORN_TEST_END_TASK`): `/readyz` answers 503 naming it, and the process stops gracefully
/// and exits non-zero, for its orchestrator to restart it — it does not go on answering
/// `/healthz` with a dead loop inside.
#[tokio::test]
async fn a_dead_background_task_fails_readyz_and_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        env: vec![("POSTHORN_TEST_END_TASK".into(), "purge".into())],
        ..ServerOptions::on(Backend::Sqlite)
    };
    let database = Backend::Sqlite.database_url(tmp.path()).await;
    let mut server = Server::spawn_in(tmp.path(), &database, &options).await;
    let api = server.api();
    let ready = wait_for(Duration::from_secs(10), "/readyz to fail", || async {
        let r = api.get("/readyz").await;
        (r.status == 503).then_some(r.body)
    })
    .await;
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .contains("the purge task panicked"),
        "{ready}"
    );
    let (code, _) = server.terminate_by_itself(Duration::from_secs(40)).await;
    assert_eq!(code, Some(1), "exits non-zero");
    let log = server.log();
    assert!(
        log.contains("a task this process cannot do without has ended"),
        "{log}"
    );
}

/// An SQLite file is one process's: a second `serve` on it is refused, naming the first; the
/// folder Posthorn makes is 0700 and its files 0600; a start refused (the port taken, a database
/// sealed with another key) creates nothing.
#[tokio::test]
async fn sqlite_is_one_processs_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let database = format!("sqlite://{}/posthorn.db", data.display());
    let args = |listen: &str, database: &str| -> Vec<String> {
        [
            "serve",
            "--listen",
            listen,
            "--database",
            database,
            "--admin-token",
            crate::util::TOKEN,
        ]
        .map(String::from)
        .into()
    };
    let mut first = Server::spawn(tmp.path(), &args("127.0.0.1:0", &database), tmp.path()).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data folder");
    for file in [
        "posthorn.db",
        "posthorn.db-wal",
        "posthorn.db-shm",
        "master.key",
    ] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        } else {
            assert!(
                file.ends_with("-shm") || file.ends_with("-wal"),
                "{file} is missing"
            );
        }
    }
    // A second process on the same file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(args("127.0.0.1:0", &database))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("another posthorn process is serving") && stderr.contains("posthorn.db"),
        "{stderr}"
    );
    // The port taken: refused before anything is made.
    let other = tmp.path().join("other");
    let taken = first.base.trim_start_matches("http://").to_owned();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(args(
            &taken,
            &format!("sqlite://{}/posthorn.db", other.display()),
        ))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(
        !other.exists(),
        "nothing was created for a start that could not listen"
    );
    // Stopped, its key lost: a start refuses the database and leaves no new key behind.
    first.terminate().await;
    std::fs::remove_file(data.join("master.key")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(args("127.0.0.1:0", &database))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));
    assert!(
        !data.join("master.key").exists(),
        "a refused key is not kept"
    );
}

/// A PostgreSQL that cannot be reached is named, with why, at once (not "pool timed out" ten
/// seconds later).
#[tokio::test]
async fn an_unreachable_postgresql_is_named_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "postgres://postgres@127.0.0.1:1/x",
        ])
        .env("RUST_BACKTRACE", "0")
        .current_dir(tmp.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("connection refused"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A lost admin token is printed again by `posthorn admin-token`, and `--rotate` replaces it: the
/// next start takes the new one, and the old one is refused.
#[tokio::test]
async fn a_lost_admin_token_is_printed_again_and_can_be_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--log-format", "text"]
        .map(String::from)
        .into();
    let token_in = |lines: &[String]| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix("admin token: ").map(str::to_owned))
            .expect("the admin token is printed")
    };
    let mut server = Server::spawn(tmp.path(), &args, tmp.path()).await;
    let first = token_in(&server.stdout.lock().unwrap().clone());
    server.terminate().await;
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
            .arg("admin-token")
            .args(extra)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The token alone, for `$(posthorn admin-token)`.
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with("ph_admin_") && text.trim().lines().count() == 1,
            "{text}"
        );
        text.trim().to_owned()
    };
    assert_eq!(run(&[]), first);
    let second = run(&["--rotate"]);
    assert_ne!(second, first);
    assert_eq!(run(&[]), second);
    let server = Server::spawn(tmp.path(), &args, tmp.path()).await;
    let fresh = crate::util::Api::new(&server.base, &second);
    assert_eq!(fresh.get("/v1/subscriptions").await.status, 200);
    let old = crate::util::Api::new(&server.base, &first);
    assert_eq!(old.get("/v1/subscriptions").await.status, 401);
}

/// Runs the futures at once, answers in order.
async fn futures_like_join<F: std::future::Future + Send + 'static>(
    futures: Vec<F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A process killed inside a group commit (`POSTHORN_TEST_ABORT_IN_COMMIT`, an abort placed after
/// the group's rows are written and before `COMMIT`, or right after it, before anyone is
/// answered), under eight concurrent publishers: every event answered 202 arrives; a group cut
/// before its `COMMIT` is not there at all (its events, sent again with their ids, are new: 202);
/// one cut after is there whole (sent again: 200, the same event); no event is stored twice.
async fn a_kill_inside_a_group_commit_loses_nothing_answered(backend: Backend) {
    for (point, again) in [("before", 202), ("after", 200)] {
        let receiver = Receiver::start().await;
        let mut server = Server::start_with(ServerOptions {
            env: vec![("POSTHORN_TEST_ABORT_IN_COMMIT".into(), format!("{point}:6"))],
            ..ServerOptions::on(backend)
        })
        .await;
        let api = server.api();
        api.subscribe(&receiver.url, &["tick"], json!({})).await;
        let (base, http) = (api.base.clone(), reqwest::Client::new());
        let publishers = (0..8).map(|k| {
            let (base, http) = (base.clone(), http.clone());
            async move {
                let (mut accepted, mut unanswered) = (Vec::new(), Vec::new());
                for j in 0..200 {
                    let id = format!("c-{k}-{j}");
                    let sent = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(crate::util::TOKEN)
                        .json(&json!({"name": "tick", "id": id, "data": {"j": j}}))
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(202) => accepted.push(id),
                        Ok(other) => panic!("publish answered {other}"),
                        Err(_) => {
                            unanswered.push(id);
                            break;
                        }
                    }
                }
                (accepted, unanswered)
            }
        });
        let results = futures_like_join(publishers.collect()).await;
        let accepted: Vec<String> = results.iter().flat_map(|r| r.0.clone()).collect();
        let unanswered: Vec<String> = results.iter().flat_map(|r| r.1.clone()).collect();
        assert_eq!(unanswered.len(), 8, "every publisher was cut off");
        let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap();
        assert!(
            log.contains(&format!(
                "aborting in group 6, {}",
                if point == "before" {
                    "BeforeCommit"
                } else {
                    "AfterCommit"
                }
            )),
            "the process aborted inside the commit"
        );

        // The events of the cut group, as the process said before it aborted. None of them was
        // answered. Other publishers' events may have been unanswered too: on PostgreSQL another
        // committer's group may have committed just before the abort and not answered yet (sent
        // again, 200), or an event may not have reached a group at all (202).
        let cut: Vec<String> = log
            .lines()
            .find_map(|l| l.split_once("aborting in group 6, ").map(|(_, r)| r))
            .and_then(|r| r.split_once("events: "))
            .map(|(_, ids)| ids.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        assert!(!cut.is_empty(), "the cut group's events are named: {log}");
        assert!(
            cut.iter().all(|id| unanswered.contains(id)),
            "{point}: the cut group {cut:?} was not answered: unanswered {unanswered:?}"
        );

        server.options.env.clear();
        server.restart().await;
        let api = server.api();
        let mut answers = Vec::new();
        for id in &unanswered {
            let r = api
                .post("/v1/events", json!({"name": "tick", "id": id, "data": {}}))
                .await;
            answers.push((id.clone(), r.status));
        }
        assert!(
            answers.iter().all(|(_, s)| *s == 200 || *s == 202),
            "{answers:?}"
        );
        // Before COMMIT, nothing of the cut group was stored (sent again: new, 202); after it,
        // all of it was (200, the same event).
        for (id, status) in &answers {
            if cut.contains(id) {
                assert_eq!(
                    *status, again,
                    "{point}: {id} of the cut group, sent again: {answers:?}"
                );
            }
        }
        let all: HashSet<String> = accepted.into_iter().chain(unanswered).collect();
        wait_for(
            Duration::from_secs(60),
            "every event at the receiver",
            || async { (received(&receiver) == all).then_some(()) },
        )
        .await;
        let stored = api.get("/v1/events?name=tick&limit=1000").await.body;
        assert_eq!(
            stored["items"].as_array().unwrap().len(),
            all.len(),
            "no event stored twice"
        );
    }
}

both_backends!(
    a_kill_inside_a_group_commit_loses_nothing_answered,
    processes_with_another_master_key_refuse_to_start,
    every_accepted_event_arrives_after_a_sigkill,
    sigterm_exits_zero_in_time_and_loses_nothing,
    sigterm_after_concurrent_batches_exits_in_time,
);

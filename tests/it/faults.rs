//! What Posthorn depends on fails under it: PostgreSQL stops and comes back, the disk under
//! SQLite fills up and frees again. Publishes answer 503 with `Retry-After` meanwhile, nothing
//! accepted is lost, and it recovers by itself. These need root (a PostgreSQL cluster of their
//! own, a tmpfs), so they run when `POSTHORN_TEST_FAULTS` is set (`.ci/run` sets it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::util::{free_port, received, wait_for, Api, Receiver, Server, ServerOptions};

/// A PostgreSQL cluster of this test's own, on its own port, that it may stop and start without
/// disturbing the other tests' server.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start() -> Self {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .max()
            .expect("a PostgreSQL version");
        let bin = version.join("bin");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        // PostgreSQL refuses to run as root: its files belong to the postgres user.
        Command::new("chown")
            .args(["-R", "postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let pg = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.up();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.data.join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops it as a crash would (`immediate`: no checkpoint, connections cut).
    fn down(&self) {
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn run_as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Publishes one event: its id when accepted; `None` on a 503, which must say when to come back
/// and be problem+json.
async fn publish(api: &Api, i: usize) -> Option<String> {
    let r = api
        .post("/v1/events", json!({"name": "tick", "data": {"i": i}}))
        .await;
    match r.status {
        202 => Some(r.body["id"].as_str().unwrap().to_owned()),
        503 => {
            assert_eq!(r.headers["retry-after"], "2", "{:?}", r.headers);
            assert_eq!(r.headers["content-type"], "application/problem+json");
            assert!(
                r.body["detail"].as_str().unwrap().contains("database"),
                "{}",
                r.body
            );
            None
        }
        other => panic!("publish answered {other}: {}", r.body),
    }
}

#[tokio::test]
#[cfg_attr(
    not(fault_tests),
    ignore = "POSTHORN_TEST_FAULTS is not set: the fault tests (root, own PostgreSQL, tmpfs) are skipped"
)]
async fn postgresql_stops_and_comes_back() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn_in(dir.path(), &pg.url(), &ServerOptions::default()).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["tick"], json!({})).await;
    let mut accepted = HashSet::new();
    let mut i = 0;
    for _ in 0..20 {
        accepted.insert(publish(&api, i).await.expect("accepted while up"));
        i += 1;
    }

    pg.down();
    let t = std::time::Instant::now();
    // While it is down: 503 with Retry-After, and /readyz says so; nothing is half-stored.
    let mut refused = 0;
    for _ in 0..3 {
        match publish(&api, i).await {
            Some(id) => {
                accepted.insert(id);
            }
            None => refused += 1,
        }
        i += 1;
    }
    assert!(
        refused >= 2,
        "{refused} of 3 publishes refused while PostgreSQL is down"
    );
    assert_eq!(api.get("/readyz").await.status, 503);
    // Each refusal waits out the pool's 10 s for a connection (longer on a loaded machine): a
    // bound against hanging, not a figure.
    assert!(
        t.elapsed() < Duration::from_secs(150),
        "3 refusals and a readiness check took {:?}",
        t.elapsed()
    );

    pg.up();
    // It comes back by itself: publishes are accepted again, and everything accepted arrives.
    let id = wait_for(Duration::from_secs(30), "publishes accepted again", || {
        publish(&api, 10_000)
    })
    .await;
    accepted.insert(id);
    for _ in 0..20 {
        accepted.insert(publish(&api, i).await.expect("accepted once it is back"));
        i += 1;
    }
    assert_eq!(api.get("/readyz").await.status, 200);
    wait_for(
        Duration::from_secs(60),
        "every accepted event at the receiver",
        || async {
            let got = received(&receiver);
            accepted.iter().all(|id| got.contains(id)).then_some(())
        },
    )
    .await;
}

/// A tmpfs of its own, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mount a tmpfs (needs root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
#[cfg_attr(
    not(fault_tests),
    ignore = "POSTHORN_TEST_FAULTS is not set: the fault tests (root, own PostgreSQL, tmpfs) are skipped"
)]
async fn sqlite_on_a_full_disk() {
    let disk = SmallDisk::mount(8);
    let database = format!("sqlite://{}/posthorn.db", disk.path().display());
    let server = Server::spawn_in(disk.path(), &database, &ServerOptions::default()).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["tick"], json!({})).await;
    let mut accepted = HashSet::new();
    for i in 0..10 {
        accepted.insert(publish(&api, i).await.expect("accepted with room"));
    }
    // Fill the disk.
    let filler = disk.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for i in 100..130 {
        // A log line it cannot write must not take a request (or the process) down.
        if reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_err()
        {
            panic!("the server died; its log:\n{}", server.log());
        }
        match publish(&api, i).await {
            Some(id) => {
                accepted.insert(id);
            }
            None => refused += 1,
        }
    }
    assert!(refused > 0, "no publish was refused on a full disk");
    // The process lives on and still reads.
    assert_eq!(api.get("/healthz").await.status, 200);
    for id in accepted.iter().take(3) {
        let r = api.get(&format!("/v1/events/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Room again: it recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let id = wait_for(Duration::from_secs(30), "publishes accepted again", || {
        publish(&api, 10_000)
    })
    .await;
    accepted.insert(id);
    for j in 0..10 {
        accepted.insert(
            publish(&api, 20_000 + j)
                .await
                .expect("accepted with room again"),
        );
    }
    wait_for(
        Duration::from_secs(60),
        "every accepted event at the receiver",
        || async {
            let got = received(&receiver);
            accepted.iter().all(|id| got.contains(id)).then_some(())
        },
    )
    .await;
    // Every accepted event is there, and the file is sound.
    for id in &accepted {
        assert_eq!(
            api.get(&format!("/v1/events/{id}")).await.status,
            200,
            "{id}"
        );
    }
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("{database}?mode=ro"))
        .await
        .unwrap();
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

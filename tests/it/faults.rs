//! What Posthorn depends on fails under it: PostgreSQL stops and comes back, the disk under
//! SQLite fills up and frees again, RabbitMQ and NATS restart under a source. Publishes answer 503
//! with `Retry-After` meanwhile, sources resume, nothing accepted is lost or doubled, and it
//! recovers by itself. These need root and servers of their own (a PostgreSQL cluster, a tmpfs, a
//! RabbitMQ node, a NATS server), so they run when `POSTHORN_TEST_FAULTS` is set (`.ci/run` sets
//! it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::util::{free_port, received, wait_for, Api, Backend, Receiver, Server, ServerOptions};

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
    let mut took = Vec::new();
    for _ in 0..3 {
        let sent = std::time::Instant::now();
        match publish(&api, i).await {
            Some(id) => {
                accepted.insert(id);
            }
            None => refused += 1,
        }
        took.push(sent.elapsed());
        i += 1;
    }
    assert!(
        refused >= 2,
        "{refused} of 3 publishes refused while PostgreSQL is down"
    );
    // Once a group has failed, the next ones do not each wait out the pool's 10 s for a
    // connection: they are refused within the 2 s the committers give a reconnection (a
    // generous bound for a loaded machine, well under 10 s).
    assert!(
        took[1..].iter().all(|d| *d < Duration::from_secs(6)),
        "publishes while PostgreSQL is down took {took:?}"
    );
    // A readiness probe gets its answer at once (2 s at most), not after the pool's 10 s.
    let probed = std::time::Instant::now();
    assert_eq!(api.get("/readyz").await.status, 503);
    assert!(
        probed.elapsed() < Duration::from_secs(4),
        "/readyz answered after {:?} while PostgreSQL was down",
        probed.elapsed()
    );
    // A bound against hanging, not a figure.
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
    all_arrive(&receiver, "every accepted event", &accepted).await;
}

/// Waits (up to a minute) until every one of `ids` has arrived at `receiver`, `what` naming them
/// if they do not.
async fn all_arrive<'a>(
    receiver: &Receiver,
    what: &str,
    ids: impl IntoIterator<Item = &'a String>,
) {
    let ids: Vec<&String> = ids.into_iter().collect();
    wait_for(
        Duration::from_secs(60),
        &format!("{what} at the receiver"),
        || async {
            let got = received(receiver);
            ids.iter().all(|id| got.contains(*id)).then_some(())
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
    all_arrive(&receiver, "every accepted event", &accepted).await;
    // Every accepted event is there, and the file is sound.
    for id in &accepted {
        assert_eq!(
            api.get(&format!("/v1/events/{id}")).await.status,
            200,
            "{id}"
        );
    }
    // Nothing half-written: a group that failed on the full disk left no event without its
    // delivery (which would never arrive), whether or not its publish was answered.
    let stored = stored_ids(&api, "tick").await;
    assert!(stored.len() >= accepted.len());
    all_arrive(&receiver, "every stored event", &stored).await;
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

/// The ids of the events the receiver got, each as many times as it came.
fn delivered_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .hits()
        .iter()
        .map(|h| {
            let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
            body["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Every event named `name` Posthorn stored, by id (at most 1,000 per page, all pages).
async fn stored_ids(api: &Api, name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = api
            .get(&format!("/v1/events?name={name}&limit=1000{cursor}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        for e in r.body["items"].as_array().unwrap() {
            ids.push(e["id"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return ids,
        }
    }
}

/// Every one of `expected` stored once and delivered once: nothing lost, nothing twice.
async fn each_once(api: &Api, receiver: &Receiver, name: &str, expected: &HashSet<String>) {
    wait_for(WAIT, "every message delivered", || async {
        let got: HashSet<String> = delivered_ids(receiver).into_iter().collect();
        (got == *expected).then_some(())
    })
    .await;
    let stored = stored_ids(api, name).await;
    assert_eq!(stored.len(), expected.len(), "events stored twice or lost");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), *expected);
    let delivered = delivered_ids(receiver);
    assert_eq!(delivered.len(), expected.len(), "a message delivered twice");
}

const WAIT: Duration = Duration::from_secs(60);

/// A server consuming the source its `posthorn.toml` (`config`) names, and a receiver subscribed
/// to `order.*`, once the source says it is connected (the folder holds the file).
async fn consuming(config: String) -> (Server, Receiver, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerOptions::configured(
        Backend::Sqlite,
        dir.path(),
        &config,
    ))
    .await;
    let api = server.api();
    let receiver = Receiver::start().await;
    api.subscribe(&receiver.url, &["order.*"], json!({})).await;
    wait_for(WAIT, "the source to connect", || async {
        let s = api.get("/v1/sources").await.body;
        (s["items"][0]["connected"] == true).then_some(())
    })
    .await;
    (server, receiver, dir)
}

/// Orders `o-0` … `o-{n-1}` each stored once and delivered once, and the source connected again.
async fn every_order_once(api: &Api, receiver: &Receiver, n: usize) {
    let expected: HashSet<String> = (0..n).map(|i| format!("o-{i}")).collect();
    each_once(api, receiver, "order.paid", &expected).await;
    let s = api.get("/v1/sources").await.body;
    assert_eq!(s["items"][0]["connected"], true, "{s}");
}

/// A server process a test starts, stops as a restart does and starts again; killed when
/// dropped.
#[derive(Default)]
struct Daemon(Option<std::process::Child>);

impl Daemon {
    /// Starts `command`, and waits (up to `limit`) until it listens on `port`. Waits without
    /// blocking the test's runtime: its receiver and publishers go on meanwhile.
    async fn start(&mut self, mut command: Command, port: u16, limit: Duration, what: &str) {
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        self.0 = Some(child);
        wait_for(limit, &format!("{what} to listen"), || async {
            listening(port).await.then_some(())
        })
        .await;
    }

    /// SIGTERM (a clean shutdown, as a restart does), then waits until it is gone and `port` is
    /// closed.
    async fn stop(&mut self, port: u16, what: &str) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        wait_for(
            Duration::from_secs(60),
            &format!("{what} to stop"),
            || async { (!listening(port).await).then_some(()) },
        )
        .await;
    }
}

/// Whether something accepts connections on `port` of the loopback.
async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A NATS server with JetStream of this test's own (its own port and store), that it may stop and
/// start again.
struct PrivateNats {
    port: u16,
    store: tempfile::TempDir,
    process: Daemon,
}

impl PrivateNats {
    async fn start() -> Self {
        let mut nats = Self {
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
            process: Daemon::default(),
        };
        nats.up().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let program = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nats-server in /usr/sbin or /usr/bin");
        let mut command = Command::new(program);
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path());
        let port = self.port;
        self.process
            .start(command, port, Duration::from_secs(20), "nats-server")
            .await;
    }

    /// Stops it as a restart does (SIGTERM: it finishes writing its store), and waits for it.
    async fn down(&mut self) {
        let port = self.port;
        self.process.stop(port, "nats-server").await;
    }
}

/// NATS restarts while Posthorn consumes a stream and messages keep coming: the source resumes by
/// itself, every message becomes one event, delivered once.
#[tokio::test]
#[cfg_attr(
    not(fault_tests),
    ignore = "POSTHORN_TEST_FAULTS is not set: the fault tests (root, own PostgreSQL, tmpfs) are skipped"
)]
async fn nats_restarts_under_a_source() {
    let mut nats = PrivateNats::start().await;
    let (server, receiver, _dir) = consuming(format!(
        "[[sources.nats]]\nurl = \"{}\"\nstream = \"ORDERS\"\nsubjects = [\"shop.>\"]\n\
         strip_prefix = \"shop.\"\nconsumer = \"posthorn\"\n",
        nats.url()
    ))
    .await;
    let api = server.api();

    // A publisher that keeps sending, each message until the stream acknowledges it (the same
    // Nats-Msg-Id again after a failure, as a careful publisher does).
    const N: usize = 300;
    let url = nats.url();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let sending = tokio::spawn(async move {
        let options = async_nats::ConnectOptions::new().retry_on_initial_connect();
        let client = options.connect(&url).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        for i in 0..N {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("o-{i}").as_str());
                let sent = match js
                    .publish_with_headers(
                        "shop.order.paid",
                        headers,
                        format!(r#"{{"i": {i}}}"#).into_bytes().into(),
                    )
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if sent {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "NATS never came back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    receiver.wait_hits(50, WAIT).await;
    nats.down().await;
    let before = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before < N, "the restart came after the last message");
    nats.up().await;
    sending.await.unwrap();
    every_order_once(&api, &receiver, N).await;
}

/// A RabbitMQ node of this test's own (its own name, ports, database and configuration, no
/// plugins), that it may stop and start again without disturbing the shared one.
struct PrivateRabbit {
    port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    process: Daemon,
}

impl PrivateRabbit {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").unwrap();
        let mut rabbit = Self {
            port,
            dist_port: free_port(),
            dir,
            process: Daemon::default(),
        };
        rabbit.up().await;
        rabbit
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn up(&mut self) {
        let d = self.dir.path();
        let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
        command
            .current_dir(d)
            .env(
                "RABBITMQ_NODENAME",
                format!("posthorn-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        let what = format!("RabbitMQ (its log is in {})", d.join("log").display());
        let port = self.port;
        self.process
            .start(command, port, Duration::from_secs(90), &what)
            .await;
    }

    /// Stops it as a restart does (SIGTERM: a clean shutdown), and waits until it is gone.
    async fn down(&mut self) {
        let port = self.port;
        self.process.stop(port, "RabbitMQ").await;
    }
}

/// RabbitMQ restarts while Posthorn consumes a queue and messages keep coming: the source
/// reconnects by itself, every message becomes one event (one redelivered after the restart is
/// recognised by its message id), delivered once.
#[tokio::test]
#[cfg_attr(
    not(fault_tests),
    ignore = "POSTHORN_TEST_FAULTS is not set: the fault tests (root, own PostgreSQL, tmpfs) are skipped"
)]
async fn rabbitmq_restarts_under_a_source() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let mut rabbit = PrivateRabbit::start().await;
    let (server, receiver, _dir) = consuming(format!(
        "[[sources.amqp]]\nurl = \"{}\"\nexchange = \"shop\"\nexchange_type = \"topic\"\n\
         queue = \"posthorn-shop\"\nbindings = [\"order.*\"]\n",
        rabbit.url()
    ))
    .await;
    let api = server.api();

    // A careful publisher: persistent messages, each until the broker confirms it, on a new
    // connection after a failure, with the same message id.
    const N: usize = 300;
    let url = rabbit.url();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let sending = tokio::spawn(async move {
        let mut channel: Option<lapin::Channel> = None;
        for i in 0..N {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                if channel.is_none() {
                    if let Ok(conn) =
                        Connection::connect(&url, ConnectionProperties::default()).await
                    {
                        if let Ok(c) = conn.create_channel().await {
                            if c.confirm_select(ConfirmSelectOptions::default())
                                .await
                                .is_ok()
                            {
                                channel = Some(c);
                            }
                        }
                    }
                }
                let confirmed = match &channel {
                    Some(c) => {
                        let props = BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_message_id(format!("o-{i}").into());
                        match c
                            .basic_publish(
                                "shop".into(),
                                "order.paid".into(),
                                BasicPublishOptions::default(),
                                format!(r#"{{"i": {i}}}"#).as_bytes(),
                                props,
                            )
                            .await
                        {
                            Ok(confirm) => confirm.await.is_ok_and(|c| c.is_ack()),
                            Err(_) => false,
                        }
                    }
                    None => false,
                };
                if confirmed {
                    break;
                }
                channel = None;
                assert!(
                    std::time::Instant::now() < deadline,
                    "RabbitMQ never came back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    receiver.wait_hits(50, WAIT).await;
    rabbit.down().await;
    let before = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before < N, "the restart came after the last message");
    wait_for(WAIT, "the source to see the broker gone", || async {
        let s = api.get("/v1/sources").await.body;
        (s["items"][0]["connected"] == false).then_some(())
    })
    .await;
    rabbit.up().await;
    sending.await.unwrap();
    every_order_once(&api, &receiver, N).await;
}

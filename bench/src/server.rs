//! A `posthorn serve` process for the benchmark, on SQLite in a temporary folder or on a fresh
//! PostgreSQL database, with loopback admitted as a target.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    child: Child,
    base: String,
    /// The command line, to start it again the same way.
    args: Vec<String>,
    pub token: String,
    pub backend: &'static str,
    /// Distinguishes this process's client ids from another run's.
    pub run: u128,
    /// The database URL (to count what it stores).
    pub database: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    keep_log: Option<PathBuf>,
    /// The PostgreSQL database made for it, shared with the processes `another` started on it.
    scratch: Option<std::sync::Arc<Scratch>>,
}

/// A PostgreSQL database the harness made for a server, dropped once the last process on it has
/// stopped (a quick run makes about 40: left behind, they piled up run after run).
struct Scratch {
    /// The URL the harness was given, to connect to while this one is dropped.
    admin: String,
    name: String,
}

impl Scratch {
    async fn drop_database(self) {
        use sqlx::Connection;
        let dropped = async {
            let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
            // Every Posthorn process on it has exited; `FORCE` (PostgreSQL 13) ends what the
            // harness itself may still hold open on it.
            let force = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            if sqlx::query(&force).execute(&mut conn).await.is_err() {
                let plain = format!("DROP DATABASE IF EXISTS \"{}\"", self.name);
                sqlx::query(&plain).execute(&mut conn).await?;
            }
            anyhow::Ok(())
        };
        if let Err(e) = dropped.await {
            eprintln!("the bench database {} is left behind: {e:#}", self.name);
        }
    }
}

/// The servers this harness has started and not yet seen exit, so that an interrupted run
/// (Ctrl-C, `kill`) takes them down with it: left running, a server draining a backlog loads the
/// machine for whatever runs next.
static LIVE: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn live(pid: Option<u32>, add: bool) {
    if let (Some(pid), Ok(mut live)) = (pid, LIVE.lock()) {
        live.retain(|p| *p != pid);
        if add {
            live.push(pid);
        }
    }
}

/// SIGKILLs every server still running (the harness is being interrupted).
pub fn kill_all() {
    if let Ok(live) = LIVE.lock() {
        for pid in live.iter() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn posthorn_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(p) = std::env::var("POSTHORN_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("posthorn");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release)",
            bin.display()
        );
    }
    Ok(bin)
}

async fn fresh_postgres(url: &str) -> anyhow::Result<(String, Scratch)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    let name = format!(
        "posthorn_bench_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    let mut u = url::Url::parse(url)?;
    u.set_path(&format!("/{name}"));
    let scratch = Scratch {
        admin: url.to_owned(),
        name,
    };
    Ok((u.to_string(), scratch))
}

/// Starts `posthorn ARGS` in `dir` (its log appended to `server.log` there); returns the process
/// and the base URL it listens on.
async fn spawn(args: &[String], dir: &std::path::Path) -> anyhow::Result<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    let mut child = Command::new(posthorn_binary()?)
        .args(args)
        .current_dir(dir)
        .env(
            "RUST_LOG",
            std::env::var("POSTHORN_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting posthorn")?;
    live(child.id(), true);
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("posthorn listening on ") {
                return Some(addr.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("posthorn did not start")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}

impl Server {
    /// Kills the process (SIGKILL: no shutdown at all) and starts a new one the same way, on the
    /// same database and address.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        live(self.child.id(), false);
        let _ = self.child.kill().await;
        let (child, base) = spawn(&self.args, self._dir.path()).await?;
        self.child = child;
        self.base = base;
        Ok(())
    }

    /// Starts another process on this one's database (PostgreSQL), with its own folder and
    /// address. The processes must share the master key: start the first with `--master-key`.
    pub async fn another(&self) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut args = self.args.clone();
        args[2] = "127.0.0.1:0".to_owned();
        let (child, base) = spawn(&args, dir.path()).await?;
        args[2] = base.trim_start_matches("http://").to_owned();
        Ok(Self {
            child,
            base,
            args,
            token: self.token.clone(),
            backend: self.backend,
            run: self.run,
            database: self.database.clone(),
            client: reqwest::Client::new(),
            _dir: dir,
            keep_log: None,
            scratch: self.scratch.clone(),
        })
    }

    /// Starts `posthorn serve`; with `keep_log`, its log is copied there when it stops.
    pub async fn start(postgres: Option<&str>, keep_log: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::start_with(postgres, keep_log, None).await
    }

    /// Starts `posthorn serve` with this `posthorn.toml`, if any.
    pub async fn start_with(
        postgres: Option<&str>,
        keep_log: Option<PathBuf>,
        config: Option<&str>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut extra: Vec<String> = Vec::new();
        if let Some(text) = config {
            let path = dir.path().join("posthorn.toml");
            std::fs::write(&path, text)?;
            extra.extend(["--config".to_owned(), path.display().to_string()]);
        }
        let (database, backend, scratch) = match postgres {
            Some(url) => {
                let (database, scratch) = fresh_postgres(url).await?;
                (database, "PostgreSQL", Some(std::sync::Arc::new(scratch)))
            }
            None => (
                format!("sqlite://{}/posthorn.db", dir.path().display()),
                "SQLite",
                None,
            ),
        };
        let token = "bench-admin-token-0123456789".to_owned();
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--admin-token",
            &token,
            "--allow-network",
            "127.0.0.0/8",
            "--log-format",
            "json",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(extra);
        let (child, base) = spawn(&args, dir.path()).await?;
        // A restart listens where this one does.
        args[2] = base.trim_start_matches("http://").to_owned();
        Ok(Self {
            child,
            base,
            args,
            token,
            backend,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos(),
            database: database.clone(),
            client: reqwest::Client::new(),
            _dir: dir,
            keep_log: keep_log.map(|p| {
                p.with_extension(if postgres.is_some() {
                    "postgres.log"
                } else {
                    "sqlite.log"
                })
            }),
            scratch,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A GET as the admin (what an operator's scrapes and dashboard do), its body read whole.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn publish(&self, body: &Value) -> anyhow::Result<()> {
        let r = self
            .client
            .post(self.url("/v1/events"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "publish: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn subscribe(&self, url: &str, events: &[&str], more: Value) -> anyhow::Result<()> {
        let mut body =
            json!({"name": "bench", "service": "http", "config": {"url": url}, "events": events});
        if let (Some(b), Value::Object(m)) = (body.as_object_mut(), more) {
            b.extend(m);
        }
        let r = self
            .client
            .post(self.url("/v1/subscriptions"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!(
                "subscribe: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn subscribe_many(&self, url: &str, event: &str, n: usize) -> anyhow::Result<()> {
        self.subscribe_many_with(url, event, n, json!({})).await
    }

    /// `n` subscriptions to `url` for `event`, created through the API 16 at a time; `config`
    /// is merged into each one's config.
    pub async fn subscribe_many_with(
        &self,
        url: &str,
        event: &str,
        n: usize,
        config: Value,
    ) -> anyhow::Result<()> {
        let mut cfg = json!({"url": url});
        if let (Some(c), Value::Object(m)) = (cfg.as_object_mut(), config) {
            c.extend(m);
        }
        let mut pending = Vec::new();
        for i in 0..n {
            let body = json!({"name": format!("bench {i}"), "service": "http", "config": cfg, "events": [event]});
            let req = self
                .client
                .post(self.url("/v1/subscriptions"))
                .bearer_auth(&self.token)
                .json(&body);
            pending.push(tokio::spawn(async move {
                req.send().await.map(|r| r.status().as_u16())
            }));
            if pending.len() == 16 || i + 1 == n {
                for p in pending.drain(..) {
                    let status = p.await??;
                    if status != 201 {
                        bail!("subscribe: HTTP {status}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Resident memory of the server process, in MB.
    pub fn rss_mb(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU time the server process has used so far (user and system), from `/proc`. Unlike a
    /// rate, CPU per event hardly moves with the machine's phases: compare builds by it.
    pub fn cpu(&self) -> Duration {
        let Some(pid) = self.child.id() else {
            return Duration::ZERO;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces, so split after its `)`):
        // utime and stime are the 14th and 15th fields of the line, in clock ticks.
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|t| t.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        // USER_HZ, the unit of these fields, is 100 on Linux (`getconf CLK_TCK`).
        Duration::from_millis(ticks * 10)
    }

    /// SIGTERM, and waits for the exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let pid = self.child.id();
        let _ = tokio::time::timeout(Duration::from_secs(35), self.child.wait()).await;
        live(pid, false);
        if let Some(to) = &self.keep_log {
            if let Some(dir) = to.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::copy(self._dir.path().join("server.log"), to);
        }
        // The last process on its database drops it.
        if let Some(scratch) = self.scratch.take() {
            if let Ok(scratch) = std::sync::Arc::try_unwrap(scratch) {
                scratch.drop_database().await;
            }
        }
    }
}

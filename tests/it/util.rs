//! Test helpers: the server process, an HTTP receiver that records what it gets and answers as
//! scripted, an API client, and waiting on a condition with a deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const TOKEN: &str = "test-admin-token-0123456789";

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local address")
        .port()
}

/// The `webhook-id`s the receiver got.
pub fn received(receiver: &Receiver) -> std::collections::HashSet<String> {
    receiver
        .hits()
        .iter()
        .map(|h| h.header("webhook-id").to_owned())
        .collect()
}

/// Waits until `check` yields `Some`, polling every 20 ms; panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_for`], with `explain`'s account of what stood instead (states read from the API, a
/// log's tail) in the panic when the deadline passes.
pub async fn wait_for_explained<T, F, Fut, E, EFut>(
    limit: Duration,
    what: &str,
    mut check: F,
    explain: E,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    E: FnOnce() -> EFut,
    EFut: Future<Output = String>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}: {}",
                explain().await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Scrapes `/metrics` and parses it as Prometheus text.
pub async fn scrape(base: &str, token: Option<&str>) -> (u16, Option<prometheus_parse::Scrape>) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("scrape");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    if status != 200 {
        return (status, None);
    }
    assert!(content_type
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    (status, Some(scrape))
}

/// The value of the one sample of `name` whose labels include `labels` (0 when absent).
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: several samples");
    match found.first().map(|s| &s.value) {
        None => 0.0,
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            buckets.last().map_or(0.0, |b| b.count)
        }
        Some(prometheus_parse::Value::Summary(_)) => panic!("{name}: a summary, not a histogram"),
    }
}

/// The sum of every sample of `name` whose labels include `labels` (a counter over all its
/// other labels).
pub fn total(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

/// A running `posthorn serve`.
pub struct Server {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub database: String,
    _tmp: Option<tempfile::TempDir>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub options: ServerOptions,
}

#[derive(Clone)]
pub struct ServerOptions {
    pub backend: Backend,
    /// Admit loopback as a target (tests' receivers listen there).
    pub allow_loopback: bool,
    pub extra: Vec<String>,
    /// Environment variables of the process.
    pub env: Vec<(String, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            allow_loopback: true,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl ServerOptions {
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }

    /// On `backend`, with `toml` written as `dir/posthorn.toml` and passed as `--config`.
    pub fn configured(backend: Backend, dir: &Path, toml: &str) -> Self {
        let path = dir.join("posthorn.toml");
        std::fs::write(&path, toml).expect("write posthorn.toml");
        Self {
            extra: vec!["--config".into(), path.display().to_string()],
            ..Self::on(backend)
        }
    }
}

/// The database a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A file in the test's temporary folder.
    Sqlite,
    /// A new database on the server named by `POSTHORN_TEST_POSTGRES_URL`.
    Postgres,
}

const POSTGRES_VAR: &str = "POSTHORN_TEST_POSTGRES_URL";

/// Whether the PostgreSQL half of the suite runs. Says once, on the terminal (past the test
/// harness's capture), when it does not.
pub fn postgres_available() -> bool {
    static NOTICE: std::sync::Once = std::sync::Once::new();
    let set = std::env::var(POSTGRES_VAR).is_ok_and(|v| !v.is_empty());
    if !set {
        NOTICE.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: {POSTGRES_VAR} is not set: the PostgreSQL half of the integration suite is skipped"
            );
        });
    }
    set
}

impl Backend {
    pub async fn database_url(self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite://{}/posthorn.db", dir.display()),
            Backend::Postgres => fresh_postgres_database().await,
        }
    }
}

/// Creates an empty database for one test and returns its URL. A missing server is a failure.
async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let url = std::env::var(POSTGRES_VAR).expect("POSTHORN_TEST_POSTGRES_URL");
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_VAR}={url}: cannot connect: {e}"));
    CLEANED
        .get_or_init(|| async {
            // Databases left by earlier runs that have ended: the name carries the test run's
            // process id, and a run whose process still lives (another suite running beside
            // this one) keeps its databases.
            let old: Vec<(String,)> =
                sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'posthorn_t_%'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
            let ended = |name: &str| {
                name.strip_prefix("posthorn_t_")
                    .and_then(|rest| rest.split('_').next())
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            };
            for (name,) in old.into_iter().filter(|(n,)| ended(n)) {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                    .execute(&mut conn)
                    .await;
            }
        })
        .await;
    let name = format!("posthorn_t_{}_{}", std::process::id(), rand_suffix());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let mut u = url::Url::parse(&url).expect("a PostgreSQL URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{t}_{}", N.fetch_add(1, Ordering::Relaxed))
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(ServerOptions::on(backend)).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let database = options.backend.database_url(&dir).await;
        let mut s = Self::spawn_in(&dir, &database, &options).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts `n` processes on one new database (each with its own folder), at once, sharing the
    /// master key as a deployment must.
    pub async fn start_many(n: usize, options: ServerOptions) -> Vec<Server> {
        let first = tempfile::tempdir().expect("temp dir");
        let database = options.backend.database_url(first.path()).await;
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let mut options = options;
        options.extra.extend(["--master-key".into(), key]);
        // Spawned together, so that they migrate the empty database at the same moment.
        let starts: Vec<_> = (0..n)
            .map(|_| {
                let options = options.clone();
                let database = database.clone();
                tokio::spawn(async move {
                    let tmp = tempfile::tempdir().expect("temp dir");
                    let mut s = Self::spawn_in(tmp.path(), &database, &options).await;
                    s._tmp = Some(tmp);
                    s
                })
            })
            .collect();
        let mut servers = Vec::with_capacity(n);
        for s in starts {
            servers.push(s.await.expect("server start"));
        }
        servers
    }

    /// Starts another process on the same database as `self` (after `self` stopped).
    pub async fn restart(&mut self) {
        let dir = self.dir.clone();
        let tmp = self._tmp.take();
        let mut next = Self::spawn_in(&dir, &self.database, &self.options).await;
        next._tmp = tmp;
        *self = next;
    }

    pub async fn spawn_in(dir: &Path, database: &str, options: &ServerOptions) -> Self {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--database".into(),
            database.to_owned(),
            "--admin-token".into(),
            TOKEN.into(),
        ];
        if !options.extra.iter().any(|a| a == "--log-format") {
            args.extend(["--log-format".into(), "text".into()]);
        }
        if options.allow_loopback {
            args.extend(["--allow-network".into(), "127.0.0.0/8".into()]);
        }
        args.extend(options.extra.iter().cloned());
        let mut s = Self::spawn_env(dir, &args, dir, &options.env).await;
        s.options = options.clone();
        s.database = database.to_owned();
        s
    }

    /// Runs `posthorn ARGS` in `cwd` and waits for it to say where it listens.
    pub async fn spawn(dir: &Path, args: &[String], cwd: &Path) -> Self {
        Self::spawn_env(dir, args, cwd, &[]).await
    }

    /// [`Server::spawn`] with environment variables.
    pub async fn spawn_env(
        dir: &Path,
        args: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_posthorn"))
            .args(args)
            .current_dir(cwd)
            .env_remove("POSTHORN_DATABASE_URL")
            .env("RUST_LOG", "info,posthorn_dispatch=debug")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start posthorn");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let seen = lines.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(addr) = line.strip_prefix("posthorn listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
                seen.lock().unwrap().push(line);
            }
        });
        let base = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", read_log(dir)))
            .unwrap_or_else(|_| panic!("server exited at start; log:\n{}", read_log(dir)));
        Self {
            child,
            base,
            dir: dir.to_path_buf(),
            database: String::new(),
            _tmp: None,
            stdout: lines,
            options: ServerOptions::default(),
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base, TOKEN)
    }

    /// The SQLite database files (the database, its WAL) in this server's folder that hold
    /// `needle`: where a secret must never be found.
    pub fn database_files_holding(&self, needle: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().contains("posthorn.db"))
            .filter(|path| {
                let bytes = std::fs::read(path).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
            .collect()
    }

    pub fn log(&self) -> String {
        read_log(&self.dir)
    }

    /// The server's resident memory, in bytes (Linux).
    pub fn resident_bytes(&self) -> u64 {
        let pid = self.child.id().expect("pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long it took.
    pub async fn terminate(&mut self) -> (Option<i32>, Duration) {
        let pid = self.child.id().expect("pid");
        let start = Instant::now();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "server did not exit within 40 s of SIGTERM; log:\n{}",
                    read_log(&self.dir)
                )
            })
            .expect("wait");
        (status.code(), start.elapsed())
    }

    /// Waits (at most `limit`) for the process to exit of itself; its exit code and how long.
    pub async fn terminate_by_itself(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "server did not exit within {limit:?}; log:\n{}",
                    read_log(&self.dir)
                )
            })
            .expect("wait");
        (status.code(), start.elapsed())
    }
}

/// A number no other run of a test shares (nanoseconds since the epoch), for the names of the
/// queues, exchanges and streams a test declares on a shared broker.
pub fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// A JSON API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: Some(token.to_owned()),
            http: reqwest::Client::new(),
        }
    }

    pub fn without_token(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// The bearer token it sends.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", self.base, path),
        );
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(req).await
    }

    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{}", self.base, path),
            )
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request to posthorn");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    /// The names of the delivery services, as `GET /v1/services` lists them.
    pub async fn service_names(&self) -> Vec<String> {
        self.get("/v1/services").await.body["items"]
            .as_array()
            .expect("a list of services")
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(&body)).await
    }

    /// Creates a subscription to `url` for `events`, with more fields merged in; returns it.
    pub async fn subscribe(&self, url: &str, events: &[&str], more: Value) -> Value {
        let mut body =
            json!({"name": "test", "service": "http", "config": {"url": url}, "events": events});
        if let (Some(b), Value::Object(m)) = (body.as_object_mut(), more) {
            b.extend(m);
        }
        let r = self.post("/v1/subscriptions", body).await;
        assert_eq!(r.status, 201, "create subscription: {}", r.body);
        r.body
    }

    pub async fn publish(&self, event: Value) -> Value {
        let r = self.post("/v1/events", event).await;
        assert_eq!(r.status, 202, "publish: {}", r.body);
        r.body
    }

    /// The deliveries of a subscription (first page, newest first).
    pub async fn deliveries(&self, subscription_id: &str) -> Vec<Value> {
        let r = self
            .get(&format!(
                "/v1/subscriptions/{subscription_id}/deliveries?limit=1000"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the subscription has a delivery; returns the newest one's id.
    pub async fn first_delivery(&self, subscription_id: &str, limit: Duration) -> String {
        wait_for(limit, "a delivery", || async {
            self.deliveries(subscription_id)
                .await
                .first()
                .map(|d| d["id"].as_str().unwrap().to_owned())
        })
        .await
    }

    /// Waits until the delivery has `status` and returns it with its log.
    /// The id of the first delivery of the event `event_id` (as `GET /v1/events/{id}` lists them).
    pub async fn first_delivery_of_event(&self, event_id: &str) -> String {
        let e = self.get(&format!("/v1/events/{event_id}")).await.body;
        e["deliveries"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("event {event_id} has no delivery: {e}"))
            .to_owned()
    }

    pub async fn delivery_with_status(&self, id: &str, status: &str, limit: Duration) -> Value {
        wait_for(limit, &format!("delivery {id} to be {status}"), || async {
            let d = self.get(&format!("/v1/deliveries/{id}")).await.body;
            (d["status"] == status).then_some(d)
        })
        .await
    }
}

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The address the request came from (plain-HTTP receivers only).
    pub peer: Option<std::net::SocketAddr>,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Option<Answer>>,
    /// Answers by path, before the script and the default.
    by_path: Mutex<std::collections::HashMap<String, Answer>>,
    in_progress: std::sync::atomic::AtomicUsize,
    most_in_progress: std::sync::atomic::AtomicUsize,
}

/// Records every request and answers from the script (see [`Receiver`]).
fn receiver_app(s: Arc<ReceiverState>) -> axum::Router {
    axum::Router::new().fallback(
        move |method: Method,
              uri: Uri,
              headers: HeaderMap,
              extensions: axum::http::Extensions,
              body: Bytes| {
            let s = s.clone();
            let peer = extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let by_path = s.by_path.lock().unwrap().get(uri.path()).cloned();
                let answer = by_path
                    .or_else(|| s.script.lock().unwrap().pop_front())
                    .or_else(|| s.default.lock().unwrap().clone())
                    .unwrap_or_else(|| Answer::status(204));
                s.hits.lock().unwrap().push(Hit {
                    method,
                    path: uri.path().to_owned(),
                    headers,
                    body,
                    at: Instant::now(),
                    peer,
                });
                let now = s.in_progress.fetch_add(1, SeqCst) + 1;
                s.most_in_progress.fetch_max(now, SeqCst);
                if !answer.delay.is_zero() {
                    tokio::time::sleep(answer.delay).await;
                }
                s.in_progress.fetch_sub(1, SeqCst);
                let mut resp = StatusCode::from_u16(answer.status).unwrap().into_response();
                for (k, v) in answer.headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                resp
            }
        },
    )
}

/// An HTTP server on loopback that records every request and answers from a script (then with
/// the default answer, 204 unless set).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.port())
            .expect("a receiver URL has a port")
    }

    /// The receiver listening on `ip` (any loopback address: 127.0.0.2 is one).
    pub async fn start_on(ip: &str) -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = receiver_app(state.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        Self { url, state }
    }

    /// The same receiver behind TLS, with this server configuration (`https://127.0.0.1:…`). A
    /// client that gives up during the handshake (it refused the certificate) is not a hit.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let state = Arc::new(ReceiverState::default());
        let app = receiver_app(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/hook", listener.local_addr().unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // The client's certificate (mutual TLS), if it presented one: every request
                    // of the connection carries it as `x-client-certificate` (base64 DER).
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| {
                            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c)
                        });
                    let app = match peer {
                        Some(p) => app.layer(axum::middleware::from_fn(
                            move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                                let p = p.clone();
                                async move {
                                    req.headers_mut()
                                        .insert("x-client-certificate", p.parse().unwrap());
                                    next.run(req).await
                                }
                            },
                        )),
                        None => app,
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    /// Answers every request to `path` with `answer`.
    pub fn answer_at(&self, path: &str, answer: Answer) {
        self.state
            .by_path
            .lock()
            .unwrap()
            .insert(path.to_owned(), answer);
    }

    /// The URL of another path on this receiver.
    pub fn at(&self, path: &str) -> String {
        self.url.replace("/hook", path)
    }

    /// The most requests that were in progress at once.
    pub fn most_in_progress(&self) -> usize {
        self.state
            .most_in_progress
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn hits_at(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    pub fn answer_by_default(&self, answer: Answer) {
        *self.state.default.lock().unwrap() = Some(answer);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// How many times each message (by its `webhook-id`) arrived.
    pub fn arrivals(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for hit in self.state.hits.lock().unwrap().iter() {
            *counts
                .entry(hit.header("webhook-id").to_owned())
                .or_default() += 1;
        }
        counts
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_hits(&self, n: usize, limit: Duration) -> Vec<Hit> {
        wait_for(limit, &format!("{n} webhooks at the receiver"), || async {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

/// An application: its id, client id and secret.
pub struct App {
    pub id: String,
    pub client_id: String,
    pub secret: String,
}

pub async fn application(admin: &Api, scopes: &[&str]) -> App {
    let r = admin
        .post(
            "/v1/applications",
            json!({"name": "integrator", "scopes": scopes}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["id"].as_str().unwrap().starts_with("app_"));
    App {
        id: r.body["id"].as_str().unwrap().to_owned(),
        client_id: r.body["client_id"].as_str().unwrap().to_owned(),
        secret: r.body["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// An access token for `app`, from the token endpoint (form credentials).
pub async fn token(base: &str, app: &App) -> String {
    let (status, _, body) = crate::applications::token_request(
        base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A subscription as `GET` shows it, less what the server owns: a body to write it back with
/// (`PUT`).
pub fn spec_of(view: &Value) -> Value {
    let mut spec = view.clone();
    for k in [
        "id",
        "owner",
        "status",
        "disabled_reason",
        "circuit",
        "failing_since",
        "credential_expires_at",
        "created_at",
        "updated_at",
        "secret",
    ] {
        spec.as_object_mut().expect("a subscription").remove(k);
    }
    spec
}

/// The outcomes of a delivery's attempts in order (`retry`, `final`, `success`).
pub fn attempt_outcomes(delivery: &Value) -> Vec<String> {
    delivery["attempt_log"]
        .as_array()
        .expect("an attempt log")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect()
}

/// A sample event of the seed systems, from `tests/fixtures/` (copied from the shared fixtures).
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

/// Checks a received webhook's signature with the Standard Webhooks library, as a receiver does.
pub fn verify(secret: &str, hit: &Hit) -> Result<(), String> {
    standardwebhooks::Webhook::new(secret)
        .map_err(|e| e.to_string())?
        .verify(&hit.body, &hit.headers)
        .map_err(|e| e.to_string())
}

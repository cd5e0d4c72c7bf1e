//! Starting and stopping the service: opens the store, settles the secrets, starts the
//! dispatcher and the API, and on SIGTERM/SIGINT stops taking requests, lets the dispatcher
//! finish or hand back what is in flight, and returns within 30 seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use posthorn_api::telemetry::Metrics;
use posthorn_api::{router, AdminAuth, ApiConfig, AppState, Readiness, Shared};

use crate::supervise::Supervisor;
use posthorn_core::id::new_id;
use posthorn_core::{NetworkPolicy, Registry};
use posthorn_dispatch::sandbox::TemplateSandbox;
use posthorn_dispatch::service::broker::{AmqpService, NatsService};
use posthorn_dispatch::service::email::EmailService;
use posthorn_dispatch::service::http::{HttpService, Proxy};
use posthorn_dispatch::service::plugin::PluginService;
use posthorn_dispatch::service::poll::PollService;
use posthorn_dispatch::{DispatchConfig, Dispatcher};
use posthorn_ingest::board::SourceBoard;
use posthorn_store::tally::SubscriptionTally;
use posthorn_store::{
    sqlite_path, EventTypeCache, Publisher, Sealer, Store, SubscriptionCache, SubscriptionWriter,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};

/// How long a claim holds a delivery; a process that dies loses its claims this long after.
const LEASE: Duration = Duration::from_secs(15);
/// How long shutdown waits for attempts in flight.
const GRACE: Duration = Duration::from_secs(20);
/// The whole shutdown, after which the process exits regardless.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(28);
/// The longest wait for the database connections to close, after that.
const STORE_CLOSE_LIMIT: Duration = Duration::from_secs(1);

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log that cannot be written (a full disk) is dropped: by default the subscriber reports
    // that with `eprint!`, which panics when standard error is the full disk, and takes the
    // request that logged with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn migrate(url: &str) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    // Migrations touch no secret, so any key opens the store for them.
    let store = Store::open(url, Sealer::new(&Sealer::generate_key())?)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("migration failed")?;
    println!("migrations applied");
    store.close().await;
    Ok(())
}

/// Where the generated master key is kept: beside the SQLite file, or in ./posthorn-data.
fn key_file(database: &str) -> PathBuf {
    let dir = sqlite_path(database)
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("posthorn-data"));
    dir.join("master.key")
}

/// A master key generated at this start, written to its file only once the database has
/// accepted it ([`PendingKey::keep`]): a start refused (a database sealed with another key, a
/// port taken) leaves no key file behind.
struct PendingKey {
    path: PathBuf,
    key: String,
}

impl PendingKey {
    fn keep(self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        write_private(&self.path, &self.key)
    }
}

/// The master key: given, or read from the key file; `generate`: made when there is none (and
/// returned to be kept once the database accepts it).
fn master_key(
    given: Option<&str>,
    database: &str,
    generate: bool,
) -> anyhow::Result<(Sealer, Option<PendingKey>)> {
    if let Some(key) = given {
        return Ok((
            Sealer::new(key).map_err(|e| anyhow::anyhow!("--master-key: {e}"))?,
            None,
        ));
    }
    let path = key_file(database);
    match std::fs::read_to_string(&path) {
        Ok(key) => Ok((
            Sealer::new(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !generate => Err(anyhow::anyhow!(
            "no master key: give --master-key, or run where {} is",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if database.starts_with("postgres") {
                tracing::warn!(path = %path.display(), "no master key given: generating one; every process on this database needs the same key (--master-key)");
            }
            let key = Sealer::generate_key();
            let sealer = Sealer::new(&key)?;
            Ok((sealer, Some(PendingKey { path, key })))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates `dir` (and its parents) readable by this user alone, 0700; an existing one is left
/// as it is.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The SQLite database of `database` made ready for this process alone: its folder 0700 when it
/// is made here, the database file (and SQLite's `-wal`/`-shm` beside it, which SQLite creates
/// with the database file's mode) 0600, and an exclusive lock on `<file>.lock`, held as long as
/// the returned file is. A second process on the same file is refused: SQLite is for one
/// process, and two would each deliver what the other leases in memory.
fn claim_sqlite(database: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = sqlite_path(database) else {
        return Ok(None);
    };
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", Path::new(&lock_path).display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another posthorn process is serving {} (it holds {}): SQLite is for one process; \
             stop the other one, or run several processes on PostgreSQL",
            path.display(),
            Path::new(&lock_path).display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e)
                .with_context(|| format!("cannot lock {}", Path::new(&lock_path).display()))
        }
    }
    // The database file first, 0600, so that SQLite's own files beside it take that mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = options.open(path);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            if Path::new(&file).exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot restrict {}", Path::new(&file).display()))?;
            }
        }
    }
    Ok(Some(lock))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn admin_token(config: &Config, store: &Store) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        if token.len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        return Ok(token.clone());
    }
    let (token, generated) = store
        .init_secret_setting(ADMIN_TOKEN, &fresh_admin_token())
        .await?;
    if generated || config.dev {
        println!("admin token: {token}");
    }
    if generated {
        println!(
            "(generated now and kept in the database; `posthorn admin-token` prints it again)"
        );
    }
    Ok(token)
}

const ADMIN_TOKEN: &str = "admin_token";

fn fresh_admin_token() -> String {
    format!("ph_admin_{}", hex(&rand::random::<[u8; 24]>()))
}

/// `posthorn admin-token [--rotate]`: prints the generated admin token, or replaces it.
pub async fn admin_token_command(
    database: &str,
    master: Option<&str>,
    rotate: bool,
) -> anyhow::Result<()> {
    let (sealer, _) = master_key(master, database, false)?;
    let store = Store::open(database, sealer)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("migration failed")?;
    store.check_master_key().await?;
    let token = if rotate {
        let fresh = fresh_admin_token();
        store.set_secret_setting(ADMIN_TOKEN, &fresh).await?;
        fresh
    } else {
        store.secret_setting(ADMIN_TOKEN).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "this database has no generated admin token (its server runs with --admin-token); \
                 `posthorn admin-token --rotate` makes one"
            )
        })?
    };
    // The token alone, so that `export POSTHORN_TOKEN=$(posthorn admin-token)` works.
    println!("{token}");
    store.close().await;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the process's start: one that comes while it
/// is still starting (or between announcing its address and waiting) is kept, and stops it,
/// gracefully, as soon as it has started.
struct StopSignals {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM and SIGINT; Ctrl-C only");
                    None
                }
            };
            Self { signals }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Installs the Prometheus recorder every `metrics::` call in the crates records into, with
/// the buckets of each histogram, and describes the series.
fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    use posthorn_core::metric;
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let rows = [
        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(metric::ATTEMPT_DURATION.into()), &seconds)?
        .set_buckets_for_metric(
            Matcher::Full(metric::HTTP_REQUEST_DURATION.into()),
            &seconds,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric::GROUP_COMMIT_DURATION.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        )?
        .set_buckets_for_metric(Matcher::Full(metric::GROUP_COMMIT_ROWS.into()), &rows)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for &(name, kind, help) in metric::ALL {
        match kind {
            metric::Kind::Counter => describe_counter!(name, help),
            metric::Kind::Gauge => describe_gauge!(name, help),
            metric::Kind::Seconds => describe_histogram!(name, Unit::Seconds, help),
            metric::Kind::Histogram => describe_histogram!(name, help),
        }
    }
    Ok(handle)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let stop_signals = StopSignals::listen();
    let metrics_handle = install_metrics()?;
    // Every task this process cannot do without goes through it: one that ends fails the process.
    let mut supervisor = Supervisor::new();
    let readiness = Readiness::default();
    // Histogram samples wait in the recorder until a scrape or this drains them.
    let upkeep = {
        let handle = metrics_handle.clone();
        supervisor.spawn("metrics upkeep", async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let tally = SubscriptionTally::default();
    // One TLS crypto provider for every library that makes a TLS configuration of its own (the
    // SMTP and broker clients), so none is left to guess between the ones compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // What can refuse a start goes first, before anything is created: the port, then this
    // process's claim on an SQLite file.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let _sqlite_lock = claim_sqlite(&config.database)?;
    let (sealer, generated) = master_key(config.master_key.as_deref(), &config.database, true)?;
    let store = Store::open(&config.database, sealer)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("migration failed")?;
    store.check_master_key().await?;
    if let Some(key) = generated {
        key.keep()?;
    }
    let token = admin_token(&config, &store).await?;

    let mut allowed = config.allow_networks.clone();
    if config.dev {
        allowed.extend(NetworkPolicy::dev_ranges());
    }
    // Templates compile and render in worker processes of this binary, never here.
    let program =
        std::env::current_exe().context("cannot find this program, for template workers")?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let sandbox = Arc::new(TemplateSandbox::new(program, cores.max(2)));
    let policy = NetworkPolicy::new(allowed);
    let proxy = config
        .egress_proxy
        .as_deref()
        .map(|p| Proxy::parse(p, false))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--egress-proxy {e}"))?;
    if let Some(p) = &proxy {
        tracing::info!(proxy = %p.shown(), "HTTP deliveries go through an egress proxy");
    }
    let http = HttpService::new(policy.clone(), sandbox.clone(), config.egress_bind, proxy)
        .context("cannot build the HTTP client")?;
    let email = EmailService::new(config.smtp.as_ref(), sandbox.clone())?;
    let mut services = Registry::new();
    services.register(Arc::new(http));
    services.register(Arc::new(email));
    services.register(Arc::new(AmqpService::new(policy.clone(), sandbox.clone())));
    services.register(Arc::new(NatsService::new(policy, sandbox)));
    services.register(Arc::new(PollService::default()));
    for plugin in &config.services {
        let service = PluginService::new(plugin.clone())?;
        tracing::info!(service = %plugin.name, command = ?plugin.command, "plugin service");
        services.register(Arc::new(service));
    }
    let services = Arc::new(services);
    let cache = SubscriptionCache::load(store.clone(), services.clone()).await?;
    let watcher = supervisor.watch("subscription index", cache.watch(Duration::from_secs(1)));
    let event_types = EventTypeCache::load(store.clone()).await?;
    let types_watcher = supervisor.watch(
        "event type index",
        event_types.watch(Duration::from_secs(1)),
    );
    let writer = SubscriptionWriter::new(store.clone(), cache.clone())
        .with_quota(config.max_subscriptions_per_application);
    let publisher = Publisher::new(store.clone(), cache, event_types.clone());
    let dispatcher = Dispatcher::new(
        store.clone(),
        writer.clone(),
        publisher.clone(),
        DispatchConfig {
            workers: config.workers,
            lease: LEASE,
            grace: GRACE,
            process_id: new_id("proc"),
            disable_after: config.disable_after,
            tally: tally.clone(),
        },
    );

    // Publishes through this process hand their deliveries straight to its dispatcher.
    store.set_handoff(dispatcher.handoff());
    let listener_task = store
        .listen()
        .map(|t| supervisor.watch("database notifications", t));
    let purger = supervisor.spawn(
        "purge",
        purge_loop(store.clone(), config.retention, config.purge_every),
    );
    let tender = supervisor.spawn("queue upkeep", tend_loop(store.clone()));
    let stop = CancellationToken::new();
    let dispatching = supervisor.spawn("dispatcher", dispatcher.clone().run(stop.clone()));
    // Broker sources: messages into events through the same publisher as the API.
    let source_board = SourceBoard::default();
    let consumers: Vec<_> = posthorn_ingest::start(
        &config.sources,
        publisher.clone(),
        source_board.clone(),
        stop.clone(),
    )
    .into_iter()
    .enumerate()
    .map(|(n, consumer)| supervisor.watch(&format!("source {}", n + 1), consumer))
    .collect();
    // The admin token and the signed-out sessions, followed from the database every second: a
    // rotation or a sign-out on any process holds on every one within about a second.
    let admin = AdminAuth::new(&token);
    let admin_follower = supervisor.spawn(
        "admin credentials",
        follow_admin(store.clone(), admin.clone(), config.admin_token.is_none()),
    );
    let state = AppState::new(Shared {
        readiness: readiness.clone(),
        store: store.clone(),
        publisher,
        subscriptions: writer,
        event_types,
        services,
        token_ttl: config.token_ttl,
        sources: posthorn_api::Sources::new({
            let board = source_board.clone();
            move || board.all()
        }),
        admin: admin.clone(),
        metrics: Some(Metrics {
            handle: metrics_handle,
            tally,
            top_subscriptions: config.metrics_top_subscriptions,
            token: config.metrics_token.clone(),
        }),
        ui: posthorn_api::ui::UiConfig {
            frame_ancestors: config.ui_frame_ancestors.clone(),
            public_url: config.public_url.clone(),
        },
    });
    let app = router(
        state,
        &ApiConfig {
            body_limit: config.body_limit,
        },
    );
    let addr = listener.local_addr()?;
    // The address line last (scripts and tests stop reading there), and a stdout that closed
    // never stops the server: `println!` would panic on it.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "dashboard http://{addr}/ui/  ·  API docs http://{addr}/docs"
        );
        let _ = writeln!(out, "posthorn listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, database = %redact(&config.database), workers = config.workers, "started");

    let serving = supervisor.spawn(
        "HTTP server",
        posthorn_api::server::serve(listener, app, stop.clone()),
    );
    let failure = tokio::select! {
        _ = stop_signals.wait() => None,
        ended = supervisor.first_ended() => Some(ended),
    };
    if let Some(ended) = &failure {
        tracing::error!(task = %ended.task, how = %ended.how,
            "a task this process cannot do without has ended; stopping so that it is restarted");
        readiness.fail(format!("{ended}; the process is stopping"));
        // A moment for readiness probes and load balancers to see it before the server goes.
        tokio::time::sleep(FAILED_READY_FOR).await;
    }
    tracing::info!("stopping: no new requests; finishing deliveries in flight");
    stop.cancel();
    let (dispatch_stop, serve_stop) = (dispatching.abort_handle(), serving.abort_handle());
    let finished = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        let _ = dispatching.await;
        let _ = serving.await;
    })
    .await;
    if finished.is_err() {
        tracing::warn!("shutdown took too long; exiting");
        // What did not stop in time may hold a database connection, which closing the store
        // below would wait for.
        dispatch_stop.abort();
        serve_stop.abort();
    }
    for consumer in &consumers {
        consumer.abort();
    }
    watcher.abort();
    purger.abort();
    tender.abort();
    if let Some(t) = listener_task {
        t.abort();
    }
    types_watcher.abort();
    upkeep.abort();
    admin_follower.abort();
    // Closing waits for every connection to come back; the process exits regardless.
    if tokio::time::timeout(STORE_CLOSE_LIMIT, store.close())
        .await
        .is_err()
    {
        tracing::warn!("the database connections did not close in time; exiting");
    }
    tracing::info!("stopped");
    match failure {
        Some(ended) => Err(anyhow::anyhow!(
            "{ended}: stopped, to be restarted (the reason is in the log above)"
        )),
        None => Ok(()),
    }
}

/// Keeps `admin` as the database says, every second: the admin token (unless `--admin-token`
/// fixes it: `follow_token` false) and the sessions signed out. While the database is away, what
/// was read last stays.
async fn follow_admin(store: Store, admin: AdminAuth, follow_token: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if follow_token {
            match store.secret_setting(ADMIN_TOKEN).await {
                Ok(Some(token)) => {
                    if admin.set_token(&token) {
                        tracing::info!("the admin token was rotated; the old one is refused now");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read the admin token; keeping it"),
            }
        }
        match store.revoked_sessions().await {
            Ok(ids) => admin.set_revoked(ids),
            Err(e) => tracing::debug!(error = %e, "cannot read the signed-out sessions"),
        }
    }
}

/// How long a process whose task ended answers `/readyz` with 503 before it stops.
const FAILED_READY_FOR: Duration = Duration::from_secs(2);

/// Deletes what is older than the retention, a small batch at a time so that delivery never
/// waits long on it.
async fn purge_loop(store: Store, retention: Duration, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff = posthorn_core::time::now_ms() - retention.as_millis() as i64;
        let mut purged = 0;
        loop {
            match store.purge(cutoff, 500).await {
                Ok(0) => break,
                Ok(n) => {
                    purged += n;
                    // Let other writers in between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging old events failed; will try again");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(events = purged, "purged events past the retention");
        }
    }
}

/// How often the queue's statistics and dead tuples are looked at (PostgreSQL).
const TEND_EVERY: Duration = Duration::from_secs(30);

/// On PostgreSQL, keeps the planner's statistics of the queue current and its dead tuples in
/// check when autovacuum does not ([`Store::tend_queue`]); says once, at the start, when
/// autovacuum is off. Failures are logged and tried again: delivery goes on without it.
async fn tend_loop(store: Store) {
    match store.autovacuum_off().await {
        Ok(None) => return std::future::pending().await,
        Ok(Some(true)) => tracing::warn!(
            "PostgreSQL's autovacuum is off: Posthorn analyzes and vacuums its queue table itself \
             when it falls behind, but the other tables grow unvacuumed; turn autovacuum on \
             (docs/operating.md)"
        ),
        Ok(Some(false)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read PostgreSQL's autovacuum setting"),
    }
    let mut tick = tokio::time::interval(TEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.tend_queue().await {
            Ok(t) => {
                if let Some(dead) = t.vacuumed {
                    tracing::info!(dead_tuples = dead, "vacuumed the deliveries table");
                } else if let Some(changed) = t.analyzed {
                    tracing::info!(changed_rows = changed, "analyzed the deliveries table");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot analyze or vacuum the deliveries table; will try again");
            }
        }
    }
}

/// The database URL without its password, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

//! The configuration of `posthorn serve`: one typed struct, resolved once from flags, environment
//! variables, the config file and defaults, in that order of precedence, and passed down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8525";
pub const DEFAULT_DATABASE: &str = "sqlite://posthorn-data/posthorn.db";
const DEFAULT_CONFIG_FILE: &str = "posthorn.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Where the database is; shared by `serve` and `migrate`.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Config file (default: ./posthorn.toml when it exists).
    #[arg(long, env = "POSTHORN_CONFIG")]
    pub config: Option<PathBuf>,
    /// sqlite://PATH or postgres://… [default: sqlite://posthorn-data/posthorn.db]
    #[arg(long, env = "POSTHORN_DATABASE_URL")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address to listen on (port 0 picks a free one) [default: 127.0.0.1:8525]
    #[arg(long, env = "POSTHORN_LISTEN")]
    pub listen: Option<String>,
    /// Admin bearer token [default: generated on first start, kept in the database]
    #[arg(long, env = "POSTHORN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Admit a network range as a delivery target (repeatable), e.g. 10.0.0.0/8
    #[arg(
        long = "allow-network",
        env = "POSTHORN_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_network: Vec<IpNet>,
    /// Deliveries attempted at once; attempts wait on the network, not the CPU, so the pool is
    /// large enough that slow endpoints do not use it up [default: 512 per core]
    #[arg(long, env = "POSTHORN_WORKERS")]
    pub workers: Option<usize>,
    /// Key that encrypts secrets at rest: 32 bytes, base64 [default: generated, kept beside the database]
    #[arg(long, env = "POSTHORN_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Development mode: admit loopback and private targets, print the admin token, readable logs
    #[arg(long)]
    pub dev: bool,
    /// Log format [default: json; text with --dev]
    #[arg(long, env = "POSTHORN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Events, deliveries and attempt logs older than this are purged [default: 30]
    #[arg(long, env = "POSTHORN_RETENTION_DAYS")]
    pub retention_days: Option<f64>,
    /// A subscription whose deliveries have all failed for this long is disabled [default: 5]
    #[arg(long, env = "POSTHORN_DISABLE_AFTER_DAYS")]
    pub disable_after_days: Option<f64>,
    /// How often the retention purge runs, in seconds [default: 300]
    #[arg(long, env = "POSTHORN_PURGE_EVERY_S")]
    pub purge_every_s: Option<u64>,
}

/// The config file. Sections of the contract that this version does not act on yet are read (so
/// a complete file is accepted) and reported at start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub admin_token: Option<String>,
    pub allow_networks: Option<Vec<String>>,
    pub workers: Option<usize>,
    pub master_key: Option<String>,
    pub log_format: Option<LogFormat>,
    pub retention_days: Option<f64>,
    pub disable_after_days: Option<f64>,
    pub purge_every_s: Option<u64>,
    pub smtp: Option<toml::Value>,
    pub sources: Option<toml::Value>,
    pub services: Option<toml::Value>,
}

impl FileConfig {
    /// Reads `path`, or `./posthorn.toml` when no path is given and it exists.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid config file", path.display()))
    }
}

/// Everything `serve` runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    pub admin_token: Option<String>,
    pub allow_networks: Vec<IpNet>,
    pub workers: usize,
    pub master_key: Option<String>,
    pub dev: bool,
    pub log_format: LogFormat,
    pub retention: std::time::Duration,
    pub disable_after: std::time::Duration,
    pub purge_every: std::time::Duration,
    /// Sections of the file this version does not act on yet.
    pub ignored_sections: Vec<&'static str>,
}

pub fn database_url(args: &DatabaseArgs, file: &FileConfig) -> String {
    args.database
        .clone()
        .or_else(|| file.database.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = FileConfig::load(args.db.config.as_deref())?;
        let listen = args
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("--listen {listen:?} is not an address like 127.0.0.1:8525")
        })?;
        let allow_networks = if !args.allow_network.is_empty() {
            args.allow_network.clone()
        } else {
            file.allow_networks
                .iter()
                .flatten()
                .map(|s| {
                    s.parse()
                        .with_context(|| format!("allow_networks: {s:?} is not a CIDR"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let workers = args
            .workers
            .or(file.workers)
            .unwrap_or_else(|| 512 * std::thread::available_parallelism().map_or(2, |n| n.get()));
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        let mut ignored_sections = Vec::new();
        for (name, present) in [
            ("smtp", file.smtp.is_some()),
            ("sources", file.sources.is_some()),
            ("services", file.services.is_some()),
        ] {
            if present {
                ignored_sections.push(name);
            }
        }
        let days = |name: &str, v: f64| -> anyhow::Result<std::time::Duration> {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{name} must be a positive number of days");
            }
            Ok(std::time::Duration::from_secs_f64(v * 86_400.0))
        };
        let retention = days(
            "--retention-days",
            args.retention_days.or(file.retention_days).unwrap_or(30.0),
        )?;
        let disable_after = days(
            "--disable-after-days",
            args.disable_after_days
                .or(file.disable_after_days)
                .unwrap_or(5.0),
        )?;
        let purge_every = std::time::Duration::from_secs(
            args.purge_every_s
                .or(file.purge_every_s)
                .unwrap_or(300)
                .max(1),
        );
        Ok(Self {
            retention,
            disable_after,
            purge_every,
            listen,
            database: database_url(&args.db, &file),
            admin_token: args.admin_token.or(file.admin_token),
            allow_networks,
            workers,
            master_key: args.master_key.or(file.master_key),
            dev: args.dev,
            log_format: args.log_format.or(file.log_format).unwrap_or(if args.dev {
                LogFormat::Text
            } else {
                LogFormat::Json
            }),
            ignored_sections,
        })
    }
}

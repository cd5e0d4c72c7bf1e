//! The configuration of `posthorn serve`: one typed struct, resolved once from flags, environment
//! variables, the config file and defaults, in that order of precedence (figment's layers; clap
//! reads each flag's environment variable), and passed down. The file's sections for other
//! crates are typed by the crate that acts on them: `posthorn_dispatch::config` (`[smtp]`,
//! `[[services]]`), `posthorn_ingest::config` (`[[sources.*]]`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use posthorn_dispatch::config::{PluginConfig, SmtpConfig};
use posthorn_ingest::config::SourcesConfig;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8525";
pub const DEFAULT_DATABASE: &str = "sqlite://posthorn-data/posthorn.db";
const DEFAULT_CONFIG_FILE: &str = "posthorn.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
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
    /// Send HTTP deliveries (and OAuth2 token requests) from this local address, for receivers
    /// that admit only known addresses, e.g. 203.0.113.7 [default: the system's choice]
    #[arg(long = "egress-bind", env = "POSTHORN_EGRESS_BIND")]
    pub egress_bind: Option<std::net::IpAddr>,
    /// Send HTTP deliveries (and OAuth2 token requests) through this proxy, unless their
    /// subscription names its own: http://[user:password@]host:port (CONNECT), socks5://… or
    /// socks5h://… [default: none; proxy environment variables are not read]
    #[arg(
        long = "egress-proxy",
        env = "POSTHORN_EGRESS_PROXY",
        hide_env_values = true
    )]
    pub egress_proxy: Option<String>,
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
    /// Largest request body accepted, in bytes; larger ones get 413 [default: 1048576]
    #[arg(long, env = "POSTHORN_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// How long an application's access token lasts, in seconds [default: 3600]
    #[arg(long, env = "POSTHORN_TOKEN_TTL_S")]
    pub token_ttl_s: Option<u64>,
    /// Bearer token that GET /metrics requires [default: none, /metrics is open]
    #[arg(long, env = "POSTHORN_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Subscriptions with a /metrics series of their own, labelled with their ids: those with
    /// the most failed attempts (the rest are summed in one). Subscription ids are tenants'
    /// identifiers, so none is shown unless asked for [default: 0]
    #[arg(long, env = "POSTHORN_METRICS_TOP_SUBSCRIPTIONS")]
    pub metrics_top_subscriptions: Option<usize>,
    /// How many subscriptions one application may have; 0 for no limit (the admin's are never
    /// counted) [default: 1000]
    #[arg(long, env = "POSTHORN_MAX_SUBSCRIPTIONS_PER_APPLICATION")]
    pub max_subscriptions_per_application: Option<usize>,
    /// An origin that may embed the dashboard in a frame (the portal), e.g.
    /// https://platform.example.com (repeatable) [default: none, it cannot be framed]
    #[arg(long, env = "POSTHORN_UI_FRAME_ANCESTORS", value_delimiter = ',')]
    pub ui_frame_ancestors: Vec<String>,
    /// The URL browsers reach this server at, for portal links [default: the request's Host]
    #[arg(long, env = "POSTHORN_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// Every key of the config file, and what flags and environment variables set: figment merges
/// the defaults, the file, then the flags (clap has already put each flag's environment variable
/// under it), and reads the result into this. An unknown key is an error naming it and the file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    pub database: String,
    #[serde(default)]
    pub admin_token: Option<String>,
    /// `--allow-network`; the file may also spell it as the flag does.
    #[serde(default, alias = "allow_network")]
    pub allow_networks: Vec<String>,
    #[serde(default)]
    pub workers: Option<usize>,
    /// `--egress-bind`.
    #[serde(default)]
    pub egress_bind: Option<String>,
    /// `--egress-proxy`.
    #[serde(default)]
    pub egress_proxy: Option<String>,
    #[serde(default)]
    pub master_key: Option<String>,
    #[serde(default)]
    pub dev: bool,
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    pub retention_days: f64,
    pub disable_after_days: f64,
    pub purge_every_s: u64,
    pub body_limit: usize,
    pub token_ttl_s: u64,
    #[serde(default)]
    pub metrics_token: Option<String>,
    pub metrics_top_subscriptions: usize,
    pub max_subscriptions_per_application: usize,
    #[serde(default)]
    pub ui_frame_ancestors: Vec<String>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub services: Vec<PluginConfig>,
}

/// The defaults, as the bottom layer.
#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    database: &'static str,
    retention_days: f64,
    disable_after_days: f64,
    purge_every_s: u64,
    body_limit: usize,
    token_ttl_s: u64,
    metrics_top_subscriptions: usize,
    max_subscriptions_per_application: usize,
}

const DEFAULTS: Defaults = Defaults {
    listen: DEFAULT_LISTEN,
    database: DEFAULT_DATABASE,
    retention_days: 30.0,
    disable_after_days: 5.0,
    purge_every_s: 300,
    body_limit: 1024 * 1024,
    token_ttl_s: 3600,
    metrics_top_subscriptions: 0,
    max_subscriptions_per_application: 1000,
};

/// What flags (or their environment variables) set, as the top layer; absent ones leave the
/// layers below.
#[derive(Serialize, Default)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_networks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress_bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress_proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_key: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dev: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_days: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_after_days: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_every_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ttl_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_top_subscriptions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_subscriptions_per_application: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ui_frame_ancestors: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_url: Option<String>,
}

impl Settings {
    /// Defaults < the config file (`--config`, else `./posthorn.toml` when it exists) < flags
    /// and environment variables.
    fn load(config: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        match config {
            Some(path) => {
                if !path.exists() {
                    bail!(
                        "cannot read the config file {}: it does not exist",
                        path.display()
                    );
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| anyhow::anyhow!("{}", describe(e)))
    }
}

/// Every error figment found, each with its key and where the value came from.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let mut text = match &e.kind {
                // figment's own words nest backticks (``one of `a`, `b` ``) and guess nothing.
                figment::error::Kind::UnknownField(field, expected) => {
                    let mut t = format!("unknown key `{field}`");
                    if let Some(v) = posthorn_core::validation::closest(field, expected) {
                        t.push_str(&format!(": did you mean `{v}`?"));
                    }
                    t
                }
                kind => posthorn_core::validation::plain_types(&kind.to_string()),
            };
            if !e.path.is_empty() {
                text.push_str(&format!(" (key `{}`)", e.path.join(".")));
            }
            if let Some(source) = e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                text.push_str(&format!(" in {source}"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything `serve` runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    pub admin_token: Option<String>,
    pub allow_networks: Vec<IpNet>,
    pub workers: usize,
    /// The local address HTTP deliveries go out from; `None`: the system's choice.
    pub egress_bind: Option<std::net::IpAddr>,
    /// The proxy HTTP deliveries go through (checked: a proxy URL); `None`: none.
    pub egress_proxy: Option<String>,
    pub master_key: Option<String>,
    pub dev: bool,
    pub log_format: LogFormat,
    pub retention: std::time::Duration,
    pub disable_after: std::time::Duration,
    pub purge_every: std::time::Duration,
    pub body_limit: usize,
    pub token_ttl: std::time::Duration,
    pub metrics_token: Option<String>,
    pub metrics_top_subscriptions: usize,
    /// 0: no limit.
    pub max_subscriptions_per_application: usize,
    pub ui_frame_ancestors: Vec<String>,
    pub public_url: Option<String>,
    pub smtp: Option<SmtpConfig>,
    pub sources: SourcesConfig,
    pub services: Vec<PluginConfig>,
}

/// Origins for `frame-ancestors`: `scheme://host[:port]` each (they go into a header as they are).
fn checked_origins(origins: &[String]) -> anyhow::Result<Vec<String>> {
    origins
        .iter()
        .map(|o| {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
            if ok {
                Ok(o.clone())
            } else {
                bail!(
                    "ui_frame_ancestors: {o:?} is not an origin like https://platform.example.com"
                )
            }
        })
        .collect()
}

/// The database URL, for `migrate`: the same layers as `serve`.
pub fn database_url(args: &DatabaseArgs) -> anyhow::Result<String> {
    let overrides = Overrides {
        database: args.database.clone(),
        ..Overrides::default()
    };
    Ok(Settings::load(args.config.as_deref(), overrides)?.database)
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let overrides = Overrides {
            listen: args.listen,
            database: args.db.database.clone(),
            admin_token: args.admin_token,
            allow_networks: (!args.allow_network.is_empty())
                .then(|| args.allow_network.iter().map(ToString::to_string).collect()),
            workers: args.workers,
            egress_bind: args.egress_bind.map(|ip| ip.to_string()),
            egress_proxy: args.egress_proxy,
            master_key: args.master_key,
            dev: args.dev,
            log_format: args.log_format,
            retention_days: args.retention_days,
            disable_after_days: args.disable_after_days,
            purge_every_s: args.purge_every_s,
            body_limit: args.body_limit,
            token_ttl_s: args.token_ttl_s,
            metrics_token: args.metrics_token,
            metrics_top_subscriptions: args.metrics_top_subscriptions,
            max_subscriptions_per_application: args.max_subscriptions_per_application,
            ui_frame_ancestors: (!args.ui_frame_ancestors.is_empty())
                .then_some(args.ui_frame_ancestors),
            public_url: args.public_url,
        };
        let file = Settings::load(args.db.config.as_deref(), overrides)?;
        let listen: SocketAddr = file.listen.parse().with_context(|| {
            format!(
                "listen {:?} is not an address like 127.0.0.1:8525",
                file.listen
            )
        })?;
        let allow_networks = file
            .allow_networks
            .iter()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("allow_networks: {s:?} is not a CIDR"))
            })
            .collect::<anyhow::Result<_>>()?;
        let workers = file
            .workers
            .unwrap_or_else(|| 512 * std::thread::available_parallelism().map_or(2, |n| n.get()));
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        let egress_bind = file
            .egress_bind
            .as_deref()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("egress_bind: {s:?} is not an IP address"))
            })
            .transpose()?;
        if let Some(proxy) = &file.egress_proxy {
            if let Some(fault) = posthorn_wire::http_config::proxy_url_fault(proxy) {
                // Not echoed: it may hold the proxy's password.
                bail!("egress_proxy (--egress-proxy) {fault}");
            }
        }
        let days = |name: &str, v: f64| -> anyhow::Result<std::time::Duration> {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{name} must be a positive number of days");
            }
            Ok(std::time::Duration::from_secs_f64(v * 86_400.0))
        };
        let retention = days("--retention-days", file.retention_days)?;
        let disable_after = days("--disable-after-days", file.disable_after_days)?;
        let purge_every = std::time::Duration::from_secs(file.purge_every_s.max(1));
        if file.body_limit < 1024 {
            bail!("--body-limit must be at least 1024 bytes");
        }
        Ok(Self {
            retention,
            disable_after,
            purge_every,
            body_limit: file.body_limit,
            token_ttl: std::time::Duration::from_secs(file.token_ttl_s.clamp(1, 86_400)),
            listen,
            database: file.database,
            admin_token: file.admin_token,
            allow_networks,
            workers,
            egress_bind,
            egress_proxy: file.egress_proxy,
            master_key: file.master_key,
            dev: file.dev,
            log_format: file.log_format.unwrap_or(if file.dev {
                LogFormat::Text
            } else {
                LogFormat::Json
            }),
            metrics_token: file.metrics_token.filter(|t| !t.is_empty()),
            metrics_top_subscriptions: file.metrics_top_subscriptions.min(1000),
            max_subscriptions_per_application: file.max_subscriptions_per_application,
            ui_frame_ancestors: checked_origins(&file.ui_frame_ancestors)?,
            public_url: file.public_url.filter(|u| !u.is_empty()),
            smtp: file.smtp,
            sources: file.sources,
            services: file.services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posthorn.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let (_dir, path) = write(
            "listen = \"127.0.0.1:9999\"\nretention_days = 7\nallow_network = [\"10.0.0.0/8\"]\n",
        );
        let s = Settings::load(
            Some(&path),
            Overrides {
                retention_days: Some(3.0),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9999");
        assert_eq!(s.retention_days, 3.0);
        assert_eq!(s.allow_networks, ["10.0.0.0/8"]);
        assert_eq!(s.database, DEFAULT_DATABASE);
        assert_eq!(s.purge_every_s, 300);
    }

    #[test]
    fn the_contract_example_is_read_into_typed_sections() {
        // Its sections are commented out with a bare `#` (explanations are `# `): taken in here.
        let text: String = include_str!("../docs/posthorn.example.toml")
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.starts_with(' ') && !rest.is_empty() => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let (_dir, path) = write(&text);
        let s = Settings::load(Some(&path), Overrides::default()).unwrap();
        let smtp = s.smtp.unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("127.0.0.1", 2525));
        assert_eq!(
            s.sources.amqp[0].exchange_type,
            posthorn_ingest::config::ExchangeType::Headers
        );
        assert_eq!(s.sources.nats[0].strip_prefix.as_deref(), Some("events."));
        assert_eq!(s.services[0].command[0], "python3");
        assert_eq!(s.services[0].config_schema["required"][0], "sleep_time");
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_file() {
        let (_dir, path) = write("[smtp]\nhost = \"h\"\nfrom = \"a@b\"\nhots = 1\n");
        let e = Settings::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hots") && e.contains("smtp"), "{e}");
        // figment names the file relative to the working directory when it can.
        let dir = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        assert!(e.contains(&format!("{dir}/posthorn.toml")), "{e}");
        let (_dir, path) = write("listne = \"x\"\n");
        let e = Settings::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key `listne`: did you mean `listen`?") && !e.contains("``"),
            "{e}"
        );
        let (_dir, path) = write("retention_days = \"30\"\n");
        let e = Settings::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a number") && !e.contains("f64"), "{e}");
    }
}

//! The sections of `posthorn.toml` the delivery services act on (section 10 of the contract):
//! `[smtp]` for the `email` service, `[[services]]` for external plugins. The binary reads them
//! with the rest of its configuration (flag > env > file > default) and hands each to its service;
//! an unknown key is an error naming the key and the file, never ignored. The SMTP password is
//! never printed: `Debug` hides it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[smtp]`: the server the `email` service sends through.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The sender of every mail.
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn smtp_port() -> u16 {
    25
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP.
    None,
    /// Plain, upgraded with STARTTLS (refused if the server does not offer it).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// How a plugin's command runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginMode {
    /// A process per attempt: the request on stdin, the verdict its exit status.
    #[default]
    Once,
    /// Processes that live across attempts (up to `max_concurrent`), one request per line of
    /// stdin and one answer per line of stdout: what the plugin loads, it loads once.
    Persistent,
}

/// `[[services]]`: an external plugin, a command run once per attempt or kept running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The `service` value that selects it.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The JSON Schema a subscription's `config` must satisfy.
    #[serde(default = "any_object")]
    pub config_schema: Value,
    #[serde(default = "plugin_timeout")]
    pub timeout_ms: u64,
    /// Most of its attempts running at once, in one process.
    #[serde(default = "plugin_concurrency")]
    pub max_concurrent: u32,
    /// Environment variables set for the command (besides a minimal inherited set).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `once` (the default) or `persistent`.
    #[serde(default)]
    pub mode: PluginMode,
}

fn any_object() -> Value {
    serde_json::json!({"type": "object"})
}

fn plugin_timeout() -> u64 {
    30_000
}

fn plugin_concurrency() -> u32 {
    4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smtp_password_stays_out_of_debug() {
        let smtp = SmtpConfig {
            host: "h".into(),
            port: 25,
            tls: SmtpTls::None,
            from: "a@b".into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_value::<SmtpConfig>(
            serde_json::json!({"host": "h", "from": "a@b", "hots": 1}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hots"), "{e}");
    }
}

//! External plugins: a delivery service in any language, named by a `[[services]]` entry of the
//! config file (`crate::config::PluginConfig`).
//!
//! Each attempt runs the entry's command with `{"config","event","delivery":{"id","attempt"}}` as
//! JSON on its stdin (`event` is the envelope every webhook carries). Its exit status is the
//! verdict: 0 success, 75 (`EX_TEMPFAIL`) retry later, anything else a final failure; its stdout
//! and stderr, [`MAX_OUTPUT`] bytes of each, go to the attempt log. A command that outlives its
//! `timeout_ms` is killed with its whole process group and the attempt is retried.
//!
//! With `mode = "persistent"` the command is kept running across attempts instead, one request
//! per line ([`persistent`]): what it loads (a wazo-webhookd service's `load()`), it loads once.
//!
//! A plugin cannot block the dispatcher: it runs in its own process, awaited without blocking a
//! thread, and at most `max_concurrent` of one plugin's attempts run at once (the others wait
//! for a turn, which their deadline does not count). A subscription's `config` is checked against
//! the entry's `config_schema` when it is written (422 with field paths).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod persistent;

use crate::config::{PluginConfig, PluginMode};
use posthorn_core::service::{Attempt, BoxFuture, Report, Service, Target, Verdict};
use posthorn_core::validation::{Errors, Invalid};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The most of a plugin's stdout, and of its stderr, kept in the attempt log.
pub const MAX_OUTPUT: usize = 16 * 1024;
/// The exit status that asks for a retry (`EX_TEMPFAIL` of sysexits.h).
pub const RETRY_LATER: i32 = 75;

/// A configured plugin.
pub struct PluginService {
    inner: Arc<Inner>,
}

struct Inner {
    config: PluginConfig,
    validator: jsonschema::Validator,
    turns: Semaphore,
    /// The running processes of a persistent plugin.
    pool: persistent::Pool,
}

impl PluginService {
    /// Checks the entry (its command and schema) and prepares it.
    pub fn new(config: PluginConfig) -> Result<Self, super::ConfigError> {
        use super::ConfigError;
        let section = format!("[[services]] {:?}", config.name);
        if config.command.is_empty() || config.command[0].is_empty() {
            return Err(ConfigError::new(section, "command is empty"));
        }
        if config.name.is_empty() || config.name == "http" {
            return Err(ConfigError::new(
                section,
                "a plugin needs a name of its own",
            ));
        }
        let validator = posthorn_store::compile_schema(&config.config_schema)
            .map_err(|e| ConfigError::new(section, format!("config_schema: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                turns: Semaphore::new(config.max_concurrent.max(1) as usize),
                pool: persistent::Pool::default(),
                validator,
                config,
            }),
        })
    }
}

impl Service for PluginService {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn description(&self) -> &str {
        &self.inner.config.description
    }

    fn config_schema(&self) -> &Value {
        &self.inner.config.config_schema
    }

    fn check(&self, config: &Value) -> Result<Arc<dyn Target>, Invalid> {
        let mut errors = Errors::default();
        for (field, message) in posthorn_store::schema_errors(&self.inner.validator, config, "") {
            errors.add(field.trim_start_matches('.'), message);
        }
        errors.finish()?;
        Ok(Arc::new(PluginTarget {
            inner: self.inner.clone(),
            config: config.clone(),
        }))
    }
}

struct PluginTarget {
    inner: Arc<Inner>,
    config: Value,
}

impl std::fmt::Debug for PluginTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginTarget")
            .field("plugin", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

impl Target for PluginTarget {
    fn attempt<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Report> {
        Box::pin(self.run(attempt))
    }
}

/// What a run of the command gave.
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl PluginTarget {
    async fn run(&self, a: Attempt<'_>) -> Report {
        let plugin = &self.inner.config;
        let delivery = json!({"id": a.delivery_id, "attempt": a.number});
        // The log shows the command and what it was given, less the event (the delivery's log
        // shows its event already).
        let request =
            json!({"command": plugin.command, "config": self.config, "delivery": delivery})
                .to_string();
        let event = match a.event.envelope_value() {
            Ok(event) => event,
            Err(why) => {
                return report(
                    Verdict::Final,
                    true,
                    request,
                    None,
                    Some(why.to_string()),
                    Duration::ZERO,
                )
            }
        };
        let input = json!({"config": self.config, "event": event, "delivery": delivery,
            "subscription": {"id": a.subscription_id}});
        let Ok(_turn) = self.inner.turns.acquire().await else {
            return report(
                Verdict::Retry { after_ms: None },
                false,
                request,
                None,
                Some("the plugin is shutting down".into()),
                Duration::ZERO,
            );
        };
        let started = Instant::now();
        if plugin.mode == PluginMode::Persistent {
            let x = self.inner.pool.exchange(plugin, &input.to_string()).await;
            return report(
                x.verdict,
                x.answered,
                request,
                x.response,
                x.error,
                started.elapsed(),
            );
        }
        let run = self.execute(&input.to_string()).await;
        let duration = started.elapsed();
        match run {
            Err(why) => report(
                Verdict::Retry { after_ms: None },
                false,
                request,
                None,
                Some(why),
                duration,
            ),
            Ok(run) => {
                let response = json!({"exit_code": run.status, "stdout": run.stdout,
                    "stderr": run.stderr})
                .to_string();
                let last_line = run.stderr.lines().rev().find(|l| !l.trim().is_empty());
                let (verdict, error) = match (run.timed_out, run.status) {
                    (true, _) => (
                        Verdict::Retry { after_ms: None },
                        Some(format!(
                            "timed out after {} ms; the plugin's process group was killed",
                            plugin.timeout_ms
                        )),
                    ),
                    (false, Some(0)) => (Verdict::Success, None),
                    (false, Some(RETRY_LATER)) => (
                        Verdict::Retry { after_ms: None },
                        Some(format!(
                            "exit status 75: retry later{}",
                            last_line.map(|l| format!(": {l}")).unwrap_or_default()
                        )),
                    ),
                    (false, status) => (
                        Verdict::Final,
                        Some(format!(
                            "{}{}",
                            status.map_or("killed by a signal".to_owned(), |s| format!(
                                "exit status {s}"
                            )),
                            last_line.map(|l| format!(": {l}")).unwrap_or_default()
                        )),
                    ),
                };
                report(
                    verdict,
                    !run.timed_out,
                    request,
                    Some(response),
                    error,
                    duration,
                )
            }
        }
    }

    /// Runs the command with `input` on its stdin, in a process group of its own, killed whole
    /// at the deadline.
    async fn execute(&self, input: &str) -> Result<Run, String> {
        let plugin = &self.inner.config;
        let mut child = command(plugin)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", plugin.command[0]))?;
        let pid = child.id();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the plugin's pipes could not be opened".into());
        };
        let input = input.to_owned();
        // Written beside the reads: a plugin that answers before reading all of its input must
        // not deadlock on a full pipe.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
        let deadline = Duration::from_millis(plugin.timeout_ms.max(1));
        let outcome = tokio::time::timeout(deadline, async {
            let (out, err, status) = tokio::join!(bounded(stdout), bounded(stderr), child.wait());
            (out, err, status)
        })
        .await;
        writer.abort();
        match outcome {
            Ok((stdout, stderr, status)) => Ok(Run {
                status: status.ok().and_then(|s| s.code()),
                stdout,
                stderr,
                timed_out: false,
            }),
            Err(_) => {
                // The command and everything it started.
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill().await;
                Ok(Run {
                    status: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    timed_out: true,
                })
            }
        }
    }
}

/// The plugin's command, in a process group of its own, with a minimal environment and its pipes.
fn command(plugin: &PluginConfig) -> tokio::process::Command {
    let kept: Vec<(&str, String)> = [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "VIRTUAL_ENV",
        "PYTHONPATH",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
    .collect();
    let path = plugin.env.get("PATH").map(String::as_str).or_else(|| {
        kept.iter()
            .find(|(k, _)| *k == "PATH")
            .map(|(_, v)| v.as_str())
    });
    let mut command = tokio::process::Command::new(resolve(&plugin.command[0], path));
    command
        .args(&plugin.command[1..])
        .env_clear()
        .envs(kept)
        .envs(&plugin.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// The program's path, looked up in the `PATH` the plugin is given when it has no `/`.
///
/// The standard library starts a program with `posix_spawn` (a `vfork`: nothing of this
/// process is copied) unless it must search a `PATH` that differs from this process's own, as
/// it does here (the environment is rebuilt); then it falls back to `fork`, which copies the
/// page tables of this whole process for every attempt (measured: 2.2 ms of the server's CPU per
/// run of `sh -c 'cat >/dev/null'`). Looking the program up here keeps every start a spawn. A
/// name found nowhere is left as it is, so that the start fails as it would have.
fn resolve(program: &str, path: Option<&str>) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return program.into();
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| program.into())
}

/// Reads a stream to its end, keeping its first [`MAX_OUTPUT`] bytes.
async fn bounded(mut stream: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn report(
    verdict: Verdict,
    answered: bool,
    request: String,
    response: Option<String>,
    error: Option<String>,
    duration: Duration,
) -> Report {
    Report {
        verdict,
        answered,
        request,
        response,
        error,
        duration,
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn a_bare_program_name_is_looked_up_in_the_plugins_path() {
        let found = resolve("sh", Some("/nonexistent:/usr/bin:/bin"));
        assert!(found.is_absolute(), "{found:?}");
        assert!(found.ends_with("sh"));
        // Not found, or a path already: left as given, so that starting it fails as before.
        assert_eq!(
            resolve("no-such-plugin-program", Some("/usr/bin:/bin")),
            std::path::PathBuf::from("no-such-plugin-program")
        );
        assert_eq!(
            resolve("examples/plugins/sleep.py", Some("/bin")),
            std::path::PathBuf::from("examples/plugins/sleep.py")
        );
        assert_eq!(resolve("sh", None), std::path::PathBuf::from("sh"));
    }
}

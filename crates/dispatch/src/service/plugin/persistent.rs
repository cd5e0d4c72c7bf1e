//! Persistent plugins (`mode = "persistent"`): up to `max_concurrent` processes of the command
//! live across attempts, each answering one request at a time. The request is the same JSON
//! object a `once` plugin reads, on one line of its stdin; the answer is one line of its stdout:
//! `{"outcome": "success" | "retry" | "fail", "error": "…", "output": …, "retry_after_ms": N}`
//! (only `outcome` required). What the process writes to stderr while it works on a request goes
//! to that attempt's log (stderr is read only while a request is out: a process that writes more
//! than a pipe holds, 64 KiB on Linux, while idle waits until its next request).
//!
//! A process that does not answer within `timeout_ms` is killed with its process group, and the
//! attempt retried; one that exits, or answers with a line that is not such an object, is
//! replaced by a new one at the next attempt (the attempt is retried, or failed for a malformed
//! answer, with the reason in its log). A process is started only when an attempt needs one and
//! none is idle, so a plugin that keeps failing to start costs its attempts, not a loop.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::PluginConfig;
use futures_util::FutureExt;
use posthorn_core::service::Verdict;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::{command, MAX_OUTPUT};

/// The longest answer line read; a longer one is a broken plugin.
const MAX_ANSWER: u64 = 1024 * 1024;

/// The idle processes of one plugin.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<Worker>>,
}

/// What one exchange gave, for the attempt's report.
pub(super) struct Exchange {
    pub verdict: Verdict,
    pub answered: bool,
    pub response: Option<String>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    outcome: Outcome,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    retry_after_ms: Option<i64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Success,
    Retry,
    Fail,
}

impl Pool {
    /// Sends `input` to an idle process (or a new one) and reads its answer. The caller holds
    /// one of the plugin's turns, so at most `max_concurrent` processes exist.
    pub(super) async fn exchange(&self, plugin: &PluginConfig, input: &str) -> Exchange {
        let idle = self.take_idle();
        let mut worker = match idle {
            Some(w) => w,
            None => match Worker::spawn(plugin) {
                Ok(w) => w,
                Err(why) => return retry(why, None),
            },
        };
        let deadline = Duration::from_millis(plugin.timeout_ms.max(1));
        match tokio::time::timeout(deadline, worker.ask(input)).await {
            Err(_) => retry(
                format!(
                    "timed out after {} ms; the plugin's process group was killed",
                    plugin.timeout_ms
                ),
                Some(worker.stderr()),
            ),
            Ok(Err(why)) => {
                let status = worker.ended().await;
                let stderr = worker.stderr();
                let last = last_line(&stderr);
                retry(format!("{why}{status}{last}"), Some(stderr))
            }
            Ok(Ok(line)) => {
                let stderr = worker.stderr();
                match serde_json::from_str::<Answer>(&line) {
                    Ok(answer) => {
                        self.idle
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(worker);
                        judged(answer, stderr)
                    }
                    Err(e) => Exchange {
                        verdict: Verdict::Final,
                        answered: true,
                        response: Some(
                            json!({"answer": clip(&line), "stderr": stderr}).to_string(),
                        ),
                        error: Some(format!(
                            "the plugin answered with a line that is not \
                             {{\"outcome\": \"success\"|\"retry\"|\"fail\", …}}: {e}; \
                             its process was replaced"
                        )),
                    },
                }
            }
        }
    }

    /// An idle process that is still running (one that exited while idle is dropped).
    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut w) = idle.pop() {
            match w.child.try_wait() {
                Ok(None) => return Some(w),
                // Replaced at this attempt; said, so that a plugin that keeps dying is seen.
                ended => tracing::warn!(
                    pid = w.pid,
                    status = ?ended.ok().flatten(),
                    "a persistent plugin process ended while idle; starting another"
                ),
            }
        }
        None
    }
}

fn judged(answer: Answer, stderr: String) -> Exchange {
    let response = json!({"outcome": match answer.outcome {
        Outcome::Success => "success", Outcome::Retry => "retry", Outcome::Fail => "fail" },
        "output": answer.output, "stderr": stderr})
    .to_string();
    let (verdict, error) = match answer.outcome {
        Outcome::Success => (Verdict::Success, None),
        Outcome::Retry => (
            Verdict::Retry {
                after_ms: answer.retry_after_ms,
            },
            Some(format!(
                "retry later{}",
                answer.error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
        ),
        Outcome::Fail => (
            Verdict::Final,
            Some(answer.error.unwrap_or_else(|| "failed".into())),
        ),
    };
    Exchange {
        verdict,
        answered: true,
        response: Some(response),
        error,
    }
}

fn retry(why: String, stderr: Option<String>) -> Exchange {
    Exchange {
        verdict: Verdict::Retry { after_ms: None },
        answered: false,
        response: stderr
            .filter(|s| !s.is_empty())
            .map(|s| json!({"stderr": s}).to_string()),
        error: Some(why),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

/// Appends `bytes` to `kept` up to [`MAX_OUTPUT`].
fn keep(kept: &mut String, bytes: &[u8]) {
    if kept.len() < MAX_OUTPUT {
        kept.push_str(&String::from_utf8_lossy(bytes));
    }
}

fn clip(line: &str) -> String {
    let mut end = line.len().min(MAX_OUTPUT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

/// One running process of the plugin.
struct Worker {
    child: Child,
    pid: Option<u32>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: ChildStderr,
    /// Its stderr is at its end.
    stderr_ended: bool,
    /// What it wrote to stderr while on the current request, the first [`MAX_OUTPUT`] bytes.
    kept: String,
}

impl Worker {
    fn spawn(plugin: &PluginConfig) -> Result<Self, String> {
        let mut child = command(plugin)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", plugin.command[0]))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the plugin's pipes could not be opened".into());
        };
        Ok(Self {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout),
            stderr,
            stderr_ended: false,
            kept: String::new(),
        })
    }

    /// Writes the request line and reads the answer line, keeping what comes on stderr
    /// meanwhile (read beside the answer, so that a chatty plugin never blocks on a full pipe).
    async fn ask(&mut self, input: &str) -> Result<String, String> {
        self.kept.clear();
        let gone = |e: std::io::Error| format!("the plugin process stopped reading ({e})");
        self.stdin.write_all(input.as_bytes()).await.map_err(gone)?;
        self.stdin.write_all(b"\n").await.map_err(gone)?;
        self.stdin.flush().await.map_err(gone)?;
        let Self {
            stdout,
            stderr,
            stderr_ended,
            kept,
            ..
        } = self;
        let mut line = Vec::new();
        let mut chunk = [0u8; 4096];
        let read = {
            let mut limited = stdout.take(MAX_ANSWER);
            let reading = limited.read_until(b'\n', &mut line);
            tokio::pin!(reading);
            loop {
                tokio::select! {
                    r = &mut reading => break r,
                    r = stderr.read(&mut chunk), if !*stderr_ended => match r {
                        Ok(0) | Err(_) => *stderr_ended = true,
                        Ok(n) => keep(kept, &chunk[..n]),
                    },
                }
            }
        };
        // What it wrote to stderr before its answer is in the pipe already, and the pipe's
        // readiness known (it was written first): take it without waiting.
        while !*stderr_ended {
            match stderr.read(&mut chunk).now_or_never() {
                Some(Ok(n)) if n > 0 => keep(kept, &chunk[..n]),
                Some(_) => *stderr_ended = true,
                None => break,
            }
        }
        let n = read.map_err(|e| format!("cannot read the plugin's answer: {e}"))?;
        if n == 0 {
            return Err("the plugin process ended without answering".into());
        }
        if line.last() != Some(&b'\n') {
            return Err(format!(
                "the plugin's answer is longer than {MAX_ANSWER} bytes"
            ));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_owned())
    }

    /// How the process ended (killed now if it had not), for the log.
    async fn ended(&mut self) -> String {
        self.kill();
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(s)) => match s.code() {
                Some(code) => format!("; exit status {code}"),
                None => "; killed by a signal".into(),
            },
            _ => String::new(),
        }
    }

    fn stderr(&self) -> String {
        self.kept.clone()
    }

    /// The process and everything it started.
    fn kill(&mut self) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

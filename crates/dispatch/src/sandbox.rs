//! Templates are written by subscribers, who may be hostile: they are compiled and rendered in
//! worker processes, never in the server.
//!
//! A template can ask for a lot: `'a' * 100000000` is one instruction (minijinja's fuel does not
//! see it) and 100 MB; doubling a string in a loop is 2⁴⁰ bytes in forty steps; and minijinja folds
//! constant expressions when it compiles, so even saving such a template allocates. In-process,
//! any of these froze every route or took the whole process down — and a delivery re-leased after a
//! restart took it down again. Here each [`TemplateSandbox`] worker (`posthorn template-worker`, the
//! same binary) runs with a cap on its memory (`RLIMIT_DATA`, [`WORKER_MEMORY`]) and each request
//! with a wall-clock deadline ([`RENDER_DEADLINE`]): a template that exceeds either kills only its
//! worker, which is replaced, and the request fails with the reason — the delivery is `dead`, the
//! subscription write a 422. The server's async threads only wait on a pipe.
//!
//! The protocol is one JSON line each way per request ([`Request`], [`Answer`]); a worker keeps the
//! templates it compiled, by their text, so a subscription's are compiled once per worker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use posthorn_core::shape::Templates;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

/// Most memory a worker may hold (its data segment: heap and private mappings).
pub const WORKER_MEMORY: u64 = 256 * 1024 * 1024;
/// Longest a compile or a render may take, from the request written to the answer read.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(2);
/// The argument that makes the binary a worker.
pub const WORKER_COMMAND: &str = "template-worker";
/// Templates a worker keeps compiled.
const CACHE: usize = 1000;

/// What a worker is asked: compile (`render: None`) or compile and render over `event`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub url: Option<String>,
    pub body: Option<String>,
    /// The event's envelope, when rendering.
    pub event: Option<Value>,
    /// Templates see the event's `data` as `event` (wazo-webhookd's way), not the envelope.
    #[serde(default)]
    pub event_is_data: bool,
}

/// What a worker answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub url: Option<String>,
    pub body: Option<String>,
    /// Why it failed, and for a compile, which template (`url` or `body`).
    pub error: Option<String>,
    pub field: Option<String>,
}

/// A pool of template workers.
pub struct TemplateSandbox {
    program: PathBuf,
    workers: Vec<Mutex<Option<Worker>>>,
    next: AtomicUsize,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl TemplateSandbox {
    /// Workers run `program template-worker` (the server's own binary); `size` of them at most,
    /// started when first needed.
    pub fn new(program: PathBuf, size: usize) -> Self {
        Self {
            program,
            workers: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Compiles the templates: `Err((field, why))` when one does not compile or asks too much.
    pub async fn check(
        &self,
        url: Option<&str>,
        body: Option<&str>,
    ) -> Result<(), (&'static str, String)> {
        let answer = self
            .call(&Request {
                url: url.map(str::to_owned),
                body: body.map(str::to_owned),
                event: None,
                event_is_data: false,
            })
            .await;
        match answer {
            Ok(Answer { error: None, .. }) => Ok(()),
            Ok(Answer {
                error: Some(why),
                field,
                ..
            }) => Err((
                if field.as_deref() == Some("url") {
                    "url"
                } else {
                    "body"
                },
                format!("the template does not parse: {why}"),
            )),
            Err(why) => Err((if body.is_some() { "body" } else { "url" }, why)),
        }
    }

    /// Renders the templates over the event's envelope: `(url, body)`, each when given.
    pub async fn render(
        &self,
        url: Option<&str>,
        body: Option<&str>,
        event: &Value,
        event_is_data: bool,
    ) -> Result<(Option<String>, Option<String>), String> {
        let answer = self
            .call(&Request {
                url: url.map(str::to_owned),
                body: body.map(str::to_owned),
                event: Some(event.clone()),
                event_is_data,
            })
            .await?;
        match answer.error {
            Some(e) => Err(e),
            None => Ok((answer.url, answer.body)),
        }
    }

    async fn call(&self, request: &Request) -> Result<Answer, String> {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        // A free worker if there is one; else wait for the next in turn.
        let mut slot = None;
        for w in &self.workers {
            if let Ok(guard) = w.try_lock() {
                slot = Some(guard);
                break;
            }
        }
        let mut slot = match slot {
            Some(s) => s,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
                self.workers[i].lock().await
            }
        };
        if slot.is_none() {
            *slot = Some(self.spawn()?);
        }
        let Some(worker) = slot.as_mut() else {
            return Err("no template worker".into());
        };
        let exchange = async {
            worker.stdin.write_all(&line).await?;
            worker.stdin.flush().await?;
            let mut answer = String::new();
            let n = worker.stdout.read_line(&mut answer).await?;
            Ok::<_, std::io::Error>((n, answer))
        };
        let outcome = tokio::time::timeout(RENDER_DEADLINE, exchange).await;
        match outcome {
            Ok(Ok((n, answer))) if n > 0 => {
                serde_json::from_str(&answer).map_err(|e| format!("template worker: {e}"))
            }
            Ok(_) => {
                // The worker died: it ran out of the memory it may use (or was killed).
                let mut dead = slot.take();
                if let Some(w) = dead.as_mut() {
                    let _ = w.child.kill().await;
                }
                Err(format!(
                    "the template needed more memory than a render may use ({} MiB)",
                    WORKER_MEMORY / (1024 * 1024)
                ))
            }
            Err(_) => {
                let mut slow = slot.take();
                if let Some(w) = slow.as_mut() {
                    let _ = w.child.kill().await;
                }
                Err(format!(
                    "the template took longer than {} s",
                    RENDER_DEADLINE.as_secs()
                ))
            }
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = tokio::process::Command::new(&self.program)
            .arg(WORKER_COMMAND)
            // mimalloc reserves 1 GiB of address space per arena by default: too much under
            // the worker's cap. (Read by the allocator before `main`.)
            .env("MIMALLOC_ARENA_RESERVE", "16384")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a template worker: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("a template worker has no pipes".into());
        };
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }
}

/// A worker's compiled templates, or why they do not compile (the field and the reason).
type Compiled = Result<Templates, (String, String)>;

/// The worker's side: caps its own memory, then answers requests from stdin until it closes.
/// Runs on the calling thread; returns when stdin ends.
pub fn run_worker() -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    rlimit::setrlimit(rlimit::Resource::DATA, WORKER_MEMORY, WORKER_MEMORY)?;
    let mut compiled: HashMap<(Option<String>, Option<String>), Compiled> = HashMap::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => Answer {
                error: Some(format!("bad request: {e}")),
                ..Answer::default()
            },
            Ok(req) => {
                if compiled.len() >= CACHE {
                    compiled.clear();
                }
                let key = (req.url.clone(), req.body.clone());
                let templates = compiled.entry(key).or_insert_with(|| {
                    Templates::parse(req.url.as_deref(), req.body.as_deref())
                        .map_err(|(field, why)| (field.to_owned(), why))
                });
                answer(templates, req.event.as_ref(), req.event_is_data)
            }
        };
        let mut out = serde_json::to_vec(&answer).unwrap_or_default();
        out.push(b'\n');
        stdout.write_all(&out)?;
        stdout.flush()?;
    }
    Ok(())
}

fn answer(templates: &Compiled, event: Option<&Value>, event_is_data: bool) -> Answer {
    let t = match templates {
        Ok(t) => t,
        Err((field, why)) => {
            return Answer {
                error: Some(why.clone()),
                field: Some(field.clone()),
                ..Answer::default()
            }
        }
    };
    let Some(event) = event else {
        return Answer::default();
    };
    let url = if t.has_url() {
        match t.render_url(event, event_is_data) {
            Ok(u) => Some(u),
            Err(e) => return failed(e.to_string()),
        }
    } else {
        None
    };
    let body = if t.has_body() {
        match t.render_body(event, event_is_data) {
            Ok(b) => Some(b),
            Err(e) => return failed(e.to_string()),
        }
    } else {
        None
    };
    Answer {
        url,
        body,
        ..Answer::default()
    }
}

fn failed(error: String) -> Answer {
    Answer {
        error: Some(error),
        ..Answer::default()
    }
}

//! The receiving end: a minimal HTTP server (axum on hyper) that answers 204 at once, counts
//! requests per path, and can record when each webhook arrived. `/hang…` never answers in time;
//! `/slow…` answers after a second; `/fail…` answers 500 (and is neither counted nor recorded).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};

#[derive(Default)]
struct State {
    counts: Mutex<HashMap<String, u64>>,
    recording: AtomicBool,
    arrivals: Mutex<Vec<(String, String, Instant)>>,
}

#[derive(Clone)]
pub struct Sink {
    base: String,
    state: Arc<State>,
}

impl Sink {
    pub fn start() -> anyhow::Result<Self> {
        let state = Arc::new(State::default());
        let s = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let s = s.clone();
            async move {
                let path = uri.path().to_owned();
                if path.starts_with("/fail") {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                if path.starts_with("/hang") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if s.recording.load(Ordering::Relaxed) {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if let Ok(mut a) = s.arrivals.lock() {
                        a.push((path.clone(), id, Instant::now()));
                    }
                }
                if let Ok(mut c) = s.counts.lock() {
                    *c.entry(path).or_default() += 1;
                }
                StatusCode::NO_CONTENT
            }
        });
        // On its own runtime and threads, as a separate process would be: the load generator's
        // tasks and the sink's never share a worker, for the baseline as for the server.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("sink")
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = axum::serve(listener, app).await;
                        }
                        Err(e) => eprintln!("the sink cannot listen: {e}"),
                    }
                })
            })?;
        Ok(Self { base, state })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn count(&self, path: &str) -> u64 {
        self.state
            .counts
            .lock()
            .map(|c| c.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Waits until `path` got `n` requests, or `limit` passed; returns the count.
    pub async fn wait_count(&self, path: &str, n: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.count(path);
            if c >= n || Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn start_recording(&self) {
        if let Ok(mut a) = self.state.arrivals.lock() {
            a.clear();
        }
        self.state.recording.store(true, Ordering::Relaxed);
    }

    /// `(webhook-id, arrival)` of everything recorded since `start_recording`.
    pub fn take_recording(&self) -> Vec<(String, Instant)> {
        self.state.recording.store(false, Ordering::Relaxed);
        self.state
            .arrivals
            .lock()
            .map(|mut a| a.drain(..).map(|(_, id, at)| (id, at)).collect())
            .unwrap_or_default()
    }

    /// `(path, webhook-id)` of everything recorded so far; recording goes on.
    pub fn recorded_ids(&self) -> Vec<(String, String)> {
        self.state
            .arrivals
            .lock()
            .map(|a| a.iter().map(|(p, id, _)| (p.clone(), id.clone())).collect())
            .unwrap_or_default()
    }

    pub fn take_recording_for(&self, path: &str) -> Vec<(String, Instant)> {
        self.state.recording.store(false, Ordering::Relaxed);
        self.state
            .arrivals
            .lock()
            .map(|mut a| {
                a.drain(..)
                    .filter(|(p, _, _)| p == path)
                    .map(|(_, id, at)| (id, at))
                    .collect()
            })
            .unwrap_or_default()
    }
}

//! Supervision of the tasks `serve` cannot do without: the dispatcher, the HTTP server, the
//! index watchers, the purge, the broker sources. Each is spawned (or watched) through a
//! [`Supervisor`], which hears when one ends — panicked or returned — before the process was
//! asked to stop. `serve` then marks itself unready (`GET /readyz` answers 503 with the reason),
//! stops gracefully and exits non-zero, so that its orchestrator restarts it: a process that
//! answers `/healthz` while one of its loops is dead is the silent failure this prevents.

use std::future::Future;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

/// A task that ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub task: String,
    /// `returned` or `panicked: …`.
    pub how: String,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} task {}", self.task, self.how)
    }
}

pub struct Supervisor {
    tx: mpsc::UnboundedSender<Ended>,
    rx: mpsc::UnboundedReceiver<Ended>,
}

impl Supervisor {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx }
    }

    /// Spawns `fut` as the task `name`, reporting its end.
    pub fn spawn<F>(&self, name: &str, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, name) = (self.tx.clone(), name.to_owned());
        tokio::spawn(async move {
            let run = async {
                tokio::select! {
                    v = fut => v,
                    _ = test_end(&name) => panic!("ended by POSTHORN_TEST_END_TASK"),
                }
            };
            let result = std::panic::AssertUnwindSafe(run).catch_unwind().await;
            let how = match &result {
                Ok(_) => "returned".to_owned(),
                Err(panic) => format!("panicked: {}", panic_text(panic.as_ref())),
            };
            let _ = tx.send(Ended { task: name, how });
            match result {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Watches a task spawned elsewhere (`handle`), reporting its end as the task `name`; the
    /// handle that stops it.
    pub fn watch<T: Send + 'static>(&self, name: &str, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let (tx, name) = (self.tx.clone(), name.to_owned());
        tokio::spawn(async move {
            let how = match handle.await {
                Ok(_) => "returned".to_owned(),
                Err(e) if e.is_cancelled() => return,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => format!("panicked: {}", panic_text(panic.as_ref())),
                    Err(e) => format!("failed: {e}"),
                },
            };
            let _ = tx.send(Ended { task: name, how });
        });
        abort
    }

    /// The first task to end (cancel-safe).
    pub async fn first_ended(&mut self) -> Ended {
        match self.rx.recv().await {
            Some(ended) => ended,
            // The supervisor holds a sender itself: the channel never closes.
            None => std::future::pending().await,
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// In debug builds (the integration tests' binary), `POSTHORN_TEST_END_TASK=NAME` makes the task
/// `NAME` panic half a second after it starts, for the test that proves the process then fails
/// `/readyz` and exits non-zero. Release builds have no such hook: it never ends.
async fn test_end(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("POSTHORN_TEST_END_TASK").as_deref() == Ok(name) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return;
    }
    let _ = name;
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_task_is_named_with_how_it_ended() {
        let mut s = Supervisor::new();
        let _quiet = s.spawn("forever", std::future::pending::<()>());
        let _panics = s.spawn("purge", async { panic!("a bug") });
        let ended = s.first_ended().await;
        assert_eq!(ended.to_string(), "the purge task panicked: a bug");
        let watched = tokio::spawn(async {});
        let _ = s.watch("source 1", watched);
        assert_eq!(
            s.first_ended().await.to_string(),
            "the source 1 task returned"
        );
    }
}

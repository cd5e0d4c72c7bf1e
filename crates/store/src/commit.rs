//! The group-commit engine: every publish and every settle batch goes to a [`Committer`], whose
//! tasks take every job waiting when they are free and write them all in one transaction. While
//! a commit is being flushed to disk, new jobs queue, and the next commit carries all of them:
//! durability costs one flush per group, not one per request, and each caller is answered only
//! after its group is committed.
//!
//! The outcomes of attempts ([`Store::settle`]) are written in the same transaction as the
//! publishes waiting beside them: SQLite has one writer, so separate transactions would only
//! take turns on it, each with its own flush; on PostgreSQL a separate transaction costs a second
//! flush and two more round trips. What a group writes is the inserts' and the settles' business
//! (`events::insert_events`, `queue::settle_in`); this module decides what goes together, on
//! which connection, and answers the callers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use posthorn_core::time::now_ms;
use posthorn_core::time::Millis;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};

use crate::Claimed;
use tokio::sync::{mpsc, oneshot};

use crate::events::{insert_events, HandoffCell, NewEvent, Published, EVENT_PARAMS};
use crate::queue::settle_in;
use crate::Handoff;
use crate::{AttemptRecord, Backend, Result, Store, StoreError};

/// PostgreSQL takes several transactions at once: up to this many groups commit side by side,
/// each on a connection of its own. (SQLite has one writer: one committer.)
const PG_COMMITTERS: usize = 4;

/// Most events one transaction carries; a larger backlog waits for the next one.
const GROUP_LIMIT: usize = 4000;

enum Job {
    Publish {
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<Vec<Published>, Arc<StoreError>>>,
    },
    /// The outcomes of attempts, written in the same transaction as the publishes waiting beside
    /// them: one commit (one WAL flush) for both, where two transactions would take turns on
    /// SQLite's one writer, and on PostgreSQL cost a second flush and two more round trips.
    Settle {
        owner: String,
        records: Arc<[AttemptRecord]>,
        reply: oneshot::Sender<Result<usize, Arc<StoreError>>>,
    },
}

impl Job {
    /// Rows it writes, about.
    fn size(&self) -> usize {
        match self {
            Job::Publish { events, .. } => events.len(),
            Job::Settle { records, .. } => records.len(),
        }
    }

    fn fail(self, e: Arc<StoreError>) {
        match self {
            Job::Publish { reply, .. } => drop(reply.send(Err(e))),
            Job::Settle { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
    pub(crate) handoff: HandoffCell,
    queue: Arc<Jobs>,
}

impl Committer {
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (jobs, rx) = mpsc::channel(4096);
        let handoff = HandoffCell::default();
        let failed = Arc::new(Failures::default());
        let committers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => PG_COMMITTERS,
        };
        let queue = Arc::new(Jobs {
            rx: tokio::sync::Mutex::new(rx),
            committing: AtomicUsize::new(0),
            ended: tokio::sync::Notify::new(),
            idle: std::sync::Mutex::new(
                (0..committers).map(|_| Held::new(failed.clone())).collect(),
            ),
            failed,
            closed: AtomicBool::new(false),
        });
        for _ in 0..committers {
            tokio::spawn(run(pool.clone(), backend, queue.clone(), handoff.clone()));
        }
        Self {
            jobs,
            handoff,
            queue,
        }
    }

    /// Hands the connections the committers keep back to the pool, and has a committer hand its
    /// own back when its group ends, so that closing the pool (which waits for every connection)
    /// ends. A group after this takes a connection from the pool, which fails once it is closed.
    pub(crate) fn close(&self) {
        let held = {
            // Under the lock a committer puts its connection back with: none is put back after.
            let mut idle = self.queue.idle();
            self.queue.closed.store(true, Ordering::Release);
            std::mem::take(&mut *idle)
        };
        drop(held);
    }

    /// Writes attempt outcomes with the next group; returns how many were written.
    /// Stores events and their deliveries atomically; returns when they are durable, in order.
    pub(crate) async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<Published>> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::ShuttingDown;
        self.jobs
            .send(Job::Publish { events, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(StoreError::Group)
    }

    pub(crate) async fn settle(&self, owner: &str, records: Arc<[AttemptRecord]>) -> Result<usize> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::ShuttingDown;
        self.jobs
            .send(Job::Settle {
                owner: owner.to_owned(),
                records,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(StoreError::Group)
    }
}

/// The committers' queue of jobs, and how many groups are being committed.
struct Jobs {
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    committing: AtomicUsize,
    /// Signalled when a group's commit ends.
    ended: tokio::sync::Notify,
    /// The committers' connections not in use, the last used on top: one group at a time keeps
    /// using the same connection (the same PostgreSQL backend, its caches warm).
    idle: std::sync::Mutex<Vec<Held>>,
    /// The groups that failed, by any committer (see [`Held`]).
    failed: Arc<Failures>,
    /// The store is closing: connections go back to the pool, not to `idle` (set and read under
    /// `idle`'s lock).
    closed: AtomicBool,
}

/// A group this large commits beside another; a smaller one waits for the others to end,
/// gathering what arrives meanwhile (many small transactions cost more than one large one).
const BESIDE_MIN: usize = 256;

impl Jobs {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next group: what is waiting, up to [`GROUP_LIMIT`] rows; while another group commits,
    /// also what arrives until it ends or the group reaches [`BESIDE_MIN`]. The group counts as
    /// committing from then on (the caller ends it with `group_ended`). `None` once the store is
    /// dropped.
    async fn next_group(&self) -> Option<(Vec<Job>, usize)> {
        let mut rx = self.rx.lock().await;
        let first = rx.recv().await?;
        let mut count = first.size();
        let mut jobs = vec![first];
        loop {
            while count < GROUP_LIMIT {
                match rx.try_recv() {
                    Ok(job) => {
                        count += job.size();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            if count >= BESIDE_MIN.min(GROUP_LIMIT) {
                break;
            }
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.committing.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        count += job.size();
                        jobs.push(job);
                    }
                    None => break,
                },
                _ = ended => {}
            }
        }
        // Counted before the queue is let go, so the next group sees this one.
        self.committing.fetch_add(1, Ordering::AcqRel);
        Some((jobs, count))
    }

    /// A group's commit ended: the next, if it waits for that, may go.
    fn group_ended(&self) {
        self.committing.fetch_sub(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
}

/// Takes a group and commits it, until the store is dropped. On PostgreSQL several of these take
/// turns at the queue: while one group commits, the next is gathered, and a large one (a batch)
/// is written beside it.
async fn run(pool: AnyPool, backend: Backend, queue: Arc<Jobs>, handoff: HandoffCell) {
    while let Some((jobs, count)) = queue.next_group().await {
        // As many as committers: one is free for this one.
        let mut held = queue
            .idle()
            .pop()
            .unwrap_or_else(|| Held::new(queue.failed.clone()));
        let handoff = handoff.get().map(|h| &**h);
        let started = Instant::now();
        let result = commit(&pool, &mut held, backend, &jobs, handoff).await;
        metrics::histogram!(posthorn_core::metric::GROUP_COMMIT_DURATION)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(posthorn_core::metric::GROUP_COMMIT_ROWS).record(count as f64);
        if result.is_err() {
            // Back to the pool (which tests it before handing it out again); the other
            // committers test theirs before their next group.
            held.drop_connection();
        }
        {
            let mut idle = queue.idle();
            if !queue.closed.load(Ordering::Acquire) {
                idle.push(held);
            }
        }
        queue.group_ended();
        match result {
            Ok((published, settled)) => {
                let (mut published, mut settled) = (published.into_iter(), settled.into_iter());
                for job in jobs {
                    match job {
                        Job::Publish { events, reply } => {
                            let mine = published.by_ref().take(events.len()).collect();
                            let _ = reply.send(Ok(mine));
                        }
                        Job::Settle { reply, .. } => {
                            let _ = reply.send(Ok(settled.next().unwrap_or_default()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rows = count, "writing a group failed");
                let e = Arc::new(e);
                for job in jobs {
                    job.fail(e.clone());
                }
            }
        }
    }
}

/// A connection the committers keep between groups on PostgreSQL: taking one from the pool
/// tests it first, a round trip per group. It is tested only after it sat idle or after a group
/// failed on any committer (a server restart while they were busy fails one group, answered 503,
/// and the next groups test their connections or take fresh ones); SQLite's one write connection
/// is shared with every other writer, and taken from the pool untested.
struct Held {
    conn: Option<PoolConnection<Any>>,
    used: Option<Instant>,
    /// Groups failed so far, by any committer, and how many of them this one has seen: a failure
    /// elsewhere (most often the server dropping every connection) gets this one tested too.
    failed: Arc<Failures>,
    seen: u64,
}

/// Idle longer than this, the held connection is tested before a group.
const HELD_IDLE: Duration = Duration::from_secs(1);

/// For this long after a group failed, a committer that needs a new connection waits at most
/// [`RECONNECT_WAIT`] for it, not the pool's 10 s: while PostgreSQL is away, publishes are
/// refused (503, `Retry-After`) at once instead of each after 10 s; once it is back, a connection
/// takes milliseconds. Each failure starts the window again; a connection made ends it.
const AFTER_FAILURE: Duration = Duration::from_secs(60);
const RECONNECT_WAIT: Duration = Duration::from_secs(2);

/// The groups that failed, shared by the committers.
#[derive(Default)]
struct Failures {
    /// How many, so far.
    count: AtomicU64,
    /// When the last one failed, until a connection is made again.
    last: std::sync::Mutex<Option<Instant>>,
}

impl Failures {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A group failed within [`AFTER_FAILURE`], and no connection was made since.
    fn recent(&self) -> bool {
        self.last().is_some_and(|t| t.elapsed() < AFTER_FAILURE)
    }
}

impl Held {
    fn new(failed: Arc<Failures>) -> Self {
        let seen = failed.count.load(Ordering::Relaxed);
        Self {
            conn: None,
            used: None,
            failed,
            seen,
        }
    }

    fn drop_connection(&mut self) {
        // Closed, not handed back: whatever state the failure left it in goes with it.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
        self.conn = None;
        self.used = None;
        self.seen = self.failed.count.fetch_add(1, Ordering::Relaxed) + 1;
        *self.failed.last() = Some(Instant::now());
    }

    /// The PostgreSQL connection for the group, tested if it sat idle or a group failed since.
    async fn conn(&mut self, pool: &AnyPool) -> Result<&mut AnyConnection> {
        let failed = self.failed.count.load(Ordering::Relaxed);
        let suspect = self.used.is_none_or(|t| t.elapsed() > HELD_IDLE) || failed != self.seen;
        self.seen = failed;
        if let Some(conn) = self.conn.as_mut() {
            if suspect && conn.ping().await.is_err() {
                self.conn = None;
            }
        }
        self.used = Some(Instant::now());
        let conn = match &mut self.conn {
            Some(conn) => conn,
            none if self.failed.recent() => {
                let conn = tokio::time::timeout(RECONNECT_WAIT, pool.acquire())
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut))?;
                *self.failed.last() = None;
                none.insert(conn)
            }
            none => none.insert(pool.acquire().await?),
        };
        Ok(&mut **conn)
    }
}

/// The group's transaction on `conn`: its events, its settles, the notice of due work.
async fn write_group(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[&NewEvent],
    jobs: &[Job],
    now: Millis,
    handoff: Option<&dyn Handoff>,
) -> Result<(Vec<Published>, Vec<usize>, Vec<Claimed>, bool)> {
    let mut tx = conn.begin().await?;
    let (published, handed, queued) = insert_events(&mut tx, backend, events, now, handoff).await?;
    let mut settled = Vec::new();
    for job in jobs {
        if let Job::Settle { owner, records, .. } = job {
            settled.push(settle_in(&mut tx, backend, owner, records, now).await?);
        }
    }
    if queued {
        // Delivered to listeners when the transaction commits.
        Store::notify_due(backend, &mut *tx).await?;
    }
    let writes_events = !events.is_empty();
    let ids = || {
        events
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if writes_events {
        crate::crash::at(crate::crash::Point::BeforeCommit, ids);
    }
    tx.commit().await?;
    if writes_events {
        crate::crash::at(crate::crash::Point::AfterCommit, ids);
    }
    Ok((published, settled, handed, queued))
}

/// Writes a group: the answers to its publishes, every event of the group in order, and how many
/// records each of its settles wrote.
async fn commit(
    pool: &AnyPool,
    held: &mut Held,
    backend: Backend,
    jobs: &[Job],
    handoff: Option<&dyn Handoff>,
) -> Result<(Vec<Published>, Vec<usize>)> {
    let now = now_ms();
    let events: Vec<&NewEvent> = jobs
        .iter()
        .flat_map(|j| match j {
            Job::Publish { events, .. } => events.as_slice(),
            Job::Settle { .. } => &[],
        })
        .collect();
    if backend == Backend::Postgres
        && jobs.iter().all(|j| matches!(j, Job::Publish { .. }))
        && backend
            .statement_chunks(&events, EVENT_PARAMS)
            .nth(1)
            .is_none()
        && events.iter().all(|e| e.subscriptions.is_empty())
    {
        // One INSERT and nothing else: a statement is a transaction of its own, so `BEGIN` and
        // `COMMIT` would only be two more round trips.
        let conn = held.conn(pool).await?;
        let (published, _, _) = insert_events(conn, backend, &events, now, handoff).await?;
        return Ok((published, Vec::new()));
    }
    let written = match backend {
        Backend::Sqlite => {
            let mut conn = pool.acquire().await?;
            let written = write_group(&mut conn, backend, &events, jobs, now, handoff).await;
            if written.is_err() {
                // A failed write can leave the connection believing it is inside a transaction
                // that SQLite already rolled back (a full disk does): the next group would then
                // "commit" a savepoint of nothing and answer 202 for events never stored. A
                // fresh connection starts clean.
                conn.close_on_drop();
            }
            written?
        }
        Backend::Postgres => {
            let conn = held.conn(pool).await?;
            write_group(conn, backend, &events, jobs, now, handoff).await?
        }
    };
    let (published, settled, handed, queued) = written;
    if let Some(h) = handoff {
        if !handed.is_empty() || queued {
            h.take(handed, queued);
        }
    }
    Ok((published, settled))
}

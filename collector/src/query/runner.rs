//! Runs the API's queries: at most `max_concurrency` at once and `max_queued` waiting, each on a
//! thread of its own whose stack is sized for the deepest accepted expression, each answered by its
//! deadline. Knows nothing of PromQL or LogQL: handlers hand it the work as a closure.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{oneshot, Semaphore};

use super::limits::{Budget, Interrupted, QueryLimits};
use super::QueryError;

/// The stack of a query thread. promql-parser, the LogQL parsers, the evaluators and `Drop` of a
/// parsed expression all recurse; within `MAX_DEPTH_CEILING` and `MAX_QUERY_BYTES_CEILING` the
/// deepest recursion measured needs well under this (test `the_deepest_accepted_queries_fit_the_stack`
/// in `query/tests_prop.rs`). Only the pages a query touches are ever backed by memory.
pub const QUERY_STACK_BYTES: usize = 256 << 20;

/// The self-metrics a runner keeps: `lookout_collector_queries_refused_total{reason}` and
/// `lookout_collector_query_duration_seconds`.
#[derive(Clone)]
pub struct QueryMetrics {
    pub refused: Family<Vec<(String, String)>, Counter>,
    pub duration: Histogram,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        let buckets = [0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0];
        QueryMetrics { refused: Family::default(), duration: Histogram::new(buckets) }
    }
}

pub struct QueryRunner {
    limits: QueryLimits,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    metrics: QueryMetrics,
    /// Cancelled when the collector stops: queries still running are stopped and answered 503.
    shutdown: tokio_util::sync::CancellationToken,
    pool: Pool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Query threads kept for the next query, started as they are first needed, never more than
/// `max_concurrency` (the permits bound the jobs at work). Kept rather than started per query: a
/// fresh thread's allocator arena faults in every page a query's buffers touch (a 1 GiB log search
/// holds 175 MB of chunks), which costs a long-lived thread nothing: `lookout bench logstore`'s
/// needle search took 794 ms best with a thread per query, 560 ms with kept threads.
struct Pool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    queue: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Job>>>,
    threads: AtomicUsize,
    max: usize,
}

impl Pool {
    fn new(max: usize) -> Pool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        Pool {
            jobs: std::sync::Mutex::new(tx),
            queue: Arc::new(std::sync::Mutex::new(rx)),
            threads: AtomicUsize::new(0),
            max,
        }
    }

    /// Hands `job` to a query thread. `busy` is how many jobs hold a permit, this one included:
    /// threads are started until there are that many, so no job waits for a thread.
    fn run(&self, job: Job, busy: usize) -> Result<(), QueryError> {
        let want = busy.min(self.max);
        loop {
            let have = self.threads.load(Ordering::Acquire);
            if have >= want {
                break;
            }
            if self.threads.compare_exchange(have, have + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            let queue = self.queue.clone();
            std::thread::Builder::new()
                .name("lookout-query".into())
                .stack_size(QUERY_STACK_BYTES)
                .spawn(move || loop {
                    let next = queue.lock().map(|q| q.recv());
                    match next {
                        Ok(Ok(job)) => job(),
                        // The runner is gone.
                        _ => return,
                    }
                })
                .map_err(|e| {
                    self.threads.fetch_sub(1, Ordering::AcqRel);
                    QueryError::Storage(format!("cannot start a query thread: {e}"))
                })?;
        }
        self.jobs
            .lock()
            .map_err(|_| QueryError::Storage("the query pool is poisoned".into()))?
            .send(job)
            .map_err(|_| QueryError::Storage("no query thread is left".into()))
    }
}

const STOPPING: &str = "the collector is stopping";

/// Cancels the query's budget when the request stops waiting for it (the client went away), so
/// that its thread stops at its next check instead of running to the end for nobody.
struct CancelOnDrop(Arc<Budget>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Counts a waiting query for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QueryRunner {
    pub fn new(limits: QueryLimits, metrics: QueryMetrics, shutdown: tokio_util::sync::CancellationToken) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_concurrency.max(1)));
        let pool = Pool::new(limits.max_concurrency.max(1));
        QueryRunner { limits, permits, waiting: AtomicUsize::new(0), metrics, shutdown, pool }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Counts a query refused by a handler's own check of a limit (the time range of a log query).
    pub fn refused(&self, reason: &str) {
        self.metrics.refused.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc();
    }

    /// Runs `work` on a query thread within the limits and answers by the query's deadline: its
    /// result, or `Interrupted(Timeout)` (the thread is told to stop), or `Busy` when too many
    /// queries wait already. A panic inside `work` is an error for this query alone.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Budget) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let started = Instant::now();
        let result = self.run_inner(work).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        if let Some(reason) = result.as_ref().err().and_then(QueryError::refusal_reason) {
            self.metrics.refused.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc();
        }
        result
    }

    async fn run_inner<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Budget) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let budget = Arc::new(Budget::new(self.limits.timeout, self.limits.max_samples));
        let _cancel = CancelOnDrop(budget.clone());
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.limits.max_queued {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(QueryError::Busy(format!(
                        "too many queries: {} running and {} waiting ([query] max_concurrency, max_queued)",
                        self.limits.max_concurrency, self.limits.max_queued
                    )));
                }
                let _waiting = Waiting(&self.waiting);
                tokio::select! {
                    p = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()) => match p {
                        Ok(Ok(p)) => p,
                        Ok(Err(_)) => return Err(QueryError::Busy(STOPPING.into())),
                        Err(_) => return Err(QueryError::Interrupted(Interrupted::Timeout)),
                    },
                    _ = self.shutdown.cancelled() => return Err(QueryError::Busy(STOPPING.into())),
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        let for_thread = budget.clone();
        let busy = self.limits.max_concurrency.max(1) - self.permits.available_permits();
        self.pool.run(
            Box::new(move || {
                // The permit is held until the work has really ended, also when nobody waits for it
                // any more: the concurrency bound counts threads at work, not requests.
                let _permit = permit;
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(&for_thread))).unwrap_or_else(|_| {
                    Err(QueryError::Execution("the query failed inside the engine; see the collector's log".into()))
                });
                let _ = tx.send(result);
            }),
            busy,
        )?;
        tokio::select! {
            answer = tokio::time::timeout_at(deadline, rx) => match answer {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(QueryError::Execution("the query thread ended without an answer".into())),
                Err(_) => {
                    budget.cancel();
                    Err(QueryError::Interrupted(Interrupted::Timeout))
                }
            },
            _ = self.shutdown.cancelled() => {
                budget.cancel();
                Err(QueryError::Busy(STOPPING.into()))
            }
        }
    }
}

/// Runs `f` at once on a thread with the query stack and waits for it: for the queries that
/// decisions make on their own schedule (gate checks, autoscale targets) and for checking the
/// PromQL of a request or a config, none of which go through a runner's queue.
pub fn on_query_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("lookout-query".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn_scoped(scope, f)
            .expect("a query thread starts (only a system out of threads or memory refuses one)");
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runner(limits: QueryLimits) -> QueryRunner {
        QueryRunner::new(limits, QueryMetrics::default(), Default::default())
    }

    #[tokio::test]
    async fn a_query_past_its_timeout_is_answered_and_told_to_stop() {
        let r = runner(QueryLimits { timeout: Duration::from_millis(200), ..Default::default() });
        let (tx, rx) = std::sync::mpsc::channel();
        let started = Instant::now();
        let result = r
            .run(move |b| {
                // Spins until the budget says stop, as the evaluation loops do.
                while b.spent().is_none() {
                    std::hint::spin_loop();
                }
                let _ = tx.send(b.spent());
                b.check()
            })
            .await;
        assert!(matches!(result, Err(QueryError::Interrupted(Interrupted::Timeout))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let seen = rx.recv_timeout(Duration::from_secs(5)).expect("the query thread stops");
        assert!(matches!(seen, Some(Interrupted::Timeout | Interrupted::Cancelled)), "{seen:?}");
    }

    #[tokio::test]
    async fn past_the_queue_bound_queries_are_refused_at_once() {
        let r = Arc::new(runner(QueryLimits { max_concurrency: 1, max_queued: 1, ..Default::default() }));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(std::sync::Mutex::new(held));
        let hold = |r: Arc<QueryRunner>, held: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>| async move {
            r.run(move |_| {
                let _ = held.lock().expect("lock").recv_timeout(Duration::from_secs(10));
                Ok(())
            })
            .await
        };
        let first = tokio::spawn(hold(r.clone(), held.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = tokio::spawn(hold(r.clone(), held.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = r.run(|_| Ok(())).await;
        assert!(matches!(third, Err(QueryError::Busy(_))), "{third:?}");
        release.send(()).expect("first holds");
        release.send(()).expect("second holds");
        assert!(first.await.expect("joins").is_ok());
        assert!(second.await.expect("joins").is_ok());
        assert!(r.run(|_| Ok(())).await.is_ok());
    }

    #[tokio::test]
    async fn a_panic_is_one_query_s_error() {
        let r = runner(QueryLimits::default());
        let result: Result<(), _> = r.run(|_| panic!("boom")).await;
        assert!(matches!(result, Err(QueryError::Execution(_))));
        assert!(r.run(|_| Ok(1)).await.is_ok());
    }
}

//! The shells around the decision rules: each reads what a rule needs as of `now` (less
//! `SETTLE_MS` where it reads the store), calls it, records the decisions and acts on them. All IO
//! of deciding lives here: `every_second` is the one ticker, `Recorder` the one way to record.

pub mod gate;
pub mod restart;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;

use crate::model::decision::{Decision, Kind, Outcome};
use crate::store::Store;

/// `lookout_collector_decisions_total{kind, outcome}`.
pub type DecisionCounter = Family<Vec<(String, String)>, Counter>;

/// Records decisions: counts them (once settled), logs a line, marks them for Grafana's
/// annotations, writes them to the decision log; and settles them later.
#[derive(Clone)]
pub struct Recorder {
    store: Arc<Store>,
    total: DecisionCounter,
}

impl Recorder {
    pub fn new(store: Arc<Store>, total: DecisionCounter) -> Self {
        Recorder { store, total }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The decision's id in the log, or `None` when it could not be written (the caller does not
    /// act on a decision it could not record).
    pub fn record(&self, d: &Decision) -> Option<i64> {
        let (_, container, _) = d.columns();
        tracing::info!(kind = %d.kind, service = %d.service, container = %container, outcome = %d.outcome, reason = %d.reason, "decision");
        if d.outcome != Outcome::Pending {
            self.count(d.kind, d.outcome);
        }
        self.store.mark_decision(d);
        match self.store.record_decision(d) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, kind = %d.kind, "cannot record a decision; not acting on it");
                None
            }
        }
    }

    /// A pending decision's outcome, once known.
    pub fn settle(&self, id: i64, kind: Kind, outcome: Outcome, detail: &str, now: i64) {
        self.count(kind, outcome);
        if let Err(e) = self.store.settle_decision(id, outcome, detail, now) {
            tracing::error!(error = %e, kind = %kind, "cannot record a decision's outcome");
        }
    }

    fn count(&self, kind: Kind, outcome: Outcome) {
        self.total
            .get_or_create(&vec![("kind".into(), kind.as_str().into()), ("outcome".into(), outcome.as_str().into())])
            .inc();
    }
}

/// Calls `look(shell, now - lag_ms)` on a blocking thread every second (and at once when `wake`
/// fires) until `shutdown`, then hands what it returned to `then`.
pub async fn every_second<S, R>(
    what: &'static str,
    shell: Arc<S>,
    shutdown: CancellationToken,
    wake: Option<fn(&S) -> &tokio::sync::Notify>,
    lag_ms: i64,
    look: fn(&S, i64) -> R,
    mut then: impl FnMut(R),
) where
    S: Send + Sync + 'static,
    R: Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = async {
            match wake {
                Some(w) => w(&shell).notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = woken => {}
        }
        let me = shell.clone();
        match tokio::task::spawn_blocking(move || look(&me, crate::clock::now_ms() - lag_ms)).await {
            Ok(r) => then(r),
            Err(e) => tracing::error!(error = %e, "{what} failed"),
        }
    }
}

//! The query languages: `promql` (Prometheus's, over the `Queryable` the store implements) and
//! `logql` (Loki's, over `LogQueryable`), with what they share: the `[query]` limits checked before
//! any parser, the budget every evaluation consults, the query threads, and the errors.

pub mod limits;
pub mod logql;
pub mod promql;
pub mod runner;

pub use limits::{Budget, Interrupted, QueryLimits};

/// Prometheus's words for a query that would load more samples than `max_samples`.
pub(crate) const TOO_MANY_SAMPLES: &str = "query processing would load too many samples into memory in query execution";

/// Why a query failed; the API maps each kind to Prometheus's HTTP status and error type.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// HTTP 400 bad_data: the query does not parse.
    #[error("{0}")]
    Parse(String),
    /// HTTP 400 bad_data: the request's parameters are wrong (step, resolution, expression type).
    #[error("{0}")]
    BadData(String),
    /// HTTP 422 execution: valid PromQL that this engine does not implement; the message names it.
    #[error("{0}")]
    Unsupported(String),
    /// HTTP 422 execution: evaluation failed as it does in Prometheus (e.g. duplicate series).
    #[error("{0}")]
    Execution(String),
    /// HTTP 500/503: the store failed.
    #[error("{0}")]
    Storage(String),
    /// HTTP 400 bad_data: the query is over one of the `[query]` limits (`reason` labels
    /// `lookout_collector_queries_refused_total`).
    #[error("{message}")]
    Limit { reason: &'static str, message: String },
    /// Stopped before its end: timed out (503), its client left, or it loaded too many samples (422).
    #[error("{}", match .0 {
        Interrupted::Timeout => "query timed out in expression evaluation",
        Interrupted::Cancelled => "query was canceled",
        Interrupted::TooManySamples => TOO_MANY_SAMPLES,
    })]
    Interrupted(Interrupted),
    /// HTTP 503 unavailable: too many queries are waiting already.
    #[error("{0}")]
    Busy(String),
}

impl QueryError {
    /// The `reason` label of `lookout_collector_queries_refused_total` for a query refused or
    /// stopped by a limit, `None` for every other outcome.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            QueryError::Limit { reason, .. } => Some(reason),
            QueryError::Interrupted(Interrupted::Timeout) => Some("timeout"),
            QueryError::Interrupted(Interrupted::Cancelled) => Some("cancelled"),
            QueryError::Interrupted(Interrupted::TooManySamples) => Some("samples"),
            QueryError::Busy(_) => Some("queue_full"),
            _ => None,
        }
    }
}

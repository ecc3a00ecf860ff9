//! Log lines as agents send them and queries read them: the vocabulary shared by ingest, the
//! store, LogQL and the API. Plain data.

use super::LabelSet;

/// One log line as stored: its time (nanoseconds since the epoch) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time_ns: i64,
    pub line: String,
}

/// Lines of one stream in a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStreamIn {
    pub labels: LabelSet,
    pub lines: Vec<LogLine>,
}

/// One stream's lines as a query sees them, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct LogStreamOut {
    pub labels: LabelSet,
    pub lines: Vec<LogLine>,
}

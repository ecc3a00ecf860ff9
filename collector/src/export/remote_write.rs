//! Remote-write out: the export log's samples as Prometheus remote-write 1.0 requests (protobuf,
//! snappy) for Prometheus, VictoriaMetrics, Mimir and Thanos receive; each series' labels encoded
//! once, after the target's selector and external labels, and kept by series id.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::queue::{Encoder, Outgoing};
use super::TargetConfig;
use crate::ingest::remote_write::{encode_series_labels, RequestWriter};
use crate::model::{LabelSet, Matcher};
use crate::store::export::{ExportData, ExportRow};
use crate::store::{SeriesId, Store};

/// The headers remote-write 1.0 asks for.
pub const HEADERS: [(&str, &str); 2] = [("content-encoding", "snappy"), ("x-prometheus-remote-write-version", "0.1.0")];
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// A series as the target gets it: its labels encoded as `TimeSeries` fields, and in text for the log.
type Encoded = Arc<(Vec<u8>, String)>;

pub struct RemoteWriteEncoder {
    /// A series is sent when any selector matches it (all when there is none).
    selectors: Vec<Vec<Matcher>>,
    external: Vec<(String, String)>,
    max_per_send: usize,
    /// Per series id: its encoded labels and its text form, or `None` when the selector leaves it out.
    series: FxHashMap<SeriesId, Option<Encoded>>,
}

impl RemoteWriteEncoder {
    pub fn new(t: &TargetConfig) -> Result<Self, String> {
        let selectors = t.selectors.iter().map(|s| super::series_selector(s)).collect::<Result<Vec<_>, _>>()?;
        let external = t.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(RemoteWriteEncoder { selectors, external, max_per_send: t.queue.max_per_send, series: Default::default() })
    }

    fn labels(&mut self, store: &Store, id: SeriesId) -> Option<Encoded> {
        if let Some(known) = self.series.get(&id) {
            return known.clone();
        }
        let entry = store.series_labels(id).and_then(|labels| {
            if !self.selectors.is_empty() && !self.selectors.iter().any(|m| m.iter().all(|m| m.matches_labels(&labels)))
            {
                return None;
            }
            let mut labels: LabelSet = labels;
            for (k, v) in &self.external {
                if labels.get(k).is_none() {
                    labels.set(k, v);
                }
            }
            Some(Arc::new((encode_series_labels(&labels), labels.to_string())))
        });
        self.series.insert(id, entry.clone());
        entry
    }
}

impl Encoder for RemoteWriteEncoder {
    fn encode(&mut self, store: &Store, rows: &[ExportRow], shards: usize) -> (Vec<Vec<Outgoing>>, u64) {
        let total: usize = rows
            .iter()
            .map(|r| match &r.data {
                ExportData::Samples(s) => s.iter().map(|(_, s)| s.ts.len()).sum(),
                ExportData::Logs(_) => 0,
            })
            .sum();
        // As many shards as there are full requests, up to the limit.
        let n = total.div_ceil(self.max_per_send).clamp(1, shards.max(1));
        let mut writers: Vec<(RequestWriter, Option<String>)> = (0..n).map(|_| Default::default()).collect();
        let mut out: Vec<Vec<Outgoing>> = (0..n).map(|_| Vec::new()).collect();
        let mut left_out = 0u64;
        for row in rows {
            let ExportData::Samples(series) = &row.data else { continue };
            for (id, samples) in series {
                let Some(labels) = self.labels(store, *id) else {
                    left_out += samples.ts.len() as u64;
                    continue;
                };
                let shard = (*id as usize).wrapping_mul(0x9E37_79B9) % n;
                let (w, first) = &mut writers[shard];
                first.get_or_insert_with(|| labels.1.clone());
                w.push(&labels.0, &samples.ts, &samples.values);
                if w.samples as usize >= self.max_per_send {
                    let items = w.samples;
                    out[shard].push(Outgoing { body: w.finish(), items, first: first.take().unwrap_or_default() });
                }
            }
        }
        for (shard, (w, first)) in writers.iter_mut().enumerate() {
            if !w.is_empty() {
                let items = w.samples;
                out[shard].push(Outgoing { body: w.finish(), items, first: first.take().unwrap_or_default() });
            }
        }
        (out, left_out)
    }
}

//! Loki push out: the export log's lines as Loki push requests (snappy protobuf or JSON), each
//! stream's lines in commit order within one shard, after the target's stream selector and
//! external labels.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::queue::{Encoder, Outgoing};
use super::TargetConfig;
use crate::ingest::loki_push;
use crate::model::logs::LogLine;
use crate::model::{LabelSet, Matcher};
use crate::store::export::{ExportData, ExportRow};
use crate::store::Store;

/// A request is closed at this many bytes of text, as Promtail's `batchsize` (1 MiB).
const MAX_BYTES_PER_SEND: usize = 1 << 20;

pub struct LokiEncoder {
    selector: Vec<Matcher>,
    external: Vec<(String, String)>,
    max_per_send: usize,
    pub json: bool,
    streams: FxHashMap<u32, Option<Arc<LabelSet>>>,
}

impl LokiEncoder {
    pub fn new(t: &TargetConfig) -> Result<Self, String> {
        // Several selectors would be a union; Loki's own clients take one. The first is used.
        let selector = match t.selectors.first() {
            Some(s) => super::stream_selector(s)?,
            None => Vec::new(),
        };
        let external = t.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(LokiEncoder {
            selector,
            external,
            max_per_send: t.queue.max_per_send,
            json: t.format.as_deref() == Some("json"),
            streams: Default::default(),
        })
    }

    pub fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "application/x-protobuf"
        }
    }

    fn labels(&mut self, store: &Store, id: u32) -> Option<Arc<LabelSet>> {
        if let Some(known) = self.streams.get(&id) {
            return known.clone();
        }
        let entry = store.log_stream_labels(id).and_then(|mut labels| {
            if !self.selector.iter().all(|m| m.matches_labels(&labels)) {
                return None;
            }
            for (k, v) in &self.external {
                if labels.get(k).is_none() {
                    labels.set(k, v);
                }
            }
            Some(Arc::new(labels))
        });
        self.streams.insert(id, entry.clone());
        entry
    }
}

/// One shard's request being filled: streams in first-seen order with their lines.
#[derive(Default)]
struct Pending {
    streams: Vec<(Arc<LabelSet>, Vec<LogLine>)>,
    lines: usize,
    bytes: usize,
}

impl Pending {
    fn take(&mut self, json: bool) -> Outgoing {
        let refs: Vec<(&LabelSet, &[LogLine])> = self.streams.iter().map(|(l, v)| (l.as_ref(), v.as_slice())).collect();
        let out = Outgoing {
            body: loki_push::encode(&refs, json),
            items: self.lines as u64,
            first: self.streams.first().map(|(l, _)| l.to_string()).unwrap_or_default(),
        };
        *self = Pending::default();
        out
    }
}

impl Encoder for LokiEncoder {
    fn encode(&mut self, store: &Store, rows: &[ExportRow], shards: usize) -> (Vec<Vec<Outgoing>>, u64) {
        let total: usize = rows
            .iter()
            .map(|r| match &r.data {
                ExportData::Logs(s) => s.iter().map(|(_, l)| l.len()).sum(),
                ExportData::Samples(_) => 0,
            })
            .sum();
        let n = total.div_ceil(self.max_per_send).clamp(1, shards.max(1));
        let mut pending: Vec<Pending> = (0..n).map(|_| Pending::default()).collect();
        let mut out: Vec<Vec<Outgoing>> = (0..n).map(|_| Vec::new()).collect();
        let mut left_out = 0u64;
        for row in rows {
            let ExportData::Logs(streams) = &row.data else { continue };
            for (id, lines) in streams {
                let Some(labels) = self.labels(store, *id) else {
                    left_out += lines.len() as u64;
                    continue;
                };
                let shard = (*id as usize).wrapping_mul(0x9E37_79B9) % n;
                let p = &mut pending[shard];
                match p.streams.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &labels)) {
                    Some((_, v)) => v.extend(lines.iter().cloned()),
                    None => p.streams.push((labels, lines.clone())),
                }
                p.lines += lines.len();
                p.bytes += lines.iter().map(|l| l.line.len()).sum::<usize>();
                if p.lines >= self.max_per_send || p.bytes >= MAX_BYTES_PER_SEND {
                    out[shard].push(p.take(self.json));
                }
            }
        }
        for (shard, p) in pending.iter_mut().enumerate() {
            if p.lines > 0 {
                out[shard].push(p.take(self.json));
            }
        }
        (out, left_out)
    }
}

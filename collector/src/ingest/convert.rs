//! Wire to domain: a protobuf `Batch` becomes label sets and samples, with invalid series set aside.
//! Wire types stop here.

use lookout_proto::v1::{Batch, Label, LogFlag, SeriesSamples};

use crate::model::logs::LogLine;
use crate::model::logs::LogStreamIn;
use crate::model::{LabelSet, Samples, METRIC_NAME};
use crate::store::SeriesGroup;

pub struct Decoded {
    pub groups: Vec<SeriesGroup>,
    pub logs: Vec<LogStreamIn>,
    /// Where the agent's log reading stands after this batch: (source, opaque state).
    pub log_resume: Vec<(String, Vec<u8>)>,
    pub samples: u64,
    pub invalid_series: u64,
    /// What was wrong with the first invalid series, for the log line.
    pub first_problem: String,
    /// Probe runs for the health board (their samples are in `groups` too).
    pub probes: Vec<crate::health::ProbeReport>,
    /// Container events the collector acts on: stopped or removed containers, probe settings that do not parse.
    pub events: Vec<EventIn>,
    /// Batches the agent gave up before sending: (batches, first_ms, last_ms, reason).
    pub losses: Vec<(u64, i64, i64, String)>,
}

impl Decoded {
    /// The first `host` label of a series, log stream, probe run or event that is not `host`: what
    /// an agent speaking for one host must never send.
    pub fn foreign_host(&self, host: &str) -> Option<String> {
        let other = |v: Option<&str>| v.filter(|v| *v != host).map(str::to_string);
        for g in &self.groups {
            if let Some(h) = other(g.common.get("host")) {
                return Some(h);
            }
            for (own, _) in &g.series {
                if let Some(h) = other(own.iter().find(|(k, _)| k == "host").map(|(_, v)| v.as_str())) {
                    return Some(h);
                }
            }
        }
        let logs = self.logs.iter().filter_map(|s| other(s.labels.get("host")));
        let probes = self.probes.iter().filter_map(|p| other(p.labels.get("host").map(String::as_str)));
        let events = self.events.iter().filter_map(|e| match e {
            EventIn::ConfigProblem { labels, .. } => other(labels.get("host").map(String::as_str)),
            EventIn::Gone { .. } => None,
        });
        logs.chain(probes).chain(events).next()
    }
}

impl Decoded {
    /// The agent's losses as samples of `lookout_agent_lost_batches{host, reason}` at both ends of
    /// the time they covered, so a dashboard can mark the gap (an annotation query on the series).
    pub fn record_losses(&mut self, host: &str) {
        if self.losses.is_empty() {
            return;
        }
        let common = LabelSet::from_pairs([("host", host)]);
        let mut group = SeriesGroup { common, series: Vec::new() };
        for (batches, first, last, reason) in std::mem::take(&mut self.losses) {
            let own = vec![
                (METRIC_NAME.to_string(), "lookout_agent_lost_batches".to_string()),
                ("reason".to_string(), reason),
            ];
            let (ts, values) = if last > first {
                (vec![first, last], vec![batches as f64; 2])
            } else {
                (vec![first], vec![batches as f64])
            };
            self.samples += ts.len() as u64;
            group.series.push((own, Samples { ts, values }));
        }
        self.groups.push(group);
    }
}

#[derive(Clone, Debug)]
pub enum EventIn {
    Gone { container_id: String },
    ConfigProblem { labels: std::collections::BTreeMap<String, String>, message: String },
}

/// The states `lookout_container_health` has a series for.
const STATES: [&str; 3] = ["starting", "healthy", "unhealthy"];

pub fn batch(batch: Batch) -> Decoded {
    let mut out = Decoded {
        groups: Vec::with_capacity(batch.groups.len() + 1),
        logs: Vec::with_capacity(batch.log_streams.len()),
        log_resume: batch.log_resume.into_iter().map(|r| (r.source, r.state)).collect(),
        samples: 0,
        invalid_series: 0,
        first_problem: String::new(),
        probes: Vec::with_capacity(batch.probe_results.len()),
        events: Vec::new(),
        losses: batch.losses.into_iter().map(|l| (l.batches, l.first_ms, l.last_ms, l.reason)).collect(),
    };
    let mut loose = SeriesGroup::default();
    for s in batch.series {
        out.push(&[], &mut loose, s);
    }
    if !loose.series.is_empty() {
        out.groups.push(loose);
    }
    for g in batch.groups {
        // The group's labels are sorted once; each series keeps only its own few.
        let common = LabelSet::from_pairs(g.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let mut group = SeriesGroup { common, series: Vec::with_capacity(g.series.len()) };
        for s in g.series {
            out.push(&g.labels, &mut group, s);
        }
        out.groups.push(group);
    }
    for ls in batch.log_streams {
        out.push_logs(ls);
    }
    for p in batch.probe_results {
        out.push_probe(p);
    }
    for e in batch.container_events {
        use lookout_proto::v1::container_event::Kind;
        match Kind::try_from(e.kind) {
            Ok(Kind::Died | Kind::Destroyed) => out.events.push(EventIn::Gone { container_id: e.container_id }),
            Ok(Kind::Config) => out.events.push(EventIn::ConfigProblem {
                labels: e.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                message: e.message,
            }),
            _ => {}
        }
    }
    out
}

/// The flags a line may carry, as the label `flags` of its stream (only where set): rare, and a
/// query can then find or leave out such lines by label.
fn flags_label(flags: u32) -> Option<String> {
    let names: Vec<&str> =
        [(LogFlag::Truncated, "truncated"), (LogFlag::Replaced, "replaced"), (LogFlag::Corrupt, "corrupt")]
            .into_iter()
            .filter(|(f, _)| flags & (*f as u32) != 0)
            .map(|(_, n)| n)
            .collect();
    (!names.is_empty()).then(|| names.join(","))
}

impl Decoded {
    /// A probe run: samples of `lookout_probe_success`, `lookout_probe_duration_seconds` and
    /// `lookout_container_health{state}` (1 for its state, 0 for the others), and a report for the board.
    fn push_probe(&mut self, p: lookout_proto::v1::ProbeResult) {
        let mut labels = p.labels.clone();
        if !labels.iter().any(|l| l.name == "probe") {
            labels.push(Label { name: "probe".into(), value: p.kind.clone() });
        }
        let common = LabelSet::from_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let mut group = SeriesGroup { common, series: Vec::with_capacity(5) };
        let sample = |name: &str, extra: Option<(&str, &str)>, v: f64| -> SeriesSamples {
            let mut own = vec![Label { name: METRIC_NAME.into(), value: name.into() }];
            if let Some((k, val)) = extra {
                own.push(Label { name: k.into(), value: val.into() });
            }
            SeriesSamples { labels: own, timestamps_ms: vec![p.time_ms], values: vec![v] }
        };
        self.push(&labels, &mut group, sample("lookout_probe_success", None, f64::from(u8::from(p.success))));
        self.push(&labels, &mut group, sample("lookout_probe_duration_seconds", None, p.duration_seconds));
        for st in STATES {
            let v = f64::from(u8::from(p.state == st));
            self.push(&labels, &mut group, sample("lookout_container_health", Some(("state", st)), v));
        }
        if !group.series.is_empty() {
            self.groups.push(group);
        }
        self.probes.push(crate::health::ProbeReport {
            labels: p.labels.into_iter().map(|l| (l.name, l.value)).collect(),
            probe: p.kind,
            run: crate::health::Run {
                time_ms: p.time_ms,
                success: p.success,
                duration_seconds: p.duration_seconds,
                output: p.output,
                state: p.state,
            },
            previous_state: Some(p.previous_state).filter(|s| !s.is_empty()),
            failing_streak: p.failing_streak,
            interval_seconds: p.interval_seconds,
            restart: p.restart,
        });
    }

    /// A stream's lines; lines with flags go to a sibling stream labelled with them.
    fn push_logs(&mut self, ls: lookout_proto::v1::LogStream) {
        if let Some(l) = ls.labels.iter().find(|l| !valid_label_name(&l.name)) {
            if self.invalid_series == 0 {
                self.first_problem = format!("log stream: invalid label name {:?}", l.name);
            }
            self.invalid_series += 1;
            return;
        }
        let labels = LabelSet::from_pairs(ls.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let mut plain = LogStreamIn { labels: labels.clone(), lines: Vec::with_capacity(ls.lines.len()) };
        let mut flagged: Vec<LogStreamIn> = Vec::new();
        for line in ls.lines {
            let l = LogLine { time_ns: line.time_ns, line: line.text };
            match flags_label(line.flags) {
                None => plain.lines.push(l),
                Some(f) => match flagged.iter_mut().find(|s| s.labels.get("flags") == Some(f.as_str())) {
                    Some(s) => s.lines.push(l),
                    None => {
                        let mut labels = labels.clone();
                        labels.set("flags", &f);
                        flagged.push(LogStreamIn { labels, lines: vec![l] });
                    }
                },
            }
        }
        self.logs.push(plain);
        self.logs.extend(flagged);
    }

    /// Adds one series to `group` after checking its labels (the group's `wire` labels plus its own).
    fn push(&mut self, wire: &[Label], group: &mut SeriesGroup, s: SeriesSamples) {
        match check(wire.iter().chain(&s.labels), s.timestamps_ms.len(), s.values.len()) {
            Ok(()) => {
                self.samples += s.values.len() as u64;
                let own = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
                group.series.push((own, Samples { ts: s.timestamps_ms, values: s.values }));
            }
            Err(problem) => {
                if self.invalid_series == 0 {
                    self.first_problem = problem;
                }
                self.invalid_series += 1;
            }
        }
    }
}

fn check<'a>(labels: impl Iterator<Item = &'a Label> + Clone, n_ts: usize, n_values: usize) -> Result<(), String> {
    if n_ts != n_values {
        return Err(format!("{n_ts} timestamps but {n_values} values"));
    }
    if !labels.clone().any(|l| l.name == METRIC_NAME && valid_metric_name(&l.value)) {
        return Err("no valid __name__ label".into());
    }
    if let Some(l) = labels.clone().find(|l| !valid_label_name(&l.name)) {
        return Err(format!("invalid label name {:?}", l.name));
    }
    Ok(())
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's label name rule.
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus's metric name rule.
pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LabelView;

    #[test]
    fn an_agents_losses_become_samples_at_both_ends_of_the_gap() {
        let loss =
            lookout_proto::v1::Loss { batches: 7, first_ms: 1_000, last_ms: 61_000, reason: "spool_full".into() };
        let mut d = batch(Batch { seq: 3, losses: vec![loss], ..Default::default() });
        d.record_losses("web-1");
        let sets = label_sets(&d);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].get("__name__"), Some("lookout_agent_lost_batches"));
        assert_eq!((sets[0].get("host"), sets[0].get("reason")), (Some("web-1"), Some("spool_full")));
        let samples = &d.groups[0].series[0].1;
        assert_eq!((samples.ts.clone(), samples.values.clone()), (vec![1_000, 61_000], vec![7.0, 7.0]));
    }

    /// Every decoded series' full label set, in order.
    fn label_sets(d: &Decoded) -> Vec<LabelSet> {
        d.groups
            .iter()
            .flat_map(|g| g.series.iter().map(|(own, _)| LabelView::merge(&g.common, own).to_label_set()))
            .collect()
    }

    #[test]
    fn log_streams_keep_their_lines_and_flagged_lines_are_labelled() {
        use lookout_proto::v1::{LogLine as WireLine, LogStream};
        let line = |t: i64, text: &str, flags: u32| WireLine { time_ns: t, text: text.into(), flags };
        let d = batch(Batch {
            log_streams: vec![
                LogStream {
                    labels: vec![l("container", "web"), l("stream", "stdout")],
                    lines: vec![
                        line(1, "ok", 0),
                        line(2, "half", LogFlag::Truncated as u32),
                        line(3, "bad \u{fffd}", LogFlag::Replaced as u32),
                        line(4, "ok too", 0),
                    ],
                },
                LogStream { labels: vec![l("bad-name", "x")], lines: vec![line(1, "x", 0)] },
            ],
            ..Batch::default()
        });
        assert_eq!(d.invalid_series, 1);
        let got: Vec<(Option<&str>, Vec<&str>)> =
            d.logs.iter().map(|s| (s.labels.get("flags"), s.lines.iter().map(|l| l.line.as_str()).collect())).collect();
        assert_eq!(
            got,
            [(None, vec!["ok", "ok too"]), (Some("truncated"), vec!["half"]), (Some("replaced"), vec!["bad \u{fffd}"])]
        );
    }

    fn l(n: &str, v: &str) -> Label {
        Label { name: n.into(), value: v.into() }
    }

    #[test]
    fn invalid_series_are_skipped_and_valid_ones_kept() {
        let good = SeriesSamples {
            labels: vec![l("__name__", "up"), l("job", "x")],
            timestamps_ms: vec![1],
            values: vec![1.0],
        };
        let uneven = SeriesSamples { labels: vec![l("__name__", "up")], timestamps_ms: vec![1, 2], values: vec![1.0] };
        let no_name = SeriesSamples { labels: vec![l("job", "x")], timestamps_ms: vec![1], values: vec![1.0] };
        let bad_label = SeriesSamples {
            labels: vec![l("__name__", "up"), l("0bad", "x")],
            timestamps_ms: vec![1],
            values: vec![1.0],
        };
        let d = batch(Batch { seq: 1, series: vec![uneven, good, no_name, bad_label], ..Default::default() });
        let sets = label_sets(&d);
        assert_eq!(sets.len(), 1);
        assert_eq!(d.invalid_series, 3);
        assert_eq!(d.first_problem, "2 timestamps but 1 values");
        assert_eq!(sets[0].get("job"), Some("x"));
    }

    #[test]
    fn group_labels_are_added_to_each_series_of_the_group() {
        use lookout_proto::v1::SeriesGroup;
        let series =
            |name: &str| SeriesSamples { labels: vec![l("__name__", name)], timestamps_ms: vec![5], values: vec![2.0] };
        let g = SeriesGroup {
            labels: vec![l("container", "web"), l("host", "h1")],
            series: vec![series("a"), series("b")],
        };
        let d = batch(Batch { seq: 1, groups: vec![g], ..Default::default() });
        let sets = label_sets(&d);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1].to_string(), "b{container=\"web\", host=\"h1\"}");
        assert_eq!(d.samples, 2);
    }
}

//! Domain to wire: ticks and container changes become protobuf series and events.
//! The only place in the agent that builds `lookout_proto` messages.

use std::sync::Arc;

use lookout_proto::v1::{container_event::Kind, ContainerEvent, Label, SeriesGroup, SeriesSamples};

use crate::discover::{ChangeKind, ContainerChange};
use crate::sampler::{Identity, Tick};

/// One group per identity (a container, or the host), handed to `out` one at a time: its labels
/// travel once, each series carries only its name and its own labels.
pub fn tick_groups(tick: &Tick, mut out: impl FnMut(SeriesGroup)) {
    // The identity of the group being filled, and the group.
    let mut current: Option<(&Arc<Identity>, SeriesGroup)> = None;
    for r in &tick.readings {
        if !current.as_ref().is_some_and(|(id, _)| Arc::ptr_eq(id, &r.identity)) {
            if let Some((_, g)) = current.take() {
                out(g);
            }
            let labels = r.identity.iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }).collect();
            current = Some((&r.identity, SeriesGroup { labels, series: Vec::new() }));
        }
        let (_, group) = current.as_mut().expect("set just above");
        let mut labels = Vec::with_capacity(r.sample.labels.len() + 1);
        labels.push(Label { name: "__name__".into(), value: r.sample.name.into() });
        labels.extend(r.sample.labels.iter().map(|(k, v)| Label { name: (*k).into(), value: v.clone() }));
        group.series.push(SeriesSamples { labels, timestamps_ms: vec![tick.ts_ms], values: vec![r.sample.value] });
    }
    if let Some((_, g)) = current {
        out(g);
    }
}

pub fn change_event(host: &str, include: &[String], c: &ContainerChange) -> ContainerEvent {
    let kind = match c.kind {
        ChangeKind::Discovered => Kind::Discovered,
        ChangeKind::Started => Kind::Started,
        ChangeKind::Died => Kind::Died,
        ChangeKind::Destroyed => Kind::Destroyed,
        ChangeKind::Renamed => Kind::Renamed,
        ChangeKind::Oom => Kind::Oom,
    };
    let labels = match &c.container {
        Some(container) => crate::discover::identity_labels(host, container, include)
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
        None => vec![Label { name: "host".into(), value: host.into() }],
    };
    ContainerEvent {
        kind: kind as i32,
        time_ms: c.time_ms,
        container_id: c.id.as_str().to_string(),
        labels,
        message: String::new(),
    }
}

/// A probe run as the wire carries it: the container's identity labels plus `probe`.
pub fn probe_result(r: crate::probe::ProbeRun) -> lookout_proto::v1::ProbeResult {
    lookout_proto::v1::ProbeResult {
        labels: r.labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
        time_ms: r.time_ms,
        kind: r.kind.to_string(),
        success: r.success,
        duration_seconds: r.duration.as_secs_f64(),
        output: r.output,
        state: r.state.as_str().to_string(),
        previous_state: r.previous.map(|s| s.as_str().to_string()).unwrap_or_default(),
        failing_streak: r.failing_streak,
        interval_seconds: r.interval.as_secs_f64(),
        restart: r.restart,
    }
}

/// A container's probe setting that does not parse, as a CONFIG event on that container.
pub fn config_event(
    host: &str,
    include: &[String],
    c: &crate::discover::Container,
    message: String,
    time_ms: i64,
) -> ContainerEvent {
    ContainerEvent {
        kind: Kind::Config as i32,
        time_ms,
        container_id: c.id.as_str().to_string(),
        labels: crate::discover::identity_labels(host, c, include)
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
        message,
    }
}

/// The log reader's streams as wire streams.
pub fn log_streams(streams: Vec<crate::logs::reader::TaggedStream>, out: &mut Vec<lookout_proto::v1::LogStream>) {
    for s in streams {
        out.push(lookout_proto::v1::LogStream {
            labels: s.labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
            lines: s
                .lines
                .into_iter()
                .map(|(time_ns, text, flags)| lookout_proto::v1::LogLine { time_ns, text, flags: flag_bits(flags) })
                .collect(),
        });
    }
}

fn flag_bits(f: crate::logs::assemble::Flags) -> u32 {
    use lookout_proto::v1::LogFlag;
    [(f.truncated, LogFlag::Truncated), (f.replaced, LogFlag::Replaced), (f.corrupt, LogFlag::Corrupt)]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |bits, (_, flag)| bits | flag as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::assemble::Flags;

    #[test]
    fn log_flags_map_to_the_wire_bits() {
        assert_eq!(flag_bits(Flags::default()), 0);
        assert_eq!(flag_bits(Flags { truncated: true, replaced: false, corrupt: true }), 1 | 4);
        assert_eq!(flag_bits(Flags { replaced: true, ..Flags::default() }), 2);
    }
}

//! Every interval, reads each running container's cgroup and network counters and the host's
//! metrics, tags them with identity labels and hands one `Tick` on. Runs on its own thread: file IO only.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::clock::now_ms;
use crate::discover::{host_metric_labels, metric_labels, Container, ContainerSet, ScrapeLabels};
use crate::metrics::cgroup::{self, ContainerCgroup, Layout};
use crate::metrics::fds::FdCounts;
use crate::metrics::fsusage::LayerUsage;
use crate::metrics::host::HostReader;
use crate::metrics::net::ContainerNet;
use crate::model::{ContainerId, Sample};
use crate::telemetry::AgentMetrics;

/// The labels of where readings came from (host, container, image, ...), shared by all of one
/// container's readings.
pub type Identity = Vec<(String, String)>;

/// One metric reading with the labels of where it came from.
#[derive(Clone, Debug)]
pub struct Reading {
    /// host, container, image, ... shared by all readings of one container.
    pub identity: Arc<Identity>,
    pub sample: Sample,
}

/// All readings of one interval, stamped with the interval's scheduled time (milliseconds), so that
/// timestamps fall on a regular grid and cost almost nothing to store.
#[derive(Clone, Debug, Default)]
pub struct Tick {
    pub ts_ms: i64,
    pub readings: Vec<Reading>,
}

pub struct SamplerConfig {
    pub host: String,
    pub interval: Duration,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    pub include_labels: Vec<String>,
    /// `job` and `instance`, as a scrape would give them.
    pub scrape: ScrapeLabels,
    /// How often each container's writable layer and own volumes are walked for their disk usage.
    pub fs_usage_refresh: Duration,
    /// Interfaces the host's `node_network_*` families leave out.
    pub net_device_exclude: Option<regex::Regex>,
    /// Where node_exporter's textfile collector reads `*.prom` files, if anywhere.
    pub textfile_directory: Option<PathBuf>,
}

struct Watched {
    container: Arc<Container>,
    identity: Arc<Identity>,
    cgroup: ContainerCgroup,
    /// Its `cgroup.procs`, for the open-file counts.
    procs: Option<PathBuf>,
    net: Option<ContainerNet>,
}

/// Prometheus's stale marker: a NaN with this exact bit pattern ends a series at its timestamp, so
/// queries stop showing a stopped container at once instead of for the 5 minute lookback.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub struct Sampler {
    cfg: SamplerConfig,
    layout: Layout,
    containers: ContainerSet,
    watched: HashMap<ContainerId, Watched>,
    host: HostReader,
    layers: LayerUsage,
    fds: FdCounts,
    host_identity: Arc<Identity>,
    metrics: AgentMetrics,
    buf: Vec<Sample>,
    probe_problems: crate::probe::ConfigProblems,
    /// The last tick, so that a container that goes away can end the series it had there.
    last: Arc<Tick>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig, containers: ContainerSet, metrics: AgentMetrics) -> Self {
        let layout = cgroup::detect(&cfg.cgroup_root);
        let host = HostReader::new(&cfg.proc_root)
            .excluding_net_devices(cfg.net_device_exclude.clone())
            .with_textfile_directory(cfg.textfile_directory.clone());
        let host_identity = Arc::new(host_metric_labels(&cfg.host, &cfg.scrape));
        let layers = LayerUsage::new(cfg.fs_usage_refresh, &cfg.proc_root);
        let fds = FdCounts::new(cfg.fs_usage_refresh);
        Sampler {
            cfg,
            layout,
            containers,
            watched: HashMap::new(),
            host,
            layers,
            fds,
            host_identity,
            metrics,
            buf: Vec::new(),
            probe_problems: Default::default(),
            last: Default::default(),
        }
    }

    /// Reports each container's probe settings that do not parse as `lookout_probe_config_problems`.
    pub fn with_probe_problems(mut self, problems: crate::probe::ConfigProblems) -> Self {
        self.probe_problems = problems;
        self
    }

    /// Reads everything once, for the tick scheduled at `ts_ms`.
    pub fn sample(&mut self, ts_ms: i64) -> Arc<Tick> {
        let current: Vec<Arc<Container>> =
            self.containers.read().expect("container set lock poisoned").values().cloned().collect();
        let mut tick = Tick { ts_ms, readings: Vec::with_capacity(self.watched.len() * 30 + 64) };
        let (last, fds) = (&self.last, &mut self.fds);
        self.watched.retain(|id, w| {
            let keep = current.iter().any(|c| &c.id == id);
            if !keep {
                fds.forget(id);
                let ended = last.readings.iter().filter(|r| Arc::ptr_eq(&r.identity, &w.identity)).map(|r| Reading {
                    identity: r.identity.clone(),
                    sample: Sample { value: f64::from_bits(STALE_NAN), ..r.sample.clone() },
                });
                tick.readings.extend(ended);
            }
            keep
        });
        let now_s = ts_ms as f64 / 1000.0;
        self.layers.tick(disk_trees(&current));
        for c in current {
            let w = match self.watched.get_mut(&c.id) {
                // A restarted or renamed container keeps its id but may have a new pid or name.
                Some(w) if Arc::ptr_eq(&w.container, &c) || *w.container == *c => w,
                _ => {
                    let cgroup = ContainerCgroup::open(&self.layout, &self.cfg.proc_root, &c.id, c.pid);
                    let cgroup_id =
                        cgroup.dirs().cgroup_id(&self.layout).unwrap_or_else(|| format!("/docker/{}", c.id));
                    let identity =
                        metric_labels(&self.cfg.host, &c, &self.cfg.include_labels, &self.cfg.scrape, &cgroup_id);
                    let w = Watched {
                        identity: Arc::new(identity),
                        procs: cgroup.dirs().procs_file(),
                        cgroup,
                        net: c.pid.map(|pid| ContainerNet::new(&self.cfg.proc_root, pid)),
                        container: c.clone(),
                    };
                    self.watched.insert(c.id.clone(), w);
                    self.watched.get_mut(&c.id).expect("just inserted")
                }
            };
            self.buf.clear();
            if let Err(e) = w.cgroup.read(&mut self.buf) {
                self.metrics.read_errors.inc();
                tracing::debug!(container = %c.id, error = %e, "cgroup read failed");
            }
            if let Some(net) = w.net.as_mut() {
                if let Err(e) = net.read(&mut self.buf) {
                    self.metrics.read_errors.inc();
                    tracing::debug!(container = %c.id, error = %e, "network read failed");
                }
            }
            if self.buf.is_empty() {
                continue; // gone between discovery and now
            }
            self.layers.samples(&c.id, &mut self.buf);
            self.fds.samples(&c.id, w.procs.as_deref(), &self.cfg.proc_root, &mut self.buf);
            self.buf.push(Sample::new("container_last_seen", now_s));
            if let Some(t) = c.started_at {
                self.buf.push(Sample::new("container_start_time_seconds", t));
            }
            if let Some(n) = self.probe_problems.read().expect("config problems poisoned").get(&c.id) {
                self.buf.push(Sample::new("lookout_probe_config_problems", *n as f64));
            }
            tick.readings.extend(self.buf.drain(..).map(|sample| Reading { identity: w.identity.clone(), sample }));
        }
        self.host.read(&mut self.buf);
        crate::metrics::own_process::read(&mut self.buf);
        tick.readings.extend(self.buf.drain(..).map(|sample| Reading { identity: self.host_identity.clone(), sample }));
        self.metrics.containers.set(self.watched.len() as i64);
        self.last = Arc::new(tick);
        self.last.clone()
    }

    /// Samples at every multiple of the interval until `shutdown`, handing each tick to `deliver`.
    /// Runs on a blocking thread of a tokio runtime (`spawn_blocking`), whose timer it sleeps on.
    pub fn run(
        mut self,
        shutdown: CancellationToken,
        latest: Arc<RwLock<Arc<Tick>>>,
        mut deliver: impl FnMut(Arc<Tick>),
    ) {
        let interval_ms = self.cfg.interval.as_millis().max(1) as i64;
        let rt = tokio::runtime::Handle::current();
        // The first tick comes at the next whole second, so that a rate has its two samples one
        // interval after start; the rest fall on multiples of the interval.
        let mut next = (now_ms() / 1000 + 1) * 1000;
        loop {
            let wait = Duration::from_millis((next - now_ms()).max(0) as u64);
            // One wake-up a tick, and a shutdown is noticed at once.
            let stopped = rt.block_on(async {
                tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep(wait) => false,
                }
            });
            if stopped || shutdown.is_cancelled() {
                return;
            }
            let started = std::time::Instant::now();
            // One tick, shared by /metrics and shipping: a copy of 8,000 readings costs as much as
            // reading them.
            let tick = self.sample(next);
            self.metrics.tick_seconds.set(started.elapsed().as_secs_f64());
            *latest.write().expect("latest tick lock poisoned") = tick.clone();
            deliver(tick);
            // A tick that overran skips the grid points it missed rather than bunching up.
            next = (now_ms() / interval_ms + 1) * interval_ms;
        }
    }
}

/// What each container's disk usage counts: its writable layer, and the local volumes that no other
/// running container mounts (a shared volume is no one container's, and counting it for each would
/// count it several times in a sum over containers).
fn disk_trees(current: &[Arc<Container>]) -> impl Iterator<Item = (&ContainerId, Vec<PathBuf>)> {
    let mut mounted: HashMap<&str, usize> = HashMap::new();
    for c in current {
        let names: HashSet<&str> = c.volumes.iter().map(|v| v.name.as_str()).collect();
        for n in names {
            *mounted.entry(n).or_default() += 1;
        }
    }
    current.iter().filter_map(move |c| {
        let own = c.volumes.iter().filter(|v| mounted.get(v.name.as_str()) == Some(&1)).map(|v| v.source.clone());
        let mut roots: Vec<PathBuf> = c.upper_dir.iter().cloned().chain(own).collect();
        // One volume mounted at two places is one tree.
        roots.sort();
        roots.dedup();
        (!roots.is_empty()).then_some((&c.id, roots))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::Volume;

    #[test]
    fn a_container_counts_its_layer_and_the_volumes_only_it_mounts() {
        let volume = |name: &str| Volume { name: name.into(), source: PathBuf::from(format!("/v/{name}/_data")) };
        let container = |id: char, upper: Option<&str>, volumes: Vec<Volume>| {
            Arc::new(Container {
                id: ContainerId::parse(&id.to_string().repeat(64)).unwrap(),
                upper_dir: upper.map(PathBuf::from),
                volumes,
                ..crate::discover::identity::tests::container("busybox", &[])
            })
        };
        let current = [
            container('a', Some("/l/a"), vec![volume("anon"), volume("shared")]),
            container('b', Some("/l/b"), vec![volume("shared")]),
            // The same volume at two places, and no layer that discovery could see.
            container('c', None, vec![volume("twice"), volume("twice")]),
            container('d', None, vec![volume("shared")]),
            container('e', None, Vec::new()),
        ];
        let trees: Vec<(char, Vec<PathBuf>)> =
            disk_trees(&current).map(|(id, roots)| (id.as_str().chars().next().unwrap(), roots)).collect();
        let paths = |ps: &[&str]| ps.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            trees,
            [('a', paths(&["/l/a", "/v/anon/_data"])), ('b', paths(&["/l/b"])), ('c', paths(&["/v/twice/_data"])),]
        );
    }
}

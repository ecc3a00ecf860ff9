//! Container discovery: Docker's list and inspect once, then its event stream, keep the set of
//! running containers current without polling. Produces plain `Container`s; never sees the wire.

pub mod identity;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::model::ContainerId;
pub use identity::{host_metric_labels, identity_labels, metric_labels, service_of, version_of, ScrapeLabels};

/// What the agent knows of one running container.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub id: ContainerId,
    /// Without Docker's leading slash.
    pub name: String,
    /// As configured, e.g. `shop/api:1.4.2`.
    pub image: String,
    /// The image id (`sha256:...`), for the version fallback.
    pub image_id: String,
    pub labels: HashMap<String, String>,
    /// Main process id on the host, when running.
    pub pid: Option<u32>,
    pub log_path: Option<PathBuf>,
    pub log_driver: String,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// Where probes reach it: its address on its (first) network, 127.0.0.1 with host networking.
    pub address: Option<std::net::IpAddr>,
    /// The interval of its own HEALTHCHECK, if it has one (Docker reports its health).
    pub healthcheck: Option<std::time::Duration>,
    /// Unix seconds; only for a stopped container (in the `stopped` set).
    pub finished_at: Option<f64>,
    /// Its writable layer on the host (overlay2's `UpperDir`), for its disk usage.
    pub upper_dir: Option<PathBuf>,
    /// The local-driver volumes it mounts, for its disk usage where no other container mounts them.
    pub volumes: Vec<Volume>,
}

/// A Docker volume of the `local` driver, as one container mounts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// Its data directory on the host (`/var/lib/docker/volumes/NAME/_data`).
    pub source: PathBuf,
}

/// The current set of running containers, shared with the readers.
pub type ContainerSet = Arc<RwLock<HashMap<ContainerId, Arc<Container>>>>;

/// How many stopped containers discovery keeps for the log reader (newest first): a host piles up
/// exited containers, and only the recent ones can have lines the reader has not read yet.
const STOPPED_KEPT: usize = 256;

/// Something discovery saw happen, for the container event log.
#[derive(Clone, Debug)]
pub struct ContainerChange {
    pub kind: ChangeKind,
    pub id: ContainerId,
    pub time_ms: i64,
    pub container: Option<Arc<Container>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Discovered,
    Started,
    Died,
    Destroyed,
    Renamed,
    Oom,
}

/// `[discover]`: which of the engine's containers are this agent's, as cAdvisor's and Promtail's
/// users pick them: by label (`key` present, or `key=value`) and by name (`*` matches any run of
/// characters). A container is taken when it matches some include of each kind given (none given:
/// all) and no exclude.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub include_labels: Vec<String>,
    #[serde(default)]
    pub exclude_labels: Vec<String>,
    #[serde(default)]
    pub include_names: Vec<String>,
    #[serde(default)]
    pub exclude_names: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.include_labels.is_empty()
            && self.exclude_labels.is_empty()
            && self.include_names.is_empty()
            && self.exclude_names.is_empty()
    }

    /// Whether `c` is this agent's.
    pub fn admits(&self, c: &Container) -> bool {
        self.admits_parts(&c.labels, &c.name)
    }

    /// Whether a container with these labels and name is this agent's.
    pub fn admits_parts(&self, labels: &HashMap<String, String>, container_name: &str) -> bool {
        let label = |rule: &String| match rule.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(rule.as_str()),
        };
        let name = |rule: &String| glob(rule, container_name);
        (self.include_labels.is_empty() || self.include_labels.iter().any(label))
            && (self.include_names.is_empty() || self.include_names.iter().any(name))
            && !self.exclude_labels.iter().any(label)
            && !self.exclude_names.iter().any(name)
    }
}

/// `pattern` with `*` standing for any run of characters, matched against the whole of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

pub struct Discovery {
    filter: Filter,
    socket: String,
    containers: ContainerSet,
    /// This agent's containers that exist but have stopped (their logs stay until they are removed),
    /// so the log reader can finish what it has not read of them: the lines of a container that
    /// stopped while the agent was away or waiting for its collector.
    stopped: ContainerSet,
    changes: tokio::sync::mpsc::Sender<ContainerChange>,
    /// Containers whose own health status Docker just reported (`health_status` events).
    health: Option<tokio::sync::broadcast::Sender<ContainerId>>,
}

impl Discovery {
    pub fn new(socket: &str, containers: ContainerSet, changes: tokio::sync::mpsc::Sender<ContainerChange>) -> Self {
        Discovery {
            filter: Filter::default(),
            socket: socket.to_string(),
            containers,
            stopped: Default::default(),
            changes,
            health: None,
        }
    }

    /// Also keeps this agent's stopped containers in `stopped` (the newest [`STOPPED_KEPT`]).
    pub fn with_stopped(mut self, stopped: ContainerSet) -> Self {
        self.stopped = stopped;
        self
    }

    /// Watches only the containers `filter` admits.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// A container inspected, if it is this agent's.
    async fn ours(&self, docker: &Docker, id: &ContainerId) -> Option<Container> {
        inspect(docker, id).await.filter(|c| self.filter.admits(c))
    }

    /// Also tells `health` of every `health_status` event, so a `docker` probe reads it at once.
    pub fn with_health_events(mut self, health: tokio::sync::broadcast::Sender<ContainerId>) -> Self {
        self.health = Some(health);
        self
    }

    /// Runs until `shutdown`: (re)connects to Docker with backoff, lists, inspects, then follows events.
    /// An unreachable daemon is reported once per outage, not once per retry.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        let mut failures = 0u64;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.session() => r,
            };
            if let Err(e) = result {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(socket = %self.socket, error = %e, "cannot reach Docker; retrying in the background (host metrics keep flowing)");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            if failures > 0 && self.ping().await {
                tracing::info!(failures, "Docker reachable again");
                failures = 0;
                backoff = Duration::from_millis(500);
            }
        }
    }

    async fn ping(&self) -> bool {
        match self.connect() {
            Ok(d) => d.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        Docker::connect_with_unix(&self.socket, 30, bollard::API_DEFAULT_VERSION)
    }

    /// One connection: subscribe to events first (so nothing between the list and the subscription is
    /// missed), then list and inspect, then apply events until the stream ends.
    async fn session(&self) -> Result<(), bollard::errors::Error> {
        let docker = self.connect()?;
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let mut events = docker.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
        // Newest first, stopped ones too; a stopped one is inspected only when its labels and name
        // (which the list carries) make it this agent's.
        let list = docker.list_containers(Some(ListContainersOptions { all: true, ..Default::default() })).await?;
        let mut fresh = HashMap::new();
        let mut stopped = HashMap::new();
        for summary in list {
            let Some(id) = summary.id.as_deref().and_then(ContainerId::parse) else {
                continue;
            };
            use bollard::models::ContainerSummaryStateEnum as State;
            if matches!(summary.state, Some(State::CREATED | State::EMPTY | State::REMOVING)) {
                continue;
            }
            if matches!(summary.state, Some(State::EXITED | State::DEAD)) {
                let name = summary.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/'));
                let labels = summary.labels.clone().unwrap_or_default();
                if stopped.len() >= STOPPED_KEPT || !self.filter.admits_parts(&labels, name.unwrap_or("")) {
                    continue;
                }
            }
            if let Some(c) = self.ours(&docker, &id).await {
                if c.finished_at.is_some() {
                    stopped.insert(id, Arc::new(c));
                } else {
                    fresh.insert(id, Arc::new(c));
                }
            }
        }
        *self.stopped.write().expect("container set lock poisoned") = stopped;
        let known: Vec<ContainerId> = {
            let mut set = self.containers.write().expect("container set lock poisoned");
            let before: Vec<ContainerId> = set.keys().cloned().collect();
            *set = fresh.clone();
            before
        };
        for (id, c) in &fresh {
            if !known.contains(id) {
                self.emit(ChangeKind::Discovered, id.clone(), Some(c.clone())).await;
            }
        }
        tracing::info!(containers = fresh.len(), "containers discovered");
        while let Some(ev) = events.next().await {
            let ev = ev?;
            let Some(id) = ev.actor.as_ref().and_then(|a| a.id.as_deref()).and_then(ContainerId::parse) else {
                continue;
            };
            let action = ev.action.as_deref().unwrap_or("");
            tracing::debug!(action, container = %id, "container event");
            match action {
                "start" | "unpause" | "restart" => {
                    if let Some(c) = self.ours(&docker, &id).await.filter(|c| c.finished_at.is_none()) {
                        self.stopped.write().expect("container set lock poisoned").remove(&id);
                        let c = Arc::new(c);
                        self.containers.write().expect("container set lock poisoned").insert(id.clone(), c.clone());
                        self.emit(ChangeKind::Started, id, Some(c)).await;
                    }
                }
                "rename" => match self.ours(&docker, &id).await.filter(|c| c.finished_at.is_none()) {
                    Some(c) => {
                        let c = Arc::new(c);
                        self.containers.write().expect("container set lock poisoned").insert(id.clone(), c.clone());
                        self.emit(ChangeKind::Renamed, id, Some(c)).await;
                    }
                    // Renamed out of this agent's names: no longer watched.
                    None => {
                        let gone = self.containers.write().expect("container set lock poisoned").remove(&id);
                        if let Some(c) = gone {
                            self.emit(ChangeKind::Died, id, Some(c)).await;
                        }
                    }
                },
                "die" | "destroy" => {
                    let kind = if action == "die" { ChangeKind::Died } else { ChangeKind::Destroyed };
                    let c = self.containers.write().expect("container set lock poisoned").remove(&id);
                    self.keep_stopped(&id, c.as_ref(), action == "die");
                    // Another agent's container (with a filter) is not this agent's to report.
                    if c.is_some() || self.filter.is_empty() {
                        self.emit(kind, id, c).await;
                    }
                }
                a if a.starts_with("health_status") => {
                    let watched = self.containers.read().expect("container set lock poisoned").contains_key(&id);
                    if let Some(h) = self.health.as_ref().filter(|_| watched) {
                        let _ = h.send(id);
                    }
                }
                "oom" => {
                    let c = self.containers.read().expect("container set lock poisoned").get(&id).cloned();
                    self.emit(ChangeKind::Oom, id, c).await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A container of this agent's died (`died`) or was removed: it moves to, or leaves, `stopped`.
    fn keep_stopped(&self, id: &ContainerId, c: Option<&Arc<Container>>, died: bool) {
        let mut stopped = self.stopped.write().expect("container set lock poisoned");
        match c.filter(|_| died) {
            Some(c) => {
                let finished_at = Some(now_ms() as f64 / 1000.0);
                stopped.insert(id.clone(), Arc::new(Container { pid: None, finished_at, ..(**c).clone() }));
                if stopped.len() > STOPPED_KEPT {
                    let oldest = stopped
                        .iter()
                        .min_by(|a, b| a.1.finished_at.unwrap_or(0.0).total_cmp(&b.1.finished_at.unwrap_or(0.0)));
                    if let Some(oldest) = oldest.map(|(k, _)| k.clone()) {
                        stopped.remove(&oldest);
                    }
                }
            }
            None => {
                stopped.remove(id);
            }
        }
    }

    async fn emit(&self, kind: ChangeKind, id: ContainerId, container: Option<Arc<Container>>) {
        let change = ContainerChange { kind, id, time_ms: now_ms(), container };
        // A full queue means the shipper is far behind; the container set itself stays right.
        let _ = self.changes.try_send(change);
    }
}

async fn inspect(docker: &Docker, id: &ContainerId) -> Option<Container> {
    match docker.inspect_container(id.as_str(), None::<InspectContainerOptions>).await {
        Ok(info) => from_inspect(id, info),
        Err(e) => {
            // Gone between the list and the inspect: nothing to watch.
            tracing::debug!(container = %id, error = %e, "inspect failed");
            None
        }
    }
}

/// A running container, or a stopped one with `finished_at` (and no pid); none for one being created.
fn from_inspect(id: &ContainerId, info: bollard::models::ContainerInspectResponse) -> Option<Container> {
    let state = info.state.as_ref();
    let unix = |t: Option<&str>| {
        t.and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64())
    };
    let finished_at = if state.and_then(|s| s.running).unwrap_or(false) {
        None
    } else {
        // Docker's zero time (0001-01-01) for one that never ran: nothing was written.
        Some(unix(state.and_then(|s| s.finished_at.as_deref())).filter(|t| *t > 0.0)?)
    };
    let config = info.config.unwrap_or_default();
    let host_network = info.host_config.as_ref().and_then(|h| h.network_mode.as_deref()) == Some("host");
    let address = if host_network {
        Some(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        let nets = info.network_settings.as_ref().and_then(|n| n.networks.as_ref());
        let mut ips: Vec<(&String, &str)> = nets
            .into_iter()
            .flatten()
            .filter_map(|(name, n)| Some((name, n.ip_address.as_deref().filter(|ip| !ip.is_empty())?)))
            .collect();
        ips.sort();
        ips.first().and_then(|(_, ip)| ip.parse().ok())
    };
    let healthcheck = config
        .healthcheck
        .as_ref()
        .filter(|h| h.test.as_ref().and_then(|t| t.first()).is_some_and(|first| first != "NONE"))
        // Docker's default interval is 30 s; its value is in nanoseconds.
        .map(|h| std::time::Duration::from_nanos(h.interval.filter(|i| *i > 0).unwrap_or(30_000_000_000) as u64));
    let started_at = unix(state.and_then(|s| s.started_at.as_deref()));
    // Other drivers keep their data elsewhere (often remote); bind mounts are the host's own files.
    let volumes = info
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("volume") && m.driver.as_deref() == Some("local"))
        .filter_map(|m| Some(Volume { name: m.name?, source: PathBuf::from(m.source.filter(|s| !s.is_empty())?) }))
        .collect();
    Some(Container {
        id: id.clone(),
        name: info.name.unwrap_or_default().trim_start_matches('/').to_string(),
        image: config.image.unwrap_or_default(),
        image_id: info.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        pid: state.and_then(|s| s.pid).filter(|p| *p > 0 && finished_at.is_none()).and_then(|p| u32::try_from(p).ok()),
        log_path: info.log_path.filter(|p| !p.is_empty()).map(PathBuf::from),
        log_driver: info.host_config.and_then(|h| h.log_config).and_then(|l| l.typ).unwrap_or_default(),
        started_at,
        address,
        healthcheck,
        finished_at,
        upper_dir: info
            .graph_driver
            .and_then(|mut g| g.data.remove("UpperDir"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        volumes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, labels: &[(&str, &str)]) -> Container {
        Container { name: name.into(), ..identity::tests::container("busybox", labels) }
    }

    #[test]
    fn a_filter_takes_containers_by_label_and_name_and_excludes_win() {
        let f = Filter {
            include_labels: vec!["lookout.host=web-1".into(), "team".into()],
            exclude_labels: vec!["lookout.ignore=true".into()],
            include_names: vec!["web-*".into(), "*-db".into()],
            exclude_names: vec!["web-*-canary".into()],
        };
        assert!(f.admits(&container("web-1", &[("lookout.host", "web-1")])));
        assert!(f.admits(&container("orders-db", &[("team", "x")])), "a label that is present");
        assert!(!f.admits(&container("web-1", &[("lookout.host", "web-2")])), "another host's");
        assert!(!f.admits(&container("cache", &[("team", "x")])), "a name not included");
        assert!(!f.admits(&container("web-2", &[("team", "x"), ("lookout.ignore", "true")])));
        assert!(!f.admits(&container("web-a-canary", &[("team", "x")])));
        assert!(Filter::default().admits(&container("anything", &[])), "no filter: every container");
        assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxc") && glob("*", "") && !glob("ab*ba", "aba"));
    }
}

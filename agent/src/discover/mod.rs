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
pub use identity::{identity_labels, service_of, version_of};

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
}

/// The current set of running containers, shared with the readers.
pub type ContainerSet = Arc<RwLock<HashMap<ContainerId, Arc<Container>>>>;

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

pub struct Discovery {
    socket: String,
    containers: ContainerSet,
    changes: tokio::sync::mpsc::Sender<ContainerChange>,
    /// Containers whose own health status Docker just reported (`health_status` events).
    health: Option<tokio::sync::broadcast::Sender<ContainerId>>,
}

impl Discovery {
    pub fn new(socket: &str, containers: ContainerSet, changes: tokio::sync::mpsc::Sender<ContainerChange>) -> Self {
        Discovery { socket: socket.to_string(), containers, changes, health: None }
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
        let list = docker.list_containers(Some(ListContainersOptions { all: false, ..Default::default() })).await?;
        let mut fresh = HashMap::new();
        for summary in list {
            let Some(id) = summary.id.as_deref().and_then(ContainerId::parse) else {
                continue;
            };
            if let Some(c) = inspect(&docker, &id).await {
                fresh.insert(id, Arc::new(c));
            }
        }
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
            match action {
                "start" | "unpause" | "restart" => {
                    if let Some(c) = inspect(&docker, &id).await {
                        let c = Arc::new(c);
                        self.containers.write().expect("container set lock poisoned").insert(id.clone(), c.clone());
                        self.emit(ChangeKind::Started, id, Some(c)).await;
                    }
                }
                "rename" => {
                    if let Some(c) = inspect(&docker, &id).await {
                        let c = Arc::new(c);
                        self.containers.write().expect("container set lock poisoned").insert(id.clone(), c.clone());
                        self.emit(ChangeKind::Renamed, id, Some(c)).await;
                    }
                }
                "die" => {
                    let c = self.containers.write().expect("container set lock poisoned").remove(&id);
                    self.emit(ChangeKind::Died, id, c).await;
                }
                "destroy" => {
                    let c = self.containers.write().expect("container set lock poisoned").remove(&id);
                    self.emit(ChangeKind::Destroyed, id, c).await;
                }
                a if a.starts_with("health_status") => {
                    if let Some(h) = &self.health {
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

fn from_inspect(id: &ContainerId, info: bollard::models::ContainerInspectResponse) -> Option<Container> {
    let state = info.state.as_ref();
    if !state.and_then(|s| s.running).unwrap_or(false) {
        return None;
    }
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
    let started_at = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    Some(Container {
        id: id.clone(),
        name: info.name.unwrap_or_default().trim_start_matches('/').to_string(),
        image: config.image.unwrap_or_default(),
        image_id: info.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        pid: state.and_then(|s| s.pid).filter(|p| *p > 0).and_then(|p| u32::try_from(p).ok()),
        log_path: info.log_path.filter(|p| !p.is_empty()).map(PathBuf::from),
        log_driver: info.host_config.and_then(|h| h.log_config).and_then(|l| l.typ).unwrap_or_default(),
        started_at,
        address,
        healthcheck,
    })
}

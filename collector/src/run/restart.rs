//! The restart shell: every second (and at once on a health change) takes the board's containers
//! that need a decision, asks `decide::restart`, records what it decided, queues the restarts in the
//! outbox for the agents, and settles them by their answers or their deadline.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Recorder;
use crate::commands::{Command, Outbox};
use crate::decide::restart::{self, Memories, RestartConfig};
use crate::health::HealthBoard;
use crate::model::decision::{Kind, Outcome};
use crate::store::decisions::DecisionFilter;

pub struct Restarter {
    cfg: RestartConfig,
    board: Arc<HealthBoard>,
    memory: Mutex<Memories>,
    recorder: Recorder,
    /// Restarts on their way to the agents; ingest sends them.
    pub commands: Arc<Outbox>,
    /// Woken by ingest when a container's health changed, so the decision does not wait for the tick.
    pub changed: tokio::sync::Notify,
    /// The time of the last look: answers that arrive between looks are dated by it.
    clock: std::sync::atomic::AtomicI64,
}

impl Restarter {
    /// Remembers the restarts the decision log holds within the longest window; a restart still
    /// waiting for its answer when the collector stopped is settled as not carried out (and still
    /// counted: it may have happened).
    pub fn new(cfg: RestartConfig, board: Arc<HealthBoard>, recorder: Recorder, now: i64) -> Restarter {
        let filter = DecisionFilter {
            since_ms: Some(now - cfg.longest_window().as_millis().min(i64::MAX as u128) as i64),
            kind: Some(Kind::Restart.as_str().into()),
            limit: 100_000,
            ..Default::default()
        };
        let past = match recorder.store().decisions(&filter) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read past restarts: budgets start over");
                Vec::new()
            }
        };
        for d in past.iter().filter(|d| d.outcome == Outcome::Pending) {
            let why = "the collector stopped before the agent answered";
            if let Err(e) = recorder.store().settle_decision(d.id, Outcome::NotCarriedOut, why, now) {
                tracing::warn!(error = %e, "cannot settle a restart left pending");
            }
        }
        Restarter {
            memory: Mutex::new(Memories::from_log(&past)),
            cfg,
            board,
            recorder,
            commands: Default::default(),
            changed: Default::default(),
            clock: Default::default(),
        }
    }

    /// Runs the decisions every second until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        super::every_second("restart decisions", self, shutdown, Some(|r: &Self| &r.changed), 0, Self::tick, |_| {})
            .await
    }

    /// One look at the board: settles overdue commands, decides, records, queues restarts.
    pub fn tick(&self, now: i64) {
        self.clock.store(now, std::sync::atomic::Ordering::Relaxed);
        self.expire_commands(now);
        let mut memory = self.memory.lock().expect("restart memory poisoned");
        let board = self.board.needing_decisions(&memory.ids());
        for planned in restart::decide(&self.cfg, &board, &mut memory, now) {
            let id = self.recorder.record(&planned.decision);
            let Some(r) = planned.restart else { continue };
            let Some(id) = id else {
                memory.not_carried_out(&r.container_id);
                continue;
            };
            self.commands.push(Command {
                id: format!("restart-{id}"),
                host: r.host,
                container_id: r.container_id,
                reason: r.reason,
                decision_id: id,
                deadline_ms: now + self.cfg.command_deadline.as_millis().min(i64::MAX as u128) as i64,
                sent: false,
            });
        }
    }

    /// Commands for the agent of `host` not yet sent; they are marked sent.
    pub fn take_for(&self, host: &str) -> Vec<Command> {
        self.commands.take_for(host)
    }

    /// An answer to a command from the agent of `host`; only the host a command went to answers it.
    pub fn result(&self, host: &str, id: &str, ok: bool, message: &str) {
        let Some(cmd) = self.commands.answered(host, id) else {
            tracing::warn!(
                command = id,
                host,
                "an answer to a command that is not waiting for this host (past its deadline?)"
            );
            return;
        };
        let now = self.clock.load(std::sync::atomic::Ordering::Relaxed);
        self.memory.lock().expect("restart memory poisoned").answered(&cmd.container_id, ok, now);
        let now = crate::clock::now_ms().max(now);
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        self.recorder.settle(cmd.decision_id, Kind::Restart, outcome, message, now);
    }

    fn expire_commands(&self, now: i64) {
        for c in self.commands.expire(now) {
            self.memory.lock().expect("restart memory poisoned").not_carried_out(&c.container_id);
            let deadline = humantime::format_duration(self.cfg.command_deadline);
            let detail = if c.sent {
                format!("sent to the agent on {}, which did not answer within {deadline}", c.host)
            } else {
                format!("the agent on {} was away for {deadline}", c.host)
            };
            self.recorder.settle(c.decision_id, Kind::Restart, Outcome::NotCarriedOut, &detail, now);
        }
    }
}

#[cfg(test)]
mod tests;

//! The outbox of commands for agents: the restart shell puts a command in, the agent's ingest
//! stream takes it out to send, and returns it when it could not be written; past its deadline
//! a command is taken back, sent or not.

use std::sync::Mutex;

/// A restart waiting to go down an agent's stream, or for its answer.
#[derive(Clone, Debug)]
pub struct Command {
    pub id: String,
    pub host: String,
    pub container_id: String,
    pub reason: String,
    /// The decision that records it, settled by the answer.
    pub decision_id: i64,
    pub deadline_ms: i64,
    pub sent: bool,
}

#[derive(Default)]
pub struct Outbox {
    commands: Mutex<Vec<Command>>,
    /// Woken when commands are queued, so the agent streams send them at once.
    pub queued: tokio::sync::Notify,
}

impl Outbox {
    pub fn push(&self, c: Command) {
        self.commands.lock().expect("commands poisoned").push(c);
        self.queued.notify_waiters();
    }

    /// Commands for the agent of `host` not yet sent; they are marked sent.
    pub fn take_for(&self, host: &str) -> Vec<Command> {
        let mut cmds = self.commands.lock().expect("commands poisoned");
        cmds.iter_mut()
            .filter(|c| c.host == host && !c.sent)
            .map(|c| {
                c.sent = true;
                c.clone()
            })
            .collect()
    }

    /// A command could not be written to the stream: it goes back to wait for the agent.
    pub fn unsent(&self, id: &str) {
        if let Some(c) = self.commands.lock().expect("commands poisoned").iter_mut().find(|c| c.id == id) {
            c.sent = false;
        }
    }

    /// The command an answer from `host` is for, taken out; `None` when no command of that id waits
    /// for that host (past its deadline, or sent to another).
    pub fn answered(&self, host: &str, id: &str) -> Option<Command> {
        let mut cmds = self.commands.lock().expect("commands poisoned");
        let i = cmds.iter().position(|c| c.id == id && c.host == host)?;
        Some(cmds.remove(i))
    }

    /// Commands whose deadline has come by `now`, taken out.
    pub fn expire(&self, now: i64) -> Vec<Command> {
        let mut cmds = self.commands.lock().expect("commands poisoned");
        let (gone, keep): (Vec<Command>, Vec<Command>) = cmds.drain(..).partition(|c| now >= c.deadline_ms);
        *cmds = keep;
        gone
    }
}

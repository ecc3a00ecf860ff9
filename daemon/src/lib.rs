//! What lookout's daemons share as processes, and nothing of what they do: log output fit for a
//! terminal, the journal or a log pipeline, and the signals that stop and reload them.

pub mod logging;
pub mod signals;

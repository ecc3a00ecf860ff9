//! Rollout gates' rules: `spec` the request, policy and plan, `stats` the statistics, `checks` each
//! check's verdict from its readings and the combination into pass, fail or wait.

pub mod checks;
pub mod spec;
pub mod stats;

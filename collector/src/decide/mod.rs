//! The decision rules, pure: each takes what it needs as plain values and `now`, and returns
//! decisions. No store, no query engine, no clock, no tokio, no HTTP (a test enforces it).

pub mod gate;
pub mod restart;
pub mod scale;

/// Says what is wrong with a PromQL text, if anything. The shells pass the engine's check (which
/// runs on a query thread, within the limits), so that rules validate queries without the engine.
pub type CheckQuery<'a> = &'a dyn Fn(&str) -> Result<(), String>;

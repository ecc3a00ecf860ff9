//! lookout-collector: receives what agents send, stores it in SQLite, answers Prometheus- and
//! Loki-style queries and decides. See ARCHITECTURE.md for the module map and what may depend on what.

pub mod api;
mod app;
pub mod auth;
pub mod clock;
pub mod commands;
pub mod config;
pub mod decide;
pub mod export;
pub mod health;
pub mod ingest;
pub mod model;
pub mod query;
pub mod run;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use app::{start, Running, STOP_GRACE};
pub use config::CollectorConfig;

//! What the benches share with the tests: `dashboard`, the reader of Grafana dashboard JSON that
//! turns a public dashboard into the queries Grafana would send.

pub mod dashboard;

//! Outbound delivery to systems outside lookout: today the autoscale webhook (`webhook`). Knows
//! nothing of decisions' rules; it carries a body and reports how it went.

pub mod webhook;

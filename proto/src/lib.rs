//! lookout's wire protocol: the generated protobuf and tonic types of `lookout.v1`.
//! Depends on nothing of ours; only the agent's `ship` and the collector's `ingest` may use it.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lookout.v1");
}

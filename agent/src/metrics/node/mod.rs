//! node_exporter's collectors that each read one small /proc file, one module per collector: pure
//! parsers from the file's bytes to samples under node_exporter 1.x's names, labels and units.
//!
//! [`super::host::HostReader`] reads the files from its proc root and hands their bytes here.

pub mod meminfo;
pub mod stat;
pub mod uname;
pub mod vmstat;

//! node_exporter's collectors, one module per collector: pure parsers from a /proc or /sys file's
//! bytes to samples under node_exporter 1.x's names, labels and units.
//!
//! [`super::host::HostReader`] reads the files from its proc root and hands their bytes here.

pub mod clocksource;
pub mod conntrack;
pub mod cpufreq;
pub mod diskstats;
pub mod entropy;
pub mod filefd;
pub mod hwmon;
pub mod meminfo;
pub mod netclass;
pub mod netmisc;
pub mod netstat;
pub mod os;
pub mod pressure;
pub mod sockstat;
pub mod stat;
pub mod sysfs;
pub mod textfile;
pub mod thermal;
pub mod timex;
pub mod uname;
pub mod vmstat;

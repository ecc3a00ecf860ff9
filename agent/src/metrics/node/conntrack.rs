//! node_exporter's `conntrack` collector, where the netfilter module is loaded: tracked connections
//! and the table's limit, from `/proc/sys/net/netfilter/`.

/// The two files and their families.
pub const FILES: [(&str, &str); 2] = [
    ("sys/net/netfilter/nf_conntrack_count", "node_nf_conntrack_entries"),
    ("sys/net/netfilter/nf_conntrack_max", "node_nf_conntrack_entries_limit"),
];

//! node_exporter's `entropy` collector: the kernel's entropy estimate and pool size, in bits, from
//! `/proc/sys/kernel/random/`.

/// The two files and their families.
pub const FILES: [(&str, &str); 2] = [
    ("sys/kernel/random/entropy_avail", "node_entropy_available_bits"),
    ("sys/kernel/random/poolsize", "node_entropy_pool_size_bits"),
];

//! Container logs: reading Docker's json-file logs line by line across rotations and restarts.
//! `jsonfile` parses a record, `tail` follows a container's files, `assemble` joins Docker's pieces
//! into entries (and `multiline` joins a service's stack traces), `checkpoint` keeps positions on
//! disk, `reader` runs it all; nothing here sees the wire.

pub mod assemble;
pub mod checkpoint;
pub mod jsonfile;
pub mod multiline;
pub mod reader;
pub mod tail;

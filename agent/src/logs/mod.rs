//! Container logs: reading Docker's json-file logs line by line across rotations and restarts.
//! `jsonfile` parses one record, `tail` follows one container's files; nothing here sees the wire.

pub mod jsonfile;
pub mod tail;

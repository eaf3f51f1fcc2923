//! The SQL, compiled once per dialect.
//!
//! `sqlite.rs` and `postgres.rs` each declare the shared files (`chats.rs`, `messages.rs`, ...)
//! as their own submodules, so every query there is typed against one concrete database. What
//! differs between the dialects (transaction start, locks, list parameters, how a page leaves
//! the database) lives in those two files under the same names.

pub mod postgres;
pub mod sqlite;

//! wagate: a self-hosted, multi-tenant WhatsApp gateway.
//!
//! Layout: [`config`] (settings), [`domain`] (parse-once types), [`store`] (SQL and the
//! ingest operations), [`auth`] (JWT + API keys), [`engine`] (the seam to WhatsApp),
//! [`net`] (outbound connections to public addresses only), [`http`] (routes and handlers), [`app`] (state and router), [`cli`] (the `wagate` command).

pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
pub mod net;
pub mod store;

pub use app::{app, AppState};
pub use config::Config;

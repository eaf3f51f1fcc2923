//! The integration suite: the whole app in process, each test on a fresh database, every
//! test run on SQLite and again on PostgreSQL (the `sqlite` / `postgres` test pairs).

mod support;

mod api_keys;
mod auth;
mod chats;
mod concurrency;
mod contacts;
mod errors;
mod events;
mod ingest;
mod keystore;
mod layers;
mod limits;
mod messages;
mod openapi;
mod privacy;
mod review;
mod send;
mod sessions;

//! The gateway end to end: a real gateway (simulator build) on loopback, driven through its
//! HTTP API only, against wa-sim. Each test has its own simulator and database.

mod crash;
mod flows;
mod hardening;
mod support;

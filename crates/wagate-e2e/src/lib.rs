//! End-to-end tests of the gateway against the wa-sim simulator live in `tests/e2e`; this
//! crate has no code of its own.

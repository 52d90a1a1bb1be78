#![allow(unreachable_pub)]

//! Integration tests of slipway-provider: the real provider and the real API
//! on 127.0.0.1 (the API over a temp SQLite file), with a fake of GitHub's
//! REST API that records what it receives.

mod support;

mod bad_input;
mod checks;
mod config;
mod generic;
mod github;
mod gitlab;
mod journal;
mod keys;
mod merge_requests;
mod metrics;
mod push;
mod statuses;
mod timeouts;

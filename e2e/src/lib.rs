//! The end-to-end harness: Slipway's three binaries as separate processes, on
//! top of the test kit's fake GitHub, git daemon and swarm helpers on
//! 127.0.0.1 and the real Docker engine in swarm mode. The tests (`tests/it`)
//! and the bench (`benches/e2e.rs`) share it.
//!
//! # Layout
//!
//! - [`bins`]: finds the built binaries next to the test executable.
//! - [`api`]: GraphQL calls to the API, as an operator's script would make them.
//! - [`system`]: API, runner and provider as processes, wired to a fake GitHub
//!   and a git server.
//!
//! Processes, waits, the fake GitHub, git servers and the swarm helpers are
//! `slipway_testkit`'s.

pub mod api;
pub mod bins;
pub mod on_swarm;
pub mod system;

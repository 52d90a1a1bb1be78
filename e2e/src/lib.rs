//! The end-to-end harness: Slipway's three binaries as separate processes, a
//! fake GitHub and a git daemon on 127.0.0.1, and the real Docker engine in
//! swarm mode. The tests (`tests/it`) and the bench (`benches/e2e.rs`) share it.
//!
//! # Layout
//!
//! - [`bins`]: finds the built binaries next to the test executable.
//! - [`process`]: a child process that is killed when dropped and whose output
//!   goes to a file, shown when a test fails.
//! - [`wait`]: polling with a deadline; every wait says what it waited for.
//! - [`github`]: a fake of GitHub's REST API (deployments, statuses) and the
//!   signed hooks GitHub sends.
//! - [`git`]: a working repository and a `git daemon` serving its bare copy.
//! - [`api`]: GraphQL calls to the API, as an operator's script would make them.
//! - [`swarm`]: `docker` CLI helpers and a guard that removes a stack.
//! - [`system`]: all of the above wired together: API, runner, provider.

pub mod api;
pub mod bins;
pub mod git;
pub mod github;
pub mod process;
pub mod swarm;
pub mod system;
pub mod wait;

//! Slipway's runner: it subscribes to the API, claims a deployment, fetches the
//! repository at the exact commit, reads the deploy spec and rolls the stack
//! out on Docker Swarm, reporting progress, logs and the final status.
//!
//! # Layout
//!
//! - [`config`]: the `slipway-runner` command line.
//! - [`spec`]: `slipway.yml` and Compose files → [`plan::Plan`].
//! - [`plan`]: what a deployment creates, as Engine API objects.

pub mod config;
pub mod git;
pub mod plan;
pub mod report;
pub mod spec;
pub mod swarm;
pub mod work;

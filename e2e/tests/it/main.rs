//! End-to-end tests: `slipway-api`, `slipway-runner` and `slipway-provider` as
//! separate processes (built by `cargo build --workspace --bins`, which
//! `cargo nextest run --workspace` does too), the real swarm, a git daemon and
//! a fake GitHub on 127.0.0.1. The harness is `slipway_e2e` (`e2e/src`).

mod deploy_files;
mod github;
mod on_swarm;
mod pools;
mod replicas;
mod restarts;

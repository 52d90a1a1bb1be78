//! The `slipway` binary as an operator runs it: `slipway up` as a process on
//! the real swarm, and the client commands against it or against the real
//! API in-process (`releases`: there the test plays the runner).
//!
//! Every test that starts `up` needs a Docker engine in swarm mode with the
//! local test images (`scripts/test.sh` sets one up) and fails loudly without.
#![allow(unreachable_pub)]

mod harness;

mod commands;
mod follow;
mod quickstart;
mod releases;
mod up;
mod web;

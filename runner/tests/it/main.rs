//! The runner's integration tests: one binary, a module per area.
#![allow(unreachable_pub)]

mod plan_vs_stack_deploy;
mod spec;

mod commits;
mod deploy;
mod git;
mod nodes;
mod pools;
mod registry;
mod releases;
mod tasks;
mod truth;

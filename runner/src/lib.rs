//! Slipway's runner: it subscribes to the API, claims a deployment, fetches the
//! repository at the exact commit, reads the deploy spec and rolls the stack
//! out on Docker Swarm, reporting progress, logs and the final status.
//!
//! # Layout
//!
//! - [`config`]: the `slipway-runner` command line.
//! - [`work`]: the loop — register, hear of claimable deployments, claim
//!   them, resume what this instance held — and [`work::Runner`], what a
//!   runner holds.
//! - [`instance`]: which runner process this is (an id kept in the workdir).
//! - [`lease`]: heartbeats, and the fence that stops swarm writes once the
//!   lease may have lapsed.
//! - [`rollout`]: one deployment as steps — fetch, plan, resolve, apply,
//!   converge, settle — and the record of what it changed, for a restart.
//! - [`git`]: bare mirrors and fetching the commit.
//! - [`spec`]: `slipway.yml` and Compose files → [`plan::Plan`].
//! - [`plan`]: what a deployment creates, as Engine API objects.
//! - [`registry`]: image references and registry credentials.
//! - [`swarm`]: resolving images to digests, applying a plan, watching it
//!   converge, rolling it back.
//! - [`report`]: log lines and progress to the API, secrets masked.
//! - [`observe`]: what runs where — each environment's stack task by task,
//!   node by node — reported after every deployment and every minute.

pub mod config;
pub mod git;
pub mod instance;
pub mod lease;
pub mod observe;
pub mod plan;
pub mod preview;
pub mod registry;
pub mod report;
pub mod rollout;
pub mod spec;
pub mod swarm;
pub mod work;

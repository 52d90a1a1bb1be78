//! A runner in-process, against a [`TestApi`] and the local swarm. This is the
//! one place a `slipway_runner::work::Runner` is put together for tests and
//! benches.

use std::time::Duration;

use slipway_api::auth::Role;
use slipway_runner::git::{Credentials, Mirrors};
use slipway_runner::work::Runner;
use tokio::runtime::Handle;

use crate::api::TestApi;
use crate::running::Running;
use crate::swarm::engine;

/// How a runner started by [`start_runner_with`] behaves.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    pub labels: Vec<String>,
    /// How often a held deployment's lease is renewed.
    pub heartbeat: Duration,
    /// How many deployments it carries out at once.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            labels: vec!["test".into()],
            heartbeat: Duration::from_secs(2),
            concurrency: 4,
            fetch_timeout: Duration::from_secs(60),
        }
    }
}

/// Starts a runner named `name` (its token's subject) against `api` and the
/// local engine; it stops when the handle is dropped.
pub async fn start_runner(api: &TestApi, name: &str) -> RunnerHandle {
    start_runner_with(api, name, RunnerOptions::default()).await
}

/// [`start_runner`] with `options`.
pub async fn start_runner_with(api: &TestApi, name: &str, options: RunnerOptions) -> RunnerHandle {
    let workdir = tempfile::tempdir().expect("temp dir");
    let runner = Runner {
        client: slipway_client::Client::new(&api.base_url(), &api.token(Role::Runner, name)),
        name: name.to_owned(),
        labels: options.labels,
        mirrors: Mirrors::new(workdir.path().join("mirrors"), Credentials::default()),
        engine: engine().await,
        secrets: Default::default(),
        heartbeat: options.heartbeat,
        concurrency: options.concurrency,
        fetch_timeout: options.fetch_timeout,
    };
    let running = Running::spawn("the runner", &Handle::current(), |stopped| {
        slipway_runner::work::run(runner, stopped.wait())
    });
    RunnerHandle {
        running,
        _workdir: workdir,
    }
}

/// A runner in-process: stopped, and its task awaited, when dropped.
pub struct RunnerHandle {
    running: Running,
    _workdir: tempfile::TempDir,
}

impl RunnerHandle {
    /// Stops the runner and waits until it has.
    pub async fn stop(mut self) {
        self.running.stop().await;
    }
}

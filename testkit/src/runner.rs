//! A runner in-process, against a [`TestApi`] and the local swarm. This is the
//! one place a `slipway_runner::work::Runner` is put together for tests and
//! benches.

use std::path::PathBuf;
use std::time::Duration;

use slipway_api::auth::Role;
use slipway_runner::git::Credentials;
use slipway_runner::registry::RegistryAuth;
use slipway_runner::swarm::Engine;
use slipway_runner::work::Runner;
use tokio::runtime::Handle;

use crate::api::TestApi;
use crate::running::Running;
use crate::swarm::engine;

/// How a runner started by [`start_runner_with`] behaves.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    pub labels: Vec<String>,
    /// How many deployments it carries out at once.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
    /// How often it reads the claimable deployments without an event.
    pub resync_every: Duration,
    /// How often it reports what runs where.
    pub observe_every: Duration,
    /// Its workdir; by default one per name under the API's scratch
    /// directory, so a runner started again with the same name is the same
    /// runner (the same instance) restarted.
    pub workdir: Option<PathBuf>,
    /// Where it reaches the API (a proxy, say); by default the API itself.
    pub api_url: Option<String>,
    /// The engine it deploys to; by default the local one.
    pub engine: Option<Engine>,
    /// A Docker `config.json` with registry credentials
    /// (`--registry-auth-file`); none by default.
    pub registry_auth_file: Option<PathBuf>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            labels: vec!["test".into()],
            concurrency: 4,
            fetch_timeout: Duration::from_secs(60),
            resync_every: Duration::from_secs(30),
            observe_every: Duration::from_secs(60),
            workdir: None,
            api_url: None,
            engine: None,
            registry_auth_file: None,
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
    let workdir = options
        .workdir
        .unwrap_or_else(|| api.scratch().join("runners").join(name));
    let api_url = options.api_url.unwrap_or_else(|| api.base_url());
    let engine = match options.engine {
        Some(engine) => engine,
        None => engine().await,
    };
    let mut runner = Runner::open(
        slipway_client::Client::new(&api_url, &api.token(Role::Runner, name)),
        name,
        workdir,
        engine,
        Credentials::default(),
    )
    .expect("the runner's workdir");
    if let Some(file) = &options.registry_auth_file {
        runner.registry_auth = RegistryAuth::read(file).expect("the registry auth file");
    }
    runner.labels = options.labels;
    runner.concurrency = options.concurrency;
    runner.fetch_timeout = options.fetch_timeout;
    runner.resync_every = options.resync_every;
    runner.observe_every = options.observe_every;
    let running = Running::spawn("the runner", &Handle::current(), |stopped| {
        slipway_runner::work::run(runner, stopped.wait())
    });
    RunnerHandle { running }
}

/// A runner in-process: stopped, and its task awaited, when dropped.
pub struct RunnerHandle {
    running: Running,
}

impl RunnerHandle {
    /// Stops the runner and waits until it has, deployments in flight
    /// included (they stay held, for a restart to resume).
    pub async fn stop(mut self) {
        self.running.stop().await;
    }
}

//! Slipway's provider: the door through which GitHub, GitLab and any CI start
//! deployments, and through which GitHub learns how each one is going.
//!
//! A hook is verified over its raw body (in constant time) before anything
//! reads it, mapped to the applications and environments it means, and turned
//! into deployments through the API's `createDeployment`, with an idempotency
//! key that makes a redelivered hook find what the first delivery made. It is
//! answered only once the API has stored the deployments. The statuses of the
//! deployments that came from GitHub go back to GitHub, in order, surviving
//! restarts of the provider and outages of GitHub.
//!
//! # Layout
//!
//! - [`config`]: the `slipway-provider` command line; secrets from flags,
//!   environment or files ([`slipway_secret`]), redacted in `Debug`.
//! - [`http`]: connections and their timeouts, routes, and reading bodies
//!   within the 25 MiB limit.
//! - [`signature`]: GitHub's HMAC-SHA256 signature and constant-time tokens.
//! - [`hooks`]: the list of hook sources ([`hooks::SOURCES`]) from which the
//!   routes, the start-up log and `slipway up`'s banner are made; what each
//!   sender's events mean — [`hooks::github`], [`hooks::gitlab`],
//!   [`hooks::generic`] — and creating the deployments they ask for.
//! - [`repository`]: matching a hook's repository to an application's.
//! - [`statuses`]: following the API's deployment events and posting GitHub
//!   deployment statuses; [`statuses::journal`] is the durable record of
//!   what is still to post; [`statuses::github`] the REST calls.
//! - [`checks`]: required checks — reading the deployments that wait for
//!   them, their commits' statuses and check runs on GitHub
//!   ([`checks::github`]) or pipelines on GitLab ([`checks::gitlab`]), and
//!   reporting them to the API.
//! - [`error`]: the answers a hook gets when it creates nothing.
//! - [`metrics`]: how long hooks take to be answered, for Prometheus, on a
//!   listener of their own.

pub mod checks;
pub mod config;
pub mod error;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod repository;
pub mod signature;
pub mod statuses;

use std::future::Future;

use tokio::net::TcpListener;

pub use crate::config::{Config, Secret};
pub use crate::error::Error;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::statuses::github::Github;
use crate::statuses::journal::Journal;

/// Where the provider listens: for hooks and, when metrics are on, for
/// scrapes. A `TcpListener` alone is the hooks' without metrics.
#[derive(Debug)]
pub struct Listeners {
    /// The hook routes and `/healthz`.
    pub hooks: TcpListener,
    /// `GET /metrics` ([`metrics`]); `None` keeps metrics off.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(hooks: TcpListener) -> Self {
        Self {
            hooks,
            metrics: None,
        }
    }
}

/// Serves the hooks on `listeners` and reports statuses to GitHub until
/// `shutdown` resolves; hooks being answered then are finished first.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Listeners {
        hooks: listener,
        metrics: metrics_listener,
    } = listeners.into();
    let secrets = config.secrets()?;
    let api_url = config::base_url("api-url", &config.api_url)?;
    let public_url = config
        .public_url
        .as_deref()
        .map(|url| config::base_url("public-url", url))
        .transpose()?;
    let api = slipway_client::Client::new(&api_url, secrets.token.expose());

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut forges = checks::Forges::default();
    if let Some(token) = &secrets.github_token {
        let url = config::base_url("github-api-url", &config.hooks.github_api_url)?;
        let hosts = checks::hosts(&url, "github.com");
        forges.github = Some((Github::new(&url, token.clone()), hosts));
    }
    if let Some(token) = &secrets.gitlab_token {
        let url = config::base_url("gitlab-url", &config.hooks.gitlab_url)?;
        let hosts = checks::hosts(&url, "gitlab.com");
        forges.gitlab = Some((checks::gitlab::Gitlab::new(&url, token.clone()), hosts));
    }
    let checks_task = if forges.is_empty() {
        tracing::info!("no --github-token or --gitlab-token: required checks are not read");
        None
    } else {
        let every = std::time::Duration::from_secs(config.checks_every);
        tracing::info!(every = ?every, github = forges.github.is_some(), gitlab = forges.gitlab.is_some(), "reading required checks");
        Some(tokio::spawn(checks::watch(
            api.clone(),
            forges,
            every,
            stopped.clone(),
        )))
    };
    let (statuses, tasks) = match &secrets.github_token {
        Some(token) => {
            let github_api = config::base_url("github-api-url", &config.hooks.github_api_url)?;
            let journal = Journal::open(&config.data_dir)?;
            let github = Github::new(&github_api, token.clone());
            let (statuses, tasks) =
                statuses::start(journal, github, api.clone(), public_url, stopped.clone());
            tracing::info!(github = %github_api, data_dir = %config.data_dir.display(), "reporting deployment statuses to GitHub");
            (Some(statuses), tasks)
        }
        None => {
            tracing::warn!("no --github-token: deployment statuses are not reported to GitHub");
            (None, Vec::new())
        }
    };
    let addr = listener.local_addr().ok();
    for source in hooks::SOURCES {
        let name = source.name;
        match (secrets.hook(name), addr) {
            (Some(_), Some(addr)) => {
                tracing::info!(source = name, url = %format!("http://{addr}{}", source.route), "accepting hooks");
            }
            (Some(_), None) => {
                tracing::info!(source = name, route = source.route, "accepting hooks")
            }
            (None, _) => tracing::info!(
                source = name,
                route = source.route,
                "hooks off: --{} turns them on",
                source.secret_flag
            ),
        }
    }
    let metrics = Metrics::default();
    let metrics_task = metrics_listener.map(|listener| {
        let (metrics, timeouts, mut stopped) =
            (metrics.clone(), config.timeouts.clone(), stopped.clone());
        tokio::spawn(async move {
            metrics::serve(metrics, listener, &timeouts, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        })
    });
    let hooks = Hooks {
        api,
        secrets,
        statuses,
        body_timeout: config.timeouts.body,
        metrics,
    };
    let router = http::router(hooks);
    let served = http::serve(listener, router, &config.timeouts, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    for task in tasks {
        let _ = task.await;
    }
    if let Some(task) = checks_task {
        let _ = task.await;
    }
    if let Some(task) = metrics_task {
        if let Ok(Err(err)) = task.await {
            tracing::error!(%err, "the metrics listener failed");
        }
    }
    served.map_err(Error::Serve)
}

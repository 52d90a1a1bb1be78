//! The `slipway-provider` command line. Every flag can also be set from a
//! `SLIPWAY_*` environment variable; every secret can also be read from a file
//! (a swarm secret under `/run/secrets`), is read by [`slipway_secret::read`]
//! (trailing newlines are not part of it), and `Debug` never shows one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};

pub use slipway_secret::Secret;

use crate::hooks::SOURCES;

const DEFAULT_LISTEN: &str = "127.0.0.1:8701";
const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
const DEFAULT_GITLAB_URL: &str = "https://gitlab.com";
/// Absolute, so the journal does not depend on where the provider was started
/// from (the runner keeps its mirrors in `/var/lib/slipway-runner`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/slipway-provider";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "slipway-provider",
    version,
    about = "Turns verified GitHub, GitLab and CI hooks into Slipway deployments, and reports \
             their statuses back to GitHub"
)]
pub struct Config {
    /// Address the hook endpoints listen on.
    #[arg(long, env = "SLIPWAY_PROVIDER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// The Slipway API's root URL (e.g. http://127.0.0.1:8700).
    #[arg(long, env = "SLIPWAY_API_URL")]
    pub api_url: String,

    /// A `provider` JWT for the API (`slipway-api token --role provider --subject github`).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding the provider JWT.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Where people open the API's deployment pages (e.g. https://slipway.example.com);
    /// GitHub statuses link to `<public-url>/deployments/<id>`.
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The hooks' secrets; each route answers 404 until its secret is set.
    #[command(flatten)]
    pub hooks: Hooks,

    /// Directory for the provider's own state: the journal of GitHub statuses
    /// still to post, so none is lost across restarts. Keep one per API: the
    /// journal is of that API's deployments.
    #[arg(
        long,
        env = "SLIPWAY_PROVIDER_DATA_DIR",
        default_value = DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,

    /// How often, in seconds, the deployments waiting for required checks
    /// are read and their commits' checks asked of GitHub or GitLab.
    #[arg(long, env = "SLIPWAY_CHECKS_EVERY", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub checks_every: u64,

    /// Address of a listener of its own serving Prometheus metrics at
    /// `GET /metrics` (e.g. 127.0.0.1:9701); without it there are none.
    #[arg(long, env = "SLIPWAY_PROVIDER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// How long a hook sender may take; not a flag (tests shorten them).
    #[arg(skip)]
    pub timeouts: crate::http::Timeouts,
}

/// The secrets of the hook routes and where statuses go, as one group: the
/// `slipway up` command takes the same flags. Each hook source
/// ([`crate::hooks::SOURCES`]) has its secret here as `--<flag>` and
/// `--<flag>-file`.
#[derive(Args, Debug, Clone)]
pub struct Hooks {
    /// Secret of the GitHub webhook (`X-Hub-Signature-256`); without it
    /// `/hooks/github` answers 404.
    #[arg(long, env = "SLIPWAY_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<Secret>,
    /// File holding the GitHub webhook secret.
    #[arg(
        long,
        env = "SLIPWAY_GITHUB_WEBHOOK_SECRET_FILE",
        conflicts_with = "github_webhook_secret"
    )]
    pub github_webhook_secret_file: Option<PathBuf>,

    /// GitHub token (`repo_deployment` scope, or a GitHub App's `deployments: write`)
    /// for deployment statuses; without it none are reported.
    #[arg(long, env = "SLIPWAY_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Secret>,
    /// File holding the GitHub token.
    #[arg(
        long,
        env = "SLIPWAY_GITHUB_TOKEN_FILE",
        conflicts_with = "github_token"
    )]
    pub github_token_file: Option<PathBuf>,

    /// GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "SLIPWAY_GITHUB_API_URL",
        default_value = DEFAULT_GITHUB_API_URL
    )]
    pub github_api_url: String,

    /// Token GitLab sends in `X-Gitlab-Token`; without it `/hooks/gitlab` answers 404.
    #[arg(long, env = "SLIPWAY_GITLAB_WEBHOOK_TOKEN", hide_env_values = true)]
    pub gitlab_webhook_token: Option<Secret>,
    /// File holding the GitLab webhook token.
    #[arg(
        long,
        env = "SLIPWAY_GITLAB_WEBHOOK_TOKEN_FILE",
        conflicts_with = "gitlab_webhook_token"
    )]
    pub gitlab_webhook_token_file: Option<PathBuf>,

    /// GitLab token (`read_api` scope) with which the pipelines of the
    /// commits deployments wait on are read (required checks); without it
    /// GitLab repositories' checks are not read.
    #[arg(long, env = "SLIPWAY_GITLAB_TOKEN", hide_env_values = true)]
    pub gitlab_token: Option<Secret>,
    /// File holding the GitLab token.
    #[arg(
        long,
        env = "SLIPWAY_GITLAB_TOKEN_FILE",
        conflicts_with = "gitlab_token"
    )]
    pub gitlab_token_file: Option<PathBuf>,

    /// The GitLab instance (its repositories' host; the API is under `/api/v4`).
    #[arg(long, env = "SLIPWAY_GITLAB_URL", default_value = DEFAULT_GITLAB_URL)]
    pub gitlab_url: String,

    /// Bearer token for `/hooks/generic`; without it that route answers 404.
    #[arg(long, env = "SLIPWAY_GENERIC_TOKEN", hide_env_values = true)]
    pub generic_token: Option<Secret>,
    /// File holding the generic hook token.
    #[arg(
        long,
        env = "SLIPWAY_GENERIC_TOKEN_FILE",
        conflicts_with = "generic_token"
    )]
    pub generic_token_file: Option<PathBuf>,
}

impl Config {
    /// The defaults, for an API at `api_url` with `token` (the environment is
    /// not read: this is for embedding and tests).
    pub fn new(api_url: impl Into<String>, token: impl Into<String>) -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("default address"),
            api_url: api_url.into(),
            token: Some(Secret::new(token)),
            token_file: None,
            public_url: None,
            hooks: Hooks {
                github_webhook_secret: None,
                github_webhook_secret_file: None,
                github_token: None,
                github_token_file: None,
                github_api_url: DEFAULT_GITHUB_API_URL.into(),
                gitlab_webhook_token: None,
                gitlab_webhook_token_file: None,
                gitlab_token: None,
                gitlab_token_file: None,
                gitlab_url: DEFAULT_GITLAB_URL.into(),
                generic_token: None,
                generic_token_file: None,
            },
            data_dir: DEFAULT_DATA_DIR.into(),
            checks_every: 15,
            metrics_listen: None,
            timeouts: crate::http::Timeouts::default(),
        }
    }

    /// Reads every secret (from its flag or its file) once, at start.
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        let token = slipway_secret::read("token", self.token.as_ref(), self.token_file.as_deref())?
            .ok_or(ConfigError::NoToken)?;
        let github_token = slipway_secret::read(
            "github-token",
            self.hooks.github_token.as_ref(),
            self.hooks.github_token_file.as_deref(),
        )?;
        let gitlab_token = slipway_secret::read(
            "gitlab-token",
            self.hooks.gitlab_token.as_ref(),
            self.hooks.gitlab_token_file.as_deref(),
        )?;
        let mut hooks = Vec::new();
        for source in SOURCES {
            let (value, file) = source.secret_flags(&self.hooks);
            if let Some(secret) = slipway_secret::read(source.secret_flag, value, file)? {
                hooks.push((source.name, secret));
            }
        }
        Ok(Secrets {
            token,
            github_token,
            gitlab_token,
            hooks,
        })
    }
}

/// The secrets the provider runs with, read once.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// The provider's JWT for the API.
    pub token: Secret,
    /// For GitHub deployment statuses; none are posted without it.
    pub github_token: Option<Secret>,
    /// For reading GitLab pipelines (required checks).
    pub gitlab_token: Option<Secret>,
    /// The secret of each hook source that is on, by the source's name.
    hooks: Vec<(&'static str, Secret)>,
}

impl Secrets {
    /// The secret that turns the hook source `name` on, when it is set.
    pub fn hook(&self, name: &str) -> Option<&Secret> {
        self.hooks
            .iter()
            .find(|(source, _)| *source == name)
            .map(|(_, secret)| secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no API token: set --token / SLIPWAY_TOKEN or --token-file / SLIPWAY_TOKEN_FILE \
         (`slipway-api token --role provider --subject provider`)"
    )]
    NoToken,
    #[error(transparent)]
    Secret(#[from] slipway_secret::Error),
    #[error("--{flag} {value:?} is not an http(s) URL")]
    NotAUrl { flag: &'static str, value: String },
}

/// Checks that `value` looks like an http(s) URL, and drops a trailing slash.
pub(crate) fn base_url(flag: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    let scheme_ok = trimmed.starts_with("http://") || trimmed.starts_with("https://");
    let host_ok = trimmed
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty());
    if scheme_ok && host_ok {
        Ok(trimmed.to_owned())
    } else {
        Err(ConfigError::NotAUrl {
            flag,
            value: value.to_owned(),
        })
    }
}

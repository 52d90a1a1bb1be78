//! Command-line configuration of `slipway-runner`. Every flag can also be set
//! from a `SLIPWAY_*` environment variable; `Debug` never shows a secret.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use slipway_secret::Secret;

use crate::registry::RegistryAuth;

#[derive(Parser, Debug)]
#[command(
    name = "slipway-runner",
    version,
    about = "Slipway's runner: deploys stacks to Docker Swarm"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Claim and carry out deployments (the default).
    Run(RunConfig),
    /// Print, as JSON, what a deployment would create; needs no engine.
    Plan(PlanConfig),
}

#[derive(Args, Clone)]
pub struct RunConfig {
    /// The API's root URL.
    #[arg(long, env = "SLIPWAY_API_URL", default_value = "http://127.0.0.1:8700")]
    pub api_url: String,
    /// A runner token (`slipway-api token --role runner --subject NAME`).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding the runner token.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The runner's name (default: the host name). The token's subject names
    /// it to the API; this one is for logs.
    #[arg(long, env = "SLIPWAY_RUNNER_NAME")]
    pub name: Option<String>,
    /// Labels the runner registers with (`--label swarm=prod-eu`; repeat, or
    /// comma-separated). An environment whose `runnerLabels` it has them all
    /// may be deployed by it; one that names labels it lacks is not offered.
    #[arg(
        long = "label",
        visible_alias = "labels",
        env = "SLIPWAY_RUNNER_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// How many deployments (of different environments) to carry out at once.
    #[arg(long, env = "SLIPWAY_RUNNER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// How often, in seconds, to report what runs on which node for every
    /// environment it may deploy (and after each deployment anyway).
    #[arg(
        long,
        env = "SLIPWAY_RUNNER_OBSERVE_EVERY",
        default_value_t = 60,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub observe_every: u64,
    /// Where repository mirrors are kept.
    #[arg(
        long,
        env = "SLIPWAY_WORKDIR",
        default_value = "/var/lib/slipway-runner"
    )]
    pub workdir: PathBuf,
    /// Docker engine (`unix:///var/run/docker.sock`, `tcp://host:2375`); default `DOCKER_HOST` or the local socket.
    #[arg(long, env = "SLIPWAY_DOCKER_HOST")]
    pub docker_host: Option<String>,
    #[command(flatten)]
    pub git: GitConfig,
    #[command(flatten)]
    pub registry: RegistryConfig,
    /// A `KEY=value` file: values for Compose interpolation and swarm secrets, masked in every log line.
    #[arg(long, env = "SLIPWAY_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .field("token_file", &self.token_file)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("concurrency", &self.concurrency)
            .field("observe_every", &self.observe_every)
            .field("workdir", &self.workdir)
            .field("docker_host", &self.docker_host)
            .field("git", &self.git)
            .field("registry", &self.registry)
            .field("secrets_file", &self.secrets_file)
            .finish()
    }
}

#[derive(Args, Clone, Debug)]
pub struct RegistryConfig {
    /// A Docker `config.json` (what `docker login` writes) with the
    /// credentials of private registries: used to resolve image tags to
    /// digests, and sent to the swarm with the services whose images they
    /// hold, so every node can pull.
    #[arg(long, env = "SLIPWAY_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
}

impl RegistryConfig {
    /// The credentials of `--registry-auth-file`; none without it. What the
    /// file holds that the runner does not use is logged.
    pub fn read(&self) -> Result<RegistryAuth, String> {
        let Some(path) = &self.registry_auth_file else {
            return Ok(RegistryAuth::none());
        };
        let auth = RegistryAuth::read(path).map_err(|err| err.to_string())?;
        for warning in &auth.warnings {
            tracing::warn!("{warning}");
        }
        Ok(auth)
    }
}

#[derive(Args, Clone)]
pub struct GitConfig {
    /// Private key for SSH repositories.
    #[arg(long, env = "SLIPWAY_GIT_SSH_KEY_FILE")]
    pub git_ssh_key_file: Option<PathBuf>,
    /// Token for HTTPS repositories (sent only over https:// to the
    /// repository's host).
    #[arg(long, env = "SLIPWAY_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<Secret>,
    /// OpenSSH known_hosts file SSH host keys must be in (default ~/.ssh/known_hosts).
    #[arg(long, env = "SLIPWAY_KNOWN_HOSTS_FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// CA certificates (PEM) that HTTPS git servers may be signed by,
    /// trusted besides the system's.
    #[arg(long, env = "SLIPWAY_GIT_CA_FILE")]
    pub git_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitConfig")
            .field("git_ssh_key_file", &self.git_ssh_key_file)
            .field("git_token", &self.git_token)
            .field("known_hosts_file", &self.known_hosts_file)
            .field("git_ca_file", &self.git_ca_file)
            .finish()
    }
}

#[derive(Args, Debug, Clone)]
pub struct PlanConfig {
    /// Repository: a path or a clone URL.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or commit.
    #[arg(long = "ref", default_value = "HEAD")]
    pub reference: String,
    #[arg(long)]
    pub environment: String,
    /// Application name (default: the repository's name).
    #[arg(long)]
    pub application: Option<String>,
    /// Path of the deploy spec in the repository.
    #[arg(long, default_value = "slipway.yml")]
    pub spec_path: String,
    /// A `KEY=value` file of secret values, as `run` takes it.
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    /// Compare with what runs on the engine instead of printing the plan.
    #[arg(long)]
    pub diff: bool,
    /// Docker engine for `--diff` (default `DOCKER_HOST` or the local socket).
    #[arg(long, env = "SLIPWAY_DOCKER_HOST")]
    pub docker_host: Option<String>,
    #[command(flatten)]
    pub git: GitConfig,
    /// For `--diff`, which resolves image tags to digests as a deployment does.
    #[command(flatten)]
    pub registry: RegistryConfig,
}

impl RunConfig {
    /// The runner's token, from `--token` or `--token-file`.
    pub fn token(&self) -> Result<Secret, String> {
        slipway_secret::read("token", self.token.as_ref(), self.token_file.as_deref())
            .map_err(|err| err.to_string())?
            .ok_or_else(|| {
                "no runner token: set --token / SLIPWAY_TOKEN or --token-file / SLIPWAY_TOKEN_FILE \
                 (`slipway-api token --role runner --subject NAME`)"
                    .into()
            })
    }
}

/// Reads a `KEY=value` secrets file (blank lines and `#` comments allowed).
pub fn read_secrets(path: Option<&PathBuf>) -> Result<BTreeMap<String, String>, String> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the secrets file {}: {err}", path.display()))?;
    let mut secrets = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            // The line itself may be a secret: say where, not what.
            return Err(format!("{}:{}: expected KEY=value", path.display(), n + 1));
        };
        secrets.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(secrets)
}

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use slipway_runner::config::{read_secrets, Cli, Command, PlanConfig, RunConfig};
use slipway_runner::git::{Credentials, Mirrors};
use slipway_runner::swarm::{self, Engine};
use slipway_runner::work::{self, Runner};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run).await,
        Some(Command::Run(config)) => run(config).await,
        Some(Command::Plan(config)) => plan(config).await,
    }
}

async fn run(config: RunConfig) -> anyhow::Result<()> {
    let token = config.token().map_err(anyhow::Error::msg)?;
    let secrets = read_secrets(config.secrets_file.as_ref()).map_err(anyhow::Error::msg)?;
    let registry_auth = config.registry.read().map_err(anyhow::Error::msg)?;
    let engine = Engine::connect(config.docker_host.as_deref()).await?;
    engine.check_manager().await?;
    let name = config.name.clone().unwrap_or_else(hostname);
    let mut runner = Runner::open(
        slipway_client::Client::new(&config.api_url, token.expose()),
        name,
        &config.workdir,
        engine,
        credentials(&config.git),
    )?;
    runner.labels = config.labels.clone();
    runner.secrets = secrets;
    runner.registry_auth = registry_auth;
    runner.concurrency = config.concurrency;
    runner.observe_every = std::time::Duration::from_secs(config.observe_every);
    work::run(runner, shutdown_signal()).await;
    Ok(())
}

async fn plan(config: PlanConfig) -> anyhow::Result<()> {
    let secrets = read_secrets(config.secrets_file.as_ref()).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir().context("temporary mirror")?;
    let repo = match std::path::Path::new(&config.repo).canonicalize() {
        Ok(path) => format!("file://{}", path.display()),
        Err(_) => config.repo.clone(),
    };
    let mirrors = Mirrors::new(dir.path(), credentials(&config.git));
    let (reference, sha) = if is_sha(&config.reference) {
        (config.reference.clone(), Some(config.reference.clone()))
    } else {
        (config.reference.clone(), None)
    };
    let fetched = mirrors
        .fetch(&repo, &reference, sha.as_deref(), Duration::from_secs(600))
        .await?;
    let application = config.application.clone().unwrap_or_else(|| {
        repo.trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("app")
            .trim_end_matches(".git")
            .to_owned()
    });
    let ctx = slipway_runner::spec::Context {
        application,
        environment: config.environment.clone(),
        deployment: "plan".into(),
        sha: fetched.sha.clone(),
        ref_name: reference,
        secrets,
    };
    let files = slipway_runner::git::CommitFiles::open(&fetched.mirror, &fetched.sha)?;
    let plan = slipway_runner::spec::load(&files, &config.spec_path, &ctx)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    if config.diff {
        let registry_auth = config.registry.read().map_err(anyhow::Error::msg)?;
        let engine = Engine::connect(config.docker_host.as_deref()).await?;
        // Digests as a deployment would pin them now: a tag that moved is a change.
        let mut plan = plan;
        let deployed = swarm::apply::snapshot(&engine, &plan.stack).await?;
        let resolution = swarm::resolve(&engine, &mut plan, &deployed, &registry_auth)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        for warning in &resolution.warnings {
            eprintln!("warning: {warning}");
        }
        let diff = swarm::diff::diff(&engine, &plan).await?;
        let out = serde_json::json!({"stack": plan.stack, "services": diff});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    }
    Ok(())
}

fn is_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn credentials(git: &slipway_runner::config::GitConfig) -> Credentials {
    Credentials {
        ssh_key: git.git_ssh_key_file.clone(),
        token: git.git_token.clone(),
        known_hosts: git.known_hosts_file.clone(),
        ca_file: git.git_ca_file.clone(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "runner".into())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

//! The `slipway` command: Slipway in one process for one machine (`slipway
//! up`), and the commands operators use from a terminal or a CI script.
//!
//! # Layout
//!
//! - [`config`]: the command line; every flag also a `SLIPWAY_*` variable.
//! - [`up`]: the API (embedded SQLite), a runner and the provider in one
//!   process, after checking that the engine is a swarm manager.
//! - [`secret`]: the data directory's JWT secret, shared by `up` and `token`.
//! - [`commands`]: the client commands, one GraphQL operation each (they live
//!   in `client/graphql/cli.graphql`).
//! - [`follow`]: following a deployment's phases and log lines to its end.
//! - [`releases`]: an environment's releases, rolling back to one, resuming
//!   the auto-deploys a rollback paused, and how environments differ.
//! - [`view`]: what the commands print, and plain tables.
//!
//! Errors end as one sentence on stderr (the API's code and message when the
//! API refused), or as `{"error": {"code", "message"}}` with `--output json`.

pub mod commands;
pub mod config;
pub mod follow;
pub mod freeze;
pub mod nodes;
pub mod notify;
pub mod releases;
pub mod runners;
pub mod secret;
pub mod up;
pub mod view;

use std::future::Future;
use std::process::ExitCode;

use slipway_api::auth::Keys;

use crate::config::{AppCommand, Cli, Command, EnvCommand, Output, TokenConfig};

/// Runs one command; `shutdown` stops `slipway up`.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<ExitCode> {
    let output = cli.output;
    match cli.command {
        Command::Up(config) => up::run(*config, shutdown).await.map(|()| ExitCode::SUCCESS),
        Command::App(AppCommand::Create(args)) => commands::app_create(args, output).await,
        Command::Env(EnvCommand::Create(args)) => commands::env_create(args, output).await,
        Command::Env(EnvCommand::Lock(args)) => commands::env_lock(args, output).await,
        Command::Env(EnvCommand::Unlock(args)) => commands::env_unlock(args, output).await,
        Command::Env(EnvCommand::Approval(args)) => commands::env_approval(args, output).await,
        Command::Env(EnvCommand::Freeze(args)) => freeze::add(args, output).await,
        Command::Env(EnvCommand::Freezes(args)) => freeze::list(args, output).await,
        Command::Env(EnvCommand::Unfreeze(args)) => freeze::remove(args, output).await,
        Command::Env(EnvCommand::Notify(args)) => notify::set(args, output).await,
        Command::Env(EnvCommand::Notifications(args)) => notify::list(args, output).await,
        Command::Env(EnvCommand::Unnotify(args)) => notify::remove(args, output).await,
        Command::Env(EnvCommand::Checks(args)) => commands::env_checks(args, output).await,
        Command::Env(EnvCommand::Runners(args)) => runners::set(args, output).await,
        Command::Deploy(args) => commands::deploy(args, output).await,
        Command::Status(args) => commands::status(args, output).await,
        Command::Deployments(args) => commands::deployments(args, output).await,
        Command::Audit(args) => commands::audit(args, output).await,
        Command::Runners(args) => runners::list(args, output).await,
        Command::Releases(args) => releases::list(args, output).await,
        Command::Rollback(args) => releases::rollback(args, output).await,
        Command::Resume(args) => releases::resume(args, output).await,
        Command::Logs(args) => commands::logs(args, output).await,
        Command::Cancel(args) => commands::cancel(args, output).await,
        Command::Approve(args) => commands::approve(args, output).await,
        Command::Reject(args) => commands::reject(args, output).await,
        Command::OverrideFreeze(args) => freeze::override_freeze(args, output).await,
        Command::Token(config) => token(config, output),
    }
}

fn token(config: TokenConfig, output: Output) -> anyhow::Result<ExitCode> {
    let secret = secret::for_token(&config)?;
    let now = chrono::Utc::now();
    let token = Keys::new(&secret).issue(&config.subject, config.role, config.ttl, now);
    match output {
        Output::Text => println!("{token}"),
        Output::Json => commands::print_json(&serde_json::json!({
            "token": token,
            "role": config.role.as_str(),
            "subject": config.subject,
            "expiresAt": (now + config.ttl).to_rfc3339(),
        })),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an error the way `output` asks: the API's code and message when it
/// was the API's refusal.
pub fn report_error(err: &anyhow::Error, output: Output) {
    let (code, message) = match err.downcast_ref::<slipway_client::Error>() {
        Some(slipway_client::Error::Api { code, message }) => {
            (code.as_str().to_owned(), message.clone())
        }
        Some(transport @ slipway_client::Error::Transport { .. }) => {
            ("UNREACHABLE".to_owned(), transport.to_string())
        }
        _ => ("ERROR".to_owned(), format!("{err:#}")),
    };
    match output {
        Output::Json => eprintln!(
            "{}",
            serde_json::json!({"error": {"code": code, "message": message}})
        ),
        Output::Text => {
            let hint = match code.as_str() {
                "UNAUTHENTICATED" => {
                    "\n(check SLIPWAY_TOKEN: `slipway up` prints an admin token at every start)"
                }
                "FORBIDDEN" => "\n(this needs a token of another role: `slipway token --role ...`)",
                "UNREACHABLE" => "\n(is `slipway up` running? check SLIPWAY_API_URL / --api-url)",
                _ => "",
            };
            if code == "ERROR" {
                eprintln!("error: {message}{hint}");
            } else {
                eprintln!("error: {code}: {message}{hint}");
            }
        }
    }
}

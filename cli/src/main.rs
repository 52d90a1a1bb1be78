use std::process::ExitCode;

use clap::Parser;
use slipway_cli::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `up` logs what its parts do; the client commands only warn.
    let default_filter = match cli.command {
        Command::Up(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let output = cli.output;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(slipway_cli::run(cli, shutdown_signal())) {
        Ok(code) => code,
        Err(err) => {
            slipway_cli::report_error(&err, output);
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

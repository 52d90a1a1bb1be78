//! Resident memory of the `slipway-runner` binary, as its own process, idle
//! after it has registered with an in-process API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use slipway_api::auth::Role;
use slipway_testkit::bench::{mib, ms_rounded as ms, Row};
use tokio::process::Command;
use tokio::time::timeout;

use crate::{start_api, wait_registered, Counts};

/// The `slipway-runner` binary Cargo built with this bench.
fn runner_binary() -> Result<PathBuf> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_slipway-runner"));
    if built.exists() {
        return Ok(built);
    }
    // target/<profile>/deps/runner-<hash> → target/<profile>/slipway-runner
    let beside = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("slipway-runner"));
    match beside {
        Some(path) if path.exists() => Ok(path),
        _ => bail!(
            "no slipway-runner binary at {}; build it with `cargo build --release -p slipway-runner`",
            built.display()
        ),
    }
}

/// `VmRSS`, `VmHWM` (bytes) and `Threads` of a process.
fn proc_status(pid: u32) -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        let number: u64 = line[name.len()..]
            .split_whitespace()
            .next()
            .context("a number")?
            .parse()?;
        Ok(if line.ends_with("kB") {
            number * 1024
        } else {
            number
        })
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?, field("Threads:")?))
}

pub(crate) async fn bench(counts: Counts) -> Result<Vec<Row>> {
    let binary = runner_binary()?;
    let api = start_api().await;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("runner.log");
    let name = "bench-idle-runner";
    let token = api.token(Role::Runner, name);
    let workdir = dir.path().join("work");
    let mut child = Command::new(&binary)
        .arg("run")
        .arg("--api-url")
        .arg(api.base_url())
        .arg("--token")
        .arg(&token)
        .arg("--workdir")
        .arg(&workdir)
        .arg("--name")
        .arg(name)
        .env("SLIPWAY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the runner's pid")?;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let registered = wait_registered(&api, name, || match child.try_wait()? {
        Some(status) => bail!("slipway-runner exited ({status}): {}", log()),
        None => Ok(()),
    })
    .await?;
    tokio::time::sleep(counts.idle).await;
    if let Some(status) = child.try_wait()? {
        bail!("slipway-runner exited while idle ({status}): {}", log());
    }
    let (rss, hwm, threads) = proc_status(pid)?;
    child.start_kill()?;
    let _ = timeout(Duration::from_secs(10), child.wait()).await;
    if !log().contains("listening for deployments") {
        eprintln!("the runner never said it was listening:\n{}", log());
    }
    let binary_size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    Ok(vec![
        Row::target(
            "memory",
            format!(
                "**VmRSS of `slipway-runner`, idle {} s after registering**",
                counts.idle.as_secs()
            ),
            format!("**{}** (VmHWM {}, {threads} threads)", mib(rss), mib(hwm)),
            "< 30 MiB",
            rss < 30 * 1024 * 1024,
        ),
        Row::info(
            "memory",
            "start → listed by `runners { name }`",
            format!("{} (binary {})", ms(registered), mib(binary_size)),
        ),
    ])
}

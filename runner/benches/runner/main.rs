//! Benchmarks of the runner (issue 3), against real servers on 127.0.0.1:
//!
//! - `fetch`: `Mirrors::fetch` of a commit by sha into a fresh mirror against
//!   `git clone --depth 1` of the same repository, both from a `git daemon`
//!   serving a generated repository with a realistic history; and a redeploy
//!   (fetch of a sha already in the mirror) against a fresh fetch;
//! - `deploy`: a 5-service stack deployed end to end by an in-process runner
//!   (in-process API on a temp SQLite file, `createDeployment` → `SUCCEEDED`)
//!   against `docker stack deploy --detach=false` of the same Compose file on
//!   the same engine;
//! - `memory`: resident memory of the `slipway-runner` binary, as its own
//!   process, idle after it has registered with an in-process API;
//! - `resolve`: resolving image tags to digests against the local registries
//!   (per image, open and private registry and a local image; five images
//!   together), and the resolve step's share of a deployment's time;
//! - `update`: the same stack on images of the open registry updated after
//!   a commit, by the runner and by `docker stack deploy --detach=false
//!   --resolve-image always`, and how far each finishes after the floor (the
//!   last task RUNNING plus the monitor period).
//!
//! ```text
//! cargo bench -p slipway-runner --bench runner                  # everything
//! cargo bench -p slipway-runner --bench runner -- fetch memory  # a subset
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-runner --bench runner  # fewer runs
//! SLIPWAY_BENCH_RUNS=3 cargo bench -p slipway-runner --bench runner   # 3 runs of each
//! ```
//!
//! `deploy`, `memory` and `resolve` need a Docker engine in swarm mode and
//! the local images `slipway-test/busybox:latest`; `resolve` also the
//! registries on 127.0.0.1 (`scripts/test-env.sh`). Every wait
//! has a time limit. The bench exits non-zero when a bench fails, not when a
//! target is missed: the table's `met` column says that.
//!
//! One bench binary, a module per bench.

mod deploy;
mod fetch;
mod memory;
mod resolve;
mod update;

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_testkit::api::{Options, TestApi};
use slipway_testkit::bench::{self, Row};
use tokio::process::Command;
use tokio::time::timeout;

const BENCHES: [&str; 5] = ["fetch", "deploy", "memory", "resolve", "update"];
/// Longest a process may take to start, answer or register.
const START_WAIT: Duration = Duration::from_secs(30);
const IMAGE: &str = "slipway-test/busybox:latest";

#[derive(Clone, Copy)]
struct Counts {
    fetch: usize,
    deploy: usize,
    idle: Duration,
    /// Resolutions of each kind of image.
    resolve: usize,
}

fn counts() -> Counts {
    let quick = bench::quick();
    let mut counts = if quick {
        Counts {
            fetch: 3,
            deploy: 2,
            idle: Duration::from_secs(3),
            resolve: 20,
        }
    } else {
        Counts {
            fetch: 10,
            deploy: 5,
            idle: Duration::from_secs(5),
            resolve: 100,
        }
    };
    if let Some(runs) = std::env::var("SLIPWAY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        counts.fetch = runs;
        counts.deploy = runs;
    }
    counts
}

fn main() -> ExitCode {
    let selected = match bench::selected(&BENCHES) {
        Ok(selected) => selected,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let counts = counts();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    let mut rows = Vec::new();
    let mut failed = false;
    for name in selected {
        eprintln!("== {name}");
        let started = Instant::now();
        let result = runtime.block_on(async {
            match name {
                "fetch" => fetch::bench(counts).await,
                "deploy" => deploy::bench(counts).await,
                "resolve" => resolve::bench(counts).await,
                "update" => update::bench(counts).await,
                _ => memory::bench(counts).await,
            }
        });
        match result {
            Ok(mut more) => rows.append(&mut more),
            Err(err) => {
                failed = true;
                eprintln!("{name}: FAILED: {err:#}");
                rows.push(Row::info(name, "FAILED", format!("{err:#}")));
            }
        }
        eprintln!("== {name} took {:.1} s", started.elapsed().as_secs_f64());
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    bench::print_table("result", &rows);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------- helpers

/// `min – max` of `samples`, each shown with `show`.
fn spread(samples: &[Duration], show: fn(Duration) -> String) -> String {
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    format!("{} – {}", show(min), show(max))
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `program args` to its end within `within`; fails with its stderr
/// unless it succeeds. Returns stdout.
async fn run(program: &str, args: &[&str], dir: Option<&Path>, within: Duration) -> Result<String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let out = timeout(within, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("`{program} {}` took longer than {within:?}", args.join(" ")))??;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------- the API

/// The real API on 127.0.0.1 over a temp-file SQLite database.
async fn start_api() -> TestApi {
    TestApi::launch(Options {
        logs: false,
        ..Options::default()
    })
    .await
}

/// `data` of a GraphQL request to `api`; fails on any error or after
/// [`START_WAIT`].
async fn gql(api: &TestApi, token: &str, query: &str, variables: Value) -> Result<Value> {
    timeout(START_WAIT, api.try_ok(token, query, variables))
        .await
        .map_err(|_| anyhow!("the API did not answer within {START_WAIT:?}"))?
        .map_err(|err| anyhow!(err))
}

/// Waits until the API's `runners` lists `name`; returns how long it took.
async fn wait_registered(
    api: &TestApi,
    name: &str,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let viewer = api.token(Role::Viewer, "bench");
    let started = Instant::now();
    loop {
        let data = gql(api, &viewer, "{ runners { name } }", json!({})).await?;
        let listed = data["runners"]
            .as_array()
            .is_some_and(|list| list.iter().any(|r| r["name"] == name));
        if listed {
            return Ok(started.elapsed());
        }
        alive()?;
        if started.elapsed() > START_WAIT {
            bail!("runner {name} did not register within {START_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Benchmarks of the provider (issue 4): signed GitHub `deployment` hooks
//! against the real provider, with the real API on a temp-file SQLite
//! database and a fake GitHub that takes the statuses the provider reports
//! meanwhile, all on 127.0.0.1 in this process.
//!
//! - `latency`: 1,000 hooks one after another; time from sending to the 2xx
//!   answer (the API has stored the deployment by then), p50 and p99.
//! - `throughput`: 4,000 hooks from 16 concurrent senders; hooks per second.
//!
//! The servers run on a Tokio runtime of their own and the senders on another,
//! both on the machine's cores. Every hook is a new GitHub deployment (a new `externalId`), so each one
//! creates a deployment and journals it for its statuses.
//!
//! ```text
//! cargo bench -p slipway-provider --bench hooks
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-provider --bench hooks   # a tenth of the counts
//! ```
//!
//! One bench binary, a module per bench.

mod latency;
mod throughput;

use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::json;
use slipway_testkit::api::{Options, TestApi};
use slipway_testkit::bench;
use slipway_testkit::fakes::github::{self, FakeGithub, REPO};
use slipway_testkit::provider::{config, TestProvider};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const WARM_UP: usize = 50;

/// The servers under test and what the senders count.
struct Bench {
    provider: TestProvider,
    github: FakeGithub,
    next_id: AtomicU64,
    /// The highest deployment number answered (numbers are dense per application).
    highest: AtomicI64,
    _api: TestApi,
    _data_dir: tempfile::TempDir,
}

impl Bench {
    /// Starts the API, the fake GitHub and the provider on `servers`, a
    /// runtime of their own, so they and the senders are scheduled like
    /// separate programs.
    async fn start(servers: tokio::runtime::Handle) -> Result<Bench> {
        servers
            .spawn(Self::start_servers())
            .await
            .context("server start-up panicked")?
    }

    async fn start_servers() -> Result<Bench> {
        let api = TestApi::launch(Options {
            logs: false,
            ..Options::default()
        })
        .await;
        let github = FakeGithub::start().await;
        api.app(
            "shop",
            &format!("https://github.com/{REPO}.git"),
            &[("production", None, None)],
        )
        .await;
        let data_dir = tempfile::tempdir()?;
        let provider = TestProvider::start(config(&api, &github, data_dir.path().to_owned())).await;
        Ok(Bench {
            provider,
            github,
            next_id: AtomicU64::new(7_000_000_000),
            highest: AtomicI64::new(0),
            _api: api,
            _data_dir: data_dir,
        })
    }

    /// Sends one new signed `deployment` hook; returns how long the 2xx took.
    async fn hook(&self) -> Result<Duration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let event = github::deployment_event(
            id,
            "production",
            SHA,
            json!({"bench": true}),
            &format!("https://github.com/{REPO}.git"),
        );
        let started = Instant::now();
        let (status, answer) = self
            .provider
            .github("deployment", &format!("bench-{id}"), &event)
            .await;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("hook answered {status}: {answer}");
        }
        let number = answer["deployments"][0]["number"]
            .as_i64()
            .with_context(|| format!("no deployment in {answer}"))?;
        self.highest.fetch_max(number, Ordering::Relaxed);
        Ok(took)
    }
}

fn main() -> ExitCode {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("servers")
        .build()
        .expect("server runtime");
    let senders = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("senders")
        .build()
        .expect("sender runtime");
    let outcome = senders.block_on(run(servers.handle().clone()));
    senders.shutdown_background();
    servers.shutdown_background();
    match outcome {
        Ok(met) => {
            if !met {
                println!("\nsome targets were NOT met");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            println!("FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs both benches; whether every target was met.
async fn run(servers: tokio::runtime::Handle) -> Result<bool> {
    let quick = bench::quick();
    let scale = |n: usize| if quick { (n / 10).max(1) } else { n };
    println!("{}", bench::banner("slipway-provider", quick));
    let bench = Arc::new(Bench::start(servers).await?);
    for _ in 0..WARM_UP {
        bench.hook().await?;
    }
    let mut rows = latency::bench(&bench, scale(latency::HOOKS)).await?;
    rows.extend(throughput::bench(&bench, scale(throughput::HOOKS)).await?);

    let expected = (WARM_UP + scale(latency::HOOKS) + scale(throughput::HOOKS)) as u64;
    let stored = bench.highest.load(Ordering::Relaxed) as u64;
    ensure!(
        stored == expected,
        "the API stored {stored} deployments, not {expected}"
    );
    // The reporter catches up with the queued statuses of them all.
    let catch_up = Instant::now();
    while (bench.github.status_count() as u64) < expected {
        ensure!(
            catch_up.elapsed() < Duration::from_secs(120),
            "only {} of {expected} queued statuses posted after 120 s",
            bench.github.status_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "\n== statuses: all {expected} `queued` statuses posted {:.2} s after the last hook",
        catch_up.elapsed().as_secs_f64()
    );

    bench::print_table("value", &rows);
    Ok(rows.iter().all(|row| row.met != Some(false)))
}

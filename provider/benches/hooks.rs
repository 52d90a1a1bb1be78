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

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use slipway_provider::{signature, Config, Secret};
use tokio::net::TcpListener;

const JWT_SECRET: &[u8] = b"slipway-provider-bench-secret-0123456789";
const HOOK_SECRET: &str = "bench-webhook-secret";
const REPO: &str = "acme/shop";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const LATENCY_HOOKS: usize = 1_000;
const THROUGHPUT_HOOKS: usize = 4_000;
const SENDERS: usize = 16;
const WARM_UP: usize = 50;
const P99_TARGET: Duration = Duration::from_millis(25);
const RATE_TARGET: f64 = 300.0;

struct Bench {
    provider: SocketAddr,
    http: reqwest::Client,
    next_id: AtomicU64,
    statuses: Arc<AtomicUsize>,
    /// The highest deployment number answered (numbers are dense per application).
    highest: AtomicI64,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
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
        let api_dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            api_dir.path().join("api.db").display()
        );
        let conn = db::connect(&url).await.context("connect")?;
        db::migrate(&conn).await.context("migrate")?;
        let state = AppState::new(
            conn,
            Keys::new(JWT_SECRET),
            Clock::system(),
            Settings::default(),
        );
        let api_listener = TcpListener::bind("127.0.0.1:0").await?;
        let api_addr = api_listener.local_addr()?;
        tokio::spawn({
            let state = state.clone();
            async move {
                let _ = slipway_api::serve(state, api_listener, std::future::pending()).await;
            }
        });

        // A fake GitHub that takes every status.
        let statuses = Arc::new(AtomicUsize::new(0));
        let github = Router::new().route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses",
            post({
                let statuses = statuses.clone();
                move || async move {
                    statuses.fetch_add(1, Ordering::Relaxed);
                    (StatusCode::CREATED, Json(json!({"id": 1})))
                }
            }),
        );
        let github_listener = TcpListener::bind("127.0.0.1:0").await?;
        let github_addr = github_listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(github_listener, github).await;
        });

        let admin = state.keys.issue(
            "admin",
            Role::Admin,
            chrono::Duration::hours(2),
            chrono::Utc::now(),
        );
        let http = reqwest::Client::new();
        for query in [
            json!({"query": "mutation { createApplication(input: {name: \"shop\", repository: \"https://github.com/acme/shop.git\"}) { name } }"}),
            json!({"query": "mutation { createEnvironment(input: {application: \"shop\", name: \"production\"}) { name } }"}),
        ] {
            let answer: Value = http
                .post(format!("http://{api_addr}/graphql"))
                .bearer_auth(&admin)
                .json(&query)
                .send()
                .await?
                .json()
                .await?;
            ensure!(answer.get("errors").is_none(), "setting up: {answer}");
        }

        let data_dir = tempfile::tempdir()?;
        let token = state.keys.issue(
            "provider",
            Role::Provider,
            chrono::Duration::hours(2),
            chrono::Utc::now(),
        );
        let mut config = Config::new(format!("http://{api_addr}"), token);
        config.hooks.github_webhook_secret = Some(Secret::new(HOOK_SECRET));
        config.hooks.github_token = Some(Secret::new("ghp_bench"));
        config.hooks.github_api_url = format!("http://{github_addr}");
        config.public_url = Some("https://slipway.example.com".into());
        config.data_dir = data_dir.path().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let provider = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(err) = slipway_provider::run(config, listener, std::future::pending()).await
            {
                eprintln!("the provider stopped: {err}");
            }
        });
        Ok(Bench {
            provider,
            http,
            next_id: AtomicU64::new(7_000_000_000),
            statuses,
            highest: AtomicI64::new(0),
            _dirs: (api_dir, data_dir),
        })
    }

    /// Sends one new signed `deployment` hook; returns how long the 2xx took.
    async fn hook(&self) -> Result<Duration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&json!({
            "action": "created",
            "deployment": {
                "id": id, "sha": SHA, "ref": "main", "task": "deploy",
                "environment": "production", "payload": {"bench": true},
                "description": "bench", "creator": {"login": "octocat"},
            },
            "repository": {
                "full_name": REPO,
                "clone_url": "https://github.com/acme/shop.git",
                "ssh_url": "git@github.com:acme/shop.git",
            },
        }))?;
        let signature = signature::sign_github(HOOK_SECRET.as_bytes(), &body);
        let started = Instant::now();
        let response = self
            .http
            .post(format!("http://{}/hooks/github", self.provider))
            .header("X-GitHub-Event", "deployment")
            .header("X-GitHub-Delivery", format!("bench-{id}"))
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("hook answered {status}: {text}");
        }
        let answer: Value = serde_json::from_str(&text)?;
        let number = answer["deployments"][0]["number"]
            .as_i64()
            .with_context(|| format!("no deployment in {text}"))?;
        self.highest.fetch_max(number, Ordering::Relaxed);
        Ok(took)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
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
    let outcome = senders.block_on(bench(servers.handle().clone()));
    senders.shutdown_background();
    servers.shutdown_background();
    match outcome {
        Ok(met) => {
            if met {
                ExitCode::SUCCESS
            } else {
                println!("\nsome targets were NOT met");
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            println!("FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(servers: tokio::runtime::Handle) -> Result<bool> {
    let quick = std::env::var("SLIPWAY_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let scale = |n: usize| if quick { (n / 10).max(1) } else { n };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "slipway-provider benchmarks: {cores} cores, {} counts{}",
        if quick { "quick (1/10)" } else { "full" },
        if cfg!(debug_assertions) {
            " — DEBUG BUILD, figures are meaningless"
        } else {
            ""
        }
    );
    let bench = Arc::new(Bench::start(servers).await?);
    for _ in 0..WARM_UP {
        bench.hook().await?;
    }

    // Latency: one hook at a time.
    let count = scale(LATENCY_HOOKS);
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        times.push(bench.hook().await?);
    }
    times.sort();
    let (p50, p99, max) = (
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        *times.last().unwrap(),
    );
    println!("\n== latency ({count} hooks, one at a time)");
    println!("   p50 {}   p99 {}   max {}", ms(p50), ms(p99), ms(max));

    // Throughput: 16 concurrent senders.
    let count = scale(THROUGHPUT_HOOKS);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let bench = bench.clone();
        let next = next.clone();
        senders.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                times.push(bench.hook().await?);
            }
            anyhow::Ok(times)
        }))
    }
    let mut times = Vec::with_capacity(count);
    for sender in senders {
        times.extend(sender.await??);
    }
    let elapsed = started.elapsed();
    times.sort();
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("\n== throughput ({count} hooks, {SENDERS} concurrent senders)");
    println!(
        "   {rate:.0} hooks/s over {:.2} s   p50 {}   p99 {}",
        elapsed.as_secs_f64(),
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99))
    );

    let expected = (WARM_UP + scale(LATENCY_HOOKS) + count) as u64;
    let stored = bench.highest.load(Ordering::Relaxed) as u64;
    ensure!(
        stored == expected,
        "the API stored {stored} deployments, not {expected}"
    );
    // The reporter catches up with the queued statuses of them all.
    let catch_up = Instant::now();
    while (bench.statuses.load(Ordering::Relaxed) as u64) < expected {
        ensure!(
            catch_up.elapsed() < Duration::from_secs(120),
            "only {} of {expected} queued statuses posted after 120 s",
            bench.statuses.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "\n== statuses: all {expected} `queued` statuses posted {:.2} s after the last hook",
        catch_up.elapsed().as_secs_f64()
    );

    let p99_met = p99 < P99_TARGET;
    let rate_met = rate >= RATE_TARGET;
    println!("\n| metric | value | target | met |\n|---|---|---|---|");
    println!("| time to 2xx, p50 | {} | | |", ms(p50));
    println!(
        "| time to 2xx, p99 | {} | < 25 ms | {} |",
        ms(p99),
        if p99_met { "yes" } else { "NO" }
    );
    println!(
        "| hooks/s, {SENDERS} senders | {rate:.0} | ≥ 300 | {} |",
        if rate_met { "yes" } else { "NO" }
    );
    Ok(p99_met && rate_met)
}

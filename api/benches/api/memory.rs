//! Resident memory of the `slipway-api` process after 10,000 deployments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::json;
use slipway_api::auth::{Keys, Role};
use slipway_testkit::bench::Row;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::{graphql, http_client, Scale, CLIENTS, CREATE_DEPLOYMENT, LIST_QUERY, WAIT};

/// The JWT secret of the spawned API.
const SECRET: &str = "slipway-bench-secret-0123456789abcdef";

/// The spawned API; killed when dropped.
struct ApiProcess(Child);

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `slipway-api` of the same profile as this bench.
fn api_binary() -> Result<PathBuf> {
    // Cargo builds the package's binaries for its benches and says where.
    if let Some(path) = option_env!("CARGO_BIN_EXE_slipway-api") {
        if Path::new(path).exists() {
            return Ok(path.into());
        }
    }
    // target/<profile>/deps/api-<hash> → target/<profile>/slipway-api
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench executable has no target/<profile> directory")?;
    let path = profile_dir.join(format!("slipway-api{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} is missing: build it with `cargo build --release -p slipway-api`",
            path.display()
        )
    }
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> String {
    slipway_testkit::bench::mib(kib * 1024)
}

fn token(keys: &Keys, subject: &str, role: Role) -> String {
    keys.issue(
        subject,
        role,
        chrono::Duration::hours(4),
        chrono::Utc::now(),
    )
}

pub(crate) async fn bench(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "memory";
    let count = scale.of(10_000);
    let applications = 5;
    let environments = 20;
    let binary = api_binary()?;
    let dir = tempfile::tempdir()?;
    let port = slipway_testkit::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log_path = dir.path().join("api.log");
    let child = Command::new(&binary)
        .env("SLIPWAY_JWT_SECRET", SECRET)
        .env(
            "SLIPWAY_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("slipway.db").display()
            ),
        )
        .env("SLIPWAY_LISTEN", addr.to_string())
        .env("SLIPWAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut process = ApiProcess(child);
    let pid = process.0.id();
    let log_tail = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log[start..].to_owned()
    };

    let client = http_client()?;
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = process.0.try_wait()? {
            bail!("the API exited with {status}: {}", log_tail());
        }
        let ready = client
            .get(format!("http://{addr}/readyz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("the API was not ready within {WAIT:?}: {}", log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (idle_rss, _) = memory_of(pid)?;

    let keys = Keys::new(SECRET.as_bytes());
    let admin = token(&keys, "bench-admin", Role::Admin);
    let deployer = token(&keys, "bench-deployer", Role::Deployer);
    for app in 0..applications {
        graphql(
            &client,
            addr,
            &admin,
            "mutation($name: String!, $repo: String!) { createApplication(input: {name: $name, repository: $repo}) { id } }",
            json!({"name": format!("mem-{app}"), "repo": format!("https://git.example.com/mem-{app}.git")}),
        )
        .await?;
    }
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<JoinHandle<Result<()>>> = (0..CLIENTS)
        .map(|_| {
            let (client, deployer, next) = (client.clone(), deployer.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    let input = json!({
                        "application": format!("mem-{}", i % applications),
                        "environment": format!("env-{}", (i / applications) % environments),
                        "ref": format!("refs/heads/feature-{i}"),
                        "sha": format!("{:040x}", i * 2_654_435_761),
                        "description": format!("bench deployment {i}"),
                    });
                    graphql(
                        &client,
                        addr,
                        &deployer,
                        CREATE_DEPLOYMENT,
                        json!({"input": input}),
                    )
                    .await?;
                }
            })
        })
        .collect();
    for worker in workers {
        timeout(Duration::from_secs(600), worker)
            .await
            .context("creating deployments took more than 10 minutes")???;
    }
    let create_time = started.elapsed();
    // Read them back too, as a dashboard would.
    let viewer = token(&keys, "bench-viewer", Role::Viewer);
    for _ in 0..100 {
        graphql(&client, addr, &viewer, LIST_QUERY, json!({})).await?;
    }
    let (rss, hwm) = memory_of(pid)?;
    if let Some(status) = process.0.try_wait()? {
        bail!("the API exited with {status}: {}", log_tail());
    }
    drop(process);

    let rate = count as f64 / create_time.as_secs_f64();
    println!(
        "   {}: idle {}; after {count} deployments (+100 list queries) VmRSS {}, peak (VmHWM) {}",
        binary.display(),
        mib(idle_rss),
        mib(rss),
        mib(hwm)
    );
    println!(
        "   created {count} deployments over HTTP in {:.1} s = {rate:.0}/s with {CLIENTS} clients",
        create_time.as_secs_f64()
    );
    let limit = 64 * 1024;
    Ok(vec![
        Row::info(
            B,
            "setup",
            format!(
                "separate process; {count} createDeployment over HTTP, {applications} apps × {environments} envs, {CLIENTS} clients"
            ),
        ),
        Row::info(B, "VmRSS idle", mib(idle_rss)),
        Row::target(
            B,
            format!("VmRSS after {count} deployments"),
            mib(rss),
            "< 64 MiB",
            rss < limit,
        ),
        Row::info(B, "VmHWM (peak RSS)", mib(hwm)),
        Row::info(
            B,
            "createDeployment throughput",
            format!("{rate:.0}/s"),
        ),
    ])
}

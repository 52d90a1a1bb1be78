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
//!   process, idle after it has registered with an in-process API.
//!
//! ```text
//! cargo bench -p slipway-runner --bench runner                  # everything
//! cargo bench -p slipway-runner --bench runner -- fetch memory  # a subset
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-runner --bench runner  # fewer runs
//! SLIPWAY_BENCH_RUNS=3 cargo bench -p slipway-runner --bench runner   # 3 runs of each
//! ```
//!
//! `deploy` and `memory` need a Docker engine in swarm mode and the local
//! images `slipway-test/busybox:latest` (`scripts/test-env.sh`). Every wait
//! has a time limit. The bench exits non-zero when a bench fails, not when a
//! target is missed: the table's `met` column says that.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use slipway_runner::git::{Credentials, Mirrors};
use slipway_runner::swarm::Engine;
use slipway_runner::work::Runner;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

const BENCHES: [&str; 3] = ["fetch", "deploy", "memory"];
const SECRET: &[u8] = b"slipway-runner-bench-secret-0123456789";
/// Longest a single git fetch or clone may take.
const GIT_WAIT: Duration = Duration::from_secs(120);
/// Longest a deployment (either way) may take.
const DEPLOY_WAIT: Duration = Duration::from_secs(180);
/// Longest a stack may take to disappear after `docker stack rm`.
const REMOVE_WAIT: Duration = Duration::from_secs(120);
/// Longest a process may take to start, answer or register.
const START_WAIT: Duration = Duration::from_secs(30);
/// How often the bench looks at a deployment's status.
const POLL: Duration = Duration::from_millis(20);
const STACK_LABEL: &str = "com.docker.stack.namespace";
const IMAGE: &str = "slipway-test/busybox:latest";

/// One line of the final table.
struct Row {
    bench: &'static str,
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn info(bench: &'static str, metric: impl Into<String>, value: impl Into<String>) -> Self {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            met: None,
        }
    }

    fn target(
        bench: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            met: Some(met),
        }
    }
}

/// How many runs each comparison makes.
#[derive(Clone, Copy)]
struct Counts {
    fetch: usize,
    deploy: usize,
    idle: Duration,
}

fn counts() -> Counts {
    let quick = std::env::var_os("SLIPWAY_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
    let mut counts = if quick {
        Counts {
            fetch: 3,
            deploy: 2,
            idle: Duration::from_secs(3),
        }
    } else {
        Counts {
            fetch: 10,
            deploy: 5,
            idle: Duration::from_secs(5),
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
    // `cargo bench` passes `--bench`; other words name benches.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let unknown: Vec<&String> = words
        .iter()
        .filter(|w| !BENCHES.contains(&w.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!(
            "unknown bench {unknown:?}; choose among {}",
            BENCHES.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let selected: Vec<&str> = BENCHES
        .iter()
        .copied()
        .filter(|b| words.is_empty() || words.iter().any(|w| w == b))
        .collect();
    let counts = counts();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    let mut rows = Vec::new();
    let mut failed = false;
    for bench in selected {
        eprintln!("== {bench}");
        let started = Instant::now();
        let result = runtime.block_on(async {
            match bench {
                "fetch" => fetch_bench(counts).await,
                "deploy" => deploy_bench(counts).await,
                _ => memory_bench(counts).await,
            }
        });
        match result {
            Ok(mut more) => rows.append(&mut more),
            Err(err) => {
                failed = true;
                eprintln!("{bench}: FAILED: {err:#}");
                rows.push(Row::info(bench, "FAILED", format!("{err:#}")));
            }
        }
        eprintln!("== {bench} took {:.1} s", started.elapsed().as_secs_f64());
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    print_table(&rows);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(rows: &[Row]) {
    let header = ["bench", "metric", "result", "target", "met"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.to_owned(),
                r.metric.clone(),
                r.value.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w - cell.chars().count();
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out
    };
    println!();
    println!("{}", line(&header.map(String::from)));
    println!(
        "|{}",
        widths.map(|w| format!("{}|", "-".repeat(w + 2))).join("")
    );
    for row in &cells {
        println!("{}", line(row));
    }
}

// ---------------------------------------------------------------- helpers

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn spread(samples: &[Duration], show: fn(Duration) -> String) -> String {
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    format!("{} – {}", show(min), show(max))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
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

async fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

// ---------------------------------------------------------------- fetch

/// A deterministic stream of pseudo-random numbers (an LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

const FILES: usize = 400;
const COMMITS: usize = 300;
/// Lines per file (about 60 bytes each, so about 14 KiB per file).
const LINES: usize = 240;

/// A source-like line of pseudo-random words.
fn source_line(rng: &mut Lcg, vocabulary: &[String]) -> String {
    let indent = "    ".repeat((rng.next() % 3) as usize);
    let words = 5 + rng.next() % 6;
    let mut line = indent;
    for i in 0..words {
        if i > 0 {
            line.push(if rng.next().is_multiple_of(5) {
                '.'
            } else {
                ' '
            });
        }
        line.push_str(&vocabulary[(rng.next() as usize) % vocabulary.len()]);
    }
    line.push_str(if rng.next().is_multiple_of(4) {
        " {"
    } else {
        ";"
    });
    line
}

/// A `git fast-import` stream: `COMMITS` commits on `main`, the first adding
/// `FILES` files, each later one rewriting a few lines of 3–12 files (and now
/// and then adding one).
fn history() -> Vec<u8> {
    let mut rng = Lcg(0x5111_9a7e);
    let vocabulary: Vec<String> = (0..3000)
        .map(|_| {
            let len = 3 + rng.next() % 8;
            (0..len)
                .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut files: Vec<(String, Vec<String>)> = (0..FILES)
        .map(|i| {
            let path = format!("src/module{:02}/file{i:03}.rs", i % 40);
            let lines = (0..LINES)
                .map(|_| source_line(&mut rng, &vocabulary))
                .collect();
            (path, lines)
        })
        .collect();
    let mut out = Vec::new();
    for n in 1..=COMMITS {
        let when = 1_700_000_000 + n as u64 * 3600;
        let message = format!("change {n}\n");
        out.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{n}\ncommitter Bench <bench@slipway.invalid> {when} +0000\ndata {}\n{message}",
                message.len()
            )
            .as_bytes(),
        );
        if n > 1 {
            out.extend_from_slice(format!("from :{}\n", n - 1).as_bytes());
        }
        let touched: Vec<usize> = if n == 1 {
            (0..files.len()).collect()
        } else {
            if n % 10 == 0 {
                let i = files.len();
                let lines = (0..LINES)
                    .map(|_| source_line(&mut rng, &vocabulary))
                    .collect();
                files.push((format!("src/module{:02}/file{i:03}.rs", i % 40), lines));
            }
            let count = 3 + rng.next() % 10;
            let mut touched: Vec<usize> = (0..count)
                .map(|_| (rng.next() as usize) % files.len())
                .collect();
            touched.sort_unstable();
            touched.dedup();
            for &i in &touched {
                for _ in 0..(1 + rng.next() % 8) {
                    let at = (rng.next() as usize) % files[i].1.len();
                    files[i].1[at] = source_line(&mut rng, &vocabulary);
                }
            }
            touched
        };
        for i in touched {
            let content = files[i].1.join("\n") + "\n";
            blob(&mut out, &files[i].0, &content);
        }
        if n == 1 {
            let spec =
                "stack: shop\ncompose: docker-compose.yml\nenvironments:\n  production: {}\n";
            blob(&mut out, "slipway.yml", spec);
            blob(&mut out, "docker-compose.yml", &compose_file());
        }
        out.push(b'\n');
    }
    out
}

/// A file of a `git fast-import` commit.
fn blob(out: &mut Vec<u8>, path: &str, content: &str) {
    out.extend_from_slice(format!("M 100644 inline {path}\ndata {}\n", content.len()).as_bytes());
    out.extend_from_slice(content.as_bytes());
    out.push(b'\n');
}

/// A bare repository with a generated history, served by `git daemon`.
struct GitServer {
    daemon: tokio::process::Child,
    port: u16,
    sha: String,
    packed_bytes: u64,
    _dir: tempfile::TempDir,
}

impl GitServer {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo.git");
        let repo_str = repo.to_str().context("temp path is UTF-8")?;
        run(
            "git",
            &["init", "-q", "--bare", "-b", "main", repo_str],
            None,
            GIT_WAIT,
        )
        .await?;
        run(
            "git",
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
            Some(&repo),
            GIT_WAIT,
        )
        .await?;
        let stream = tokio::task::spawn_blocking(history).await?;
        let mut import = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&repo)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting git fast-import")?;
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = import.stdin.take().context("fast-import's stdin")?;
            timeout(GIT_WAIT, stdin.write_all(&stream))
                .await
                .context("feeding git fast-import")??;
        }
        let out = timeout(GIT_WAIT, import.wait_with_output())
            .await
            .context("git fast-import")??;
        if !out.status.success() {
            bail!(
                "git fast-import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Pack it (with deltas) the way a server keeps it.
        run(
            "git",
            &["repack", "-a", "-d", "-f", "-q"],
            Some(&repo),
            GIT_WAIT,
        )
        .await?;
        let sha = run("git", &["rev-parse", "main"], Some(&repo), GIT_WAIT)
            .await?
            .trim()
            .to_owned();
        let packed_bytes = dir_size(&repo.join("objects"));

        let port = free_port().await?;
        let base = dir.path().to_str().context("temp path is UTF-8")?;
        // `git daemon` would run `git-daemon` as a child that outlives a
        // killed `git`: start `git-daemon` itself, so that killing it works.
        let exec_path = run("git", &["--exec-path"], None, GIT_WAIT).await?;
        let mut daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--export-all",
                "--reuseaddr",
                &format!("--base-path={base}"),
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                base,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting git-daemon")?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = daemon.try_wait()? {
                bail!("git daemon exited at once ({status})");
            }
            if Instant::now() > deadline {
                bail!("git daemon did not listen on port {port} within {START_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            daemon,
            port,
            sha,
            packed_bytes,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.start_kill();
    }
}

async fn fetch_bench(counts: Counts) -> Result<Vec<Row>> {
    let started = Instant::now();
    let server = GitServer::start().await?;
    let url = server.url();
    let sha = server.sha.clone();
    eprintln!(
        "repository: {COMMITS} commits, {}+ files, {} packed, made in {:.1} s; serving {url}",
        FILES,
        mib(server.packed_bytes),
        started.elapsed().as_secs_f64()
    );

    let fresh_fetch = |dir: PathBuf| {
        let url = url.clone();
        let sha = sha.clone();
        async move {
            let mirrors = Mirrors::new(dir, Credentials::default());
            let t = Instant::now();
            let fetched = mirrors
                .fetch(&url, "main", Some(&sha), GIT_WAIT)
                .await
                .map_err(|e| anyhow!("Mirrors::fetch: {e}"))?;
            let took = t.elapsed();
            if fetched.cached || fetched.sha != sha {
                bail!("a fresh fetch answered {fetched:?}");
            }
            Ok::<_, anyhow::Error>((mirrors, took, fetched))
        }
    };
    let clone = |dir: PathBuf, bare: bool| {
        let url = url.clone();
        async move {
            let target = dir.join("repo");
            let target = target.to_str().context("temp path is UTF-8")?.to_owned();
            let mut args = vec!["clone", "-q", "--depth", "1"];
            if bare {
                args.push("--bare");
            }
            args.extend([url.as_str(), target.as_str()]);
            let t = Instant::now();
            run("git", &args, None, GIT_WAIT).await?;
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    };

    // Warm up: the server's page cache, and the first connection.
    {
        let dir = tempfile::tempdir()?;
        let (_, _, fetched) = fresh_fetch(dir.path().join("mirrors")).await?;
        eprintln!(
            "warm-up fetch: {} ({} bytes)",
            fetched.how, fetched.received_bytes
        );
        let dir = tempfile::tempdir()?;
        clone(dir.path().to_owned(), false).await?;
    }

    let mut fetches = Vec::new();
    let mut clones = Vec::new();
    let mut bare_clones = Vec::new();
    let mut cached = Vec::new();
    let mut received = 0;
    let mut how = String::new();
    let mut mirror_bytes = 0;
    let mut clone_bytes = 0;
    for i in 0..counts.fetch {
        // Alternate which goes first.
        let order: [u8; 3] = if i % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            let dir = tempfile::tempdir()?;
            match which {
                0 => {
                    let (mirrors, took, fetched) = fresh_fetch(dir.path().join("mirrors")).await?;
                    fetches.push(took);
                    received = fetched.received_bytes;
                    how = fetched.how.replace(&sha, &sha[..7]);
                    mirror_bytes = dir_size(dir.path());
                    // A redeploy of the same commit.
                    let t = Instant::now();
                    let again = mirrors
                        .fetch(&url, "main", Some(&sha), GIT_WAIT)
                        .await
                        .map_err(|e| anyhow!("cached Mirrors::fetch: {e}"))?;
                    cached.push(t.elapsed());
                    if !again.cached {
                        bail!(
                            "the second fetch of {sha} was not served from the mirror: {again:?}"
                        );
                    }
                }
                1 => {
                    clones.push(clone(dir.path().to_owned(), false).await?);
                    clone_bytes = dir_size(&dir.path().join("repo/.git"));
                }
                _ => bare_clones.push(clone(dir.path().to_owned(), true).await?),
            }
        }
        eprintln!(
            "run {}: fetch {}, clone {}, clone --bare {}, cached {}",
            i + 1,
            ms(*fetches.last().unwrap_or(&Duration::ZERO)),
            ms(*clones.last().unwrap_or(&Duration::ZERO)),
            ms(*bare_clones.last().unwrap_or(&Duration::ZERO)),
            ms(*cached.last().unwrap_or(&Duration::ZERO)),
        );
    }
    let packed_bytes = server.packed_bytes;
    drop(server);

    let fetch = median(&fetches);
    let clone = median(&clones);
    let bare = median(&bare_clones);
    let hit = median(&cached);
    let ratio = fetch.as_secs_f64() / clone.as_secs_f64();
    let speedup = fetch.as_secs_f64() / hit.as_secs_f64().max(1e-9);
    let n = counts.fetch;
    Ok(vec![
        Row::info(
            "fetch",
            "repository",
            format!(
                "{COMMITS} commits, {} files at the tip, {} packed on the server",
                FILES + COMMITS / 10 + 2,
                mib(packed_bytes)
            ),
        ),
        Row::info(
            "fetch",
            format!("`Mirrors::fetch` by sha into a fresh mirror, median of {n}"),
            format!(
                "{} ({}; {} received, mirror {} on disk; range {})",
                ms(fetch),
                how,
                mib(received as u64),
                mib(mirror_bytes),
                spread(&fetches, ms)
            ),
        ),
        Row::info(
            "fetch",
            format!("`git clone --depth 1`, median of {n}"),
            format!(
                "{} (.git {}; range {})",
                ms(clone),
                mib(clone_bytes),
                spread(&clones, ms)
            ),
        ),
        Row::info(
            "fetch",
            format!("`git clone --depth 1 --bare` (no checkout), median of {n}"),
            format!("{} (range {})", ms(bare), spread(&bare_clones, ms)),
        ),
        Row::target(
            "fetch",
            "**ratio fresh fetch / `git clone --depth 1`**",
            format!("{ratio:.2}×"),
            "≤ 1.2×",
            ratio <= 1.2,
        ),
        Row::info(
            "fetch",
            "ratio fresh fetch / `git clone --depth 1 --bare` (neither checks out)",
            format!("{:.2}×", fetch.as_secs_f64() / bare.as_secs_f64()),
        ),
        Row::info(
            "fetch",
            format!("fetch of a sha already in the mirror, median of {n}"),
            format!("{} (range {})", ms(hit), spread(&cached, ms)),
        ),
        Row::target(
            "fetch",
            "**redeploy (cached) speed-up over a fresh fetch**",
            format!("{speedup:.0}×"),
            "≥ 10×",
            speedup >= 10.0,
        ),
    ])
}

// ---------------------------------------------------------------- the API

/// The real API on 127.0.0.1 over a temp-file SQLite database.
struct Api {
    url: String,
    keys: Keys,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("api.db").display());
        let conn = db::connect(&url).await.context("opening SQLite")?;
        db::migrate(&conn).await.context("migrating")?;
        let keys = Keys::new(SECRET);
        let state = AppState::new(conn, keys.clone(), Clock::system(), Settings::default());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(err) = slipway_api::serve(state, listener, std::future::pending()).await {
                eprintln!("the API stopped: {err}");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            keys,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    fn token(&self, role: Role, subject: &str) -> String {
        self.keys
            .issue(subject, role, chrono::Duration::hours(2), Utc::now())
    }

    async fn gql(&self, token: &str, query: &str, variables: Value) -> Result<Value> {
        let request = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send();
        let body: Value = timeout(START_WAIT, async { request.await?.json().await })
            .await
            .map_err(|_| anyhow!("the API did not answer within {START_WAIT:?}"))??;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    /// Waits until the API's `runners` lists `name`; returns how long it took.
    async fn wait_registered(
        &self,
        name: &str,
        mut alive: impl FnMut() -> Result<()>,
    ) -> Result<Duration> {
        let viewer = self.token(Role::Viewer, "bench");
        let started = Instant::now();
        loop {
            let data = self.gql(&viewer, "{ runners { name } }", json!({})).await?;
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
}

// ---------------------------------------------------------------- deploy

const SERVICES: [(&str, u32); 5] = [
    ("web", 2),
    ("api", 2),
    ("worker", 1),
    ("cache", 1),
    ("cron", 1),
];

/// The stack both ways deploy: 5 services, 7 tasks, on `<stack>_default`.
fn compose_file() -> String {
    let mut out = String::from("version: \"3.8\"\nservices:\n");
    for (name, replicas) in SERVICES {
        let _ = write!(
            out,
            r#"  {name}:
    image: {IMAGE}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    environment:
      SERVICE: {name}
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s}}
      restart_policy: {{condition: any, delay: 1s}}
"#
        );
    }
    out
}

/// `docker stack rm`s the stacks it names when dropped, so a failed run
/// leaves nothing behind.
struct Stacks(Vec<String>);

impl Drop for Stacks {
    fn drop(&mut self) {
        for stack in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["stack", "rm", stack])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn label_filter(stack: &str) -> std::collections::HashMap<String, Vec<String>> {
    std::collections::HashMap::from([("label".to_owned(), vec![format!("{STACK_LABEL}={stack}")])])
}

async fn stack_service_count(engine: &Engine, stack: &str) -> Result<usize> {
    Ok(engine
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(label_filter(stack)),
            ..Default::default()
        }))
        .await?
        .len())
}

/// When the last task of `stack` became RUNNING, by the engine's clock
/// (the same host's).
async fn last_task_running(engine: &Engine, stack: &str) -> Result<DateTime<Utc>> {
    let names: Vec<String> = SERVICES
        .iter()
        .map(|(name, _)| format!("{stack}_{name}"))
        .collect();
    let tasks = engine
        .docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(std::collections::HashMap::from([(
                "service".to_owned(),
                names,
            )])),
        }))
        .await?;
    let mut last = None;
    let mut running = 0;
    for task in tasks {
        let status = serde_json::to_value(&task.status)?;
        if status["State"] == "running" {
            running += 1;
            let at = parse_time(&status["Timestamp"])?;
            last = last.max(Some(at));
        }
    }
    let want: u32 = SERVICES.iter().map(|(_, n)| n).sum();
    if running != want as usize {
        bail!("stack {stack} has {running} running tasks, not {want}");
    }
    last.context("no running task")
}

/// `docker stack rm`, then waits until the stack's services, containers and
/// networks are gone. Returns how long that took.
async fn remove_stack(engine: &Engine, stack: &str) -> Result<Duration> {
    let started = Instant::now();
    run("docker", &["stack", "rm", stack], None, REMOVE_WAIT).await?;
    loop {
        let services = stack_service_count(engine, stack).await?;
        let containers = engine
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(label_filter(stack)),
                ..Default::default()
            }))
            .await?
            .len();
        let networks = engine
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(label_filter(stack)),
            }))
            .await?
            .len();
        if services + containers + networks == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > REMOVE_WAIT {
            bail!(
                "stack {stack} still has {services} services, {containers} containers and \
                 {networks} networks {REMOVE_WAIT:?} after `docker stack rm`"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where the runner's time went in one deployment, from the API's timestamps
/// and the deployment log's.
#[derive(Default, Clone, Copy)]
struct Breakdown {
    /// `createdAt` → `startedAt`.
    claim: Duration,
    /// `startedAt` → the "fetched" line.
    fetch: Duration,
    /// "fetched" → the per-service "created" lines (spec, plan, apply).
    apply: Duration,
    /// "created" → the last "converged" line (every task running).
    running: Duration,
    /// last "converged" → "succeeded" (stable for the monitor period, prune).
    stable: Duration,
    /// "succeeded" line → `finishedAt`.
    finish: Duration,
    /// `createdAt` → `finishedAt`.
    server: Duration,
    /// When the runner logged the last service as converged.
    converged_at: DateTime<Utc>,
}

fn parse_time(value: &Value) -> Result<DateTime<Utc>> {
    let text = value.as_str().context("a timestamp")?;
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("timestamp {text}"))?
        .with_timezone(&Utc))
}

fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

fn breakdown(deployment: &Value) -> Result<Breakdown> {
    let created = parse_time(&deployment["createdAt"])?;
    let started = parse_time(&deployment["startedAt"])?;
    let finished = parse_time(&deployment["finishedAt"])?;
    let lines = deployment["logs"].as_array().context("logs")?;
    let at = |pred: &dyn Fn(&str) -> bool, last: bool| -> Result<DateTime<Utc>> {
        let mut found = lines
            .iter()
            .filter(|l| l["text"].as_str().is_some_and(pred));
        let line = if last {
            found.next_back()
        } else {
            found.next()
        };
        parse_time(&line.context("a log line the breakdown needs")?["at"])
    };
    let fetched = at(&|t| t.starts_with("fetched "), false)?;
    let applied = at(
        &|t| t.ends_with(": created") || t.ends_with(": updated"),
        true,
    )?;
    let converged = at(&|t| t.ends_with(": converged"), true)?;
    let succeeded = at(&|t| t.starts_with("succeeded: "), false)?;
    Ok(Breakdown {
        claim: between(created, started),
        fetch: between(started, fetched),
        apply: between(fetched, applied),
        running: between(applied, converged),
        stable: between(converged, succeeded),
        finish: between(succeeded, finished),
        server: between(created, finished),
        converged_at: converged,
    })
}

const CREATE: &str = "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { id } }";
const STATUS: &str = "query($id: ID!) { deployment(id: $id) { status message } }";
const DETAILS: &str = "query($id: ID!) { deployment(id: $id) { status message createdAt \
     startedAt finishedAt logs(first: 1000) { seq at text } } }";

/// One deployment by the runner: from sending `createDeployment` until the
/// bench sees `SUCCEEDED`.
async fn deploy_with_runner(
    api: &Api,
    deployer: &str,
    viewer: &str,
    environment: &str,
    sha: &str,
) -> Result<(Duration, Value)> {
    let started = Instant::now();
    let data = api
        .gql(
            deployer,
            CREATE,
            json!({"i": {"application": "shop", "environment": environment, "ref": "main", "sha": sha}}),
        )
        .await?;
    let id = data["createDeployment"]["id"]
        .as_str()
        .context("a deployment id")?
        .to_owned();
    loop {
        let d = api.gql(viewer, STATUS, json!({"id": id})).await?;
        match d["deployment"]["status"].as_str() {
            Some("SUCCEEDED") => break,
            Some("FAILED" | "CANCELLED") => {
                let details = api.gql(viewer, DETAILS, json!({"id": id})).await?;
                bail!("the deployment did not succeed: {details}");
            }
            _ => {}
        }
        if started.elapsed() > DEPLOY_WAIT {
            bail!("the deployment did not finish within {DEPLOY_WAIT:?}: {d}");
        }
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed();
    let details = api.gql(viewer, DETAILS, json!({"id": id})).await?;
    Ok((took, details["deployment"].clone()))
}

async fn deploy_bench(counts: Counts) -> Result<Vec<Row>> {
    let engine = Engine::connect(None).await.map_err(|err| {
        anyhow!("needs a Docker engine in swarm mode ({err}); run scripts/test-env.sh")
    })?;
    engine
        .check_manager()
        .await
        .map_err(|err| anyhow!("{err}; run scripts/test-env.sh"))?;
    engine
        .docker
        .inspect_image(IMAGE)
        .await
        .map_err(|err| anyhow!("image {IMAGE} is missing ({err}); run scripts/test-env.sh"))?;

    // Fresh stack names for every run, both ways; run 0 is a warm-up.
    let runs = counts.deploy + 1;
    let tag = format!("bench{}", Utc::now().timestamp_millis() % 1_000_000);
    let runner_stacks: Vec<String> = (0..runs).map(|i| format!("{tag}r{i}")).collect();
    let docker_stacks: Vec<String> = (0..runs).map(|i| format!("{tag}d{i}")).collect();
    let _cleanup = Stacks(
        runner_stacks
            .iter()
            .chain(&docker_stacks)
            .cloned()
            .collect(),
    );

    // The repository: one commit declaring an environment per run.
    let repo = tempfile::tempdir()?;
    let mut spec = String::from("stack: shop\ncompose: docker-compose.yml\nenvironments:\n");
    for (i, stack) in runner_stacks.iter().enumerate() {
        let _ = writeln!(spec, "  r{i}:\n    stack: {stack}");
    }
    std::fs::write(repo.path().join("slipway.yml"), spec)?;
    std::fs::write(repo.path().join("docker-compose.yml"), compose_file())?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["config", "user.email", "bench@slipway.invalid"],
        &["config", "user.name", "Slipway Bench"],
        &["add", "-A"],
        &["commit", "-q", "-m", "a 5-service stack"],
    ] {
        run("git", args, Some(repo.path()), GIT_WAIT).await?;
    }
    let sha = run("git", &["rev-parse", "HEAD"], Some(repo.path()), GIT_WAIT)
        .await?
        .trim()
        .to_owned();
    // `docker stack deploy` gets the very same file.
    let compose_dir = tempfile::tempdir()?;
    let compose_path = compose_dir.path().join("docker-compose.yml");
    std::fs::write(&compose_path, compose_file())?;
    let compose_path = compose_path
        .to_str()
        .context("temp path is UTF-8")?
        .to_owned();

    let api = Api::start().await?;
    let admin = api.token(Role::Admin, "bench");
    let deployer = api.token(Role::Deployer, "bench");
    let viewer = api.token(Role::Viewer, "bench");
    api.gql(
        &admin,
        "mutation($n: String!, $r: String!) { createApplication(input: {name: $n, repository: $r}) { name } }",
        json!({"n": "shop", "r": format!("file://{}", repo.path().display())}),
    )
    .await?;

    // The runner, in-process.
    let workdir = tempfile::tempdir()?;
    let mut runner = Runner::open(
        slipway_client::Client::new(&api.url, &api.token(Role::Runner, "bench-runner")),
        "bench-runner",
        workdir.path(),
        engine.clone(),
        Credentials::default(),
    )?;
    runner.labels = vec!["bench".into()];
    runner.concurrency = 1;
    runner.fetch_timeout = Duration::from_secs(60);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(slipway_runner::work::run(runner, async {
        let _ = stopped.await;
    }));
    api.wait_registered("bench-runner", || Ok(())).await?;
    // The runner subscribes right after registering; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut by_runner = Vec::new();
    let mut by_docker = Vec::new();
    let mut breakdowns = Vec::new();
    let mut removals = Vec::new();
    let mut runner_running = Vec::new();
    let mut runner_noticed = Vec::new();
    let mut docker_running = Vec::new();
    for i in 0..runs {
        let warm_up = i == 0;
        let runner_first = i % 2 == 0;
        for step in 0..2 {
            if (step == 0) == runner_first {
                let start = Utc::now();
                let (took, details) =
                    deploy_with_runner(&api, &deployer, &viewer, &format!("r{i}"), &sha).await?;
                let stack = &runner_stacks[i];
                let services = stack_service_count(&engine, stack).await?;
                if services != SERVICES.len() {
                    bail!("the runner's stack {stack} has {services} services");
                }
                let parts = breakdown(&details)?;
                let last_running = last_task_running(&engine, stack).await?;
                let engine_running = between(start, last_running);
                let noticed = between(last_running, parts.converged_at);
                eprintln!(
                    "run {i}{}: runner {} (last task running after {}, seen {} later; server {}: claim {}, fetch {}, apply {}, running {}, stable {}, finish {})",
                    if warm_up { " (warm-up)" } else { "" },
                    secs(took),
                    secs(engine_running),
                    ms(noticed),
                    secs(parts.server),
                    ms(parts.claim),
                    ms(parts.fetch),
                    ms(parts.apply),
                    ms(parts.running),
                    ms(parts.stable),
                    ms(parts.finish),
                );
                if !warm_up {
                    by_runner.push(took);
                    breakdowns.push(parts);
                    runner_running.push(engine_running);
                    runner_noticed.push(noticed);
                }
                removals.push(remove_stack(&engine, stack).await?);
            } else {
                let stack = &docker_stacks[i];
                let start = Utc::now();
                let started = Instant::now();
                run(
                    "docker",
                    &[
                        "stack",
                        "deploy",
                        "--detach=false",
                        "-c",
                        &compose_path,
                        stack,
                    ],
                    None,
                    DEPLOY_WAIT,
                )
                .await?;
                let took = started.elapsed();
                let services = stack_service_count(&engine, stack).await?;
                if services != SERVICES.len() {
                    bail!("docker stack deploy's stack {stack} has {services} services");
                }
                let engine_running = between(start, last_task_running(&engine, stack).await?);
                eprintln!(
                    "run {i}{}: docker stack deploy {} (last task running after {})",
                    if warm_up { " (warm-up)" } else { "" },
                    secs(took),
                    secs(engine_running),
                );
                if !warm_up {
                    by_docker.push(took);
                    docker_running.push(engine_running);
                }
                removals.push(remove_stack(&engine, stack).await?);
            }
        }
    }
    let _ = stop.send(());
    let _ = timeout(Duration::from_secs(10), task).await;

    let runner = median(&by_runner);
    let docker = median(&by_docker);
    let ratio = runner.as_secs_f64() / docker.as_secs_f64();
    let part =
        |f: fn(&Breakdown) -> Duration| median(&breakdowns.iter().map(f).collect::<Vec<_>>());
    let n = counts.deploy;
    Ok(vec![
        Row::info(
            "deploy",
            format!("runner: `createDeployment` → `SUCCEEDED` seen, median of {n}"),
            format!("{} (range {})", secs(runner), spread(&by_runner, secs)),
        ),
        Row::info(
            "deploy",
            format!("`docker stack deploy --detach=false`, median of {n}"),
            format!("{} (range {})", secs(docker), spread(&by_docker, secs)),
        ),
        Row::target(
            "deploy",
            "**ratio runner / `docker stack deploy`**",
            format!("{ratio:.2}×"),
            "≤ 1.1×",
            ratio <= 1.1,
        ),
        Row::info(
            "deploy",
            "runner breakdown (medians): claim / fetch / apply / all running / stable + prune / finish",
            format!(
                "{} / {} / {} / {} / {} / {} (server createdAt → finishedAt {})",
                ms(part(|b| b.claim)),
                ms(part(|b| b.fetch)),
                ms(part(|b| b.apply)),
                ms(part(|b| b.running)),
                ms(part(|b| b.stable)),
                ms(part(|b| b.finish)),
                secs(part(|b| b.server)),
            ),
        ),
        Row::info(
            "deploy",
            "start → last task RUNNING (engine timestamps), runner / docker, medians",
            format!(
                "{} / {}; the runner logged the last service converged {} after it",
                secs(median(&runner_running)),
                secs(median(&docker_running)),
                ms(median(&runner_noticed)),
            ),
        ),
        Row::info(
            "deploy",
            "`docker stack rm` until services, containers and network are gone (not timed above)",
            format!("median {}", secs(median(&removals))),
        ),
    ])
}

// ---------------------------------------------------------------- memory

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

async fn memory_bench(counts: Counts) -> Result<Vec<Row>> {
    let binary = runner_binary()?;
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("runner.log");
    let name = "bench-idle-runner";
    let token = api.token(Role::Runner, name);
    let workdir = dir.path().join("work");
    let mut child = Command::new(&binary)
        .arg("run")
        .arg("--api-url")
        .arg(&api.url)
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
    let registered = api
        .wait_registered(name, || match child.try_wait()? {
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

//! `Mirrors::fetch` of a commit by sha into a fresh mirror against `git clone
//! --depth 1` of the same repository, both from a `git daemon` serving a
//! generated repository with a realistic history; and a redeploy (fetch of a
//! sha already in the mirror) against a fresh fetch.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use slipway_runner::git::{Credentials, Mirrors};
use slipway_testkit::bench::{median, mib, ms_rounded as ms, Row};
use slipway_testkit::git::GitServer;
use tokio::process::Command;
use tokio::time::timeout;

use crate::deploy::compose_file;
use crate::{dir_size, run, spread, Counts};

/// Longest a single git fetch or clone may take.
const GIT_WAIT: Duration = Duration::from_secs(120);

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

/// The served repository, filled with a generated history.
struct Served {
    server: GitServer,
    sha: String,
    packed_bytes: u64,
    _dir: tempfile::TempDir,
}

/// Serves a bare repository holding [`history`], packed as a server keeps it.
async fn serve() -> Result<Served> {
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path()).await;
    let repo = server.bare().to_owned();
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
    Ok(Served {
        server,
        sha,
        packed_bytes,
        _dir: dir,
    })
}

pub(crate) async fn bench(counts: Counts) -> Result<Vec<Row>> {
    let started = Instant::now();
    let server = serve().await?;
    let url = server.server.url.clone();
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

//! End to end: a signed GitHub `deployment` hook for a one-service stack until
//! the service has converged, side by side with `docker stack deploy
//! --detach=false` of the same Compose file on the same engine. Rounds
//! alternate which goes first; figures are medians.
//!
//! ```sh
//! cargo build --release --workspace --bins      # the binaries under test
//! cargo bench -p slipway-e2e --bench e2e        # 9 rounds
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-e2e --bench e2e   # 3 rounds
//! ```
//!
//! Each round changes the service's environment, so both sides roll one task
//! (stop-first, `monitor: 1s`). Slipway's total runs from sending the hook
//! to the deployment's `finishedAt`; the breakdown comes from the API's
//! deployment timestamps and the runner's log line times.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use slipway_e2e::system::{compose, spec, System};
use slipway_testkit::bench::{median_of, quick};
use slipway_testkit::swarm::{self, StackGuard};

const IMAGE: &str = "slipway-test/busybox:latest";
const UPDATE: &str = "{parallelism: 1, delay: 0s, monitor: 1s}";
const WITHIN: Duration = Duration::from_secs(120);
/// Slipway's total may be at most this many times the bare command's.
const TARGET: f64 = 1.2;

#[derive(Default)]
struct Sample {
    /// The deployment's log, as `(seconds after the claim, text)`.
    log: Vec<(f64, String)>,
    total: f64,
    to_queued: f64,
    to_claimed: f64,
    fetch: f64,
    apply: f64,
    /// Until the runner saw every replica of the new spec up (`converged`).
    converge: f64,
    /// From then until the deployment finished: the runner's own stability wait.
    settle: f64,
    /// Until the fake GitHub received `success`.
    to_github: f64,
}

fn at(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("a timestamp, not {value}"))
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// The `at` of the first log line of `d` for which `pick` holds.
fn line_at(d: &Value, what: &str, pick: impl Fn(&str) -> bool) -> DateTime<Utc> {
    let line = d["logs"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["text"].as_str().is_some_and(&pick)))
        .unwrap_or_else(|| panic!("no {what} line in {}", d["logs"]));
    at(&line["at"])
}

async fn slipway_round(system: &System, stack: &str, round: u64) -> Sample {
    let sha = system.git.commit(
        "main",
        &[(
            "docker-compose.yml",
            &compose(IMAGE, 1, &format!("round {round}"), UPDATE),
        )],
        &format!("round {round}"),
    );
    let gh_id = 7_900_000_000 + round;
    let sent = Utc::now();
    let started = Instant::now();
    let id = system.deploy_hook(gh_id, &sha).await;
    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "round {round}: {d}");
    let states = system.wait_github_final(gh_id, WITHIN).await;
    assert_eq!(states.last().map(String::as_str), Some("success"));
    let to_github = system
        .github
        .statuses(gh_id)
        .last()
        .map(|s| s.at.duration_since(started).as_secs_f64())
        .unwrap_or(f64::NAN);

    let web = format!("{stack}_web: ");
    let created = at(&d["createdAt"]);
    let claimed = at(&d["startedAt"]);
    let finished = at(&d["finishedAt"]);
    let fetched = line_at(&d, "fetched", |t| t.starts_with("fetched "));
    let applied = line_at(&d, "service change", |t| {
        t.starts_with(&web) && (t.ends_with("updated") || t.ends_with("created"))
    });
    let log = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                secs(claimed, at(&l["at"])),
                l["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let converged = line_at(&d, "converged", |t| t == format!("{web}converged"));
    Sample {
        log,
        total: secs(sent, finished),
        to_queued: secs(sent, created),
        to_claimed: secs(created, claimed),
        fetch: secs(claimed, fetched),
        apply: secs(fetched, applied),
        converge: secs(applied, converged),
        settle: secs(converged, finished),
        to_github,
    }
}

fn bare_round(file: &std::path::Path, stack: &str, round: u64) -> f64 {
    std::fs::write(file, compose(IMAGE, 1, &format!("round {round}"), UPDATE)).unwrap();
    let started = Instant::now();
    let out = Command::new("docker")
        .args(["stack", "deploy", "--detach=false", "-c"])
        .arg(file)
        .arg(stack)
        .output()
        .expect("docker stack deploy runs");
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: u64 = if quick() { 3 } else { 9 };
    let stack = swarm::stack_name("bench");
    let bare_stack = format!("{stack}bare");
    let _guards = (
        StackGuard::new(stack.clone()),
        StackGuard::new(bare_stack.clone()),
    );
    let system = System::start().await;
    let file = system.dir().join("bare-compose.yml");

    // Round 0 creates both stacks and warms the mirror; it is not counted.
    system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &compose(IMAGE, 1, "round 0", UPDATE)),
        ],
        "round 0",
    );
    slipway_round(&system, &stack, 0).await;
    bare_round(&file, &bare_stack, 0);

    let mut slipway = Vec::new();
    let mut bare = Vec::new();
    for round in 1..=rounds {
        if round % 2 == 1 {
            slipway.push(slipway_round(&system, &stack, round).await);
            bare.push(bare_round(&file, &bare_stack, round));
        } else {
            bare.push(bare_round(&file, &bare_stack, round));
            slipway.push(slipway_round(&system, &stack, round).await);
        }
        let s = slipway.last().unwrap();
        eprintln!(
            "round {round}: slipway {:.2} s, docker stack deploy {:.2} s",
            s.total,
            bare.last().unwrap()
        );
    }
    swarm::wait_running(&format!("{stack}_web"), IMAGE, 1, WITHIN).await;

    let m = |f: fn(&Sample) -> f64| median_of(&slipway.iter().map(f).collect::<Vec<_>>());
    let total = m(|s| s.total);
    let bare_total = median_of(&bare);
    let ratio = total / bare_total;
    println!("end to end, {rounds} rounds, medians (seconds)");
    println!("| step | median |");
    println!("|---|---|");
    println!(
        "| hook sent → deployment queued (`createdAt`) | {:.3} |",
        m(|s| s.to_queued)
    );
    println!(
        "| queued → claimed by the runner (`startedAt`) | {:.3} |",
        m(|s| s.to_claimed)
    );
    println!(
        "| claimed → fetched (`fetched` line) | {:.3} |",
        m(|s| s.fetch)
    );
    println!(
        "| fetched → service updated (plan + apply) | {:.3} |",
        m(|s| s.apply)
    );
    println!(
        "| updated → swarm done, every new replica up (`converged` line) | {:.3} |",
        m(|s| s.converge)
    );
    println!(
        "| converged → finished (`finishedAt`): the runner's stability wait | {:.3} |",
        m(|s| s.settle)
    );
    println!("| **Slipway total: hook → finished** | **{total:.3}** |");
    println!(
        "| hook → GitHub has `success` | {:.3} |",
        m(|s| s.to_github)
    );
    println!("| **`docker stack deploy --detach=false`** | **{bare_total:.3}** |");
    println!(
        "| **ratio Slipway / bare** | **{ratio:.2}** (target ≤ {TARGET}: {}) |",
        if ratio <= TARGET { "met" } else { "NOT met" }
    );
    println!("the last round's deployment log (seconds after the claim):");
    for (t, text) in &slipway.last().unwrap().log {
        println!("  {t:>7.3}  {text}");
    }
    println!(
        "slipway totals: {:?}",
        slipway
            .iter()
            .map(|s| (s.total * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    println!(
        "bare totals:    {:?}",
        bare.iter()
            .map(|b| (b * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
}

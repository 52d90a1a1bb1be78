//! A soak: for a while, GitHub `deployment` hooks for several environments of
//! one application on the real swarm, with faults injected at random — the
//! runner SIGKILLed, the API SIGKILLed and started again, the provider
//! SIGKILLed and started again, the Docker engine refusing every call for a
//! few seconds, the git server slowed down for a while (both through
//! proxies between the runner and them) — then, once everything has
//! settled, checks:
//!
//! - every deployment reached a final state;
//! - each environment's release is what its stack runs (the greeting of the
//!   release's commit is the service's environment);
//! - every deployment's log is dense (1..=logCount, each once) and ends with
//!   exactly one last line;
//! - every GitHub deployment got its statuses in order, none twice, and one
//!   final status;
//! - memory stayed flat: each process's resident size after a warm-up round,
//!   at the end, and the most any of its incarnations held (each is measured
//!   before every fault and at the end), a figure to read, not a pass/fail.
//!
//! Bounded by time and not run in CI:
//!
//! ```sh
//! cargo build --release --workspace --bins
//! SLIPWAY_SOAK_MINUTES=10 cargo bench -p slipway-e2e --bench soak
//! SLIPWAY_SOAK_SEED=1234 ...    # replays the same faults and deployments
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slipway_e2e::system::{Links, System};
use slipway_testkit::fakes::github;
use slipway_testkit::swarm::{inspect_service, stack_name, StackGuard};

const ENVIRONMENTS: usize = 4;
const IMAGE: &str = "slipway-test/busybox:latest";
/// How long everything may take to settle once the faults stop.
const SETTLE: Duration = Duration::from_secs(300);

/// xorshift64*: reproducible from its seed, which the run prints.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn environment(n: usize) -> String {
    format!("soak{n}")
}

/// A spec with one stack per environment.
fn spec(prefix: &str) -> String {
    let mut text = String::from("compose: docker-compose.yml\nenvironments:\n");
    for n in 0..ENVIRONMENTS {
        text.push_str(&format!(
            "  {}:\n    stack: {prefix}-{n}\n    timeout: 2m\n",
            environment(n)
        ));
    }
    text
}

fn compose(greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["sleep", "3600"]
    environment:
      GREETING: "{greeting}"
    stop_grace_period: 1s
    deploy:
      replicas: 1
      update_config: {{parallelism: 1, delay: 0s, monitor: 1s}}
      restart_policy: {{delay: 1s}}
"#
    )
}

fn memory(system: &System) -> BTreeMap<&'static str, u64> {
    [
        ("api", system.api_process.rss_kib()),
        ("runner", system.runner.rss_kib()),
        ("provider", system.provider.rss_kib()),
    ]
    .into_iter()
    .map(|(name, kib)| (name, kib.unwrap_or(0)))
    .collect()
}

/// The `GREETING` a stack's web service runs now, if it exists.
fn running_greeting(stack: &str) -> Option<String> {
    let service = inspect_service(&format!("{stack}_web"))?;
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix("GREETING=").map(str::to_owned))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes: u64 = std::env::var("SLIPWAY_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("SLIPWAY_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("soak: {minutes} min, {ENVIRONMENTS} environments, seed {seed}");
    let mut random = Random(seed);
    let prefix = stack_name("soak");
    let _guards: Vec<StackGuard> = (0..ENVIRONMENTS)
        .map(|n| StackGuard::new(format!("{prefix}-{n}")))
        .collect();
    let mut system = System::start_with(Links::Proxied).await;
    for n in 0..ENVIRONMENTS {
        system
            .api
            .create_env("shop", &environment(n), None, "https://soak.example")
            .await;
    }

    // A warm-up round, so the memory at the start is of a process at work.
    let mut greetings: BTreeMap<String, String> = BTreeMap::new();
    let mut gh_ids: Vec<u64> = Vec::new();
    let mut next_gh = 8_100_000_000u64;
    let sha = system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec(&prefix)),
            ("docker-compose.yml", &compose("warm-up")),
        ],
        "warm-up",
    );
    greetings.insert(sha.clone(), "warm-up".into());
    for n in 0..ENVIRONMENTS {
        let id = deploy(&system, next_gh, &environment(n), &sha).await;
        gh_ids.push(next_gh);
        next_gh += 1;
        system.api.wait_final(&id, SETTLE).await;
    }
    let start_memory = memory(&system);
    // The most each process held, over all its incarnations: each is
    // measured before it is killed, and at the end.
    let mut peak = start_memory.clone();

    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let mut faults: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut commits = 0;
    let mut refused = 0;
    let mut slow_git_until: Option<Instant> = None;
    while Instant::now() < deadline {
        if slow_git_until.is_some_and(|until| Instant::now() >= until) {
            git_link(&system).restore();
            slow_git_until = None;
        }
        for (name, kib) in memory(&system) {
            let most = peak.entry(name).or_default();
            *most = (*most).max(kib);
        }
        match random.below(12) {
            // Most of the time: a new commit deployed to one environment.
            0..=6 => {
                commits += 1;
                let greeting = format!("commit {commits}");
                let sha = system.git.commit(
                    "main",
                    &[("docker-compose.yml", &compose(&greeting))],
                    &greeting,
                );
                greetings.insert(sha.clone(), greeting);
                let env = environment(random.below(ENVIRONMENTS as u64) as usize);
                let event =
                    github::deployment_event(next_gh, &env, &sha, json!({}), &system.repo_url);
                // The provider may be down or restarting: GitHub redelivers.
                let (status, _) = system
                    .hook("deployment", &format!("soak-{next_gh}"), &event)
                    .await;
                if status == 200 {
                    gh_ids.push(next_gh);
                } else {
                    refused += 1;
                }
                next_gh += 1;
            }
            7 => {
                *faults.entry("runner SIGKILL").or_default() += 1;
                system.restart_runner();
            }
            8 => {
                *faults.entry("API SIGKILL and restart").or_default() += 1;
                system.kill_api();
                tokio::time::sleep(Duration::from_millis(random.below(3000))).await;
                system.start_api_again().await;
            }
            9 => {
                *faults.entry("provider SIGKILL and restart").or_default() += 1;
                system.restart_provider().await;
            }
            10 => {
                *faults.entry("engine refusing calls for 1-5 s").or_default() += 1;
                let engine = system
                    .engine_link
                    .as_ref()
                    .expect("the engine behind a proxy");
                engine.cut();
                tokio::time::sleep(Duration::from_millis(1000 + random.below(4000))).await;
                engine.restore();
            }
            _ => {
                *faults.entry("git server slow for 5-30 s").or_default() += 1;
                git_link(&system).slow(Duration::from_millis(200 + random.below(1300)));
                slow_git_until = Some(Instant::now() + Duration::from_secs(5 + random.below(25)));
            }
        }
        tokio::time::sleep(Duration::from_millis(500 + random.below(4000))).await;
    }
    git_link(&system).restore();
    println!(
        "soak: {commits} commits, {} hooks accepted, {refused} not (the provider was down), faults {faults:?}",
        gh_ids.len()
    );

    // Settle: every deployment final.
    let settled = Instant::now();
    let deployments = loop {
        let all = all_deployments(&system).await;
        let open: Vec<&Value> = all
            .iter()
            .filter(|d| {
                !matches!(
                    d["status"].as_str(),
                    Some("SUCCEEDED" | "FAILED" | "CANCELLED")
                )
            })
            .collect();
        if open.is_empty() {
            break all;
        }
        assert!(
            settled.elapsed() < SETTLE,
            "deployments not final {} s after the faults stopped: {open:?}",
            SETTLE.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let end_memory = memory(&system);
    for (name, kib) in &end_memory {
        let most = peak.entry(*name).or_default();
        *most = (*most).max(*kib);
    }

    let mut problems: Vec<String> = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deployments {
        *by_status
            .entry(d["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        let full = system.api.deployment(d["id"].as_str().unwrap()).await;
        let seqs: Vec<i64> = full["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["seq"].as_i64().unwrap())
            .collect();
        let dense: Vec<i64> = (1..=full["logCount"].as_i64().unwrap()).collect();
        if seqs != dense {
            problems.push(format!("{}: log not dense: {seqs:?}", full["name"]));
        }
        let ends = full["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                let text = l["text"].as_str().unwrap_or("");
                ["succeeded: ", "failed: ", "cancelled: "]
                    .iter()
                    .any(|p| text.starts_with(p))
            })
            .count();
        if full["status"] != "CANCELLED" && full["runner"].is_string() && ends != 1 {
            problems.push(format!("{}: {ends} last lines", full["name"]));
        }
    }

    // What each environment's release says runs, against the swarm.
    for n in 0..ENVIRONMENTS {
        let env = environment(n);
        let release = system
            .api
            .gql(
                "query($e: String!) { application(name: \"shop\") { environment(name: $e) { release { sha } } } }",
                json!({"e": env}),
            )
            .await["application"]["environment"]["release"]["sha"]
            .as_str()
            .map(str::to_owned);
        let stack = format!("{prefix}-{n}");
        let want = release.as_ref().and_then(|sha| greetings.get(sha)).cloned();
        let runs = running_greeting(&stack);
        if want != runs {
            problems.push(format!(
                "{env}: the release ({release:?}) is {want:?} but the stack runs {runs:?}"
            ));
        }
    }

    // GitHub statuses: in order, none twice, one final.
    let order = ["queued", "in_progress", "success", "failure", "error"];
    for id in &gh_ids {
        let states = system.github.states(*id);
        let finals = states
            .iter()
            .filter(|s| matches!(s.as_str(), "success" | "failure" | "error"))
            .count();
        let unique: BTreeSet<&String> = states.iter().collect();
        let ranks: Vec<usize> = states
            .iter()
            .map(|s| order.iter().position(|o| o == s).unwrap_or(usize::MAX))
            .collect();
        if finals != 1 || unique.len() != states.len() || !ranks.is_sorted() {
            problems.push(format!("GitHub deployment {id}: statuses {states:?}"));
        }
    }

    println!("deployments: {} ({by_status:?})", deployments.len());
    // Why those that failed failed, by the message's first words.
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for d in deployments.iter().filter(|d| d["status"] == "FAILED") {
        let message = d["message"].as_str().unwrap_or("no message");
        let head: String = message
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        *why.entry(head).or_default() += 1;
    }
    for (head, n) in &why {
        println!("  failed {n}×: {head} …");
    }
    println!(
        "| process | RSS after warm-up (KiB) | at the end (KiB) | peak of any incarnation (KiB) | peak / start |"
    );
    println!("|---|---|---|---|---|");
    for (name, start) in &start_memory {
        println!(
            "| {name} | {start} | {} | {} | {:.2} |",
            end_memory[name],
            peak[name],
            peak[name] as f64 / (*start).max(1) as f64
        );
    }
    if problems.is_empty() {
        println!("soak: every check held");
    } else {
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        panic!("{} problem(s); seed {seed}", problems.len());
    }
}

fn git_link(system: &System) -> &slipway_testkit::proxy::Proxy {
    system
        .git_link
        .as_ref()
        .expect("the git server behind a proxy")
}

async fn deploy(system: &System, gh_id: u64, env: &str, sha: &str) -> String {
    let event = github::deployment_event(gh_id, env, sha, json!({}), &system.repo_url);
    let (status, body) = system
        .hook("deployment", &format!("soak-{gh_id}"), &event)
        .await;
    assert_eq!(status, 200, "{body}");
    body["deployments"][0]["id"].as_str().unwrap().to_owned()
}

/// Every deployment, through every page.
async fn all_deployments(system: &System) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = system
            .api
            .gql(
                "query($after: String) { deployments(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { id name status runner message } } }",
                json!({"after": after}),
            )
            .await["deployments"]
            .clone();
        all.extend(page["nodes"].as_array().cloned().unwrap_or_default());
        if page["pageInfo"]["hasNextPage"] != true {
            return all;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

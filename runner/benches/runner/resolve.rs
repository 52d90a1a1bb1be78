//! Digest resolution against the local registries of `scripts/test-env.sh`,
//! and its share of a deployment's time.
//!
//! - per image: `swarm::resolve` of a one-service plan (read with
//!   `spec::load`), nothing deployed yet, for an image in the open registry,
//!   one in the private registry (TLS and basic auth, with the credentials of
//!   a `config.json`), and a local image (the engine's look-up on Docker Hub
//!   fails, then the engine is asked whether it has the image);
//! - a stack of five services on five images of the open registry, resolved
//!   together;
//! - the `deploy` bench's 5-service stack, each service on its own image in
//!   the open registry, deployed by an in-process runner: the runner's own
//!   "images resolved in N ms" line against the deployment's `createdAt` →
//!   `finishedAt`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use chrono::Utc;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_runner::plan::Plan;
use slipway_runner::registry::RegistryAuth;
use slipway_runner::spec::{self, Context};
use slipway_runner::swarm::{self, Baseline, Engine};
use slipway_testkit::bench::{median, ms, percentile, secs, Row};
use slipway_testkit::git::Repo;
use slipway_testkit::registry::{self, auth_file, push, LocalTags, OPEN, PRIVATE};
use slipway_testkit::runner::{start_runner_with, RunnerOptions};
use slipway_testkit::swarm::StackGuard;

use crate::deploy::{between, deploy_with_runner, parse_time, remove_stack, SERVICES};
use crate::{gql, spread, start_api, wait_registered, Counts, IMAGE};

const BENCH: &str = "resolve";

/// A plan of `services` (name → image), read as a deployment reads its spec.
fn plan_of(services: &[(&str, &str)]) -> Result<Plan> {
    let mut compose = String::from("services:\n");
    for (name, image) in services {
        let _ = writeln!(compose, "  {name}:\n    image: {image}");
    }
    let files: BTreeMap<String, Vec<u8>> = [
        (
            "slipway.yml".to_owned(),
            b"stack: bench\nenvironments:\n  production: {}\n".to_vec(),
        ),
        ("docker-compose.yml".to_owned(), compose.into_bytes()),
    ]
    .into();
    let ctx = Context {
        application: "bench".into(),
        environment: "production".into(),
        deployment: "bench".into(),
        sha: "0".repeat(40),
        ref_name: "main".into(),
        secrets: BTreeMap::new(),
    };
    spec::load(&files, "slipway.yml", &ctx).map_err(|err| anyhow!("{err}"))
}

/// `runs` resolutions of `plan` (after one untimed); the times, sorted.
async fn time_resolve(
    engine: &Engine,
    plan: &Plan,
    auth: &RegistryAuth,
    runs: usize,
    pinned: bool,
) -> Result<Vec<Duration>> {
    let nothing = Baseline::default();
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let mut plan = plan.clone();
        let started = Instant::now();
        swarm::resolve(engine, &mut plan, &nothing, auth)
            .await
            .map_err(|err| anyhow!("{err}"))?;
        let took = started.elapsed();
        let all_pinned = plan
            .services
            .iter()
            .all(|s| s.image().is_some_and(|i| i.contains("@sha256:")));
        if all_pinned != pinned {
            bail!("resolving {plan:?} pinned {all_pinned}, expected {pinned}");
        }
        if i > 0 {
            times.push(took);
        }
    }
    times.sort();
    Ok(times)
}

fn figures(times: &[Duration]) -> String {
    format!(
        "median {} (p90 {}, range {})",
        ms(median(times)),
        ms(percentile(times, 0.9)),
        spread(times, ms)
    )
}

pub(crate) async fn bench(counts: Counts) -> Result<Vec<Row>> {
    registry::require_registries();
    let engine = Engine::connect(None).await.map_err(|err| {
        anyhow!("needs a Docker engine in swarm mode ({err}); run scripts/test-env.sh")
    })?;
    let tag = format!("bench{}", Utc::now().timestamp_millis() % 1_000_000);
    let repositories: Vec<String> = (0..SERVICES.len())
        .map(|i| format!("{OPEN}/{tag}/s{i}"))
        .chain([format!("{PRIVATE}/{tag}/web")])
        .collect();
    let _tags: Vec<LocalTags> = repositories.iter().map(LocalTags::new).collect();
    let images: Vec<String> = repositories.iter().map(|r| format!("{r}:main")).collect();
    for image in &images {
        push(IMAGE, image);
    }
    let (open, private) = (&images[0], &images[SERVICES.len()]);
    let config = tempfile::tempdir()?;
    let auth = RegistryAuth::read(&auth_file(config.path()))?;
    let none = RegistryAuth::none();

    let runs = counts.resolve;
    let open_times = time_resolve(&engine, &plan_of(&[("web", open)])?, &none, runs, true).await?;
    let private_times =
        time_resolve(&engine, &plan_of(&[("web", private)])?, &auth, runs, true).await?;
    let local_times =
        time_resolve(&engine, &plan_of(&[("web", IMAGE)])?, &none, runs, false).await?;
    let five: Vec<(&str, &str)> = SERVICES
        .iter()
        .zip(&images)
        .map(|((name, _), image)| (*name, image.as_str()))
        .collect();
    let stack_times = time_resolve(&engine, &plan_of(&five)?, &none, runs, true).await?;
    for (what, times) in [
        ("open", &open_times),
        ("private", &private_times),
        ("local", &local_times),
        ("five", &stack_times),
    ] {
        eprintln!("resolve {what}: {}", figures(times));
    }

    let (resolved, totals) = deployments(&engine, counts, &tag, &five).await?;
    let shares: Vec<f64> = resolved
        .iter()
        .zip(&totals)
        .map(|(r, t)| r.as_secs_f64() / t.as_secs_f64())
        .collect();
    let mut sorted_shares = shares.clone();
    sorted_shares.sort_by(f64::total_cmp);
    let share = slipway_testkit::bench::median_of(&shares);

    let n = counts.resolve;
    Ok(vec![
        Row::info(
            BENCH,
            format!("one image in the open registry ({OPEN}), {n} runs"),
            figures(&open_times),
        ),
        Row::info(
            BENCH,
            format!("one image in the private registry ({PRIVATE}: TLS, basic auth), {n} runs"),
            figures(&private_times),
        ),
        Row::info(
            BENCH,
            format!("one local image (the look-up on Docker Hub fails, the engine has it), {n} runs"),
            figures(&local_times),
        ),
        Row::info(
            BENCH,
            format!("five services on five images of the open registry, together, {n} runs"),
            figures(&stack_times),
        ),
        Row::info(
            BENCH,
            format!(
                "in a deployment of the 5-service stack (7 tasks) on 5 registry images: resolve step / \
                 createdAt → finishedAt, medians of {}",
                counts.deploy
            ),
            format!(
                "{} / {} (resolve step {}, deployment {})",
                ms(median(&resolved)),
                secs(median(&totals)),
                spread(&resolved, ms),
                spread(&totals, secs)
            ),
        ),
        Row::info(
            BENCH,
            "**share of the deployment's time spent resolving**",
            format!(
                "**{:.2} %** (range {:.2} – {:.2} %)",
                share * 100.0,
                sorted_shares.first().copied().unwrap_or_default() * 100.0,
                sorted_shares.last().copied().unwrap_or_default() * 100.0
            ),
        ),
    ])
}

/// Deploys the 5-service stack with its services on `five` (after one
/// untimed run), each run a fresh stack; the runner's resolve step and the
/// whole deployment (`createdAt` → `finishedAt`) of each.
async fn deployments(
    engine: &Engine,
    counts: Counts,
    tag: &str,
    five: &[(&str, &str)],
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let runs = counts.deploy + 1;
    let stacks: Vec<String> = (0..runs).map(|i| format!("{tag}v{i}")).collect();
    let _cleanup: Vec<StackGuard> = stacks.iter().map(StackGuard::new).collect();
    let mut compose = String::from("version: \"3.8\"\nservices:\n");
    for ((name, replicas), (_, image)) in SERVICES.iter().zip(five) {
        let _ = write!(
            compose,
            r#"  {name}:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s}}
      restart_policy: {{condition: any, delay: 1s}}
"#
        );
    }
    let mut spec = String::from("stack: shop\ncompose: docker-compose.yml\nenvironments:\n");
    for (i, stack) in stacks.iter().enumerate() {
        let _ = writeln!(spec, "  r{i}:\n    stack: {stack}");
    }
    let repo = Repo::new();
    let sha = repo.commit(
        &[("slipway.yml", &spec), ("docker-compose.yml", &compose)],
        "a 5-service stack on registry images",
    );
    let api = start_api().await;
    let (admin, deployer, viewer) = (
        api.token(Role::Admin, "bench"),
        api.token(Role::Deployer, "bench"),
        api.token(Role::Viewer, "bench"),
    );
    gql(
        &api,
        &admin,
        "mutation($n: String!, $r: String!) { createApplication(input: {name: $n, repository: $r}) { name } }",
        json!({"n": "shop", "r": repo.url()}),
    )
    .await?;
    let runner = start_runner_with(
        &api,
        "bench-runner",
        RunnerOptions {
            labels: vec!["bench".into()],
            concurrency: 1,
            ..RunnerOptions::default()
        },
    )
    .await;
    wait_registered(&api, "bench-runner", || Ok(())).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut resolved, mut totals) = (Vec::new(), Vec::new());
    for (i, stack) in stacks.iter().enumerate() {
        let (_, details) =
            deploy_with_runner(&api, &deployer, &viewer, &format!("r{i}"), &sha).await?;
        let step = resolve_step(&details)?;
        let total = between(
            parse_time(&details["createdAt"])?,
            parse_time(&details["finishedAt"])?,
        );
        eprintln!(
            "deployment {i}{}: resolve step {} of {}",
            if i == 0 { " (warm-up)" } else { "" },
            ms(step),
            secs(total)
        );
        if i > 0 {
            resolved.push(step);
            totals.push(total);
        }
        remove_stack(engine, stack).await?;
    }
    runner.stop().await;
    Ok((resolved, totals))
}

/// The runner's "images resolved in N ms" line, checking that every
/// service was pinned.
fn resolve_step(deployment: &Value) -> Result<Duration> {
    let lines: Vec<&str> = deployment["logs"]
        .as_array()
        .context("logs")?
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    let pinned = lines.iter().filter(|l| l.contains(" resolved to ")).count();
    if pinned != SERVICES.len() {
        bail!(
            "{pinned} of {} images were resolved: {lines:?}",
            SERVICES.len()
        );
    }
    let millis = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("images resolved in ")?
                .strip_suffix(" ms")?
                .parse::<f64>()
                .ok()
        })
        .context("the runner's \"images resolved in N ms\" line")?;
    Ok(Duration::from_secs_f64(millis / 1000.0))
}

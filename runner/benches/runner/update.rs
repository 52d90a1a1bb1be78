//! An update after a commit: the `deploy` bench's 5-service stack (7 tasks),
//! every service on an image in the open registry, deployed once, then
//! updated by a second commit — by an in-process runner (`createDeployment`
//! → `SUCCEEDED` seen) and by `docker stack deploy --detach=false
//! --resolve-image always` of the same files, side by side in one run.
//!
//! The floor no tool can beat is when the engine's last task of the new spec
//! reached RUNNING (the tasks' own timestamps, the same host's clock) plus
//! the stack's `update_config.monitor`; each way's lag is how long after
//! that floor it said it was done.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bollard::query_parameters::ListTasksOptions;
use chrono::{DateTime, Utc};
use serde_json::json;
use slipway_api::auth::Role;
use slipway_runner::swarm::Engine;
use slipway_testkit::bench::{median, ms, secs, Row};
use slipway_testkit::git::Repo;
use slipway_testkit::registry::{push, require_registries, LocalTags, OPEN};
use slipway_testkit::runner::{start_runner_with, RunnerOptions};
use slipway_testkit::swarm::StackGuard;

use crate::deploy::{deploy_with_runner, parse_time, remove_stack, SERVICES};
use crate::{gql, run, spread, start_api, wait_registered, Counts};

const BENCH: &str = "update";
/// The stack's `update_config.monitor`: part of the floor.
const MONITOR: Duration = Duration::from_secs(1);
/// Longest `docker stack deploy` may take.
const DEPLOY_WAIT: Duration = Duration::from_secs(180);
/// The target for the runner's lag over the floor, at the median.
const TARGET_LAG: Duration = Duration::from_millis(150);

/// The 5-service stack on `image`, each service's environment saying `release`.
fn compose(image: &str, release: &str) -> String {
    let mut out = String::from("version: \"3.8\"\nservices:\n");
    for (name, replicas) in SERVICES {
        let _ = write!(
            out,
            r#"  {name}:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    environment:
      SERVICE: {name}
      RELEASE: "{release}"
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s}}
      restart_policy: {{condition: any, delay: 1s}}
"#
        );
    }
    out
}

/// When the last running task of `stack` whose environment says `release`
/// became RUNNING; fails unless all 7 tasks run that release.
async fn last_running_of(engine: &Engine, stack: &str, release: &str) -> Result<DateTime<Utc>> {
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
    let wanted = format!("RELEASE={release}");
    let mut last = None;
    let mut running = 0;
    for task in tasks {
        let task = serde_json::to_value(&task)?;
        let env = task["Spec"]["ContainerSpec"]["Env"].to_string();
        if task["Status"]["State"] == "running" && env.contains(&wanted) {
            running += 1;
            last = last.max(Some(parse_time(&task["Status"]["Timestamp"])?));
        }
    }
    let want: u32 = SERVICES.iter().map(|(_, n)| n).sum();
    if running != want as usize {
        bail!("stack {stack} runs {running} tasks of release {release}, not {want}");
    }
    last.context("no running task")
}

/// Removes `stack`, again when the engine refuses because a task that was
/// just replaced still holds the stack's network.
async fn remove(engine: &Engine, stack: &str) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match remove_stack(engine, stack).await {
            Ok(_) => return Ok(()),
            Err(err) if attempt < 5 && err.to_string().contains("is in use by task") => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// `docker stack deploy` as the issue measures it.
async fn stack_deploy(file: &str, stack: &str) -> Result<String> {
    let args = [
        "stack",
        "deploy",
        "--detach=false",
        "--resolve-image",
        "always",
        "-c",
        file,
        stack,
    ];
    run("docker", &args, None, DEPLOY_WAIT).await
}

/// How far `finished` is after `floor`; negative lags (a tool that said done
/// before the floor) count as zero and are reported by the caller.
fn lag(floor: DateTime<Utc>, finished: DateTime<Utc>) -> (Duration, bool) {
    match (finished - floor).to_std() {
        Ok(lag) => (lag, false),
        Err(_) => (Duration::ZERO, true),
    }
}

pub(crate) async fn bench(counts: Counts) -> Result<Vec<Row>> {
    require_registries();
    let engine = Engine::connect(None).await.map_err(|err| {
        anyhow!("needs a Docker engine in swarm mode ({err}); run scripts/test-env.sh")
    })?;
    engine
        .check_manager()
        .await
        .map_err(|err| anyhow!("{err}; run scripts/test-env.sh"))?;

    let runs = counts.deploy + 1;
    let tag = format!("upd{}", Utc::now().timestamp_millis() % 1_000_000);
    let repository = format!("{OPEN}/{tag}/app");
    let _tags = LocalTags::new(repository.clone());
    let image = format!("{repository}:main");
    push("slipway-test/busybox:latest", &image);
    let runner_stacks: Vec<String> = (0..runs).map(|i| format!("{tag}r{i}")).collect();
    let docker_stacks: Vec<String> = (0..runs).map(|i| format!("{tag}d{i}")).collect();
    let _cleanup: Vec<StackGuard> = runner_stacks
        .iter()
        .chain(&docker_stacks)
        .map(StackGuard::new)
        .collect();

    // Two commits: the stack, then every service's RELEASE changed.
    let repo = Repo::new();
    let mut spec = String::from("stack: shop\ncompose: docker-compose.yml\nenvironments:\n");
    for (i, stack) in runner_stacks.iter().enumerate() {
        let _ = writeln!(spec, "  r{i}:\n    stack: {stack}");
    }
    let first = repo.commit(
        &[
            ("slipway.yml", &spec),
            ("docker-compose.yml", &compose(&image, "one")),
        ],
        "the stack",
    );
    let second = repo.commit(
        &[("docker-compose.yml", &compose(&image, "two"))],
        "a commit that changes every service",
    );
    let files = tempfile::tempdir()?;
    let file_of = |release: &str| -> Result<String> {
        let path = files.path().join(format!("docker-compose.{release}.yml"));
        std::fs::write(&path, compose(&image, release))?;
        Ok(path.to_str().context("a UTF-8 temp path")?.to_owned())
    };
    let (first_file, second_file) = (file_of("one")?, file_of("two")?);

    let api = start_api().await;
    let admin = api.token(Role::Admin, "bench");
    let deployer = api.token(Role::Deployer, "bench");
    let viewer = api.token(Role::Viewer, "bench");
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
            fetch_timeout: Duration::from_secs(60),
            ..RunnerOptions::default()
        },
    )
    .await;
    wait_registered(&api, "bench-runner", || Ok(())).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut by_runner, mut by_docker) = (Vec::new(), Vec::new());
    let (mut runner_lags, mut docker_lags) = (Vec::new(), Vec::new());
    let mut early = 0;
    for i in 0..runs {
        let warm_up = i == 0;
        let runner_first = i % 2 == 0;
        for step in 0..2 {
            if (step == 0) == runner_first {
                let environment = format!("r{i}");
                let stack = &runner_stacks[i];
                deploy_with_runner(&api, &deployer, &viewer, &environment, &first).await?;
                let (took, _) =
                    deploy_with_runner(&api, &deployer, &viewer, &environment, &second).await?;
                let finished = Utc::now();
                let floor = last_running_of(&engine, stack, "two").await? + MONITOR;
                let (lagged, before) = lag(floor, finished);
                early += usize::from(before);
                eprintln!(
                    "run {i}{}: runner update {} ({} after the floor)",
                    if warm_up { " (warm-up)" } else { "" },
                    secs(took),
                    ms(lagged)
                );
                if !warm_up {
                    by_runner.push(took);
                    runner_lags.push(lagged);
                }
                remove(&engine, stack).await?;
            } else {
                let stack = &docker_stacks[i];
                stack_deploy(&first_file, stack).await?;
                let started = Instant::now();
                stack_deploy(&second_file, stack).await?;
                let took = started.elapsed();
                let finished = Utc::now();
                let floor = last_running_of(&engine, stack, "two").await? + MONITOR;
                let (lagged, before) = lag(floor, finished);
                early += usize::from(before);
                eprintln!(
                    "run {i}{}: docker stack deploy update {} ({} after the floor)",
                    if warm_up { " (warm-up)" } else { "" },
                    secs(took),
                    ms(lagged)
                );
                if !warm_up {
                    by_docker.push(took);
                    docker_lags.push(lagged);
                }
                remove(&engine, stack).await?;
            }
        }
    }
    runner.stop().await;

    let n = counts.deploy;
    let runner_time = median(&by_runner);
    let docker_time = median(&by_docker);
    let ratio = runner_time.as_secs_f64() / docker_time.as_secs_f64();
    let runner_lag = median(&runner_lags);
    Ok(vec![
        Row::info(
            BENCH,
            format!("runner: update `createDeployment` → `SUCCEEDED` seen, median of {n}"),
            format!("{} (range {})", secs(runner_time), spread(&by_runner, secs)),
        ),
        Row::info(
            BENCH,
            format!("`docker stack deploy --detach=false --resolve-image always`, update, median of {n}"),
            format!("{} (range {})", secs(docker_time), spread(&by_docker, secs)),
        ),
        Row::info(
            BENCH,
            "**ratio runner / `docker stack deploy`**",
            format!("{ratio:.2}×"),
        ),
        Row::info(
            BENCH,
            "`docker stack deploy`: lag over the floor (last task RUNNING + monitor), median",
            format!("{} (range {})", ms(median(&docker_lags)), spread(&docker_lags, ms)),
        ),
        Row::target(
            BENCH,
            "**runner: lag over the floor, median**",
            format!("{} (range {})", ms(runner_lag), spread(&runner_lags, ms)),
            "< 150 ms",
            runner_lag < TARGET_LAG,
        ),
        Row::info(
            BENCH,
            "finishes before the floor (counted as 0 ms lag)",
            early.to_string(),
        ),
    ])
}

//! A 5-service stack deployed end to end by an in-process runner (in-process
//! API on a temp SQLite file, `createDeployment` → `SUCCEEDED`) against
//! `docker stack deploy --detach=false` of the same Compose file on the same
//! engine.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_runner::swarm::Engine;
use slipway_testkit::api::TestApi;
use slipway_testkit::bench::{median, ms_rounded as ms, secs, Row};
use slipway_testkit::git::Repo;
use slipway_testkit::runner::{start_runner_with, RunnerOptions};
use slipway_testkit::swarm::StackGuard;

use crate::{gql, run, spread, start_api, wait_registered, Counts, IMAGE};

/// Longest a deployment (either way) may take.
const DEPLOY_WAIT: Duration = Duration::from_secs(180);
/// Longest a stack may take to disappear after `docker stack rm`.
const REMOVE_WAIT: Duration = Duration::from_secs(120);
/// How often the bench looks at a deployment's status.
const POLL: Duration = Duration::from_millis(20);
const STACK_LABEL: &str = "com.docker.stack.namespace";

pub(crate) const SERVICES: [(&str, u32); 5] = [
    ("web", 2),
    ("api", 2),
    ("worker", 1),
    ("cache", 1),
    ("cron", 1),
];

/// The stack both ways deploy: 5 services, 7 tasks, on `<stack>_default`.
pub(crate) fn compose_file() -> String {
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
pub(crate) async fn remove_stack(engine: &Engine, stack: &str) -> Result<Duration> {
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

pub(crate) fn parse_time(value: &Value) -> Result<DateTime<Utc>> {
    let text = value.as_str().context("a timestamp")?;
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("timestamp {text}"))?
        .with_timezone(&Utc))
}

pub(crate) fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
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
pub(crate) async fn deploy_with_runner(
    api: &TestApi,
    deployer: &str,
    viewer: &str,
    environment: &str,
    sha: &str,
) -> Result<(Duration, Value)> {
    let started = Instant::now();
    let data = gql(
        api,
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
        let d = gql(api, viewer, STATUS, json!({"id": id})).await?;
        match d["deployment"]["status"].as_str() {
            Some("SUCCEEDED") => break,
            Some("FAILED" | "CANCELLED") => {
                let details = gql(api, viewer, DETAILS, json!({"id": id})).await?;
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
    let details = gql(api, viewer, DETAILS, json!({"id": id})).await?;
    Ok((took, details["deployment"].clone()))
}

pub(crate) async fn bench(counts: Counts) -> Result<Vec<Row>> {
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
    let _cleanup: Vec<StackGuard> = runner_stacks
        .iter()
        .chain(&docker_stacks)
        .map(StackGuard::new)
        .collect();

    // The repository: one commit declaring an environment per run.
    let repo = Repo::new();
    let mut spec = String::from("stack: shop\ncompose: docker-compose.yml\nenvironments:\n");
    for (i, stack) in runner_stacks.iter().enumerate() {
        let _ = writeln!(spec, "  r{i}:\n    stack: {stack}");
    }
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec),
            ("docker-compose.yml", &compose_file()),
        ],
        "a 5-service stack",
    );
    // `docker stack deploy` gets the very same file.
    let compose_dir = tempfile::tempdir()?;
    let compose_path = compose_dir.path().join("docker-compose.yml");
    std::fs::write(&compose_path, compose_file())?;
    let compose_path = compose_path
        .to_str()
        .context("temp path is UTF-8")?
        .to_owned();

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

    // The runner, in-process.
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
    runner.stop().await;

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

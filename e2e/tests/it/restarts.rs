//! A process dies in the middle of a rollout: nothing is lost, stuck or done twice.

use std::time::Duration;

use slipway_e2e::system::{compose, spec, System, FAST, SLOW};
use slipway_testkit::swarm::{self, StackGuard};
use slipway_testkit::wait;

const WITHIN: Duration = Duration::from_secs(120);
const V1: &str = "slipway-test/busybox:latest";
const V2: &str = "slipway-test/busybox:v2";

/// Deploys v1 (two replicas) through a hook, then sends a hook for a slow
/// rollout of v2 and waits until it is half done: one v2 task runs, one v1
/// task still runs. Returns v2's Slipway deployment id.
async fn half_rolled_out(system: &System, stack: &str) -> String {
    let v1 = system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec(stack)),
            ("docker-compose.yml", &compose(V1, 2, "v1", FAST)),
        ],
        "v1",
    );
    let id = system.deploy_hook(7_200_000_001, &v1).await;
    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");

    let v2 = system.git.commit(
        "main",
        &[("docker-compose.yml", &compose(V2, 2, "v1", SLOW))],
        "v2, rolled out one task at a time",
    );
    let id = system.deploy_hook(7_200_000_002, &v2).await;
    let web = format!("{stack}_web");
    wait::until("half of the rollout to v2", WITHIN, || async {
        let running = swarm::running_images(&web);
        let v2 = running.iter().filter(|i| *i == V2).count();
        let v1 = running.iter().filter(|i| *i == V1).count();
        if v2 == 1 && v1 == 1 {
            Ok(())
        } else {
            Err(format!("{running:?}"))
        }
    })
    .await;
    let d = system.api.deployment(&id).await;
    assert_eq!(d["status"], "IN_PROGRESS", "mid-rollout: {d}");
    id
}

/// Tasks of `web` ever created with `image`.
fn tasks_of(web: &str, image: &str) -> usize {
    swarm::tasks(web).iter().filter(|t| t.0 == image).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_rollout_finishes_it_once_after_restarting() {
    let stack = swarm::stack_name("runnerkill");
    let _guard = StackGuard::new(stack.clone());
    let mut system = System::start().await;
    let web = format!("{stack}_web");
    let id = half_rolled_out(&system, &stack).await;

    system.restart_runner();
    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let logs = d["logs"].to_string();
    assert!(
        logs.contains("reconciling"),
        "the new runner resumed: {logs}"
    );
    swarm::wait_running(&web, V2, 2, WITHIN).await;
    // Not rolled out twice: v2 tasks were created for two slots, once each.
    assert_eq!(tasks_of(&web, V2), 2, "{:?}", swarm::tasks(&web));
    // No deployment was added, and GitHub heard one ending.
    assert_eq!(system.api.deployments().await.len(), 2);
    system.wait_github_final(7_200_000_002, WITHIN).await;
    assert_eq!(
        system.github.states(7_200_000_002),
        ["queued", "in_progress", "success"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_restarted_mid_rollout_loses_no_deployment_status_or_log_line() {
    let stack = swarm::stack_name("apirestart");
    let _guard = StackGuard::new(stack.clone());
    let mut system = System::start().await;
    let web = format!("{stack}_web");
    let id = half_rolled_out(&system, &stack).await;
    let before = system.api.deployments().await.len();

    // Killed as a crash kills it, and started again on the same database and
    // port, while the runner heartbeats, logs the rollout's progress and
    // reports phases.
    system.kill_api();
    system.start_api_again().await;

    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    swarm::wait_running(&web, V2, 2, WITHIN).await;
    assert_eq!(system.api.deployments().await.len(), before);

    // Every line the runner logged is stored, once, in order, numbered densely.
    let stored = d["logs"].as_array().unwrap();
    let seqs: Vec<u64> = stored.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let dense: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(seqs, dense);
    let texts: Vec<&str> = stored.iter().map(|l| l["text"].as_str().unwrap()).collect();
    let logged = system.runner_lines(&id);
    assert!(
        logged.len() >= 5,
        "the runner's lines were read: {logged:?}"
    );
    assert_eq!(texts, logged, "stored lines against the runner's own log");
    assert_eq!(d["logCount"], stored.len());

    // GitHub heard every state once, in order.
    system.wait_github_final(7_200_000_002, WITHIN).await;
    assert_eq!(
        system.github.states(7_200_000_002),
        ["queued", "in_progress", "success"]
    );
    assert_eq!(
        system.github.states(7_200_000_001),
        ["queued", "in_progress", "success"]
    );
}

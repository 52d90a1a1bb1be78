//! Deployments carried out by a real runner on the real swarm.

use std::time::Duration;

use serde_json::json;
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::runner::{start_runner, start_runner_with, RunnerOptions};
use slipway_testkit::swarm::{inspect_service, running_images, stack_name, StackGuard};

const WITHIN: Duration = Duration::from_secs(180);

fn spec(stack: &str) -> String {
    format!("stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production: {{}}\n")
}

/// Two services, a config and a network; `web` runs `image` with `command`.
fn compose(image: &str, command: &str, with_worker: bool) -> String {
    let worker = if with_worker {
        r#"
  worker:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    networks: [backend]
"#
    } else {
        ""
    };
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: {command}
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config: {{parallelism: 2, delay: 1s, monitor: 2s}}
      restart_policy: {{delay: 1s}}
    configs:
      - source: motd
        target: /etc/motd
    networks: [backend]
{worker}
configs:
  motd:
    file: ./motd.txt
networks:
  backend:
    driver: overlay
"#
    )
}

const SLEEP: &str = r#"["sleep", "3600"]"#;

async fn setup(test: &str) -> (TestApi, Repo, String, StackGuard) {
    let stack = stack_name(test);
    let guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    (api, repo, stack, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_rolls_out_updates_and_loses_removed_services() {
    let (api, repo, stack, _guard) = setup("lifecycle").await;
    let _runner = start_runner(&api, "runner-1").await;

    // A fresh deploy: two services, a config and a network.
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, true),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["sha"], first.as_str());
    let web = inspect_service(&format!("{stack}_web")).expect("web exists");
    assert_eq!(web["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(
        web["Spec"]["Labels"]["com.docker.stack.namespace"],
        stack.as_str()
    );
    assert!(inspect_service(&format!("{stack}_worker")).is_some());
    assert_eq!(running_images(&format!("{stack}_web")).len(), 2);
    let services: Vec<&str> = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(services.contains(&format!("{stack}_web").as_str()), "{d}");
    let logs = d["logs"].to_string();
    assert!(
        logs.contains("fetched"),
        "the log says what was fetched: {logs}"
    );

    // An image change rolls.
    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &compose("slipway-test/busybox:v2", SLEEP, true),
        )],
        "v2",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let images = running_images(&format!("{stack}_web"));
    assert!(
        images.len() == 2 && images.iter().all(|i| i.ends_with(":v2")),
        "{images:?}"
    );

    // The same sha again: nothing to roll.
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("unchanged"), "{d}");

    // A container that exits at once: FAILED, rolled back to v2.
    let broken = repo.commit(
        &[(
            "docker-compose.yml",
            &compose(
                "slipway-test/busybox:latest",
                r#"["sh", "-c", "exit 3"]"#,
                true,
            ),
        )],
        "exits",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&broken))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back:"), "{message}");
    assert!(message.contains("exit"), "names the exit: {message}");
    let images = running_images(&format!("{stack}_web"));
    assert!(
        images.len() == 2 && images.iter().all(|i| i.ends_with(":v2")),
        "v2 runs again: {images:?}"
    );

    // A service removed from Compose is removed from the swarm.
    let fourth = repo.commit(
        &[(
            "docker-compose.yml",
            &compose("slipway-test/busybox:v2", SLEEP, false),
        )],
        "no worker",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&fourth))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(
        inspect_service(&format!("{stack}_worker")).is_none(),
        "worker is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_naming_it() {
    let (api, repo, stack, _guard) = setup("badimage").await;
    let _runner = start_runner(&api, "runner-1").await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/nonexistent:1", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "bad image",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("slipway-test/nonexistent:1"),
        "names the image: {message}"
    );
    assert!(
        inspect_service(&format!("{stack}_web")).is_none(),
        "the new service was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_rollout_rolls_back() {
    let (api, repo, stack, _guard) = setup("cancel").await;
    let _runner = start_runner(&api, "runner-1").await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    // A slow rollout: one task at a time, 20 s apart.
    let slow = compose("slipway-test/busybox:v2", SLEEP, false).replace(
        "{parallelism: 2, delay: 1s, monitor: 2s}",
        "{parallelism: 1, delay: 20s, monitor: 1s}",
    );
    let second = repo.commit(&[("docker-compose.yml", &slow)], "slow");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;
    api.ok_as(
        Role::Deployer,
        "mutation($id: ID!) { cancelDeployment(id: $id) { cancelRequested } }",
        json!({"id": id}),
    )
    .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "CANCELLED", "{d}");
    let web = inspect_service(&format!("{stack}_web")).unwrap();
    assert_eq!(
        web["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"], "slipway-test/busybox:latest",
        "the previous spec is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_errors_and_unknown_commits_fail_with_where_and_what() {
    let (api, repo, stack, _guard) = setup("errors").await;
    let _runner = start_runner(&api, "runner-1").await;
    let sha = repo.commit(
        &[(
            "slipway.yml",
            &format!("stack: {stack}\nenvironments:\n  production: {{}}\nbogus_key: 1\n"),
        )],
        "bad spec",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("slipway.yml:4") && message.contains("bogus_key"),
        "{message}"
    );

    let unknown = "0123456789012345678901234567890123456789";
    let id = api
        .deploy_ref("shop", "production", "main", Some(unknown))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains(unknown) && message.contains("not in"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_carry_out_a_deployment_once() {
    let (api, repo, stack, _guard) = setup("tworunners").await;
    let _a = start_runner(&api, "runner-a").await;
    let _b = start_runner(&api, "runner-b").await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let fetches = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["text"].as_str().unwrap().starts_with("fetched"))
        .count();
    assert_eq!(fetches, 1, "one runner did the work: {}", d["logs"]);
}

/// Runs `slipway-runner plan --diff` for `repo` at `sha`; returns its JSON.
fn plan_diff(repo: &Repo, sha: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-runner"))
        .args(["plan", "--repo"])
        .arg(repo.path())
        .args([
            "--ref",
            sha,
            "--environment",
            "production",
            "--application",
            "shop",
            "--diff",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_diff_shows_what_a_deployment_would_change() {
    let (api, repo, stack, _guard) = setup("diff").await;
    let _runner = start_runner(&api, "runner-1").await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let before = plan_diff(&repo, &first);
    assert_eq!(before["services"][0]["action"], "create", "{before}");

    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let same = plan_diff(&repo, &first);
    assert_eq!(same["services"][0]["action"], "unchanged", "{same}");

    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &compose("slipway-test/busybox:v2", SLEEP, false),
        )],
        "v2",
    );
    let next = plan_diff(&repo, &second);
    let web = &next["services"][0];
    assert_eq!(web["action"], "update", "{next}");
    assert!(
        web["changes"]
            .to_string()
            .contains("/TaskTemplate/ContainerSpec/Image"),
        "{next}"
    );
}

/// Services named `name` running `image`, one replica each.
fn services(list: &[(&str, &str)]) -> String {
    let mut out = String::from("version: \"3.8\"\nservices:\n");
    for (name, image) in list {
        out.push_str(&format!(
            "  {name}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 1\n"
        ));
    }
    out
}

/// Each service of `stack` with the version of its spec on the engine.
fn service_versions(stack: &str) -> Vec<(String, u64)> {
    let out = std::process::Command::new("docker")
        .args(["service", "ls", "--format", "{{.Name}}", "--filter"])
        .arg(format!("label=com.docker.stack.namespace={stack}"))
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let version = inspect_service(&name).expect("listed")["Version"]["Index"]
                .as_u64()
                .unwrap();
            (name, version)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_plan_comes_back_with_what_a_deployment_would_change() {
    let (api, repo, stack, _guard) = setup("preview").await;
    let _runner = start_runner(&api, "runner-1").await;
    let local = "slipway-test/busybox:latest";
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &services(&[("web", local), ("worker", local), ("old", local)]),
            ),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    // web moves to an image in a registry, worker stays, old goes, cache comes.
    let target = format!(
        "{}:v1",
        slipway_testkit::registry::repository(slipway_testkit::registry::OPEN, &stack)
    );
    let digest = slipway_testkit::registry::push(local, &target);
    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &services(&[("web", &target), ("worker", local), ("cache", local)]),
        )],
        "second",
    );
    let before = service_versions(&stack);
    assert_eq!(before.len(), 3, "{before:?}");

    let plan = api.request_plan("shop", "production", "main").await;
    let plan = api.wait_plan(&plan, WITHIN).await;
    assert_eq!(plan["status"], "DONE", "{plan}");
    assert_eq!(plan["sha"], second.as_str());
    assert_eq!(plan["runner"], "runner-1");
    let result = &plan["result"];
    assert_eq!(result["stack"], stack.as_str());
    let service = |name: &str| {
        result["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("{stack}_{name}").as_str())
            .unwrap_or_else(|| panic!("{name} in {result}"))
            .clone()
    };
    let web = service("web");
    assert_eq!(web["action"], "update", "{result}");
    assert!(
        web["changes"]
            .to_string()
            .contains("/TaskTemplate/ContainerSpec/Image"),
        "{web}"
    );
    assert_eq!(
        web["digest"],
        digest.as_str(),
        "pinned as a deployment pins it: {web}"
    );
    assert_eq!(web["image"], format!("{target}@{digest}").as_str(), "{web}");
    assert_eq!(service("worker")["action"], "unchanged", "{result}");
    assert_eq!(service("cache")["action"], "create", "{result}");
    let old = service("old");
    assert_eq!(old["action"], "remove", "{result}");
    assert_eq!(old["image"], local, "{old}");

    // The engine was not touched, and nothing became a deployment.
    assert_eq!(service_versions(&stack), before);
    assert_eq!(api.deployments().await.len(), 1);

    // A spec a deployment would refuse fails the plan, naming file and field.
    repo.commit(
        &[(
            "docker-compose.yml",
            &services(&[("web", local)]).replace("replicas: 1", "replicas: many"),
        )],
        "broken",
    );
    let broken = api.request_plan("shop", "production", "main").await;
    let broken = api.wait_plan(&broken, WITHIN).await;
    assert_eq!(broken["status"], "FAILED", "{broken}");
    let message = broken["message"].as_str().unwrap();
    assert!(
        message.contains("docker-compose.yml:") && message.contains("replicas"),
        "{message}"
    );
    assert_eq!(service_versions(&stack), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_busy_with_its_one_deployment_answers_a_plan_meanwhile() {
    let (api, repo, stack, _guard) = setup("busy-plan").await;
    let options = RunnerOptions {
        concurrency: 1,
        ..RunnerOptions::default()
    };
    let _runner = start_runner_with(&api, "runner-1", options).await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    // An update that takes a while: one task, then six seconds, then the other.
    let slow = compose("slipway-test/busybox:v2", SLEEP, false).replace(
        "{parallelism: 2, delay: 1s, monitor: 2s}",
        "{parallelism: 1, delay: 6s, monitor: 1s}",
    );
    let second = repo.commit(&[("docker-compose.yml", &slow)], "slow");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;

    let plan = api.request_plan("shop", "production", "main").await;
    let plan = api.wait_plan(&plan, WITHIN).await;
    assert_eq!(plan["status"], "DONE", "{plan}");
    assert_eq!(plan["sha"], second.as_str());
    assert_eq!(
        api.status(&id).await["status"],
        "IN_PROGRESS",
        "the plan was answered while the deployment rolled out"
    );
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_stopped_mid_rollout_finishes_it_after_restarting() {
    let (api, repo, stack, _guard) = setup("restart").await;
    let runner = start_runner(&api, "runner-1").await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest", SLEEP, false),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    let slow = compose("slipway-test/busybox:v2", SLEEP, false).replace(
        "{parallelism: 2, delay: 1s, monitor: 2s}",
        "{parallelism: 1, delay: 4s, monitor: 1s}",
    );
    let second = repo.commit(&[("docker-compose.yml", &slow)], "slow");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;
    runner.stop().await;

    let _again = start_runner(&api, "runner-1").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(d["logs"].to_string().contains("reconciling"), "{d}");
    let images = running_images(&format!("{stack}_web"));
    assert!(
        images.len() == 2 && images.iter().all(|i| i.ends_with(":v2")),
        "{images:?}"
    );
    // The rollout was not started over: two v2 tasks were ever created.
    let out = std::process::Command::new("docker")
        .args([
            "service",
            "ps",
            &format!("{stack}_web"),
            "--format",
            "{{.Image}}",
        ])
        .output()
        .unwrap();
    let v2_tasks = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(":v2"))
        .count();
    assert_eq!(v2_tasks, 2, "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_rollout_does_not_hold_up_another_environment() {
    let (api, repo, stack, _guard) = setup("parallel").await;
    let staging_stack = format!("{stack}s");
    let _staging_guard = StackGuard::new(staging_stack.clone());
    let _runner = start_runner(&api, "runner-1").await;
    let spec = format!(
        "compose: docker-compose.yml\nenvironments:\n  production:\n    stack: {stack}\n  staging:\n    stack: {staging_stack}\n"
    );
    // Production rolls one task at a time, 30 s apart: it stays busy.
    let slow = compose("slipway-test/busybox:latest", SLEEP, false).replace(
        "{parallelism: 2, delay: 1s, monitor: 2s}",
        "{parallelism: 1, delay: 30s, monitor: 1s}",
    );
    let first = repo.commit(
        &[
            ("slipway.yml", &spec),
            ("docker-compose.yml", &slow),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &slow.replace("busybox:latest", "busybox:v2"),
        )],
        "v2",
    );
    let busy = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    api.wait_phase(&busy, "VERIFYING", WITHIN).await;

    let other = api
        .deploy_ref("shop", "staging", "main", Some(&second))
        .await;
    let d = api.wait_final(&other, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(
        api.deployment(&busy).await["status"],
        "IN_PROGRESS",
        "staging finished while production was still rolling"
    );
    api.ok_as(
        Role::Deployer,
        "mutation($id: ID!) { cancelDeployment(id: $id) { id } }",
        json!({"id": busy}),
    )
    .await;
    assert_eq!(api.wait_final(&busy, WITHIN).await["status"], "CANCELLED");
}

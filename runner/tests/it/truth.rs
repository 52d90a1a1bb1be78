//! A deployment's status is what happened on the swarm: the cases where a
//! stack, a lease, a restart or the engine could make it say otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_runner::swarm::Engine;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::proxy::{Proxy, Target};
use slipway_testkit::runner::{start_runner, start_runner_with, RunnerHandle, RunnerOptions};
use slipway_testkit::swarm::{inspect_service, running_images, stack_name, StackGuard};

const WITHIN: Duration = Duration::from_secs(180);

/// One service `web` (two replicas) and, optionally, more services, with
/// fast swarm update settings unless `update` says otherwise.
fn web(image: &str, command: &str, update: &str, more: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: {command}
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config: {update}
      restart_policy: {{delay: 1s}}
{more}"#
    )
}

const FAST: &str = "{parallelism: 2, delay: 1s, monitor: 2s}";
const SLEEP: &str = r#"["sleep", "3600"]"#;

fn spec(stack: &str, extra: &str) -> String {
    format!(
        "stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production: {{{extra}}}\n"
    )
}

async fn shop(api: &TestApi) -> Repo {
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    repo
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container command of a service's spec.
fn args_of(service: &str) -> Value {
    inspect_service(service).expect("service exists")["Spec"]["TaskTemplate"]["ContainerSpec"]
        ["Args"]
        .clone()
}

fn image_of(service: &str) -> String {
    inspect_service(service).expect("service exists")["Spec"]["TaskTemplate"]["ContainerSpec"]
        ["Image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A runner in `workdir`, reaching the API at `api_url` and deploying to
/// `engine` where given.
async fn in_workdir(
    api: &TestApi,
    name: &str,
    workdir: &std::path::Path,
    api_url: Option<String>,
    engine: Option<Engine>,
) -> RunnerHandle {
    start_runner_with(
        api,
        name,
        RunnerOptions {
            workdir: Some(workdir.to_owned()),
            api_url,
            engine,
            ..RunnerOptions::default()
        },
    )
    .await
}

// ------------------------------------------------------------ one stack, one owner

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_gets_a_stack_of_its_own_by_default() {
    let api = TestApi::start(Backend::Sqlite).await;
    let app = stack_name("owner");
    let repo = Repo::new();
    api.app(&app, &repo.url(), &[]).await;
    let (_production, _staging) = (
        StackGuard::new(format!("{app}-production")),
        StackGuard::new(format!("{app}-staging")),
    );
    let _runner = start_runner(&api, "runner-1").await;
    let sha = repo.commit(
        &[
            (
                "slipway.yml",
                "compose: docker-compose.yml\nenvironments:\n  production: {}\n  staging: {}\n",
            ),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "two environments",
    );
    let production = api.deploy_ref(&app, "production", "main", Some(&sha)).await;
    let staging = api.deploy_ref(&app, "staging", "main", Some(&sha)).await;
    for id in [production, staging] {
        let d = api.wait_final(&id, WITHIN).await;
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
    }
    let production = inspect_service(&format!("{app}-production_web")).expect("production's web");
    let staging = inspect_service(&format!("{app}-staging_web")).expect("staging's web");
    assert_eq!(
        production["Spec"]["Labels"]["io.slipway.environment"],
        "production"
    );
    assert_eq!(
        staging["Spec"]["Labels"]["io.slipway.environment"],
        "staging"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_another_environment_owns_is_refused_before_anything_changes() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("taken");
    let _guard = StackGuard::new(stack.clone());
    let _runner = start_runner(&api, "runner-1").await;
    let spec = format!(
        "compose: docker-compose.yml\nenvironments:\n  production: {{stack: {stack}}}\n  staging: {{stack: {stack}}}\n"
    );
    let first = repo.commit(
        &[
            ("slipway.yml", &spec),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "production",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let before = inspect_service(&format!("{stack}_web")).unwrap();

    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &web("slipway-test/busybox:v2", SLEEP, FAST, ""),
        )],
        "staging wants the same stack",
    );
    let id = api
        .deploy_ref("shop", "staging", "main", Some(&second))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("belongs to shop production") && message.contains("nothing was changed"),
        "{message}"
    );
    let after = inspect_service(&format!("{stack}_web")).unwrap();
    assert_eq!(
        before["Version"], after["Version"],
        "production's service was not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_made_by_docker_stack_deploy_is_adopted() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("adopt");
    let _guard = StackGuard::new(stack.clone());
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &format!("{stack}_web"),
        "--label",
        &format!("com.docker.stack.namespace={stack}"),
        "--replicas",
        "1",
        "slipway-test/busybox:latest",
        "sleep",
        "3600",
    ]);
    let _runner = start_runner(&api, "runner-1").await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:v2", SLEEP, FAST, ""),
            ),
        ],
        "adopt",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:v2"));
}

// ------------------------------------------------------------ a failed apply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_engine_refuses_rolls_back_what_the_deployment_changed() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("apply");
    let _guard = StackGuard::new(stack.clone());
    // Another service holds the port the new one asks for.
    let port = slipway_testkit::free_port().to_string();
    let blocker = format!("{stack}blocker");
    let _blocker = ServiceGuard(blocker.clone());
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &blocker,
        "--publish",
        &format!("{port}:80"),
        "slipway-test/busybox:latest",
        "sleep",
        "3600",
    ]);
    let _runner = start_runner(&api, "runner-1").await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    // `web` is updated first (services apply in name order), then `zz`
    // cannot be created.
    let zz = format!(
        r#"  zz:
    image: slipway-test/busybox:latest
    command: {SLEEP}
    ports: ["{port}:80"]
"#
    );
    let second = repo.commit(
        &[(
            "docker-compose.yml",
            &web("slipway-test/busybox:v2", r#"["sleep", "3601"]"#, FAST, &zz),
        )],
        "a port another service holds",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("creating service {stack}_zz")) && message.contains(&port),
        "names the service and the engine's reason: {message}"
    );
    assert!(message.contains("rolled back"), "{message}");
    assert_eq!(args_of(&format!("{stack}_web")), json!(["sleep", "3600"]));
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:latest"));
    assert!(inspect_service(&format!("{stack}_zz")).is_none());
    wait_for_images(&format!("{stack}_web"), ":latest", 2).await;
}

/// Removes a service made outside a stack when dropped.
struct ServiceGuard(String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["service", "rm", &self.0])
            .output();
    }
}

async fn wait_for_images(service: &str, suffix: &str, replicas: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let images = running_images(service);
        if images.len() == replicas && images.iter().all(|i| i.ends_with(suffix)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} does not run {replicas} {suffix} tasks: {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ------------------------------------------------------------ leases

/// The API with a short lease, so that lapses happen within a test.
async fn api_with_lease(seconds: i64) -> TestApi {
    TestApi::start_with(
        Backend::Sqlite,
        Clock::system(),
        Settings {
            lease: chrono::Duration::seconds(seconds),
            ..Settings::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_cut_off_from_the_api_never_overwrites_the_next_release() {
    let api = api_with_lease(6).await;
    let repo = shop(&api).await;
    let stack = stack_name("fence");
    let _guard = StackGuard::new(stack.clone());
    let service = format!("{stack}_web");
    let dir = tempfile::tempdir().unwrap();

    // Runner A reaches the API through a proxy that will partition it.
    let proxy = Proxy::start(Target::Tcp(api.addr)).await;
    let runner_a = in_workdir(
        &api,
        "runner-a",
        &dir.path().join("a"),
        Some(proxy.url()),
        None,
    )
    .await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    // A slow rollout that times out, and would then be rolled back.
    let slow = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "timeout: 25s")),
            (
                "docker-compose.yml",
                &web(
                    "slipway-test/busybox:v2",
                    r#"["sleep", "3601"]"#,
                    "{parallelism: 1, delay: 60s, monitor: 1s}",
                    "",
                ),
            ),
        ],
        "slow",
    );
    let slow_id = api
        .deploy_ref("shop", "production", "main", Some(&slow))
        .await;
    api.wait_phase(&slow_id, "VERIFYING", WITHIN).await;
    proxy.hold();
    let partitioned = Instant::now();

    // The next deployment goes to runner B once A's lease lapsed.
    let next = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web(
                    "slipway-test/busybox:latest",
                    r#"["sleep", "3602"]"#,
                    FAST,
                    "",
                ),
            ),
        ],
        "next",
    );
    let next_id = api
        .deploy_ref("shop", "production", "main", Some(&next))
        .await;
    let _runner_b = in_workdir(&api, "runner-b", &dir.path().join("b"), None, None).await;
    let d = api.wait_final(&slow_id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "the API gave up on runner A: {d}");
    assert!(d["message"].as_str().unwrap().contains("lost"), "{d}");
    let d = api.wait_final(&next_id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(args_of(&service), json!(["sleep", "3602"]));

    // Runner A's rollout times out 25 s after it began: it must not roll
    // the service back to what it found, over B's release.
    let until = partitioned + Duration::from_secs(40);
    while Instant::now() < until {
        assert_eq!(
            args_of(&service),
            json!(["sleep", "3602"]),
            "runner A changed the service after its lease lapsed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(runner_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_resumes_only_what_its_own_instance_held() {
    let api = api_with_lease(6).await;
    let repo = shop(&api).await;
    let stack = stack_name("instance");
    let _guard = StackGuard::new(stack.clone());
    let dir = tempfile::tempdir().unwrap();
    let first = in_workdir(&api, "runner-1", &dir.path().join("one"), None, None).await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web(
                    "slipway-test/busybox:latest",
                    SLEEP,
                    "{parallelism: 1, delay: 5s, monitor: 1s}",
                    "",
                ),
            ),
        ],
        "slow",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;
    first.stop().await;

    // Same token, another workdir: another runner, which must leave the
    // deployment to its holder until the lease lapses.
    let _second = in_workdir(&api, "runner-1", &dir.path().join("two"), None, None).await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    assert!(d["message"].as_str().unwrap().contains("lost"), "{d}");
    assert!(!d["logs"].to_string().contains("reconciling"), "{d}");
}

// ------------------------------------------------------------ resumed deployments

/// Deploys `first` and then `second` (slowly), stopping the runner while
/// `second` converges; returns the second deployment's id and the runner
/// to start again.
async fn stop_mid_rollout(api: &TestApi, repo: &Repo, stack: &str, second: &str) -> String {
    let runner = start_runner(api, "runner-1").await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let sha = repo.commit(&[("docker-compose.yml", second)], "second");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;
    runner.stop().await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_deployment_that_fails_rolls_back_to_what_ran_before_it() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("resumefail");
    let _guard = StackGuard::new(stack.clone());
    let extra = r#"  extra:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"#;
    // v2 crashes; swarm pauses the update once a new task fails.
    let crashing = web(
        "slipway-test/busybox:v2",
        r#"["sh", "-c", "sleep 2; exit 3"]"#,
        "{parallelism: 1, delay: 1s, monitor: 5s, failure_action: pause}",
        extra,
    );
    let id = stop_mid_rollout(&api, &repo, &stack, &crashing).await;
    let _again = start_runner(&api, "runner-1").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    assert!(d["logs"].to_string().contains("reconciling"), "{d}");
    assert!(
        d["message"].as_str().unwrap().contains("rolled back"),
        "{d}"
    );
    assert_eq!(args_of(&format!("{stack}_web")), json!(["sleep", "3600"]));
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:latest"));
    assert!(
        inspect_service(&format!("{stack}_extra")).is_none(),
        "the service the deployment created is gone"
    );
    wait_for_images(&format!("{stack}_web"), ":latest", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_cancelled_while_its_runner_was_down_is_rolled_back() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("resumecancel");
    let _guard = StackGuard::new(stack.clone());
    let slow = web(
        "slipway-test/busybox:v2",
        SLEEP,
        "{parallelism: 1, delay: 20s, monitor: 1s}",
        "",
    );
    let id = stop_mid_rollout(&api, &repo, &stack, &slow).await;
    api.ok_as(
        Role::Deployer,
        "mutation($id: ID!) { cancelDeployment(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    let _again = start_runner(&api, "runner-1").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "CANCELLED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("rolled back") && !message.contains("before anything changed"),
        "{message}"
    );
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:latest"));
    wait_for_images(&format!("{stack}_web"), ":latest", 2).await;
}

// ------------------------------------------------------------ the engine

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_stops_answering_for_a_moment_does_not_fail_the_rollout() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("engine");
    let _guard = StackGuard::new(stack.clone());
    let proxy = Proxy::start(Target::Unix("/var/run/docker.sock".into())).await;
    let through_proxy = Engine::connect(Some(&format!("tcp://{}", proxy.addr)))
        .await
        .expect("the engine through the proxy");
    let dir = tempfile::tempdir().unwrap();
    let _runner = in_workdir(&api, "runner-1", dir.path(), None, Some(through_proxy)).await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web(
                    "slipway-test/busybox:latest",
                    SLEEP,
                    "{parallelism: 1, delay: 2s, monitor: 2s}",
                    "",
                ),
            ),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    api.wait_phase(&id, "VERIFYING", WITHIN).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(
        d["logs"].to_string().contains("engine error, retrying"),
        "the log says the engine failed for a moment: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_node_can_take_fails_the_deployment_soon_with_the_scheduler_s_reason() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("unschedulable");
    let _guard = StackGuard::new(stack.clone());
    let _runner = start_runner(&api, "runner-1").await;
    let placement = r#"  web2:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: [node.labels.slipway-nowhere == yes]
"#;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, placement),
            ),
        ],
        "nowhere",
    );
    let started = Instant::now();
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{stack}_web2")) && message.contains("no suitable node"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "it did not wait for the 10-minute timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_out_of_restart_attempts_fails_the_deployment_soon() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("attempts");
    let _guard = StackGuard::new(stack.clone());
    let _runner = start_runner(&api, "runner-1").await;
    let compose = r#"version: "3.8"
services:
  web:
    image: slipway-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
    deploy:
      replicas: 1
      restart_policy: {condition: on-failure, delay: 1s, max_attempts: 1}
"#;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            ("docker-compose.yml", compose),
        ],
        "crashes",
    );
    let started = Instant::now();
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("max_attempts") && message.contains("non-zero exit (3)"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
}

// ------------------------------------------------------------ auto-deploys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_deploy_of_an_older_commit_does_not_roll_the_environment_back() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("backwards");
    let _guard = StackGuard::new(stack.clone());
    let _runner = start_runner(&api, "runner-1").await;
    let old = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "old",
    );
    let new = repo.commit(
        &[(
            "docker-compose.yml",
            &web("slipway-test/busybox:v2", SLEEP, FAST, ""),
        )],
        "new",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&new))
        .await;
    let release = api.wait_final(&id, WITHIN).await;
    assert_eq!(release["status"], "SUCCEEDED", "{release}");

    // The push of `old` arrives late.
    let late = auto_deploy(&api, &old).await;
    let d = api.wait_final(&late, WITHIN).await;
    assert_eq!(d["status"], "CANCELLED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("backwards") && message.contains(&new[..7]),
        "{message}"
    );
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:v2"));

    // A redelivery of the release's own push changes nothing either.
    let again = auto_deploy(&api, &new).await;
    assert_eq!(api.wait_final(&again, WITHIN).await["status"], "CANCELLED");

    // A person may deploy the old commit on purpose.
    let id = api
        .deploy_ref("shop", "production", "main", Some(&old))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    assert!(image_of(&format!("{stack}_web")).starts_with("slipway-test/busybox:latest"));
}

async fn auto_deploy(api: &TestApi, sha: &str) -> String {
    api.ok_as(
        Role::Provider,
        "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { id } }",
        json!({"i": {"application": "shop", "environment": "production", "ref": "main", "sha": sha, "autoDeploy": true}}),
    )
    .await["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ------------------------------------------------------------ the log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_larger_than_the_api_s_body_limit_are_sent_in_batches_that_fit() {
    use slipway_runner::report::{Mask, Reporter};
    let api = TestApi::start(Backend::Sqlite).await;
    let _repo = shop(&api).await;
    let id = api.deploy_ref("shop", "production", "main", None).await;
    let claimed: Value = api
        .ok_as(
            Role::Runner,
            "mutation($id: ID!) { claimDeployment(id: $id, instance: \"i-1\") { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(claimed["claimDeployment"]["id"], id.as_str());
    // `ok_as` claims as the role's name: report as that runner.
    let runner = slipway_client::Client::new(&api.base_url(), &api.token(Role::Runner, "runner"));
    let reporter = Reporter::start(runner, id.clone(), "i-1".into(), Mask::default(), 0);
    // 300 lines of 60 KiB: 18 MiB in all, over the API's 8 MiB limit.
    let line = "x".repeat(60 * 1024);
    let started = Instant::now();
    for n in 0..300 {
        reporter.line(format!("{n} {line}"));
    }
    reporter.flush().await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the lines were not stuck retrying: {:?}",
        started.elapsed()
    );
    let d = api
        .ok_as(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { logCount } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(d["deployment"]["logCount"], 300);
}

// ------------------------------------------------------------ missed events

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_became_claimable_without_an_event_is_claimed_within_the_resync() {
    use sea_orm::ConnectionTrait;
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("resync");
    let _guard = StackGuard::new(stack.clone());
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "first",
    );
    // One in progress (held by nobody that runs), one queued behind it.
    let stuck = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    api.ok_as(
        Role::Runner,
        "mutation($id: ID!) { claimDeployment(id: $id, instance: \"gone\") { id } }",
        json!({"id": stuck}),
    )
    .await;
    let waiting = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let _runner = start_runner_with(
        &api,
        "runner-1",
        RunnerOptions {
            resync_every: Duration::from_secs(2),
            ..RunnerOptions::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The first ends behind the API's back: nobody hears that the second
    // became claimable.
    api.state
        .db
        .execute_unprepared(&format!(
            "UPDATE deployments SET status = 'FAILED', finished_at = started_at WHERE id = {stuck}"
        ))
        .await
        .unwrap();
    let d = api.wait_final(&waiting, Duration::from_secs(60)).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
}

// ------------------------------------------------------------ retried claims

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_sent_again_and_the_deployment_goes_on() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = shop(&api).await;
    let stack = stack_name("claimagain");
    let _guard = StackGuard::new(stack.clone());
    let proxy = Proxy::start(Target::Tcp(api.addr)).await;
    let dir = tempfile::tempdir().unwrap();
    let _runner = in_workdir(&api, "runner-1", dir.path(), Some(proxy.url()), None).await;
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, "")),
            (
                "docker-compose.yml",
                &web("slipway-test/busybox:latest", SLEEP, FAST, ""),
            ),
        ],
        "first",
    );
    // The claim reaches the API, which grants it; its answer never comes back.
    proxy.lose_answer_to("claimDeployment");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert!(proxy.answer_lost(), "the claim's answer was lost");
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
}

//! Tasks of the spec (`tasks:`), run as swarm jobs by a real runner on the
//! real swarm: before the rollout, after it, and alone.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::runner::start_runner;
use slipway_testkit::swarm::{inspect_service, running_images, stack_name, StackGuard};

const WITHIN: Duration = Duration::from_secs(180);

/// `web` serves `/etc` (its config `motd` among it) over HTTP on 8080. Its
/// name resolves to its tasks (`dnsrr`): virtual IPs need the kernel's IPVS,
/// which not every test machine has.
fn compose(image: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    stop_grace_period: 1s
    environment:
      GREETING: from-web
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      update_config: {{delay: 1s, monitor: 2s}}
    configs:
      - source: motd
        target: /etc/motd
    networks: [backend]
configs:
  motd:
    file: ./motd.txt
networks:
  backend:
    driver: overlay
"#
    )
}

fn spec(stack: &str, tasks: &str) -> String {
    format!("stack: {stack}\nenvironments:\n  production: {{}}\ntasks:\n{tasks}")
}

fn migrate(command: &str) -> String {
    format!(
        "  migrate:\n    service: web\n    command: [sh, -c, {command:?}]\n    before: deploy\n    timeout: 1m\n"
    )
}

/// A smoke test of `web`, tried a few times while the overlay network's
/// routes to the new task settle, as smoke tests do.
fn smoke(path: &str) -> String {
    format!(
        "  smoke:\n    image: slipway-test/busybox:latest\n    command: sh -c \"for i in 1 2 3 4 5 6; do wget -q -O- http://web:8080/{path} && exit 0; sleep 1; done; exit 1\"\n    after: deploy\n    timeout: 1m\n"
    )
}

async fn setup(test: &str) -> (TestApi, Repo, String, StackGuard) {
    let stack = stack_name(test);
    let guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    (api, repo, stack, guard)
}

/// The lines of deployment `d`'s log in stream `stream`.
fn stream(d: &Value, stream: &str) -> Vec<String> {
    d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == stream)
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

fn version(service: &str) -> u64 {
    inspect_service(service).expect("the service exists")["Version"]["Index"]
        .as_u64()
        .unwrap()
}

async fn deploy_task(api: &TestApi, task: &str, sha: &str) -> String {
    let data = api
        .ok_as(
            Role::Deployer,
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id runsTask } }",
            json!({"input": {"application": "shop", "environment": "production", "ref": "main", "sha": sha, "task": task}}),
        )
        .await;
    let runs = task.strip_prefix("deploy:").unwrap_or(task);
    assert_eq!(data["createDeployment"]["runsTask"], runs, "{data}");
    data["createDeployment"]["id"].as_str().unwrap().to_owned()
}

async fn release_of(api: &TestApi) -> Value {
    api.ok_as(
        Role::Viewer,
        r#"query { application(name: "shop") { environment(name: "production") { release { deployment { id } } } } }"#,
        json!({}),
    )
    .await["application"]["environment"]["release"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_runs_before_the_rollout_and_a_failing_one_leaves_the_stack_untouched() {
    let (api, repo, stack, _guard) = setup("task-before").await;
    let _runner = start_runner(&api, "runner-1").await;
    let web = format!("{stack}_web");

    // A first deploy: the migration runs with web's image, environment and
    // config (on a network the deployment creates), before web exists.
    let first = repo.commit(
        &[
            (
                "slipway.yml",
                &spec(
                    &stack,
                    &migrate("echo migrating with $$GREETING; cat /etc/motd; echo done"),
                ),
            ),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest"),
            ),
            ("motd.txt", "hello from the config\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(
        stream(&d, "migrate"),
        ["migrating with from-web", "hello from the config", "done"],
        "the job's output is in the log under the task's name: {d}"
    );
    assert!(
        inspect_service(&format!("{stack}_migrate")).is_none(),
        "the job is removed"
    );
    assert_eq!(running_images(&web).len(), 1);
    let before = version(&web);

    // A failing migration: FAILED with its exit code and last lines, and web
    // is not touched — not even updated.
    let failing = repo.commit(
        &[
            (
                "slipway.yml",
                &spec(
                    &stack,
                    &migrate("echo step one; echo relation users exists >&2; exit 4"),
                ),
            ),
            ("docker-compose.yml", &compose("slipway-test/busybox:v2")),
        ],
        "failing migration",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&failing))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("task migrate exited with code 4"),
        "{message}"
    );
    assert!(message.contains("relation users exists"), "{message}");
    assert!(message.contains("no service was changed"), "{message}");
    assert_eq!(version(&web), before, "web was not updated");
    let images = running_images(&web);
    assert!(
        images.len() == 1 && images[0].contains("busybox:latest"),
        "{images:?}"
    );
    assert!(inspect_service(&format!("{stack}_migrate")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_test_after_the_rollout_reaches_the_services_and_a_failing_one_rolls_back() {
    let (api, repo, stack, _guard) = setup("task-after").await;
    let _runner = start_runner(&api, "runner-1").await;
    let web = format!("{stack}_web");

    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, &smoke("motd"))),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest"),
            ),
            ("motd.txt", "served by web\n"),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(stream(&d, "smoke"), ["served by web"], "{d}");
    let released = id;

    // The smoke test of the next commit fails: the stack goes back.
    let second = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, &smoke("no-such-page"))),
            ("docker-compose.yml", &compose("slipway-test/busybox:v2")),
        ],
        "failing smoke test",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back:"), "{message}");
    assert!(
        message.contains("task smoke exited with code 1"),
        "{message}"
    );
    let image = inspect_service(&web).unwrap()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.contains("busybox:latest"), "web is back: {image}");
    assert!(inspect_service(&format!("{stack}_smoke")).is_none());
    assert_eq!(
        release_of(&api).await["deployment"]["id"],
        released.as_str(),
        "the release is still the first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_alone_at_a_commit_and_is_not_a_release() {
    let (api, repo, stack, _guard) = setup("task-alone").await;
    let _runner = start_runner(&api, "runner-1").await;
    let web = format!("{stack}_web");
    let tasks = "  flush:\n    service: web\n    command: [sh, -c, \"echo flushing for $$GREETING\"]\n  broken:\n    image: slipway-test/busybox:latest\n    command: [sh, -c, \"exit 9\"]\n";
    let sha = repo.commit(
        &[
            ("slipway.yml", &spec(&stack, tasks)),
            (
                "docker-compose.yml",
                &compose("slipway-test/busybox:latest"),
            ),
            ("motd.txt", "hello\n"),
        ],
        "first",
    );
    let released = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    assert_eq!(
        api.wait_final(&released, WITHIN).await["status"],
        "SUCCEEDED"
    );
    let before = version(&web);

    let id = deploy_task(&api, "deploy:flush", &sha).await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("task flush succeeded"),
        "{d}"
    );
    assert_eq!(stream(&d, "flush"), ["flushing for from-web"], "{d}");
    assert_eq!(d["services"], json!([]), "a task records no release: {d}");
    assert_eq!(version(&web), before, "no service was touched");
    assert_eq!(
        release_of(&api).await["deployment"]["id"],
        released.as_str(),
        "the release is still the rollout's"
    );

    let id = deploy_task(&api, "broken", &sha).await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("task broken exited with code 9") && message.contains("no service"),
        "{message}"
    );

    let id = deploy_task(&api, "seed", &sha).await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("no task \"seed\"") && message.contains("broken, flush"),
        "names the tasks there are: {message}"
    );
    assert_eq!(version(&web), before);
}

/// An engine older than swarm jobs, as far as `/version` and `/_ping` go.
async fn old_engine() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if head.contains("/version ") {
                    r#"{"Version":"19.03.15","ApiVersion":"1.40","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#
                } else if head.contains("/_ping ") {
                    "OK"
                } else {
                    r#"{"message":"page not found"}"#
                };
                let status = if head.contains("/version ") || head.contains("/_ping ") {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.40\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("tcp://{addr}")
}

#[tokio::test]
async fn an_engine_older_than_swarm_jobs_is_told_apart() {
    let engine = slipway_runner::swarm::Engine::connect(Some(&old_engine().await))
        .await
        .expect("the fake engine answers");
    let err = slipway_runner::swarm::job::check_jobs(&engine)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("speaks API 1.40 (19.03.15)") && err.contains("need API 1.41 (Docker 20.10)"),
        "{err}"
    );
    let real = slipway_runner::swarm::Engine::connect(None).await.unwrap();
    slipway_runner::swarm::job::check_jobs(&real)
        .await
        .expect("this machine's engine runs jobs");
}

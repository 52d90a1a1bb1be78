//! What runs where, node by node, on the real swarm: after a deployment
//! every task runs the release's digest; changes made by hand show as drift,
//! from the tasks and against git (the drift check's plan of the release).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};

use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::registry::{push, repository, require_registries, LocalTags, OPEN};
use slipway_testkit::runner::{start_runner_with, RunnerOptions};
use slipway_testkit::swarm::{stack_name, StackGuard};
use slipway_testkit::wait;

const WITHIN: Duration = Duration::from_secs(180);

const NODES: &str = "query { application(name: \"shop\") { environment(name: \"production\") {
    nodes { observedBy consistent drift services { name replicas running tasks { node digest state error } } }
    release { consistent services { name digest } }
} } }";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn environment(api: &TestApi) -> Value {
    api.ok_as(Role::Viewer, NODES, json!({})).await["application"]["environment"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_s_digest_is_reported_and_changes_by_hand_are_drift() {
    require_registries();
    let clock = Clock::manual(chrono::Utc::now());
    let api = TestApi::start_with(Backend::Sqlite, clock.clone(), Settings::default()).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let stack = stack_name("nodes");
    let _guard = StackGuard::new(stack.clone());
    // From a registry, so that the release pins a digest.
    let image = format!("{}:main", repository(OPEN, &stack));
    let _tags = LocalTags::new(repository(OPEN, &stack));
    let pushed = push("slipway-test/busybox:latest", &image);
    let options = RunnerOptions {
        observe_every: Duration::from_secs(1),
        ..RunnerOptions::default()
    };
    let _runner = start_runner_with(&api, "runner-1", options).await;
    let sha = repo.commit(
        &[
            (
                "slipway.yml",
                &format!("stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production: {{}}\n"),
            ),
            (
                "docker-compose.yml",
                &format!(
                    r#"services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config: {{parallelism: 2, delay: 0s, monitor: 1s}}
  worker:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"#
                ),
            ),
        ],
        "two services",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&sha))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");

    // Reported at once after the deployment: every task on this node, on
    // the release's digest.
    let env = wait::until("a consistent report", Duration::from_secs(30), || async {
        let env = environment(&api).await;
        match env["nodes"]["consistent"] == true && env["release"]["consistent"] == true {
            true => Ok(env),
            false => Err(env.to_string()),
        }
    })
    .await;
    let host = docker(&["info", "--format", "{{.Name}}"]);
    let web = format!("{stack}_web");
    let digest = env["release"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == web.as_str())
        .and_then(|s| s["digest"].as_str())
        .expect("the release pins web's digest")
        .to_owned();
    assert_eq!(digest, pushed);
    let services = env["nodes"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 2, "{env}");
    let observed = services.iter().find(|s| s["name"] == web.as_str()).unwrap();
    assert_eq!(observed["replicas"], 2);
    assert_eq!(observed["running"], 2);
    for task in observed["tasks"].as_array().unwrap() {
        assert_eq!(task["node"], host.as_str(), "{task}");
        assert_eq!(task["digest"], digest.as_str(), "{task}");
        assert_eq!(task["state"], "running", "{task}");
    }
    assert_eq!(env["nodes"]["observedBy"], "runner-1");

    // By hand: the worker removed, web pinned to a node that does not exist.
    docker(&["service", "rm", &format!("{stack}_worker")]);
    docker(&[
        "service",
        "update",
        "--detach",
        "--constraint-add",
        "node.labels.slipway-nowhere==yes",
        &web,
    ]);
    let env = wait::until(
        "the drift to be reported",
        Duration::from_secs(60),
        || async {
            let env = environment(&api).await;
            let drift = env["nodes"]["drift"].to_string();
            match drift.contains("is not on the swarm") && drift.contains("pending") {
                true => Ok(env),
                false => Err(env.to_string()),
            }
        },
    )
    .await;
    let drift: Vec<&str> = env["nodes"]["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        drift.contains(
            &format!("{stack}_worker is not on the swarm: removed since the release").as_str()
        ),
        "{drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|line| line.starts_with(&format!("{web} on ")) && line.contains(" is pending")),
        "{drift:?}"
    );
    assert_eq!(env["nodes"]["consistent"], false);
    assert_eq!(env["release"]["consistent"], false);

    // Against git: once the release is ten minutes old the API asks for a
    // plan of its commit, which the runner makes against the swarm. It
    // compares what the commit says (web's replicas; not the constraint,
    // which the commit leaves to the swarm).
    docker(&["service", "update", "--detach", "--replicas", "3", &web]);
    clock.advance(chrono::Duration::minutes(11));
    let drift = wait::until("the drift check against git", WITHIN, || async {
        let data = api
            .ok_as(
                Role::Viewer,
                "{ application(name: \"shop\") { environment(name: \"production\") { drift { drifted sha services { name action changes } plan { createdBy runner } } } } }",
                json!({}),
            )
            .await;
        let drift = data["application"]["environment"]["drift"].clone();
        match drift.is_null() {
            false => Ok(drift),
            true => Err("not checked yet".to_owned()),
        }
    })
    .await;
    assert_eq!(drift["drifted"], true, "{drift}");
    assert_eq!(drift["sha"], sha.as_str());
    assert_eq!(drift["plan"]["createdBy"], "slipway:drift");
    assert_eq!(drift["plan"]["runner"], "runner-1");
    let services = drift["services"].as_array().unwrap();
    let action = |name: &str| {
        services.iter().find(|s| s["name"] == name).map(|s| {
            (
                s["action"].as_str().unwrap().to_owned(),
                s["changes"].to_string(),
            )
        })
    };
    let (web_action, web_changes) = action(&web).unwrap_or_else(|| panic!("{drift}"));
    assert_eq!(web_action, "update", "{drift}");
    assert!(
        web_changes.contains("/Mode/Replicated/Replicas"),
        "scaled by hand: {drift}"
    );
    assert_eq!(
        action(&format!("{stack}_worker"))
            .map(|(a, _)| a)
            .as_deref(),
        Some("create"),
        "the worker removed by hand: {drift}"
    );
}

//! The commits a runner reports while deploying, on the real swarm: after
//! two deployments of a real repository the API knows the history between
//! them and how far the environments are apart.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::{GitServer, Repo};
use slipway_testkit::proxy::{Proxy, Target};
use slipway_testkit::runner::{start_runner, start_runner_with, RunnerOptions};
use slipway_testkit::swarm::{stack_name, StackGuard};

const WITHIN: Duration = Duration::from_secs(180);

/// Each environment its own stack, so both may run at once.
fn spec(stack: &str) -> String {
    format!(
        "compose: docker-compose.yml\nenvironments:\n  production:\n    stack: {stack}-p\n    \
         timeout: 2m\n  staging:\n    stack: {stack}-s\n    timeout: 2m\n"
    )
}

const COMPOSE: &str = r#"version: "3.8"
services:
  web:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy:
      update_config: {parallelism: 1, delay: 1s, monitor: 1s}
      restart_policy: {delay: 1s}
"#;

fn log_text(d: &Value) -> String {
    d["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn distance(api: &TestApi, here: &str, to: &str) -> Value {
    api.ok_as(
        Role::Viewer,
        "query($here: String!, $to: String!) { application(name: \"shop\") { environment(name: $here) {
            commitDistance(to: $to) { behind ahead exact } } } }",
        json!({"here": here, "to": to}),
    )
    .await["application"]["environment"]["commitDistance"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_two_deployments_the_api_knows_how_far_the_environments_are_apart() {
    let stack = stack_name("commits");
    let _production = StackGuard::new(format!("{stack}-p"));
    let _staging = StackGuard::new(format!("{stack}-s"));
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;

    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", COMPOSE),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let log = log_text(&d);
    assert!(
        log.contains(&format!(
            "reported 1 commit(s) up to {} to the API, 1 new to it",
            &first[..7]
        )),
        "{log}"
    );

    //   first - second ---- third - merge     main
    //                \             /
    //                 feature -----
    repo.commit(&[("README", "two")], "second");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit(&[("FEATURE", "f")], "feature");
    repo.git(&["checkout", "-q", "-"]);
    repo.commit(&[("README", "three")], "third");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merge = repo.head();
    let id = api
        .deploy_ref("shop", "staging", "main", Some(&merge))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let log = log_text(&d);
    assert!(
        log.contains(&format!(
            "reported 4 commit(s) up to {} to the API, 4 new to it",
            &merge[..7]
        )),
        "the walk stops at production's release: {log}"
    );

    assert_eq!(
        distance(&api, "production", "staging").await,
        json!({"behind": 4, "ahead": 0, "exact": true})
    );
    assert_eq!(
        distance(&api, "staging", "production").await,
        json!({"behind": 0, "ahead": 4, "exact": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_fails_is_a_warning_and_the_deployment_succeeds() {
    let stack = stack_name("commitsfail");
    let _production = StackGuard::new(format!("{stack}-p"));
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let proxy = Proxy::start(Target::Tcp(api.addr)).await;
    let options = RunnerOptions {
        api_url: Some(proxy.url()),
        ..RunnerOptions::default()
    };
    let _runner = start_runner_with(&api, "runner-1", options).await;
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", COMPOSE),
        ],
        "first",
    );
    // The runner's question for the releases' commits never gets an answer.
    proxy.lose_answer_to("\"operationName\":\"ReleaseShas\"");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert!(proxy.answer_lost(), "the question's answer was lost");
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let log = log_text(&d);
    assert!(
        log.contains(&format!(
            "warning: the API was not told the commits of {}: asking for the commits of the \
             releases:",
            &first[..7]
        )),
        "{log}"
    );
    assert!(!log.contains("reported 1 commit(s)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shallow_mirror_is_deepened_so_that_the_distance_is_exact() {
    let stack = stack_name("commitsshallow");
    let _production = StackGuard::new(format!("{stack}-p"));
    let _staging = StackGuard::new(format!("{stack}-s"));
    let api = TestApi::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    // Served by `git daemon`: the runner fetches each commit one deep.
    let server = GitServer::start(dir.path()).await;
    api.app("shop", &server.url, &[]).await;
    let _runner = start_runner(&api, "runner-1").await;

    let first = server.commit(
        "main",
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", COMPOSE),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    // Fifteen commits on: more than the first, smallest deepening fetches.
    for n in 2..=15 {
        server.commit(
            "main",
            &[("README", &n.to_string())],
            &format!("commit {n}"),
        );
    }
    let last = server.commit("main", &[("README", "16")], "commit 16");
    let id = api.deploy_ref("shop", "staging", "main", Some(&last)).await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let log = log_text(&d);
    for depth in [10, 100] {
        assert!(
            log.contains(&format!(
                "the mirror was shallow at {}: fetched its history {depth} commits deep",
                &last[..7]
            )),
            "{log}"
        );
    }
    assert!(
        log.contains(&format!("reported 15 commit(s) up to {}", &last[..7])),
        "{log}"
    );
    assert_eq!(
        distance(&api, "production", "staging").await,
        json!({"behind": 15, "ahead": 0, "exact": true})
    );
}

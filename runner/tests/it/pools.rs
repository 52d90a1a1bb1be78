//! Runner pools on the real swarm: each environment names the labels of the
//! runners that may deploy it, and its deployments go to those runners only.

use std::time::Duration;

use serde_json::json;
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::runner::{start_runner_with, RunnerOptions};
use slipway_testkit::swarm::{inspect_service, stack_name, StackGuard};
use slipway_testkit::wait;

const WITHIN: Duration = Duration::from_secs(180);

fn compose(greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    environment:
      GREETING: "{greeting}"
    stop_grace_period: 1s
    deploy:
      update_config: {{parallelism: 1, delay: 0s, monitor: 1s}}
"#
    )
}

fn pool(label: &str) -> RunnerOptions {
    RunnerOptions {
        labels: vec![label.into()],
        ..RunnerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_go_only_to_runners_of_their_pool() {
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let (staging, production, eu) = (
        stack_name("pool-staging"),
        stack_name("pool-prod"),
        stack_name("pool-eu"),
    );
    let _guards = [&staging, &production, &eu].map(|s| StackGuard::new(s.clone()));
    for (env, label) in [
        ("staging", "swarm=staging"),
        ("production", "swarm=prod"),
        ("eu", "swarm=eu"),
    ] {
        api.ok_as(
            Role::Admin,
            "mutation($e: String!, $l: [String!]!) { createEnvironment(input: {application: \"shop\", name: $e, runnerLabels: $l}) { name } }",
            json!({"e": env, "l": [label]}),
        )
        .await;
    }
    let spec = format!(
        "compose: docker-compose.yml\nenvironments:\n  staging:\n    stack: {staging}\n  production:\n    stack: {production}\n  eu:\n    stack: {eu}\n"
    );
    let _staging_runner = start_runner_with(&api, "staging-runner", pool("swarm=staging")).await;
    let _prod_runner = start_runner_with(&api, "prod-runner", pool("swarm=prod")).await;

    let mut ids = Vec::new();
    for round in 0..2 {
        let sha = repo.commit(
            &[
                ("slipway.yml", &spec),
                ("docker-compose.yml", &compose(&format!("round {round}"))),
            ],
            &format!("round {round}"),
        );
        for env in ["staging", "production"] {
            ids.push((env, api.deploy_ref("shop", env, "main", Some(&sha)).await));
        }
    }
    let eu_id = api.deploy("shop", "eu").await;
    for (env, id) in &ids {
        let d = api.wait_final(id, WITHIN).await;
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
        let want = match *env {
            "staging" => "staging-runner",
            _ => "prod-runner",
        };
        assert_eq!(d["runner"], want, "{env}: {d}");
    }
    for stack in [&staging, &production] {
        assert!(
            inspect_service(&format!("{stack}_web")).is_some(),
            "{stack}"
        );
    }

    // Nobody may take the eu deployment: it waits, and says why.
    let message = wait::until(
        "the eu deployment to say why it waits",
        Duration::from_secs(20),
        || async {
            let d = api.status(&eu_id).await;
            match d["message"].as_str() {
                Some(m) if d["status"] == "QUEUED" => Ok(m.to_owned()),
                _ => Err(d.to_string()),
            }
        },
    )
    .await;
    assert_eq!(message, "waiting: no runner with swarm=eu is connected");
    assert!(inspect_service(&format!("{eu}_web")).is_none());
}

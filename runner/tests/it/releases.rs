//! Rolling back to a release on the real swarm: the release's commit and the
//! image digests it ran, whatever the tags point at now.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::git::Repo;
use slipway_testkit::registry::{push, repository, require_registries, LocalTags, OPEN};
use slipway_testkit::runner::start_runner;
use slipway_testkit::swarm::{
    inspect_service, running_images, service_env, stack_name, StackGuard,
};

const WITHIN: Duration = Duration::from_secs(180);

fn spec(stack: &str) -> String {
    format!("stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production:\n    timeout: 2m\n")
}

fn compose(image: &str, greeting: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    environment:
      GREETING: {greeting}
    stop_grace_period: 1s
    deploy:
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s}}
      restart_policy: {{delay: 1s}}
"#
    )
}

fn spec_image(service: &Value) -> String {
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn rollback_to(api: &TestApi, to: Option<&str>, reason: &str) -> String {
    let data = api
        .ok_as(
            Role::Deployer,
            "mutation($to: String, $r: String!) { rollbackDeployment(application: \"shop\", environment: \"production\", to: $to, reason: $r) { id } }",
            json!({"to": to, "r": reason}),
        )
        .await;
    data["rollbackDeployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

fn log_text(d: &Value) -> String {
    d["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_commit_and_the_digests_its_release_ran() {
    require_registries();
    let stack = stack_name("rollback");
    let _guard = StackGuard::new(stack.clone());
    let image = format!("{}:main", repository(OPEN, &stack));
    let _tags = LocalTags::new(repository(OPEN, &stack));
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;
    let web = format!("{stack}_web");

    // Release 1: the tag on one image; release 2: the tag moved, a new commit.
    let first_digest = push("slipway-test/busybox:latest", &image);
    let first = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &compose(&image, "one")),
        ],
        "first",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&first))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let second_digest = push("slipway-test/busybox:v2", &image);
    assert_ne!(first_digest, second_digest);
    let second = repo.commit(&[("docker-compose.yml", &compose(&image, "two"))], "second");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&second))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    assert_eq!(
        spec_image(&inspect_service(&web).unwrap()),
        format!("{image}@{second_digest}")
    );

    // Back to release 1: its spec and its digest, though the tag points at
    // the second image now.
    let id = rollback_to(&api, None, "the second release is broken").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["sha"], first.as_str());
    let pinned = format!("{image}@{first_digest}");
    assert_eq!(spec_image(&inspect_service(&web).unwrap()), pinned);
    assert_eq!(running_images(&web), std::slice::from_ref(&pinned));
    assert!(service_env(&web).contains(&"GREETING=one".to_owned()));
    let log = log_text(&d);
    assert!(
        log.contains(
            "deploying shop#1 exactly: its images pinned to the digests it ran (1 of 1 services)"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{web}: {image} pinned to {first_digest}, the digest shop#1 ran"
        )),
        "{log}"
    );
    assert_eq!(
        d["services"],
        json!([{"name": web, "image": image, "digest": first_digest}]),
        "the rollback is a release of its own, on the first digest"
    );

    // And forward again to release 2 by its number: its digest, not the tag's.
    push("slipway-test/busybox:latest", &image);
    let id = rollback_to(&api, Some("shop#2"), "it was fine after all").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(
        spec_image(&inspect_service(&web).unwrap()),
        format!("{image}@{second_digest}")
    );
    assert!(service_env(&web).contains(&"GREETING=two".to_owned()));
}

/// Four services; `crash` makes `worker`'s command exit at once.
fn four_services(greeting: &str, crash: bool) -> String {
    let mut out = String::from("version: \"3.8\"\nservices:\n");
    for name in ["web", "api", "worker", "cache"] {
        let command = if crash && name == "worker" {
            r#"["sh", "-c", "echo worker cannot start >&2; exit 3"]"#
        } else {
            r#"["sleep", "3600"]"#
        };
        out.push_str(&format!(
            r#"  {name}:
    image: slipway-test/busybox:latest
    command: {command}
    environment:
      GREETING: {greeting}
    stop_grace_period: 1s
    deploy:
      update_config: {{parallelism: 1, delay: 1s, monitor: 2s}}
      restart_policy: {{delay: 1s}}
"#
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_that_crash_loops_takes_the_whole_stack_back_to_its_release() {
    let stack = stack_name("allornothing");
    let _guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;

    let good = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &four_services("one", false)),
        ],
        "four services",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&good))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    let converged = convergence(&api, &id).await;
    assert_eq!(converged.len(), 4, "{converged:?}");
    assert!(
        converged.iter().all(|c| c["state"] == "CONVERGED"),
        "{converged:?}"
    );
    let before: Vec<(String, Value)> = ["web", "api", "worker", "cache"]
        .iter()
        .map(|s| {
            let name = format!("{stack}_{s}");
            let spec =
                inspect_service(&name).unwrap()["Spec"]["TaskTemplate"]["ContainerSpec"].clone();
            (name, spec)
        })
        .collect();

    // Every service changes; the worker's new spec crash-loops.
    let bad = repo.commit(
        &[("docker-compose.yml", &four_services("two", true))],
        "the worker cannot start",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&bad))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap_or_default();
    let worker = format!("{stack}_worker");
    assert!(
        message.contains(&format!("{worker}: ")),
        "names the service: {message}"
    );
    assert!(
        message.contains("exit (3)") || message.contains("exit code 3"),
        "the task's error: {message}"
    );
    // Per service, how it converged: the worker failed, with its task's error.
    let states = convergence(&api, &id).await;
    let failed = states
        .iter()
        .find(|c| c["service"] == worker.as_str())
        .unwrap_or_else(|| panic!("{states:?}"));
    assert_eq!(failed["state"], "FAILED", "{states:?}");
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("exit (3)") || detail.contains("exit code 3"),
        "{detail}"
    );
    assert!(!detail.starts_with(&worker), "{detail}");
    assert!(
        message.contains(&format!(
            "the stack is back on release shop#1 ({})",
            &good[..7]
        )),
        "{message}"
    );
    for (name, spec) in &before {
        assert_eq!(
            &inspect_service(name).unwrap()["Spec"]["TaskTemplate"]["ContainerSpec"],
            spec,
            "{name} runs its previous spec"
        );
        assert!(
            service_env(name).contains(&"GREETING=one".to_owned()),
            "{name}"
        );
        slipway_testkit::swarm::wait_running(name, "slipway-test/busybox:latest", 1, WITHIN).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_runs_the_digest_staging_ran_though_the_tag_moved() {
    require_registries();
    let stack = stack_name("promote");
    let (staging_stack, production_stack) = (format!("{stack}-s"), format!("{stack}-p"));
    let _guards = [
        StackGuard::new(staging_stack.clone()),
        StackGuard::new(production_stack.clone()),
    ];
    let image = format!("{}:main", repository(OPEN, &stack));
    let _tags = LocalTags::new(repository(OPEN, &stack));
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;

    let staged = push("slipway-test/busybox:latest", &image);
    let sha = repo.commit(
        &[
            (
                "slipway.yml",
                &format!(
                    "compose: docker-compose.yml\nenvironments:\n  staging:\n    stack: {staging_stack}\n    timeout: 2m\n  production:\n    stack: {production_stack}\n    timeout: 2m\n"
                ),
            ),
            ("docker-compose.yml", &compose(&image, "staged")),
        ],
        "a release candidate",
    );
    let id = api.deploy_ref("shop", "staging", "main", Some(&sha)).await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");
    // CI pushes the next build under the same tag meanwhile.
    assert_ne!(push("slipway-test/busybox:v2", &image), staged);

    let data = api
        .ok_as(
            Role::Deployer,
            "mutation { promoteDeployment(application: \"shop\", from: \"staging\", to: \"production\") { id } }",
            json!({}),
        )
        .await;
    let id = data["promoteDeployment"]["id"].as_str().unwrap().to_owned();
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let web = format!("{production_stack}_web");
    let pinned = format!("{image}@{staged}");
    assert_eq!(spec_image(&inspect_service(&web).unwrap()), pinned);
    assert_eq!(running_images(&web), std::slice::from_ref(&pinned));
    assert!(
        log_text(&d).contains(&format!(
            "{web}: {image} pinned to {staged}, the digest shop#1 ran"
        )),
        "{}",
        log_text(&d)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_deploy_that_touches_no_watched_path_deploys_nothing() {
    let stack = stack_name("watch");
    let _guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;
    let auto_deploy = |sha: String| {
        let api = &api;
        async move {
            let data = api
                .ok_as(
                    Role::Provider,
                    "mutation($sha: String) { createDeployment(input: {application: \"shop\", environment: \"production\", ref: \"main\", sha: $sha, autoDeploy: true}) { id } }",
                    json!({"sha": sha}),
                )
                .await;
            let id = data["createDeployment"]["id"].as_str().unwrap().to_owned();
            api.wait_final(&id, WITHIN).await
        }
    };

    let spec = format!(
        "stack: {stack}\ncompose: services/api/docker-compose.yml\nenvironments:\n  production:\n    timeout: 2m\n    watch: [services/api/**, libs/**]\n"
    );
    let first = repo.commit(
        &[
            ("slipway.yml", &spec),
            (
                "services/api/docker-compose.yml",
                &compose("slipway-test/busybox:latest", "one"),
            ),
            ("services/web/index.html", "<p>web</p>\n"),
        ],
        "api and web",
    );
    let d = auto_deploy(first.clone()).await;
    assert_eq!(d["status"], "SUCCEEDED", "the first release deploys: {d}");

    // Only the other service's files change: nothing is deployed.
    let elsewhere = repo.commit(
        &[
            ("services/web/index.html", "<p>web, changed</p>\n"),
            ("README.md", "notes\n"),
        ],
        "web only",
    );
    let d = auto_deploy(elsewhere.clone()).await;
    assert_eq!(d["status"], "CANCELLED", "{d}");
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "{} changes nothing production watches (services/api/**, libs/**) since shop#1 ({}): \
             2 path(s) changed, none of them watched, so nothing was deployed",
            &elsewhere[..7],
            &first[..7]
        )),
        "{message}"
    );
    let web = format!("{stack}_web");
    assert!(service_env(&web).contains(&"GREETING=one".to_owned()));

    // A watched path changes (a library): it deploys.
    let library = repo.commit(
        &[
            ("libs/db/schema.sql", "create table t (id int);\n"),
            (
                "services/api/docker-compose.yml",
                &compose("slipway-test/busybox:latest", "two"),
            ),
        ],
        "the api and a library",
    );
    let d = auto_deploy(library).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(service_env(&web).contains(&"GREETING=two".to_owned()));
    assert!(
        log_text(&d).contains("2 watched path(s) changed since shop#1"),
        "{}",
        log_text(&d)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_service_takes_back_only_the_service_that_failed() {
    let stack = stack_name("perservice");
    let _guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let _runner = start_runner(&api, "runner-1").await;
    let spec = format!(
        "stack: {stack}\ncompose: docker-compose.yml\nenvironments:\n  production:\n    timeout: 2m\n    rollback: service\n"
    );
    let good = repo.commit(
        &[
            ("slipway.yml", &spec),
            ("docker-compose.yml", &four_services("one", false)),
        ],
        "four services",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&good))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    let bad = repo.commit(
        &[("docker-compose.yml", &four_services("two", true))],
        "the worker cannot start",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&bad))
        .await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let worker = format!("{stack}_worker");
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "{worker} was rolled back alone (rollback: service), the other services keep the new spec"
        )),
        "{message}"
    );
    assert!(service_env(&worker).contains(&"GREETING=one".to_owned()));
    slipway_testkit::swarm::wait_running(&worker, "slipway-test/busybox:latest", 1, WITHIN).await;
    for other in ["web", "api", "cache"] {
        let name = format!("{stack}_{other}");
        assert!(
            service_env(&name).contains(&"GREETING=two".to_owned()),
            "{name} keeps the new spec"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_restarted_while_rolling_back_goes_on_with_the_rollback() {
    let stack = stack_name("midrollback");
    let _guard = StackGuard::new(stack.clone());
    let api = TestApi::start(Backend::Sqlite).await;
    let repo = Repo::new();
    api.app("shop", &repo.url(), &[]).await;
    let runner = start_runner(&api, "runner-1").await;
    // `slow` has three replicas that go back one at a time, 4 s apart: the
    // rollback takes long enough to stop the runner in the middle of it.
    let stack_file = |greeting: &str, crash: bool| {
        format!(
            r#"version: "3.8"
services:
  web:
    image: slipway-test/busybox:latest
    command: {}
    environment:
      GREETING: {greeting}
    stop_grace_period: 1s
    deploy:
      update_config: {{parallelism: 1, delay: 1s, monitor: 2s}}
      restart_policy: {{delay: 1s}}
  slow:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    environment:
      GREETING: {greeting}
    stop_grace_period: 1s
    deploy:
      replicas: 3
      update_config: {{parallelism: 3, delay: 0s, monitor: 1s}}
      rollback_config: {{parallelism: 1, delay: 4s, monitor: 1s}}
      restart_policy: {{delay: 1s}}
"#,
            if crash {
                r#"["sh", "-c", "exit 3"]"#
            } else {
                r#"["sleep", "3600"]"#
            }
        )
    };
    let good = repo.commit(
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &stack_file("one", false)),
        ],
        "good",
    );
    let id = api
        .deploy_ref("shop", "production", "main", Some(&good))
        .await;
    assert_eq!(api.wait_final(&id, WITHIN).await["status"], "SUCCEEDED");

    let bad = repo.commit(&[("docker-compose.yml", &stack_file("two", true))], "bad");
    let id = api
        .deploy_ref("shop", "production", "main", Some(&bad))
        .await;
    api.wait_phase(&id, "ROLLING_BACK", WITHIN).await;
    runner.stop().await;
    let _again = start_runner(&api, "runner-1").await;
    let d = api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let log = log_text(&d);
    let restarted = log
        .find("restarted; reconciling")
        .unwrap_or_else(|| panic!("the runner restarted mid-rollback: {log}"));
    let after = &log[restarted..];
    assert!(
        after.contains("the rollback begun before the restart goes on"),
        "{log}"
    );
    assert!(
        !after.contains(": updated"),
        "nothing is applied again after the restart: {log}"
    );
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the stack is back on release shop#1"),
        "{message}"
    );
    for service in ["web", "slow"] {
        let name = format!("{stack}_{service}");
        assert!(
            service_env(&name).contains(&"GREETING=one".to_owned()),
            "{name}"
        );
    }
}

/// How each service of deployment `id` converged, as the API has it.
async fn convergence(api: &TestApi, id: &str) -> Vec<Value> {
    api.ok_as(
        Role::Viewer,
        "query($id: ID!) { deployment(id: $id) { convergence { service state detail } } }",
        json!({"id": id}),
    )
    .await["deployment"]["convergence"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

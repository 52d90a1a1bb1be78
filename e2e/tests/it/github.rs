//! GitHub in, swarm and GitHub statuses out.

use std::time::Duration;

use slipway_e2e::system::{compose, spec, System, ENVIRONMENT_URL, FAST, PUBLIC_URL};
use slipway_testkit::swarm::{self, StackGuard};

const WITHIN: Duration = Duration::from_secs(120);
const IMAGE: &str = "slipway-test/busybox:latest";

/// Checks that GitHub deployment `gh_id` got exactly `queued`, `in_progress`
/// and `last`, in that order, each linking to Slipway deployment `id`.
fn assert_statuses(system: &System, gh_id: u64, id: &str, last: &str) {
    let statuses = system.github.statuses(gh_id);
    let states: Vec<&str> = statuses.iter().map(|s| s.state()).collect();
    assert_eq!(states, ["queued", "in_progress", last], "{statuses:#?}");
    for status in &statuses {
        assert_eq!(
            status.body["log_url"],
            format!("{PUBLIC_URL}/deployments/{id}"),
            "{status:?}"
        );
        assert_eq!(
            status.body["environment_url"], ENVIRONMENT_URL,
            "{status:?}"
        );
        let description = status.body["description"].as_str().unwrap_or("");
        assert!(description.chars().count() <= 140, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_deployment_runs_on_the_swarm_and_a_broken_one_leaves_it_running() {
    let stack = swarm::stack_name("github");
    let _guard = StackGuard::new(stack.clone());
    let system = System::start().await;
    let web = format!("{stack}_web");

    // A signed `deployment` hook: two replicas with the spec's environment.
    let good = system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &compose(IMAGE, 2, "hello e2e", FAST)),
        ],
        "first release",
    );
    let gh_id = 7_100_000_001;
    let id = system.deploy_hook(gh_id, &good).await;
    let states = system.wait_github_final(gh_id, WITHIN).await;
    assert_eq!(states.last().map(String::as_str), Some("success"));
    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["sha"], good.as_str());
    assert_eq!(d["externalId"], format!("github:{gh_id}"));
    assert_statuses(&system, gh_id, &id, "success");

    let service = swarm::inspect_service(&web).expect("the service exists");
    assert_eq!(service["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(
        service["Spec"]["Labels"]["com.docker.stack.namespace"],
        stack.as_str()
    );
    assert!(
        swarm::service_env(&web).contains(&"GREETING=hello e2e".to_owned()),
        "{:?}",
        swarm::service_env(&web)
    );
    swarm::wait_running(&web, IMAGE, 2, WITHIN).await;

    // A broken image: GitHub hears `failure`, the first release keeps running.
    let broken = system.git.commit(
        "main",
        &[(
            "docker-compose.yml",
            &compose("slipway-test/nonexistent:1", 2, "broken", FAST),
        )],
        "a release whose image does not exist",
    );
    let broken_gh_id = 7_100_000_002;
    let broken_id = system.deploy_hook(broken_gh_id, &broken).await;
    system.wait_github_final(broken_gh_id, WITHIN).await;
    let d = system.api.wait_final(&broken_id, WITHIN).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap_or("");
    assert!(
        message.contains("slipway-test/nonexistent:1"),
        "names the image: {message}"
    );
    assert_statuses(&system, broken_gh_id, &broken_id, "failure");
    swarm::wait_running(&web, IMAGE, 2, WITHIN).await;
    let service = swarm::inspect_service(&web).unwrap();
    assert_eq!(
        service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"], IMAGE,
        "the first release's spec is back"
    );
    assert!(swarm::service_env(&web).contains(&"GREETING=hello e2e".to_owned()));
    // The first deployment's statuses did not change meanwhile.
    assert_eq!(
        system.github.states(gh_id),
        ["queued", "in_progress", "success"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_an_auto_deploy_branch_deploys_and_creates_a_github_deployment() {
    let stack = swarm::stack_name("push");
    let _guard = StackGuard::new(stack.clone());
    let system = System::start().await;
    let web = format!("{stack}_web");

    let before = system
        .git
        .commit("develop", &[("README", "not deployed\n")], "elsewhere");
    let sha = system.git.commit(
        "main",
        &[
            ("slipway.yml", &spec(&stack)),
            ("docker-compose.yml", &compose(IMAGE, 1, "pushed", FAST)),
        ],
        "pushed release",
    );
    // A push to a branch nothing tracks deploys nothing.
    let event = slipway_testkit::fakes::github::push_event(
        "refs/heads/develop",
        &before,
        &before,
        &system.repo_url,
    );
    let (status, body) = system.hook("push", "push-develop", &event).await;
    assert_eq!(status, 202, "{body}");

    let event = slipway_testkit::fakes::github::push_event(
        "refs/heads/main",
        &before,
        &sha,
        &system.repo_url,
    );
    let (status, body) = system.hook("push", "push-main-1", &event).await;
    assert_eq!(status, 200, "{body}");
    let id = body["deployments"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a deployment in {body}"))
        .to_owned();

    // GitHub got a deployment of that sha to production...
    let (repository, gh_id, created) =
        slipway_testkit::wait::until("a deployment on GitHub", WITHIN, || async {
            match system.github.created().as_slice() {
                [one] => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(repository, slipway_testkit::fakes::github::REPO);
    assert_eq!(created["environment"], "production");
    assert!(
        created["ref"] == sha.as_str() || created["ref"] == "main",
        "{created}"
    );
    assert_eq!(created["id"], gh_id);
    // ... with the statuses of the Slipway deployment, which ran on the swarm.
    system.wait_github_final(gh_id, WITHIN).await;
    let d = system.api.wait_final(&id, WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["sha"], sha.as_str());
    assert_statuses(&system, gh_id, &id, "success");
    swarm::wait_running(&web, IMAGE, 1, WITHIN).await;
    assert!(swarm::service_env(&web).contains(&"GREETING=pushed".to_owned()));

    // GitHub echoes the deployment Slipway created back as a `deployment`
    // event, and redelivers the push: neither deploys again.
    let mut echo = slipway_testkit::fakes::github::deployment_event(
        gh_id,
        "production",
        &sha,
        serde_json::json!({}),
        &system.repo_url,
    );
    echo["deployment"]["payload"] = created["payload"].clone();
    let (status, body) = system.hook("deployment", "echo-1", &echo).await;
    assert!(
        status == 202 || (status == 200 && body["deployments"][0]["id"] == id.as_str()),
        "{status} {body}"
    );
    let (status, body) = system.hook("push", "push-main-1", &event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployments"][0]["id"], id.as_str(), "{body}");
    assert_eq!(system.api.deployments().await.len(), 1);
    assert_eq!(system.github.created().len(), 1);
}

//! Statuses out: what GitHub is told about the deployments its events made.

use axum::http::StatusCode;
use serde_json::{json, Value};
use slipway_api::auth::Role;

use crate::support::*;

/// Sends a `deployment` event for [`GH_ID`] + `offset`; returns the Slipway id.
async fn deploy(world: &World, offset: u64, environment: &str) -> String {
    let event = deployment_event(GH_ID + offset, environment, SHA, json!({}));
    let (status, body) = world
        .provider()
        .github("deployment", &format!("delivery-{offset}"), &event)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deployments"][0]["id"].as_str().unwrap().to_owned()
}

/// Waits until GitHub has taken exactly `states` for `github_id`.
async fn states_become(world: &World, github_id: u64, states: &[&str]) -> Vec<Value> {
    let what = format!("statuses {states:?} on GitHub deployment {github_id}");
    wait_for(&what, || {
        let github = &world.github;
        async move {
            let now = github.states(github_id);
            assert!(
                states.starts_with(&now.iter().map(String::as_str).collect::<Vec<_>>()),
                "GitHub got {now:?}, which is not on the way to {states:?}"
            );
            (now == states).then(|| {
                github
                    .statuses(github_id)
                    .into_iter()
                    .map(|status| status.body)
                    .collect()
            })
        }
    })
    .await
}

#[tokio::test]
async fn a_successful_deployment_is_queued_in_progress_then_success() {
    let world = World::start().await;
    world.shop().await;
    let id = deploy(&world, 0, "production").await;

    states_become(&world, GH_ID, &["queued"]).await;
    world.api.claim_ok(RUNNER, &id).await;
    states_become(&world, GH_ID, &["queued", "in_progress"]).await;
    world.api.progress(RUNNER, &id, "updating 3 services").await;
    world
        .api
        .finish_with(RUNNER, &id, "SUCCEEDED", "3 services converged")
        .await;
    let statuses = states_become(&world, GH_ID, &["queued", "in_progress", "success"]).await;

    for status in &statuses {
        assert_eq!(status["log_url"], format!("{PUBLIC_URL}/deployments/{id}"));
        assert_eq!(status["environment_url"], "https://shop.example.com");
        assert_eq!(status["auto_inactive"], true);
        let description = status["description"].as_str().unwrap();
        assert!(description.chars().count() <= 140, "{description}");
    }
    assert_eq!(
        statuses[0]["description"],
        "shop#1 is queued for production"
    );
    assert_eq!(
        statuses[2]["description"],
        "shop#1 deployed: 3 services converged"
    );
    let received = world.github.received();
    assert!(received
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {GITHUB_TOKEN}"))));
    // A deployment from an event is GitHub's own: Slipway creates none.
    assert!(world.github.created().is_empty());
}

#[tokio::test]
async fn a_failed_deployment_is_a_failure_and_a_cancelled_one_an_error() {
    let world = World::start().await;
    world.shop().await;
    let failed = deploy(&world, 0, "staging").await;
    let cancelled = deploy(&world, 1, "qa").await;

    states_become(&world, GH_ID, &["queued"]).await;
    world.api.claim_ok(RUNNER, &failed).await;
    // A long message with multi-byte characters.
    let message = format!(
        "service web did not converge: {}",
        "tâche échouée ".repeat(20)
    );
    world
        .api
        .finish_with(RUNNER, &failed, "FAILED", &message)
        .await;
    let statuses = states_become(&world, GH_ID, &["queued", "in_progress", "failure"]).await;
    let description = statuses[2]["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 140, "{description}");
    assert!(description.starts_with("shop#1 failed: service web did not converge"));
    // Staging has no URL.
    assert!(
        statuses[2].get("environment_url").is_none(),
        "{}",
        statuses[2]
    );

    world
        .api
        .ok_as(
            Role::Deployer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status } }",
            json!({"id": cancelled}),
        )
        .await;
    states_become(&world, GH_ID + 1, &["queued", "error"]).await;
}

#[tokio::test]
async fn changes_while_the_provider_was_down_are_posted_after_it_restarts() {
    let mut world = World::start().await;
    world.shop().await;
    let id = deploy(&world, 0, "production").await;
    states_become(&world, GH_ID, &["queued"]).await;

    let config = world.stop_provider().await;
    world.api.claim_ok(RUNNER, &id).await;
    world
        .api
        .finish_with(RUNNER, &id, "SUCCEEDED", "done")
        .await;
    assert_eq!(world.github.states(GH_ID), ["queued"]);

    world.start_provider(config).await;
    states_become(&world, GH_ID, &["queued", "in_progress", "success"]).await;

    // Nothing more is posted, now or after another restart.
    let config = world.stop_provider().await;
    world.start_provider(config).await;
    let second = deploy(&world, 1, "staging").await;
    states_become(&world, GH_ID + 1, &["queued"]).await;
    assert_eq!(
        world.github.states(GH_ID),
        ["queued", "in_progress", "success"]
    );
    assert_ne!(second, id);
}

#[tokio::test]
async fn statuses_wait_out_github_failures_and_arrive_in_order() {
    let world = World::start().await;
    world.shop().await;
    world.github.fail_next(3);
    let id = deploy(&world, 0, "production").await;
    world.api.claim_ok(RUNNER, &id).await;
    world
        .api
        .finish_with(RUNNER, &id, "SUCCEEDED", "done")
        .await;

    states_become(&world, GH_ID, &["queued", "in_progress", "success"]).await;
    assert_eq!(world.github.failed(), 3, "GitHub answered 502 three times");

    // A push whose GitHub deployment cannot be created for a while.
    world.github.fail_next(2);
    let (status, body) = world
        .provider()
        .github("push", "push-1", &push_event("refs/heads/main", SHA2))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = wait_for("the push's GitHub deployment", || {
        let github = &world.github;
        async move { github.created().first().map(|c| c.1) }
    })
    .await;
    states_become(&world, created, &["queued"]).await;
    assert_eq!(world.github.created().len(), 1);
    assert_eq!(world.github.failed(), 5);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_until_it_resets() {
    let world = World::start().await;
    world.shop().await;
    world.github.rate_limit_next(1);
    deploy(&world, 0, "production").await;
    states_become(&world, GH_ID, &["queued"]).await;

    let path = format!("/repos/{REPO}/deployments/{GH_ID}/statuses");
    let tries: Vec<Received> = world
        .github
        .received()
        .into_iter()
        .filter(|r| r.path == path && r.method == "POST")
        .collect();
    assert_eq!(tries.len(), 2, "one limited try, one that got through");
    assert!(tries[0].failed && !tries[1].failed);
    // GitHub said when the limit resets (within the next two seconds); the
    // provider waited for that, not for its own much shorter first backoff.
    let waited = tries[1].at - tries[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_status_whose_answer_was_lost_is_not_posted_again() {
    use slipway_testkit::proxy::{Proxy, Target};

    // GitHub takes the status, but its answer never reaches the provider.
    let github = FakeGithub::start().await;
    let proxy = Proxy::start(Target::Tcp(github.addr)).await;
    proxy.lose_answer_to("\"state\":\"queued\"");
    let world = World::start_with(github, |config| {
        config.hooks.github_api_url = proxy.url();
    })
    .await;
    world.shop().await;

    let id = deploy(&world, 0, "production").await;
    wait_for("the answer to the queued status to be lost", || {
        let lost = proxy.answer_lost();
        async move { lost.then_some(()) }
    })
    .await;
    states_become(&world, GH_ID, &["queued"]).await;
    world.api.claim_ok(RUNNER, &id).await;
    world
        .api
        .finish_with(RUNNER, &id, "SUCCEEDED", "done")
        .await;
    states_become(&world, GH_ID, &["queued", "in_progress", "success"]).await;

    // The provider asked GitHub what it had instead of posting again.
    let path = format!("/repos/{REPO}/deployments/{GH_ID}/statuses");
    let asked = world
        .github
        .received()
        .into_iter()
        .filter(|r| r.path == path && r.method == "GET")
        .count();
    assert_eq!(
        asked, 1,
        "one look at GitHub's statuses after the lost answer"
    );
}

#[tokio::test]
async fn a_status_posted_but_not_journaled_before_a_stop_is_not_posted_again() {
    let mut world = World::start().await;
    world.shop().await;
    let id = deploy(&world, 0, "production").await;
    states_become(&world, GH_ID, &["queued"]).await;
    let config = world.stop_provider().await;

    // As if the provider was killed after GitHub took the status and before
    // the journal recorded it: the journal's last record is that post.
    let journal = config
        .data_dir
        .join(slipway_provider::statuses::journal::FILE_NAME);
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().unwrap();
    assert!(
        last.contains("\"op\":\"posted\"") && last.contains("queued"),
        "{last}"
    );
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();

    world.api.claim_ok(RUNNER, &id).await;
    world.start_provider(config).await;
    states_become(&world, GH_ID, &["queued", "in_progress"]).await;
    world
        .api
        .finish_with(RUNNER, &id, "SUCCEEDED", "done")
        .await;
    states_become(&world, GH_ID, &["queued", "in_progress", "success"]).await;
}

//! GitHub pushes auto-deploy the environments that track the branch, exactly
//! once per delivery, and show up on GitHub as deployments.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_push_deploys_only_the_environments_tracking_its_branch() {
    let world = World::start().await;
    world.shop().await;
    // Another application of the same repository tracking main, and one of
    // another repository that also tracks main.
    world
        .api
        .app(
            "shop-worker",
            &format!("git@github.com:{REPO}.git"),
            &[("production", Some("refs/heads/main"), None)],
        )
        .await;
    world
        .api
        .app(
            "blog",
            "https://github.com/acme/blog.git",
            &[("production", Some("main"), None)],
        )
        .await;

    let (status, body) = world
        .provider()
        .github("push", "push-1", &push_event("refs/heads/main", SHA))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut made: Vec<(String, String)> = world
        .api
        .deployments()
        .await
        .iter()
        .map(|d| {
            assert_eq!(d["sha"], SHA);
            assert_eq!(d["ref"], "main");
            assert_eq!(d["description"], "Fix the checkout");
            (
                d["application"]["name"].as_str().unwrap().to_owned(),
                d["environment"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    made.sort();
    assert_eq!(
        made,
        vec![
            ("shop".to_owned(), "production".to_owned()),
            ("shop-worker".to_owned(), "production".to_owned()),
        ]
    );
    assert_eq!(body["deployments"].as_array().unwrap().len(), 2);

    // The same delivery again: the same deployments, nothing new.
    let (status, again) = world
        .provider()
        .github("push", "push-1", &push_event("refs/heads/main", SHA))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deployments"], body["deployments"]);
    assert_eq!(world.api.deployments().await.len(), 2);

    // develop deploys staging only.
    let (status, body) = world
        .provider()
        .github("push", "push-2", &push_event("refs/heads/develop", SHA2))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deployments"][0]["environment"], "staging");
    assert_eq!(world.api.deployments().await.len(), 3);
}

#[tokio::test]
async fn pushes_that_deploy_nothing_say_why() {
    let world = World::start().await;
    world.shop().await;

    let (status, body) = world
        .provider()
        .github("push", "p-1", &push_event("refs/heads/feature/x", SHA))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["ignored"].as_str().unwrap().contains("feature/x"),
        "{body}"
    );

    let (status, body) = world
        .provider()
        .github("push", "p-2", &push_event("refs/tags/v1.0.0", SHA))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["ignored"].as_str().unwrap().contains("not a branch"),
        "{body}"
    );

    let mut deleted = push_event(
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
    );
    deleted["deleted"] = json!(true);
    let (status, body) = world.provider().github("push", "p-3", &deleted).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["ignored"].as_str().unwrap().contains("deleted"),
        "{body}"
    );

    assert!(world.api.deployments().await.is_empty());
}

#[tokio::test]
async fn a_push_to_locked_environments_deploys_the_others() {
    let world = World::start().await;
    world.shop().await;
    world
        .api
        .app(
            "shop-worker",
            &format!("git@github.com:{REPO}.git"),
            &[("production", Some("main"), None)],
        )
        .await;
    world.api.lock("shop", "production", "incident 42").await;

    let (status, body) = world
        .provider()
        .github("push", "p-1", &push_event("refs/heads/main", SHA))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deployments"][0]["name"], "shop-worker#1");
    assert_eq!(body["skipped"][0]["application"], "shop");
    assert!(body["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("incident 42"));

    // When every target is locked: 409, nothing created.
    world
        .api
        .lock("shop-worker", "production", "incident 43")
        .await;
    let (status, body) = world
        .provider()
        .github("push", "p-2", &push_event("refs/heads/main", SHA2))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("incident 43"),
        "{body}"
    );
    assert_eq!(world.api.deployments().await.len(), 1);
}

#[tokio::test]
async fn a_push_creates_one_github_deployment_and_its_echo_deploys_nothing() {
    let world = World::start().await;
    world.shop().await;
    let (status, body) = world
        .provider()
        .github("push", "p-1", &push_event("refs/heads/main", SHA))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let slipway_id = body["deployments"][0]["id"].as_str().unwrap().to_owned();

    let created = wait_for("the GitHub deployment and its queued status", || {
        let github = &world.github;
        async move {
            let created = github.created();
            let id = created.first()?.1;
            (github.states(id) == ["queued"]).then_some(created)
        }
    })
    .await;
    assert_eq!(created.len(), 1);
    let (repo, github_id, gh) = &created[0];
    assert_eq!(repo, REPO);
    assert_eq!(gh["ref"], SHA);
    assert_eq!(gh["environment"], "production");
    assert_eq!(gh["auto_merge"], false);
    assert_eq!(gh["required_contexts"], json!([]));
    assert_eq!(gh["payload"]["slipway"]["deployment"], slipway_id);
    assert_eq!(gh["payload"]["slipway"]["name"], "shop#1");

    // A redelivery of the push creates neither a Slipway nor a GitHub deployment.
    let (status, again) = world
        .provider()
        .github("push", "p-1", &push_event("refs/heads/main", SHA))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deployments"], body["deployments"]);

    // GitHub sends the deployment Slipway created back as a `deployment` event.
    let mut echo = deployment_event(*github_id, "production", SHA, gh["payload"].clone());
    echo["deployment"]["ref"] = json!(SHA);
    let (status, answer) = world.provider().github("deployment", "echo-1", &echo).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("created by Slipway"),
        "{answer}"
    );
    // Even when the marker is lost (the id is recorded).
    let echo = deployment_event(*github_id, "production", SHA, json!({}));
    let (status, answer) = world.provider().github("deployment", "echo-2", &echo).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Bring it to an end, so nothing is in flight, and count again.
    world.api.claim_ok(RUNNER, &slipway_id).await;
    world
        .api
        .finish_with(RUNNER, &slipway_id, "SUCCEEDED", "rolled out")
        .await;
    wait_for("the success status", || {
        let github = &world.github;
        let id = *github_id;
        async move { (github.states(id).last().map(String::as_str) == Some("success")).then_some(()) }
    })
    .await;
    assert_eq!(world.github.created().len(), 1, "one GitHub deployment");
    assert_eq!(
        world.api.deployments().await.len(),
        1,
        "one Slipway deployment"
    );
    assert_eq!(
        world.github.states(*github_id),
        ["queued", "in_progress", "success"]
    );
}

//! Idempotency keys: what makes a hook sent again find the deployments of the
//! first, and two different requests make two.

use axum::http::StatusCode;
use serde_json::json;

use crate::gitlab::{gitlab_world, pipeline_hook, push_hook};
use crate::support::*;

/// The `externalId` of every deployment, sorted.
async fn external_ids(world: &World) -> Vec<String> {
    let mut keys: Vec<String> = world
        .api
        .deployments()
        .await
        .iter()
        .map(|d| d["externalId"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn one_ci_id_for_two_environments_makes_two_deployments() {
    let world = World::start().await;
    world.shop().await;
    let mut made = Vec::new();
    for environment in ["qa", "staging"] {
        let body = json!({
            "application": "shop",
            "environment": environment,
            "ref": "release-7",
            "id": "build-77",
        });
        let (status, answer) = world.provider().generic(Some(GENERIC_TOKEN), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["deployments"][0]["environment"], environment,
            "{answer}"
        );
        made.push(answer["deployments"][0]["id"].clone());
        // A retry for the same environment finds its deployment.
        let (_, again) = world.provider().generic(Some(GENERIC_TOKEN), &body).await;
        assert_eq!(again["deployments"][0]["id"], made[made.len() - 1]);
    }
    assert_ne!(made[0], made[1]);
    let keys = external_ids(&world).await;
    assert_eq!(keys, ["generic:build-77:qa", "generic:build-77:staging"]);
}

#[tokio::test]
async fn a_replayed_github_push_with_a_new_delivery_id_deploys_nothing_new() {
    let world = World::start().await;
    world.shop().await;
    let push = push_event("refs/heads/main", SHA);
    let (status, first) = world.provider().github("push", "delivery-1", &push).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let github_id = wait_for("the push's GitHub deployment", || {
        let github = &world.github;
        async move {
            let id = github.created().first()?.1;
            (github.states(id) == ["queued"]).then_some(id)
        }
    })
    .await;

    // The same signed body, captured and sent again under a delivery id of
    // the sender's choosing (the header is not signed).
    for delivery in ["delivery-2", "forged-delivery", ""] {
        let (status, again) = world.provider().github("push", delivery, &push).await;
        assert_eq!(status, StatusCode::OK, "{delivery:?}: {again}");
        assert_eq!(again["deployments"], first["deployments"], "{delivery:?}");
    }
    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        all[0]["externalId"],
        format!("github-push:1296269:refs/heads/main:{SHA}:production")
    );
    // Nor does GitHub get a second deployment or statuses twice.
    assert_eq!(world.github.created().len(), 1);
    assert_eq!(world.github.states(github_id), ["queued"]);

    // Another commit on the branch is another push.
    let (status, next) = world
        .provider()
        .github("push", "delivery-3", &push_event("refs/heads/main", SHA2))
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_ne!(next["deployments"], first["deployments"]);
    assert_eq!(world.api.deployments().await.len(), 2);
}

#[tokio::test]
async fn a_github_push_without_its_repository_id_is_refused() {
    let world = World::start().await;
    world.shop().await;
    let mut push = push_event("refs/heads/main", SHA);
    push["repository"].as_object_mut().unwrap().remove("id");
    let (status, answer) = world.provider().github("push", "d-1", &push).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("`repository.id`"),
        "{answer}"
    );
    assert!(world.api.deployments().await.is_empty());
}

#[tokio::test]
async fn gitlab_pushes_and_pipelines_are_keyed_by_their_own_fields() {
    let world = gitlab_world().await;

    // A push sent again under another Idempotency-Key (or none) is the same push.
    let push = push_hook("refs/heads/main", SHA);
    let (status, first) = world
        .provider()
        .gitlab("Push Hook", Some(GITLAB_TOKEN), Some("key-1"), &push)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    for key in [Some("key-2"), None] {
        let (status, again) = world
            .provider()
            .gitlab("Push Hook", Some(GITLAB_TOKEN), key, &push)
            .await;
        assert_eq!(status, StatusCode::OK, "{key:?}: {again}");
        assert_eq!(again["deployments"], first["deployments"], "{key:?}");
    }

    // A pipeline is its id, whatever key its deliveries carry.
    let pipeline = pipeline_hook(31, "develop", SHA2, "success");
    let (status, first_pipeline) = world
        .provider()
        .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), Some("p-1"), &pipeline)
        .await;
    assert_eq!(status, StatusCode::OK, "{first_pipeline}");
    let (_, again) = world
        .provider()
        .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), Some("p-2"), &pipeline)
        .await;
    assert_eq!(again["deployments"], first_pipeline["deployments"]);
    // Another pipeline of the same commit (a retried pipeline) is another deployment.
    let (_, retried) = world
        .provider()
        .gitlab(
            "Pipeline Hook",
            Some(GITLAB_TOKEN),
            Some("p-3"),
            &pipeline_hook(32, "develop", SHA2, "success"),
        )
        .await;
    assert_ne!(retried["deployments"], first_pipeline["deployments"]);

    let keys = external_ids(&world).await;
    assert_eq!(
        keys,
        [
            "gitlab-pipeline:15:31:staging".to_owned(),
            "gitlab-pipeline:15:32:staging".to_owned(),
            format!("gitlab-push:15:refs/heads/main:{SHA}:production"),
        ]
    );
}

#[tokio::test]
async fn a_very_long_branch_still_makes_a_key_the_api_takes() {
    let world = World::start().await;
    let branch = format!("release/{}", "x".repeat(230));
    world
        .api
        .app(
            "shop",
            &format!("https://github.com/{REPO}.git"),
            &[("production", Some(&branch), None)],
        )
        .await;
    let push = push_event(&format!("refs/heads/{branch}"), SHA);
    let (status, first) = world.provider().github("push", "d-1", &push).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, again) = world.provider().github("push", "d-2", &push).await;
    assert_eq!(again["deployments"], first["deployments"]);
    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1);
    let key = all[0]["externalId"].as_str().unwrap();
    assert!(key.len() <= 255, "{key}");
    assert!(
        key.starts_with("github-push:1296269:refs/heads/release/x"),
        "{key}"
    );
}

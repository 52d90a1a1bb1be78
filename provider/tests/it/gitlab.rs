//! GitLab push and pipeline hooks.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

pub fn project() -> Value {
    json!({
        "id": 15,
        "name": "shop",
        "path_with_namespace": "acme/shop",
        "web_url": "https://gitlab.example.com/acme/shop",
        "git_ssh_url": "git@gitlab.example.com:acme/shop.git",
        "git_http_url": "https://gitlab.example.com/acme/shop.git",
        "default_branch": "main",
    })
}

pub fn push_hook(git_ref: &str, after: &str) -> Value {
    json!({
        "object_kind": "push",
        "event_name": "push",
        "before": SHA2,
        "after": after,
        "ref": git_ref,
        "checkout_sha": after,
        "user_username": "jsmith",
        "project": project(),
        "commits": [{"id": after, "message": "Update the catalogue\n", "title": "Update the catalogue"}],
        "total_commits_count": 1,
    })
}

pub fn pipeline_hook(id: u64, git_ref: &str, sha: &str, status: &str) -> Value {
    json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": id,
            "iid": 3,
            "ref": git_ref,
            "tag": false,
            "sha": sha,
            "before_sha": SHA2,
            "source": "push",
            "status": status,
            "stages": ["build", "test"],
            "duration": 63,
        },
        "project": project(),
        "commit": {"id": sha, "message": "Bump the version\n\nbody", "title": "Bump the version"},
    })
}

pub async fn gitlab_world() -> World {
    let world = World::start().await;
    world
        .api
        .app(
            "shop",
            "git@gitlab.example.com:acme/shop.git",
            &[
                ("production", Some("main"), None),
                ("staging", Some("develop"), None),
            ],
        )
        .await;
    // Same path on GitHub: another repository.
    world
        .api
        .app(
            "gh-shop",
            "https://github.com/acme/shop.git",
            &[("production", Some("main"), None)],
        )
        .await;
    world
}

#[tokio::test]
async fn a_push_hook_deploys_the_tracking_environments_once() {
    let world = gitlab_world().await;
    let hook = push_hook("refs/heads/main", SHA);
    let (status, body) = world
        .provider()
        .gitlab("Push Hook", Some(GITLAB_TOKEN), Some("key-1"), &hook)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["application"]["name"], "shop");
    assert_eq!(all[0]["environment"]["name"], "production");
    assert_eq!(all[0]["sha"], SHA);
    assert_eq!(all[0]["description"], "Update the catalogue");

    // GitLab retries with the same Idempotency-Key.
    let (status, again) = world
        .provider()
        .gitlab("Push Hook", Some(GITLAB_TOKEN), Some("key-1"), &hook)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deployments"], body["deployments"]);
    assert_eq!(world.api.deployments().await.len(), 1);

    // Deleting a branch deploys nothing.
    let deleted = push_hook(
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
    );
    let (status, body) = world
        .provider()
        .gitlab("Push Hook", Some(GITLAB_TOKEN), Some("key-2"), &deleted)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(world.api.deployments().await.len(), 1);
    // GitLab never reaches GitHub.
    assert!(world.github.received().is_empty());
}

#[tokio::test]
async fn a_successful_pipeline_deploys_its_sha() {
    let world = gitlab_world().await;

    let (status, body) = world
        .provider()
        .gitlab(
            "Pipeline Hook",
            Some(GITLAB_TOKEN),
            Some("p-1"),
            &pipeline_hook(31, "develop", SHA2, "running"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["ignored"].as_str().unwrap().contains("`running`"),
        "{body}"
    );
    assert!(world.api.deployments().await.is_empty());

    let hook = pipeline_hook(31, "develop", SHA2, "success");
    let (status, body) = world
        .provider()
        .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), Some("p-2"), &hook)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["environment"]["name"], "staging");
    assert_eq!(all[0]["sha"], SHA2);
    assert_eq!(all[0]["ref"], "develop");
    assert_eq!(all[0]["description"], "Bump the version");

    // A retry of the hook (same key), a delivery with another key and one
    // without GitLab's key header all find it: the pipeline is the key.
    for key in [Some("p-2"), Some("p-3"), None] {
        let (status, again) = world
            .provider()
            .gitlab("Pipeline Hook", Some(GITLAB_TOKEN), key, &hook)
            .await;
        assert_eq!(status, StatusCode::OK, "{key:?}: {again}");
        assert_eq!(again["deployments"], body["deployments"], "{key:?}");
    }
    assert_eq!(world.api.deployments().await.len(), 1);
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused() {
    let world = gitlab_world().await;
    let hook = push_hook("refs/heads/main", SHA);
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("gitlab-webhook-token-for-test"),
    ] {
        let (status, body) = world
            .provider()
            .gitlab("Push Hook", token, Some("k"), &hook)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
    }
    let (status, body) = world
        .provider()
        .gitlab(
            "Push Hook",
            Some(GITLAB_TOKEN),
            Some("k"),
            &json!({"ref": "refs/heads/main"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`after`"),
        "{body}"
    );
    let (status, body) = world
        .provider()
        .gitlab("Issue Hook", Some(GITLAB_TOKEN), Some("k"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(world.api.deployments().await.is_empty());
}

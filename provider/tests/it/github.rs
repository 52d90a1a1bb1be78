//! GitHub `deployment` events in, and the answers to them.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_documented_signature_vector_is_accepted_over_http() {
    let api = start_api().await;
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&api, &github, dir.path().to_owned());
    config.hooks.github_webhook_secret =
        Some(slipway_provider::Secret::new("It's a Secret to Everybody"));
    let provider = TestProvider::start(config).await;
    let vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    let (status, body) = provider
        .github_raw("ping", "d-1", b"Hello, World!".to_vec(), Some(vector))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true);

    // One bit off in the signature.
    let wrong = vector.replace("e17", "e16");
    let (status, body) = provider
        .github_raw("ping", "d-2", b"Hello, World!".to_vec(), Some(&wrong))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_deployment_event_deploys_its_sha_to_its_environment() {
    let world = World::start().await;
    world.shop().await;
    // Another application of another repository, with the same environment.
    world
        .api
        .app(
            "blog",
            "git@github.com:acme/blog.git",
            &[("production", None, None)],
        )
        .await;

    let event = deployment_event(GH_ID, "production", SHA, json!({"replicas": 3}));
    let (status, body) = world
        .provider()
        .github("deployment", "delivery-1", &event)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answered = &body["deployments"][0];
    assert_eq!(answered["number"], 1);
    assert_eq!(answered["name"], "shop#1");

    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d["id"], answered["id"]);
    assert_eq!(d["application"]["name"], "shop");
    assert_eq!(d["environment"]["name"], "production");
    assert_eq!(d["sha"], SHA);
    assert_eq!(d["ref"], "main");
    assert_eq!(d["task"], "deploy");
    assert_eq!(d["payload"], json!({"replicas": 3}));
    assert_eq!(d["description"], "Deploy request from hubot");
    assert_eq!(d["externalId"], format!("github:{GH_ID}"));
    assert_eq!(d["createdBy"], "provider");
    assert_eq!(d["status"], "QUEUED");
}

#[tokio::test]
async fn a_redelivery_answers_with_the_first_deployment_and_creates_nothing() {
    let world = World::start().await;
    world.shop().await;
    let event = deployment_event(GH_ID, "production", SHA, json!({}));

    let (status, first) = world
        .provider()
        .github("deployment", "delivery-1", &event)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // A manual redelivery keeps the delivery id; a second hook for the same
    // GitHub deployment has another one. Neither deploys again.
    for delivery in ["delivery-1", "delivery-2"] {
        let (status, again) = world
            .provider()
            .github("deployment", delivery, &event)
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["deployments"], first["deployments"]);
    }
    assert_eq!(world.api.deployments().await.len(), 1);
}

#[tokio::test]
async fn a_monorepo_deployment_names_its_application_in_the_payload() {
    let world = World::start().await;
    world.shop().await;
    world
        .api
        .app(
            "shop-worker",
            &format!("git@github.com:{REPO}.git"),
            &[("production", None, None)],
        )
        .await;

    let event = deployment_event(GH_ID, "production", SHA, json!({}));
    let (status, body) = world.provider().github("deployment", "d-1", &event).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("shop, shop-worker"), "{message}");
    assert!(message.contains("\"application\""), "{message}");
    assert!(world.api.deployments().await.is_empty());

    let event = deployment_event(
        GH_ID,
        "production",
        SHA,
        json!({"application": "shop-worker"}),
    );
    let (status, body) = world.provider().github("deployment", "d-2", &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deployments"][0]["name"], "shop-worker#1");
}

#[tokio::test]
async fn ping_answers_and_other_events_are_ignored_with_a_reason() {
    let world = World::start().await;
    world.shop().await;
    let (status, body) = world
        .provider()
        .github(
            "ping",
            "d-1",
            &json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = world
        .provider()
        .github(
            "issues",
            "d-2",
            &json!({"action": "opened", "repository": repository()}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["ignored"].as_str().unwrap().contains("`issues`"),
        "{body}"
    );

    let mut event = deployment_event(GH_ID, "production", SHA, json!({}));
    event["action"] = json!("deleted");
    let (status, body) = world.provider().github("deployment", "d-3", &event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(world.api.deployments().await.is_empty());
}

#[tokio::test]
async fn hooks_that_are_not_configured_answer_404() {
    let api = start_api().await;
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&api, &github, dir.path().to_owned());
    config.hooks.github_webhook_secret = None;
    config.hooks.gitlab_webhook_token = None;
    config.hooks.generic_token = None;
    let provider = TestProvider::start(config).await;
    let (status, body) = provider.github("ping", "d-1", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("--github-webhook-secret"));
    let (status, _) = provider
        .gitlab("Push Hook", Some(GITLAB_TOKEN), None, &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = provider.generic(Some(GENERIC_TOKEN), &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

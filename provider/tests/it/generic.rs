//! The generic hook any CI can call.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_ci_deploys_with_the_generic_token_exactly_once() {
    let world = World::start().await;
    world.shop().await;
    let body = json!({
        "application": "shop",
        "environment": "qa",
        "ref": "release-7",
        "task": "migrate",
        "payload": {"from": "jenkins"},
        "id": "jenkins-build-77",
    });
    let (status, first) = world.provider().generic(Some(GENERIC_TOKEN), &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = world.provider().generic(Some(GENERIC_TOKEN), &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["deployments"], first["deployments"]);

    let all = world.api.deployments().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["environment"]["name"], "qa");
    assert_eq!(all[0]["ref"], "release-7");
    assert_eq!(all[0]["task"], "migrate");
    assert_eq!(all[0]["payload"], json!({"from": "jenkins"}));
    assert_eq!(all[0]["externalId"], "generic:jenkins-build-77:qa");
}

#[tokio::test]
async fn bad_generic_hooks_are_refused_and_create_nothing() {
    let world = World::start().await;
    world.shop().await;
    let good = json!({"application": "shop", "environment": "qa", "ref": "main"});

    let (status, _) = world.provider().generic(None, &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = world.provider().generic(Some("wrong"), &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = world
        .provider()
        .generic(
            Some(GENERIC_TOKEN),
            &json!({"application": "shop", "ref": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`environment`"),
        "{body}"
    );

    let (status, body) = world
        .provider()
        .generic(
            Some(GENERIC_TOKEN),
            &json!({"application": "nope", "environment": "qa", "ref": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`nope`"),
        "{body}"
    );

    let (status, body) = world
        .provider()
        .generic(
            Some(GENERIC_TOKEN),
            &json!({"application": "shop", "environment": "prod", "ref": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = world
        .provider()
        .generic(
            Some(GENERIC_TOKEN),
            &json!({"application": "shop", "environment": "qa", "ref": "main", "sha": "xyz"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("sha"), "{body}");

    assert!(world.api.deployments().await.is_empty());
}

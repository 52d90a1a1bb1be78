//! Every bad hook is answered as specified, and none creates anything.

use axum::http::StatusCode;
use serde_json::{json, Value};
use slipway_provider::signature::sign_github;

use crate::support::*;

/// Posts `body` signed as given and checks the answer; nothing may be created.
async fn refused(
    world: &World,
    body: Vec<u8>,
    signature: Option<String>,
    want: StatusCode,
    message_has: &str,
) -> Value {
    let (status, answer) = world
        .provider()
        .github_raw("deployment", "bad-delivery", body, signature.as_deref())
        .await;
    assert_eq!(status, want, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_has),
        "the answer should say {message_has:?}: {answer}"
    );
    assert!(
        world.api.deployments().await.is_empty(),
        "nothing may be created"
    );
    assert!(
        world.github.received().is_empty(),
        "nothing may reach GitHub"
    );
    answer
}

fn signed(body: &[u8]) -> Option<String> {
    Some(sign_github(GITHUB_SECRET.as_bytes(), body))
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_hooks_are_refused() {
    let world = World::start().await;
    world.shop().await;
    let body = serde_json::to_vec(&deployment_event(GH_ID, "production", SHA, json!({}))).unwrap();

    refused(
        &world,
        body.clone(),
        None,
        StatusCode::UNAUTHORIZED,
        "missing X-Hub-Signature-256",
    )
    .await;
    let other_secret = Some(sign_github(b"not the secret", &body));
    refused(
        &world,
        body.clone(),
        other_secret,
        StatusCode::UNAUTHORIZED,
        "does not match",
    )
    .await;
    let other_body =
        serde_json::to_vec(&deployment_event(GH_ID, "staging", SHA, json!({}))).unwrap();
    refused(
        &world,
        body.clone(),
        signed(&other_body),
        StatusCode::UNAUTHORIZED,
        "does not match",
    )
    .await;
    refused(
        &world,
        body.clone(),
        Some("sha1=abc".into()),
        StatusCode::UNAUTHORIZED,
        "sha256=",
    )
    .await;
    // A signature of the right body, but the body changed on the way (one byte).
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    refused(
        &world,
        tampered,
        signed(&body),
        StatusCode::UNAUTHORIZED,
        "does not match",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_and_missing_fields_are_named() {
    let world = World::start().await;
    world.shop().await;

    let garbage = b"{\"action\": \"created\", \"deployment\": ".to_vec();
    refused(
        &world,
        garbage.clone(),
        signed(&garbage),
        StatusCode::BAD_REQUEST,
        "not JSON",
    )
    .await;

    let mut event = deployment_event(GH_ID, "production", SHA, json!({}));
    event["deployment"].as_object_mut().unwrap().remove("sha");
    let body = serde_json::to_vec(&event).unwrap();
    refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::BAD_REQUEST,
        "`deployment.sha`",
    )
    .await;

    let mut event = deployment_event(GH_ID, "production", SHA, json!({}));
    event.as_object_mut().unwrap().remove("repository");
    let body = serde_json::to_vec(&event).unwrap();
    refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::BAD_REQUEST,
        "`repository`",
    )
    .await;

    let mut event = deployment_event(GH_ID, "production", SHA, json!({}));
    event["deployment"]["id"] = json!("not a number");
    let body = serde_json::to_vec(&event).unwrap();
    refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::BAD_REQUEST,
        "deployment.id",
    )
    .await;

    // Signed, but without the event header.
    let body = serde_json::to_vec(&deployment_event(GH_ID, "production", SHA, json!({}))).unwrap();
    let response = reqwest::Client::new()
        .post(world.provider().url("/hooks/github"))
        .header("X-Hub-Signature-256", signed(&body).unwrap())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Event"),
        "{answer}"
    );
    assert!(world.api.deployments().await.is_empty());
}

#[tokio::test]
async fn an_unknown_repository_or_environment_is_unprocessable() {
    let world = World::start().await;
    world.shop().await;

    let mut event = deployment_event(GH_ID, "production", SHA, json!({}));
    event["repository"]["full_name"] = json!("acme/unknown");
    event["repository"]["clone_url"] = json!("https://github.com/acme/unknown.git");
    event["repository"]["ssh_url"] = json!("git@github.com:acme/unknown.git");
    event["repository"]["html_url"] = json!("https://github.com/acme/unknown");
    event["repository"]["git_url"] = json!("git://github.com/acme/unknown.git");
    let body = serde_json::to_vec(&event).unwrap();
    refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "acme/unknown",
    )
    .await;

    let event = deployment_event(GH_ID, "prod", SHA, json!({}));
    let body = serde_json::to_vec(&event).unwrap();
    let answer = refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "`prod`",
    )
    .await;
    // It says which environments there are.
    assert!(
        answer["message"].as_str().unwrap().contains("production"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_locked_environment_is_a_conflict_with_the_apis_reason() {
    let world = World::start().await;
    world.shop().await;
    world
        .api
        .lock("shop", "production", "release freeze until Monday")
        .await;

    let body = serde_json::to_vec(&deployment_event(GH_ID, "production", SHA, json!({}))).unwrap();
    let answer = refused(
        &world,
        body.clone(),
        signed(&body),
        StatusCode::CONFLICT,
        "release freeze until Monday",
    )
    .await;
    assert!(
        answer["message"].as_str().unwrap().contains("deployer"),
        "who locked it: {answer}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_too_large() {
    let world = World::start().await;
    world.shop().await;
    let big = vec![b' '; 25 * 1024 * 1024 + 1];
    let signature = signed(&big);
    refused(
        &world,
        big,
        signature,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 25 MiB",
    )
    .await;

    // Just under the limit is read (and then judged on what it says).
    let mut body =
        serde_json::to_vec(&deployment_event(GH_ID, "production", SHA, json!({}))).unwrap();
    body.resize(25 * 1024 * 1024, b' ');
    let (status, answer) = world
        .provider()
        .github_raw("deployment", "d", body.clone(), signed(&body).as_deref())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

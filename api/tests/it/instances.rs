//! Runner instances: two processes with one token are two runners, and a claim
//! sent again by its holder is answered as the first one was.

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};

use slipway_testkit::api::{error_of, Backend, TestApi};

const CLAIM: &str = "mutation($id: ID!, $instance: String) {
    claimDeployment(id: $id, instance: $instance) {
        id status runner runnerInstance message startedAt leaseExpiresAt lastHeartbeatAt
    }
}";

/// The held-deployment mutations, each with `$id` and `$instance`.
const HELD: [&str; 4] = [
    "mutation($id: ID!, $instance: String) { heartbeatDeployment(id: $id, instance: $instance) { id } }",
    "mutation($id: ID!, $instance: String) { appendDeploymentLogs(id: $id, lines: [{text: \"x\"}], instance: $instance) { id } }",
    "mutation($id: ID!, $instance: String) { updateDeploymentProgress(id: $id, phase: UPDATING, instance: $instance) { id } }",
    "mutation($id: ID!, $instance: String) { finishDeployment(id: $id, status: SUCCEEDED, instance: $instance) { id } }",
];

async fn claim(server: &TestApi, runner: &str, id: &str, instance: Option<&str>) -> Value {
    let token = server.token(Role::Runner, runner);
    server
        .gql(Some(&token), CLAIM, json!({"id": id, "instance": instance}))
        .await
}

async fn two_instances_of_one_runner_are_two_runners(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let runner = server.token(Role::Runner, "r1");
    for instance in ["a", "b"] {
        server
            .ok(
                &runner,
                "mutation($instance: String) { registerRunner(labels: [\"x\"], version: \"1\", instance: $instance) { name } }",
                json!({"instance": instance}),
            )
            .await;
    }
    let id = server.deploy("web", "prod").await;
    let claimed = claim(&server, "r1", &id, Some("a")).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
    assert_eq!(claimed["data"]["claimDeployment"]["runnerInstance"], "a");

    // The other instance, and the same runner naming no instance, hold nothing.
    for other in [json!("b"), Value::Null] {
        let (code, message) = error_of(&claim(&server, "r1", &id, other.as_str()).await);
        assert_eq!(code, "CONFLICT", "claim by {other}: {message}");
        assert!(
            message.contains("instance a"),
            "names the holder: {message}"
        );
        for mutation in HELD {
            let (code, message) = server
                .err(&runner, mutation, json!({"id": id, "instance": other}))
                .await;
            assert_eq!(code, "CONFLICT", "{mutation} by {other}: {message}");
            assert!(
                message.contains("held by runner r1 (instance a)"),
                "names the holder instance: {message}"
            );
        }
    }
    let viewer = server.token(Role::Viewer, "v");
    let seen = server
        .ok(
            &viewer,
            "query($id: ID!) { deployment(id: $id) { status phase logCount runner runnerInstance } runners { name lastInstance } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        seen["deployment"],
        json!({"status": "IN_PROGRESS", "phase": null, "logCount": 0, "runner": "r1", "runnerInstance": "a"}),
        "nothing the other instance sent was taken"
    );
    assert_eq!(
        seen["runners"],
        json!([{"name": "r1", "lastInstance": "a"}])
    );

    // The holder itself goes on.
    for mutation in HELD {
        server
            .ok(&runner, mutation, json!({"id": id, "instance": "a"}))
            .await;
    }
    assert_eq!(server.status(&id).await["status"], "SUCCEEDED");
}

async fn a_runner_without_instance_holds_only_what_it_claimed_without_one(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let claimed = server.claim("r1", &id).await;
    assert!(claimed.get("errors").is_none(), "{claimed}");
    let runner = server.token(Role::Runner, "r1");
    for mutation in HELD {
        let (code, message) = server
            .err(&runner, mutation, json!({"id": id, "instance": "new"}))
            .await;
        assert_eq!(code, "CONFLICT", "{mutation}: {message}");
    }
    for mutation in HELD {
        server
            .ok(&runner, mutation, json!({"id": id, "instance": null}))
            .await;
    }
    let status = server.status(&id).await;
    assert_eq!(status["status"], "SUCCEEDED");

    let (code, message) = server
        .err(
            &runner,
            "mutation { registerRunner(labels: [], instance: \"\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "an empty instance: {message}");
}

async fn a_claim_sent_again_by_its_holder_returns_the_deployment(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let first = claim(&server, "r1", &id, Some("a")).await;
    assert!(first.get("errors").is_none(), "{first}");
    let first = first["data"]["claimDeployment"].clone();

    // The answer was lost; the runner claims again 10 s later.
    clock.advance(chrono::Duration::seconds(10));
    let again = claim(&server, "r1", &id, Some("a")).await;
    assert!(
        again.get("errors").is_none(),
        "a retried claim succeeds: {again}"
    );
    let again = again["data"]["claimDeployment"].clone();
    for field in [
        "id",
        "status",
        "runner",
        "runnerInstance",
        "message",
        "startedAt",
    ] {
        assert_eq!(again[field], first[field], "{field}");
    }
    assert_eq!(again["leaseExpiresAt"], "2026-01-01T00:00:40+00:00");
    assert_eq!(again["lastHeartbeatAt"], "2026-01-01T00:00:10+00:00");

    // Another instance of the same runner still may not.
    let (code, message) = error_of(&claim(&server, "r1", &id, Some("b")).await);
    assert_eq!(code, "CONFLICT");
    assert!(
        message.contains("instance a") && message.contains("2026-01-01T00:00:40"),
        "names the holder and its lease: {message}"
    );
    // Nor another runner.
    let (code, _) = error_of(&claim(&server, "r2", &id, Some("a")).await);
    assert_eq!(code, "CONFLICT");
}

slipway_testkit::on_both_backends!(
    two_instances_of_one_runner_are_two_runners,
    a_runner_without_instance_holds_only_what_it_claimed_without_one,
    a_claim_sent_again_by_its_holder_returns_the_deployment,
);

//! Plans: requested by a person, claimed by one runner at most once,
//! answered with a diff or an error, expired when no runner takes or answers
//! them; never a deployment, never held up by a lock.

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{plans, Clock, Settings};

use slipway_testkit::api::{error_of, Backend, TestApi};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

const CLAIM: &str = "mutation($id: ID!) { claimPlan(id: $id) { id status runner ref application { name repository specPath } environment { name } } }";
const FINISH: &str = "mutation($id: ID!, $sha: String, $result: JSON, $message: String) { finishPlan(id: $id, sha: $sha, result: $result, message: $message) { id status sha message } }";

/// A diff as a runner's `plan --diff` prints it.
fn diff() -> Value {
    json!({
        "stack": "web-production",
        "services": [
            {"name": "web-production_web", "action": "update", "changes": ["/TaskTemplate/ContainerSpec/Image"],
             "image": "127.0.0.1:5000/web:v2@sha256:aaaa", "digest": "sha256:aaaa"},
            {"name": "web-production_worker", "action": "unchanged", "image": "busybox:latest", "digest": null},
            {"name": "web-production_cache", "action": "create", "image": "redis:7", "digest": null},
            {"name": "web-production_old", "action": "remove", "image": "busybox:old", "digest": null},
        ],
    })
}

async fn as_runner(server: &TestApi, runner: &str, query: &str, variables: Value) -> Value {
    server
        .gql(Some(&server.token(Role::Runner, runner)), query, variables)
        .await
}

async fn with_environment(backend: Backend) -> TestApi {
    let server = TestApi::start(backend).await;
    server
        .app(
            "web",
            "https://git.example/web.git",
            &[("production", Some("main"), None)],
        )
        .await;
    server
}

async fn a_plan_is_claimed_once_and_answered_by_the_runner_that_claimed_it(backend: Backend) {
    let server = with_environment(backend).await;
    // Runners hear of it on their subscription.
    let mut ws = server.ws(&server.token(Role::Runner, "r1")).await;
    ws.subscribe(
        "subscription { planRequested { id ref environment { name } } }",
        json!({}),
    )
    .await;
    // A lock holds deployments back, not plans.
    server.lock("web", "production", "release freeze").await;
    let id = server.request_plan("web", "production", "main").await;
    let heard = ws.next().await.expect("a requested plan");
    assert_eq!(heard["planRequested"]["id"], id.as_str(), "{heard}");
    let plan = server.plan(&id).await;
    assert_eq!(plan["status"], "QUEUED", "{plan}");
    assert_eq!(plan["createdBy"], "deployer", "{plan}");
    let requested = server
        .ok_as(Role::Runner, "{ requestedPlans { id } }", json!({}))
        .await;
    assert_eq!(requested["requestedPlans"], json!([{"id": id}]));

    let claimed = as_runner(&server, "r1", CLAIM, json!({"id": id})).await;
    let claimed = &claimed["data"]["claimPlan"];
    assert_eq!(claimed["status"], "RUNNING", "{claimed}");
    assert_eq!(
        claimed["application"]["repository"],
        "https://git.example/web.git"
    );
    assert_eq!(claimed["application"]["specPath"], "slipway.yml");
    for runner in ["r2", "r1"] {
        let again = as_runner(&server, runner, CLAIM, json!({"id": id})).await;
        assert_eq!(
            error_of(&again).0,
            "CONFLICT",
            "a second claim by {runner}: {again}"
        );
    }
    let requested = server
        .ok_as(Role::Runner, "{ requestedPlans { id } }", json!({}))
        .await;
    assert_eq!(requested["requestedPlans"], json!([]));

    // Only the runner that claimed it answers, with a diff that reads as one.
    let other = as_runner(
        &server,
        "r2",
        FINISH,
        json!({"id": id, "sha": SHA, "result": diff()}),
    )
    .await;
    let (code, message) = error_of(&other);
    assert_eq!(code, "CONFLICT", "{other}");
    assert!(message.contains("`r1`"), "{message}");
    let bad = as_runner(
        &server,
        "r1",
        FINISH,
        json!({"id": id, "result": {"services": 3}}),
    )
    .await;
    assert_eq!(error_of(&bad).0, "BAD_USER_INPUT", "{bad}");
    let empty = as_runner(&server, "r1", FINISH, json!({"id": id})).await;
    assert_eq!(error_of(&empty).0, "BAD_USER_INPUT", "{empty}");
    let done = as_runner(
        &server,
        "r1",
        FINISH,
        json!({"id": id, "sha": SHA, "result": diff(), "message": "warning: busybox:latest is a local image"}),
    )
    .await;
    assert_eq!(done["data"]["finishPlan"]["status"], "DONE", "{done}");
    let plan = server.plan(&id).await;
    assert_eq!(plan["sha"], SHA);
    assert_eq!(plan["runner"], "r1");
    assert_eq!(plan["result"], diff());
    assert!(plan["finishedAt"].is_string(), "{plan}");
    let twice = as_runner(&server, "r1", FINISH, json!({"id": id, "message": "late"})).await;
    assert_eq!(error_of(&twice).0, "CONFLICT", "{twice}");

    // A plan is never a deployment.
    assert!(server.deployments().await.is_empty());
}

async fn a_plan_that_fails_says_why_and_bad_requests_are_refused(backend: Backend) {
    let server = with_environment(backend).await;
    let id = server.request_plan("web", "production", "v1.2").await;
    as_runner(&server, "r1", CLAIM, json!({"id": id})).await;
    let failed = as_runner(
        &server,
        "r1",
        FINISH,
        json!({"id": id, "sha": SHA, "message": "docker-compose.yml: services.web.deploy.replicas: expected a number"}),
    )
    .await;
    assert_eq!(failed["data"]["finishPlan"]["status"], "FAILED", "{failed}");
    let plan = server.plan(&id).await;
    assert!(plan["result"].is_null(), "{plan}");
    assert!(
        plan["message"].as_str().unwrap().contains("replicas"),
        "{plan}"
    );

    let request = "mutation($a: String!, $e: String!, $r: String!) { requestPlan(application: $a, environment: $e, ref: $r) { id } }";
    let token = server.token(Role::Deployer, "ada");
    for (a, e, r, code) in [
        ("web", "staging", "main", "NOT_FOUND"),
        ("nope", "production", "main", "NOT_FOUND"),
        ("web", "production", " ", "BAD_USER_INPUT"),
        ("web", "Bad Name", "main", "BAD_USER_INPUT"),
    ] {
        let body = server
            .gql(Some(&token), request, json!({"a": a, "e": e, "r": r}))
            .await;
        assert_eq!(error_of(&body).0, code, "{a} {e} {r:?}: {body}");
    }
    let unknown = server
        .gql(Some(&token), "{ plan(id: \"999\") { id } }", json!({}))
        .await;
    assert_eq!(error_of(&unknown).0, "NOT_FOUND", "{unknown}");
    let claim = as_runner(&server, "r1", CLAIM, json!({"id": "0"})).await;
    assert_eq!(error_of(&claim).0, "BAD_USER_INPUT", "{claim}");
}

async fn plans_no_runner_takes_or_answers_expire_as_failed(backend: Backend) {
    let clock = Clock::manual(chrono::Utc::now());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server
        .app(
            "web",
            "https://git.example/web.git",
            &[("production", None, None)],
        )
        .await;
    let waiting = server.request_plan("web", "production", "main").await;
    let taken = server.request_plan("web", "production", "main").await;
    as_runner(&server, "r1", CLAIM, json!({"id": taken})).await;

    clock.advance(plans::QUEUE_PATIENCE - chrono::Duration::seconds(1));
    assert!(plans::expire(&server.state).await.unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(2));
    let expired = plans::expire(&server.state).await.unwrap();
    assert_eq!(
        expired.iter().map(|p| p.id.to_string()).collect::<Vec<_>>(),
        [waiting.as_str()]
    );
    let plan = server.plan(&waiting).await;
    assert_eq!(plan["status"], "FAILED");
    assert!(
        plan["message"]
            .as_str()
            .unwrap()
            .contains("no runner took this plan within 2 minutes"),
        "{plan}"
    );
    // Claimed before the queue's patience ran out, the other has the runner's.
    assert_eq!(server.plan(&taken).await["status"], "RUNNING");
    // Too late to claim the expired one.
    let late = as_runner(&server, "r2", CLAIM, json!({"id": waiting})).await;
    assert_eq!(error_of(&late).0, "CONFLICT", "{late}");

    clock.advance(plans::RUN_PATIENCE);
    let expired = plans::expire(&server.state).await.unwrap();
    assert_eq!(expired.len(), 1);
    let plan = server.plan(&taken).await;
    assert_eq!(plan["status"], "FAILED");
    let message = plan["message"].as_str().unwrap();
    assert!(
        message.contains("runner `r1`") && message.contains("did not answer"),
        "{message}"
    );
    let answer = as_runner(
        &server,
        "r1",
        FINISH,
        json!({"id": taken, "result": diff()}),
    )
    .await;
    assert_eq!(error_of(&answer).0, "CONFLICT", "{answer}");
}

slipway_testkit::on_both_backends!(
    a_plan_is_claimed_once_and_answered_by_the_runner_that_claimed_it,
    a_plan_that_fails_says_why_and_bad_requests_are_refused,
    plans_no_runner_takes_or_answers_expire_as_failed,
);

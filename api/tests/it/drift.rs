//! Drift against git: ten minutes after a release, and every ten minutes,
//! a runner is asked to plan the release's commit against the swarm; what
//! it finds different is the environment's drift, in GraphQL and metrics.

use chrono::Duration;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::Clock;
use slipway_testkit::api::{Backend, Options, TestApi};
use slipway_testkit::on_both_backends;

const SHA: &str = "3f2c1a9b8e7d6c5b4a3f2c1a9b8e7d6c5b4a3f2c";
const WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
const DRIFT: &str = "{ application(name: \"shop\") { environment(name: \"production\") {
    drift { drifted sha checkedAt services { name action changes } plan { id createdBy } } } } }";

async fn requested(server: &TestApi) -> Vec<Value> {
    let data = server
        .ok_as(
            Role::Runner,
            "{ requestedPlans { id ref createdBy environment { name } } }",
            json!({}),
        )
        .await;
    data["requestedPlans"].as_array().unwrap().clone()
}

/// Waits for the reaper (every 5 s) to ask for a drift check.
async fn wait_requested(server: &TestApi) -> Value {
    slipway_testkit::wait::until("a drift check to be asked for", WITHIN, || async {
        let plans = requested(server).await;
        plans
            .into_iter()
            .next()
            .ok_or_else(|| "none yet".to_owned())
    })
    .await
}

async fn a_released_environment_is_checked_against_git_every_ten_minutes(backend: Backend) {
    let clock = Clock::manual(chrono::Utc::now());
    let server = TestApi::launch(Options {
        backend,
        clock: clock.clone(),
        metrics: true,
        ..Options::default()
    })
    .await;
    server.create_app("shop").await;
    let id = server
        .deploy_ref("shop", "production", "main", Some(SHA))
        .await;
    server.claim_ok("r", &id).await;
    server.finish("r", &id, "SUCCEEDED").await;

    // Not at once: a release is as in git when it is made.
    clock.advance(Duration::minutes(9));
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(requested(&server).await, Vec::<Value>::new());
    let none = server.ok_as(Role::Viewer, DRIFT, json!({})).await;
    assert!(
        none["application"]["environment"]["drift"].is_null(),
        "{none}"
    );

    clock.advance(Duration::minutes(2));
    let plan = wait_requested(&server).await;
    assert_eq!(plan["ref"], SHA, "the release's commit: {plan}");
    assert_eq!(plan["createdBy"], "slipway:drift");
    assert_eq!(plan["environment"]["name"], "production");
    let plan_id = plan["id"].as_str().unwrap().to_owned();
    let runner = server.token(Role::Runner, "r");
    server
        .ok(
            &runner,
            "mutation($id: ID!) { claimPlan(id: $id) { id } }",
            json!({"id": plan_id}),
        )
        .await;
    let result = json!({"stack": "shop", "services": [
        {"name": "shop_web", "action": "update", "changes": ["TaskTemplate.ContainerSpec.Env", "Mode.Replicated.Replicas"]},
        {"name": "shop_worker", "action": "unchanged"},
        {"name": "shop_debug", "action": "remove"},
    ]});
    server
        .ok(
            &runner,
            "mutation($id: ID!, $sha: String, $result: JSON) { finishPlan(id: $id, sha: $sha, result: $result) { id } }",
            json!({"id": plan_id, "sha": SHA, "result": result}),
        )
        .await;

    let data = server.ok_as(Role::Viewer, DRIFT, json!({})).await;
    let drift = &data["application"]["environment"]["drift"];
    assert_eq!(drift["drifted"], true, "{drift}");
    assert_eq!(drift["sha"], SHA);
    assert_eq!(drift["plan"]["id"], plan_id.as_str());
    assert_eq!(
        drift["services"],
        json!([
            {"name": "shop_web", "action": "update", "changes": ["TaskTemplate.ContainerSpec.Env", "Mode.Replicated.Replicas"]},
            {"name": "shop_debug", "action": "remove", "changes": []},
        ])
    );
    let scrape = server.scrape().await;
    assert_eq!(
        scrape.value(
            "slipway_environment_git_drift",
            &[("application", "shop"), ("environment", "production")]
        ),
        Some(2.0)
    );

    // Not again before ten minutes have passed; then again.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(requested(&server).await, Vec::<Value>::new());
    clock.advance(Duration::minutes(10));
    let again = wait_requested(&server).await;
    assert_ne!(again["id"], plan_id.as_str());
    assert_eq!(again["ref"], SHA);
}

on_both_backends!(a_released_environment_is_checked_against_git_every_ten_minutes);

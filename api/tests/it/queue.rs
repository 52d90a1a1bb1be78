//! Queue policies: `FIFO` with a cap, and `LATEST`, where a new deployment
//! supersedes the queued ones.

use serde_json::json;
use slipway_api::auth::Role;

use slipway_testkit::api::{Backend, TestApi};

const POLICY: &str = "mutation($p: QueuePolicy!, $m: Int) {
    setQueuePolicy(application: \"web\", environment: \"production\", policy: $p, maxQueued: $m) { queuePolicy maxQueued }
}";

/// `web` with a deployment of production in progress, so that new ones queue.
async fn busy(backend: Backend) -> (TestApi, String) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let running = server.deploy("web", "production").await;
    server.claim_ok("runner-1", &running).await;
    (server, running)
}

async fn a_latest_queue_supersedes_what_waits_and_runs_the_newest(backend: Backend) {
    let (server, running) = busy(backend).await;
    let set = server
        .ok_as(Role::Admin, POLICY, json!({"p": "LATEST", "m": null}))
        .await;
    assert_eq!(
        set["setQueuePolicy"],
        json!({"queuePolicy": "LATEST", "maxQueued": null})
    );

    let second = server.deploy("web", "production").await;
    let third = server.deploy("web", "production").await;
    let sha = "4bd2c0a90123456789abcdef0123456789abcdef";
    let fourth = server
        .deploy_ref("web", "production", "release-7", Some(sha))
        .await;
    for (older, by) in [
        (&second, "web#3 (main)"),
        (&third, "web#4 (release-7, 4bd2c0a)"),
    ] {
        let d = server.deployment(older).await;
        assert_eq!(d["status"], "CANCELLED", "{d}");
        assert_eq!(
            d["message"],
            format!(
                "superseded by {by} before it started: `production` deploys only the latest \
                 (queue policy LATEST)"
            )
        );
    }
    assert_eq!(server.deployment(&fourth).await["status"], "QUEUED");
    assert_eq!(
        server.deployment(&running).await["status"],
        "IN_PROGRESS",
        "what runs is left alone"
    );
    // Once the running one ends, the newest is what runners may claim.
    server.finish("runner-1", &running, "SUCCEEDED").await;
    let claimable = server
        .ok_as(Role::Runner, "{ claimableDeployments { id } }", json!({}))
        .await;
    assert_eq!(claimable["claimableDeployments"], json!([{"id": fourth}]));
}

async fn a_capped_fifo_queue_refuses_beyond_its_cap_and_creates_nothing(backend: Backend) {
    let (server, _running) = busy(backend).await;
    let deployer = server.token(Role::Deployer, "alice");
    let admin = server.token(Role::Admin, "admin");
    let (code, message) = server
        .err(&admin, POLICY, json!({"p": "FIFO", "m": 0}))
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    assert!(
        message.contains("`maxQueued` must be between 1 and 1000"),
        "{message}"
    );
    server
        .ok(&admin, POLICY, json!({"p": "FIFO", "m": 2}))
        .await;

    server.deploy("web", "production").await;
    server.deploy("web", "production").await;
    let create = "mutation { createDeployment(input: {application: \"web\", environment: \"production\", ref: \"main\"}) { id } }";
    let (code, message) = server.err(&deployer, create, json!({})).await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(
        message.contains(
            "`production` of `web` has 2 deployment(s) queued, the most it takes (maxQueued 2)"
        ),
        "{message}"
    );
    assert_eq!(server.deployments().await.len(), 3, "nothing was created");
    // Another environment has its own queue.
    server.deploy("web", "staging").await;
    // Lifting the cap lets them queue again.
    server
        .ok(&admin, POLICY, json!({"p": "FIFO", "m": null}))
        .await;
    server.ok(&deployer, create, json!({})).await;
    assert_eq!(server.deployments().await.len(), 5);
}

slipway_testkit::on_both_backends!(
    a_latest_queue_supersedes_what_waits_and_runs_the_newest,
    a_capped_fifo_queue_refuses_beyond_its_cap_and_creates_nothing,
);

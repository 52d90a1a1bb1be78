//! Slipway on a real swarm, from `deploy/`: it deploys the shop for a signed
//! GitHub hook, upgrades itself, and survives an upgrade to a broken image.

use std::time::Duration;

use serde_json::json;
use slipway_e2e::on_swarm::{
    build_broken_image, build_image, pushed_digest, running_task_ids, service_image, OnSwarm,
    SERVICES, SHOP_STACK,
};
use slipway_e2e::system::PUBLIC_URL;
use slipway_testkit::fakes::github;
use slipway_testkit::wait;

/// A deployment of the shop: fetch, plan and a one-task service.
const SHOP_WITHIN: Duration = Duration::from_secs(180);
/// Slipway replacing its own services, runner included, one after the other
/// with their `monitor: 10s`, and a rollback of them.
const UPGRADE_WITHIN: Duration = Duration::from_secs(420);

async fn create_deployment(slipway: &OnSwarm, application: &str, sha: &str) -> String {
    let data = slipway
        .api
        .gql(
            "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { id } }",
            json!({"i": {"application": application, "environment": "production", "ref": sha}}),
        )
        .await;
    data["createDeployment"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a deployment id in {data}"))
        .to_owned()
}

/// Every Slipway service's spec names `image` pinned to `digest`, and its one
/// task runs it.
async fn assert_on(image: &str, digest: &str) {
    let pinned = format!("{image}@{digest}");
    for service in SERVICES {
        assert_eq!(service_image(service), pinned, "{service}");
        slipway_testkit::swarm::wait_running(service, &pinned, 1, Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slipway_on_the_swarm_deploys_the_shop_upgrades_itself_and_survives_a_broken_upgrade() {
    let slipway = OnSwarm::start().await;
    let api = &slipway.api;

    // `docker stack deploy` pinned the first image to its digest.
    assert_on(&slipway.image, &pushed_digest(&slipway.image)).await;

    // A signed GitHub `deployment` hook deploys the shop example.
    api.gql(
        "mutation($r: String!) { createApplication(input: {name: \"storefront\", repository: $r, \
         specPath: \"examples/shop/slipway.yml\"}) { name } }",
        json!({"r": slipway.shop_repo.url}),
    )
    .await;
    api.create_env("storefront", "local", None, "http://shop.example.com")
        .await;
    let shop_sha = slipway.shop_sha.clone();
    let gh_id = 7_200_000_001;
    let event =
        github::deployment_event(gh_id, "local", &shop_sha, json!({}), &slipway.shop_repo.url);
    let (status, body) = slipway.hook("deployment", "on-swarm-1", &event).await;
    assert_eq!(status, 200, "the hook is accepted: {body}");
    let id = body["deployments"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a deployment in {body}"))
        .to_owned();
    let d = api.wait_final(&id, SHOP_WITHIN).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["sha"], shop_sha.as_str());
    let states = wait::until("GitHub to hear the end", SHOP_WITHIN, || async {
        let states = slipway.github.states(gh_id);
        (states.len() == 3)
            .then(|| states.clone())
            .ok_or(format!("{states:?}"))
    })
    .await;
    assert_eq!(states, ["queued", "in_progress", "success"]);
    for s in slipway.github.statuses(gh_id) {
        assert_eq!(
            s.body["log_url"],
            format!("{PUBLIC_URL}/deployments/{id}"),
            "{s:?}"
        );
    }
    let shop = format!("http://127.0.0.1:{}/", slipway.shop_port);
    let page = wait::until("the shop to answer", SHOP_WITHIN, || async {
        match slipway.get(&shop).await? {
            (200, body) => Ok(body),
            (status, _) => Err(status.to_string()),
        }
    })
    .await;
    assert!(page.contains("<html"), "{page}");
    assert!(
        slipway_testkit::swarm::inspect_service(&format!("{SHOP_STACK}_web")).is_some(),
        "the shop runs as stack {SHOP_STACK}"
    );
    // The API serves the deployment's page, where the statuses link.
    let (status, html) = slipway
        .get(&format!("{}/deployments/{id}", api.url))
        .await
        .unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<html") || html.contains("<!DOCTYPE"),
        "{html}"
    );

    // Slipway deploys its own upgrade: a new commit, its image pushed.
    api.gql(
        "mutation($r: String!) { createApplication(input: {name: \"slipway\", repository: $r, \
         specPath: \"deploy/slipway.yml\"}) { name } }",
        json!({"r": slipway.slipway_repo.url}),
    )
    .await;
    api.create_env("slipway", "production", None, PUBLIC_URL)
        .await;
    let database = running_task_ids("slipway_postgres");
    let upgrade_sha = slipway.slipway_repo.commit(
        "main",
        &[("deploy/UPGRADE", "the second release\n")],
        "an upgrade",
    );
    let upgrade = build_image(&upgrade_sha);
    let upgrade_digest = pushed_digest(&upgrade);
    let id = create_deployment(&slipway, "slipway", &upgrade_sha).await;
    let d = api.wait_final(&id, UPGRADE_WITHIN).await;
    eprintln!("on_swarm: the upgrade's log:\n{}", log_text(&d));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_on(&upgrade, &upgrade_digest).await;
    let log: Vec<&str> = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(
        log.iter().any(|l| l.contains("restarted; reconciling")),
        "the runner was replaced and its successor resumed: {log:#?}"
    );
    assert_eq!(
        running_task_ids("slipway_postgres"),
        database,
        "the database, unchanged, was not restarted"
    );
    slipway.wait_up(Duration::from_secs(60)).await;

    // An upgrade to an image whose binaries fail: rolled back, FAILED, and
    // Slipway goes on serving the release before it.
    let broken_sha = slipway.slipway_repo.commit(
        "main",
        &[("deploy/UPGRADE", "broken\n")],
        "a broken upgrade",
    );
    let broken = build_broken_image(&upgrade, &broken_sha, slipway.dir());
    let id = create_deployment(&slipway, "slipway", &broken_sha).await;
    let d = api.wait_final(&id, UPGRADE_WITHIN).await;
    eprintln!("on_swarm: the broken upgrade's log:\n{}", log_text(&d));
    assert_eq!(d["status"], "FAILED", "{d}");
    let message = d["message"].as_str().unwrap_or_default();
    assert!(message.contains("rolled back"), "{message}");
    assert_ne!(pushed_digest(&broken), upgrade_digest);
    assert_on(&upgrade, &upgrade_digest).await;
    slipway.wait_up(Duration::from_secs(60)).await;
}

/// A deployment's log, a line per entry with its time.
fn log_text(d: &serde_json::Value) -> String {
    d["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "  {} {}\n",
                l["at"].as_str().unwrap_or(""),
                l["text"].as_str().unwrap_or("")
            )
        })
        .collect()
}

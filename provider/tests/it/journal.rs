//! The status journal is of one API's deployments: a provider pointed at a
//! new API database (whose ids start again from 1) still reports every
//! deployment, and never reports a new deployment on an old one's GitHub
//! deployment. A torn line loses nothing that came after it.

use std::io::Write as _;

use axum::http::StatusCode;
use serde_json::json;
use slipway_api::auth::Role;
use slipway_provider::statuses::journal::{Journal, Tracked, FILE_NAME};

use crate::support::*;

/// The shop application, on `api`.
async fn shop(api: &TestApi) {
    api.app(
        "shop",
        &format!("https://github.com/{REPO}.git"),
        &[("production", Some("main"), None), ("qa", None, None)],
    )
    .await;
}

/// Sends a `deployment` event for `github_id`; returns the Slipway id.
async fn deploy(provider: &TestProvider, github_id: u64, environment: &str) -> String {
    let event = deployment_event(github_id, environment, SHA, json!({}));
    let (status, body) = provider
        .github("deployment", &format!("delivery-{github_id}"), &event)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deployments"][0]["id"].as_str().unwrap().to_owned()
}

async fn states_become(github: &FakeGithub, github_id: u64, states: &[&str]) {
    wait_for(
        &format!("{states:?} on GitHub deployment {github_id}"),
        || async move { (github.states(github_id) == states).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_new_api_database_gets_every_status_even_for_reused_ids() {
    let github = FakeGithub::start().await;
    let data_dir = tempfile::tempdir().unwrap();

    // The first API: its deployment 1 is reported to the end.
    let old_api = start_api().await;
    shop(&old_api).await;
    let provider = TestProvider::start(config(&old_api, &github, data_dir.path().to_owned())).await;
    let old = deploy(&provider, GH_ID, "production").await;
    assert_eq!(old, "1");
    old_api.claim_ok(RUNNER, &old).await;
    old_api.finish_with(RUNNER, &old, "SUCCEEDED", "done").await;
    states_become(&github, GH_ID, &["queued", "in_progress", "success"]).await;
    provider.stop().await;

    // The same provider state with an API whose database is new: its first
    // deployment is 1 again, and it is another deployment.
    let new_api = start_api().await;
    shop(&new_api).await;
    let provider = TestProvider::start(config(&new_api, &github, data_dir.path().to_owned())).await;
    let new = deploy(&provider, GH_ID + 1, "production").await;
    assert_eq!(new, "1", "the new database numbers from 1 again");
    states_become(&github, GH_ID + 1, &["queued"]).await;
    new_api.claim_ok(RUNNER, &new).await;
    new_api.finish_with(RUNNER, &new, "FAILED", "boom").await;
    states_become(&github, GH_ID + 1, &["queued", "in_progress", "failure"]).await;
    assert_eq!(
        github.states(GH_ID),
        ["queued", "in_progress", "success"],
        "the old GitHub deployment is left as it was"
    );
}

#[tokio::test]
async fn a_pending_record_of_another_api_database_is_discarded() {
    let github = FakeGithub::start().await;
    let data_dir = tempfile::tempdir().unwrap();

    // Deployment 1 of the first API is still queued when the provider stops.
    let old_api = start_api().await;
    shop(&old_api).await;
    let provider = TestProvider::start(config(&old_api, &github, data_dir.path().to_owned())).await;
    deploy(&provider, GH_ID, "production").await;
    states_become(&github, GH_ID, &["queued"]).await;
    provider.stop().await;

    // A new database, whose deployment 1 (made by a person, not by GitHub)
    // succeeds before the provider is back.
    let new_api = start_api().await;
    shop(&new_api).await;
    let data = new_api
        .ok_as(
            Role::Deployer,
            "mutation { createDeployment(input: {application: \"shop\", environment: \"qa\", ref: \"main\"}) { id } }",
            json!({}),
        )
        .await;
    let by_hand = data["createDeployment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(by_hand, "1");
    new_api.claim_ok(RUNNER, &by_hand).await;
    new_api
        .finish_with(RUNNER, &by_hand, "SUCCEEDED", "done")
        .await;

    let provider = TestProvider::start(config(&new_api, &github, data_dir.path().to_owned())).await;
    // The reporter works oldest first: once deployment 2's first status is
    // on GitHub, it has judged the record of deployment 1.
    let second = deploy(&provider, GH_ID + 1, "production").await;
    assert_eq!(second, "2");
    states_become(&github, GH_ID + 1, &["queued"]).await;
    assert_eq!(
        github.states(GH_ID),
        ["queued"],
        "the new deployment 1 is not reported on the old one's GitHub deployment"
    );
    provider.stop().await;
}

fn tracked(deployment: i64) -> Tracked {
    Tracked {
        deployment,
        created_at: Some(chrono::Utc::now()),
        repo: REPO.into(),
        github_id: Some(GH_ID + deployment as u64),
        create: None,
        posted: vec![],
    }
}

fn tear(dir: &std::path::Path) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(FILE_NAME))
        .unwrap();
    file.write_all(br#"{"op":"posted","deploym"#).unwrap();
}

#[test]
fn a_torn_last_line_swallows_nothing_appended_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    assert!(journal.track(tracked(1)).unwrap());
    drop(journal);

    // A crash in the middle of a write: the torn line is there at the next start.
    tear(dir.path());
    let journal = Journal::open(dir.path()).unwrap();
    assert!(journal.track(tracked(2)).unwrap());
    drop(journal);
    let journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.pending(), vec![1, 2]);

    // A write that failed half-way while running: the next record starts a
    // line of its own, and the one after it too.
    tear(dir.path());
    assert!(journal.track(tracked(3)).unwrap());
    assert!(journal.track(tracked(4)).unwrap());
    drop(journal);
    let journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.pending(), vec![1, 2, 3, 4]);
    assert_eq!(journal.by_github_id(GH_ID + 3), Some(3));
}

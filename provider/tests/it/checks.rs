//! Required checks: the provider reads a waiting deployment's commit on a
//! fake GitHub (combined statuses, check runs) or a fake GitLab (pipelines)
//! and reports it to the real API, which opens the gate, fails the
//! deployment, or times it out.

use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_testkit::fakes::gitlab::{self, FakeGitlab};

use crate::support::*;

const VIEW: &str = "query($id: ID!) { deployment(id: $id) {
    status message sha
    gate { kind waitingFor }
    checks { name state url }
    checksReportedAt
} }";

/// The API (on `clock`), the fake GitHub and a provider reading checks every second.
async fn github_world(clock: Clock) -> (TestApi, FakeGithub, TestProvider, tempfile::TempDir) {
    let api = TestApi::start_with(Backend::Sqlite, clock, Settings::default()).await;
    let github = FakeGithub::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = config(&api, &github, data_dir.path().to_owned());
    config.checks_every = 1;
    let provider = TestProvider::start(config).await;
    api.app("shop", &clone_url(), &[("production", None, None)])
        .await;
    (api, github, provider, data_dir)
}

async fn require(api: &TestApi, names: &[&str], all: bool, timeout: Option<i64>) {
    api.ok_as(
        Role::Admin,
        "mutation($c: [String!], $a: Boolean, $t: Int) {
            setRequiredChecks(application: \"shop\", environment: \"production\", checks: $c, all: $a, timeoutMinutes: $t) { name }
        }",
        json!({"c": names, "a": all, "t": timeout}),
    )
    .await;
}

async fn create(api: &TestApi, sha: Option<&str>) -> String {
    api.ok_as(
        Role::Deployer,
        "mutation($sha: String) { createDeployment(input: {application: \"shop\", environment: \"production\", ref: \"main\", sha: $sha}) { id gate { kind } } }",
        json!({"sha": sha}),
    )
    .await["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn view(api: &TestApi, id: &str) -> Value {
    api.ok_as(Role::Viewer, VIEW, json!({"id": id})).await["deployment"].clone()
}

/// Waits until the deployment's view satisfies `done`.
async fn becomes(api: &TestApi, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || async {
        let d = view(api, id).await;
        done(&d).then_some(d)
    })
    .await
}

fn reported(d: &Value) -> bool {
    !d["checksReportedAt"].is_null()
}

/// The paths (with what was asked) GitHub received for commit reads.
fn commit_reads(github: &FakeGithub) -> Vec<Received> {
    github
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/commits/"))
        .collect()
}

#[tokio::test]
async fn github_statuses_hold_the_gate_until_they_pass() {
    let (api, github, _provider, _dir) = github_world(Clock::system()).await;
    require(&api, &["ci/build", "test"], false, None).await;
    github.set_statuses(
        SHA,
        vec![
            json!({"context": "ci/build", "state": "success", "target_url": "https://ci.example.com/build/1"}),
            json!({"context": "test", "state": "pending", "target_url": "https://ci.example.com/test/1"}),
        ],
    );
    let id = create(&api, Some(SHA)).await;
    let d = becomes(
        &api,
        &id,
        "a report of ci/build passed and test pending",
        reported,
    )
    .await;
    assert_eq!(d["status"], "QUEUED");
    assert_eq!(
        d["gate"],
        json!({"kind": "CHECKS", "waitingFor": "test to pass on 0123456"})
    );
    assert_eq!(
        d["checks"],
        json!([
            {"name": "ci/build", "state": "SUCCESS", "url": "https://ci.example.com/build/1"},
            {"name": "test", "state": "PENDING", "url": "https://ci.example.com/test/1"},
        ])
    );

    // GitHub was asked as its API wants: the token, both endpoints, latest runs.
    let reads = commit_reads(&github);
    let status = reads
        .iter()
        .find(|r| r.path == format!("/repos/{REPO}/commits/{SHA}/status"))
        .expect("the combined status was read");
    assert_eq!(
        status.authorization.as_deref(),
        Some(format!("Bearer {GITHUB_TOKEN}").as_str())
    );
    let runs = reads
        .iter()
        .find(|r| r.path == format!("/repos/{REPO}/commits/{SHA}/check-runs"))
        .expect("the check runs were read");
    assert_eq!(runs.body["filter"], "latest");
    assert_eq!(runs.body["per_page"], "100");
    assert!(reads.iter().all(|r| !r.failed));

    github.set_statuses(
        SHA,
        vec![
            json!({"context": "ci/build", "state": "success"}),
            json!({"context": "test", "state": "success"}),
        ],
    );
    let d = becomes(&api, &id, "the gate open", |d| d["gate"].is_null()).await;
    assert_eq!(d["status"], "QUEUED");
    let claimable = api
        .ok_as(Role::Runner, "{ claimableDeployments { id } }", json!({}))
        .await;
    assert_eq!(claimable["claimableDeployments"], json!([{"id": id}]));
}

#[tokio::test]
async fn github_actions_check_runs_alone_are_read() {
    let (api, github, _provider, _dir) = github_world(Clock::system()).await;
    require(&api, &[], true, None).await;
    github.set_check_runs(
        SHA,
        vec![
            json!({"name": "build", "status": "completed", "conclusion": "success", "html_url": "https://github.com/acme/shop/runs/1"}),
            json!({"name": "lint", "status": "in_progress", "conclusion": null, "html_url": "https://github.com/acme/shop/runs/2"}),
        ],
    );
    let id = create(&api, Some(SHA)).await;
    let d = becomes(&api, &id, "lint pending", reported).await;
    assert_eq!(d["gate"]["waitingFor"], "lint to pass on 0123456");
    assert_eq!(d["checks"][1]["state"], "PENDING");

    github.set_check_runs(
        SHA,
        vec![
            json!({"name": "build", "status": "completed", "conclusion": "success"}),
            json!({"name": "lint", "status": "completed", "conclusion": "skipped"}),
        ],
    );
    becomes(&api, &id, "the gate open", |d| d["gate"].is_null()).await;
}

#[tokio::test]
async fn a_commit_without_statuses_or_check_runs_stays_pending() {
    let (api, github, _provider, _dir) = github_world(Clock::system()).await;
    require(&api, &[], true, None).await;
    let id = create(&api, Some(SHA)).await;
    becomes(&api, &id, "a report", reported).await;
    // Several rounds later it still waits: no check at all is no success.
    let before = commit_reads(&github).len();
    wait_for("two more rounds", || async {
        (commit_reads(&github).len() >= before + 4).then_some(())
    })
    .await;
    let d = view(&api, &id).await;
    assert_eq!(d["status"], "QUEUED");
    assert_eq!(
        d["gate"],
        json!({"kind": "CHECKS", "waitingFor": "every check to pass on 0123456; none reported yet"})
    );
    assert_eq!(d["checks"], json!([]));
}

#[tokio::test]
async fn a_failed_check_run_fails_the_deployment_naming_it() {
    let (api, github, _provider, _dir) = github_world(Clock::system()).await;
    require(&api, &["test"], false, None).await;
    github.set_statuses(SHA, vec![json!({"context": "test", "state": "pending"})]);
    github.set_check_runs(
        SHA,
        vec![json!({"name": "test", "status": "completed", "conclusion": "failure", "html_url": "https://github.com/acme/shop/runs/7"})],
    );
    let id = create(&api, Some(SHA)).await;
    let d = becomes(&api, &id, "the deployment failed", |d| {
        d["status"] == "FAILED"
    })
    .await;
    assert_eq!(
        d["message"], "required check test (https://github.com/acme/shop/runs/7) failed on 0123456",
        "a status and a check run of one name: the worse counts"
    );
}

#[tokio::test]
async fn checks_that_never_pass_time_out() {
    let clock = Clock::manual(chrono::Utc::now());
    let (api, github, _provider, _dir) = github_world(clock.clone()).await;
    require(&api, &["test"], false, Some(5)).await;
    github.set_statuses(SHA, vec![json!({"context": "test", "state": "pending"})]);
    let id = create(&api, Some(SHA)).await;
    becomes(&api, &id, "test pending", reported).await;
    clock.advance(chrono::Duration::minutes(5));
    let ended = slipway_api::checks::fail_expired(&api.state).await.unwrap();
    assert_eq!(ended.len(), 1);
    let d = view(&api, &id).await;
    assert_eq!(d["status"], "FAILED");
    assert_eq!(
        d["message"],
        "timed out after 5 minutes waiting for checks on 0123456: test pending"
    );
}

#[tokio::test]
async fn a_ref_only_deployment_is_checked_on_the_commit_github_resolves() {
    let (api, github, _provider, _dir) = github_world(Clock::system()).await;
    require(&api, &["test"], false, None).await;
    github.set_ref("main", SHA2);
    github.set_statuses(SHA2, vec![json!({"context": "test", "state": "success"})]);
    let id = create(&api, None).await;
    let d = becomes(&api, &id, "the gate open", |d| d["gate"].is_null()).await;
    assert_eq!(
        d["sha"], SHA2,
        "the runner deploys the commit that was checked"
    );
    let reads = commit_reads(&github);
    assert_eq!(reads[0].path, format!("/repos/{REPO}/commits/main"));
    assert!(reads
        .iter()
        .any(|r| r.path == format!("/repos/{REPO}/commits/{SHA2}/status")));
}

/// The API, the fake GitLab and a provider with only a GitLab token.
async fn gitlab_world() -> (TestApi, FakeGitlab, TestProvider) {
    let api = start_api().await;
    let fake = FakeGitlab::start().await;
    let mut config =
        slipway_provider::Config::new(api.base_url(), api.token(Role::Provider, "provider"));
    config.hooks.gitlab_token = Some(slipway_provider::Secret::new(gitlab::TOKEN));
    config.hooks.gitlab_url = fake.url();
    config.checks_every = 1;
    config.data_dir = std::env::temp_dir();
    let provider = TestProvider::start(config).await;
    api.app(
        "shop",
        &format!("https://gitlab.com/{}.git", gitlab::PROJECT),
        &[("production", None, None)],
    )
    .await;
    (api, fake, provider)
}

#[tokio::test]
async fn a_gitlab_pipeline_holds_the_gate_until_it_succeeds() {
    let (api, gitlab, _provider) = gitlab_world().await;
    require(&api, &["pipeline"], false, None).await;
    let id = create(&api, Some(SHA)).await;
    let d = becomes(&api, &id, "a report without a pipeline", reported).await;
    assert_eq!(d["checks"], json!([]));
    assert_eq!(d["gate"]["waitingFor"], "pipeline to pass on 0123456");

    let first = &gitlab.received()[0];
    assert_eq!(first.private_token.as_deref(), Some(gitlab::TOKEN));
    assert!(
        first
            .uri
            .starts_with(&format!("/api/v4/projects/acme%2Fshop/pipelines?sha={SHA}")),
        "{}",
        first.uri
    );

    // The latest pipeline counts: an older failed one does not.
    gitlab.set_pipelines(
        SHA,
        vec![
            json!({"id": 11, "status": "failed", "web_url": "https://gitlab.com/acme/shop/-/pipelines/11"}),
            json!({"id": 12, "status": "running", "web_url": "https://gitlab.com/acme/shop/-/pipelines/12"}),
        ],
    );
    let d = becomes(&api, &id, "the running pipeline", |d| {
        d["checks"][0]["url"] == "https://gitlab.com/acme/shop/-/pipelines/12"
    })
    .await;
    assert_eq!(d["checks"][0]["state"], "PENDING");
    assert_eq!(d["gate"]["kind"], "CHECKS");

    gitlab.set_pipelines(
        SHA,
        vec![json!({"id": 12, "status": "success", "web_url": "https://gitlab.com/acme/shop/-/pipelines/12"})],
    );
    becomes(&api, &id, "the gate open", |d| d["gate"].is_null()).await;
}

#[tokio::test]
async fn a_cancelled_gitlab_pipeline_fails_a_ref_only_deployment() {
    let (api, gitlab, _provider) = gitlab_world().await;
    require(&api, &["pipeline"], false, None).await;
    gitlab.set_ref("main", SHA2);
    gitlab.set_pipelines(
        SHA2,
        vec![json!({"id": 3, "status": "canceled", "web_url": "https://gitlab.com/acme/shop/-/pipelines/3"})],
    );
    let id = create(&api, None).await;
    let d = becomes(&api, &id, "the deployment failed", |d| {
        d["status"] == "FAILED"
    })
    .await;
    assert_eq!(
        d["message"],
        "required check pipeline (https://gitlab.com/acme/shop/-/pipelines/3) failed on 89abcde"
    );
    assert_eq!(d["sha"], SHA2);
    assert!(gitlab.received()[0]
        .uri
        .starts_with("/api/v4/projects/acme%2Fshop/repository/commits/main"));
    // Never a token anywhere but in its header.
    assert!(gitlab
        .received()
        .iter()
        .all(|r| !r.uri.contains(gitlab::TOKEN)));
}

//! Sentry releases through the outbox, against a fake Sentry on 127.0.0.1
//! that checks the requests: the release of a commit with the commits it
//! brings when a deployment starts, a deploy to the environment with its
//! times when it succeeds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_secret::Secret;
use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::fakes::sentry::{self, FakeSentry};

const RUNNER: &str = "runner-1";
const WITHIN: Duration = Duration::from_secs(20);

const SET: &str = "mutation($input: SetNotificationInput!) {
    setNotification(input: $input) { notification { id kind target events } secret }
}";

const DELIVERIES: &str = "{ application(name: \"shop\") { environments { deliveries { nodes {
    event state attempts lastAnswer deployment { id }
} } } } }";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

async fn start(backend: Backend, token: Option<&str>) -> TestApi {
    let settings = Settings {
        public_url: Some("https://slipway.example.com".into()),
        sentry_token: token.map(Secret::new),
        ..Settings::default()
    };
    let server = TestApi::start_with(backend, Clock::system(), settings).await;
    server
        .app(
            "shop",
            "https://github.com/acme/shop.git",
            &[("production", None, None)],
        )
        .await;
    server
}

fn input(target: &str, events: Value, secret: Option<&str>) -> Value {
    json!({"input": {"application": "shop", "environment": "production", "kind": "SENTRY",
                     "target": target, "events": events, "secret": secret}})
}

async fn deliveries(server: &TestApi) -> Vec<Value> {
    let data = server.ok_as(Role::Admin, DELIVERIES, json!({})).await;
    data["application"]["environments"][0]["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

async fn progress_sha(server: &TestApi, id: &str, sha: &str) {
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $sha: String) { updateDeploymentProgress(id: $id, phase: UPDATING, sha: $sha) { status } }",
            json!({"id": id, "sha": sha}),
        )
        .await;
}

async fn report_commits(server: &TestApi, id: &str, commits: Value) {
    server
        .ok(
            &server.token(Role::Runner, RUNNER),
            "mutation($id: ID!, $c: [CommitInput!]!) { reportDeploymentCommits(id: $id, commits: $c) }",
            json!({"id": id, "c": commits}),
        )
        .await;
}

async fn a_release_when_it_starts_and_a_deploy_when_it_succeeds(backend: Backend) {
    let fake = FakeSentry::start().await;
    let server = start(backend, Some(sentry::TOKEN)).await;
    let set = server
        .ok_as(
            Role::Admin,
            SET,
            input(&fake.project_url(), json!(["STARTED", "SUCCEEDED"]), None),
        )
        .await;
    assert!(set["setNotification"]["secret"].is_null());
    assert_eq!(
        set["setNotification"]["notification"]["target"],
        format!("http://{}/…", fake.addr)
    );

    let first = server
        .deploy_ref("shop", "production", "main", Some(&sha(10)))
        .await;
    server.claim_ok(RUNNER, &first).await;
    let releases = fake.wait_for_releases(1, WITHIN).await;
    assert_eq!(
        releases[0],
        json!({
            "version": sha(10),
            "ref": "main",
            "projects": ["shop"],
            "url": format!("https://github.com/acme/shop/commit/{}", sha(10)),
            "commits": [{"id": sha(10), "repository": "acme/shop"}],
        })
    );
    // The runner walks the history of what comes next meanwhile.
    report_commits(
        &server,
        &first,
        json!([
            {"sha": sha(12), "parents": [sha(11)], "subject": "Pay by card", "committedAt": "2026-11-30T10:00:00Z"},
            {"sha": sha(11), "parents": [sha(10)], "subject": "Cart totals", "committedAt": "2026-11-29T10:00:00Z"},
            {"sha": sha(10), "parents": [], "subject": "First", "committedAt": "2026-11-28T10:00:00Z"},
        ]),
    )
    .await;
    server.finish(RUNNER, &first, "SUCCEEDED").await;
    let deploys = fake.wait_for_deploys(1, WITHIN).await;
    let (version, deploy) = &deploys[0];
    assert_eq!(version, &sha(10));
    assert_eq!(deploy["environment"], "production");
    assert_eq!(deploy["name"], "shop#1");
    assert_eq!(deploy["projects"], json!(["shop"]));
    assert_eq!(
        deploy["url"],
        format!("https://slipway.example.com/deployments/{first}")
    );
    let started: DateTime<Utc> = deploy["dateStarted"].as_str().unwrap().parse().unwrap();
    let finished: DateTime<Utc> = deploy["dateFinished"].as_str().unwrap().parse().unwrap();
    assert!(started <= finished);
    assert_eq!(fake.releases().len(), 1, "the release was made once");

    // The next release lists the commits since the last one, newest first.
    let second = server
        .deploy_ref("shop", "production", "main", Some(&sha(12)))
        .await;
    server.claim_ok(RUNNER, &second).await;
    let releases = fake.wait_for_releases(2, WITHIN).await;
    assert_eq!(
        releases[1]["commits"],
        json!([
            {"id": sha(12), "repository": "acme/shop", "message": "Pay by card", "timestamp": "2026-11-30T10:00:00Z"},
            {"id": sha(11), "repository": "acme/shop", "message": "Cart totals", "timestamp": "2026-11-29T10:00:00Z"},
        ])
    );
    server.finish(RUNNER, &second, "SUCCEEDED").await;
    fake.wait_for_deploys(2, WITHIN).await;
    assert!(fake.refused().is_empty(), "{:?}", fake.refused());
}

async fn a_commit_learned_late_is_released_when_it_succeeds(backend: Backend) {
    let fake = FakeSentry::start().await;
    let server = start(backend, Some(sentry::TOKEN)).await;
    server
        .ok_as(
            Role::Admin,
            SET,
            input(&fake.project_url(), json!(["STARTED", "SUCCEEDED"]), None),
        )
        .await;
    let id = server.deploy("shop", "production").await;
    server.claim_ok(RUNNER, &id).await;
    let skipped = slipway_testkit::wait::until("the start told", WITHIN, || async {
        let all = deliveries(&server).await;
        match all.first() {
            Some(d) if d["state"] == "DELIVERED" => Ok(d.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(skipped["event"], "STARTED");
    assert_eq!(
        skipped["lastAnswer"],
        "nothing sent: no commit known yet: the release is made when it succeeds"
    );
    assert!(fake.releases().is_empty());

    progress_sha(&server, &id, &sha(13)).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    let deploys = fake.wait_for_deploys(1, WITHIN).await;
    assert_eq!(deploys[0].0, sha(13));
    assert_eq!(fake.releases()[0]["version"], sha(13).as_str());

    // The same commit again: the release exists (208), a second deploy.
    let again = server
        .deploy_ref("shop", "production", "main", Some(&sha(13)))
        .await;
    server.claim_ok(RUNNER, &again).await;
    server.finish(RUNNER, &again, "SUCCEEDED").await;
    fake.wait_for_deploys(2, WITHIN).await;
    assert_eq!(fake.releases().len(), 1);
    let all = deliveries(&server).await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|d| d["state"] == "DELIVERED"), "{all:?}");
}

async fn sentry_notifications_are_checked(backend: Backend) {
    let fake = FakeSentry::start().await;
    let server = start(backend, None).await;
    let admin = server.token(Role::Admin, "admin");
    let refused = [
        (
            input(
                "https://sentry.io/acme/shop/",
                json!(["STARTED"]),
                Some("t"),
            ),
            "project's page",
        ),
        (
            input(&fake.project_url(), json!(["QUEUED", "STARTED"]), Some("t")),
            "not QUEUED",
        ),
        (
            input(&fake.project_url(), json!(["STARTED"]), None),
            "needs a token",
        ),
        (
            input(&fake.project_url(), json!(["STARTED"]), Some("a b")),
            "no spaces",
        ),
    ];
    for (variables, says) in refused {
        let (code, message) = server.err(&admin, SET, variables.clone()).await;
        assert_eq!(code, "BAD_USER_INPUT", "{variables}");
        assert!(message.contains(says), "{variables}: {message}");
    }

    // Its own token, a wrong one: Sentry refuses, it is tried again.
    let wrong = "sntrys_not_the_right_one";
    server
        .ok(
            &admin,
            SET,
            input(&fake.project_url(), json!(["STARTED"]), Some(wrong)),
        )
        .await;
    let id = server
        .deploy_ref("shop", "production", "main", Some(&sha(14)))
        .await;
    server.claim_ok(RUNNER, &id).await;
    let failed = slipway_testkit::wait::until("a refused attempt", WITHIN, || async {
        let all = deliveries(&server).await;
        match all.first() {
            Some(d) if d["attempts"] == 1 => Ok(d.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(failed["state"], "PENDING");
    assert_eq!(
        failed["lastAnswer"],
        "HTTP 401: {\"detail\":\"Invalid token\"}"
    );
    let shown = server
        .ok_as(
            Role::Admin,
            "{ application(name: \"shop\") { environments { notifications { target kind } } } }",
            json!({}),
        )
        .await;
    assert!(!shown.to_string().contains(wrong));
    assert!(!shown.to_string().contains("organizations/acme"));
}

slipway_testkit::on_both_backends!(
    a_release_when_it_starts_and_a_deploy_when_it_succeeds,
    a_commit_learned_late_is_released_when_it_succeeds,
    sentry_notifications_are_checked,
);

//! Prometheus metrics, scraped over HTTP from the metrics listener and parsed
//! by Prometheus's own Python parser, as deployments happen; and the DORA
//! figures of `Environment.dora`, on the manual clock.

use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};
use slipway_testkit::api::{Backend, Options, TestApi};
use slipway_testkit::fakes::webhooks::{Answer, FakeWebhooks};
use slipway_testkit::prometheus::Scrape;

const RUNNER: &str = "runner-1";
const WITHIN: StdDuration = StdDuration::from_secs(20);

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

fn clock() -> Clock {
    Clock::manual("2026-03-02T09:00:00Z".parse().unwrap())
}

/// The API with metrics on, over `backend`, on `clock`.
async fn start(backend: Backend, clock: &Clock) -> TestApi {
    TestApi::launch(Options {
        backend,
        clock: clock.clone(),
        metrics: true,
        ..Options::default()
    })
    .await
}

/// Application shop with environments production and staging.
async fn shop(server: &TestApi) {
    server
        .app(
            "shop",
            "https://github.com/acme/shop.git",
            &[("production", None, None), ("staging", None, None)],
        )
        .await;
}

fn env(environment: &str) -> [(&str, &str); 2] {
    [("application", "shop"), ("environment", environment)]
}

fn finished<'a>(environment: &'a str, status: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("application", "shop"),
        ("environment", environment),
        ("status", status),
    ]
}

/// The cumulative count of bucket `le` of the duration histogram.
fn bucket(scrape: &Scrape, environment: &str, status: &str, le: f64) -> Option<f64> {
    scrape
        .find(
            "slipway_deployment_duration_seconds_bucket",
            &finished(environment, status),
        )
        .find(|sample| sample.label("le").and_then(|le| le.parse::<f64>().ok()) == Some(le))
        .map(|sample| sample.value)
}

async fn cancel(server: &TestApi, id: &str) {
    server
        .ok_as(
            Role::Deployer,
            "mutation($id: ID!) { cancelDeployment(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
}

async fn metrics_follow_deployments_as_they_happen(backend: Backend) {
    let clock = clock();
    let server = start(backend, &clock).await;
    shop(&server).await;

    let scrape = server.scrape().await;
    assert_eq!(scrape.kind("slipway_deployments_queued"), Some("gauge"));
    assert_eq!(
        scrape.kind("slipway_deployments_in_progress"),
        Some("gauge")
    );
    for environment in ["production", "staging"] {
        assert_eq!(
            scrape.value("slipway_deployments_queued", &env(environment)),
            Some(0.0)
        );
        assert_eq!(
            scrape.value("slipway_deployments_in_progress", &env(environment)),
            Some(0.0)
        );
    }
    assert_eq!(scrape.find("slipway_deployments_total", &[]).count(), 0);
    assert_eq!(scrape.find("slipway_release_info", &[]).count(), 0);

    let first = server
        .deploy_ref("shop", "production", "main", Some(&sha(1)))
        .await;
    let second = server
        .deploy_ref("shop", "production", "main", Some(&sha(2)))
        .await;
    let scrape = server.scrape().await;
    assert_eq!(
        scrape.value("slipway_deployments_queued", &env("production")),
        Some(2.0)
    );

    server.claim_ok(RUNNER, &first).await;
    clock.advance(Duration::seconds(45));
    let scrape = server.scrape().await;
    assert_eq!(
        scrape.value("slipway_deployments_queued", &env("production")),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployments_in_progress", &env("production")),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "slipway_runner_last_heartbeat_age_seconds",
            &[("runner", RUNNER)]
        ),
        Some(45.0),
        "the runner was last heard from when it claimed"
    );

    server.finish(RUNNER, &first, "SUCCEEDED").await;
    let scrape = server.scrape().await;
    assert_eq!(scrape.kind("slipway_deployments"), Some("counter"));
    assert_eq!(
        scrape.kind("slipway_deployment_duration_seconds"),
        Some("histogram")
    );
    let succeeded = finished("production", "SUCCEEDED");
    assert_eq!(
        scrape.value("slipway_deployments_total", &succeeded),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployment_duration_seconds_count", &succeeded),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployment_duration_seconds_sum", &succeeded),
        Some(45.0)
    );
    assert_eq!(bucket(&scrape, "production", "SUCCEEDED", 30.0), Some(0.0));
    assert_eq!(bucket(&scrape, "production", "SUCCEEDED", 60.0), Some(1.0));
    assert_eq!(
        bucket(&scrape, "production", "SUCCEEDED", f64::INFINITY),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "slipway_release_info",
            &[
                ("application", "shop"),
                ("environment", "production"),
                ("sha", &sha(1))
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployments_in_progress", &env("production")),
        Some(0.0)
    );

    server.claim_ok(RUNNER, &second).await;
    clock.advance(Duration::minutes(10));
    server.finish(RUNNER, &second, "FAILED").await;
    let third = server.deploy("shop", "production").await;
    cancel(&server, &third).await;

    let scrape = server.scrape().await;
    let failed = finished("production", "FAILED");
    let cancelled = finished("production", "CANCELLED");
    assert_eq!(
        scrape.value("slipway_deployments_total", &succeeded),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployments_total", &failed),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("slipway_deployments_total", &cancelled),
        Some(1.0)
    );
    // Ten minutes is in the bucket whose bound it is.
    assert_eq!(bucket(&scrape, "production", "FAILED", 300.0), Some(0.0));
    assert_eq!(bucket(&scrape, "production", "FAILED", 600.0), Some(1.0));
    assert_eq!(
        scrape.value("slipway_deployment_duration_seconds_sum", &failed),
        Some(600.0)
    );
    // Cancelled while queued: counted, but it never ran.
    assert_eq!(
        scrape.value("slipway_deployment_duration_seconds_count", &cancelled),
        Some(0.0)
    );
    // Drift: only once a runner looked; each difference counts.
    assert_eq!(scrape.find("slipway_environment_drift", &[]).count(), 0);
    let report = "mutation($s: [ObservedServiceInput!]!) { reportObserved(application: \"shop\", environment: \"production\", services: $s) { name } }";
    let runner = server.token(Role::Runner, RUNNER);
    let extra = json!([{"name": "shop_debug", "replicas": 1, "tasks": [{"node": "n1", "state": "running"}]}]);
    server.ok(&runner, report, json!({"s": extra})).await;
    assert_eq!(
        server
            .scrape()
            .await
            .value("slipway_environment_drift", &env("production")),
        Some(1.0)
    );
    server.ok(&runner, report, json!({"s": []})).await;
    assert_eq!(
        server
            .scrape()
            .await
            .value("slipway_environment_drift", &env("production")),
        Some(0.0)
    );
    let releases: Vec<_> = scrape.find("slipway_release_info", &[]).collect();
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(
        releases[0].label("sha"),
        Some(sha(1).as_str()),
        "a failure is no release"
    );
    assert_eq!(
        scrape.value("slipway_deployments_queued", &env("production")),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("slipway_deployments_queued", &env("staging")),
        Some(0.0)
    );
    assert_eq!(
        scrape
            .find("slipway_deployments_total", &[("environment", "staging")])
            .count(),
        0
    );
}

async fn graphql_operations_are_timed_by_type(backend: Backend) {
    let clock = clock();
    let server = start(backend, &clock).await;
    let count = |scrape: &Scrape, operation: &str| {
        scrape
            .value(
                "slipway_graphql_request_duration_seconds_count",
                &[("operation", operation)],
            )
            .unwrap_or(0.0)
    };
    let before = server.scrape().await;
    shop(&server).await; // one createApplication and two createEnvironment
    for _ in 0..4 {
        server
            .ok_as(Role::Viewer, "{ applications { name } }", json!({}))
            .await;
    }
    let after = server.scrape().await;
    assert_eq!(
        after.kind("slipway_graphql_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(count(&after, "mutation") - count(&before, "mutation"), 3.0);
    assert_eq!(count(&after, "query") - count(&before, "query"), 4.0);
    let operations: Vec<_> = after
        .find("slipway_graphql_request_duration_seconds_count", &[])
        .filter_map(|sample| sample.label("operation"))
        .collect();
    assert!(
        operations
            .iter()
            .all(|operation| ["query", "mutation"].contains(operation)),
        "labelled by type only: {operations:?}"
    );
}

async fn the_outbox_is_counted_by_state_with_its_failed_attempts(backend: Backend) {
    let receiver = FakeWebhooks::start().await;
    receiver.answer([Answer::Status(500)]);
    let clock = clock();
    let server = start(backend, &clock).await;
    shop(&server).await;
    let set = server
        .ok_as(
            Role::Admin,
            "mutation($input: SetNotificationInput!) { setNotification(input: $input) { secret } }",
            json!({"input": {"application": "shop", "environment": "production",
                   "kind": "WEBHOOK", "target": receiver.url("/hooks/slipway"),
                   "events": ["SUCCEEDED"]}}),
        )
        .await;
    receiver.set_secret(set["setNotification"]["secret"].as_str().unwrap());
    let scrape = server.scrape().await;
    for state in ["PENDING", "DELIVERED", "FAILED", "DISCARDED"] {
        assert_eq!(
            scrape.value("slipway_notification_deliveries", &[("state", state)]),
            Some(0.0),
            "{state}"
        );
    }
    assert_eq!(
        scrape.value("slipway_notification_delivery_failures_total", &[]),
        Some(0.0)
    );

    let id = server.deploy("shop", "production").await;
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    receiver.wait_for(1, WITHIN).await;
    let scrape = scrape_until(&server, "the failed attempt counted", |scrape| {
        scrape.value("slipway_notification_delivery_failures_total", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(
        scrape.value("slipway_notification_deliveries", &[("state", "PENDING")]),
        Some(1.0)
    );

    clock.advance(Duration::seconds(5));
    receiver.wait_for(2, WITHIN).await;
    let scrape = scrape_until(&server, "the delivery counted as delivered", |scrape| {
        scrape.value("slipway_notification_deliveries", &[("state", "DELIVERED")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        scrape.value("slipway_notification_deliveries", &[("state", "PENDING")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("slipway_notification_delivery_failures_total", &[]),
        Some(1.0),
        "the attempt that delivered is no failure"
    );
}

/// Scrapes until `done` holds of a scrape (the outbox works in the background).
async fn scrape_until(server: &TestApi, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    slipway_testkit::wait::until(what, WITHIN, || async {
        let scrape = server.scrape().await;
        if done(&scrape) {
            Ok(scrape)
        } else {
            Err(format!("{:?}", scrape.samples))
        }
    })
    .await
}

const DORA: &str = "query($e: String!, $days: Int) { application(name: \"shop\") {
    environment(name: $e) { dora(days: $days) {
        since until days deployments succeeded failed deploysPerDay changeFailureRate
        restored meanTimeToRestoreSeconds
    } }
} }";

async fn dora(server: &TestApi, environment: &str, days: Option<i64>) -> Value {
    server
        .ok_as(
            Role::Viewer,
            DORA,
            json!({"e": environment, "days": days.unwrap_or(30)}),
        )
        .await["application"]["environment"]["dora"]
        .clone()
}

/// A deployment of production claimed, run for `minutes` and finished with
/// `status`.
async fn run(server: &TestApi, clock: &Clock, id: &str, minutes: i64, status: &str) {
    server.claim_ok(RUNNER, id).await;
    clock.advance(Duration::minutes(minutes));
    server.finish(RUNNER, id, status).await;
}

async fn dora_figures_count_rollouts_and_restores_in_their_window(backend: Backend) {
    let clock = clock();
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    shop(&server).await;

    let empty = dora(&server, "production", None).await;
    assert_eq!(empty["deployments"], 0);
    assert_eq!(empty["deploysPerDay"], 0.0);
    assert!(empty["changeFailureRate"].is_null(), "{empty}");
    assert!(empty["meanTimeToRestoreSeconds"].is_null(), "{empty}");

    let first = server.deploy("shop", "production").await;
    run(&server, &clock, &first, 1, "SUCCEEDED").await;
    clock.advance(Duration::hours(1));
    let broken = server.deploy("shop", "production").await;
    run(&server, &clock, &broken, 3, "FAILED").await;
    // A task run alone, failing, and a cancelled deployment: neither counts.
    let task = server
        .ok_as(
            Role::Deployer,
            "mutation { createDeployment(input: {application: \"shop\", environment: \"production\", ref: \"main\", task: \"migrate\"}) { id } }",
            json!({}),
        )
        .await["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run(&server, &clock, &task, 1, "FAILED").await;
    let cancelled = server.deploy("shop", "production").await;
    cancel(&server, &cancelled).await;
    clock.advance(Duration::minutes(29));
    let fix = server.deploy("shop", "production").await;
    run(&server, &clock, &fix, 2, "SUCCEEDED").await;
    // Staging fails and stays broken.
    let staging = server.deploy("shop", "staging").await;
    run(&server, &clock, &staging, 1, "FAILED").await;

    let production = dora(&server, "production", None).await;
    assert_eq!(production["days"], 30);
    assert_eq!(production["deployments"], 3, "{production}");
    assert_eq!(production["succeeded"], 2);
    assert_eq!(production["failed"], 1);
    assert_eq!(production["deploysPerDay"], 0.1);
    assert_eq!(production["changeFailureRate"], 1.0 / 3.0);
    assert_eq!(production["restored"], 1);
    // From the failure's end: the task's minute, 29 and the fix's 2.
    assert_eq!(production["meanTimeToRestoreSeconds"], 32.0 * 60.0);
    let now = clock.now();
    let until: chrono::DateTime<chrono::Utc> =
        production["until"].as_str().unwrap().parse().unwrap();
    let since: chrono::DateTime<chrono::Utc> =
        production["since"].as_str().unwrap().parse().unwrap();
    assert_eq!(until, now);
    assert_eq!(since, now - Duration::days(30));

    let staging = dora(&server, "staging", None).await;
    assert_eq!(staging["deployments"], 1);
    assert_eq!(staging["changeFailureRate"], 1.0);
    assert_eq!(staging["restored"], 0);
    assert!(staging["meanTimeToRestoreSeconds"].is_null(), "{staging}");

    clock.advance(Duration::days(8));
    let week = dora(&server, "production", Some(7)).await;
    assert_eq!(week["deployments"], 0, "all of it is older: {week}");
    assert!(week["changeFailureRate"].is_null());
    assert_eq!(dora(&server, "production", None).await["deployments"], 3);

    let (code, message) = server
        .err(
            &server.token(Role::Viewer, "viewer"),
            DORA,
            json!({"e": "production", "days": 0}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
}

async fn metrics_are_off_unless_a_listener_is_given(backend: Backend) {
    let server = TestApi::start(backend).await;
    assert!(server.metrics_addr.is_none());
    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the API's own port serves no metrics"
    );
    let cli = <slipway_api::config::Cli as clap::Parser>::try_parse_from(["slipway-api"]).unwrap();
    assert_eq!(cli.serve.metrics_listen, None);
    let cli = <slipway_api::config::Cli as clap::Parser>::try_parse_from([
        "slipway-api",
        "--metrics-listen",
        "127.0.0.1:9700",
    ])
    .unwrap();
    assert_eq!(
        cli.serve.metrics_listen,
        Some("127.0.0.1:9700".parse().unwrap())
    );
}

slipway_testkit::on_both_backends!(
    metrics_follow_deployments_as_they_happen,
    graphql_operations_are_timed_by_type,
    the_outbox_is_counted_by_state_with_its_failed_attempts,
    dora_figures_count_rollouts_and_restores_in_their_window,
    metrics_are_off_unless_a_listener_is_given,
);

//! Required checks: gate CHECKS, what the provider reports, timeouts (by the
//! manual clock, never by sleeping), force, rollbacks, roles and bad input.

use chrono::Duration;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::events::Event;
use slipway_api::{checks, Clock, Settings};

use slipway_testkit::api::{Backend, TestApi};

const RUNNER: &str = "runner-1";

const REQUIRE: &str = "mutation($c: [String!], $a: Boolean, $t: Int) {
    setRequiredChecks(application: \"web\", environment: \"production\", checks: $c, all: $a, timeoutMinutes: $t) {
        requiredChecks { names all timeoutMinutes }
    }
}";

const REPORT: &str = "mutation($id: ID!, $sha: String!, $checks: [CheckInput!]!) {
    reportChecks(deployment: $id, sha: $sha, checks: $checks) {
        status message sha gate { kind waitingFor }
    }
}";

const GATED: &str = "query($id: ID!) { deployment(id: $id) {
    status message sha
    gate { kind waitingFor since until }
    requiredChecks { names all timeoutMinutes }
    checks { name state url }
    checksReportedAt checksForcedBy
} }";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)[..40].to_owned()
}

async fn start(backend: Backend) -> (TestApi, Clock) {
    let clock = Clock::manual("2026-12-02T10:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createApplication(input: {name: \"web\", repository: \"https://github.com/acme/web.git\"}) { name } }",
            json!({}),
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { createEnvironment(input: {application: \"web\", name: \"production\"}) { name } }",
            json!({}),
        )
        .await;
    (server, clock)
}

async fn require(server: &TestApi, names: &[&str], all: bool, timeout: Option<i64>) -> Value {
    server
        .ok_as(
            Role::Admin,
            REQUIRE,
            json!({"c": names, "a": all, "t": timeout}),
        )
        .await["setRequiredChecks"]["requiredChecks"]
        .clone()
}

async fn gated(server: &TestApi, id: &str) -> Value {
    server.ok_as(Role::Viewer, GATED, json!({"id": id})).await["deployment"].clone()
}

async fn claimable(server: &TestApi) -> Vec<String> {
    let data = server
        .ok_as(Role::Runner, "{ claimableDeployments { id } }", json!({}))
        .await;
    data["claimableDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(server: &TestApi, who: &str, sha: Option<&str>, force: bool) -> String {
    server
        .ok(
            &server.token(Role::Deployer, who),
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }",
            json!({"input": {"application": "web", "environment": "production", "ref": "main",
                             "sha": sha, "force": force}}),
        )
        .await["createDeployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn released(server: &TestApi, sha: &str) -> String {
    let id = create(server, "alice", Some(sha), false).await;
    server.claim_ok(RUNNER, &id).await;
    server.finish(RUNNER, &id, "SUCCEEDED").await;
    id
}

async fn report(server: &TestApi, id: &str, sha: &str, checks: Value) -> Value {
    server
        .ok(
            &server.token(Role::Provider, "provider"),
            REPORT,
            json!({"id": id, "sha": sha, "checks": checks}),
        )
        .await["reportChecks"]
        .clone()
}

async fn report_err(server: &TestApi, id: &str, sha: &str, checks: Value) -> (String, String) {
    server
        .err(
            &server.token(Role::Provider, "provider"),
            REPORT,
            json!({"id": id, "sha": sha, "checks": checks}),
        )
        .await
}

async fn checks_hold_no_slot_and_a_passing_report_opens_them(backend: Backend) {
    let (server, clock) = start(backend).await;
    released(&server, &sha(1)).await;
    released(&server, &sha(2)).await;
    assert_eq!(
        require(&server, &["ci/build", "test"], false, Some(30)).await,
        json!({"names": ["ci/build", "test"], "all": false, "timeoutMinutes": 30})
    );

    let waiting = create(&server, "alice", Some(&sha(3)), false).await;
    let d = gated(&server, &waiting).await;
    assert_eq!(d["status"], "QUEUED");
    assert_eq!(d["gate"]["kind"], "CHECKS");
    assert_eq!(
        d["gate"]["waitingFor"],
        "ci/build and test to pass on 3333333"
    );
    assert_eq!(
        d["message"],
        "waiting for ci/build and test to pass on 3333333"
    );
    assert_eq!(d["gate"]["since"], "2026-12-02T10:00:00+00:00");
    assert_eq!(d["gate"]["until"], "2026-12-02T10:30:00+00:00");
    assert_eq!(
        d["requiredChecks"],
        json!({"names": ["ci/build", "test"], "all": false, "timeoutMinutes": 30})
    );
    assert_eq!(d["checks"], json!([]));
    assert!(claimable(&server).await.is_empty());
    let refused = server.claim(RUNNER, &waiting).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "CONFLICT");

    // The provider finds it where it looks.
    let at_gate = server
        .ok_as(
            Role::Provider,
            "{ deploymentsAtGate(kind: CHECKS) { id sha ref application { repository } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        at_gate["deploymentsAtGate"],
        json!([{"id": waiting, "sha": sha(3), "ref": "main",
                "application": {"repository": "https://github.com/acme/web.git"}}])
    );

    // A rollback, queued after it, goes first: it waits for no check.
    let rollback = server
        .ok(
            &server.token(Role::Deployer, "bob"),
            "mutation { rollbackDeployment(application: \"web\", environment: \"production\", reason: \"errors\") { id gate { kind } requiredChecks { names } } }",
            json!({}),
        )
        .await["rollbackDeployment"]
        .clone();
    assert!(rollback["gate"].is_null(), "{rollback}");
    assert!(rollback["requiredChecks"].is_null(), "{rollback}");
    let rollback = rollback["id"].as_str().unwrap().to_owned();
    assert_eq!(claimable(&server).await, [rollback.as_str()]);
    server.claim_ok(RUNNER, &rollback).await;
    server.finish(RUNNER, &rollback, "SUCCEEDED").await;

    // Part of it passed; a check not required failing does not count.
    let seen = report(
        &server,
        &waiting,
        &sha(3),
        json!([
            {"name": "ci/build", "state": "SUCCESS", "url": "https://ci.example.com/b/1"},
            {"name": "test", "state": "PENDING"},
            {"name": "lint", "state": "FAILURE"},
        ]),
    )
    .await;
    assert_eq!(seen["status"], "QUEUED");
    assert_eq!(
        seen["gate"],
        json!({"kind": "CHECKS", "waitingFor": "test to pass on 3333333"})
    );
    let d = gated(&server, &waiting).await;
    assert_eq!(
        d["checks"][0],
        json!({"name": "ci/build", "state": "SUCCESS", "url": "https://ci.example.com/b/1"})
    );
    assert_eq!(
        d["checks"][1],
        json!({"name": "test", "state": "PENDING", "url": null})
    );
    assert_eq!(d["checksReportedAt"], "2026-12-02T10:00:00+00:00");

    // The same report again, a minute later, is not news.
    clock.advance(Duration::minutes(1));
    let mut events = server.state.events.subscribe();
    report(
        &server,
        &waiting,
        &sha(3),
        json!([
            {"name": "ci/build", "state": "SUCCESS", "url": "https://ci.example.com/b/1"},
            {"name": "test", "state": "PENDING"},
            {"name": "lint", "state": "FAILURE"},
        ]),
    )
    .await;
    assert!(
        events.try_recv().is_err(),
        "no event for an unchanged report"
    );
    assert_eq!(
        gated(&server, &waiting).await["checksReportedAt"],
        "2026-12-02T10:00:00+00:00"
    );
    assert_eq!(
        d["gate"]["until"], "2026-12-02T10:30:00+00:00",
        "a report does not move the timeout"
    );
    assert!(claimable(&server).await.is_empty());

    let mut events = server.state.events.subscribe();
    let opened = report(
        &server,
        &waiting,
        &sha(3),
        json!([
            {"name": "ci/build", "state": "SUCCESS"},
            {"name": "test", "state": "SUCCESS"},
        ]),
    )
    .await;
    assert_eq!(opened["status"], "QUEUED");
    assert!(opened["gate"].is_null(), "{opened}");
    assert!(opened["message"].is_null(), "{opened}");
    assert_eq!(claimable(&server).await, [waiting.as_str()]);
    let wanted: i64 = waiting.parse().unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::Queued(d)) if d.deployment_id == wanted => return,
                Ok(_) => {}
                Err(err) => panic!("events ended: {err}"),
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "runners hear of the opened gate");

    // A report after the gate opened changes nothing.
    let (code, message) = report_err(&server, &waiting, &sha(3), json!([])).await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(message.contains("is not waiting for checks"), "{message}");
}

async fn a_failed_check_fails_the_deployment_naming_it(backend: Backend) {
    let (server, _clock) = start(backend).await;
    require(&server, &["ci/build", "test"], false, None).await;
    let id = create(&server, "alice", Some(&sha(4)), false).await;
    assert_eq!(
        gated(&server, &id).await["gate"]["until"],
        "2026-12-02T11:00:00+00:00",
        "60 minutes unless set"
    );
    let failed = report(
        &server,
        &id,
        &sha(4),
        json!([
            {"name": "ci/build", "state": "SUCCESS"},
            {"name": "test", "state": "FAILURE", "url": "https://ci.example.com/t/9"},
        ]),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["message"],
        "required check test (https://ci.example.com/t/9) failed on 4444444"
    );
    assert!(failed["gate"].is_null());
    let d = gated(&server, &id).await;
    assert_eq!(d["checks"][1]["state"], "FAILURE");
    let (code, _) = report_err(&server, &id, &sha(4), json!([])).await;
    assert_eq!(code, "CONFLICT");
}

async fn checks_time_out_by_the_clock_naming_what_was_pending(backend: Backend) {
    let (server, clock) = start(backend).await;
    require(&server, &["ci/build", "test"], false, Some(30)).await;
    let id = create(&server, "alice", Some(&sha(5)), false).await;
    let silent = {
        clock.advance(Duration::minutes(1));
        let other = server
            .ok(
                &server.token(Role::Deployer, "bob"),
                "mutation { createDeployment(input: {application: \"web\", environment: \"production\", ref: \"main\"}) { id } }",
                json!({}),
            )
            .await;
        other["createDeployment"]["id"].as_str().unwrap().to_owned()
    };
    report(
        &server,
        &id,
        &sha(5),
        json!([{"name": "ci/build", "state": "SUCCESS"}, {"name": "test", "state": "PENDING"}]),
    )
    .await;
    clock.advance(Duration::minutes(28));
    assert!(checks::fail_expired(&server.state)
        .await
        .unwrap()
        .is_empty());
    clock.advance(Duration::minutes(1));
    let ended = checks::fail_expired(&server.state).await.unwrap();
    assert_eq!(ended.len(), 1);
    let d = gated(&server, &id).await;
    assert_eq!(d["status"], "FAILED");
    assert_eq!(
        d["message"],
        "timed out after 30 minutes waiting for checks on 5555555: test pending"
    );
    assert!(d["gate"].is_null());

    // The one created a minute later, never reported on, a minute later.
    clock.advance(Duration::minutes(1));
    checks::fail_expired(&server.state).await.unwrap();
    let d = gated(&server, &silent).await;
    assert_eq!(d["status"], "FAILED");
    assert_eq!(
        d["message"],
        "timed out after 30 minutes waiting for checks on the commit of `main` (the provider resolves it): ci/build and test pending"
    );
}

async fn all_requires_every_reported_check_and_force_skips_the_unnamed(backend: Backend) {
    let (server, _clock) = start(backend).await;
    require(&server, &["test"], true, None).await;
    let strict = create(&server, "alice", Some(&sha(6)), false).await;
    let d = gated(&server, &strict).await;
    assert_eq!(
        d["gate"]["waitingFor"],
        "test and every other check to pass on 6666666; none reported yet"
    );
    // No statuses and no check runs at all is pending, not success.
    let seen = report(&server, &strict, &sha(6), json!([])).await;
    assert_eq!(seen["status"], "QUEUED");
    assert_eq!(seen["gate"]["kind"], "CHECKS");
    let seen = report(
        &server,
        &strict,
        &sha(6),
        json!([{"name": "test", "state": "SUCCESS"}, {"name": "lint", "state": "PENDING"}]),
    )
    .await;
    assert_eq!(seen["gate"]["waitingFor"], "lint to pass on 6666666");
    let failed = report(
        &server,
        &strict,
        &sha(6),
        json!([{"name": "test", "state": "SUCCESS"}, {"name": "lint", "state": "FAILURE"}]),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["message"], "required check lint failed on 6666666");

    // Forced: only `test` counts, and who forced it is recorded.
    let forced = create(&server, "carol", Some(&sha(7)), true).await;
    let d = gated(&server, &forced).await;
    assert_eq!(d["checksForcedBy"], "carol");
    assert_eq!(
        d["requiredChecks"],
        json!({"names": ["test"], "all": false, "timeoutMinutes": 60})
    );
    assert_eq!(d["gate"]["waitingFor"], "test to pass on 7777777");
    let opened = report(
        &server,
        &forced,
        &sha(7),
        json!([{"name": "test", "state": "SUCCESS"}, {"name": "lint", "state": "FAILURE"}]),
    )
    .await;
    assert!(opened["gate"].is_null(), "{opened}");
    assert_eq!(opened["status"], "QUEUED");

    // `all` with no names: force waits for nothing.
    require(&server, &[], true, None).await;
    let past = create(&server, "carol", Some(&sha(8)), true).await;
    let d = gated(&server, &past).await;
    assert!(d["gate"].is_null(), "{d}");
    assert!(d["requiredChecks"].is_null(), "{d}");
    assert_eq!(d["checksForcedBy"], "carol");
    // Force means nothing where every check is named: none is skipped.
    require(&server, &["test"], false, None).await;
    let named = create(&server, "carol", Some(&sha(9)), true).await;
    let d = gated(&server, &named).await;
    assert_eq!(d["gate"]["kind"], "CHECKS");
    assert!(d["checksForcedBy"].is_null(), "{d}");

    // Cleared: nothing is required any more.
    let cleared = require(&server, &[], false, None).await;
    assert!(cleared.is_null(), "{cleared}");
    let free = create(&server, "alice", Some(&sha(10)), false).await;
    assert!(gated(&server, &free).await["gate"].is_null());
}

async fn a_ref_only_deployment_takes_the_sha_its_checks_passed_on(backend: Backend) {
    let (server, _clock) = start(backend).await;
    require(&server, &["build"], false, None).await;
    let id = create(&server, "alice", None, false).await;
    let d = gated(&server, &id).await;
    assert_eq!(
        d["gate"]["waitingFor"],
        "build to pass on the commit of `main` (the provider resolves it)"
    );
    let seen = report(
        &server,
        &id,
        &sha(11),
        json!([{"name": "build", "state": "PENDING"}]),
    )
    .await;
    assert_eq!(seen["sha"], sha(11));
    assert_eq!(seen["gate"]["waitingFor"], "build to pass on bbbbbbb");
    let (code, message) = report_err(
        &server,
        &id,
        &sha(12),
        json!([{"name": "build", "state": "SUCCESS"}]),
    )
    .await;
    assert_eq!(code, "CONFLICT", "{message}");
    assert!(
        message.contains(&format!("deploys {}, not {}", sha(11), sha(12))),
        "{message}"
    );
    let opened = report(
        &server,
        &id,
        &sha(11),
        json!([{"name": "build", "state": "SUCCESS"}]),
    )
    .await;
    assert!(opened["gate"].is_null());
    assert_eq!(opened["sha"], sha(11));
}

async fn checks_come_after_a_freeze_and_before_an_approval(backend: Backend) {
    let (server, clock) = start(backend).await;
    require(&server, &["build"], false, Some(15)).await;
    server
        .ok_as(
            Role::Admin,
            "mutation { setApprovalPolicy(application: \"web\", environment: \"production\", required: true) { name } }",
            json!({}),
        )
        .await;
    server
        .ok_as(
            Role::Admin,
            "mutation { addFreezeWindow(application: \"web\", environment: \"production\", cron: \"0 10 * * *\", durationMinutes: 60, timeZone: \"UTC\", reason: \"standup\", mode: WAIT) { id } }",
            json!({}),
        )
        .await;
    let id = create(&server, "alice", Some(&sha(13)), false).await;
    assert_eq!(gated(&server, &id).await["gate"]["kind"], "FREEZE");
    let (code, _) = report_err(&server, &id, &sha(13), json!([])).await;
    assert_eq!(
        code, "CONFLICT",
        "a report for a deployment in a freeze is refused"
    );

    // An admin's override at creation goes past the freeze, not the checks.
    let past = server
        .ok(
            &server.token(Role::Admin, "root"),
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) {
                id gate { kind } freezeOverride { by reason }
            } }",
            json!({"input": {"application": "web", "environment": "production", "ref": "main",
                             "sha": sha(14), "overrideFreeze": "hotfix"}}),
        )
        .await["createDeployment"]
        .clone();
    assert_eq!(past["gate"]["kind"], "CHECKS", "{past}");
    assert_eq!(
        past["freezeOverride"],
        json!({"by": "root", "reason": "hotfix"})
    );

    clock.advance(Duration::minutes(60));
    slipway_api::gates::open_expired(&server.state)
        .await
        .unwrap();
    let d = gated(&server, &id).await;
    assert_eq!(d["gate"]["kind"], "CHECKS");
    assert_eq!(d["gate"]["since"], "2026-12-02T11:00:00+00:00");
    assert_eq!(
        d["gate"]["until"], "2026-12-02T11:15:00+00:00",
        "the timeout counts from the gate"
    );
    let next = report(
        &server,
        &id,
        &sha(13),
        json!([{"name": "build", "state": "SUCCESS"}]),
    )
    .await;
    assert_eq!(next["gate"]["kind"], "APPROVAL");
}

async fn bad_reports_and_settings_are_refused(backend: Backend) {
    let (server, _clock) = start(backend).await;
    let admin = server.token(Role::Admin, "admin");
    for (vars, wanted) in [
        (
            json!({"c": ["ok"], "t": 0}),
            "`timeoutMinutes` must be 1 to",
        ),
        (json!({"c": [""]}), "a check's name must be 1 to 255"),
        (json!({"c": ["a\nb"]}), "without control characters"),
    ] {
        let (code, message) = server.err(&admin, REQUIRE, vars).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains(wanted), "{message}");
    }
    let (code, _) = server
        .err(
            &admin,
            "mutation { setRequiredChecks(application: \"web\", environment: \"nowhere\", checks: [\"x\"]) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");

    require(&server, &["build"], false, None).await;
    let id = create(&server, "alice", Some(&sha(14)), false).await;
    for (sha, checks, wanted) in [
        (
            "main".to_owned(),
            json!([]),
            "`sha` must be a full commit id",
        ),
        (
            sha(14),
            json!([{"name": "b", "state": "SUCCESS"}, {"name": "b", "state": "FAILURE"}]),
            "reported twice",
        ),
        (
            sha(14),
            json!([{"name": "b", "state": "SUCCESS", "url": "javascript:alert(1)"}]),
            "http(s) URL",
        ),
        (
            sha(14),
            json!([{"name": "", "state": "SUCCESS"}]),
            "a check's name",
        ),
    ] {
        let (code, message) = report_err(&server, &id, &sha, checks).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains(wanted), "{message}");
    }
    let d = gated(&server, &id).await;
    assert_eq!(d["checks"], json!([]), "a refused report changes nothing");
    let (code, _) = report_err(&server, "999", &sha(14), json!([])).await;
    assert_eq!(code, "NOT_FOUND");
    // Only the provider reports checks.
    let (code, _) = server
        .err(
            &server.token(Role::Deployer, "alice"),
            REPORT,
            json!({"id": id, "sha": sha(14), "checks": []}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
}

slipway_testkit::on_both_backends!(
    checks_hold_no_slot_and_a_passing_report_opens_them,
    a_failed_check_fails_the_deployment_naming_it,
    checks_time_out_by_the_clock_naming_what_was_pending,
    all_requires_every_reported_check_and_force_skips_the_unnamed,
    a_ref_only_deployment_takes_the_sha_its_checks_passed_on,
    checks_come_after_a_freeze_and_before_an_approval,
    bad_reports_and_settings_are_refused,
);

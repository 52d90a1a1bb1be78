//! Claims, the one-in-progress rule, the queue order and leases.

use sea_orm::sea_query::Expr;
use sea_orm::{EntityTrait, Set};
use serde_json::json;
use slipway_api::auth::Role;
use slipway_api::db::entities::{api_replica, deployment};
use slipway_api::deployments::{self, NewDeployment};
use slipway_api::{leases, replicas, Clock, Settings};

use slipway_testkit::api::{error_of, Backend, TestApi};

async fn two_runners_claiming_at_once_have_exactly_one_winner(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let state = &server.state;
    for round in 0..1000 {
        let new = NewDeployment {
            application: "web".into(),
            environment: "prod".into(),
            ref_name: "main".into(),
            ..Default::default()
        };
        let id = deployments::create(state, "deployer", new)
            .await
            .unwrap()
            .deployment
            .id;
        let (a, b) = tokio::join!(
            tokio::spawn({
                let state = state.clone();
                async move { leases::claim(&state, "runner-a", id).await }
            }),
            tokio::spawn({
                let state = state.clone();
                async move { leases::claim(&state, "runner-b", id).await }
            }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let winner = match (&a, &b) {
            (Ok(_), Err(_)) => "runner-a",
            (Err(_), Ok(_)) => "runner-b",
            _ => panic!("round {round}: need exactly one winner, got {a:?} and {b:?}"),
        };
        for loser in [a, b].into_iter().filter_map(Result::err) {
            assert_eq!(loser.code(), "CONFLICT", "round {round}: {loser:?}");
        }
        leases::finish(
            state,
            winner,
            id,
            deployments::DeploymentStatus::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    }
}

async fn the_database_refuses_a_second_deployment_in_progress(backend: Backend) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let first = server.deploy("web", "prod").await;
    let second = server.deploy("web", "prod").await;
    assert!(server.claim("r", &first).await.get("errors").is_none());
    // Bypass the API's own checks: the index still says no.
    let forced = deployment::Entity::update_many()
        .col_expr(deployment::Column::Status, Expr::value("IN_PROGRESS"))
        .filter(deployment::Column::Id.eq(second.parse::<i64>().unwrap()))
        .exec(&server.state.db)
        .await;
    let err = forced.expect_err("a second IN_PROGRESS row is refused");
    assert!(
        matches!(
            err.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{err:?}"
    );
}

async fn queued_deployments_are_claimable_oldest_first_when_none_runs(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let one = server.deploy("web", "prod").await;
    let two = server.deploy("web", "prod").await;
    let three = server.deploy("web", "prod").await;
    let other = server.deploy("web", "staging").await;
    let runner = server.token(Role::Runner, "r");
    assert_eq!(
        claimable(&server, &runner).await,
        vec![one.clone(), other.clone()]
    );

    let (code, message) = error_of(&server.claim("r", &two).await);
    assert_eq!(code, "CONFLICT");
    assert!(message.contains("web#1"), "names who goes first: {message}");

    assert!(server.claim("r", &one).await.get("errors").is_none());
    assert_eq!(
        claimable(&server, &runner).await,
        vec![other.clone()],
        "prod is busy"
    );
    let (code, message) = error_of(&server.claim("r", &two).await);
    assert_eq!(code, "CONFLICT");
    assert!(message.contains("IN_PROGRESS"), "{message}");

    server.finish("r", &one, "FAILED").await;
    assert_eq!(claimable(&server, &runner).await, vec![two.clone(), other]);
    assert!(server.claim("r", &two).await.get("errors").is_none());
    server.finish("r", &two, "SUCCEEDED").await;
    assert!(server.claim("r", &three).await.get("errors").is_none());
}

async fn claimable(server: &TestApi, runner: &str) -> Vec<String> {
    let data = server
        .ok(runner, "{ claimableDeployments { id } }", json!({}))
        .await;
    data["claimableDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_runner_hears_of_claimable_deployments(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let mut ws = server.ws(&server.token(Role::Runner, "r")).await;
    ws.subscribe(
        "subscription { deploymentQueued { id name status environment { name } } }",
        json!({}),
    )
    .await;
    let mut n = 0;
    let first = ws
        .next_while(|| {
            n += 1;
            server.deploy("web", format!("e{n}"))
        })
        .await
        .unwrap();
    assert_eq!(first["deploymentQueued"]["status"], "QUEUED");
    // A deployment that must wait is announced when its turn comes.
    let busy = first["deploymentQueued"]["id"].as_str().unwrap().to_owned();
    let env = first["deploymentQueued"]["environment"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.claim("r", &busy).await.get("errors").is_none());
    let waiting = server.deploy("web", &env).await;
    server.finish("r", &busy, "SUCCEEDED").await;
    loop {
        let item = ws.next().await.unwrap();
        if item["deploymentQueued"]["id"] == waiting.as_str() {
            break;
        }
    }
}

async fn a_lost_runners_lease_expires_with_a_reason(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let waiting = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    let runner = server.token(Role::Runner, "r1");
    let heartbeat = "mutation($id: ID!) { heartbeatDeployment(id: $id) { leaseExpiresAt } }";

    // Heartbeats keep the claim: 3 × 20 s is past one lease of 30 s.
    for _ in 0..3 {
        clock.advance(chrono::Duration::seconds(20));
        server.ok(&runner, heartbeat, json!({"id": id})).await;
        assert!(leases::expire(&server.state).await.unwrap().is_empty());
    }
    assert_eq!(server.status(&id).await["status"], "IN_PROGRESS");

    // Then the runner goes silent.
    clock.advance(chrono::Duration::seconds(29));
    assert!(leases::expire(&server.state).await.unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(2));
    let expired = leases::expire(&server.state).await.unwrap();
    assert_eq!(expired.len(), 1);
    let status = server.status(&id).await;
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("runner r1 was lost") && message.contains("2026-01-01T00:01:00"),
        "says who was lost and when it was last heard from: {message}"
    );
    // The lost runner cannot carry on, and the next deployment may start.
    let (code, _) = server.err(&runner, heartbeat, json!({"id": id})).await;
    assert_eq!(code, "CONFLICT");
    assert!(server.claim("r2", &waiting).await.get("errors").is_none());
}

async fn the_reaper_expires_leases_on_its_own(backend: Backend) {
    let settings = Settings {
        lease: chrono::Duration::milliseconds(300),
        ..Settings::default()
    };
    let server = TestApi::start_with(backend, Clock::system(), settings).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    let state = server.state.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reaper = tokio::spawn(leases::reap(
        state,
        "test-reaper".into(),
        std::time::Duration::from_millis(100),
        async {
            let _ = stopped.await;
        },
    ));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.status(&id).await["status"] != "FAILED" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease not expired within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    reaper.await.unwrap();
}

async fn only_the_holder_reports_on_a_deployment(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let intruder = server.token(Role::Runner, "r2");
    let (code, message) = server
        .err(
            &intruder,
            "mutation($id: ID!) { appendDeploymentLogs(id: $id, lines: [{text: \"x\"}]) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        (code.as_str(), message.contains("not been claimed")),
        ("CONFLICT", true),
        "{message}"
    );
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    for mutation in [
        "mutation($id: ID!) { heartbeatDeployment(id: $id) { id } }",
        "mutation($id: ID!) { appendDeploymentLogs(id: $id, lines: [{text: \"x\"}]) { id } }",
        "mutation($id: ID!) { updateDeploymentProgress(id: $id, phase: UPDATING) { id } }",
        "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED) { id } }",
    ] {
        let (code, message) = server.err(&intruder, mutation, json!({"id": id})).await;
        assert_eq!(code, "CONFLICT", "{mutation}");
        assert!(message.contains("held by runner r1"), "{message}");
    }
    let status = server.status(&id).await;
    assert_eq!(
        (status["status"].as_str(), status["phase"].is_null()),
        (Some("IN_PROGRESS"), true)
    );
    let holder = server.token(Role::Runner, "r1");
    let (code, _) = server
        .err(
            &holder,
            "mutation($id: ID!) { finishDeployment(id: $id, status: QUEUED) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT", "QUEUED is not a final status");
}

slipway_testkit::on_both_backends!(
    two_runners_claiming_at_once_have_exactly_one_winner,
    the_database_refuses_a_second_deployment_in_progress,
    queued_deployments_are_claimable_oldest_first_when_none_runs,
    a_runner_hears_of_claimable_deployments,
    a_lost_runners_lease_expires_with_a_reason,
    the_reaper_expires_leases_on_its_own,
    only_the_holder_reports_on_a_deployment,
    an_api_restart_does_not_count_against_leases,
    a_runner_lost_before_the_api_went_down_is_not_kept_alive_by_its_restart,
    a_replica_starting_beside_another_that_serves_renews_no_lease,
);

async fn an_api_restart_does_not_count_against_leases(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    // The API is down for a minute, longer than the lease, then starts again.
    clock.advance(chrono::Duration::seconds(60));
    let server = server.restart().await;
    assert!(leases::expire(&server.state).await.unwrap().is_empty());
    let runner = server.token(Role::Runner, "r1");
    server
        .ok(
            &runner,
            "mutation($id: ID!) { heartbeatDeployment(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(server.status(&id).await["status"], "IN_PROGRESS");
}

/// Every replica row says it was alive at `at`, as their reapers would.
async fn replicas_seen_at(server: &TestApi, at: chrono::DateTime<chrono::Utc>) {
    api_replica::Entity::update_many()
        .col_expr(api_replica::Column::LastSeenAt, Expr::value(at))
        .exec(&server.state.db)
        .await
        .unwrap();
}

async fn a_runner_lost_before_the_api_went_down_is_not_kept_alive_by_its_restart(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    // The runner goes silent; the API serves on for a minute, then stops
    // and is down for 20 s.
    clock.advance(chrono::Duration::seconds(60));
    replicas_seen_at(&server, clock.now()).await;
    clock.advance(chrono::Duration::seconds(20));
    let server = server.restart().await;
    leases::expire(&server.state).await.unwrap();
    let d = server.status(&id).await;
    assert_eq!(d["status"], "FAILED", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("runner r1 was lost"),
        "{d}"
    );
}

async fn a_replica_starting_beside_another_that_serves_renews_no_lease(backend: Backend) {
    let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    assert!(server.claim("r1", &id).await.get("errors").is_none());
    let lease = |d: &deployment::Model| d.lease_expires_at.unwrap();
    let before = deployment::Entity::find_by_id(id.parse::<i64>().unwrap())
        .one(&server.state.db)
        .await
        .unwrap()
        .unwrap();
    // This test speaks for every replica: the server's own row goes, so
    // that its reaper's ticks write nothing.
    api_replica::Entity::delete_many()
        .exec(&server.state.db)
        .await
        .unwrap();
    // Another replica serves, and was seen just now; this one starts.
    clock.advance(chrono::Duration::seconds(20));
    api_replica::Entity::insert(api_replica::ActiveModel {
        instance: Set("api-2".into()),
        started_at: Set(clock.now()),
        last_seen_at: Set(clock.now()),
    })
    .exec(&server.state.db)
    .await
    .unwrap();
    let renewed = replicas::start(&server.state, "api-3").await.unwrap();
    assert_eq!(renewed, replicas::Renewed::NoneOtherServing("api-2".into()));
    let after = deployment::Entity::find_by_id(before.id)
        .one(&server.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lease(&after),
        lease(&before),
        "the lease is as the runner left it"
    );
    // Once the other replica is quiet too, a start renews what ran then.
    clock.advance(chrono::Duration::seconds(5));
    replicas_seen_at(&server, clock.now()).await;
    clock.advance(chrono::Duration::seconds(60));
    let renewed = replicas::start(&server.state, "api-4").await.unwrap();
    assert!(
        matches!(renewed, replicas::Renewed::SinceLastSeen(1, _)),
        "{renewed:?}"
    );
}

//! API replicas on one PostgreSQL database are one API: the event log tells
//! every replica's subscribers every change, whichever replica made it; a
//! client replays the log by id on any replica and misses nothing; a
//! subscriber that falls behind catches up from the log.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::deployments::{self, DeploymentStatus, NewDeployment};
use slipway_api::events::{DeploymentChanged, Event};
use slipway_api::{bus, leases, view, AppState};

use slipway_testkit::api::{Backend, TestApi, TestDb, Ws};

const EVENTS: &str = "subscription($after: ID) { deploymentEvents(application: \"web\", afterEvent: $after) { id status message eventId } }";

/// The next deployment event of `ws`: (deployment, status, message, event id).
async fn next_event(ws: &mut Ws) -> (String, String, String, i64) {
    let event = ws.next().await.expect("an event")["deploymentEvents"].take();
    let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
    let id = text("eventId").parse().expect("an event id");
    (text("id"), text("status"), text("message"), id)
}

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_owned(), message.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_tells_its_subscribers_what_any_replica_changed() {
    let a = TestApi::start(Backend::Postgres).await;
    a.create_app("web").await;
    let b = a.replica().await;
    let viewer = a.token(Role::Viewer, "v");
    // From the start of the log: no change can come before the
    // subscription listens.
    let mut on_a = a.ws(&viewer).await;
    on_a.subscribe(EVENTS, json!({"after": "0"})).await;
    let mut on_b = b.ws(&viewer).await;
    on_b.subscribe(EVENTS, json!({"after": "0"})).await;
    let mut runner = b.ws(&b.token(Role::Runner, "r")).await;
    runner
        .subscribe("subscription { deploymentQueued { id } }", json!({}))
        .await;
    let mut n = 0;
    runner
        .next_while(|| {
            n += 1;
            a.deploy("web", format!("warm-{n}"))
        })
        .await
        .unwrap();

    // Made on A, offered to a runner of B, run through both.
    let id = a.deploy("web", "prod").await;
    loop {
        let offered = runner.next().await.unwrap()["deploymentQueued"].take();
        if offered["id"] == id {
            break;
        }
    }
    b.claim_ok("r", &id).await;
    a.progress("r", &id, "rolling").await;
    b.finish("r", &id, "SUCCEEDED").await;

    let want = vec![
        pair("QUEUED", ""),
        pair("IN_PROGRESS", "claimed by runner r"),
        pair("IN_PROGRESS", "rolling"),
        pair("SUCCEEDED", "done"),
    ];
    for ws in [&mut on_a, &mut on_b] {
        // The warm-up deployments come first; then this one, each change once.
        let mut seen = Vec::new();
        while seen.len() < want.len() {
            let (deployment, status, message, _) = next_event(ws).await;
            // The reaper's notes on a queued deployment ("waiting: …") are
            // not what this test follows.
            if deployment == id && !message.starts_with("waiting:") {
                seen.push((status, message));
            }
        }
        assert_eq!(seen, want);
    }
    // And nothing twice: the next event on either is a new one.
    let next = a.deploy("web", "next").await;
    assert_eq!(next_event(&mut on_a).await.0, next);
    assert_eq!(next_event(&mut on_b).await.0, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_lost_its_replica_replays_on_another_and_misses_nothing() {
    let a = TestApi::start(Backend::Postgres).await;
    a.create_app("web").await;
    let b = a.replica().await;
    let viewer = a.token(Role::Viewer, "v");
    let id = b.deploy("web", "prod").await;
    let mut ws = a.ws(&viewer).await;
    ws.subscribe(EVENTS, json!({"after": "0"})).await;
    let (seen, status, _, last) = next_event(&mut ws).await;
    assert_eq!((seen.as_str(), status.as_str()), (id.as_str(), "QUEUED"));

    // A goes away; its client goes on with B after the last event it saw,
    // while B changed the deployment meanwhile.
    drop(ws);
    drop(a);
    b.claim_ok("r", &id).await;
    for step in ["pulling", "updating", "converging"] {
        b.progress("r", &id, step).await;
    }
    b.finish("r", &id, "SUCCEEDED").await;
    let mut ws = b.ws(&viewer).await;
    ws.subscribe(EVENTS, json!({"after": last.to_string()}))
        .await;
    // The reaper may have noted on the queued deployment that no runner is
    // connected: such notes come first.
    let mut replayed = Vec::new();
    let mut last = last;
    while replayed
        .last()
        .is_none_or(|(status, _)| status != "SUCCEEDED")
    {
        let (deployment, status, message, event) = next_event(&mut ws).await;
        assert_eq!(deployment, id, "an event of another deployment");
        assert!(event > last, "event {event} came after {last}");
        last = event;
        if status != "QUEUED" || !replayed.is_empty() {
            replayed.push((status, message));
        }
    }
    assert_eq!(
        replayed,
        vec![
            pair("IN_PROGRESS", "claimed by runner r"),
            pair("IN_PROGRESS", "pulling"),
            pair("IN_PROGRESS", "updating"),
            pair("IN_PROGRESS", "converging"),
            pair("SUCCEEDED", "done"),
        ]
    );
    // Then live ones.
    let next = b.deploy("web", "prod").await;
    assert_eq!(next_event(&mut ws).await.0, next);
}

/// Events a subscriber cannot be sent (it does not read): enough to
/// overflow the stream behind it many times.
const FLOOD: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_catches_up_from_the_log() {
    let server = TestApi::start(Backend::Postgres).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    server.claim_ok("r", &id).await;
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(
        "subscription($id: ID!) { deploymentEvents(id: $id, afterEvent: \"0\") { message eventId } }",
        json!({"id": id}),
    )
    .await;
    assert!(ws.next().await.is_some(), "it listens");
    let flooded = view::get(&server.state.db, id.parse().unwrap())
        .await
        .unwrap();
    let flooded = Arc::new(flooded);
    // Real changes, among more events of the same deployment than the
    // stream holds while the subscriber reads nothing.
    for round in 0..4 {
        for step in 0..5 {
            server
                .progress("r", &id, &format!("step {round}.{step}"))
                .await;
        }
        for _ in 0..FLOOD / 4 {
            server
                .state
                .events
                .deliver(Event::Deployment(DeploymentChanged::of(flooded.clone())));
        }
    }
    let last = "step 3.4";
    let mut steps = Vec::new();
    let mut flood = 0;
    loop {
        let event: Value =
            ws.next().await.expect("the subscription goes on")["deploymentEvents"].take();
        if event["eventId"].is_null() {
            flood += 1;
            continue;
        }
        let message = event["message"].as_str().unwrap_or_default().to_owned();
        if message.starts_with("step") {
            steps.push(message.clone());
        }
        if message == last {
            break;
        }
    }
    assert!(flood < FLOOD, "it kept up with all {FLOOD} events");
    let want: Vec<String> = (0..4)
        .flat_map(|round| (0..5).map(move |step| format!("step {round}.{step}")))
        .collect();
    assert_eq!(steps, want, "every change once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_log_is_refused_on_sqlite_saying_why() {
    let server = TestApi::start(Backend::Sqlite).await;
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(EVENTS, json!({"after": "0"})).await;
    let error = ws.error().await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("needs the API on PostgreSQL"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_a_day_are_pruned() {
    let server = TestApi::start(Backend::Postgres).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    let db = &server.state.db;
    db.execute_unprepared(&format!(
        "UPDATE events SET at = now() - interval '25 hours' WHERE deployment_id = {id}"
    ))
    .await
    .unwrap();
    let fresh = server.deploy("web", "prod").await;
    assert_eq!(bus::prune(db).await.unwrap(), 1);
    let left = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT deployment_id FROM events WHERE kind = 'deployment'",
        ))
        .await
        .unwrap();
    let left: Vec<String> = left
        .iter()
        .map(|row| row.try_get::<i64>("", "deployment_id").unwrap().to_string())
        .collect();
    assert_eq!(left, vec![fresh.clone()]);

    // A client that asks for events the log no longer has is told so, and
    // from where it has them.
    let through = bus::pruned_through(db).await.unwrap();
    assert!(through > 0);
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(EVENTS, json!({"after": "0"})).await;
    let error = ws.error().await;
    let text = error["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("no longer has the events after 0")
            && text.contains(&format!("`afterEvent` {through} or later")),
        "{error}"
    );
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(EVENTS, json!({"after": through.to_string()}))
        .await;
    assert_eq!(next_event(&mut ws).await.0, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_through_two_replicas_at_once_have_exactly_one_winner() {
    let a = TestApi::start(Backend::Postgres).await;
    a.create_app("web").await;
    let b = a.replica().await;
    for round in 0..200 {
        let new = NewDeployment {
            application: "web".into(),
            environment: "prod".into(),
            ref_name: "main".into(),
            ..Default::default()
        };
        let id = deployments::create(&a.state, "deployer", new)
            .await
            .unwrap()
            .deployment
            .id;
        let claim = |state: &AppState, runner: &'static str| {
            let state = state.clone();
            tokio::spawn(async move { leases::claim(&state, runner, id).await })
        };
        let (on_a, on_b) = tokio::join!(claim(&a.state, "runner-a"), claim(&b.state, "runner-b"));
        let (winner, loser) = match (on_a.unwrap(), on_b.unwrap()) {
            (Ok(_), Err(loser)) => ("runner-a", loser),
            (Err(loser), Ok(_)) => ("runner-b", loser),
            (a, b) => panic!("round {round}: need exactly one winner, got {a:?} and {b:?}"),
        };
        assert_eq!(loser.code(), "CONFLICT", "round {round}: {loser:?}");
        assert!(
            loser
                .message()
                .contains(&format!("already claimed by runner {winner}")),
            "round {round}: the loser is told who won: {loser:?}"
        );
        leases::finish(
            &b.state,
            winner,
            id,
            DeploymentStatus::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_on_a_new_database_both_migrate_it() {
    for _ in 0..5 {
        let db = TestDb::new(Backend::Postgres).await;
        let open = |url: String| tokio::spawn(async move { slipway_api::db::open(&url).await });
        let (first, second) = tokio::join!(open(db.url.clone()), open(db.url.clone()));
        let (conn, first) = first.unwrap().expect("the first one starts");
        let (_, second) = second.unwrap().expect("the second one starts");
        let recorded = conn
            .query_all(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SELECT version FROM slipway_migrations",
            ))
            .await
            .unwrap()
            .len();
        assert_eq!(first + second, recorded, "each migration applied once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_row_another_statement_holds_waits_and_wins() {
    use sea_orm::TransactionTrait;
    let server = TestApi::start(Backend::Postgres).await;
    server.create_app("web").await;
    let id = server.deploy("web", "prod").await;
    // What the reaper does when it notes why a deployment waits, held open.
    let txn = server.state.db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "UPDATE deployments SET message = 'waiting: no runner is connected' WHERE id = {id}"
    ))
    .await
    .unwrap();
    let state = server.state.clone();
    let deployment = id.parse().unwrap();
    let claim = tokio::spawn(async move { leases::claim(&state, "r", deployment).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    txn.commit().await.unwrap();
    let claimed = claim
        .await
        .unwrap()
        .expect("the claim wins once the row is free");
    assert_eq!(claimed.deployment.runner.as_deref(), Some("r"));
}

//! The event stream: what subscribers see, in the order it happened.

use std::collections::HashMap;

use serde_json::json;
use slipway_api::auth::Role;
use slipway_api::deployments::{self, DeploymentStatus, NewDeployment};
use slipway_api::{leases, AppState};

use slipway_testkit::api::{Backend, TestApi};

const FINAL: [&str; 3] = ["SUCCEEDED", "FAILED", "CANCELLED"];

/// Creates and claims a deployment of `environment`, then cancels it and
/// finishes it at the same time, as an operator and its runner may.
async fn race(state: AppState, environment: String) -> i64 {
    let new = NewDeployment {
        application: "web".into(),
        environment,
        ref_name: "main".into(),
        ..Default::default()
    };
    let id = deployments::create(&state, "deployer", new)
        .await
        .unwrap()
        .deployment
        .id;
    leases::claim(&state, "r", id).await.unwrap();
    let (cancelled, finished) = tokio::join!(
        tokio::spawn({
            let state = state.clone();
            async move { deployments::cancel(&state, id, "operator").await }
        }),
        tokio::spawn({
            let state = state.clone();
            async move { leases::finish(&state, "r", id, DeploymentStatus::Succeeded, None, None).await }
        }),
    );
    // The cancel may come after the finish and be refused; the finish never is.
    let _ = cancelled.unwrap();
    finished.unwrap().unwrap();
    id
}

async fn no_event_shows_a_deployment_unfinished_after_it_finished(backend: Backend) {
    let server = TestApi::start(backend).await;
    server.create_app("web").await;
    let mut ws = server.ws(&server.token(Role::Viewer, "v")).await;
    ws.subscribe(
        "subscription { deploymentEvents(application: \"web\") { id status cancelRequested finishedAt } }",
        json!({}),
    )
    .await;
    let mut n = 0;
    ws.next_while(|| {
        n += 1;
        server.deploy("web", format!("warm-{n}"))
    })
    .await
    .unwrap();

    const ROUNDS: usize = 50;
    const AT_ONCE: usize = 16;
    let mut raced = Vec::new();
    for round in 0..ROUNDS {
        let races = (0..AT_ONCE)
            .map(|env| tokio::spawn(race(server.state.clone(), format!("e{round}-{env}"))));
        for id in futures_util::future::join_all(races).await {
            raced.push(id.unwrap().to_string());
        }
    }
    // Events arrive in the order they were published: once this one is
    // here, every event of the races is too.
    let last = server.deploy("web", "last").await;

    let mut seen: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    loop {
        let event = ws.next().await.unwrap()["deploymentEvents"].take();
        let id = event["id"].as_str().unwrap().to_owned();
        if id == last {
            break;
        }
        seen.entry(id).or_default().push(event);
    }
    let finished = |event: &serde_json::Value| FINAL.contains(&event["status"].as_str().unwrap());
    for id in &raced {
        let events = &seen[id];
        let first_final = events
            .iter()
            .position(finished)
            .unwrap_or_else(|| panic!("deployment {id} never showed finished: {events:?}"));
        assert!(
            events[first_final..].iter().all(finished),
            "deployment {id} showed unfinished after it finished: {events:?}"
        );
    }
}

slipway_testkit::on_both_backends!(no_event_shows_a_deployment_unfinished_after_it_finished);

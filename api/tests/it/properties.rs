//! Properties of the API's rules under any sequence of what runners and
//! people do (proptest): one deployment in progress per environment, final
//! states final, and log lines dense, ordered and stored once however batches
//! are retried.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{Clock, Settings};

use slipway_testkit::api::{Backend, TestApi};

/// One thing a runner or a person does.
#[derive(Clone, Debug)]
enum Op {
    /// A deployer creates a deployment of environment `env` (0..3).
    Create {
        env: u8,
    },
    /// Runner `runner` (0..2) claims the `pick`th deployment.
    Claim {
        runner: u8,
        pick: u8,
    },
    Heartbeat {
        runner: u8,
        pick: u8,
    },
    /// A deployer cancels it.
    Cancel {
        pick: u8,
    },
    /// The runner finishes it: SUCCEEDED, FAILED or CANCELLED.
    Finish {
        runner: u8,
        pick: u8,
        status: u8,
    },
    /// Time passes beyond every lease, and the reaper runs.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(|env| Op::Create { env }),
        3 => (0u8..2, any::<u8>()).prop_map(|(runner, pick)| Op::Claim { runner, pick }),
        1 => (0u8..2, any::<u8>()).prop_map(|(runner, pick)| Op::Heartbeat { runner, pick }),
        1 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0u8..2, any::<u8>(), 0u8..3)
            .prop_map(|(runner, pick, status)| Op::Finish { runner, pick, status }),
        1 => Just(Op::Expire),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every deployment's id, environment and status.
async fn statuses(server: &TestApi) -> Vec<(String, String, String)> {
    let data = server
        .ok_as(
            Role::Viewer,
            "{ deployments(first: 100) { nodes { id status environment { name } } } }",
            json!({}),
        )
        .await;
    data["deployments"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["environment"]["name"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn apply(server: &TestApi, clock: &Clock, ids: &mut Vec<String>, op: &Op) {
    let pick = |pick: u8| -> Option<String> {
        (!ids.is_empty()).then(|| ids[pick as usize % ids.len()].clone())
    };
    let runner = |r: u8| server.token(Role::Runner, &format!("runner-{r}"));
    match op {
        Op::Create { env } => {
            let answer = server
                .gql(
                    Some(&server.token(Role::Deployer, "dee")),
                    "mutation($e: String!) { createDeployment(input: {application: \"web\", environment: $e, ref: \"main\"}) { id } }",
                    json!({"e": format!("env-{env}")}),
                )
                .await;
            if let Some(id) = answer["data"]["createDeployment"]["id"].as_str() {
                ids.push(id.to_owned());
            }
        }
        Op::Claim { runner: r, pick: p } => {
            if let Some(id) = pick(*p) {
                server
                    .gql(
                        Some(&runner(*r)),
                        "mutation($id: ID!) { claimDeployment(id: $id) { id } }",
                        json!({"id": id}),
                    )
                    .await;
            }
        }
        Op::Heartbeat { runner: r, pick: p } => {
            if let Some(id) = pick(*p) {
                server
                    .gql(
                        Some(&runner(*r)),
                        "mutation($id: ID!) { heartbeatDeployment(id: $id) { id } }",
                        json!({"id": id}),
                    )
                    .await;
            }
        }
        Op::Cancel { pick: p } => {
            if let Some(id) = pick(*p) {
                server
                    .gql(
                        Some(&server.token(Role::Deployer, "dee")),
                        "mutation($id: ID!) { cancelDeployment(id: $id) { id } }",
                        json!({"id": id}),
                    )
                    .await;
            }
        }
        Op::Finish {
            runner: r,
            pick: p,
            status,
        } => {
            if let Some(id) = pick(*p) {
                let status = ["SUCCEEDED", "FAILED", "CANCELLED"][*status as usize];
                server
                    .gql(
                        Some(&runner(*r)),
                        "mutation($id: ID!, $s: DeploymentStatus!) { finishDeployment(id: $id, status: $s) { id } }",
                        json!({"id": id, "s": status}),
                    )
                    .await;
            }
        }
        Op::Expire => {
            clock.advance(chrono::Duration::seconds(31));
            slipway_api::leases::expire(&server.state).await.unwrap();
        }
    }
}

/// Runs `cases` random sequences of operations on `backend`, checking after
/// each operation that no environment has two deployments in progress and
/// that no final state changed.
fn one_in_progress_per_environment_and_final_states_stay(backend: Backend, cases: u32) {
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        rt.block_on(async {
            let clock = Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
            let server = TestApi::start_with(backend, clock.clone(), Settings::default()).await;
            server.create_app("web").await;
            let mut ids = Vec::new();
            let mut finals: HashMap<String, String> = HashMap::new();
            for (step, op) in ops.iter().enumerate() {
                apply(&server, &clock, &mut ids, op).await;
                let now = statuses(&server).await;
                let mut in_progress: HashMap<String, usize> = HashMap::new();
                for (id, env, status) in &now {
                    if status == "IN_PROGRESS" {
                        *in_progress.entry(env.clone()).or_default() += 1;
                    }
                    if let Some(before) = finals.get(id) {
                        prop_assert_eq!(
                            before,
                            status,
                            "step {} ({:?}) changed final deployment {}",
                            step,
                            op,
                            id
                        );
                    }
                    if ["SUCCEEDED", "FAILED", "CANCELLED"].contains(&status.as_str()) {
                        finals.insert(id.clone(), status.clone());
                    }
                }
                for (env, n) in in_progress {
                    prop_assert!(n <= 1, "step {step} ({op:?}): {n} in progress in {env}");
                }
            }
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// However a runner's batches are cut, and whichever answers it loses (and
/// so sends again from what it last knew), the log is every line once, in
/// order, numbered densely from 1.
fn log_lines_are_dense_ordered_and_stored_once(backend: Backend, cases: u32) {
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let sends = proptest::collection::vec((1usize..6, any::<bool>()), 1..40);
    let result = runner.run(&(1usize..60, sends), |(total, sends)| {
        rt.block_on(async {
            let server = TestApi::start(backend).await;
            server.create_app("web").await;
            let id = server.deploy("web", "prod").await;
            server.claim_ok("r", &id).await;
            let token = server.token(Role::Runner, "r");
            let lines: Vec<String> = (1..=total).map(|i| format!("line {i}")).collect();
            let mut known = 0usize;
            let mut sends = sends.iter().cycle();
            let mut lost_before = false;
            while known < total {
                let (size, lost) = sends.next().unwrap();
                // An answer lost twice in a row is one the runner waits out.
                let lost = *lost && !lost_before;
                lost_before = lost;
                let batch: Vec<Value> = lines[known..(known + *size).min(total)]
                    .iter()
                    .map(|t| json!({"text": t}))
                    .collect();
                let answer = server
                    .ok(
                        &token,
                        "mutation($id: ID!, $l: [LogLineInput!]!, $after: Int) { appendDeploymentLogs(id: $id, lines: $l, after: $after) { logCount } }",
                        json!({"id": id, "l": batch, "after": known}),
                    )
                    .await;
                // A lost answer: the runner does not learn the count, and
                // sends again from what it knew, cut anew.
                if !lost {
                    known = answer["appendDeploymentLogs"]["logCount"].as_u64().unwrap() as usize;
                }
            }
            let data = server
                .ok_as(
                    Role::Viewer,
                    "query($id: ID!) { deployment(id: $id) { logCount logs(first: 100) { seq text } } }",
                    json!({"id": id}),
                )
                .await;
            let stored: Vec<(i64, String)> = data["deployment"]["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["seq"].as_i64().unwrap(), l["text"].as_str().unwrap().to_owned()))
                .collect();
            let expected: Vec<(i64, String)> = lines
                .iter()
                .enumerate()
                .map(|(i, t)| (i as i64 + 1, t.clone()))
                .collect();
            prop_assert_eq!(stored, expected);
            prop_assert_eq!(data["deployment"]["logCount"].as_u64(), Some(total as u64));
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

#[test]
fn sqlite_one_in_progress_per_environment_and_final_states_stay() {
    one_in_progress_per_environment_and_final_states_stay(Backend::Sqlite, 32);
}

#[test]
fn postgres_one_in_progress_per_environment_and_final_states_stay() {
    one_in_progress_per_environment_and_final_states_stay(Backend::Postgres, 8);
}

#[test]
fn sqlite_log_lines_are_dense_ordered_and_stored_once() {
    log_lines_are_dense_ordered_and_stored_once(Backend::Sqlite, 32);
}

#[test]
fn postgres_log_lines_are_dense_ordered_and_stored_once() {
    log_lines_are_dense_ordered_and_stored_once(Backend::Postgres, 8);
}

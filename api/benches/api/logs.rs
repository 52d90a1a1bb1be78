//! `appendDeploymentLogs` in batches of 500 lines with 50 live
//! `deploymentLogs` subscribers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::{deployments, leases};
use slipway_testkit::api::TestApi;
use slipway_testkit::bench::{ms, percentile, thousands, Row};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::{
    api_err, create_application, graphql, http_client, new_deployment, next_text, start_api,
    subscribe, Scale, Socket, RUNNER, WAIT,
};

const APPEND_LOGS: &str = "mutation($id: ID!, $lines: [LogLineInput!]!) { \
     appendDeploymentLogs(id: $id, lines: $lines) { logCount } }";

/// What one `deploymentLogs` follower saw.
struct Followed {
    received: usize,
    /// The first gap, duplicate or reordering, if any.
    fault: Option<String>,
    completed: bool,
}

/// Milestones of followers, sent to the bench as they happen.
enum Milestone {
    /// A follower has every line up to the warm-up batch.
    Warm,
    /// A follower has every line, since this instant.
    All(Instant),
}

/// The `seq` of a `next` message, read without a full JSON parse (the bench
/// shares the machine with the API and must stay light).
fn seq_of(text: &str) -> Option<i64> {
    if !text.starts_with(r#"{"type":"next""#) {
        return None;
    }
    let start = text.find(r#""seq":"#)? + 6;
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn follow(
    mut socket: Socket,
    warm: i64,
    total: i64,
    milestones: mpsc::UnboundedSender<Milestone>,
) -> Result<Followed> {
    let mut last = 0;
    let mut received = 0;
    let mut fault = None;
    loop {
        let Some(text) = next_text(&mut socket).await? else {
            return Ok(Followed {
                received,
                fault,
                completed: false,
            });
        };
        if let Some(seq) = seq_of(&text) {
            received += 1;
            if seq != last + 1 && fault.is_none() {
                fault = Some(format!("seq {seq} after {last}"));
            }
            last = seq;
            if seq == warm {
                let _ = milestones.send(Milestone::Warm);
            }
            if seq == total {
                let _ = milestones.send(Milestone::All(Instant::now()));
            }
            continue;
        }
        let message: Value = serde_json::from_str(&text)?;
        match message["type"].as_str() {
            Some("complete") => {
                return Ok(Followed {
                    received,
                    fault,
                    completed: true,
                })
            }
            Some("ping") | Some("pong") | Some("ka") => {}
            _ => bail!("unexpected subscription message: {message}"),
        }
    }
}

/// The request bodies of `batches` appends of `per_batch` lines.
fn log_batches(id: i64, batches: usize, per_batch: usize) -> Vec<String> {
    (0..batches)
        .map(|b| {
            let lines: Vec<Value> = (0..per_batch)
                .map(|l| {
                    json!({"text": format!(
                        "step {b}/{l}: pulling layer sha256:{:016x}{:016x} ... done",
                        b * 7919 + l,
                        l * 104_729
                    )})
                })
                .collect();
            json!({"query": APPEND_LOGS, "variables": {"id": id.to_string(), "lines": lines}})
                .to_string()
        })
        .collect()
}

/// Posts the append bodies one after the other (as a runner does); returns
/// the time they took and each append's latency.
async fn append_all(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    bodies: Vec<String>,
    mut log_count: i64,
    per_batch: i64,
) -> Result<(Duration, Vec<Duration>)> {
    let url = format!("http://{addr}/graphql");
    let mut latencies = Vec::with_capacity(bodies.len());
    let started = Instant::now();
    for body in bodies {
        let t0 = Instant::now();
        let response = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let answer: Value = response.json().await?;
        latencies.push(t0.elapsed());
        log_count += per_batch;
        if answer["data"]["appendDeploymentLogs"]["logCount"].as_i64() != Some(log_count) {
            bail!("append answered {answer}, expected logCount {log_count}");
        }
    }
    Ok((started.elapsed(), latencies))
}

/// A claimed deployment held by [`RUNNER`].
async fn claimed_deployment(api: &TestApi, environment: &str) -> Result<i64> {
    let state = api.state.clone();
    let environment = environment.to_owned();
    api.run(async move {
        let view = deployments::create(&state, "bench", new_deployment("logs", &environment, 0))
            .await
            .map_err(api_err)?;
        leases::claim(&state, RUNNER, view.deployment.id)
            .await
            .map_err(api_err)?;
        anyhow::Ok(view.deployment.id)
    })
    .await
}

pub(crate) async fn bench(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "logs";
    const PER_BATCH: usize = 500;
    let batches = scale.of(100);
    let followers = 50;
    let lines = (batches * PER_BATCH) as f64;
    let api = start_api().await?;
    create_application(&api, "logs").await?;
    let client = http_client()?;
    let runner = api.token(Role::Runner, RUNNER);

    // Without followers first: what storing alone costs.
    let alone = claimed_deployment(&api, "alone").await?;
    let (alone_time, mut alone_lat) = append_all(
        &client,
        api.addr,
        &runner,
        log_batches(alone, batches, PER_BATCH),
        0,
        PER_BATCH as i64,
    )
    .await?;
    alone_lat.sort_unstable();
    let alone_rate = lines / alone_time.as_secs_f64();
    println!(
        "   no followers: {} lines in {:.2} s = {} lines/s (append p50 {}, p99 {})",
        thousands(lines),
        alone_time.as_secs_f64(),
        thousands(alone_rate),
        ms(percentile(&alone_lat, 0.5)),
        ms(percentile(&alone_lat, 0.99))
    );

    // Then with 50 followers from seq 0. A first batch (not timed) proves every
    // follower is live.
    let id = claimed_deployment(&api, "followed").await?;
    let warm = PER_BATCH as i64;
    let total = warm + lines as i64;
    let (milestones_tx, mut milestones) = mpsc::unbounded_channel();
    let query = format!("subscription {{ deploymentLogs(id: \"{id}\", afterSeq: 0) {{ seq }} }}");
    let viewer = api.token(Role::Viewer, "bench-viewer");
    let mut tasks = Vec::with_capacity(followers);
    for _ in 0..followers {
        let socket = subscribe(api.addr, &viewer, &query).await?;
        tasks.push(tokio::spawn(follow(
            socket,
            warm,
            total,
            milestones_tx.clone(),
        )));
    }
    drop(milestones_tx);
    append_all(
        &client,
        api.addr,
        &runner,
        log_batches(id, 1, PER_BATCH),
        0,
        PER_BATCH as i64,
    )
    .await?;
    let mut live = 0;
    while live < followers {
        match timeout(WAIT, milestones.recv()).await {
            Ok(Some(Milestone::Warm)) => live += 1,
            Ok(Some(Milestone::All(_))) => {}
            Ok(None) => bail!("every follower stopped before the warm-up batch"),
            Err(_) => bail!("only {live} of {followers} followers got the warm-up batch"),
        }
    }

    let started = Instant::now();
    let (stored_time, mut stored_lat) = append_all(
        &client,
        api.addr,
        &runner,
        log_batches(id, batches, PER_BATCH),
        warm,
        PER_BATCH as i64,
    )
    .await?;
    stored_lat.sort_unstable();
    let mut done = 0;
    let mut last_delivery = started;
    while done < followers {
        match timeout(Duration::from_secs(120), milestones.recv()).await {
            Ok(Some(Milestone::All(at))) => {
                done += 1;
                last_delivery = last_delivery.max(at);
            }
            Ok(Some(Milestone::Warm)) => {}
            Ok(None) => break,
            Err(_) => break,
        }
    }
    let delivered_time = last_delivery - started;

    // Finish the deployment: every follower must then complete, with nothing extra.
    graphql(
        &client,
        api.addr,
        &runner,
        "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED) { status } }",
        json!({"id": id.to_string()}),
    )
    .await?;
    let mut complete_and_exact = 0;
    let mut faults = Vec::new();
    for (index, task) in tasks.into_iter().enumerate() {
        match timeout(WAIT, task).await {
            Ok(Ok(Ok(seen))) => {
                let exact = seen.received as i64 == total && seen.fault.is_none();
                if exact && seen.completed {
                    complete_and_exact += 1;
                } else {
                    faults.push(format!(
                        "follower {index}: {} lines{}{}",
                        seen.received,
                        seen.fault.map(|f| format!(", {f}")).unwrap_or_default(),
                        if seen.completed {
                            ""
                        } else {
                            ", not completed"
                        }
                    ));
                }
            }
            Ok(Ok(Err(err))) => faults.push(format!("follower {index}: {err:#}")),
            Ok(Err(err)) => faults.push(format!("follower {index}: {err}")),
            Err(_) => faults.push(format!("follower {index}: did not complete in {WAIT:?}")),
        }
    }
    drop(api);

    let stored_rate = lines / stored_time.as_secs_f64();
    let delivered_rate = lines / delivered_time.as_secs_f64();
    println!(
        "   {followers} followers: stored {} lines in {:.2} s = {} lines/s (append p50 {}, p99 {})",
        thousands(lines),
        stored_time.as_secs_f64(),
        thousands(stored_rate),
        ms(percentile(&stored_lat, 0.5)),
        ms(percentile(&stored_lat, 0.99))
    );
    println!(
        "   {done}/{followers} followers had every line after {:.2} s = {} lines/s per follower, {} messages/s in all",
        delivered_time.as_secs_f64(),
        thousands(delivered_rate),
        thousands(delivered_rate * followers as f64)
    );
    println!("   {complete_and_exact}/{followers} followers got every line exactly once, in order, then `complete`");
    for fault in faults.iter().take(5) {
        println!("   {fault}");
    }
    Ok(vec![
        Row::info(
            B,
            "setup",
            format!(
                "{batches} appends × {PER_BATCH} lines (+1 warm-up batch), one after the other; {followers} deploymentLogs followers from seq 0"
            ),
        ),
        Row::info(
            B,
            "stored, no followers",
            format!(
                "{} lines/s (append p50 {}, p99 {})",
                thousands(alone_rate),
                ms(percentile(&alone_lat, 0.5)),
                ms(percentile(&alone_lat, 0.99))
            ),
        ),
        Row::target(
            B,
            format!("stored, {followers} followers"),
            format!(
                "{} lines/s (append p50 {}, p99 {})",
                thousands(stored_rate),
                ms(percentile(&stored_lat, 0.5)),
                ms(percentile(&stored_lat, 0.99))
            ),
            "≥ 50,000 lines/s",
            stored_rate >= 50_000.0,
        ),
        Row::info(
            B,
            "delivered to every follower",
            format!(
                "{} lines/s per follower ({} messages/s in all); last line after {:.2} s",
                thousands(delivered_rate),
                thousands(delivered_rate * followers as f64),
                delivered_time.as_secs_f64()
            ),
        ),
        Row::target(
            B,
            "every follower got every line once, in order",
            format!("{complete_and_exact} of {followers}"),
            "all",
            complete_and_exact == followers,
        ),
    ])
}

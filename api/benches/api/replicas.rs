//! Two API replicas on one PostgreSQL database (issue 15): claims per second
//! with ten runners, five on each replica, against the same ten on one
//! replica, side by side; how long a change made through one replica takes
//! to reach a subscriber of the other (against one of the same replica);
//! and `createDeployment` on one replica → `deploymentQueued` on the other.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::deployments;
use slipway_testkit::api::{Backend, Options, TestApi};
use slipway_testkit::bench::{ms, percentile, Row};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::{
    api_err, create_application, graphql, http_client, new_deployment, next_text, subscribe, Scale,
    CREATE_DEPLOYMENT, WAIT,
};

const B: &str = "replicas";
const RUNNERS: usize = 10;
const CLAIM: &str = "mutation($id: ID!) { claimDeployment(id: $id) { id } }";

pub(crate) async fn bench(scale: Scale) -> Result<Vec<Row>> {
    let a = timeout(
        WAIT,
        TestApi::launch(Options {
            backend: Backend::Postgres,
            own_runtime: true,
            logs: false,
            ..Options::default()
        }),
    )
    .await
    .context("the first replica did not start in time")?;
    let b = timeout(WAIT, a.replica())
        .await
        .context("the second replica did not start in time")?;
    create_application(&a, "claims").await?;
    create_application(&a, "events").await?;
    create_application(&a, "queued").await?;
    let mut rows = vec![Row::info(
        B,
        "setup",
        "two in-process API replicas (a runtime each) on one PostgreSQL database",
    )];
    rows.extend(claims(&a, &b, scale).await?);
    rows.extend(events(&a, &b, scale).await?);
    rows.extend(queued(&a, &b, scale).await?);
    Ok(rows)
}

/// Claims per second: 10 runners on one replica, then 5 on each of two,
/// in four alternating rounds, each claiming deployments no other claims.
async fn claims(a: &TestApi, b: &TestApi, scale: Scale) -> Result<Vec<Row>> {
    let per_round = scale.of(1000);
    let state = a.state.clone();
    let ids: Vec<i64> = a
        .run(async move {
            let mut ids = Vec::new();
            for i in 0..4 * per_round {
                let new = new_deployment("claims", &format!("env-{i}"), i);
                ids.push(
                    deployments::create(&state, "bench", new)
                        .await?
                        .deployment
                        .id,
                );
            }
            Ok::<_, slipway_api::error::ApiError>(ids)
        })
        .await
        .map_err(api_err)?;
    let client = http_client()?;
    let tokens: Vec<String> = (0..RUNNERS)
        .map(|i| a.token(Role::Runner, &format!("bench-runner-{i}")))
        .collect();
    let (mut one, mut two) = (Duration::ZERO, Duration::ZERO);
    for (round, chunk) in ids.chunks(per_round).enumerate() {
        let spread = round % 2 == 1;
        let addrs: Vec<SocketAddr> = (0..RUNNERS)
            .map(|i| if spread && i % 2 == 1 { b.addr } else { a.addr })
            .collect();
        let took = claim_all(&client, &tokens, &addrs, chunk).await?;
        println!(
            "   round {round}: {per_round} claims on {} replica(s) in {}",
            if spread { 2 } else { 1 },
            ms(took)
        );
        if spread {
            two += took;
        } else {
            one += took;
        }
    }
    let claimed = 2 * per_round;
    let rate = |took: Duration| claimed as f64 / took.as_secs_f64();
    let (one, two) = (rate(one), rate(two));
    let per_replica = two / 2.0;
    println!("   one replica {one:.0}/s; two replicas {two:.0}/s ({per_replica:.0}/s each)");
    Ok(vec![
        Row::info(
            B,
            "claims: setup",
            format!("{RUNNERS} runners, each claiming over HTTP in turn from a shared list of {claimed} + {claimed} deployments (one per environment)"),
        ),
        Row::info(B, "claims: 10 runners on one replica", format!("{one:.0}/s")),
        Row::info(B, "claims: 5 + 5 runners on two replicas", format!("{two:.0}/s")),
        Row::target(
            B,
            "claims per replica, two replicas",
            format!("{per_replica:.0}/s"),
            "≥ 200/s",
            per_replica >= 200.0,
        ),
        Row::info(B, "claims: ratio two replicas / one", format!("{:.2}", two / one)),
    ])
}

/// Runner `i` claims through `addrs[i]` until `ids` are all claimed; how
/// long it took.
async fn claim_all(
    client: &reqwest::Client,
    tokens: &[String],
    addrs: &[SocketAddr],
    ids: &[i64],
) -> Result<Duration> {
    let queue = Arc::new(Mutex::new(ids.iter().copied().collect::<VecDeque<_>>()));
    let started = Instant::now();
    let runners: Vec<_> = tokens
        .iter()
        .zip(addrs)
        .map(|(token, addr)| {
            let (client, token, addr, queue) =
                (client.clone(), token.clone(), *addr, queue.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = queue.lock().unwrap().pop_front() else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    graphql(&client, addr, &token, CLAIM, json!({"id": id.to_string()})).await?;
                }
            })
        })
        .collect();
    for runner in runners {
        runner.await??;
    }
    Ok(started.elapsed())
}

/// A change made through replica A (`updateDeploymentProgress`): how long
/// after its answer a `deploymentEvents` subscriber of A, and one of B, has it.
async fn events(a: &TestApi, b: &TestApi, scale: Scale) -> Result<Vec<Row>> {
    let count = scale.of(1000);
    let client = http_client()?;
    let runner = a.token(Role::Runner, "bench-events");
    let deployer = a.token(Role::Deployer, "bench-deployer");
    let created = graphql(
        &client,
        a.addr,
        &deployer,
        CREATE_DEPLOYMENT,
        json!({"input": {"application": "events", "environment": "prod", "ref": "main"}}),
    )
    .await?;
    let id = created["createDeployment"]["id"]
        .as_str()
        .context("a deployment id")?
        .to_owned();
    graphql(&client, a.addr, &runner, CLAIM, json!({"id": id})).await?;
    let viewer = a.token(Role::Viewer, "bench-viewer");
    let query = "subscription { deploymentEvents(application: \"events\") { message } }";
    let (tx, mut arrivals) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    let mut listeners = Vec::new();
    for (n, addr) in [a.addr, b.addr].into_iter().enumerate() {
        let mut socket = subscribe(addr, &viewer, query).await?;
        let tx = tx.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(text) = next_text(&mut socket).await? {
                let at = Instant::now();
                let message: Value = serde_json::from_str(&text)?;
                if message["type"] == "next" {
                    let m = message["payload"]["data"]["deploymentEvents"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if tx.send((n, m, at)).is_err() {
                        break;
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let progress = |message: String| {
        let (client, runner, id, addr) = (client.clone(), runner.clone(), id.clone(), a.addr);
        async move {
            graphql(
                &client,
                addr,
                &runner,
                "mutation($id: ID!, $m: String) { updateDeploymentProgress(id: $id, message: $m) { id } }",
                json!({"id": id, "m": message}),
            )
            .await
        }
    };
    // Both subscriptions are live once a change reaches both.
    let deadline = Instant::now() + WAIT;
    let mut live = [false, false];
    let mut n = 0;
    while !live.iter().all(|l| *l) {
        if Instant::now() > deadline {
            bail!("deploymentEvents delivered nothing within {WAIT:?}");
        }
        progress(format!("warm {n}")).await?;
        n += 1;
        while let Ok(Some((on, _, _))) = timeout(Duration::from_millis(200), arrivals.recv()).await
        {
            live[on] = true;
        }
    }
    while arrivals.try_recv().is_ok() {}

    let (mut same, mut other) = (Vec::new(), Vec::new());
    for i in 0..count {
        let message = format!("step {i}");
        progress(message.clone()).await?;
        let answered = Instant::now();
        let mut got = [None, None];
        while got.iter().any(Option::is_none) {
            let (on, m, at) = timeout(Duration::from_secs(5), arrivals.recv())
                .await
                .with_context(|| format!("`{message}` did not reach both subscribers in 5 s"))?
                .context("a subscription ended")?;
            if m == message {
                got[on] = Some(at.saturating_duration_since(answered));
            }
        }
        same.push(got[0].unwrap_or_default());
        other.push(got[1].unwrap_or_default());
    }
    for listener in listeners {
        listener.abort();
    }
    same.sort_unstable();
    other.sort_unstable();
    let p99 = percentile(&other, 0.99);
    println!(
        "   answer → event: same replica p50 {} p99 {}; other replica p50 {} p99 {}",
        ms(percentile(&same, 0.5)),
        ms(percentile(&same, 0.99)),
        ms(percentile(&other, 0.5)),
        ms(p99)
    );
    Ok(vec![
        Row::info(
            B,
            "events: setup",
            format!("{count} `updateDeploymentProgress` through replica A, one at a time; a `deploymentEvents` subscriber on each replica"),
        ),
        Row::info(
            B,
            "events: answer → subscriber of the same replica, p50 / p99",
            format!("{} / {}", ms(percentile(&same, 0.5)), ms(percentile(&same, 0.99))),
        ),
        Row::info(
            B,
            "events: answer → subscriber of the other replica, p50",
            ms(percentile(&other, 0.5)),
        ),
        Row::target(
            B,
            "events: answer → subscriber of the other replica, p99",
            ms(p99),
            "< 20 ms",
            p99 < Duration::from_millis(20),
        ),
    ])
}

/// `createDeployment` answered by replica A → `deploymentQueued` of a runner
/// subscribed to replica B.
async fn queued(a: &TestApi, b: &TestApi, scale: Scale) -> Result<Vec<Row>> {
    let mut latencies = crate::queued::measure(a, a.addr, b.addr, "queued", scale.of(1000))
        .await?
        .after_response;
    latencies.sort_unstable();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "   createDeployment on A → deploymentQueued on B: p50 {} p99 {}",
        ms(percentile(&latencies, 0.5)),
        ms(p99)
    );
    Ok(vec![
        Row::info(
            B,
            "queued: response on A → message on B, p50",
            ms(percentile(&latencies, 0.5)),
        ),
        Row::target(
            B,
            "queued: response on A → message on B, p99",
            ms(p99),
            "< 20 ms",
            p99 < Duration::from_millis(20),
        ),
    ])
}

//! From `createDeployment` answering to a `deploymentQueued` subscriber
//! receiving the deployment.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_testkit::api::TestApi;
use slipway_testkit::bench::{ms, percentile, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::{
    create_application, graphql, http_client, next_text, start_api, subscribe, Scale,
    CREATE_DEPLOYMENT, RUNNER, WAIT,
};

pub(crate) async fn bench(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "queued";
    let count = scale.of(1000);
    let api = start_api().await?;
    create_application(&api, "queued").await?;
    let Latencies {
        mut after_response,
        mut after_request,
        mut round_trips,
        early,
    } = measure(&api, api.addr, api.addr, "queued", count).await?;
    drop(api);

    after_response.sort_unstable();
    after_request.sort_unstable();
    round_trips.sort_unstable();
    let p50 = percentile(&after_response, 0.5);
    let p99 = percentile(&after_response, 0.99);
    println!(
        "   response → message p50 {} p99 {} max {} ({early}/{count} arrived before the response)",
        ms(p50),
        ms(p99),
        ms(*after_response.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "   request sent → message p50 {} p99 {}; createDeployment round trip p50 {} p99 {}",
        ms(percentile(&after_request, 0.5)),
        ms(percentile(&after_request, 0.99)),
        ms(percentile(&round_trips, 0.5)),
        ms(percentile(&round_trips, 0.99)),
    );
    Ok(vec![
        Row::info(
            B,
            "setup",
            format!("{count} deployments, each to a fresh environment, one at a time; 1 runner subscriber"),
        ),
        Row::info(B, "response → message p50", ms(p50)),
        Row::target(B, "response → message p99", ms(p99), "< 20 ms", p99 < Duration::from_millis(20)),
        Row::info(
            B,
            "messages arriving before the response",
            format!("{early} of {count}"),
        ),
        Row::info(
            B,
            "request sent → message p50 / p99",
            format!(
                "{} / {}",
                ms(percentile(&after_request, 0.5)),
                ms(percentile(&after_request, 0.99))
            ),
        ),
        Row::info(
            B,
            "createDeployment round trip p50 / p99",
            format!(
                "{} / {}",
                ms(percentile(&round_trips, 0.5)),
                ms(percentile(&round_trips, 0.99))
            ),
        ),
    ])
}

/// What [`measure`] saw of each deployment: the message after the response,
/// after the request, and the request's round trip; and how many messages
/// arrived before their response.
pub(crate) struct Latencies {
    pub(crate) after_response: Vec<Duration>,
    pub(crate) after_request: Vec<Duration>,
    pub(crate) round_trips: Vec<Duration>,
    pub(crate) early: usize,
}

/// Creates `count` deployments of `application` through `create_on`, one at
/// a time, each to a fresh environment (after 20 warm-up ones), with a
/// runner's `deploymentQueued` subscriber on `listen_on`.
pub(crate) async fn measure(
    api: &TestApi,
    create_on: SocketAddr,
    listen_on: SocketAddr,
    application: &str,
    count: usize,
) -> Result<Latencies> {
    let warm = 20;
    let client = http_client()?;
    let deployer = api.token(Role::Deployer, "bench-deployer");
    let mut socket = subscribe(
        listen_on,
        &api.token(Role::Runner, RUNNER),
        "subscription { deploymentQueued { id } }",
    )
    .await?;
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(String, Instant)>();
    let listener: JoinHandle<Result<()>> = tokio::spawn(async move {
        loop {
            let Some(text) = next_text(&mut socket).await? else {
                return Ok(());
            };
            let at = Instant::now();
            let message: Value = serde_json::from_str(&text)?;
            match message["type"].as_str() {
                Some("next") => {
                    let id = message["payload"]["data"]["deploymentQueued"]["id"]
                        .as_str()
                        .with_context(|| format!("no id in {message}"))?
                        .to_owned();
                    if arrivals_tx.send((id, at)).is_err() {
                        return Ok(());
                    }
                }
                Some("ping") | Some("pong") | Some("ka") => {}
                _ => bail!("unexpected subscription message: {message}"),
            }
        }
    });

    let create = |i: usize| {
        let client = client.clone();
        let deployer = deployer.clone();
        async move {
            let input = json!({"application": application, "environment": format!("env-{i}"), "ref": "main"});
            let data = graphql(
                &client,
                create_on,
                &deployer,
                CREATE_DEPLOYMENT,
                json!({"input": input}),
            )
            .await?;
            data["createDeployment"]["id"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no id in {data}"))
        }
    };

    // The subscription is live once a deployment comes through it: the first
    // ones may be created before async-graphql has started the stream.
    let deadline = Instant::now() + WAIT;
    let mut next_env = 0;
    'live: loop {
        if Instant::now() > deadline {
            bail!("deploymentQueued delivered nothing within {WAIT:?}");
        }
        create(next_env).await?;
        next_env += 1;
        if let Ok(Some(_)) = timeout(Duration::from_millis(200), arrivals.recv()).await {
            break 'live;
        }
    }
    while arrivals.try_recv().is_ok() {}

    let mut seen = Latencies {
        after_response: Vec::with_capacity(count),
        after_request: Vec::with_capacity(count),
        round_trips: Vec::with_capacity(count),
        early: 0,
    };
    for i in 0..warm + count {
        let sent = Instant::now();
        let id = create(next_env + i).await?;
        let answered = Instant::now();
        let arrived = loop {
            let (got, at) = timeout(Duration::from_secs(5), arrivals.recv())
                .await
                .with_context(|| format!("deployment {id} was not announced within 5 s"))?
                .context("the subscription ended")?;
            if got == id {
                break at;
            }
        };
        if i < warm {
            continue;
        }
        if arrived <= answered {
            seen.early += 1;
        }
        seen.after_response
            .push(arrived.saturating_duration_since(answered));
        seen.after_request
            .push(arrived.saturating_duration_since(sent));
        seen.round_trips.push(answered - sent);
    }
    listener.abort();
    Ok(seen)
}

//! From `createDeployment` answering to a `deploymentQueued` subscriber
//! receiving the deployment.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use slipway_api::auth::Role;
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
    let warm = 20;
    let api = start_api().await?;
    create_application(&api, "queued").await?;
    let client = http_client()?;
    let deployer = api.token(Role::Deployer, "bench-deployer");

    let mut socket = subscribe(
        api.addr,
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
        let addr = api.addr;
        async move {
            let input =
                json!({"application": "queued", "environment": format!("env-{i}"), "ref": "main"});
            let data = graphql(
                &client,
                addr,
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

    let mut after_response = Vec::with_capacity(count);
    let mut after_request = Vec::with_capacity(count);
    let mut round_trips = Vec::with_capacity(count);
    let mut early = 0;
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
            early += 1;
        }
        after_response.push(arrived.saturating_duration_since(answered));
        after_request.push(arrived.saturating_duration_since(sent));
        round_trips.push(answered - sent);
    }
    listener.abort();
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

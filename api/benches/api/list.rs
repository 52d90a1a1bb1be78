//! `deployments(first: 50)` over GraphQL against a plain axum JSON handler
//! that reads the same rows with `deployments::list`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use slipway_api::auth::Role;
use slipway_api::deployments::{self, Filter};
use slipway_api::AppState;
use slipway_testkit::api::TestApi;
use slipway_testkit::bench::{ms, percentile, Row};
use tokio::net::TcpListener;
use tokio::time::timeout;

use crate::{
    api_err, create_application, http_client, new_deployment, start_api, Scale, CLIENTS, LIST_QUERY,
};

#[derive(Serialize)]
struct PlainBody<'a> {
    data: PlainData<'a>,
}

#[derive(Serialize)]
struct PlainData<'a> {
    deployments: PlainConnection<'a>,
}

#[derive(Serialize)]
struct PlainConnection<'a> {
    edges: Vec<PlainEdge<'a>>,
}

#[derive(Serialize)]
struct PlainEdge<'a> {
    node: PlainNode<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlainNode<'a> {
    id: String,
    name: String,
    status: &'static str,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    created_at: String,
    application: PlainName<'a>,
    environment: PlainName<'a>,
}

#[derive(Serialize)]
struct PlainName<'a> {
    name: &'a str,
}

/// What `deployments(first: 50) { … }` answers, without GraphQL.
async fn plain_deployments(State(state): State<AppState>) -> Response {
    let rows = match deployments::list(&state.db, &Filter::default(), 50, None).await {
        Ok((rows, _more)) => rows,
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, err.message().to_owned()).into_response()
        }
    };
    let edges = rows
        .iter()
        .map(|view| PlainEdge {
            node: PlainNode {
                id: view.deployment.id.to_string(),
                name: format!("{}#{}", view.application.name, view.deployment.number),
                status: view.status().as_str(),
                ref_name: &view.deployment.ref_name,
                created_at: view.deployment.created_at.to_rfc3339(),
                application: PlainName {
                    name: &view.application.name,
                },
                environment: PlainName {
                    name: &view.environment.name,
                },
            },
        })
        .collect();
    Json(PlainBody {
        data: PlainData {
            deployments: PlainConnection { edges },
        },
    })
    .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Graphql,
    Plain,
}

/// Sends `n` requests to one path with [`CLIENTS`] concurrent clients; every
/// answer must be 200 with the body length seen first. Returns the wall time
/// and each request's latency.
async fn load(
    request: Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>,
    n: usize,
    expected_len: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let next = next.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t0 = Instant::now();
                    let response = request().send().await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    latencies.push(t0.elapsed());
                    if status != StatusCode::OK || body.len() != expected_len {
                        bail!(
                            "answer {status} of {} bytes (expected {expected_len}): {}",
                            body.len(),
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        );
                    }
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for worker in workers {
        latencies.extend(timeout(Duration::from_secs(300), worker).await???);
    }
    Ok((started.elapsed(), latencies))
}

/// Serves what `deployments(first: 50) { … }` answers without GraphQL, on the
/// API's runtime.
async fn serve_plain(api: &TestApi) -> Result<SocketAddr> {
    let state = api.state.clone();
    api.run(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/deployments", get(plain_deployments))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })
    .await
}

pub(crate) async fn bench(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "list";
    let seeded = scale.of(2000);
    let requests = scale.of(2000);
    let rounds = 10;
    let api = start_api().await?;
    let plain_addr = serve_plain(&api).await?;

    // Seed: 4 applications × 5 environments, created through the domain code.
    let started = Instant::now();
    for app in 0..4 {
        create_application(&api, &format!("app-{app}")).await?;
    }
    let state = api.state.clone();
    let seeding = api.run(async move {
        for i in 0..seeded {
            let input = new_deployment(&format!("app-{}", i % 4), &format!("env-{}", i % 5), i);
            deployments::create(&state, "bench-seed", input)
                .await
                .map_err(api_err)?;
        }
        anyhow::Ok(())
    });
    timeout(Duration::from_secs(600), seeding)
        .await
        .context("seeding took more than 10 minutes")??;
    println!(
        "   seeded {seeded} deployments over 4 applications × 5 environments in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let client = http_client()?;
    let token = api.token(Role::Viewer, "bench-viewer");
    let graphql_body = json!({"query": LIST_QUERY}).to_string();
    let graphql_url = format!("http://{}/graphql", api.addr);
    let plain_url = format!("http://{plain_addr}/deployments");
    let graphql_request: Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync> = {
        let client = client.clone();
        Arc::new(move || {
            client
                .post(&graphql_url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(graphql_body.clone())
        })
    };
    let plain_request: Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync> = {
        let client = client.clone();
        Arc::new(move || client.get(&plain_url))
    };

    // Both answer the same thing.
    let graphql_answer = graphql_request().send().await?.bytes().await?;
    let plain_answer = plain_request().send().await?.bytes().await?;
    let graphql_json: Value = serde_json::from_slice(&graphql_answer)?;
    let plain_json: Value = serde_json::from_slice(&plain_answer)?;
    if graphql_json != plain_json {
        bail!(
            "GraphQL and the plain handler disagree:\n{}\n{}",
            String::from_utf8_lossy(&graphql_answer[..graphql_answer.len().min(400)]),
            String::from_utf8_lossy(&plain_answer[..plain_answer.len().min(400)])
        );
    }
    println!(
        "   both answer the same 50 deployments ({} bytes GraphQL, {} bytes plain)",
        graphql_answer.len(),
        plain_answer.len()
    );

    // Warm up, then alternate rounds (GraphQL first in even rounds, plain first
    // in odd ones) so that noise hits both alike.
    let warm = scale.of(200);
    load(graphql_request.clone(), warm, graphql_answer.len()).await?;
    load(plain_request.clone(), warm, plain_answer.len()).await?;
    let per_round = requests.div_ceil(rounds);
    let mut spent = [Duration::ZERO; 2];
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Target::Graphql, Target::Plain]
        } else {
            [Target::Plain, Target::Graphql]
        };
        for path in order {
            let (request, len, slot) = match path {
                Target::Graphql => (graphql_request.clone(), graphql_answer.len(), 0),
                Target::Plain => (plain_request.clone(), plain_answer.len(), 1),
            };
            let (wall, mut lat) = load(request, per_round, len).await?;
            spent[slot] += wall;
            latencies[slot].append(&mut lat);
        }
    }
    let total = (per_round * rounds) as f64;
    let graphql_rps = total / spent[0].as_secs_f64();
    let plain_rps = total / spent[1].as_secs_f64();
    let ratio = graphql_rps / plain_rps;
    for lat in &mut latencies {
        lat.sort_unstable();
    }
    println!(
        "   GraphQL {graphql_rps:.0} req/s (p50 {}, p99 {}); plain {plain_rps:.0} req/s (p50 {}, p99 {}); ratio {ratio:.2}",
        ms(percentile(&latencies[0], 0.5)),
        ms(percentile(&latencies[0], 0.99)),
        ms(percentile(&latencies[1], 0.5)),
        ms(percentile(&latencies[1], 0.99)),
    );
    drop(api);
    Ok(vec![
        Row::info(
            B,
            "setup",
            format!(
                "{seeded} deployments seeded; {} requests per path in {rounds} alternating rounds, {CLIENTS} clients",
                per_round * rounds
            ),
        ),
        Row::info(
            B,
            "GraphQL deployments(first: 50)",
            format!(
                "{graphql_rps:.0} req/s (p50 {}, p99 {})",
                ms(percentile(&latencies[0], 0.5)),
                ms(percentile(&latencies[0], 0.99))
            ),
        ),
        Row::info(
            B,
            "plain JSON handler, same rows",
            format!(
                "{plain_rps:.0} req/s (p50 {}, p99 {})",
                ms(percentile(&latencies[1], 0.5)),
                ms(percentile(&latencies[1], 0.99))
            ),
        ),
        Row::target(B, "ratio GraphQL / plain", format!("{ratio:.2}"), "≥ 0.5", ratio >= 0.5),
    ])
}

//! Benchmarks of the API (issue 2), against the real server on 127.0.0.1 over a
//! temp-file SQLite database:
//!
//! - `list`: `deployments(first: 50)` over GraphQL against a plain axum JSON
//!   handler that reads the same rows with `deployments::list`;
//! - `queued`: from `createDeployment` answering to a `deploymentQueued`
//!   subscriber receiving the deployment;
//! - `logs`: `appendDeploymentLogs` in batches of 500 lines with 50 live
//!   `deploymentLogs` subscribers;
//! - `memory`: resident memory of the `slipway-api` process after 10,000
//!   deployments;
//! - `replicas`: two replicas on one PostgreSQL database: claims per second,
//!   and how fast a change reaches the other replica's subscribers.
//!
//! ```text
//! cargo bench -p slipway-api --bench api                 # everything
//! cargo bench -p slipway-api --bench api -- queued logs  # a subset
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-api --bench api   # a tenth of the counts
//! ```
//!
//! One bench binary, a module per bench.

mod list;
mod logs;
mod memory;
mod queued;
mod replicas;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slipway_api::applications::{self, NewApplication};
use slipway_api::deployments::NewDeployment;
use slipway_api::error::ApiError;
use slipway_testkit::api::{Options, TestApi};
use slipway_testkit::bench::{self, Row};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const RUNNER: &str = "bench-runner";
/// The longest any single wait (a response, a message, a start) may take.
const WAIT: Duration = Duration::from_secs(30);
/// Concurrent HTTP clients of the `list` and `memory` benches.
const CLIENTS: usize = 8;
const BENCHES: [&str; 5] = ["list", "queued", "logs", "memory", "replicas"];

const LIST_QUERY: &str = "query { deployments(first: 50) { edges { node { id name status ref \
     createdAt application { name } environment { name } } } } }";
const CREATE_DEPLOYMENT: &str = "mutation($input: CreateDeploymentInput!) { \
     createDeployment(input: $input) { id } }";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The counts of a run: full, or a tenth of them with `SLIPWAY_BENCH_QUICK`.
#[derive(Clone, Copy)]
struct Scale {
    quick: bool,
}

impl Scale {
    fn of(self, full: usize) -> usize {
        if self.quick {
            (full / 10).max(1)
        } else {
            full
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let selected = match bench::selected(&BENCHES) {
        Ok(selected) => selected,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let scale = Scale {
        quick: bench::quick(),
    };
    println!("{}", bench::banner("slipway-api", scale.quick));

    let mut rows = Vec::new();
    let mut failed = false;
    for name in selected {
        println!("\n== {name}");
        let result = match name {
            "list" => list::bench(scale).await,
            "queued" => queued::bench(scale).await,
            "logs" => logs::bench(scale).await,
            "memory" => memory::bench(scale).await,
            "replicas" => replicas::bench(scale).await,
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(mut found) => rows.append(&mut found),
            Err(err) => {
                failed = true;
                println!("   FAILED: {err:#}");
                rows.push(Row::target(
                    name,
                    "run",
                    format!("failed: {err:#}"),
                    "",
                    false,
                ));
            }
        }
    }
    bench::print_table("value", &rows);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The API under test, in process: on its own runtime, so that the load
/// generator (on the bench's runtime) and the server are scheduled like two
/// programs.
async fn start_api() -> Result<TestApi> {
    timeout(
        WAIT,
        TestApi::launch(Options {
            own_runtime: true,
            logs: false,
            ..Options::default()
        }),
    )
    .await
    .context("the API did not start in time")
}

fn api_err(err: ApiError) -> anyhow::Error {
    anyhow!("{}: {}", err.code(), err.message())
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(WAIT)
        .connect_timeout(WAIT)
        .pool_max_idle_per_host(64)
        .build()?)
}

/// Posts a GraphQL operation; returns `data`, or fails on any error.
async fn graphql(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value> {
    let response = client
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?;
    let status = response.status();
    let mut body: Value = response.json().await?;
    if !status.is_success() || body.get("errors").is_some() {
        bail!("GraphQL answered {status}: {body}");
    }
    Ok(body["data"].take())
}

/// Opens a `graphql-transport-ws` socket authenticated with `token` and
/// starts the subscription `query` with id "1".
async fn subscribe(addr: SocketAddr, token: &str, query: &str) -> Result<Socket> {
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before
    // every read: a small one keeps the bench's own share of the CPU small.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut socket, _) = timeout(WAIT, connect)
        .await
        .context("WebSocket connect timed out")??;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    socket.send(Message::text(init.to_string())).await?;
    loop {
        let Some(text) = next_text(&mut socket).await? else {
            bail!("the socket closed before connection_ack");
        };
        let message: Value = serde_json::from_str(&text)?;
        match message["type"].as_str() {
            Some("connection_ack") => break,
            Some("ping") | Some("pong") | Some("ka") => continue,
            _ => bail!("unexpected message before connection_ack: {message}"),
        }
    }
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(socket)
}

/// The next text message, `None` once the socket is closed; fails after [`WAIT`].
async fn next_text(socket: &mut Socket) -> Result<Option<String>> {
    loop {
        match timeout(WAIT, socket.next()).await {
            Err(_) => bail!("no WebSocket message within {WAIT:?}"),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return Ok(None),
            Ok(Some(Err(err))) => return Err(err.into()),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(Some(text.as_str().to_owned())),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn create_application(api: &TestApi, name: &str) -> Result<()> {
    let state = api.state.clone();
    let input = NewApplication {
        name: name.to_owned(),
        repository: format!("https://git.example.com/bench/{name}.git"),
        spec_path: None,
    };
    api.run(async move { applications::create(&state, input).await })
        .await
        .map_err(api_err)?;
    Ok(())
}

fn new_deployment(application: &str, environment: &str, i: usize) -> NewDeployment {
    NewDeployment {
        application: application.to_owned(),
        environment: environment.to_owned(),
        ref_name: format!("refs/heads/feature-{i}"),
        ..Default::default()
    }
}

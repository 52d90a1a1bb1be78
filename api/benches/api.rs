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
//!   deployments.
//!
//! ```text
//! cargo bench -p slipway-api --bench api                 # everything
//! cargo bench -p slipway-api --bench api -- queued logs  # a subset
//! SLIPWAY_BENCH_QUICK=1 cargo bench -p slipway-api --bench api   # a tenth of the counts
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use slipway_api::applications::{self, NewApplication};
use slipway_api::auth::{Keys, Role};
use slipway_api::deployments::{self, Filter, NewDeployment};
use slipway_api::error::ApiError;
use slipway_api::{db, leases, AppState, Clock, Settings};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &str = "slipway-bench-secret-0123456789abcdef";
const RUNNER: &str = "bench-runner";
/// The longest any single wait (a response, a message, a start) may take.
const WAIT: Duration = Duration::from_secs(30);
/// Concurrent HTTP clients of the `list` and `memory` benches.
const CLIENTS: usize = 8;
const BENCHES: [&str; 4] = ["list", "queued", "logs", "memory"];

const LIST_QUERY: &str = "query { deployments(first: 50) { edges { node { id name status ref \
     createdAt application { name } environment { name } } } } }";
const CREATE_DEPLOYMENT: &str = "mutation($input: CreateDeploymentInput!) { \
     createDeployment(input: $input) { id } }";
const APPEND_LOGS: &str = "mutation($id: ID!, $lines: [LogLineInput!]!) { \
     appendDeploymentLogs(id: $id, lines: $lines) { logCount } }";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One line of the final table.
struct Row {
    bench: &'static str,
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn info(bench: &'static str, metric: impl Into<String>, value: impl Into<String>) -> Self {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            met: None,
        }
    }

    fn target(
        bench: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Row {
            bench,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            met: Some(met),
        }
    }
}

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
    // `cargo bench` passes `--bench`; every other word names a bench to run.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !BENCHES.contains(&w.as_str())) {
        eprintln!(
            "unknown bench `{unknown}`; choose among {} (none: all)",
            BENCHES.join(", ")
        );
        return ExitCode::from(2);
    }
    let selected = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let scale = Scale {
        quick: std::env::var("SLIPWAY_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0"),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "slipway-api benchmarks: {cores} cores, {} counts{}",
        if scale.quick { "quick (1/10)" } else { "full" },
        if cfg!(debug_assertions) {
            " — DEBUG BUILD, figures are meaningless"
        } else {
            ""
        }
    );

    let mut rows = Vec::new();
    let mut failed = false;
    for name in BENCHES.into_iter().filter(|name| selected(name)) {
        println!("\n== {name}");
        let result = match name {
            "list" => bench_list(scale).await,
            "queued" => bench_queued(scale).await,
            "logs" => bench_logs(scale).await,
            "memory" => bench_memory(scale).await,
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
    print_table(&rows);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(rows: &[Row]) {
    let headers = ["bench", "metric", "value", "target", "met"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.to_owned(),
                r.metric.clone(),
                r.value.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

// ---------------------------------------------------------------------------
// The API under test, in process: its own runtime, so that the load generator
// (on the bench's runtime) and the server are scheduled like two programs.

struct Api {
    rt: Option<Runtime>,
    state: AppState,
    keys: Keys,
    addr: SocketAddr,
    /// The plain JSON handler of the `list` bench, when asked for.
    plain: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start(with_plain: bool) -> Result<Api> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("api-under-test")
            .enable_all()
            .build()?;
        let dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("slipway.db").display()
        );
        let keys = Keys::new(SECRET.as_bytes());
        let (stop, stopped) = oneshot::channel::<()>();
        let server_keys = keys.clone();
        let started = rt.spawn(async move {
            let db = db::connect(&url).await?;
            db::migrate(&db).await?;
            let state = AppState::new(db, server_keys, Clock::system(), Settings::default());
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let served = tokio::spawn(slipway_api::serve(state.clone(), listener, async {
                let _ = stopped.await;
            }));
            let plain = if with_plain {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let app = Router::new()
                    .route("/deployments", get(plain_deployments))
                    .with_state(state.clone());
                tokio::spawn(async move { axum::serve(listener, app).await });
                Some(addr)
            } else {
                None
            };
            anyhow::Ok((state, addr, plain, served))
        });
        let (state, addr, plain, served) = timeout(WAIT, started)
            .await
            .context("the API did not start in time")???;
        Ok(Api {
            rt: Some(rt),
            state,
            keys,
            addr,
            plain,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        })
    }

    /// Runs `work` on the server's runtime (seeding, setup).
    async fn run<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("running");
        Ok(timeout(Duration::from_secs(600), rt.spawn(work))
            .await
            .context("setup took more than 10 minutes")??)
    }

    fn token(&self, subject: &str, role: Role) -> String {
        token(&self.keys, subject, role)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = timeout(Duration::from_secs(5), served).await;
        }
        let db = self.state.db.clone();
        let _ = timeout(Duration::from_secs(5), self.run(db.close())).await;
        // Dropping shuts the runtime down.
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn token(keys: &Keys, subject: &str, role: Role) -> String {
    keys.issue(
        subject,
        role,
        chrono::Duration::hours(4),
        chrono::Utc::now(),
    )
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

async fn create_application(api: &Api, name: &str) -> Result<()> {
    let state = api.state.clone();
    let input = NewApplication {
        name: name.to_owned(),
        repository: format!("https://git.example.com/bench/{name}.git"),
        spec_path: None,
    };
    api.run(async move { applications::create(&state, input).await })
        .await?
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

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn thousands(n: f64) -> String {
    let n = n.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// 1. deployments(first: 50): GraphQL against a plain JSON handler.

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

async fn bench_list(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "list";
    let seeded = scale.of(2000);
    let requests = scale.of(2000);
    let rounds = 10;
    let api = Api::start(true).await?;
    let plain_addr = api.plain.expect("asked for");

    // Seed: 4 applications × 5 environments, created through the domain code.
    let started = Instant::now();
    for app in 0..4 {
        create_application(&api, &format!("app-{app}")).await?;
    }
    let state = api.state.clone();
    api.run(async move {
        for i in 0..seeded {
            let input = new_deployment(&format!("app-{}", i % 4), &format!("env-{}", i % 5), i);
            deployments::create(&state, "bench-seed", input)
                .await
                .map_err(api_err)?;
        }
        anyhow::Ok(())
    })
    .await??;
    println!(
        "   seeded {seeded} deployments over 4 applications × 5 environments in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let client = http_client()?;
    let token = api.token("bench-viewer", Role::Viewer);
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
    api.shutdown().await;
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

// ---------------------------------------------------------------------------
// 2. createDeployment answered → deploymentQueued received.

async fn bench_queued(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "queued";
    let count = scale.of(1000);
    let warm = 20;
    let api = Api::start(false).await?;
    create_application(&api, "queued").await?;
    let client = http_client()?;
    let deployer = api.token("bench-deployer", Role::Deployer);

    let mut socket = subscribe(
        api.addr,
        &api.token(RUNNER, Role::Runner),
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
    api.shutdown().await;

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

// ---------------------------------------------------------------------------
// 3. appendDeploymentLogs, 500 lines a batch, with live followers.

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
async fn claimed_deployment(api: &Api, environment: &str) -> Result<i64> {
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
    .await?
}

async fn bench_logs(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "logs";
    const PER_BATCH: usize = 500;
    let batches = scale.of(100);
    let followers = 50;
    let lines = (batches * PER_BATCH) as f64;
    let api = Api::start(false).await?;
    create_application(&api, "logs").await?;
    let client = http_client()?;
    let runner = api.token(RUNNER, Role::Runner);

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
    let viewer = api.token("bench-viewer", Role::Viewer);
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
    api.shutdown().await;

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

// ---------------------------------------------------------------------------
// 4. Resident memory of the API process after 10,000 deployments.

/// The spawned API; killed when dropped.
struct ApiProcess(Child);

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `slipway-api` of the same profile as this bench.
fn api_binary() -> Result<PathBuf> {
    // Cargo builds the package's binaries for its benches and says where.
    if let Some(path) = option_env!("CARGO_BIN_EXE_slipway-api") {
        if Path::new(path).exists() {
            return Ok(path.into());
        }
    }
    // target/<profile>/deps/api-<hash> → target/<profile>/slipway-api
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench executable has no target/<profile> directory")?;
    let path = profile_dir.join(format!("slipway-api{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} is missing: build it with `cargo build --release -p slipway-api`",
            path.display()
        )
    }
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn bench_memory(scale: Scale) -> Result<Vec<Row>> {
    const B: &str = "memory";
    let count = scale.of(10_000);
    let applications = 5;
    let environments = 20;
    let binary = api_binary()?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log_path = dir.path().join("api.log");
    let child = Command::new(&binary)
        .env("SLIPWAY_JWT_SECRET", SECRET)
        .env(
            "SLIPWAY_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("slipway.db").display()
            ),
        )
        .env("SLIPWAY_LISTEN", addr.to_string())
        .env("SLIPWAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut process = ApiProcess(child);
    let pid = process.0.id();
    let log_tail = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log[start..].to_owned()
    };

    let client = http_client()?;
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = process.0.try_wait()? {
            bail!("the API exited with {status}: {}", log_tail());
        }
        let ready = client
            .get(format!("http://{addr}/readyz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("the API was not ready within {WAIT:?}: {}", log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (idle_rss, _) = memory_of(pid)?;

    let keys = Keys::new(SECRET.as_bytes());
    let admin = token(&keys, "bench-admin", Role::Admin);
    let deployer = token(&keys, "bench-deployer", Role::Deployer);
    for app in 0..applications {
        graphql(
            &client,
            addr,
            &admin,
            "mutation($name: String!, $repo: String!) { createApplication(input: {name: $name, repository: $repo}) { id } }",
            json!({"name": format!("mem-{app}"), "repo": format!("https://git.example.com/mem-{app}.git")}),
        )
        .await?;
    }
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<JoinHandle<Result<()>>> = (0..CLIENTS)
        .map(|_| {
            let (client, deployer, next) = (client.clone(), deployer.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    let input = json!({
                        "application": format!("mem-{}", i % applications),
                        "environment": format!("env-{}", (i / applications) % environments),
                        "ref": format!("refs/heads/feature-{i}"),
                        "sha": format!("{:040x}", i * 2_654_435_761),
                        "description": format!("bench deployment {i}"),
                    });
                    graphql(
                        &client,
                        addr,
                        &deployer,
                        CREATE_DEPLOYMENT,
                        json!({"input": input}),
                    )
                    .await?;
                }
            })
        })
        .collect();
    for worker in workers {
        timeout(Duration::from_secs(600), worker)
            .await
            .context("creating deployments took more than 10 minutes")???;
    }
    let create_time = started.elapsed();
    // Read them back too, as a dashboard would.
    let viewer = token(&keys, "bench-viewer", Role::Viewer);
    for _ in 0..100 {
        graphql(&client, addr, &viewer, LIST_QUERY, json!({})).await?;
    }
    let (rss, hwm) = memory_of(pid)?;
    if let Some(status) = process.0.try_wait()? {
        bail!("the API exited with {status}: {}", log_tail());
    }
    drop(process);

    let rate = count as f64 / create_time.as_secs_f64();
    println!(
        "   {}: idle {}; after {count} deployments (+100 list queries) VmRSS {}, peak (VmHWM) {}",
        binary.display(),
        mib(idle_rss),
        mib(rss),
        mib(hwm)
    );
    println!(
        "   created {count} deployments over HTTP in {:.1} s = {rate:.0}/s with {CLIENTS} clients",
        create_time.as_secs_f64()
    );
    let limit = 64 * 1024;
    Ok(vec![
        Row::info(
            B,
            "setup",
            format!(
                "separate process; {count} createDeployment over HTTP, {applications} apps × {environments} envs, {CLIENTS} clients"
            ),
        ),
        Row::info(B, "VmRSS idle", mib(idle_rss)),
        Row::target(
            B,
            format!("VmRSS after {count} deployments"),
            mib(rss),
            "< 64 MiB",
            rss < limit,
        ),
        Row::info(B, "VmHWM (peak RSS)", mib(hwm)),
        Row::info(
            B,
            "createDeployment throughput",
            format!("{rate:.0}/s"),
        ),
    ])
}

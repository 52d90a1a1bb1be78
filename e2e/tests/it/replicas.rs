//! Two `slipway-api` processes on one PostgreSQL database are one API: a
//! thousand deployments over fifty environments, created through both, are
//! each claimed exactly once by three runners connected to either, and
//! every subscriber of either sees every change, in order, even after one
//! API is killed with SIGKILL mid-stream (its clients go on with the other,
//! replaying the event log from the last event they saw).
//!
//! The runners here are GraphQL clients doing what `slipway-runner` does
//! with a deployment (subscribe, claim, report, finish) without a swarm
//! behind them: a thousand rollouts would take the swarm an hour.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use slipway_e2e::system::{mint, start_api_on};
use slipway_testkit::process::Process;
use slipway_testkit::{free_port, wait};

const ENVIRONMENTS: usize = 50;
const DEPLOYMENTS: usize = 1000;
const RUNNERS: usize = 3;
const SUBSCRIBERS_PER_API: usize = 2;
/// Which deployment's creation the first API is killed before.
const KILL_AT: usize = DEPLOYMENTS / 2;
const WITHIN: Duration = Duration::from_secs(600);

/// Where `SLIPWAY_TEST_POSTGRES_URL` points when it is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://root@%2Fvar%2Frun%2Fpostgresql/postgres";

/// Runs `sql` with psql on `url`; its rows, one per line, `|` between columns.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-Atqc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}; PostgreSQL is needed: run scripts/test.sh, which starts it",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh database on the test server; its URL.
fn fresh_database() -> String {
    let admin =
        std::env::var("SLIPWAY_TEST_POSTGRES_URL").unwrap_or(DEFAULT_POSTGRES_URL.to_owned());
    let name = format!(
        "slipway_test_replicas_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
}

/// What a GraphQL request over HTTP came to.
enum Answer {
    Data(Value),
    Errors(Value),
    /// The API did not answer: down, or killed while answering.
    Unreachable,
}

/// The two APIs, as clients see them: by index, 0 and 1.
struct Replicas {
    urls: [String; 2],
    http: reqwest::Client,
}

impl Replicas {
    async fn call(&self, on: usize, token: &str, query: &str, variables: Value) -> Answer {
        let response = self
            .http
            .post(format!("{}/graphql", self.urls[on]))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await;
        let Ok(response) = response else {
            return Answer::Unreachable;
        };
        let Ok(body) = response.json::<Value>().await else {
            return Answer::Unreachable;
        };
        match body.get("errors") {
            Some(errors) => Answer::Errors(errors.clone()),
            None => Answer::Data(body["data"].clone()),
        }
    }

    /// `call` on replica `*on`, and on the other one when it does not
    /// answer (`*on` follows); `None` when neither answers.
    async fn call_either(
        &self,
        on: &AtomicUsize,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, Value> {
        for _ in 0..20 {
            let at = on.load(Ordering::Relaxed);
            match self.call(at, token, query, variables.clone()).await {
                Answer::Data(data) => return Ok(data),
                Answer::Errors(errors) => return Err(errors),
                Answer::Unreachable => {
                    let _ = on.compare_exchange(at, 1 - at, Ordering::Relaxed, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("neither API answers {query}");
    }

    fn ws_url(&self, on: usize) -> String {
        format!("{}/graphql/ws", self.urls[on].replacen("http", "ws", 1))
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` socket on `url` running `query`; `None` when
/// the API does not answer.
async fn subscribe(url: &str, token: &str, query: &str, variables: Value) -> Option<Socket> {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    socket.send(Message::text(init.to_string())).await.ok()?;
    loop {
        let message = next_json(&mut socket).await?;
        if message["type"] == "connection_ack" {
            break;
        }
    }
    let start = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}});
    socket.send(Message::text(start.to_string())).await.ok()?;
    Some(socket)
}

/// The next JSON message; `None` once the socket ended.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next subscription item's `data`; `None` once the socket or the
/// subscription ended. An error item fails the test: none is expected.
async fn next_item(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = next_json(socket).await?;
        match message["type"].as_str() {
            Some("next") => {
                let payload = &message["payload"];
                assert!(payload.get("errors").is_none(), "an error item: {payload}");
                return Some(payload["data"].clone());
            }
            Some("complete" | "error") => return None,
            _ => continue,
        }
    }
}

/// One change as a subscriber saw it: (event id, deployment, status).
type Seen = (i64, String, String);

/// Follows the deployment events of `shop` from the start of the log,
/// starting on replica `start`, going on with the other one whenever its
/// socket ends (after the last event seen), until `stop`. Returns what it
/// saw and how many times it connected again.
async fn subscriber(
    replicas: Arc<Replicas>,
    token: String,
    start: usize,
    finals: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<Seen>, usize) {
    const EVENTS: &str = "subscription($after: ID) { deploymentEvents(application: \"shop\", afterEvent: $after) { id status eventId } }";
    let (mut on, mut after, mut reconnects) = (start, 0_i64, 0);
    let mut seen = Vec::new();
    let mut finished = HashSet::new();
    loop {
        let url = replicas.ws_url(on);
        let socket = subscribe(&url, &token, EVENTS, json!({"after": after.to_string()}));
        if let Some(mut socket) = socket.await {
            loop {
                let item = tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return (seen, reconnects),
                    item = next_item(&mut socket) => item,
                };
                let Some(item) = item else { break };
                let d = &item["deploymentEvents"];
                let event: i64 = d["eventId"].as_str().unwrap().parse().unwrap();
                let id = d["id"].as_str().unwrap().to_owned();
                let status = d["status"].as_str().unwrap().to_owned();
                after = event;
                if status == "SUCCEEDED" && finished.insert(id.clone()) {
                    let _ = finals.send(());
                }
                seen.push((event, id, status));
            }
        }
        if *stop.borrow() {
            return (seen, reconnects);
        }
        // The socket ended: the other API, from the last event seen.
        reconnects += 1;
        on = 1 - on;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Does with every deployment it is offered, or finds claimable, what a
/// runner does: claim, report, finish. Records each deployment it claimed.
async fn runner(
    replicas: Arc<Replicas>,
    name: String,
    token: String,
    start: usize,
    claims: Arc<Mutex<HashMap<String, Vec<String>>>>,
    mut stop: watch::Receiver<bool>,
) {
    let on = Arc::new(AtomicUsize::new(start));
    let (offered, mut offers) = mpsc::unbounded_channel::<String>();
    let listening = tokio::spawn({
        let (replicas, token, on) = (replicas.clone(), token.clone(), on.clone());
        async move {
            loop {
                let at = on.load(Ordering::Relaxed);
                let url = replicas.ws_url(at);
                let socket = subscribe(
                    &url,
                    &token,
                    "subscription { deploymentQueued { id } }",
                    json!({}),
                );
                match socket.await {
                    Some(mut socket) => {
                        while let Some(item) = next_item(&mut socket).await {
                            let id = item["deploymentQueued"]["id"].as_str().unwrap();
                            let _ = offered.send(id.to_owned());
                        }
                    }
                    None => {
                        let _ =
                            on.compare_exchange(at, 1 - at, Ordering::Relaxed, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    // What it missed while not listening, as a runner reads it.
    let mut look = tokio::time::interval(Duration::from_millis(500));
    loop {
        let ids = tokio::select! {
            // It only ever changes to stop.
            _ = stop.changed() => break,
            Some(id) = offers.recv() => vec![id],
            _ = look.tick() => {
                match replicas
                    .call_either(&on, &token, "{ claimableDeployments { id } }", json!({}))
                    .await
                {
                    Ok(data) => data["claimableDeployments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d["id"].as_str().unwrap().to_owned())
                        .collect(),
                    Err(errors) => panic!("claimableDeployments: {errors}"),
                }
            }
        };
        for id in ids {
            take(&replicas, &on, &name, &token, &id, &claims).await;
        }
    }
    listening.abort();
}

/// Claims `id` and runs it to SUCCEEDED, unless another runner has it.
/// A request that got no answer is sent again to the other API: a claim
/// sent again by its holder gets the deployment back.
async fn take(
    replicas: &Replicas,
    on: &AtomicUsize,
    name: &str,
    token: &str,
    id: &str,
    claims: &Mutex<HashMap<String, Vec<String>>>,
) {
    let claim = replicas
        .call_either(
            on,
            token,
            "mutation($id: ID!) { claimDeployment(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    if let Err(errors) = claim {
        assert_eq!(errors[0]["extensions"]["code"], "CONFLICT", "{errors}");
        return;
    }
    claims
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push(name.to_owned());
    replicas
        .call_either(
            on,
            token,
            "mutation($id: ID!) { updateDeploymentProgress(id: $id, phase: UPDATING, message: \"rolling out\") { id } }",
            json!({"id": id}),
        )
        .await
        .unwrap_or_else(|errors| panic!("progress of {id}: {errors}"));
    let finish = replicas
        .call_either(
            on,
            token,
            "mutation($id: ID!) { finishDeployment(id: $id, status: SUCCEEDED, message: \"done\") { id } }",
            json!({"id": id}),
        )
        .await;
    if let Err(errors) = finish {
        // Sent again after its answer was lost: it did finish.
        let message = errors[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("SUCCEEDED"), "finish of {id}: {errors}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_on_one_postgres_claim_each_deployment_once_and_tell_every_subscriber_everything()
{
    let database = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, "e2e-jwt-secret-0123456789abcdef\n").unwrap();
    let ports = [free_port(), free_port()];
    let mut apis: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| start_api_on(dir.path(), &format!("slipway-api-{i}"), *port, &database))
        .collect();
    let replicas = Arc::new(Replicas {
        urls: ports.map(|port| format!("http://127.0.0.1:{port}")),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    });
    let admin = mint(&secret, "admin", "e2e-admin");
    for on in 0..2 {
        wait::until("the API to answer", Duration::from_secs(30), || async {
            match replicas
                .call(on, &admin, "{ applications { name } }", json!({}))
                .await
            {
                Answer::Data(_) => Ok(()),
                Answer::Errors(errors) => Err(errors.to_string()),
                Answer::Unreachable => Err("no answer".to_owned()),
            }
        })
        .await;
    }
    let created = replicas
        .call(
            0,
            &admin,
            "mutation { createApplication(input: {name: \"shop\", repository: \"file:///srv/git/shop.git\"}) { name } }",
            json!({}),
        )
        .await;
    assert!(
        matches!(created, Answer::Data(_)),
        "the application is created"
    );

    let (stop, stopped) = watch::channel(false);
    let (finals, mut finished) = mpsc::unbounded_channel();
    let viewer = mint(&secret, "viewer", "e2e-viewer");
    let subscribers: Vec<_> = (0..2 * SUBSCRIBERS_PER_API)
        .map(|i| {
            tokio::spawn(subscriber(
                replicas.clone(),
                viewer.clone(),
                i % 2,
                finals.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let claims = Arc::new(Mutex::new(HashMap::new()));
    let runners: Vec<_> = (0..RUNNERS)
        .map(|i| {
            let name = format!("runner-{i}");
            tokio::spawn(runner(
                replicas.clone(),
                name.clone(),
                mint(&secret, "runner", &name),
                i % 2,
                claims.clone(),
                stopped.clone(),
            ))
        })
        .collect();

    let deployer = mint(&secret, "deployer", "e2e-deployer");
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..DEPLOYMENTS {
        if n == KILL_AT {
            apis[0].kill();
        }
        // Through both APIs in turn, then the one left.
        let on = if n < KILL_AT { n % 2 } else { 1 };
        let answer = replicas
            .call(
                on,
                &deployer,
                "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }",
                json!({"input": {"application": "shop", "environment": format!("env-{}", n % ENVIRONMENTS), "ref": "main"}}),
            )
            .await;
        match answer {
            Answer::Data(data) => {
                ids.push(data["createDeployment"]["id"].as_str().unwrap().to_owned())
            }
            Answer::Errors(errors) => panic!("deployment {n}: {errors}"),
            Answer::Unreachable => panic!("deployment {n}: API {on} does not answer"),
        }
    }

    // Every subscriber sees every deployment succeed.
    let everyone = 2 * SUBSCRIBERS_PER_API * DEPLOYMENTS;
    for count in 0..everyone {
        tokio::time::timeout(WITHIN.saturating_sub(started.elapsed()), finished.recv())
            .await
            .unwrap_or_else(|_| panic!("{count} of {everyone} successes seen in {WITHIN:?}"));
    }
    // Whatever else happened to them arrives too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send_replace(true);
    for runner in runners {
        runner.await.unwrap();
    }
    eprintln!(
        "replicas: {DEPLOYMENTS} deployments over {ENVIRONMENTS} environments run in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Each ran once, to the end, by the one runner that claimed it.
    let statuses = psql(
        &database,
        "SELECT status, count(*) FROM deployments GROUP BY status",
    );
    assert_eq!(statuses.trim(), format!("SUCCEEDED|{DEPLOYMENTS}"));
    let claims = claims.lock().unwrap().clone();
    let held: HashMap<String, String> = psql(&database, "SELECT id, runner FROM deployments")
        .lines()
        .map(|line| {
            let (id, runner) = line.split_once('|').unwrap();
            (id.to_owned(), runner.to_owned())
        })
        .collect();
    for id in &ids {
        let by = claims.get(id).cloned().unwrap_or_default();
        assert_eq!(by.len(), 1, "deployment {id} claimed by {by:?}");
        assert_eq!(held[id], by[0], "deployment {id}");
    }

    // Every subscriber saw every change, once, each deployment's in order.
    let log: Vec<Seen> = psql(
        &database,
        "SELECT id, deployment_id, status FROM events WHERE kind = 'deployment' ORDER BY id",
    )
    .lines()
    .map(|line| {
        let mut columns = line.split('|');
        let mut next = || columns.next().unwrap().to_owned();
        (next().parse().unwrap(), next(), next())
    })
    .collect();
    let mut reconnected = 0;
    for (i, subscriber) in subscribers.into_iter().enumerate() {
        let (seen, reconnects) = subscriber.await.unwrap();
        reconnected += reconnects;
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(
            sorted.len(),
            log.len(),
            "subscriber {i} saw {} events, the log has {}",
            seen.len(),
            log.len()
        );
        assert_eq!(sorted, log, "subscriber {i} saw the log's events");
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        for (event, id, _) in &seen {
            let before = last.insert(id, *event).unwrap_or(0);
            assert!(
                before < *event,
                "subscriber {i}: deployment {id}'s event {event} after {before}"
            );
        }
    }
    assert!(
        reconnected >= SUBSCRIBERS_PER_API,
        "the first API's subscribers went on with the other ({reconnected} reconnections)"
    );
    drop(apis);
}

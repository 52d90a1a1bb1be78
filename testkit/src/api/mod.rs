//! The real API in-process: `slipway_api::serve` on 127.0.0.1 over a real
//! database, ready once `/healthz` answers, stopped and awaited when dropped;
//! tokens for any role, GraphQL over HTTP and WebSocket, and the fixtures
//! tests need.

mod db;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{AppState, Clock, Listeners, Settings};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};

pub use db::{Backend, TestDb};
pub use ws::{Closed, Ws};

use crate::prometheus::Scrape;
use crate::running::Running;
use crate::wait;

/// The JWT secret of every `TestApi`, for tests that make tokens themselves.
pub const SECRET: &[u8] = b"slipway-tests-secret-0123456789";

/// How long the API may take to answer after it was started.
const START_WITHIN: Duration = Duration::from_secs(10);

/// How long minted tokens hold: longer than any test or bench runs.
fn token_ttl() -> chrono::Duration {
    chrono::Duration::hours(4)
}

/// How a `TestApi` is started.
pub struct Options {
    pub backend: Backend,
    pub clock: Clock,
    pub settings: Settings,
    /// Serve on a runtime of the API's own, so that a bench's load (on the
    /// caller's runtime) and the server are scheduled like two programs.
    pub own_runtime: bool,
    /// Send the warnings of Slipway's crates to the test's output (benches
    /// keep their output for figures).
    pub logs: bool,
    /// Serve Prometheus metrics on a listener of their own
    /// ([`TestApi::metrics_addr`]).
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            clock: Clock::system(),
            settings: Settings::default(),
            own_runtime: false,
            logs: true,
            metrics: false,
        }
    }
}

/// What a `TestApi` serves with, kept across restarts.
struct Served {
    clock: Clock,
    settings: Settings,
    logs: bool,
    metrics: bool,
}

/// A running API.
pub struct TestApi {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served, with [`Options::metrics`].
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    pub db: TestDb,
    /// `None` once stopped.
    server: Option<Running>,
    /// The API's own runtime, with [`Options::own_runtime`].
    runtime: Option<Runtime>,
    logs: bool,
    http: reqwest::Client,
    /// Files of what works with this API (runners' workdirs), kept across
    /// restarts; `None` only while being handed on.
    scratch: Option<tempfile::TempDir>,
}

impl TestApi {
    /// The API over a fresh database of `backend`.
    pub async fn start(backend: Backend) -> TestApi {
        Self::start_with(backend, Clock::system(), Settings::default()).await
    }

    pub async fn start_with(backend: Backend, clock: Clock, settings: Settings) -> TestApi {
        Self::launch(Options {
            backend,
            clock,
            settings,
            ..Options::default()
        })
        .await
    }

    pub async fn launch(options: Options) -> TestApi {
        let runtime = options.own_runtime.then(own_runtime);
        let db = TestDb::new(options.backend).await;
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let served = Served {
            clock: options.clock,
            settings: options.settings,
            logs: options.logs,
            metrics: options.metrics,
        };
        Self::serve(db, served, runtime, scratch).await
    }

    async fn serve(
        db: TestDb,
        served: Served,
        runtime: Option<Runtime>,
        scratch: tempfile::TempDir,
    ) -> TestApi {
        let Served {
            clock,
            settings,
            logs,
            metrics,
        } = served;
        if logs {
            // Slipway's warnings and errors go to the test's output.
            let _ = tracing_subscriber::fmt()
                .with_env_filter("slipway_api=warn,slipway_provider=debug,slipway_runner=info")
                .with_test_writer()
                .try_init();
        }
        let on = runtime
            .as_ref()
            .map_or_else(Handle::current, |rt| rt.handle().clone());
        let url = db.url.clone();
        let started = on.spawn(async move {
            let (conn, _) = slipway_api::db::open(&url).await.expect("open and migrate");
            let state = AppState::new(conn, Keys::new(SECRET), clock, settings);
            let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let metrics = match metrics {
                true => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")),
                false => None,
            };
            (state, Listeners { api, metrics })
        });
        let (state, listeners) = started.await.expect("the API's start-up");
        let addr = listeners.api.local_addr().expect("addr");
        let metrics_addr = listeners
            .metrics
            .as_ref()
            .map(|listener| listener.local_addr().expect("addr"));
        let server = Running::spawn("the API", &on, {
            let state = state.clone();
            |stopped| async move {
                slipway_api::serve(state, listeners, stopped.wait())
                    .await
                    .expect("serve");
            }
        });
        let api = TestApi {
            addr,
            metrics_addr,
            state,
            db,
            server: Some(server),
            runtime,
            logs,
            http: reqwest::Client::new(),
            scratch: Some(scratch),
        };
        // `serve` does its start-up work (renewing leases) before it answers.
        wait::until_every(
            Duration::from_millis(10),
            "the API to answer /healthz",
            START_WITHIN,
            || async { api.http.get(api.url("/healthz")).send().await.map(|_| ()) },
        )
        .await;
        api
    }

    /// Another replica of this API: a second server on the same database
    /// (PostgreSQL, which replicas share), with the same clock and settings,
    /// on a runtime of its own if this one has one.
    pub async fn replica(&self) -> TestApi {
        let runtime = self.runtime.is_some().then(own_runtime);
        let served = Served {
            clock: self.state.clock.clone(),
            settings: (*self.state.settings).clone(),
            logs: self.logs,
            metrics: false,
        };
        let db = TestDb::beside(&self.db);
        let scratch = tempfile::tempdir().expect("a scratch directory");
        Self::serve(db, served, runtime, scratch).await
    }

    /// Stops this API's server and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApi {
        if let Some(mut server) = self.server.take() {
            server.stop().await;
        }
        let served = Served {
            clock: self.state.clock.clone(),
            settings: (*self.state.settings).clone(),
            logs: self.logs,
            metrics: self.metrics_addr.is_some(),
        };
        self.state.db.clone().close().await.ok();
        let db = std::mem::replace(&mut self.db, TestDb::handed_on());
        let runtime = self.runtime.take();
        let scratch = self.scratch.take().expect("a scratch directory");
        Self::serve(db, served, runtime, scratch).await
    }

    /// `GET /metrics` on the metrics listener, parsed as Prometheus parses
    /// it; the API must have been started with [`Options::metrics`].
    pub async fn scrape(&self) -> Scrape {
        let addr = self.metrics_addr.expect("the API serves metrics");
        crate::prometheus::scrape(&self.http, addr).await
    }

    /// A directory that lives as long as this API, across restarts: for the
    /// files of what works with it.
    pub fn scratch(&self) -> &std::path::Path {
        self.scratch.as_ref().expect("a scratch directory").path()
    }

    /// Runs `work` on the server's runtime (seeding, setup) and returns its
    /// output.
    pub async fn run<F, T>(&self, work: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let on = self
            .runtime
            .as_ref()
            .map_or_else(Handle::current, |rt| rt.handle().clone());
        on.spawn(work).await.expect("work on the API's runtime")
    }

    /// A token for `role` with `subject`, signed with [`SECRET`].
    pub fn token(&self, role: Role, subject: &str) -> String {
        self.state
            .keys
            .issue(subject, role, token_ttl(), chrono::Utc::now())
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADDR`, the API's root URL for its clients.
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// Posts a GraphQL request; `Err` when it could not be sent or answered.
    pub async fn post(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<(reqwest::StatusCode, Value), reqwest::Error> {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// Posts a GraphQL request and returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post(token, query, variables)
            .await
            .expect("POST /graphql answers JSON");
        assert!(status.is_success(), "POST /graphql answered {status}");
        body
    }

    /// Like [`TestApi::gql`], but the request must succeed; returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.gql(Some(token), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// [`TestApi::ok`] with a token for `role` whose subject is the role's name.
    pub async fn ok_as(&self, role: Role, query: &str, variables: Value) -> Value {
        self.ok(&self.token(role, role.as_str()), query, variables)
            .await
    }

    /// `data` of a request that must succeed; `Err` saying why it did not,
    /// for benches that report failures instead of panicking.
    pub async fn try_ok(
        &self,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, String> {
        let (status, body) = self
            .post(Some(token), query, variables)
            .await
            .map_err(|err| format!("POST /graphql: {err}"))?;
        if !status.is_success() || body.get("errors").is_some() {
            return Err(format!("GraphQL answered {status}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// The request must fail; returns the first error's (code, message).
    pub async fn err(&self, token: &str, query: &str, variables: Value) -> (String, String) {
        let body = self.gql(Some(token), query, variables).await;
        error_of(&body)
    }

    /// Posts a query with a raw `Authorization` header value.
    pub async fn http_raw_auth(&self, authorization: &str, query: &str) -> Value {
        self.http
            .post(self.url("/graphql"))
            .header("Authorization", authorization)
            .json(&json!({"query": query}))
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("JSON answer")
    }

    /// Opens an authenticated graphql-transport-ws connection.
    pub async fn ws(&self, token: &str) -> Ws {
        Ws::connect(
            self,
            "graphql-transport-ws",
            json!({"authorization": format!("Bearer {token}")}),
        )
        .await
        .expect("connection_ack")
    }

    // Shortcuts for the fixtures tests need.

    /// Application `name` of a repository nobody fetches.
    pub async fn create_app(&self, name: &str) {
        self.app(name, "file:///srv/git/app.git", &[]).await;
    }

    /// Application `name` of `repository`, with environments
    /// `(name, autoDeployRef, url)`.
    pub async fn app(
        &self,
        name: &str,
        repository: &str,
        environments: &[(&str, Option<&str>, Option<&str>)],
    ) {
        self.ok_as(
            Role::Admin,
            "mutation($name: String!, $repo: String!) { createApplication(input: {name: $name, repository: $repo}) { name } }",
            json!({"name": name, "repo": repository}),
        )
        .await;
        for (environment, auto_deploy, url) in environments {
            self.ok_as(
                Role::Admin,
                "mutation($input: CreateEnvironmentInput!) { createEnvironment(input: $input) { name } }",
                json!({"input": {"application": name, "name": environment, "autoDeployRef": auto_deploy, "url": url}}),
            )
            .await;
        }
    }

    /// Creates a deployment of `main` as `deployer`; returns its id.
    pub async fn deploy(&self, app: &str, env: impl AsRef<str>) -> String {
        self.deploy_ref(app, env.as_ref(), "main", None).await
    }

    /// Creates a deployment of `reference` (at `sha`, when known) as
    /// `deployer`; returns its id.
    pub async fn deploy_ref(
        &self,
        app: &str,
        env: &str,
        reference: &str,
        sha: Option<&str>,
    ) -> String {
        let data = self
            .ok_as(
                Role::Deployer,
                "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }",
                json!({"input": {"application": app, "environment": env, "ref": reference, "sha": sha}}),
            )
            .await;
        data["createDeployment"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Claims `id` as `runner`; returns the whole answer, errors included.
    pub async fn claim(&self, runner: &str, id: &str) -> Value {
        let token = self.token(Role::Runner, runner);
        self.gql(
            Some(&token),
            "mutation($id: ID!) { claimDeployment(id: $id) { id status runner } }",
            json!({"id": id}),
        )
        .await
    }

    /// Claims `id` as `runner`, which must succeed.
    pub async fn claim_ok(&self, runner: &str, id: &str) -> Value {
        let body = self.claim(runner, id).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Reports `runner`'s progress on `id`: phase `UPDATING` with `message`.
    pub async fn progress(&self, runner: &str, id: &str, message: &str) {
        self.ok(
            &self.token(Role::Runner, runner),
            "mutation($id: ID!, $m: String) { updateDeploymentProgress(id: $id, phase: UPDATING, message: $m) { status } }",
            json!({"id": id, "m": message}),
        )
        .await;
    }

    /// Finishes `id` as `runner` with `status` and the message "done".
    pub async fn finish(&self, runner: &str, id: &str, status: &str) -> Value {
        self.finish_with(runner, id, status, "done").await
    }

    /// Finishes `id` as `runner` with `status` and `message`.
    pub async fn finish_with(&self, runner: &str, id: &str, status: &str, message: &str) -> Value {
        self.ok(
            &self.token(Role::Runner, runner),
            "mutation($id: ID!, $status: DeploymentStatus!, $m: String) { finishDeployment(id: $id, status: $status, message: $m) { id status } }",
            json!({"id": id, "status": status, "m": message}),
        )
        .await
    }

    /// Locks environment `env` of `app` as `deployer`.
    pub async fn lock(&self, app: &str, env: &str, reason: &str) {
        self.ok_as(
            Role::Deployer,
            "mutation($a: String!, $e: String!, $r: String!) { lockEnvironment(application: $a, environment: $e, reason: $r) { name } }",
            json!({"a": app, "e": env, "r": reason}),
        )
        .await;
    }

    /// Where deployment `id` stands.
    pub async fn status(&self, id: &str) -> Value {
        self.ok_as(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { id status phase message runner cancelRequested finishedAt } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .clone()
    }

    /// Deployment `id` with what it deployed and its log.
    pub async fn deployment(&self, id: &str) -> Value {
        self.ok_as(
            Role::Viewer,
            "query($id: ID!) { deployment(id: $id) { id status phase message sha runner services { name image digest } logs(first: 10000) { seq stream text } } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .clone()
    }

    /// Every deployment, newest first.
    pub async fn deployments(&self) -> Vec<Value> {
        let data = self
            .ok_as(
                Role::Viewer,
                "{ deployments(first: 100) { nodes { id number name ref sha task payload description \
                 externalId status createdBy application { name } environment { name } } } }",
                json!({}),
            )
            .await;
        data["deployments"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (up to `within`) until deployment `id` has ended; returns it.
    pub async fn wait_final(&self, id: &str, within: Duration) -> Value {
        let what = format!("deployment {id} to end");
        wait::until_every(Duration::from_millis(200), &what, within, || async {
            let d = self.deployment(id).await;
            match d["status"].as_str() {
                Some("SUCCEEDED" | "FAILED" | "CANCELLED") => Ok(d),
                _ => Err(d),
            }
        })
        .await
    }

    /// Asks for a plan of `reference` for `env` of `app` as `deployer`;
    /// returns its id.
    pub async fn request_plan(&self, app: &str, env: &str, reference: &str) -> String {
        let data = self
            .ok_as(
                Role::Deployer,
                "mutation($a: String!, $e: String!, $r: String!) { requestPlan(application: $a, environment: $e, ref: $r) { id } }",
                json!({"a": app, "e": env, "r": reference}),
            )
            .await;
        data["requestPlan"]["id"].as_str().expect("id").to_owned()
    }

    /// Plan `id` as a viewer reads it.
    pub async fn plan(&self, id: &str) -> Value {
        self.ok_as(
            Role::Viewer,
            "query($id: ID!) { plan(id: $id) { id ref sha status runner result message createdBy claimedAt finishedAt } }",
            json!({"id": id}),
        )
        .await["plan"]
            .clone()
    }

    /// Waits (up to `within`) until plan `id` is DONE or FAILED; returns it.
    pub async fn wait_plan(&self, id: &str, within: Duration) -> Value {
        let what = format!("plan {id} to be answered");
        wait::until_every(Duration::from_millis(200), &what, within, || async {
            let p = self.plan(id).await;
            match p["status"].as_str() {
                Some("DONE" | "FAILED") => Ok(p),
                _ => Err(p),
            }
        })
        .await
    }

    /// Waits (up to `within`) until deployment `id` reports `phase`.
    pub async fn wait_phase(&self, id: &str, phase: &str, within: Duration) {
        let what = format!("deployment {id} to reach {phase}");
        wait::until_every(Duration::from_millis(100), &what, within, || async {
            let d = self.status(id).await;
            if d["phase"] == phase {
                Ok(())
            } else {
                Err(d)
            }
        })
        .await
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        // Stop the server first: its runtime goes with it.
        drop(self.server.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A runtime for an API alone ([`Options::own_runtime`]).
fn own_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("api-under-test")
        .enable_all()
        .build()
        .expect("the API's runtime")
}

/// (code, message) of the first error of a response.
pub fn error_of(body: &Value) -> (String, String) {
    let error = &body["errors"][0];
    assert!(!error.is_null(), "expected an error, got {body}");
    (
        error["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        error["message"].as_str().unwrap_or("").to_owned(),
    )
}

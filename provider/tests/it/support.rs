//! The test harness: the real API on 127.0.0.1 over a temp SQLite file, a
//! small fake of GitHub's REST API that records what it receives, and the
//! provider itself, all over real HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use slipway_api::auth::{Keys, Role};
use slipway_api::{db, AppState, Clock, Settings};
use slipway_provider::{signature, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const JWT_SECRET: &[u8] = b"slipway-provider-tests-secret-0123";
pub const GITHUB_SECRET: &str = "github-webhook-secret-for-tests";
pub const GITLAB_TOKEN: &str = "gitlab-webhook-token-for-tests";
pub const GENERIC_TOKEN: &str = "generic-token-for-tests";
pub const GITHUB_TOKEN: &str = "ghp_fake_token_for_tests";
pub const PUBLIC_URL: &str = "https://slipway.example.com";
pub const REPO: &str = "acme/shop";
pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
pub const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";
/// A GitHub deployment id beyond 32 bits, as real ones are.
pub const GH_ID: u64 = 6_123_456_789;

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after [`DEADLINE`] saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task that stops when its sender is dropped or fired.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("stops in time")
                .expect("task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real API over a temp SQLite file.
pub struct Api {
    pub addr: SocketAddr,
    pub state: AppState,
    _dir: tempfile::TempDir,
    _running: Running,
    http: reqwest::Client,
}

impl Api {
    pub async fn start() -> Api {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("slipway_api=warn,slipway_provider=debug")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("api.db").display());
        let conn = db::connect(&url).await.expect("connect");
        db::migrate(&conn).await.expect("migrate");
        let settings = Settings {
            public_url: Some("http://api.internal".into()),
            ..Settings::default()
        };
        let state = AppState::new(conn, Keys::new(JWT_SECRET), Clock::system(), settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                slipway_api::serve(state, listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            }
        });
        Api {
            addr,
            state,
            _dir: dir,
            _running: Running {
                stop: Some(stop),
                task: Some(task),
            },
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self, role: Role, subject: &str) -> String {
        self.state.keys.issue(
            subject,
            role,
            chrono::Duration::hours(1),
            chrono::Utc::now(),
        )
    }

    /// Runs a GraphQL request as `role`; returns `data`, panicking on errors.
    pub async fn gql(&self, role: Role, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.url()))
            .bearer_auth(self.token(role, role.as_str()))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("JSON");
        assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
        body["data"].clone()
    }

    /// An application of `repository` with environments `(name, autoDeployRef, url)`.
    pub async fn app(
        &self,
        name: &str,
        repository: &str,
        envs: &[(&str, Option<&str>, Option<&str>)],
    ) {
        self.gql(
            Role::Admin,
            "mutation($name: String!, $repo: String!) { createApplication(input: {name: $name, repository: $repo}) { name } }",
            json!({"name": name, "repo": repository}),
        )
        .await;
        for (env, auto, url) in envs {
            self.gql(
                Role::Admin,
                "mutation($input: CreateEnvironmentInput!) { createEnvironment(input: $input) { name } }",
                json!({"input": {"application": name, "name": env, "autoDeployRef": auto, "url": url}}),
            )
            .await;
        }
    }

    pub async fn lock(&self, app: &str, env: &str, reason: &str) {
        self.gql(
            Role::Deployer,
            "mutation($a: String!, $e: String!, $r: String!) { lockEnvironment(application: $a, environment: $e, reason: $r) { name } }",
            json!({"a": app, "e": env, "r": reason}),
        )
        .await;
    }

    /// Every deployment, newest first.
    pub async fn deployments(&self) -> Vec<Value> {
        let data = self
            .gql(
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

    /// Claims `id` as a runner.
    pub async fn claim(&self, id: &str) {
        self.gql(
            Role::Runner,
            "mutation($id: ID!) { claimDeployment(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    }

    pub async fn progress(&self, id: &str, message: &str) {
        self.gql(
            Role::Runner,
            "mutation($id: ID!, $m: String) { updateDeploymentProgress(id: $id, phase: UPDATING, message: $m) { status } }",
            json!({"id": id, "m": message}),
        )
        .await;
    }

    pub async fn finish(&self, id: &str, status: &str, message: &str) {
        self.gql(
            Role::Runner,
            "mutation($id: ID!, $s: DeploymentStatus!, $m: String) { finishDeployment(id: $id, status: $s, message: $m) { status } }",
            json!({"id": id, "s": status, "m": message}),
        )
        .await;
    }
}

/// What the fake GitHub received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: &'static str,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// Whether the fake answered it with 502 or a rate limit.
    pub failed: bool,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct FakeState {
    received: Mutex<Vec<Received>>,
    /// Deployments created through the API: (repo, id, body).
    deployments: Mutex<Vec<(String, u64, Value)>>,
    next_id: AtomicU64,
    /// Requests still to answer 502.
    failing: AtomicUsize,
    /// Requests answered 502 so far.
    failed: AtomicUsize,
    /// Requests still to answer 403 "rate limit exceeded" (resetting in a second).
    limited: AtomicUsize,
}

/// A small fake of GitHub's REST API: deployments and their statuses.
pub struct FakeGithub {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    _running: Running,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let state = Arc::new(FakeState {
            next_id: AtomicU64::new(9_000_000_001),
            ..FakeState::default()
        });
        let router = Router::new()
            .route(
                "/repos/{owner}/{repo}/deployments",
                post(create_deployment).get(list_deployments),
            )
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                post(create_status),
            )
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("fake GitHub");
        });
        FakeGithub {
            addr,
            state,
            _running: Running {
                stop: Some(stop),
                task: Some(task),
            },
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` requests with 502.
    pub fn fail_next(&self, n: usize) {
        self.state.failing.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with GitHub's primary rate limit, which
    /// resets in one second.
    pub fn rate_limit_next(&self, n: usize) {
        self.state.limited.store(n, Ordering::SeqCst);
    }

    pub fn failed(&self) -> usize {
        self.state.failed.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The statuses GitHub took for deployment `id`, in order.
    pub fn statuses(&self, id: u64) -> Vec<Value> {
        let path = format!("/repos/{REPO}/deployments/{id}/statuses");
        self.received()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path && !r.failed)
            .map(|r| r.body)
            .collect()
    }

    pub fn states(&self, id: u64) -> Vec<String> {
        self.statuses(id)
            .iter()
            .map(|s| s["state"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// GitHub deployments created through the API: (repo, id, body).
    pub fn created(&self) -> Vec<(String, u64, Value)> {
        self.state.deployments.lock().unwrap().clone()
    }
}

fn record(
    state: &FakeState,
    method: &'static str,
    path: String,
    headers: &HeaderMap,
    body: Value,
) -> Option<Response> {
    let take = |counter: &AtomicUsize| {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    let failing = take(&state.failing);
    let limited = !failing && take(&state.limited);
    state.received.lock().unwrap().push(Received {
        method,
        path,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        failed: failing || limited,
        at: std::time::Instant::now(),
    });
    if failing {
        state.failed.fetch_add(1, Ordering::SeqCst);
        return Some((StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response());
    }
    if limited {
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        let headers = [
            ("x-ratelimit-limit", "5000".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        let body = Json(json!({"message": "API rate limit exceeded for user ID 1."}));
        return Some((StatusCode::FORBIDDEN, headers, body).into_response());
    }
    None
}

async fn create_deployment(
    State(state): State<Arc<FakeState>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments");
    if let Some(failed) = record(&state, "POST", path, &headers, body.clone()) {
        return failed;
    }
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let mut stored = body.clone();
    stored["id"] = json!(id);
    stored["sha"] = body["ref"].clone();
    state
        .deployments
        .lock()
        .unwrap()
        .push((format!("{owner}/{repo}"), id, stored.clone()));
    (StatusCode::CREATED, Json(stored)).into_response()
}

async fn list_deployments(
    State(state): State<Arc<FakeState>>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments");
    if let Some(failed) = record(&state, "GET", path, &headers, json!(query)) {
        return failed;
    }
    let full = format!("{owner}/{repo}");
    let list: Vec<Value> = state
        .deployments
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _, body)| {
            *r == full
                && query.get("sha").is_none_or(|sha| body["sha"] == json!(sha))
                && query
                    .get("environment")
                    .is_none_or(|env| body["environment"] == json!(env))
        })
        .map(|(_, _, body)| body.clone())
        .collect();
    Json(list).into_response()
}

async fn create_status(
    State(state): State<Arc<FakeState>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments/{id}/statuses");
    if let Some(failed) = record(&state, "POST", path, &headers, body.clone()) {
        return failed;
    }
    (
        StatusCode::CREATED,
        Json(json!({"id": 1, "state": body["state"]})),
    )
        .into_response()
}

/// The provider, served on 127.0.0.1.
pub struct Provider {
    pub addr: SocketAddr,
    pub config: Config,
    running: Running,
    http: reqwest::Client,
}

impl Provider {
    pub async fn start(config: Config) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let config = config.clone();
            async move {
                slipway_provider::run(config, listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("provider runs");
            }
        });
        Provider {
            addr,
            config,
            running: Running {
                stop: Some(stop),
                task: Some(task),
            },
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) -> Config {
        self.running.stop().await;
        self.config.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a GitHub hook signed with the webhook secret.
    pub async fn github(&self, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = signature::sign_github(GITHUB_SECRET.as_bytes(), &bytes);
        self.github_raw(event, delivery, bytes, Some(&signature))
            .await
    }

    /// Posts raw bytes to `/hooks/github` with the given signature header.
    pub async fn github_raw(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/hooks/github"))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        answer(request.send().await.expect("POST /hooks/github")).await
    }

    pub async fn gitlab(
        &self,
        event: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/hooks/gitlab"))
            .header("X-Gitlab-Event", event)
            .json(body);
        if let Some(token) = token {
            request = request.header("X-Gitlab-Token", token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send().await.expect("POST /hooks/gitlab")).await
    }

    pub async fn generic(&self, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url("/hooks/generic")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.expect("POST /hooks/generic")).await
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The API, the fake GitHub and a provider wired to both.
pub struct World {
    pub api: Api,
    pub github: FakeGithub,
    pub provider: Option<Provider>,
    _data_dir: tempfile::TempDir,
}

impl World {
    pub async fn start() -> World {
        let api = Api::start().await;
        let github = FakeGithub::start().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = config(&api, &github, data_dir.path().to_owned());
        let provider = Provider::start(config).await;
        World {
            api,
            github,
            provider: Some(provider),
            _data_dir: data_dir,
        }
    }

    pub fn provider(&self) -> &Provider {
        self.provider.as_ref().expect("the provider is running")
    }

    /// Stops the provider; returns its configuration to start it again.
    pub async fn stop_provider(&mut self) -> Config {
        self.provider.take().expect("running").stop().await
    }

    pub async fn start_provider(&mut self, config: Config) {
        self.provider = Some(Provider::start(config).await);
    }

    /// The shop application of [`REPO`]: production auto-deploys `main`,
    /// staging `develop`, qa nothing.
    pub async fn shop(&self) {
        self.api
            .app(
                "shop",
                &format!("https://github.com/{REPO}.git"),
                &[
                    ("production", Some("main"), Some("https://shop.example.com")),
                    ("staging", Some("develop"), None),
                    ("qa", None, None),
                ],
            )
            .await;
    }
}

/// The provider's configuration for `api` and `github`, with every hook on.
pub fn config(api: &Api, github: &FakeGithub, data_dir: PathBuf) -> Config {
    let mut config = Config::new(api.url(), api.token(Role::Provider, "provider"));
    config.public_url = Some(PUBLIC_URL.into());
    config.hooks.github_webhook_secret = Some(slipway_provider::Secret::new(GITHUB_SECRET));
    config.hooks.github_token = Some(slipway_provider::Secret::new(GITHUB_TOKEN));
    config.hooks.github_api_url = github.url();
    config.hooks.gitlab_webhook_token = Some(slipway_provider::Secret::new(GITLAB_TOKEN));
    config.hooks.generic_token = Some(slipway_provider::Secret::new(GENERIC_TOKEN));
    config.data_dir = data_dir;
    config
}

/// A GitHub `deployment` event as GitHub sends it (trimmed of URLs nobody reads).
pub fn deployment_event(id: u64, environment: &str, sha: &str, payload: Value) -> Value {
    json!({
        "action": "created",
        "deployment": {
            "url": format!("https://api.github.com/repos/{REPO}/deployments/{id}"),
            "id": id,
            "node_id": "DE_kwDOAbc",
            "task": "deploy",
            "original_environment": environment,
            "environment": environment,
            "description": "Deploy request from hubot",
            "created_at": "2024-05-01T10:00:00Z",
            "updated_at": "2024-05-01T10:00:00Z",
            "sha": sha,
            "ref": "main",
            "payload": payload,
            "transient_environment": false,
            "production_environment": environment == "production",
            "creator": {"login": "octocat", "id": 1, "type": "User"},
        },
        "repository": repository(),
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    })
}

pub fn repository() -> Value {
    json!({
        "id": 1296269,
        "name": "shop",
        "full_name": REPO,
        "private": false,
        "html_url": format!("https://github.com/{REPO}"),
        "clone_url": format!("https://github.com/{REPO}.git"),
        "ssh_url": format!("git@github.com:{REPO}.git"),
        "git_url": format!("git://github.com/{REPO}.git"),
        "default_branch": "main",
    })
}

/// A GitHub `push` event.
pub fn push_event(git_ref: &str, after: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": SHA2,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": "https://github.com/acme/shop/compare/89abcdef...01234567",
        "commits": [{"id": after, "message": "Fix the checkout\n\nLonger text.", "distinct": true}],
        "head_commit": {"id": after, "message": "Fix the checkout\n\nLonger text."},
        "repository": repository(),
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
    })
}

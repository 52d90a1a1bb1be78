//! A fake of the part of GitHub's REST API that Slipway calls — deployments,
//! deployment statuses, and a commit's combined status, check runs and the
//! commit a ref is at — served over real HTTP on 127.0.0.1, recording
//! what it received and failing on demand (502s, rate limits); and the hooks
//! GitHub sends, signed as GitHub signs them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::runtime::Handle;

use crate::running::Running;

/// The repository the tests deploy, as GitHub names it.
pub const REPO: &str = "acme/shop";

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: &'static str,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// Whether the fake answered it with 502 or a rate limit.
    pub failed: bool,
    pub at: Instant,
}

/// A deployment status GitHub took.
#[derive(Clone, Debug)]
pub struct Status {
    /// The GitHub deployment's id.
    pub deployment: u64,
    /// The status's own id.
    pub id: u64,
    pub body: Value,
    pub at: Instant,
}

impl Status {
    pub fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or("?")
    }
}

#[derive(Default)]
struct Recorded {
    received: Mutex<Vec<Received>>,
    statuses: Mutex<Vec<Status>>,
    /// Deployments created through the API: (repository, id, body).
    deployments: Mutex<Vec<(String, u64, Value)>>,
    next_id: AtomicU64,
    /// Requests still to answer 502.
    failing: AtomicUsize,
    /// Requests answered 502 so far.
    failed: AtomicUsize,
    /// Requests still to answer 403 "rate limit exceeded" (resetting in a second).
    limited: AtomicUsize,
    /// Commit statuses by sha, as CI posted them (latest per context).
    commit_statuses: Mutex<HashMap<String, Vec<Value>>>,
    /// Check runs by sha (GitHub Actions reports only these).
    check_runs: Mutex<HashMap<String, Vec<Value>>>,
    /// The commit each branch or tag is at.
    refs: Mutex<HashMap<String, String>>,
}

/// GitHub's deployments and statuses API, on 127.0.0.1; stops when dropped.
pub struct FakeGithub {
    pub addr: SocketAddr,
    recorded: Arc<Recorded>,
    _server: Running,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        FakeGithub::start_on(Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves on `ip`, e.g. the address the swarm's containers reach this
    /// machine at.
    pub async fn start_on(ip: IpAddr) -> FakeGithub {
        let recorded = Arc::new(Recorded {
            // Real deployment ids exceed 32 bits.
            next_id: AtomicU64::new(9_000_000_001),
            ..Recorded::default()
        });
        let router = Router::new()
            .route(
                "/repos/{owner}/{repo}/deployments",
                post(create_deployment).get(list_deployments),
            )
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                post(create_status).get(list_statuses),
            )
            .route("/repos/{owner}/{repo}/commits/{ref}", get(commit))
            .route(
                "/repos/{owner}/{repo}/commits/{ref}/status",
                get(combined_status),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{ref}/check-runs",
                get(list_check_runs),
            )
            .with_state(recorded.clone());
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = Running::spawn(
            "the fake GitHub",
            &Handle::current(),
            |stopped| async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped.wait())
                    .await
                    .expect("the fake GitHub serves");
            },
        );
        FakeGithub {
            addr,
            recorded,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` requests with 502.
    pub fn fail_next(&self, n: usize) {
        self.recorded.failing.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with GitHub's primary rate limit, which
    /// resets in one second.
    pub fn rate_limit_next(&self, n: usize) {
        self.recorded.limited.store(n, Ordering::SeqCst);
    }

    /// How many requests were answered 502.
    pub fn failed(&self) -> usize {
        self.recorded.failed.load(Ordering::SeqCst)
    }

    /// Every request, in the order it arrived.
    pub fn received(&self) -> Vec<Received> {
        self.recorded.received.lock().unwrap().clone()
    }

    /// The statuses GitHub took for deployment `id`, in order.
    pub fn statuses(&self, id: u64) -> Vec<Status> {
        self.recorded
            .statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.deployment == id)
            .cloned()
            .collect()
    }

    /// The states of [`FakeGithub::statuses`].
    pub fn states(&self, id: u64) -> Vec<String> {
        self.statuses(id)
            .iter()
            .map(|s| s.state().to_owned())
            .collect()
    }

    /// How many statuses GitHub took, for every deployment.
    pub fn status_count(&self) -> usize {
        self.recorded.statuses.lock().unwrap().len()
    }

    /// Sets the commit statuses of `sha` (`{context, state, target_url}`).
    pub fn set_statuses(&self, sha: &str, statuses: Vec<Value>) {
        let mut all = self.recorded.commit_statuses.lock().unwrap();
        all.insert(sha.to_owned(), statuses);
    }

    /// Sets the check runs of `sha` (`{name, status, conclusion, html_url}`).
    pub fn set_check_runs(&self, sha: &str, runs: Vec<Value>) {
        let mut all = self.recorded.check_runs.lock().unwrap();
        all.insert(sha.to_owned(), runs);
    }

    /// Points the branch or tag `name` at `sha`.
    pub fn set_ref(&self, name: &str, sha: &str) {
        let mut refs = self.recorded.refs.lock().unwrap();
        refs.insert(name.to_owned(), sha.to_owned());
    }

    /// Deployments Slipway created on GitHub: (repository, id, body).
    pub fn created(&self) -> Vec<(String, u64, Value)> {
        self.recorded.deployments.lock().unwrap().clone()
    }
}

/// Records a request; answers it with a failure when one is due.
fn record(
    recorded: &Recorded,
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
    let failing = take(&recorded.failing);
    let limited = !failing && take(&recorded.limited);
    recorded.received.lock().unwrap().push(Received {
        method,
        path,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        failed: failing || limited,
        at: Instant::now(),
    });
    if failing {
        recorded.failed.fetch_add(1, Ordering::SeqCst);
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
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments");
    if let Some(failed) = record(&recorded, "POST", path, &headers, body.clone()) {
        return failed;
    }
    let id = recorded.next_id.fetch_add(1, Ordering::SeqCst);
    let mut stored = body.clone();
    stored["id"] = json!(id);
    // Slipway creates deployments of a commit: `ref` is the sha.
    stored["sha"] = body["ref"].clone();
    recorded
        .deployments
        .lock()
        .unwrap()
        .push((format!("{owner}/{repo}"), id, stored.clone()));
    (StatusCode::CREATED, Json(stored)).into_response()
}

/// `GET /repos/{owner}/{repo}/deployments?sha=&environment=`.
async fn list_deployments(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments");
    if let Some(failed) = record(&recorded, "GET", path, &headers, json!(query)) {
        return failed;
    }
    let repository = format!("{owner}/{repo}");
    let list: Vec<Value> = recorded
        .deployments
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _, body)| {
            *r == repository
                && ["sha", "environment"]
                    .iter()
                    .all(|key| query.get(*key).is_none_or(|v| body[*key] == v.as_str()))
        })
        .map(|(_, _, body)| body.clone())
        .collect();
    Json(list).into_response()
}

async fn create_status(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments/{id}/statuses");
    if let Some(failed) = record(&recorded, "POST", path, &headers, body.clone()) {
        return failed;
    }
    let status_id = recorded.next_id.fetch_add(1, Ordering::SeqCst);
    let answer = listed_status(status_id, &body);
    recorded.statuses.lock().unwrap().push(Status {
        deployment: id,
        id: status_id,
        body,
        at: Instant::now(),
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `GET /repos/{owner}/{repo}/deployments/{id}/statuses`: newest first, at
/// most `per_page` (30 unless asked, 100 at most), as GitHub lists them.
async fn list_statuses(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/deployments/{id}/statuses");
    if let Some(failed) = record(&recorded, "GET", path, &headers, json!(query)) {
        return failed;
    }
    let per_page = query
        .get("per_page")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(30)
        .min(100);
    let list: Vec<Value> = recorded
        .statuses
        .lock()
        .unwrap()
        .iter()
        .rev()
        .filter(|status| status.deployment == id)
        .take(per_page)
        .map(|status| listed_status(status.id, &status.body))
        .collect();
    Json(list).into_response()
}

/// A deployment status as GitHub answers it: what was posted, with its id,
/// and the log URL as the target URL too.
fn listed_status(id: u64, body: &Value) -> Value {
    json!({
        "id": id,
        "state": body["state"],
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "log_url": body.get("log_url").cloned().unwrap_or(json!("")),
        "target_url": body.get("log_url").cloned().unwrap_or(json!("")),
        "environment_url": body.get("environment_url").cloned().unwrap_or(json!("")),
    })
}

/// What GitHub answers a request without a token to a private repository's
/// commits, or a request that is not JSON of its REST API version.
fn refuse_unauthenticated(headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > "Bearer ".len());
    if !bearer {
        let body = Json(json!({"message": "Requires authentication"}));
        return Some((StatusCode::UNAUTHORIZED, body).into_response());
    }
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if accept != Some("application/vnd.github+json") {
        let body = Json(json!({"message": "the fake wants Accept: application/vnd.github+json"}));
        return Some((StatusCode::NOT_ACCEPTABLE, body).into_response());
    }
    None
}

fn is_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn no_commit(git_ref: &str) -> Response {
    let body = Json(json!({"message": format!("No commit found for SHA: {git_ref}")}));
    (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
}

/// `GET /repos/{owner}/{repo}/commits/{ref}`: the commit, by sha or by a
/// branch or tag [`FakeGithub::set_ref`] set.
async fn commit(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/commits/{git_ref}");
    if let Some(failed) = record(&recorded, "GET", path, &headers, Value::Null) {
        return failed;
    }
    if let Some(refused) = refuse_unauthenticated(&headers) {
        return refused;
    }
    let sha = if is_sha(&git_ref) {
        Some(git_ref.clone())
    } else {
        recorded.refs.lock().unwrap().get(&git_ref).cloned()
    };
    match sha {
        Some(sha) => Json(json!({"sha": sha, "commit": {"message": "a commit"}})).into_response(),
        None => no_commit(&git_ref),
    }
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/status`: the combined status,
/// `pending` with no statuses at all, as GitHub answers.
async fn combined_status(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/commits/{sha}/status");
    if let Some(failed) = record(&recorded, "GET", path, &headers, Value::Null) {
        return failed;
    }
    if let Some(refused) = refuse_unauthenticated(&headers) {
        return refused;
    }
    if !is_sha(&sha) {
        return no_commit(&sha);
    }
    let statuses = recorded
        .commit_statuses
        .lock()
        .unwrap()
        .get(&sha)
        .cloned()
        .unwrap_or_default();
    let states: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    let state = if states.iter().any(|s| *s == "failure" || *s == "error") {
        "failure"
    } else if !states.is_empty() && states.iter().all(|s| *s == "success") {
        "success"
    } else {
        "pending"
    };
    Json(json!({
        "state": state,
        "sha": sha,
        "total_count": statuses.len(),
        "statuses": statuses,
    }))
    .into_response()
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/check-runs?filter=&per_page=`.
async fn list_check_runs(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/commits/{sha}/check-runs");
    if let Some(failed) = record(&recorded, "GET", path, &headers, json!(query)) {
        return failed;
    }
    if let Some(refused) = refuse_unauthenticated(&headers) {
        return refused;
    }
    if !is_sha(&sha) {
        return no_commit(&sha);
    }
    if query
        .get("filter")
        .is_some_and(|f| f != "latest" && f != "all")
    {
        let body = Json(json!({"message": "Invalid filter"}));
        return (StatusCode::UNPROCESSABLE_ENTITY, body).into_response();
    }
    let runs = recorded
        .check_runs
        .lock()
        .unwrap()
        .get(&sha)
        .cloned()
        .unwrap_or_default();
    Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

/// `X-Hub-Signature-256` of `body` under `secret`, as GitHub computes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `repository` object of a hook, for [`REPO`] cloned from `clone_url`.
pub fn repository(clone_url: &str) -> Value {
    json!({
        "id": 1296269,
        "name": "shop",
        "full_name": REPO,
        "private": false,
        "html_url": format!("https://github.com/{REPO}"),
        "clone_url": clone_url,
        "ssh_url": format!("git@github.com:{REPO}.git"),
        "git_url": format!("git://github.com/{REPO}.git"),
        "default_branch": "main",
    })
}

/// A `deployment` event (action `created`) for GitHub deployment `id` of
/// `sha`, as GitHub sends it (trimmed of URLs nobody reads).
pub fn deployment_event(
    id: u64,
    environment: &str,
    sha: &str,
    payload: Value,
    clone_url: &str,
) -> Value {
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
        "repository": repository(clone_url),
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    })
}

/// A `push` event of `after` (on top of `before`) to `git_ref`.
pub fn push_event(git_ref: &str, before: &str, after: &str, clone_url: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": format!("https://github.com/{REPO}/compare/{before:.8}...{after:.8}"),
        "commits": [{"id": after, "message": "Fix the checkout\n\nLonger text.", "distinct": true}],
        "head_commit": {"id": after, "message": "Fix the checkout\n\nLonger text."},
        "repository": repository(clone_url),
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
    })
}

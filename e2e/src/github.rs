//! A fake of the part of GitHub's REST API that Slipway calls — deployments
//! and deployment statuses — served over real HTTP on 127.0.0.1 and recording
//! what it received; and the hooks GitHub sends, signed as GitHub signs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

/// The repository every test deploys, as GitHub names it.
pub const REPO: &str = "acme/shop";

/// A deployment status as GitHub took it.
#[derive(Clone, Debug)]
pub struct Status {
    pub deployment: u64,
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
    statuses: Mutex<Vec<Status>>,
    /// Deployments created through the API, with the id given to each.
    deployments: Mutex<Vec<Value>>,
    next_id: AtomicU64,
}

pub struct FakeGithub {
    pub addr: SocketAddr,
    recorded: Arc<Recorded>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let recorded = Arc::new(Recorded {
            // Real deployment ids exceed 32 bits.
            next_id: AtomicU64::new(7_000_000_001),
            ..Recorded::default()
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
            .with_state(recorded.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("fake GitHub");
        });
        FakeGithub {
            addr,
            recorded,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Statuses of GitHub deployment `id`, in the order they arrived.
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

    pub fn states(&self, id: u64) -> Vec<String> {
        self.statuses(id)
            .iter()
            .map(|s| s.state().to_owned())
            .collect()
    }

    /// Deployments Slipway created on GitHub (for pushes), each with its `id`.
    pub fn created(&self) -> Vec<Value> {
        self.recorded.deployments.lock().unwrap().clone()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn create_deployment(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let id = recorded.next_id.fetch_add(1, Ordering::SeqCst);
    let mut stored = body.clone();
    stored["id"] = json!(id);
    stored["repository"] = json!(format!("{owner}/{repo}"));
    // Slipway creates deployments of a commit: `ref` is the sha.
    stored["sha"] = body["ref"].clone();
    recorded.deployments.lock().unwrap().push(stored.clone());
    (StatusCode::CREATED, Json(stored))
}

/// `GET /repos/{owner}/{repo}/deployments?sha=&environment=`.
async fn list_deployments(
    State(recorded): State<Arc<Recorded>>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let repository = format!("{owner}/{repo}");
    let list: Vec<Value> = recorded
        .deployments
        .lock()
        .unwrap()
        .iter()
        .filter(|d| {
            d["repository"] == repository.as_str()
                && ["sha", "environment"]
                    .iter()
                    .all(|key| query.get(*key).is_none_or(|v| d[*key] == v.as_str()))
        })
        .cloned()
        .collect();
    Json(Value::Array(list))
}

async fn create_status(
    State(recorded): State<Arc<Recorded>>,
    Path((_owner, _repo, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let state = body["state"].clone();
    recorded.statuses.lock().unwrap().push(Status {
        deployment: id,
        body,
        at: Instant::now(),
    });
    (StatusCode::CREATED, Json(json!({"id": 1, "state": state})))
}

/// `X-Hub-Signature-256` of `body` under `secret`.
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
        "default_branch": "main",
    })
}

/// A `deployment` event (action `created`) for GitHub deployment `id`.
pub fn deployment_event(id: u64, environment: &str, sha: &str, clone_url: &str) -> Value {
    json!({
        "action": "created",
        "deployment": {
            "id": id,
            "task": "deploy",
            "environment": environment,
            "original_environment": environment,
            "description": "deploy from the end-to-end tests",
            "sha": sha,
            "ref": "main",
            "payload": {},
            "transient_environment": false,
            "production_environment": environment == "production",
            "creator": {"login": "octocat", "id": 1, "type": "User"},
        },
        "repository": repository(clone_url),
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    })
}

/// A `push` event of `after` to `git_ref`.
pub fn push_event(git_ref: &str, before: &str, after: &str, clone_url: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "commits": [{"id": after, "message": "a change", "distinct": true}],
        "head_commit": {"id": after, "message": "a change"},
        "repository": repository(clone_url),
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
    })
}

//! A fake of the part of GitLab's REST API (`/api/v4`) that Slipway calls —
//! a commit's pipelines and the commit a ref is at — over real HTTP on
//! 127.0.0.1. Strict as GitLab is: the token in `PRIVATE-TOKEN`, the
//! project as its URL-encoded path in one segment, `sha` in the query.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::running::Running;

/// The project the tests deploy, as GitLab names it.
pub const PROJECT: &str = "acme/shop";
/// The token the fake takes.
pub const TOKEN: &str = "glpat-fake-token-for-tests";

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// As sent: percent-encoding and query included.
    pub uri: String,
    pub private_token: Option<String>,
}

#[derive(Default)]
struct Recorded {
    received: Mutex<Vec<Received>>,
    /// Pipelines by sha (`{id, status, web_url}`).
    pipelines: Mutex<HashMap<String, Vec<Value>>>,
    refs: Mutex<HashMap<String, String>>,
}

/// GitLab's pipelines API on 127.0.0.1; stops when dropped.
pub struct FakeGitlab {
    pub addr: SocketAddr,
    recorded: Arc<Recorded>,
    _server: Running,
}

impl FakeGitlab {
    pub async fn start() -> FakeGitlab {
        let recorded = Arc::new(Recorded::default());
        let router = Router::new()
            .route("/api/v4/projects/{project}/pipelines", get(pipelines))
            .route(
                "/api/v4/projects/{project}/repository/commits/{ref}",
                get(commit),
            )
            .with_state(recorded.clone());
        let (addr, server) = super::serve("the fake GitLab", router).await;
        FakeGitlab {
            addr,
            recorded,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the pipelines of `sha`, in any order (GitLab lists newest first).
    pub fn set_pipelines(&self, sha: &str, pipelines: Vec<Value>) {
        let mut all = self.recorded.pipelines.lock().unwrap();
        all.insert(sha.to_owned(), pipelines);
    }

    /// Points the branch or tag `name` at `sha`.
    pub fn set_ref(&self, name: &str, sha: &str) {
        let mut refs = self.recorded.refs.lock().unwrap();
        refs.insert(name.to_owned(), sha.to_owned());
    }

    /// Every request, in the order it arrived.
    pub fn received(&self) -> Vec<Received> {
        self.recorded.received.lock().unwrap().clone()
    }
}

/// Records the request; refuses it as GitLab would without the token or
/// with a project it does not know.
fn admit(recorded: &Recorded, uri: &Uri, headers: &HeaderMap, project: &str) -> Option<Response> {
    let private_token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    recorded.received.lock().unwrap().push(Received {
        uri: uri.to_string(),
        private_token: private_token.clone(),
    });
    if private_token.as_deref() != Some(TOKEN) {
        let body = Json(json!({"message": "401 Unauthorized"}));
        return Some((StatusCode::UNAUTHORIZED, body).into_response());
    }
    if project != PROJECT {
        let body = Json(json!({"message": "404 Project Not Found"}));
        return Some((StatusCode::NOT_FOUND, body).into_response());
    }
    None
}

/// `GET /api/v4/projects/:id/pipelines?sha=`: newest first.
async fn pipelines(
    State(recorded): State<Arc<Recorded>>,
    uri: Uri,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&recorded, &uri, &headers, &project) {
        return refused;
    }
    let Some(sha) = query.get("sha") else {
        // Slipway always asks for one commit's pipelines.
        let body = Json(json!({"message": "the fake wants ?sha="}));
        return (StatusCode::BAD_REQUEST, body).into_response();
    };
    let mut list = recorded
        .pipelines
        .lock()
        .unwrap()
        .get(sha)
        .cloned()
        .unwrap_or_default();
    list.sort_by_key(|p| std::cmp::Reverse(p["id"].as_u64().unwrap_or(0)));
    if let Some(per_page) = query.get("per_page").and_then(|n| n.parse().ok()) {
        list.truncate(per_page);
    }
    Json(list).into_response()
}

/// `GET /api/v4/projects/:id/repository/commits/:ref`.
async fn commit(
    State(recorded): State<Arc<Recorded>>,
    uri: Uri,
    Path((project, git_ref)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&recorded, &uri, &headers, &project) {
        return refused;
    }
    match recorded.refs.lock().unwrap().get(&git_ref) {
        Some(sha) => Json(json!({"id": sha, "short_id": &sha[..8]})).into_response(),
        None => {
            let body = Json(json!({"message": "404 Commit Not Found"}));
            (StatusCode::NOT_FOUND, body).into_response()
        }
    }
}

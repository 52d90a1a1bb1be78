//! A fake of Sentry's releases API over real HTTP on 127.0.0.1, checking
//! what Sentry checks: the bearer token (`401`), the organization (`404`),
//! a release's `version` (no slash, at most 200 characters) and `projects`
//! (slugs of the organization's projects), each commit's `id` and
//! `repository`; a deploy's release (`404` when it was never made), its
//! `environment`, its dates (finished not before started) and projects
//! (of the release). Creating a release that exists answers `208`, as
//! Sentry does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::running::Running;
use crate::wait;

/// The organization and project the fake knows.
pub const ORGANIZATION: &str = "acme";
pub const PROJECT: &str = "shop";
/// The token it takes.
pub const TOKEN: &str = "sntrys_fake_token_for_tests";

#[derive(Default)]
struct Shared {
    /// Releases as created, in order.
    releases: Mutex<Vec<Value>>,
    /// Deploys as recorded: (version, body).
    deploys: Mutex<Vec<(String, Value)>>,
    /// Every request refused, with why.
    refused: Mutex<Vec<String>>,
}

/// Sentry's releases API; stops when dropped.
pub struct FakeSentry {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Running,
}

impl FakeSentry {
    pub async fn start() -> FakeSentry {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/api/0/organizations/{org}/releases/", post(release))
            .route(
                "/api/0/organizations/{org}/releases/{version}/deploys/",
                post(deploy),
            )
            .with_state(shared.clone());
        let (addr, server) = super::serve("the fake Sentry", router).await;
        FakeSentry {
            addr,
            shared,
            _server: server,
        }
    }

    /// The project's page, which a Sentry notification targets.
    pub fn project_url(&self) -> String {
        format!(
            "http://{}/organizations/{ORGANIZATION}/projects/{PROJECT}/",
            self.addr
        )
    }

    pub fn releases(&self) -> Vec<Value> {
        self.shared.releases.lock().unwrap().clone()
    }

    pub fn deploys(&self) -> Vec<(String, Value)> {
        self.shared.deploys.lock().unwrap().clone()
    }

    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// Waits until `n` deploys were recorded.
    pub async fn wait_for_deploys(&self, n: usize, within: Duration) -> Vec<(String, Value)> {
        wait::until(&format!("{n} Sentry deploy(s)"), within, || async {
            let deploys = self.deploys();
            if deploys.len() >= n {
                Ok(deploys)
            } else {
                Err(format!(
                    "{} so far; refused: {:?}",
                    deploys.len(),
                    self.refused()
                ))
            }
        })
        .await
    }

    /// Waits until `n` releases were created.
    pub async fn wait_for_releases(&self, n: usize, within: Duration) -> Vec<Value> {
        wait::until(&format!("{n} Sentry release(s)"), within, || async {
            let releases = self.releases();
            if releases.len() >= n {
                Ok(releases)
            } else {
                Err(format!(
                    "{} so far; refused: {:?}",
                    releases.len(),
                    self.refused()
                ))
            }
        })
        .await
    }
}

/// Refuses, recording why, with Sentry's `{"detail": …}`.
fn refuse(shared: &Shared, status: StatusCode, detail: &str) -> Response {
    shared.refused.lock().unwrap().push(detail.to_owned());
    (status, Json(json!({"detail": detail}))).into_response()
}

/// The token and organization, as every endpoint checks them.
fn admit(shared: &Shared, headers: &HeaderMap, org: &str) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(TOKEN) {
        return Some(refuse(shared, StatusCode::UNAUTHORIZED, "Invalid token"));
    }
    if org != ORGANIZATION {
        return Some(refuse(
            shared,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        ));
    }
    None
}

fn json_body(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    serde_json::from_slice(body).ok().filter(|_| json)
}

fn projects_valid(projects: &Value) -> bool {
    projects
        .as_array()
        .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p == PROJECT))
}

/// `POST /api/0/organizations/{org}/releases/`.
async fn release(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&shared, &headers, &org) {
        return refused;
    }
    let Some(body) = json_body(&headers, &body) else {
        return refuse(&shared, StatusCode::BAD_REQUEST, "a JSON body is required");
    };
    let version = body["version"].as_str().unwrap_or_default();
    if version.is_empty() || version.len() > 200 || version.contains(['/', '\n']) {
        return refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            "version: not a valid release version",
        );
    }
    if !projects_valid(&body["projects"]) {
        return refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            "projects: Invalid project slugs",
        );
    }
    if let Some(commits) = body.get("commits") {
        let valid = commits.as_array().is_some_and(|c| {
            c.iter()
                .all(|c| c["id"].is_string() && c["repository"].is_string())
        });
        if !valid {
            return refuse(
                &shared,
                StatusCode::BAD_REQUEST,
                "commits: each needs id and repository",
            );
        }
    }
    let mut releases = shared.releases.lock().unwrap();
    let answer = json!({"version": version, "projects": body["projects"]});
    if releases.iter().any(|r| r["version"] == version) {
        return (StatusCode::ALREADY_REPORTED, Json(answer)).into_response();
    }
    releases.push(body);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `POST /api/0/organizations/{org}/releases/{version}/deploys/`.
async fn deploy(
    State(shared): State<Arc<Shared>>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&shared, &headers, &org) {
        return refused;
    }
    let Some(body) = json_body(&headers, &body) else {
        return refuse(&shared, StatusCode::BAD_REQUEST, "a JSON body is required");
    };
    if !shared
        .releases
        .lock()
        .unwrap()
        .iter()
        .any(|r| r["version"] == version.as_str())
    {
        return refuse(
            &shared,
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        );
    }
    if body["environment"].as_str().is_none_or(str::is_empty) {
        return refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            "environment: This field is required.",
        );
    }
    let date = |key: &str| -> Result<Option<DateTime<Utc>>, ()> {
        match &body[key] {
            Value::Null => Ok(None),
            Value::String(s) => s.parse().map(Some).map_err(|_| ()),
            _ => Err(()),
        }
    };
    let (Ok(started), Ok(finished)) = (date("dateStarted"), date("dateFinished")) else {
        return refuse(&shared, StatusCode::BAD_REQUEST, "dates: not ISO 8601");
    };
    if let (Some(started), Some(finished)) = (started, finished) {
        if finished < started {
            return refuse(
                &shared,
                StatusCode::BAD_REQUEST,
                "dateFinished is before dateStarted",
            );
        }
    }
    if body.get("projects").is_some() && !projects_valid(&body["projects"]) {
        return refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            "projects: Invalid project slugs",
        );
    }
    shared.deploys.lock().unwrap().push((version, body.clone()));
    (
        StatusCode::CREATED,
        Json(json!({"id": "1", "environment": body["environment"]})),
    )
        .into_response()
}

//! `POST /hooks/github`: the signature over the raw body is checked before
//! anything else; then `ping`, `deployment` and `push` are acted on and every
//! other event is answered 202.
//!
//! - `deployment` deploys the GitHub deployment's sha to its environment with
//!   `externalId` `github:<deployment id>`, so a redelivery (or a second
//!   delivery of the same deployment) finds the first. A deployment that
//!   carries Slipway's marker (or whose id Slipway recorded) is the echo of one
//!   Slipway created for a push, and deploys nothing.
//! - `push` to a branch deploys every environment that auto-deploys it, with
//!   `externalId` `github-push:<repository id>:<ref>:<after>:<environment>`:
//!   only signed fields, so a redelivery, or a captured body replayed under a
//!   new (unsigned) `X-GitHub-Delivery`, finds the deployments of the first.
//!   The GitHub deployment Slipway creates for it is made by the status
//!   reporter, once per Slipway deployment.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::deploy::preferred_application;
use super::{header, BranchDeploy, Extract, NamedDeploy, Source, Verify, Wanted, Which};
use crate::config::Secret;
use crate::error::HookError;
use crate::repository::RepoId;
use crate::signature;
use crate::statuses;

#[derive(Debug, Deserialize)]
struct Repository {
    /// GitHub's own id of the repository: it stays when the repository is
    /// renamed or moves to another owner.
    id: Option<u64>,
    full_name: String,
    clone_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_url: Option<String>,
}

impl Repository {
    /// Every name the hook gives its repository.
    fn names(&self) -> Vec<RepoId> {
        [
            Some(&self.full_name),
            self.clone_url.as_ref(),
            self.ssh_url.as_ref(),
            self.html_url.as_ref(),
            self.git_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|name| RepoId::parse(name))
        .collect()
    }

    fn as_hooks(&self) -> super::Repository {
        super::Repository {
            shown: self.full_name.clone(),
            names: self.names(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct DeploymentEvent {
    action: Option<String>,
    deployment: Deployment,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    /// 64-bit: GitHub's deployment ids passed 2^32 long ago.
    id: u64,
    sha: String,
    #[serde(rename = "ref")]
    ref_name: String,
    task: Option<String>,
    environment: String,
    payload: Option<Value>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    ref_name: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    message: Option<String>,
}

/// GitHub: `X-Hub-Signature-256`, the HMAC-SHA256 of the raw body with the
/// webhook secret.
pub(crate) struct Github;

pub(crate) const SOURCE: Source = Source::of::<Github>(
    "github",
    "/hooks/github",
    "github-webhook-secret",
    |hooks| {
        (
            hooks.github_webhook_secret.as_ref(),
            hooks.github_webhook_secret_file.as_deref(),
        )
    },
);

impl Verify for Github {
    fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), HookError> {
        signature::verify_github(
            secret.expose().as_bytes(),
            body,
            header(headers, "x-hub-signature-256"),
        )
        .map_err(|err| HookError::Unauthorized(err.to_string()))
    }
}

impl Extract for Github {
    fn extract(headers: &HeaderMap, body: &[u8]) -> Result<Wanted, HookError> {
        let event = header(headers, "x-github-event")
            .ok_or_else(|| HookError::BadRequest("missing header X-GitHub-Event".into()))?;
        match event {
            "ping" => Ok(Wanted::Pong(
                "pong: the signature is right; Slipway acts on `deployment` and `push`".into(),
            )),
            "deployment" => deployment(body),
            "push" => push(body),
            other => Ok(Wanted::Ignored(format!(
                "`{other}` events do not deploy: Slipway acts on `deployment` and `push`"
            ))),
        }
    }
}

fn deployment(body: &[u8]) -> Result<Wanted, HookError> {
    let event: DeploymentEvent = super::parse(body)?;
    let action = event.action.as_deref().unwrap_or("created");
    if action != "created" {
        return Ok(Wanted::Ignored(format!(
            "deployment `{action}` events do not deploy; only `created` does"
        )));
    }
    let gh = event.deployment;
    let payload = normalise_payload(gh.payload);
    if let Some(marker) = payload.as_ref().and_then(statuses::marker_of) {
        return Ok(Wanted::Ignored(format!(
            "GitHub deployment {} was created by Slipway for {} (deployment {}); it is not deployed again",
            gh.id, marker.name, marker.deployment
        )));
    }
    Ok(Wanted::Named(NamedDeploy {
        application: Which::OfRepository {
            preferred: preferred_application(payload.as_ref()),
            repository: event.repository.as_hooks(),
        },
        environment: gh.environment,
        ref_name: gh.ref_name,
        sha: Some(gh.sha),
        task: gh.task.filter(|task| !task.is_empty()),
        payload,
        description: gh.description.filter(|d| !d.is_empty()),
        external_id: Some(format!("github:{}", gh.id)),
        github: Some((event.repository.full_name, gh.id)),
    }))
}

fn push(body: &[u8]) -> Result<Wanted, HookError> {
    let event: PushEvent = super::parse(body)?;
    let Some(branch) = super::branch_of(&event.ref_name) else {
        return Ok(Wanted::Ignored(format!(
            "`{}` is not a branch: only pushes to branches deploy",
            event.ref_name
        )));
    };
    if event.deleted || super::is_null_sha(&event.after) {
        return Ok(Wanted::Ignored(format!(
            "branch `{branch}` was deleted: there is nothing to deploy"
        )));
    }
    let Some(repository_id) = event.repository.id else {
        return Err(HookError::BadRequest(
            "missing field `repository.id`: a push is keyed by its repository, ref and commit"
                .into(),
        ));
    };
    // Signed fields only: a captured body sent again under a new
    // X-GitHub-Delivery finds the deployments of the first.
    let key = format!(
        "github-push:{repository_id}:{}:{}",
        event.ref_name, event.after
    );
    let description = event
        .head_commit
        .as_ref()
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line);
    Ok(Wanted::Branch(BranchDeploy {
        repository: event.repository.as_hooks(),
        branch: branch.to_owned(),
        sha: event.after,
        key,
        description,
        github_repo: Some(event.repository.full_name),
    }))
}

/// GitHub sends a deployment's payload as an object, or (for older ones) as
/// the JSON text of one; an empty one is none.
fn normalise_payload(payload: Option<Value>) -> Option<Value> {
    match payload? {
        Value::Null => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(serde_json::from_str(&text).unwrap_or(Value::String(text))),
        Value::Object(map) if map.is_empty() => None,
        other => Some(other),
    }
}

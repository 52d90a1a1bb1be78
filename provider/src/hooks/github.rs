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
//!   `externalId` `github-push:<delivery id>:<environment>`, so a redelivery
//!   finds the first; the GitHub deployment Slipway creates for it is made by
//!   the status reporter, once per Slipway deployment.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{header, Answer, Hooks, Request};
use crate::error::HookError;
use crate::repository::RepoId;
use crate::signature;
use crate::statuses::{self, journal::GithubDeploymentSpec};

/// The longest delivery id accepted (GitHub's are 36-character GUIDs).
const MAX_DELIVERY_LEN: usize = 128;

#[derive(Debug, Deserialize)]
struct Repository {
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

pub(crate) async fn handle(
    hooks: &Hooks,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, HookError> {
    let Some(secret) = &hooks.secrets.github_webhook_secret else {
        return Err(HookError::NotConfigured(
            "GitHub hooks are off: the provider has no --github-webhook-secret".into(),
        ));
    };
    signature::verify_github(
        secret.expose().as_bytes(),
        body,
        header(headers, "x-hub-signature-256"),
    )
    .map_err(|err| HookError::Unauthorized(err.to_string()))?;

    let event = header(headers, "x-github-event")
        .ok_or_else(|| HookError::BadRequest("missing header X-GitHub-Event".into()))?;
    match event {
        "ping" => Ok(Answer::Pong {
            ok: true,
            message: "pong: the signature is right; Slipway acts on `deployment` and `push`".into(),
        }),
        "deployment" => deployment(hooks, body).await,
        "push" => {
            let delivery = header(headers, "x-github-delivery")
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    HookError::BadRequest(
                        "missing header X-GitHub-Delivery: it makes a push deploy exactly once"
                            .into(),
                    )
                })?;
            if delivery.len() > MAX_DELIVERY_LEN {
                return Err(HookError::BadRequest(format!(
                    "X-GitHub-Delivery is longer than {MAX_DELIVERY_LEN} characters"
                )));
            }
            push(hooks, delivery, body).await
        }
        other => Ok(Answer::ignored(format!(
            "`{other}` events do not deploy: Slipway acts on `deployment` and `push`"
        ))),
    }
}

async fn deployment(hooks: &Hooks, body: &[u8]) -> Result<Answer, HookError> {
    let event: DeploymentEvent = super::parse(body)?;
    let action = event.action.as_deref().unwrap_or("created");
    if action != "created" {
        return Ok(Answer::ignored(format!(
            "deployment `{action}` events do not deploy; only `created` does"
        )));
    }
    let gh = &event.deployment;
    let payload = normalise_payload(gh.payload.clone());
    if let Some(marker) = payload.as_ref().and_then(statuses::marker_of) {
        return Ok(Answer::ignored(format!(
            "GitHub deployment {} was created by Slipway for {} (deployment {}); it is not deployed again",
            gh.id, marker.name, marker.deployment
        )));
    }
    if let Some(ours) = hooks
        .statuses
        .as_ref()
        .and_then(|statuses| statuses.created_by_slipway(gh.id))
    {
        return Ok(Answer::ignored(format!(
            "GitHub deployment {} was created by Slipway for deployment {ours}; it is not deployed again",
            gh.id
        )));
    }

    let repo = &event.repository.full_name;
    let applications = hooks.applications().await?;
    let apps = super::by_repository(&applications, &event.repository.names());
    if apps.is_empty() {
        return Err(super::no_application(repo));
    }
    let apps = super::with_environment(&apps, &gh.environment, repo)?;
    let app = match apps.as_slice() {
        [app] => *app,
        several => {
            // One repository, several applications (a monorepo): the payload says which.
            let wanted = payload
                .as_ref()
                .and_then(|p| p.get("application"))
                .and_then(Value::as_str);
            match wanted.and_then(|name| several.iter().find(|app| app.name == name)) {
                Some(app) => *app,
                None => {
                    let names: Vec<&str> = several.iter().map(|app| app.name.as_str()).collect();
                    return Err(HookError::Unmatched(format!(
                        "the repository {repo} is deployed by several applications with an \
                         environment `{}` ({}): name one in the deployment's payload as \
                         {{\"application\": \"{}\"}}",
                        gh.environment,
                        names.join(", "),
                        names[0]
                    )));
                }
            }
        }
    };
    let created = hooks
        .create(Request {
            application: app.name.clone(),
            environment: gh.environment.clone(),
            ref_name: gh.ref_name.clone(),
            sha: Some(gh.sha.clone()),
            task: gh.task.clone().filter(|task| !task.is_empty()),
            payload,
            external_id: Some(format!("github:{}", gh.id)),
            description: gh.description.clone().filter(|d| !d.is_empty()),
        })
        .await?;
    if let Some(statuses) = &hooks.statuses {
        let id = created.id.parse::<i64>().map_err(|_| HookError::Internal)?;
        statuses.track_event(id, repo, gh.id).await.map_err(|err| {
            tracing::error!(%err, "cannot record a deployment in the status journal");
            HookError::Internal
        })?;
    }
    tracing::info!(
        deployment = %created.name,
        environment = %created.environment,
        github_deployment = gh.id,
        "GitHub deployment event"
    );
    Ok(Answer::Deployments {
        deployments: vec![created],
        skipped: Vec::new(),
    })
}

async fn push(hooks: &Hooks, delivery: &str, body: &[u8]) -> Result<Answer, HookError> {
    let event: PushEvent = super::parse(body)?;
    let Some(branch) = super::branch_of(&event.ref_name) else {
        return Ok(Answer::ignored(format!(
            "`{}` is not a branch: only pushes to branches deploy",
            event.ref_name
        )));
    };
    if event.deleted || super::is_null_sha(&event.after) {
        return Ok(Answer::ignored(format!(
            "branch `{branch}` was deleted: there is nothing to deploy"
        )));
    }
    let repo = &event.repository.full_name;
    let applications = hooks.applications().await?;
    let apps = super::by_repository(&applications, &event.repository.names());
    if apps.is_empty() {
        return Err(super::no_application(repo));
    }
    let targets = super::tracking(&apps, branch);
    if targets.is_empty() {
        let names: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
        return Ok(Answer::ignored(format!(
            "no environment of {} auto-deploys branch `{branch}`",
            names.join(", ")
        )));
    }
    let description = event
        .head_commit
        .as_ref()
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line);
    let requests = targets
        .iter()
        .map(|(app, environment)| Request {
            application: app.name.clone(),
            environment: environment.clone(),
            ref_name: branch.to_owned(),
            sha: Some(event.after.clone()),
            task: None,
            payload: None,
            external_id: Some(format!("github-push:{delivery}:{environment}")),
            description: description.clone(),
        })
        .collect();
    let (created, skipped) = hooks.create_all(requests).await?;
    if let Some(statuses) = &hooks.statuses {
        for deployment in &created {
            let id = deployment
                .id
                .parse::<i64>()
                .map_err(|_| HookError::Internal)?;
            let spec = GithubDeploymentSpec {
                ref_name: branch.to_owned(),
                sha: event.after.clone(),
                environment: deployment.environment.clone(),
                task: "deploy".into(),
                description: description.clone(),
            };
            statuses.track_push(id, repo, spec).await.map_err(|err| {
                tracing::error!(%err, "cannot record a deployment in the status journal");
                HookError::Internal
            })?;
        }
    }
    tracing::info!(
        repo = %repo,
        branch,
        deployments = created.len(),
        skipped = skipped.len(),
        "GitHub push"
    );
    Ok(Answer::Deployments {
        deployments: created,
        skipped,
    })
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

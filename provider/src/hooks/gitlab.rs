//! `POST /hooks/gitlab`: `X-Gitlab-Token` is compared in constant time before
//! anything else. A `Push Hook` to a branch deploys every environment that
//! auto-deploys it; a `Pipeline Hook` whose status is `success` deploys the
//! pipeline's sha to the environments that track its branch. GitLab's
//! `Idempotency-Key` (or `X-Gitlab-Event-UUID`) is the idempotency key: a
//! retried hook finds the deployments of the first.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{header, Answer, Hooks, Request};
use crate::error::HookError;
use crate::repository::RepoId;
use crate::signature;

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 128;

#[derive(Debug, Deserialize)]
struct Project {
    path_with_namespace: String,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
}

impl Project {
    fn names(&self) -> Vec<RepoId> {
        [
            Some(&self.path_with_namespace),
            self.git_http_url.as_ref(),
            self.git_ssh_url.as_ref(),
            self.web_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|name| RepoId::parse(name))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
struct PushHook {
    #[serde(rename = "ref")]
    ref_name: String,
    after: String,
    project: Project,
    #[serde(default)]
    commits: Vec<Commit>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PipelineHook {
    object_attributes: Pipeline,
    project: Project,
    commit: Option<Commit>,
}

#[derive(Debug, Deserialize)]
struct Pipeline {
    id: u64,
    #[serde(rename = "ref")]
    ref_name: String,
    #[serde(default)]
    tag: bool,
    sha: String,
    status: String,
}

pub(crate) async fn handle(
    hooks: &Hooks,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, HookError> {
    let Some(expected) = &hooks.secrets.gitlab_webhook_token else {
        return Err(HookError::NotConfigured(
            "GitLab hooks are off: the provider has no --gitlab-webhook-token".into(),
        ));
    };
    let given = header(headers, "x-gitlab-token").ok_or_else(|| {
        HookError::Unauthorized(
            "missing X-Gitlab-Token header: set the webhook's secret token".into(),
        )
    })?;
    if !signature::token_matches(expected.expose(), given) {
        return Err(HookError::Unauthorized(
            "X-Gitlab-Token is wrong: check the webhook's secret token".into(),
        ));
    }
    let event = header(headers, "x-gitlab-event")
        .ok_or_else(|| HookError::BadRequest("missing header X-Gitlab-Event".into()))?;
    let key = header(headers, "idempotency-key")
        .or_else(|| header(headers, "x-gitlab-event-uuid"))
        .map(str::trim)
        .filter(|key| !key.is_empty());
    if key.is_some_and(|key| key.len() > MAX_KEY_LEN) {
        return Err(HookError::BadRequest(format!(
            "Idempotency-Key is longer than {MAX_KEY_LEN} characters"
        )));
    }
    match event {
        "Push Hook" => push(hooks, key, body).await,
        "Pipeline Hook" => pipeline(hooks, key, body).await,
        other => Ok(Answer::ignored(format!(
            "`{other}` events do not deploy: Slipway acts on `Push Hook` and `Pipeline Hook`"
        ))),
    }
}

async fn push(hooks: &Hooks, key: Option<&str>, body: &[u8]) -> Result<Answer, HookError> {
    let hook: PushHook = super::parse(body)?;
    let Some(branch) = super::branch_of(&hook.ref_name) else {
        return Ok(Answer::ignored(format!(
            "`{}` is not a branch: only pushes to branches deploy",
            hook.ref_name
        )));
    };
    if super::is_null_sha(&hook.after) {
        return Ok(Answer::ignored(format!(
            "branch `{branch}` was deleted: there is nothing to deploy"
        )));
    }
    // Without GitLab's key, the push itself: the same commit pushed to the
    // same branch of the same project.
    let key = key.map(str::to_owned).unwrap_or_else(|| {
        format!(
            "push:{}:{branch}:{}",
            hook.project.path_with_namespace, hook.after
        )
    });
    let description = hook
        .commits
        .iter()
        .find(|commit| commit.id.as_deref() == Some(hook.after.as_str()))
        .or(hook.commits.last())
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line);
    deploy_branch(hooks, &hook.project, branch, &hook.after, &key, description).await
}

async fn pipeline(hooks: &Hooks, key: Option<&str>, body: &[u8]) -> Result<Answer, HookError> {
    let hook: PipelineHook = super::parse(body)?;
    let pipeline = &hook.object_attributes;
    if pipeline.status != "success" {
        return Ok(Answer::ignored(format!(
            "pipeline {} is `{}`: only a successful pipeline deploys",
            pipeline.id, pipeline.status
        )));
    }
    if pipeline.tag {
        return Ok(Answer::ignored(format!(
            "pipeline {} ran for tag `{}`: only branches deploy",
            pipeline.id, pipeline.ref_name
        )));
    }
    let branch = super::branch_of(&pipeline.ref_name).unwrap_or(&pipeline.ref_name);
    let key = key
        .map(str::to_owned)
        .unwrap_or_else(|| format!("pipeline:{}", pipeline.id));
    let description = hook
        .commit
        .as_ref()
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line)
        .or_else(|| Some(format!("pipeline {} succeeded", pipeline.id)));
    deploy_branch(
        hooks,
        &hook.project,
        branch,
        &pipeline.sha,
        &key,
        description,
    )
    .await
}

async fn deploy_branch(
    hooks: &Hooks,
    project: &Project,
    branch: &str,
    sha: &str,
    key: &str,
    description: Option<String>,
) -> Result<Answer, HookError> {
    let repo = &project.path_with_namespace;
    let applications = hooks.applications().await?;
    let apps = super::by_repository(&applications, &project.names());
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
    let requests = targets
        .iter()
        .map(|(app, environment)| Request {
            application: app.name.clone(),
            environment: environment.clone(),
            ref_name: branch.to_owned(),
            sha: Some(sha.to_owned()),
            task: None,
            payload: None,
            external_id: Some(format!("gitlab:{key}:{environment}")),
            description: description.clone(),
        })
        .collect();
    let (created, skipped) = hooks.create_all(requests).await?;
    tracing::info!(
        repo = %repo,
        branch,
        deployments = created.len(),
        skipped = skipped.len(),
        "GitLab hook"
    );
    Ok(Answer::Deployments {
        deployments: created,
        skipped,
    })
}

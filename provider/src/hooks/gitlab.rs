//! `POST /hooks/gitlab`: `X-Gitlab-Token` is compared in constant time before
//! anything else. GitLab signs nothing: the token is a shared secret, so the
//! idempotency keys come from the body's own fields, which makes a resend of
//! the same hook (GitLab's retry, or anyone's) find the deployments of the
//! first.
//!
//! - A `Push Hook` to a branch deploys every environment that auto-deploys it,
//!   keyed `gitlab-push:<project id>:<ref>:<after>:<environment>`.
//! - A `Pipeline Hook` whose status is `success` deploys the pipeline's sha to
//!   the environments that track its branch, keyed
//!   `gitlab-pipeline:<project id>:<pipeline id>:<environment>` — but only a
//!   pipeline of a branch's own code ([`DEPLOYING_SOURCES`]). A merge
//!   request's pipeline runs code that is not merged (perhaps from a fork,
//!   whose branch may be called `main` too) and never deploys; nor does a tag
//!   pipeline, since environments track branches.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{header, BranchDeploy, Extract, Source, Verify, Wanted};
use crate::config::Secret;
use crate::error::HookError;
use crate::repository::RepoId;
use crate::signature;

/// The pipeline sources whose successful pipelines deploy: pipelines of a
/// branch as it is in the repository, started by a push, by someone in the
/// UI (`web`), by a schedule, by the API or by a trigger token. Every other
/// source does not: `merge_request_event` and `external_pull_request_event`
/// run unmerged code; `parent_pipeline` and `pipeline` (child and
/// multi-project pipelines) inherit whatever started their parent, which the
/// hook does not say; `chat`, `webide`, `ondemand_dast_scan`, ... are not
/// releases.
pub const DEPLOYING_SOURCES: &[&str] = &["push", "web", "schedule", "api", "trigger"];

#[derive(Debug, Deserialize)]
struct Project {
    id: u64,
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

    fn as_hooks(&self) -> super::Repository {
        super::Repository {
            shown: self.path_with_namespace.clone(),
            names: self.names(),
        }
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
    /// Present (and not null) for a merge request's pipeline.
    merge_request: Option<serde_json::Value>,
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
    /// What started the pipeline: `push`, `web`, `merge_request_event`, ...
    source: Option<String>,
}

/// GitLab: the webhook's secret token in `X-Gitlab-Token`.
pub(crate) struct Gitlab;

pub(crate) const SOURCE: Source =
    Source::of::<Gitlab>("gitlab", "/hooks/gitlab", "gitlab-webhook-token", |hooks| {
        (
            hooks.gitlab_webhook_token.as_ref(),
            hooks.gitlab_webhook_token_file.as_deref(),
        )
    });

impl Verify for Gitlab {
    fn verify(secret: &Secret, headers: &HeaderMap, _body: &[u8]) -> Result<(), HookError> {
        let given = header(headers, "x-gitlab-token").ok_or_else(|| {
            HookError::Unauthorized(
                "missing X-Gitlab-Token header: set the webhook's secret token".into(),
            )
        })?;
        if !signature::token_matches(secret.expose(), given) {
            return Err(HookError::Unauthorized(
                "X-Gitlab-Token is wrong: check the webhook's secret token".into(),
            ));
        }
        Ok(())
    }
}

impl Extract for Gitlab {
    fn extract(headers: &HeaderMap, body: &[u8]) -> Result<Wanted, HookError> {
        let event = header(headers, "x-gitlab-event")
            .ok_or_else(|| HookError::BadRequest("missing header X-Gitlab-Event".into()))?;
        match event {
            "Push Hook" => push(body),
            "Pipeline Hook" => pipeline(body),
            other => Ok(Wanted::Ignored(format!(
                "`{other}` events do not deploy: Slipway acts on `Push Hook` and `Pipeline Hook`"
            ))),
        }
    }
}

fn push(body: &[u8]) -> Result<Wanted, HookError> {
    let hook: PushHook = super::parse(body)?;
    let Some(branch) = super::branch_of(&hook.ref_name) else {
        return Ok(Wanted::Ignored(format!(
            "`{}` is not a branch: only pushes to branches deploy",
            hook.ref_name
        )));
    };
    if super::is_null_sha(&hook.after) {
        return Ok(Wanted::Ignored(format!(
            "branch `{branch}` was deleted: there is nothing to deploy"
        )));
    }
    let key = format!(
        "gitlab-push:{}:{}:{}",
        hook.project.id, hook.ref_name, hook.after
    );
    let description = hook
        .commits
        .iter()
        .find(|commit| commit.id.as_deref() == Some(hook.after.as_str()))
        .or(hook.commits.last())
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line);
    Ok(Wanted::Branch(BranchDeploy {
        repository: hook.project.as_hooks(),
        branch: branch.to_owned(),
        sha: hook.after,
        key,
        description,
        github_repo: None,
    }))
}

fn pipeline(body: &[u8]) -> Result<Wanted, HookError> {
    let hook: PipelineHook = super::parse(body)?;
    let pipeline = &hook.object_attributes;
    if pipeline.status != "success" {
        return Ok(Wanted::Ignored(format!(
            "pipeline {} is `{}`: only a successful pipeline deploys",
            pipeline.id, pipeline.status
        )));
    }
    let source = pipeline.source.as_deref().unwrap_or("");
    let of_merge_request = hook.merge_request.as_ref().is_some_and(|mr| !mr.is_null());
    if of_merge_request || source == "merge_request_event" {
        return Ok(Wanted::Ignored(format!(
            "pipeline {} ran for a merge request: its code is not merged, so it never deploys",
            pipeline.id
        )));
    }
    if pipeline.tag {
        return Ok(Wanted::Ignored(format!(
            "pipeline {} ran for tag `{}`: tag pipelines never deploy, environments track branches",
            pipeline.id, pipeline.ref_name
        )));
    }
    if !DEPLOYING_SOURCES.contains(&source) {
        let source = if source.is_empty() {
            "an unknown source (no `object_attributes.source`)".to_owned()
        } else {
            format!("source `{source}`")
        };
        return Ok(Wanted::Ignored(format!(
            "pipeline {} has {source}: only pipelines with source {} deploy",
            pipeline.id,
            DEPLOYING_SOURCES.join(", ")
        )));
    }
    let branch = super::branch_of(&pipeline.ref_name).unwrap_or(&pipeline.ref_name);
    let key = format!("gitlab-pipeline:{}:{}", hook.project.id, pipeline.id);
    let description = hook
        .commit
        .as_ref()
        .and_then(|commit| commit.message.as_deref())
        .and_then(super::first_line)
        .or_else(|| Some(format!("pipeline {} succeeded", pipeline.id)));
    Ok(Wanted::Branch(BranchDeploy {
        repository: hook.project.as_hooks(),
        branch: branch.to_owned(),
        sha: pipeline.sha.clone(),
        key,
        description,
        github_repo: None,
    }))
}

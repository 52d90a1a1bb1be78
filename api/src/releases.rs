//! Releases: every rollout that succeeded is a release of its environment
//! (a deployment that ran a task alone is not),
//! serving from when it finished until the next release replaced it. Rolling
//! back creates a deployment (task `rollback`) that restores an earlier
//! release exactly, and pauses the environment's auto-deploys; promoting
//! deploys another environment's release exactly.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::applications;
use crate::db::entities::deployment::DeploymentStatus;
use crate::db::entities::{application, deployment, environment};
use crate::deployments::{self, NewDeployment};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::view::DeploymentView;

/// The task of a deployment that restores an earlier release.
pub const ROLLBACK_TASK: &str = "rollback";
const MAX_REASON: usize = 1000;

/// One page of an environment's releases, newest first: up to `first` with
/// an id below `before_id`, and whether more follow.
pub async fn list(
    db: &impl ConnectionTrait,
    environment_id: i64,
    first: u64,
    before_id: Option<i64>,
) -> ApiResult<(Vec<deployment::Model>, bool)> {
    deployments::page(db, succeeded(environment_id), first, before_id).await
}

/// The release of the environment before deployment `id` (what it replaced).
/// Deployments of an environment run one at a time in the order of their
/// ids, so the order of ids is the order of releases.
pub async fn before(
    db: &impl ConnectionTrait,
    environment_id: i64,
    id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(succeeded(environment_id)
        .filter(deployment::Column::Id.lt(id))
        .order_by_desc(deployment::Column::Id)
        .one(db)
        .await?)
}

/// The release that replaced release `id`, if one did.
pub async fn after(
    db: &impl ConnectionTrait,
    environment_id: i64,
    id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(succeeded(environment_id)
        .filter(deployment::Column::Id.gt(id))
        .order_by_asc(deployment::Column::Id)
        .one(db)
        .await?)
}

/// Deployment `id`'s row, if there is one.
pub async fn deployment(
    db: &impl ConnectionTrait,
    id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find_by_id(id).one(db).await?)
}

fn succeeded(environment_id: i64) -> sea_orm::Select<deployment::Entity> {
    deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployments::released())
}

/// What a person asks for when rolling back.
#[derive(Clone, Debug)]
pub struct Rollback {
    pub application: String,
    pub environment: String,
    /// The release to restore, by number (`41` or `web#41`); the one before
    /// the current release when `None`.
    pub to: Option<String>,
    pub reason: String,
}

/// Queues a deployment that restores a release: its commit, its spec and
/// the image digests it ran. Pauses the environment's auto-deploys.
pub async fn rollback(state: &AppState, by: &str, ask: Rollback) -> ApiResult<DeploymentView> {
    let reason = ask.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(ApiError::BadInput(format!(
            "`reason` must say why, in 1 to {MAX_REASON} characters"
        )));
    }
    let db = &state.db;
    let (app, env) = applications::get_environment(db, &ask.application, &ask.environment).await?;
    let target = match &ask.to {
        Some(to) => release_numbered(db, &app, &env, to).await?,
        None => {
            let current = deployments::current_release(db, env.id)
                .await?
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "`{}` of `{}` has no release to roll back from",
                        env.name, app.name
                    ))
                })?;
            before(db, env.id, current.id).await?.ok_or_else(|| {
                ApiError::Conflict(format!(
                    "`{}` of `{}` has no release before {}#{} to roll back to",
                    env.name, app.name, app.name, current.number
                ))
            })?
        }
    };
    let sha = target.sha.clone().ok_or_else(|| {
        ApiError::internal(format!(
            "release {}#{} has no commit recorded",
            app.name, target.number
        ))
    })?;
    let description = format!(
        "roll back {} to {}#{} ({}): {reason}",
        env.name,
        app.name,
        target.number,
        &sha[..sha.len().min(7)]
    );
    deployments::create(
        state,
        by,
        NewDeployment {
            application: app.name.clone(),
            environment: env.name.clone(),
            ref_name: target.ref_name.clone(),
            sha: Some(sha),
            task: Some(ROLLBACK_TASK.to_owned()),
            payload: target
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            external_id: None,
            description: Some(description),
            auto_deploy: false,
            restores: Some(target.id),
            pause_auto_deploy: Some(reason.to_owned()),
            override_freeze: None,
            force: false,
        },
    )
    .await
}

/// Queues a deployment to environment `to` of exactly the release running
/// in `from`: its commit and the image digests it ran, nothing re-resolved.
pub async fn promote(
    state: &AppState,
    by: &str,
    application: &str,
    from: &str,
    to: &str,
) -> ApiResult<DeploymentView> {
    if from == to {
        return Err(ApiError::BadInput(format!(
            "`from` and `to` are both `{from}`: promote from one environment to another"
        )));
    }
    let db = &state.db;
    let (app, source) = applications::get_environment(db, application, from).await?;
    let release = deployments::current_release(db, source.id)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "`{from}` of `{application}` has no release to promote"
            ))
        })?;
    let sha = release.sha.clone().ok_or_else(|| {
        ApiError::internal(format!(
            "release {application}#{} has no commit recorded",
            release.number
        ))
    })?;
    let description = format!(
        "promote {application}#{} ({}) from {from} to {to}",
        release.number,
        &sha[..sha.len().min(7)]
    );
    deployments::create(
        state,
        by,
        NewDeployment {
            application: app.name.clone(),
            environment: to.to_owned(),
            ref_name: release.ref_name.clone(),
            sha: Some(sha),
            task: None,
            payload: release
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            external_id: None,
            description: Some(description),
            auto_deploy: false,
            restores: Some(release.id),
            pause_auto_deploy: None,
            // A promotion waits out a freeze like any deployment.
            override_freeze: None,
            force: false,
        },
    )
    .await
}

/// Release `to` (`41`, `#41` or `web#41`) of `env`; `BAD_INPUT` when that
/// deployment is not one.
async fn release_numbered(
    db: &impl ConnectionTrait,
    app: &application::Model,
    env: &environment::Model,
    to: &str,
) -> ApiResult<deployment::Model> {
    let digits = to
        .strip_prefix(&format!("{}#", app.name))
        .or_else(|| to.strip_prefix('#'))
        .unwrap_or(to);
    let number: i64 = digits.parse().map_err(|_| {
        ApiError::BadInput(format!(
            "`to` must be a deployment number of `{}` (`41` or `{}#41`), not {}",
            app.name,
            app.name,
            crate::error::quote(to)
        ))
    })?;
    let row = deployment::Entity::find()
        .filter(deployment::Column::ApplicationId.eq(app.id))
        .filter(deployment::Column::Number.eq(number))
        .one(db)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("deployment {}#{number} does not exist", app.name))
        })?;
    if row.environment_id != env.id {
        return Err(ApiError::BadInput(format!(
            "{}#{number} is not a release of `{}`: it was deployed to another environment",
            app.name, env.name
        )));
    }
    if row.status != DeploymentStatus::Succeeded {
        return Err(ApiError::BadInput(format!(
            "{}#{number} is not a release of `{}`: it {}",
            app.name,
            env.name,
            match row.status {
                DeploymentStatus::Queued => "is queued",
                DeploymentStatus::InProgress => "is in progress",
                DeploymentStatus::Failed => "failed",
                DeploymentStatus::Cancelled => "was cancelled",
                DeploymentStatus::Succeeded => unreachable!("checked above"),
            }
        )));
    }
    if let Some(task) = &row.runs_task {
        return Err(ApiError::BadInput(format!(
            "{}#{number} is not a release of `{}`: it ran task `{task}` alone and rolled \
             nothing out",
            app.name, env.name
        )));
    }
    if let Some(task) = &row.runs_task {
        return Err(ApiError::BadInput(format!(
            "{}#{number} is not a release of `{}`: it ran task `{task}` alone and rolled \
             nothing out",
            app.name, env.name
        )));
    }
    Ok(row)
}

/// Pauses auto-deploys of environment `id`, for rollback `cause`.
pub async fn pause(
    db: &impl ConnectionTrait,
    id: i64,
    by: &str,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    cause: i64,
) -> ApiResult<environment::Model> {
    Ok(environment::ActiveModel {
        id: Set(id),
        auto_deploy_paused_by: Set(Some(by.to_owned())),
        auto_deploy_paused_at: Set(Some(at)),
        auto_deploy_pause_reason: Set(Some(reason.to_owned())),
        auto_deploy_paused_for: Set(Some(cause)),
        ..Default::default()
    }
    .update(db)
    .await?)
}

/// Lets auto-deploys of environment `id` run again.
pub async fn clear_pause(db: &impl ConnectionTrait, id: i64) -> ApiResult<environment::Model> {
    Ok(environment::ActiveModel {
        id: Set(id),
        auto_deploy_paused_by: Set(None),
        auto_deploy_paused_at: Set(None),
        auto_deploy_pause_reason: Set(None),
        auto_deploy_paused_for: Set(None),
        ..Default::default()
    }
    .update(db)
    .await?)
}

/// `resumeAutoDeploy`: auto-deploys of the environment run again.
pub async fn resume(
    state: &AppState,
    application: &str,
    environment: &str,
) -> ApiResult<(environment::Model, application::Model)> {
    let (app, env) = applications::get_environment(&state.db, application, environment).await?;
    let env = clear_pause(&state.db, env.id).await?;
    state.events.environment_changed(&env);
    tracing::info!(application, environment, "auto-deploy resumed");
    Ok((env, app))
}

/// Where a forge shows the commits between two releases: GitHub's
/// `compare/A...B`, GitLab's `-/compare/A...B`; `None` for other hosts.
pub fn compare_url(repository: &str, from: &str, to: &str) -> Option<String> {
    let (forge, base) = forge(repository)?;
    Some(match forge {
        Forge::GitHub => format!("{base}/compare/{from}...{to}"),
        Forge::GitLab => format!("{base}/-/compare/{from}...{to}"),
    })
}

/// Where a forge shows one commit; `None` for other hosts.
pub fn commit_url(repository: &str, sha: &str) -> Option<String> {
    let (forge, base) = forge(repository)?;
    Some(match forge {
        Forge::GitHub => format!("{base}/commit/{sha}"),
        Forge::GitLab => format!("{base}/-/commit/{sha}"),
    })
}

/// A forge repository's `owner/name` (`acme/shop`), as Sentry and the
/// forges name it.
pub fn repository_name(repository: &str) -> Option<String> {
    let (_, path) = forge_path(repository)?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    (path.split('/').filter(|p| !p.is_empty()).count() >= 2).then(|| path.to_owned())
}

enum Forge {
    GitHub,
    GitLab,
}

/// The forge of a repository and its web address (`https://host/owner/name`).
fn forge(repository: &str) -> Option<(Forge, String)> {
    let (host, path) = forge_path(repository)?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    if path.split('/').filter(|p| !p.is_empty()).count() < 2 {
        return None;
    }
    let forge = if host == "github.com" || host.starts_with("github.") {
        Forge::GitHub
    } else if host == "gitlab.com" || host.starts_with("gitlab.") {
        Forge::GitLab
    } else {
        return None;
    };
    Some((forge, format!("https://{host}/{path}")))
}

/// `(host, owner/name)` of `https://host/owner/name(.git)`,
/// `ssh://git@host/owner/name.git` and `git@host:owner/name.git`.
fn forge_path(repository: &str) -> Option<(&str, &str)> {
    let rest = repository
        .strip_prefix("https://")
        .or_else(|| repository.strip_prefix("ssh://"));
    match rest {
        Some(rest) => {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next()?;
            let host = host.split(':').next()?;
            Some((host, path))
        }
        None => {
            let (user_host, path) = repository.split_once(':')?;
            let host = user_host.strip_prefix("git@")?;
            Some((host, path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{commit_url, compare_url};

    #[test]
    fn compare_urls_of_github_and_gitlab_repositories() {
        for (repository, url) in [
            (
                "https://github.com/acme/shop.git",
                Some("https://github.com/acme/shop/compare/a...b"),
            ),
            (
                "git@github.com:acme/shop.git",
                Some("https://github.com/acme/shop/compare/a...b"),
            ),
            (
                "ssh://git@github.com/acme/shop",
                Some("https://github.com/acme/shop/compare/a...b"),
            ),
            (
                "https://gitlab.com/group/sub/shop.git",
                Some("https://gitlab.com/group/sub/shop/-/compare/a...b"),
            ),
            ("git://127.0.0.1:9418/acme/shop.git", None),
            ("file:///srv/git/shop.git", None),
            ("https://github.com/acme", None),
        ] {
            assert_eq!(
                compare_url(repository, "a", "b").as_deref(),
                url,
                "{repository}"
            );
        }
    }

    #[test]
    fn commit_urls_of_github_and_gitlab_repositories() {
        assert_eq!(
            commit_url("git@github.com:acme/shop.git", "abc").as_deref(),
            Some("https://github.com/acme/shop/commit/abc")
        );
        assert_eq!(
            commit_url("https://gitlab.com/group/shop", "abc").as_deref(),
            Some("https://gitlab.com/group/shop/-/commit/abc")
        );
        assert_eq!(commit_url("git://127.0.0.1/acme/shop.git", "abc"), None);
    }
}

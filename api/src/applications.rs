//! Applications and their environments, including environment locks.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr,
};

use crate::db::entities::environment::QueuePolicy;
use crate::db::entities::{application, environment};
use crate::error::{quote, ApiError, ApiResult};
use crate::repository;
use crate::state::AppState;

/// Names of applications and environments: they end up in swarm stack names and
/// URLs, so they are kept to lowercase letters, digits, `-`, `_` and `.`.
pub fn validate_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadInput(format!(
            "{what} name {} is invalid: use 1 to 63 lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            quote(name)
        )))
    }
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("application {} does not exist", quote(name)))
}

pub fn environment_not_found(application: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "application {} has no environment {}",
        quote(application),
        quote(name)
    ))
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub async fn find(db: &impl ConnectionTrait, name: &str) -> ApiResult<Option<application::Model>> {
    Ok(application::Entity::find()
        .filter(application::Column::Name.eq(name))
        .one(db)
        .await?)
}

pub async fn get(db: &impl ConnectionTrait, name: &str) -> ApiResult<application::Model> {
    find(db, name).await?.ok_or_else(|| not_found(name))
}

pub async fn list(db: &impl ConnectionTrait) -> ApiResult<Vec<application::Model>> {
    Ok(application::Entity::find()
        .order_by_asc(application::Column::Name)
        .all(db)
        .await?)
}

pub async fn find_environment(
    db: &impl ConnectionTrait,
    application_id: i64,
    name: &str,
) -> ApiResult<Option<environment::Model>> {
    Ok(environment::Entity::find()
        .filter(environment::Column::ApplicationId.eq(application_id))
        .filter(environment::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Application `application` and its environment `name`, both of which must exist.
pub async fn get_environment(
    db: &impl ConnectionTrait,
    application: &str,
    name: &str,
) -> ApiResult<(application::Model, environment::Model)> {
    let app = get(db, application).await?;
    let env = find_environment(db, app.id, name)
        .await?
        .ok_or_else(|| environment_not_found(application, name))?;
    Ok((app, env))
}

pub async fn environments(
    db: &impl ConnectionTrait,
    application_id: i64,
) -> ApiResult<Vec<environment::Model>> {
    Ok(environment::Entity::find()
        .filter(environment::Column::ApplicationId.eq(application_id))
        .order_by_asc(environment::Column::Name)
        .all(db)
        .await?)
}

#[derive(Clone, Debug)]
pub struct NewApplication {
    pub name: String,
    pub repository: String,
    pub spec_path: Option<String>,
}

/// A path inside the repository.
fn validate_spec_path(spec_path: &str) -> ApiResult<()> {
    if spec_path.is_empty()
        || spec_path.len() > 1024
        || spec_path.starts_with('/')
        || spec_path.split('/').any(|part| part == "..")
    {
        return Err(ApiError::BadInput(format!(
            "`specPath` {} must be a relative path inside the repository",
            quote(spec_path)
        )));
    }
    Ok(())
}

pub async fn create(state: &AppState, input: NewApplication) -> ApiResult<application::Model> {
    validate_name("application", &input.name)?;
    let repository = repository::validate(&input.repository)?;
    let spec_path = input.spec_path.unwrap_or_else(|| "slipway.yml".to_owned());
    validate_spec_path(&spec_path)?;
    let created = application::ActiveModel {
        name: Set(input.name.clone()),
        repository: Set(repository.to_owned()),
        spec_path: Set(spec_path),
        deployment_count: Set(0),
        created_at: Set(state.clock.now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await;
    match created {
        Ok(app) => Ok(app),
        Err(err) if is_unique_violation(&err) => Err(ApiError::Conflict(format!(
            "application `{}` already exists",
            input.name
        ))),
        Err(err) => Err(err.into()),
    }
}

/// What an admin changes of an application; `None` keeps it.
#[derive(Clone, Debug, Default)]
pub struct ApplicationChange {
    pub repository: Option<String>,
    pub spec_path: Option<String>,
}

/// Changes an application's repository or spec path (to fix a URL stored
/// with credentials in it, say). Deployments already queued use the new
/// values when a runner claims them.
pub async fn update(
    state: &AppState,
    name: &str,
    change: ApplicationChange,
) -> ApiResult<application::Model> {
    if change.repository.is_none() && change.spec_path.is_none() {
        return Err(ApiError::BadInput(
            "nothing to change: give `repository`, `specPath` or both".into(),
        ));
    }
    let mut update = application::Entity::update_many();
    if let Some(repository) = &change.repository {
        let repository = repository::validate(repository)?;
        update = update.col_expr(application::Column::Repository, Expr::value(repository));
    }
    if let Some(spec_path) = change.spec_path {
        validate_spec_path(&spec_path)?;
        update = update.col_expr(application::Column::SpecPath, Expr::value(spec_path));
    }
    update
        .filter(application::Column::Name.eq(name))
        .exec_with_returning(&state.db)
        .await?
        .pop()
        .ok_or_else(|| not_found(name))
}

#[derive(Clone, Debug, Default)]
pub struct NewEnvironment {
    pub application: String,
    pub name: String,
    pub auto_deploy_ref: Option<String>,
    pub url: Option<String>,
    pub queue_policy: QueuePolicy,
    pub max_queued: Option<i64>,
    /// The labels a runner must have to deploy it; none: any runner.
    pub runner_labels: Vec<String>,
}

/// The most a queue cap may be.
const MAX_QUEUED: i64 = 1000;

fn validate_max_queued(max_queued: Option<i64>) -> ApiResult<()> {
    match max_queued {
        Some(n) if !(1..=MAX_QUEUED).contains(&n) => Err(ApiError::BadInput(format!(
            "`maxQueued` must be between 1 and {MAX_QUEUED}, not {n}"
        ))),
        _ => Ok(()),
    }
}

/// Sets how environment `name` of `application` queues deployments.
pub async fn set_queue_policy(
    state: &AppState,
    application: &str,
    name: &str,
    policy: QueuePolicy,
    max_queued: Option<i64>,
) -> ApiResult<(environment::Model, application::Model)> {
    validate_max_queued(max_queued)?;
    let app = get(&state.db, application).await?;
    let env = find_environment(&state.db, app.id, name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "environment `{name}` of `{application}` does not exist"
            ))
        })?;
    let env = environment::ActiveModel {
        id: Set(env.id),
        queue_policy: Set(policy),
        max_queued: Set(max_queued),
        ..Default::default()
    }
    .update(&state.db)
    .await?;
    Ok((env, app))
}

pub async fn create_environment(
    state: &AppState,
    input: NewEnvironment,
) -> ApiResult<(environment::Model, application::Model)> {
    validate_name("environment", &input.name)?;
    if let Some(url) = &input.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(ApiError::BadInput(format!(
                "`url` {} must be an http:// or https:// URL",
                quote(url)
            )));
        }
    }
    if input
        .auto_deploy_ref
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 255)
    {
        return Err(ApiError::BadInput(
            "`autoDeployRef` must be a branch name of 1 to 255 characters".into(),
        ));
    }
    validate_max_queued(input.max_queued)?;
    let runner_labels = crate::runners::validate_labels(input.runner_labels)?;
    let app = get(&state.db, &input.application).await?;
    let created = environment::ActiveModel {
        application_id: Set(app.id),
        name: Set(input.name.clone()),
        auto_deploy_ref: Set(input.auto_deploy_ref),
        url: Set(input.url),
        queue_policy: Set(input.queue_policy),
        max_queued: Set(input.max_queued),
        runner_labels: Set((!runner_labels.is_empty())
            .then(|| serde_json::to_string(&runner_labels).expect("a list of strings is JSON"))),
        created_at: Set(state.clock.now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await;
    match created {
        Ok(env) => Ok((env, app)),
        Err(err) if is_unique_violation(&err) => Err(ApiError::Conflict(format!(
            "application `{}` already has an environment `{}`",
            app.name, input.name
        ))),
        Err(err) => Err(err.into()),
    }
}

/// Locks (with `Some(reason)`) or unlocks (`None`) an environment. Locking an
/// environment that does not exist yet creates it, so a team can lock before its
/// first deployment.
pub async fn set_lock(
    state: &AppState,
    application: &str,
    environment: &str,
    lock: Option<(&str, &str)>,
) -> ApiResult<(environment::Model, application::Model)> {
    if let Some((_, reason)) = lock {
        if reason.trim().is_empty() || reason.len() > 1000 {
            return Err(ApiError::BadInput(
                "a lock needs a `reason` of 1 to 1000 characters".into(),
            ));
        }
    }
    let app = get(&state.db, application).await?;
    let env = match find_environment(&state.db, app.id, environment).await? {
        Some(env) => env,
        None if lock.is_some() => {
            create_environment(
                state,
                NewEnvironment {
                    application: application.to_owned(),
                    name: environment.to_owned(),
                    ..NewEnvironment::default()
                },
            )
            .await?
            .0
        }
        None => return Err(environment_not_found(application, environment)),
    };
    let (by, at, reason) = match lock {
        Some((by, reason)) => (
            Some(by.to_owned()),
            Some(state.clock.now()),
            Some(reason.to_owned()),
        ),
        None => (None, None, None),
    };
    let mut update = environment::Entity::update_many()
        .col_expr(environment::Column::LockedBy, Expr::value(by))
        .col_expr(environment::Column::LockedAt, Expr::value(at))
        .col_expr(environment::Column::LockReason, Expr::value(reason))
        .filter(environment::Column::Id.eq(env.id));
    if lock.is_some() {
        // A lock is not silently taken over: the holder unlocks first.
        update = update.filter(environment::Column::LockedBy.is_null());
    }
    match update.exec_with_returning(&state.db).await?.pop() {
        Some(updated) => {
            state.events.environment_changed(&updated);
            Ok((updated, app))
        }
        None => {
            let current = find_environment(&state.db, app.id, environment)
                .await?
                .ok_or_else(|| environment_not_found(application, environment))?;
            Err(ApiError::Conflict(format!(
                "environment `{}` of `{}` is already locked by {}: {}",
                current.name,
                app.name,
                current.locked_by.as_deref().unwrap_or("someone"),
                current.lock_reason.as_deref().unwrap_or("no reason given")
            )))
        }
    }
}

//! Deployments: creating, reading, cancelling, and the rules of who waits for whom.

use std::sync::Arc;

use sea_orm::sea_query::{Alias, Expr, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

use crate::applications::{self, validate_name};
pub use crate::db::entities::deployment::{DeploymentPhase, DeploymentStatus};
use crate::db::entities::environment::QueuePolicy;
use crate::db::entities::{application, deployment, environment};
use crate::error::{ApiError, ApiResult};
use crate::releases::ROLLBACK_TASK;
use crate::state::AppState;
use crate::view::{self, hydrate, hydrate_one, DeploymentView};

/// A deployment as its creator asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewDeployment {
    pub application: String,
    pub environment: String,
    pub ref_name: String,
    pub sha: Option<String>,
    pub task: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub external_id: Option<String>,
    pub description: Option<String>,
    /// Made by a hook for a push or a pipeline (see `deployment::Model::auto_deploy`).
    pub auto_deploy: bool,
    /// A rollback or a promotion: the release it deploys exactly.
    pub restores: Option<i64>,
    /// A rollback: why; auto-deploys of the environment pause until a person
    /// deploys or resumes them.
    pub pause_auto_deploy: Option<String>,
    /// An admin's reason to go past the freeze windows in force (`REFUSE`
    /// ones too); recorded on the deployment. The caller checks the role.
    pub override_freeze: Option<String>,
    /// Waits only for the checks its environment names as required, not
    /// for every other check (`requireChecks: all`); recorded as forced by
    /// its creator.
    pub force: bool,
}

const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The task of a deployment that rolls the stack out, unless told otherwise.
pub const DEPLOY_TASK: &str = "deploy";

/// The task of the spec a deployment of `task` runs alone, if it does: none
/// for `deploy` and `rollback`, which roll the stack out; `migrate` for
/// `migrate` and for `deploy:migrate` (GitHub's way of naming a task).
pub fn task_alone(task: &str) -> ApiResult<Option<String>> {
    if task == DEPLOY_TASK || task == ROLLBACK_TASK {
        return Ok(None);
    }
    let name = task.strip_prefix("deploy:").unwrap_or(task);
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ApiError::BadInput(format!(
            "`task` {} is neither `deploy`, `rollback` nor the name of a task of the spec \
             (lowercase letters, digits, `-` and `_`, as `migrate` or `deploy:migrate`)",
            crate::error::quote(task)
        )));
    }
    Ok(Some(name.to_owned()))
}

/// Deployments that made a release: they succeeded and rolled the stack
/// out (a task run alone changes no service).
pub fn released() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(deployment::Column::Status.eq(DeploymentStatus::Succeeded))
        .add(deployment::Column::RunsTask.is_null())
}

fn validate(input: &NewDeployment) -> ApiResult<()> {
    validate_name("environment", &input.environment)?;
    if input.ref_name.trim().is_empty() || input.ref_name.len() > 255 {
        return Err(ApiError::BadInput(
            "`ref` must be a branch, tag or commit of 1 to 255 characters".into(),
        ));
    }
    if let Some(sha) = &input.sha {
        validate_sha(sha)?;
    }
    if let Some(task) = &input.task {
        if task.is_empty() || task.len() > 64 {
            return Err(ApiError::BadInput(
                "`task` must be 1 to 64 characters".into(),
            ));
        }
        task_alone(task)?;
    }
    if let Some(id) = &input.external_id {
        if id.is_empty() || id.len() > 255 {
            return Err(ApiError::BadInput(
                "`externalId` must be 1 to 255 characters".into(),
            ));
        }
    }
    if input.description.as_ref().is_some_and(|d| d.len() > 4096) {
        return Err(ApiError::BadInput(
            "`description` is longer than 4096 characters".into(),
        ));
    }
    if let Some(payload) = &input.payload {
        if payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::BadInput(format!(
                "`payload` is larger than {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn validate_sha(sha: &str) -> ApiResult<()> {
    let hex = sha
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && (sha.len() == 40 || sha.len() == 64) {
        Ok(())
    } else {
        Err(ApiError::BadInput(format!(
            "`sha` must be a full commit id of 40 or 64 lowercase hex digits, not {}",
            crate::error::quote(sha)
        )))
    }
}

/// Creates a QUEUED deployment, or returns the one that already has
/// `external_id` in the application (creating nothing). A key already used for
/// another environment, ref or sha is `CONFLICT`: the answer would be the
/// wrong deployment.
pub async fn create(
    state: &AppState,
    created_by: &str,
    input: NewDeployment,
) -> ApiResult<DeploymentView> {
    validate(&input)?;
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    // Take the application's next number first: as the first statement it takes
    // the write lock (SQLite) or the application's row lock (PostgreSQL), which
    // serialises creations per application and makes the `external_id` check
    // below race-free.
    let app = application::Entity::update_many()
        .col_expr(
            application::Column::DeploymentCount,
            Expr::col(application::Column::DeploymentCount).add(1),
        )
        .filter(application::Column::Name.eq(&input.application))
        .exec_with_returning(&txn)
        .await?
        .pop()
        .ok_or_else(|| applications::not_found(&input.application))?;

    if let Some(external_id) = &input.external_id {
        let existing = deployment::Entity::find()
            .filter(deployment::Column::ApplicationId.eq(app.id))
            .filter(deployment::Column::ExternalId.eq(external_id))
            .one(&txn)
            .await?;
        if let Some(existing) = existing {
            txn.rollback().await?;
            let existing = hydrate_one(&state.db, existing).await?;
            return if asks_for(&existing, &input) {
                Ok(existing)
            } else {
                Err(ApiError::Conflict(format!(
                    "`externalId` `{external_id}` is already used by {}; \
                     a deployment of another environment, ref or sha needs a key of its own",
                    described(&existing)
                )))
            };
        }
    }

    let env = match applications::find_environment(&txn, app.id, &input.environment).await? {
        Some(env) => env,
        None => {
            environment::ActiveModel {
                application_id: Set(app.id),
                name: Set(input.environment.clone()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?
        }
    };
    if let Some(locked_by) = &env.locked_by {
        return Err(ApiError::Conflict(format!(
            "environment `{}` of `{}` is locked by {}{}: {}",
            env.name,
            app.name,
            locked_by,
            env.locked_at
                .map(|at| format!(" since {}", at.to_rfc3339()))
                .unwrap_or_default(),
            env.lock_reason.as_deref().unwrap_or("no reason given")
        )));
    }

    let env = auto_deploy_pause(&txn, env, &app, &input).await?;
    let admission = crate::gates::at_creation(&txn, &env, &app, &input, created_by, now).await?;
    let forced = input.force && crate::checks::policy(&env).is_some_and(|p| p.all);
    let overrode = admission.overrode_freeze;
    let gate = admission.gate;
    if let (QueuePolicy::Fifo, Some(max)) = (env.queue_policy, env.max_queued) {
        let queued = deployment::Entity::find()
            .filter(deployment::Column::EnvironmentId.eq(env.id))
            .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
            .count(&txn)
            .await?;
        if queued as i64 >= max {
            return Err(ApiError::Conflict(format!(
                "`{}` of `{}` has {queued} deployment(s) queued, the most it takes \
                 (maxQueued {max}); cancel one, wait for the queue to move, or raise the cap",
                env.name, app.name
            )));
        }
    }

    let row = deployment::ActiveModel {
        application_id: Set(app.id),
        environment_id: Set(env.id),
        number: Set(app.deployment_count),
        ref_name: Set(input.ref_name),
        sha: Set(input.sha),
        runs_task: Set(input.task.as_deref().map(task_alone).transpose()?.flatten()),
        task: Set(input.task.unwrap_or_else(|| DEPLOY_TASK.to_owned())),
        payload: Set(input.payload.map(|p| p.to_string())),
        description: Set(input.description),
        external_id: Set(input.external_id),
        auto_deploy: Set(input.auto_deploy),
        restores: Set(input.restores),
        created_by: Set(created_by.to_owned()),
        status: Set(DeploymentStatus::Queued),
        cancel_requested: Set(false),
        log_count: Set(0),
        created_at: Set(now),
        message: Set(gate
            .as_ref()
            .map(|g| format!("waiting for {}", g.waiting_for))),
        gate: Set(gate.as_ref().map(|g| g.kind)),
        gate_since: Set(gate.as_ref().map(|_| now)),
        gate_until: Set(gate.as_ref().and_then(|g| g.until)),
        gate_waiting_for: Set(gate.map(|g| g.waiting_for)),
        freeze_overridden_by: Set(overrode.then(|| created_by.to_owned())),
        freeze_overridden_at: Set(overrode.then_some(now)),
        freeze_override_reason: Set(input.override_freeze.clone().filter(|_| overrode)),
        checks_required: Set(admission
            .checks
            .map(|c| serde_json::to_string(&c).expect("required checks are JSON"))),
        checks_forced_by: Set(forced.then(|| created_by.to_owned())),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let env = match &input.pause_auto_deploy {
        Some(reason) => {
            crate::releases::pause(&txn, env.id, created_by, reason, now, row.id).await?
        }
        None => env,
    };
    let superseded = match env.queue_policy {
        QueuePolicy::Latest => supersede(&txn, &env, &app, &row, now).await?,
        QueuePolicy::Fifo => Vec::new(),
    };
    txn.commit().await?;

    let app = Arc::new(app);
    let env = Arc::new(env);
    for row in superseded {
        let view = DeploymentView {
            deployment: row,
            application: app.clone(),
            environment: env.clone(),
        };
        tracing::info!(deployment = view.deployment.id, "superseded");
        state.events.deployment_changed(&state.db, &view).await;
    }
    let view = DeploymentView {
        deployment: row,
        application: app,
        environment: env,
    };
    tracing::info!(
        deployment = view.deployment.id,
        application = %view.application.name,
        environment = %view.environment.name,
        number = view.deployment.number,
        "deployment queued"
    );
    state.events.deployment_changed(&state.db, &view).await;
    // Announce it only if it is claimable now; a deployment that must wait is
    // announced when the one before it finishes. (A shared bus announces
    // what it reads in the event log.)
    if !state.events.is_shared() {
        let next = next_claimable(&state.db, view.environment.id).await?;
        if next.is_some_and(|next| next.id == view.deployment.id) {
            state.events.queued(Arc::new(view.clone()));
        }
    }
    Ok(view)
}

/// Queue policy `LATEST`: the deployments of the environment queued before
/// `newer` end CANCELLED, naming it.
async fn supersede(
    txn: &impl ConnectionTrait,
    env: &environment::Model,
    app: &application::Model,
    newer: &deployment::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Vec<deployment::Model>> {
    let sha = newer
        .sha
        .as_deref()
        .map(|sha| format!(", {}", &sha[..sha.len().min(7)]))
        .unwrap_or_default();
    let message = format!(
        "superseded by {}#{} ({}{sha}) before it started: `{}` deploys only the latest \
         (queue policy LATEST)",
        app.name, newer.number, newer.ref_name, env.name
    );
    Ok(deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::Cancelled),
        )
        .col_expr(deployment::Column::FinishedAt, Expr::value(now))
        .col_expr(deployment::Column::Message, Expr::value(message))
        .filter(deployment::Column::EnvironmentId.eq(env.id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Id.lt(newer.id))
        .exec_with_returning(txn)
        .await?)
}

/// Auto-deploys and the pause a rollback puts on them: while paused, a push
/// or a pipeline deploys nothing (`CONFLICT`, saying why), and a person who
/// deploys explicitly ends the pause. (A rollback starts it, once its row
/// exists.)
async fn auto_deploy_pause(
    txn: &impl ConnectionTrait,
    env: environment::Model,
    app: &application::Model,
    input: &NewDeployment,
) -> ApiResult<environment::Model> {
    let Some(paused_by) = &env.auto_deploy_paused_by else {
        return Ok(env);
    };
    if input.auto_deploy {
        return Err(ApiError::Conflict(format!(
            "auto-deploy of `{}` of `{}` is paused since {} rolled it back{}: {}; \
             deploy explicitly or resume auto-deploy (resumeAutoDeploy) first",
            env.name,
            app.name,
            paused_by,
            env.auto_deploy_paused_at
                .map(|at| format!(" at {}", at.to_rfc3339()))
                .unwrap_or_default(),
            env.auto_deploy_pause_reason
                .as_deref()
                .unwrap_or("no reason given")
        )));
    }
    if input.pause_auto_deploy.is_some() {
        return Ok(env);
    }
    crate::releases::clear_pause(txn, env.id).await
}

/// Whether `existing` is what `input` asks for: the same environment and ref,
/// and the same sha unless either does not say.
fn asks_for(existing: &DeploymentView, input: &NewDeployment) -> bool {
    let d = &existing.deployment;
    existing.environment.name == input.environment
        && d.ref_name == input.ref_name
        && match (&d.sha, &input.sha) {
            (Some(known), Some(asked)) => known == asked,
            _ => true,
        }
}

/// `web#12 (production, main, 3f2c1a9)`.
fn described(view: &DeploymentView) -> String {
    let d = &view.deployment;
    let sha = d
        .sha
        .as_deref()
        .map(|sha| format!(", {}", &sha[..sha.len().min(7)]))
        .unwrap_or_default();
    format!(
        "{} ({}, {}{sha})",
        view.name(),
        view.environment.name,
        d.ref_name
    )
}

/// The deployment of an environment that a runner may claim now: the oldest
/// queued one at no gate, when none is in progress.
pub async fn next_claimable(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Option<deployment::Model>> {
    if in_progress(db, environment_id).await?.is_some() {
        return Ok(None);
    }
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.is_null())
        .order_by_asc(deployment::Column::Id)
        .one(db)
        .await?)
}

/// The release of an environment: the rollout that last succeeded there.
pub async fn current_release(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(released())
        .order_by_desc(deployment::Column::FinishedAt)
        .order_by_desc(deployment::Column::Id)
        .one(db)
        .await?)
}

/// The deployment of an environment in progress now, if any.
pub async fn in_progress(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .one(db)
        .await?)
}

/// How many deployments of an environment wait in its queue.
pub async fn queued_count(db: &impl ConnectionTrait, environment_id: i64) -> ApiResult<u64> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .count(db)
        .await?)
}

/// How many queued deployments of an environment wait at a gate (an
/// approval, a freeze window).
pub async fn gated_count(db: &impl ConnectionTrait, environment_id: i64) -> ApiResult<u64> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.is_not_null())
        .count(db)
        .await?)
}

/// The newest deployment of an environment, whatever its status.
pub async fn newest(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .order_by_desc(deployment::Column::Id)
        .one(db)
        .await?)
}

/// Tells runners about the deployment of `environment_id` that became claimable, if any.
pub async fn publish_next_claimable(state: &AppState, environment_id: i64) -> ApiResult<()> {
    if state.events.is_shared() {
        // The event log's follower does it for every replica.
        return Ok(());
    }
    if let Some(next) = next_claimable(&state.db, environment_id).await? {
        let view = hydrate_one(&state.db, next).await?;
        state.events.queued(Arc::new(view));
    }
    Ok(())
}

/// "No other deployment of the same environment is in `status`" (and, with
/// `older_only`, "... with a smaller id"), for a query on `deployments`. A
/// QUEUED deployment at a gate does not count: it waits for a person or a
/// time, and the ones behind it (a rollback) may go first.
pub(crate) fn none_in_environment(status: DeploymentStatus, older_only: bool) -> SimpleExpr {
    let other = Alias::new("other");
    let mut query = Query::select();
    query
        .expr(Expr::val(1))
        .from_as(deployment::Entity, other.clone())
        .and_where(
            Expr::col((other.clone(), deployment::Column::EnvironmentId))
                .equals((deployment::Entity, deployment::Column::EnvironmentId)),
        )
        .and_where(Expr::col((other.clone(), deployment::Column::Status)).eq(status));
    if status == DeploymentStatus::Queued {
        query.and_where(Expr::col((other.clone(), deployment::Column::Gate)).is_null());
    }
    if older_only {
        query.and_where(
            Expr::col((other, deployment::Column::Id))
                .lt(Expr::col((deployment::Entity, deployment::Column::Id))),
        );
    }
    Expr::exists(query.to_owned()).not()
}

/// Every deployment a runner may claim now, oldest first.
pub async fn claimable(db: &impl ConnectionTrait) -> ApiResult<Vec<DeploymentView>> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.is_null())
        .filter(none_in_environment(DeploymentStatus::Queued, true))
        .filter(none_in_environment(DeploymentStatus::InProgress, false))
        .order_by_asc(deployment::Column::Id)
        .limit(1000)
        .all(db)
        .await?;
    hydrate(db, rows).await
}

/// Filters of the deployment history.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub application: Option<String>,
    pub environment: Option<String>,
    pub status: Option<DeploymentStatus>,
}

/// One page of the history, newest first: up to `first` deployments with an id
/// below `before_id`, and whether more follow.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &Filter,
    first: u64,
    before_id: Option<i64>,
) -> ApiResult<(Vec<DeploymentView>, bool)> {
    let mut query = deployment::Entity::find();
    if let Some(name) = &filter.application {
        let Some(app) = applications::find(db, name).await? else {
            return Err(applications::not_found(name));
        };
        query = query.filter(deployment::Column::ApplicationId.eq(app.id));
        if let Some(env_name) = &filter.environment {
            match applications::find_environment(db, app.id, env_name).await? {
                Some(env) => query = query.filter(deployment::Column::EnvironmentId.eq(env.id)),
                None => return Ok((Vec::new(), false)),
            }
        }
    } else if filter.environment.is_some() {
        return Err(ApiError::BadInput(
            "`environment` needs `application` too".into(),
        ));
    }
    if let Some(status) = filter.status {
        query = query.filter(deployment::Column::Status.eq(status));
    }
    let (rows, more) = page(db, query, first, before_id).await?;
    Ok((hydrate(db, rows).await?, more))
}

/// One page of the deployments `query` finds, newest first: up to `first`
/// with an id below `before_id`, and whether more follow.
pub(crate) async fn page(
    db: &impl ConnectionTrait,
    mut query: sea_orm::Select<deployment::Entity>,
    first: u64,
    before_id: Option<i64>,
) -> ApiResult<(Vec<deployment::Model>, bool)> {
    if let Some(before) = before_id {
        query = query.filter(deployment::Column::Id.lt(before));
    }
    let mut rows = query
        .order_by_desc(deployment::Column::Id)
        .limit(first + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// Cancels a deployment: a queued one at once; an in-progress one by asking its
/// runner, which sees the request on its next heartbeat or in `deploymentEvents`.
pub async fn cancel(state: &AppState, id: i64, by: &str) -> ApiResult<DeploymentView> {
    let now = state.clock.now();
    let cancelled = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::Cancelled),
        )
        .col_expr(deployment::Column::FinishedAt, Expr::value(now))
        .col_expr(deployment::Column::CancelRequested, Expr::value(true))
        .col_expr(deployment::Column::CancelRequestedBy, Expr::value(by))
        .col_expr(
            deployment::Column::Message,
            Expr::value(format!("cancelled by {by} before it started")),
        )
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .exec_with_returning(&state.db)
        .await?
        .pop();
    if let Some(row) = cancelled {
        let view = hydrate_one(&state.db, row).await?;
        state.events.deployment_changed(&state.db, &view).await;
        publish_next_claimable(state, view.environment.id).await?;
        return Ok(view);
    }
    let requested = deployment::Entity::update_many()
        .col_expr(deployment::Column::CancelRequested, Expr::value(true))
        .col_expr(deployment::Column::CancelRequestedBy, Expr::value(by))
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .exec_with_returning(&state.db)
        .await?
        .pop();
    if let Some(row) = requested {
        let view = hydrate_one(&state.db, row).await?;
        state.events.deployment_changed(&state.db, &view).await;
        return Ok(view);
    }
    let view = view::get(&state.db, id).await?;
    Err(ApiError::Conflict(format!(
        "deployment {} ({}) already finished: {}",
        id,
        view.name(),
        view.status().as_str()
    )))
}

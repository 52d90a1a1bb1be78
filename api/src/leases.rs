//! A runner's hold on a deployment: claim, heartbeat, progress, finish, and the
//! expiry of leases whose runner went silent.
//!
//! Every change here is one conditional `UPDATE … RETURNING`: whoever's
//! statement matches wins, and the partial unique index
//! `deployments_one_in_progress` makes the database refuse a second IN_PROGRESS
//! deployment of an environment, whatever the race.

use std::sync::Arc;

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr};
use serde::{Deserialize, Serialize};

use crate::db::entities::deployment;
use crate::deployments::{self, DeploymentPhase, DeploymentStatus, DeploymentView};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::runners;
use crate::state::AppState;

/// Claims a queued deployment for `runner`. Exactly one of several concurrent
/// claims wins; the others get `CONFLICT` saying why.
pub async fn claim(state: &AppState, runner: &str, id: i64) -> ApiResult<DeploymentView> {
    let now = state.clock.now();
    let claimed = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::InProgress.as_str()),
        )
        .col_expr(deployment::Column::Runner, Expr::value(runner))
        .col_expr(deployment::Column::StartedAt, Expr::value(now))
        .col_expr(deployment::Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .col_expr(
            deployment::Column::Message,
            Expr::value(format!("claimed by runner {runner}")),
        )
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued.as_str()))
        .filter(deployments::none_in_environment(
            DeploymentStatus::Queued,
            true,
        ))
        .exec_with_returning(&state.db)
        .await;
    let row = match claimed {
        Ok(mut rows) => rows.pop(),
        Err(err) if is_unique_violation(&err) => None,
        Err(err) => return Err(err.into()),
    };
    let Some(row) = row else {
        return Err(why_not_claimable(state, id).await);
    };
    // The claim has committed: a failure to note the runner must not hide it.
    if let Err(err) = runners::seen(state, runner).await {
        tracing::warn!(?err, runner, "could not record that the runner was seen");
    }
    let view = deployments::hydrate_one(&state.db, row).await?;
    tracing::info!(deployment = id, runner, "deployment claimed");
    state
        .events
        .publish(Event::Deployment(Arc::new(view.clone())));
    Ok(view)
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn why_not_claimable(state: &AppState, id: i64) -> ApiError {
    let view = match deployments::get(&state.db, id).await {
        Ok(view) => view,
        Err(err) => return err,
    };
    let d = &view.deployment;
    let name = format!("{}#{}", view.application.name, d.number);
    match view.status() {
        DeploymentStatus::InProgress => ApiError::Conflict(format!(
            "deployment {name} is already claimed by runner {}",
            d.runner.as_deref().unwrap_or("unknown")
        )),
        status if status.is_final() => {
            ApiError::Conflict(format!("deployment {name} already finished: {}", d.status))
        }
        _ => {
            let ahead = deployment::Entity::find()
                .filter(deployment::Column::EnvironmentId.eq(d.environment_id))
                .filter(deployment::Column::Id.ne(d.id))
                .filter(
                    Condition::any()
                        .add(deployment::Column::Status.eq(DeploymentStatus::InProgress.as_str()))
                        .add(
                            Condition::all()
                                .add(
                                    deployment::Column::Status
                                        .eq(DeploymentStatus::Queued.as_str()),
                                )
                                .add(deployment::Column::Id.lt(d.id)),
                        ),
                )
                // IN_PROGRESS sorts before QUEUED: name the one running first.
                .order_by_asc(deployment::Column::Status)
                .order_by_asc(deployment::Column::Id)
                .one(&state.db)
                .await;
            match ahead {
                Ok(Some(other)) => ApiError::Conflict(format!(
                    "deployment {name} waits: {}#{} ({}) goes first in environment `{}`",
                    view.application.name, other.number, other.status, view.environment.name
                )),
                Ok(None) => {
                    ApiError::Conflict(format!("deployment {name} could not be claimed; try again"))
                }
                Err(err) => err.into(),
            }
        }
    }
}

/// Applies `changes` to the deployment `id` if `runner` holds it, renewing the
/// lease; explains with `CONFLICT` when the runner no longer holds it.
async fn update_held(
    state: &AppState,
    runner: &str,
    id: i64,
    changes: Vec<(deployment::Column, SimpleExpr)>,
) -> ApiResult<deployment::Model> {
    let now = state.clock.now();
    let mut update = deployment::Entity::update_many()
        .col_expr(deployment::Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        );
    for (column, value) in changes {
        update = update.col_expr(column, value);
    }
    let row = update
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress.as_str()))
        .filter(deployment::Column::Runner.eq(runner))
        .exec_with_returning(&state.db)
        .await?
        .pop();
    match row {
        Some(row) => Ok(row),
        None => Err(not_held(state, runner, id).await),
    }
}

/// Explains why `runner` does not hold the deployment `id`.
pub(crate) async fn not_held(state: &AppState, runner: &str, id: i64) -> ApiError {
    let view = match deployments::get(&state.db, id).await {
        Ok(view) => view,
        Err(err) => return err,
    };
    let d = &view.deployment;
    ApiError::Conflict(match view.status() {
        DeploymentStatus::InProgress => format!(
            "deployment {id} is held by runner {}, not {runner}",
            d.runner.as_deref().unwrap_or("unknown")
        ),
        DeploymentStatus::Queued => format!("deployment {id} has not been claimed"),
        _ => format!(
            "deployment {id} is no longer in progress: {}{}",
            d.status,
            d.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
    })
}

/// Renews the lease. The answer carries `cancel_requested`, which the runner
/// must act on.
pub async fn heartbeat(state: &AppState, runner: &str, id: i64) -> ApiResult<DeploymentView> {
    let row = update_held(state, runner, id, Vec::new()).await?;
    runners::seen(state, runner).await?;
    deployments::hydrate_one(&state.db, row).await
}

/// Records what an in-progress deployment is doing, and the sha once known.
pub async fn progress(
    state: &AppState,
    runner: &str,
    id: i64,
    phase: Option<DeploymentPhase>,
    message: Option<String>,
    sha: Option<String>,
) -> ApiResult<DeploymentView> {
    let mut changes = Vec::new();
    if let Some(phase) = phase {
        changes.push((deployment::Column::Phase, Expr::value(phase.as_str())));
    }
    if let Some(message) = message {
        changes.push((
            deployment::Column::Message,
            Expr::value(limit_message(message)),
        ));
    }
    if let Some(sha) = sha {
        deployments::validate_sha(&sha)?;
        let current = deployments::get(&state.db, id).await?;
        if let Some(known) = &current.deployment.sha {
            if *known != sha {
                return Err(ApiError::BadInput(format!(
                    "deployment {id} is already at sha {known}; it cannot change to {sha}"
                )));
            }
        }
        changes.push((deployment::Column::Sha, Expr::value(sha)));
    }
    let row = update_held(state, runner, id, changes).await?;
    let view = deployments::hydrate_one(&state.db, row).await?;
    state
        .events
        .publish(Event::Deployment(Arc::new(view.clone())));
    Ok(view)
}

/// An image a service of the release runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, async_graphql::SimpleObject)]
#[graphql(name = "ReleaseService")]
pub struct ServiceImage {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
}

/// Ends a deployment with a final status.
pub async fn finish(
    state: &AppState,
    runner: &str,
    id: i64,
    status: DeploymentStatus,
    message: Option<String>,
    services: Option<Vec<ServiceImage>>,
) -> ApiResult<DeploymentView> {
    if !status.is_final() {
        return Err(ApiError::BadInput(format!(
            "`status` must be SUCCEEDED, FAILED or CANCELLED, not {}",
            status.as_str()
        )));
    }
    let now = state.clock.now();
    let mut changes = vec![
        (deployment::Column::Status, Expr::value(status.as_str())),
        (deployment::Column::FinishedAt, Expr::value(now)),
    ];
    if let Some(message) = message {
        changes.push((
            deployment::Column::Message,
            Expr::value(limit_message(message)),
        ));
    }
    if let Some(services) = services {
        let json = serde_json::to_string(&services).map_err(ApiError::internal)?;
        changes.push((deployment::Column::Services, Expr::value(json)));
    }
    let row = update_held(state, runner, id, changes).await?;
    let view = deployments::hydrate_one(&state.db, row).await?;
    tracing::info!(
        deployment = id,
        runner,
        status = status.as_str(),
        "deployment finished"
    );
    state
        .events
        .publish(Event::Deployment(Arc::new(view.clone())));
    deployments::publish_next_claimable(state, view.environment.id).await?;
    Ok(view)
}

fn limit_message(mut message: String) -> String {
    const MAX: usize = 4096;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// Fails every in-progress deployment whose lease has expired, saying which
/// runner was lost and when it was last heard from. Returns them.
pub async fn expire(state: &AppState) -> ApiResult<Vec<DeploymentView>> {
    let now = state.clock.now();
    let stale = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress.as_str()))
        .filter(deployment::Column::LeaseExpiresAt.lt(now))
        .all(&state.db)
        .await?;
    let mut expired = Vec::new();
    for d in stale {
        let message = format!(
            "runner {} was lost: last heard from at {}, lease expired at {}",
            d.runner.as_deref().unwrap_or("unknown"),
            d.last_heartbeat_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_else(|| "never".into()),
            d.lease_expires_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_else(|| "unknown".into()),
        );
        // The lease condition is repeated: a heartbeat may have won the race.
        let row = deployment::Entity::update_many()
            .col_expr(
                deployment::Column::Status,
                Expr::value(DeploymentStatus::Failed.as_str()),
            )
            .col_expr(deployment::Column::FinishedAt, Expr::value(now))
            .col_expr(deployment::Column::Message, Expr::value(message.clone()))
            .filter(deployment::Column::Id.eq(d.id))
            .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress.as_str()))
            .filter(deployment::Column::LeaseExpiresAt.lt(now))
            .exec_with_returning(&state.db)
            .await?
            .pop();
        if let Some(row) = row {
            tracing::warn!(deployment = row.id, %message, "lease expired");
            let view = deployments::hydrate_one(&state.db, row).await?;
            state
                .events
                .publish(Event::Deployment(Arc::new(view.clone())));
            deployments::publish_next_claimable(state, view.environment.id).await?;
            expired.push(view);
        }
    }
    Ok(expired)
}

/// Gives every in-progress deployment a full lease from now. Run when the API
/// starts: while it was down no runner could renew its lease, and that must
/// not count against them.
pub async fn renew_all(state: &AppState) -> ApiResult<u64> {
    let now = state.clock.now();
    let renewed = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress.as_str()))
        .exec(&state.db)
        .await?;
    Ok(renewed.rows_affected)
}

/// Runs [`expire`] every `every` until `shutdown` resolves.
pub async fn reap(
    state: AppState,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(err) = expire(&state).await {
                    tracing::error!(?err, "expiring leases failed");
                }
            }
            () = &mut shutdown => return,
        }
    }
}

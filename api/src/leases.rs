//! A runner's hold on a deployment: claim, heartbeat, progress, finish, and the
//! expiry of leases whose runner went silent.
//!
//! Every change here is one conditional `UPDATE … RETURNING`: whoever's
//! statement matches wins, and the partial unique index
//! `deployments_one_in_progress` makes the database refuse a second IN_PROGRESS
//! deployment of an environment, whatever the race.

use std::fmt;

use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};

use crate::db::entities::deployment::{ServiceConvergence, StoredService};
use crate::db::entities::{deployment, environment};
use crate::deployments::{self, DeploymentPhase, DeploymentStatus};
use crate::error::{ApiError, ApiResult};
use crate::runners;
use crate::state::AppState;
use crate::view::{self, DeploymentView, ServiceImage};

/// Who reports on a deployment: a runner (its token's subject) and, when it
/// says, which of its processes. Two processes with the same token are two
/// holders; a runner that names no instance holds only what it claimed
/// without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub runner: &'a str,
    pub instance: Option<&'a str>,
}

impl<'a> Holder<'a> {
    pub fn new(runner: &'a str, instance: Option<&'a str>) -> Self {
        Self { runner, instance }
    }

    /// Who holds (or last held) `d`, as far as the row says.
    fn of(d: &'a deployment::Model) -> Self {
        Self {
            runner: d.runner.as_deref().unwrap_or("unknown"),
            instance: d.runner_instance.as_deref(),
        }
    }

    /// "Held by this holder", for a query on `deployments`.
    pub(crate) fn holds(self) -> Condition {
        let instance = match self.instance {
            Some(instance) => deployment::Column::RunnerInstance.eq(instance),
            None => deployment::Column::RunnerInstance.is_null(),
        };
        Condition::all()
            .add(deployment::Column::Runner.eq(self.runner))
            .add(instance)
    }

    fn validate(self) -> ApiResult<()> {
        match self.instance {
            Some(instance) => runners::validate_instance(instance),
            None => Ok(()),
        }
    }
}

/// A runner that names no instance.
impl<'a> From<&'a str> for Holder<'a> {
    fn from(runner: &'a str) -> Self {
        Self::new(runner, None)
    }
}

impl fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.instance {
            Some(instance) => write!(f, "runner {} (instance {instance})", self.runner),
            None => write!(f, "runner {}", self.runner),
        }
    }
}

/// Claims a queued deployment for `holder`. Exactly one of several concurrent
/// claims wins; the others get `CONFLICT` saying why. A claim sent again by
/// the holder (its answer was lost) gets the deployment back, lease renewed.
pub async fn claim(
    state: &AppState,
    holder: impl Into<Holder<'_>>,
    id: i64,
) -> ApiResult<DeploymentView> {
    let holder = holder.into();
    holder.validate()?;
    let runner = holder.runner;
    let env = environment_of(state, id).await?;
    if let Some(env) = &env {
        runners::check_may_take(state, runner, env, &format!("deployment {id}")).await?;
    }
    let postgres = state.db.get_database_backend() == DatabaseBackend::Postgres;
    // On PostgreSQL a row another statement holds (a claim on any replica,
    // the reaper's note) is skipped rather than waited for; only then does
    // the claim wait, trying once more, so that it reads how that ended.
    let mut row = take(state, holder, id, postgres).await?;
    if row.is_none() && postgres {
        row = take(state, holder, id, false).await?;
    }
    let (row, retried) = match row {
        Some(row) => (row, false),
        None => match renew(state, holder, id, Vec::new()).await? {
            Some(row) => (row, true),
            None => return Err(why_not_claimable(state, holder, id).await),
        },
    };
    // The claim has committed: a failure to note the runner must not hide it.
    if let Err(err) = runners::seen(state, runner, holder.instance).await {
        tracing::warn!(?err, runner, "could not record that the runner was seen");
    }
    let view = match env.filter(|env| env.id == row.environment_id) {
        Some(env) => view::with_environment(&state.db, row, env).await?,
        None => view::hydrate_one(&state.db, row).await?,
    };
    if retried {
        tracing::info!(deployment = id, %holder, "claim repeated by its holder");
    } else {
        tracing::info!(deployment = id, %holder, "deployment claimed");
        state.events.deployment_changed(&state.db, &view).await;
    }
    Ok(view)
}

/// The claim itself: one conditional `UPDATE`; `None` when the deployment
/// is not claimable now (or, with `skip_locked`, its row is busy).
async fn take(
    state: &AppState,
    holder: Holder<'_>,
    id: i64,
    skip_locked: bool,
) -> ApiResult<Option<deployment::Model>> {
    let now = state.clock.now();
    let mut claim = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::Status,
            Expr::value(DeploymentStatus::InProgress),
        )
        .col_expr(deployment::Column::Runner, Expr::value(holder.runner))
        .col_expr(
            deployment::Column::RunnerInstance,
            Expr::value(holder.instance.map(str::to_owned)),
        )
        .col_expr(deployment::Column::StartedAt, Expr::value(now))
        .col_expr(deployment::Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .col_expr(
            deployment::Column::Message,
            Expr::value(format!("claimed by {holder}")),
        )
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
        .filter(deployment::Column::Gate.is_null())
        .filter(deployments::none_in_environment(
            DeploymentStatus::Queued,
            true,
        ));
    if skip_locked {
        claim = claim.filter(
            deployment::Column::Id.in_subquery(
                Query::select()
                    .column(deployment::Column::Id)
                    .from(deployment::Entity)
                    .and_where(deployment::Column::Id.eq(id))
                    .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                    .to_owned(),
            ),
        );
    }
    match claim.exec_with_returning(&state.db).await {
        Ok(mut rows) => Ok(rows.pop()),
        Err(err) if is_unique_violation(&err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The environment of deployment `id`, if there is such a deployment.
async fn environment_of(state: &AppState, id: i64) -> ApiResult<Option<environment::Model>> {
    let of_deployment = Query::select()
        .column(deployment::Column::EnvironmentId)
        .from(deployment::Entity)
        .and_where(deployment::Column::Id.eq(id))
        .to_owned();
    Ok(environment::Entity::find()
        .filter(environment::Column::Id.in_subquery(of_deployment))
        .one(&state.db)
        .await?)
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn why_not_claimable(state: &AppState, holder: Holder<'_>, id: i64) -> ApiError {
    let view = match view::get(&state.db, id).await {
        Ok(view) => view,
        Err(err) => return err,
    };
    let d = &view.deployment;
    let name = format!("{}#{}", view.application.name, d.number);
    match view.status() {
        DeploymentStatus::InProgress => ApiError::Conflict(format!(
            "deployment {name} is already claimed by {}{}, not by {holder}",
            Holder::of(d),
            lease_note(d),
        )),
        status if status.is_final() => ApiError::Conflict(format!(
            "deployment {name} already finished: {}",
            status.as_str()
        )),
        _ if d.gate.is_some() => ApiError::Conflict(format!(
            "deployment {name} waits for {}",
            d.gate_waiting_for.as_deref().unwrap_or("a gate to open")
        )),
        _ => {
            let ahead = deployment::Entity::find()
                .filter(deployment::Column::EnvironmentId.eq(d.environment_id))
                .filter(deployment::Column::Id.ne(d.id))
                .filter(
                    Condition::any()
                        .add(deployment::Column::Status.eq(DeploymentStatus::InProgress))
                        .add(
                            Condition::all()
                                .add(deployment::Column::Status.eq(DeploymentStatus::Queued))
                                .add(deployment::Column::Gate.is_null())
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
                    view.application.name,
                    other.number,
                    other.status.as_str(),
                    view.environment.name
                )),
                Ok(None) => {
                    ApiError::Conflict(format!("deployment {name} could not be claimed; try again"))
                }
                Err(err) => err.into(),
            }
        }
    }
}

/// ", whose lease runs until …" for a deployment in progress.
fn lease_note(d: &deployment::Model) -> String {
    d.lease_expires_at
        .map(|at| format!(", whose lease runs until {}", at.to_rfc3339()))
        .unwrap_or_default()
}

/// Applies `changes` to the deployment `id` if `holder` holds it, renewing the
/// lease; explains with `CONFLICT` when it does not hold it.
async fn update_held(
    state: &AppState,
    holder: Holder<'_>,
    id: i64,
    changes: Vec<(deployment::Column, SimpleExpr)>,
) -> ApiResult<deployment::Model> {
    holder.validate()?;
    match renew(state, holder, id, changes).await? {
        Some(row) => Ok(row),
        None => Err(not_held(state, holder, id).await),
    }
}

/// Applies `changes` to the deployment `id` and renews its lease, if `holder`
/// holds it; `None` when it does not.
async fn renew(
    state: &AppState,
    holder: Holder<'_>,
    id: i64,
    changes: Vec<(deployment::Column, SimpleExpr)>,
) -> ApiResult<Option<deployment::Model>> {
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
    Ok(update
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .filter(holder.holds())
        .exec_with_returning(&state.db)
        .await?
        .pop())
}

/// Explains why `holder` does not hold the deployment `id`.
pub(crate) async fn not_held(state: &AppState, holder: Holder<'_>, id: i64) -> ApiError {
    let view = match view::get(&state.db, id).await {
        Ok(view) => view,
        Err(err) => return err,
    };
    let d = &view.deployment;
    ApiError::Conflict(match view.status() {
        DeploymentStatus::InProgress => format!(
            "deployment {id} is held by {}{}, not by {holder}",
            Holder::of(d),
            lease_note(d),
        ),
        DeploymentStatus::Queued => format!("deployment {id} has not been claimed"),
        _ => format!(
            "deployment {id} is no longer in progress: {}{}",
            d.status.as_str(),
            d.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
    })
}

/// Renews the lease. The answer carries `cancel_requested`, which the runner
/// must act on.
pub async fn heartbeat(
    state: &AppState,
    holder: impl Into<Holder<'_>>,
    id: i64,
) -> ApiResult<DeploymentView> {
    let holder = holder.into();
    let row = update_held(state, holder, id, Vec::new()).await?;
    runners::seen(state, holder.runner, holder.instance).await?;
    view::hydrate_one(&state.db, row).await
}

/// Records what an in-progress deployment is doing, and the sha once known.
pub async fn progress(
    state: &AppState,
    holder: impl Into<Holder<'_>>,
    id: i64,
    phase: Option<DeploymentPhase>,
    message: Option<String>,
    sha: Option<String>,
    convergence: Option<Vec<ServiceConvergence>>,
) -> ApiResult<DeploymentView> {
    let holder = holder.into();
    let mut changes = Vec::new();
    if let Some(convergence) = convergence {
        changes.push((
            deployment::Column::Convergence,
            Expr::value(convergence_json(convergence)?),
        ));
    }
    if let Some(phase) = phase {
        changes.push((deployment::Column::Phase, Expr::value(phase)));
    }
    if let Some(message) = message {
        changes.push((
            deployment::Column::Message,
            Expr::value(limit_message(message)),
        ));
    }
    if let Some(sha) = sha {
        deployments::validate_sha(&sha)?;
        let current = view::get(&state.db, id).await?;
        if let Some(known) = &current.deployment.sha {
            if *known != sha {
                return Err(ApiError::BadInput(format!(
                    "deployment {id} is already at sha {known}; it cannot change to {sha}"
                )));
            }
        }
        changes.push((deployment::Column::Sha, Expr::value(sha)));
    }
    let row = update_held(state, holder, id, changes).await?;
    let view = view::hydrate_one(&state.db, row).await?;
    state.events.deployment_changed(&state.db, &view).await;
    Ok(view)
}

/// The most services a convergence report names, and the longest detail.
const MAX_CONVERGENCE_SERVICES: usize = 500;
const MAX_CONVERGENCE_DETAIL: usize = 1000;

fn convergence_json(mut convergence: Vec<ServiceConvergence>) -> ApiResult<String> {
    if convergence.len() > MAX_CONVERGENCE_SERVICES {
        return Err(ApiError::BadInput(format!(
            "`convergence` names {} services, more than {MAX_CONVERGENCE_SERVICES}",
            convergence.len()
        )));
    }
    for service in &mut convergence {
        if let Some(detail) = &mut service.detail {
            *detail = detail.chars().take(MAX_CONVERGENCE_DETAIL).collect();
        }
    }
    serde_json::to_string(&convergence).map_err(ApiError::internal)
}

/// Ends a deployment with a final status.
pub async fn finish(
    state: &AppState,
    holder: impl Into<Holder<'_>>,
    id: i64,
    status: DeploymentStatus,
    message: Option<String>,
    services: Option<Vec<ServiceImage>>,
) -> ApiResult<DeploymentView> {
    let holder = holder.into();
    if !status.is_final() {
        return Err(ApiError::BadInput(format!(
            "`status` must be SUCCEEDED, FAILED or CANCELLED, not {}",
            status.as_str()
        )));
    }
    let now = state.clock.now();
    let mut changes = vec![
        (deployment::Column::Status, Expr::value(status)),
        (deployment::Column::FinishedAt, Expr::value(now)),
    ];
    if let Some(message) = message {
        changes.push((
            deployment::Column::Message,
            Expr::value(limit_message(message)),
        ));
    }
    if let Some(services) = services {
        let stored: Vec<StoredService> = services.into_iter().map(StoredService::from).collect();
        let json = serde_json::to_string(&stored).map_err(ApiError::internal)?;
        changes.push((deployment::Column::Services, Expr::value(json)));
    }
    let row = update_held(state, holder, id, changes).await?;
    let view = view::hydrate_one(&state.db, row).await?;
    tracing::info!(
        deployment = id,
        %holder,
        status = status.as_str(),
        "deployment finished"
    );
    state.events.deployment_changed(&state.db, &view).await;
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
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .filter(deployment::Column::LeaseExpiresAt.lt(now))
        .all(&state.db)
        .await?;
    let mut expired = Vec::new();
    for d in stale {
        let message = format!(
            "{} was lost: last heard from at {}, lease expired at {}",
            Holder::of(&d),
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
                Expr::value(DeploymentStatus::Failed),
            )
            .col_expr(deployment::Column::FinishedAt, Expr::value(now))
            .col_expr(deployment::Column::Message, Expr::value(message.clone()))
            .filter(deployment::Column::Id.eq(d.id))
            .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
            .filter(deployment::Column::LeaseExpiresAt.lt(now))
            .exec_with_returning(&state.db)
            .await?
            .pop();
        if let Some(row) = row {
            tracing::warn!(deployment = row.id, %message, "lease expired");
            let view = view::hydrate_one(&state.db, row).await?;
            state.events.deployment_changed(&state.db, &view).await;
            deployments::publish_next_claimable(state, view.environment.id).await?;
            expired.push(view);
        }
    }
    Ok(expired)
}

/// Runs [`expire`] (and [`runners::explain_waiting`], [`crate::plans::expire`], and
/// [`crate::gates::open_expired`], which announces deployments whose freeze
/// window ended, and [`crate::checks::fail_expired`], which fails those
/// whose checks timed out) every `every` until `shutdown` resolves; and
/// records each time that the replica `instance` is alive
/// ([`crate::replicas::alive`]).
pub async fn reap(
    state: AppState,
    instance: String,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(err) = crate::replicas::alive(&state, &instance).await {
                    tracing::error!(?err, "recording that this replica is alive failed");
                }
                if let Err(err) = expire(&state).await {
                    tracing::error!(?err, "expiring leases failed");
                }
                if let Err(err) = runners::explain_waiting(&state).await {
                    tracing::error!(?err, "saying which deployments no runner may take failed");
                }
                if let Err(err) = crate::plans::expire(&state).await {
                    tracing::error!(?err, "expiring plans failed");
                }
                if let Err(err) = crate::drift::request_due(&state).await {
                    tracing::error!(?err, "asking for drift checks failed");
                }
                if let Err(err) = crate::gates::open_expired(&state).await {
                    tracing::error!(?err, "opening ended freeze windows failed");
                }
                if let Err(err) = crate::checks::fail_expired(&state).await {
                    tracing::error!(?err, "failing deployments whose checks timed out failed");
                }
            }
            () = &mut shutdown => return,
        }
    }
}

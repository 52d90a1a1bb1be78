//! Drift against git: what changed on the swarm since an environment's
//! release that its commit does not say — a service edited or scaled by
//! hand, one removed, one added beside the stack.
//!
//! Every [`EVERY`] (the first time [`EVERY`] after the release), the reaper
//! asks for a plan of each released environment's commit ([`crate::plans`], by [`ACTOR`]); a runner that
//! serves the environment takes it like any plan and plans the commit
//! against what runs. What deploying the release again would change is the
//! drift. `Environment.drift` and the metric
//! `slipway_environment_git_drift` read the newest such plan that is done.
//! Only the newest few of an environment are kept.

use chrono::Duration;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db::entities::{application, deployment, environment, plan};
use crate::deployments;
use crate::error::ApiResult;
use crate::plans::{self, PlanStatus, StoredServicePlan};
use crate::state::AppState;

/// Who asks for the plans that check drift.
pub const ACTOR: &str = "slipway:drift";

/// How often each environment is checked.
pub const EVERY: Duration = Duration::minutes(10);

/// How many drift plans of an environment are kept.
const KEEP: u64 = 3;

/// Asks for a drift plan of every environment released [`EVERY`] ago or
/// more whose last one is [`EVERY`] old (or that has none); returns how
/// many were asked for.
pub async fn request_due(state: &AppState) -> ApiResult<usize> {
    let now = state.clock.now();
    let recent: Vec<i64> = plan::Entity::find()
        .select_only()
        .column(plan::Column::EnvironmentId)
        .filter(plan::Column::CreatedBy.eq(ACTOR))
        .filter(plan::Column::CreatedAt.gt(now - EVERY))
        .distinct()
        .into_tuple()
        .all(&state.db)
        .await?;
    // Only environments that have had a release long enough (one query),
    // so that a tick reads little where few are released.
    let released: Vec<i64> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::EnvironmentId)
        .filter(deployments::released())
        .filter(deployment::Column::FinishedAt.lte(now - EVERY))
        .filter(deployment::Column::EnvironmentId.is_not_in(recent.clone()))
        .distinct()
        .into_tuple()
        .all(&state.db)
        .await?;
    if released.is_empty() {
        return Ok(0);
    }
    let due = environment::Entity::find()
        .filter(environment::Column::Id.is_in(released))
        .all(&state.db)
        .await?;
    let mut asked = 0;
    for env in due {
        let Some(release) = deployments::current_release(&state.db, env.id).await? else {
            continue;
        };
        let settled = release.finished_at.is_some_and(|at| at <= now - EVERY);
        let Some(sha) = release.sha.filter(|_| settled) else {
            continue;
        };
        let Some(app) = application::Entity::find_by_id(env.application_id)
            .one(&state.db)
            .await?
        else {
            continue;
        };
        plans::create(state, ACTOR, &app.name, &env.name, &sha).await?;
        forget_old(&state.db, env.id).await?;
        asked += 1;
    }
    Ok(asked)
}

/// Drops the drift plans of an environment but the newest [`KEEP`].
async fn forget_old(db: &impl ConnectionTrait, environment_id: i64) -> ApiResult<()> {
    let kept: Vec<i64> = plan::Entity::find()
        .select_only()
        .column(plan::Column::Id)
        .filter(plan::Column::EnvironmentId.eq(environment_id))
        .filter(plan::Column::CreatedBy.eq(ACTOR))
        .order_by_desc(plan::Column::Id)
        .limit(KEEP)
        .into_tuple()
        .all(db)
        .await?;
    plan::Entity::delete_many()
        .filter(plan::Column::EnvironmentId.eq(environment_id))
        .filter(plan::Column::CreatedBy.eq(ACTOR))
        .filter(plan::Column::Id.is_not_in(kept))
        .filter(plan::Column::Status.is_in([PlanStatus::Done, PlanStatus::Failed]))
        .exec(db)
        .await?;
    Ok(())
}

/// The newest drift plan of an environment that is done, if any.
pub async fn latest(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Option<plan::Model>> {
    Ok(plan::Entity::find()
        .filter(plan::Column::EnvironmentId.eq(environment_id))
        .filter(plan::Column::CreatedBy.eq(ACTOR))
        .filter(plan::Column::Status.eq(PlanStatus::Done))
        .order_by_desc(plan::Column::Id)
        .one(db)
        .await?)
}

/// The services of a drift plan that differ from the release's commit.
pub fn drifted(plan: &plan::Model) -> Vec<StoredServicePlan> {
    plans::result_of(plan)
        .map(|result| {
            result
                .services
                .into_iter()
                .filter(|service| service.action != "unchanged")
                .collect()
        })
        .unwrap_or_default()
}

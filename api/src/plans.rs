//! Plans: what deploying a ref to an environment would change, asked of a
//! runner before anyone deploys.
//!
//! Only runners have the repository and the engine, so a plan is a request a
//! runner takes and answers: a person asks (`QUEUED`), one runner claims it
//! (`RUNNING`, at most once), and it finishes `DONE` with the runner's diff
//! (the JSON `slipway-runner plan --diff` prints) or `FAILED` with why. A
//! plan that no runner takes in [`QUEUE_PATIENCE`], or that a runner took and
//! did not answer in [`RUN_PATIENCE`], expires as `FAILED`, saying which.
//!
//! A plan never becomes a deployment or a release: it takes no lock, does
//! not wait for the environment's queue, and a locked environment can still
//! be planned. Planning writes nothing to the swarm.

use std::sync::Arc;

use chrono::Duration;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Deserialize;

use crate::applications::{self, validate_name};
pub use crate::db::entities::plan::PlanStatus;
use crate::db::entities::{application, environment, plan};
use crate::deployments::validate_sha;
use crate::error::{cut, quote, ApiError, ApiResult};
use crate::state::AppState;

/// How long a plan waits for a runner to claim it.
pub const QUEUE_PATIENCE: Duration = Duration::minutes(2);
/// How long a runner may take to answer a plan it claimed (its fetch is
/// bounded well below this).
pub const RUN_PATIENCE: Duration = Duration::minutes(10);
/// The largest result a runner may store.
pub const MAX_RESULT_BYTES: usize = 512 * 1024;
/// The longest message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 4000;
/// The most requested plans a runner is given at once.
const REQUESTED_LIMIT: u64 = 100;

/// A plan with its application and environment.
#[derive(Clone, Debug)]
pub struct PlanView {
    pub plan: plan::Model,
    pub application: Arc<application::Model>,
    pub environment: Arc<environment::Model>,
}

/// A finished plan's result as the API reads it: the stack, and what would
/// happen to each of its services. The stored JSON's own type; the runner's
/// text is stored as it sent it, once it reads as this.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StoredPlan {
    pub stack: String,
    pub services: Vec<StoredServicePlan>,
}

/// One service of a [`StoredPlan`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StoredServicePlan {
    pub name: String,
    /// `create`, `update`, `unchanged` or `remove`.
    pub action: String,
    /// The planned fields (JSON paths) whose value differs on the engine.
    #[serde(default)]
    pub changes: Vec<String>,
    /// The image it would run (for `remove`, the one it runs), pinned.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

impl PlanView {
    /// The result, when the plan is done and it reads (it was checked when stored).
    pub fn result(&self) -> Option<StoredPlan> {
        result_of(&self.plan)
    }
}

/// The result of `plan`, when it is done and it reads.
pub fn result_of(plan: &plan::Model) -> Option<StoredPlan> {
    serde_json::from_str(plan.result.as_deref()?).ok()
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no plan has the id {id}"))
}

/// Asks for a plan of `ref_name` for `environment` of `application`, which
/// must both exist. Validated as a deployment is; nothing else is touched.
pub async fn create(
    state: &AppState,
    created_by: &str,
    application: &str,
    environment: &str,
    ref_name: &str,
) -> ApiResult<PlanView> {
    validate_name("environment", environment)?;
    let ref_name = ref_name.trim();
    if ref_name.is_empty() || ref_name.len() > 255 {
        return Err(ApiError::BadInput(
            "`ref` must be a branch, tag or commit of 1 to 255 characters".into(),
        ));
    }
    let (app, env) = applications::get_environment(&state.db, application, environment).await?;
    let row = plan::ActiveModel {
        application_id: Set(app.id),
        environment_id: Set(env.id),
        ref_name: Set(ref_name.to_owned()),
        status: Set(PlanStatus::Queued),
        created_by: Set(created_by.to_owned()),
        created_at: Set(state.clock.now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    let view = PlanView {
        plan: row,
        application: Arc::new(app),
        environment: Arc::new(env),
    };
    state.events.plan_changed(&view.plan);
    Ok(view)
}

/// The plan `id`.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> ApiResult<PlanView> {
    let row = plan::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| not_found(id))?;
    hydrate(db, row).await
}

async fn hydrate(db: &impl ConnectionTrait, row: plan::Model) -> ApiResult<PlanView> {
    let app = application::Entity::find_by_id(row.application_id)
        .one(db)
        .await?
        .ok_or(ApiError::Internal)?;
    let env = environment::Entity::find_by_id(row.environment_id)
        .one(db)
        .await?
        .ok_or(ApiError::Internal)?;
    Ok(PlanView {
        plan: row,
        application: Arc::new(app),
        environment: Arc::new(env),
    })
}

/// The plans waiting for a runner, oldest first.
pub async fn requested(db: &impl ConnectionTrait) -> ApiResult<Vec<PlanView>> {
    let rows = plan::Entity::find()
        .filter(plan::Column::Status.eq(PlanStatus::Queued))
        .order_by_asc(plan::Column::Id)
        .limit(REQUESTED_LIMIT)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(hydrate(db, row).await?);
    }
    Ok(out)
}

/// Runner `runner` takes plan `id`. Of concurrent claims one wins; a plan
/// already claimed (even by the same runner) or finished is `CONFLICT`.
pub async fn claim(state: &AppState, runner: &str, id: i64) -> ApiResult<PlanView> {
    let asked = get(&state.db, id).await?;
    crate::runners::check_may_take(state, runner, &asked.environment, &format!("plan {id}"))
        .await?;
    let now = state.clock.now();
    let row = plan::Entity::update_many()
        .col_expr(plan::Column::Status, Expr::value(PlanStatus::Running))
        .col_expr(plan::Column::Runner, Expr::value(runner))
        .col_expr(plan::Column::ClaimedAt, Expr::value(now))
        .filter(plan::Column::Id.eq(id))
        .filter(plan::Column::Status.eq(PlanStatus::Queued))
        .exec_with_returning(&state.db)
        .await?
        .pop();
    let Some(row) = row else {
        let current = get(&state.db, id).await?;
        return Err(ApiError::Conflict(match current.plan.status {
            PlanStatus::Running => format!(
                "plan {id} is already taken by runner {}",
                quote(current.plan.runner.as_deref().unwrap_or("?"))
            ),
            status => format!("plan {id} is {}, not waiting for a runner", status.as_str()),
        }));
    };
    state.events.plan_changed(&row);
    hydrate(&state.db, row).await
}

/// How a runner answers a plan.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The commit it planned.
    pub sha: Option<String>,
    /// The diff: a plan with one is `DONE`.
    pub result: Option<serde_json::Value>,
    /// Without a result, why the plan failed; with one, a note (warnings).
    pub message: Option<String>,
}

/// Runner `runner` answers plan `id`, which it claimed: `DONE` with a
/// result, `FAILED` with only a message.
pub async fn finish(
    state: &AppState,
    runner: &str,
    id: i64,
    answer: Answer,
) -> ApiResult<PlanView> {
    if let Some(sha) = &answer.sha {
        validate_sha(sha)?;
    }
    let result = match &answer.result {
        Some(result) => {
            let text = result.to_string();
            if text.len() > MAX_RESULT_BYTES {
                return Err(ApiError::BadInput(format!(
                    "`result` is {} bytes, more than the {MAX_RESULT_BYTES} a plan keeps",
                    text.len()
                )));
            }
            if let Err(err) = serde_json::from_value::<StoredPlan>(result.clone()) {
                return Err(ApiError::BadInput(format!(
                    "`result` is not a plan's diff (`{{\"stack\": …, \"services\": [{{\"name\", \
                     \"action\", \"changes\", \"image\", \"digest\"}}]}}`): {}",
                    quote(&err.to_string())
                )));
            }
            Some(text)
        }
        None => None,
    };
    let message = answer
        .message
        .map(|m| cut(&m, MAX_MESSAGE_CHARS).unwrap_or(m));
    let (status, message) = match (&result, message) {
        (Some(_), message) => (PlanStatus::Done, message),
        (None, Some(message)) if !message.trim().is_empty() => (PlanStatus::Failed, Some(message)),
        (None, _) => {
            return Err(ApiError::BadInput(
                "a plan finishes with a `result`, or with a `message` that says why it failed"
                    .into(),
            ))
        }
    };
    let row = plan::Entity::update_many()
        .col_expr(plan::Column::Status, Expr::value(status))
        .col_expr(plan::Column::Sha, Expr::value(answer.sha))
        .col_expr(plan::Column::Result, Expr::value(result))
        .col_expr(plan::Column::Message, Expr::value(message))
        .col_expr(plan::Column::FinishedAt, Expr::value(state.clock.now()))
        .filter(plan::Column::Id.eq(id))
        .filter(plan::Column::Status.eq(PlanStatus::Running))
        .filter(plan::Column::Runner.eq(runner))
        .exec_with_returning(&state.db)
        .await?
        .pop();
    let Some(row) = row else {
        let current = get(&state.db, id).await?;
        return Err(ApiError::Conflict(match current.plan.status {
            PlanStatus::Running => format!(
                "plan {id} is held by runner {}, not {}",
                quote(current.plan.runner.as_deref().unwrap_or("?")),
                quote(runner)
            ),
            PlanStatus::Queued => format!("plan {id} was not claimed; claim it first"),
            status => format!(
                "plan {id} has finished already ({}){}",
                status.as_str(),
                current
                    .plan
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        }));
    };
    state.events.plan_changed(&row);
    hydrate(&state.db, row).await
}

/// Fails the plans no runner took within [`QUEUE_PATIENCE`] and those a
/// runner took and did not answer within [`RUN_PATIENCE`]. Returns them.
pub async fn expire(state: &AppState) -> ApiResult<Vec<plan::Model>> {
    let now = state.clock.now();
    let waited = plan::Entity::update_many()
        .col_expr(plan::Column::Status, Expr::value(PlanStatus::Failed))
        .col_expr(plan::Column::FinishedAt, Expr::value(now))
        .col_expr(
            plan::Column::Message,
            Expr::value(format!(
                "no runner took this plan within {} minutes: is a runner running and \
                 connected to this API? Ask for the plan again once one is",
                QUEUE_PATIENCE.num_minutes()
            )),
        )
        .filter(plan::Column::Status.eq(PlanStatus::Queued))
        .filter(plan::Column::CreatedAt.lt(now - QUEUE_PATIENCE))
        .exec_with_returning(&state.db)
        .await?;
    let mut expired = waited;
    let stale = plan::Entity::find()
        .filter(plan::Column::Status.eq(PlanStatus::Running))
        .filter(plan::Column::ClaimedAt.lt(now - RUN_PATIENCE))
        .all(&state.db)
        .await?;
    for row in stale {
        let message = format!(
            "runner {} took this plan at {} and did not answer within {} minutes; it may \
             have stopped. Ask for the plan again",
            quote(row.runner.as_deref().unwrap_or("?")),
            row.claimed_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
            RUN_PATIENCE.num_minutes()
        );
        // The condition is repeated: the runner's answer may have won the race.
        let ended = plan::Entity::update_many()
            .col_expr(plan::Column::Status, Expr::value(PlanStatus::Failed))
            .col_expr(plan::Column::FinishedAt, Expr::value(now))
            .col_expr(plan::Column::Message, Expr::value(message))
            .filter(plan::Column::Id.eq(row.id))
            .filter(plan::Column::Status.eq(PlanStatus::Running))
            .exec_with_returning(&state.db)
            .await?;
        expired.extend(ended);
    }
    for row in &expired {
        tracing::warn!(
            plan = row.id,
            message = row.message.as_deref(),
            "plan expired"
        );
        state.events.plan_changed(row);
    }
    Ok(expired)
}

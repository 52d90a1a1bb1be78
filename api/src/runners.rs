//! Runners as the API knows them: a name (the token's subject), labels, version,
//! the instance last heard from and when.
//!
//! One token may run several processes at once; each names itself with an
//! instance id, so that they are told apart as holders of deployments.
//!
//! **Pools.** A runner registers with labels (`swarm=prod-eu`); an
//! environment may name the labels a runner must have to deploy it
//! (`runnerLabels`), and then only such runners hear of its deployments and
//! plans, list them as claimable, or may claim them. A runner is
//! **connected** while it was heard from within [`CONNECTED_WITHIN`]: an
//! open `deploymentQueued` subscription says so every [`PRESENCE_EVERY`],
//! claims and heartbeats too. A deployment that could be taken but that no
//! connected runner may take says so in its message ([`explain_waiting`]).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::db::entities::{application, deployment, environment, runner};
use crate::deployments::DeploymentStatus;
use crate::error::{quote, ApiError, ApiResult};
use crate::state::AppState;
use crate::view::DeploymentView;

/// Longest instance id.
const MAX_INSTANCE: usize = 128;
/// Longest label, and the most labels a runner or an environment has.
const MAX_LABEL: usize = 128;
const MAX_LABELS: usize = 32;
/// A runner heard from this recently is connected.
pub const CONNECTED_WITHIN: chrono::Duration = chrono::Duration::seconds(30);
/// How often an open `deploymentQueued` subscription says its runner is there.
pub const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How the message of a deployment no connected runner may take begins.
const WAITING: &str = "waiting: no runner";

/// An instance id: 1 to 128 characters, none of them a control character.
pub fn validate_instance(instance: &str) -> ApiResult<()> {
    if instance.is_empty()
        || instance.len() > MAX_INSTANCE
        || instance.chars().any(char::is_control)
    {
        return Err(ApiError::BadInput(format!(
            "`instance` must be 1 to {MAX_INSTANCE} characters without control characters"
        )));
    }
    Ok(())
}

/// Records that `name` (its `instance`, if said) was heard from now, creating
/// the runner on first contact.
pub async fn seen(state: &AppState, name: &str, instance: Option<&str>) -> ApiResult<()> {
    write(state, name, None, None, instance).await
}

/// Checks labels as a runner or an environment gives them: 1 to 128
/// characters each, no spaces, commas or control characters, at most 32;
/// returns them without repeats, in order.
pub fn validate_labels(labels: Vec<String>) -> ApiResult<Vec<String>> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::BadInput(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            labels.len()
        )));
    }
    let mut clean: Vec<String> = Vec::with_capacity(labels.len());
    for label in labels {
        if label.is_empty()
            || label.len() > MAX_LABEL
            || label
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(ApiError::BadInput(format!(
                "a label must be 1 to {MAX_LABEL} characters without spaces, commas or control characters (like `swarm=prod-eu`), not {}",
                quote(&label)
            )));
        }
        if !clean.contains(&label) {
            clean.push(label);
        }
    }
    Ok(clean)
}

/// The labels stored as JSON in `labels` (a runner's, an environment's).
pub fn parse_labels(labels: Option<&str>) -> Vec<String> {
    labels
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The labels a runner must have to deploy `env` (none: any runner may).
pub fn required(env: &environment::Model) -> Vec<String> {
    parse_labels(env.runner_labels.as_deref())
}

/// Whether a runner with labels `has` may deploy an environment that needs
/// `needs`: it has every one of them.
pub fn serves(has: &[String], needs: &[String]) -> bool {
    needs.iter().all(|label| has.contains(label))
}

/// "runner with swarm=prod-eu and gpu", or "runner" when none is needed.
pub fn runner_with(needs: &[String]) -> String {
    match needs {
        [] => "runner".into(),
        [one] => format!("runner with {one}"),
        [rest @ .., last] => format!("runner with {} and {last}", rest.join(", ")),
    }
}

/// The labels runner `name` registered with (none if it never did).
pub async fn labels_of(state: &AppState, name: &str) -> ApiResult<Vec<String>> {
    let found = runner::Entity::find()
        .filter(runner::Column::Name.eq(name))
        .one(&state.db)
        .await?;
    Ok(found
        .map(|r| parse_labels(Some(&r.labels)))
        .unwrap_or_default())
}

/// Refuses `runner` a deployment or plan of `env` when it lacks a label the
/// environment needs, saying which.
pub async fn check_may_take(
    state: &AppState,
    runner: &str,
    env: &environment::Model,
    what: &str,
) -> ApiResult<()> {
    let needs = required(env);
    if needs.is_empty() {
        return Ok(());
    }
    let has = labels_of(state, runner).await?;
    if serves(&has, &needs) {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "{what} is for a {} (environment `{}`); runner {} has {}",
        runner_with(&needs),
        env.name,
        quote(runner),
        if has.is_empty() {
            "no labels".to_owned()
        } else {
            has.join(", ")
        }
    )))
}

/// Whether `runner` is connected at `now`.
pub fn is_connected(runner: &runner::Model, now: DateTime<Utc>) -> bool {
    now - runner.last_seen_at <= CONNECTED_WITHIN
}

/// Sets the labels a runner must have to deploy the environment (none: any
/// runner). Deployments already queued go to such runners from now on.
pub async fn set_environment_labels(
    state: &AppState,
    application: &str,
    environment: &str,
    labels: Vec<String>,
) -> ApiResult<(environment::Model, application::Model)> {
    let labels = validate_labels(labels)?;
    let (env, app) = crate::gates::environment_of(&state.db, application, environment).await?;
    let env = environment::ActiveModel {
        id: Set(env.id),
        runner_labels: Set((!labels.is_empty())
            .then(|| serde_json::to_string(&labels).expect("a list of strings is JSON"))),
        ..Default::default()
    }
    .update(&state.db)
    .await?;
    state.events.environment_changed(&env);
    explain_waiting(state).await?;
    Ok((env, app))
}

/// Says, in the message of every deployment that could be claimed now, when
/// no connected runner may take it ("waiting: no runner with swarm=prod-eu
/// is connected"), and takes the message back once one is. Run by the
/// reaper; returns how many messages it changed.
pub async fn explain_waiting(state: &AppState) -> ApiResult<usize> {
    let now = state.clock.now();
    let claimable = crate::deployments::claimable(&state.db).await?;
    if claimable.is_empty() {
        return Ok(0);
    }
    let connected: Vec<Vec<String>> = list(state)
        .await?
        .into_iter()
        .filter(|r| is_connected(r, now))
        .map(|r| parse_labels(Some(&r.labels)))
        .collect();
    let mut changed = 0;
    for view in claimable {
        let d = &view.deployment;
        let needs = required(&view.environment);
        let want = (!connected.iter().any(|has| serves(has, &needs)))
            .then(|| format!("waiting: no {} is connected", runner_with(&needs)));
        let ours = d.message.as_deref().is_none_or(|m| m.starts_with(WAITING));
        if !ours || d.message == want {
            continue;
        }
        // Only if it is still queued with the message read.
        let unchanged = match &d.message {
            Some(m) => deployment::Column::Message.eq(m.clone()),
            None => deployment::Column::Message.is_null(),
        };
        let updated = deployment::Entity::update_many()
            .col_expr(deployment::Column::Message, Expr::value(want))
            .filter(deployment::Column::Id.eq(d.id))
            .filter(deployment::Column::Status.eq(DeploymentStatus::Queued))
            .filter(unchanged)
            .exec(&state.db)
            .await?;
        if updated.rows_affected == 1 {
            changed += 1;
            state.events.deployment_changed(&state.db, &view).await;
        }
    }
    Ok(changed)
}

/// Says that runner `name` is connected every [`PRESENCE_EVERY`] until
/// dropped (with the subscription it belongs to).
pub fn keep_present(state: &AppState, name: &str) -> Presence {
    let (state, name) = (state.clone(), name.to_owned());
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PRESENCE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = seen(&state, &name, None).await {
                tracing::warn!(?err, runner = %name, "could not record that the runner is connected");
            }
        }
    });
    Presence(task.abort_handle())
}

/// A runner's presence, kept while this lives.
pub struct Presence(tokio::task::AbortHandle);

impl Drop for Presence {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether `view` is for a runner with `has`.
pub fn may_take(has: &[String], view: &DeploymentView) -> bool {
    serves(has, &required(&view.environment))
}

/// Registers a runner with its labels, version and instance, or updates them.
pub async fn register(
    state: &AppState,
    name: &str,
    labels: Vec<String>,
    version: Option<String>,
    instance: Option<&str>,
) -> ApiResult<runner::Model> {
    if let Some(instance) = instance {
        validate_instance(instance)?;
    }
    let labels = validate_labels(labels)?;
    upsert(state, name, Some(labels), version, instance).await
}

async fn upsert(
    state: &AppState,
    name: &str,
    labels: Option<Vec<String>>,
    version: Option<String>,
    instance: Option<&str>,
) -> ApiResult<runner::Model> {
    write(state, name, labels, version, instance).await?;
    runner::Entity::find()
        .filter(runner::Column::Name.eq(name))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::internal(format!("runner {name} vanished after its upsert")))
}

/// Inserts or updates the row of runner `name` (what is `Some`, and when it
/// was last seen) in one statement.
async fn write(
    state: &AppState,
    name: &str,
    labels: Option<Vec<String>>,
    version: Option<String>,
    instance: Option<&str>,
) -> ApiResult<()> {
    let now = state.clock.now();
    let mut update = vec![runner::Column::LastSeenAt];
    if labels.is_some() {
        update.push(runner::Column::Labels);
    }
    if version.is_some() {
        update.push(runner::Column::Version);
    }
    if instance.is_some() {
        update.push(runner::Column::LastInstance);
    }
    let labels = serde_json::to_string(&labels.unwrap_or_default()).unwrap_or_default();
    runner::Entity::insert(runner::ActiveModel {
        name: Set(name.to_owned()),
        labels: Set(labels),
        version: Set(version),
        last_instance: Set(instance.map(str::to_owned)),
        last_seen_at: Set(now),
        created_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(runner::Column::Name)
            .update_columns(update)
            .to_owned(),
    )
    .exec_without_returning(&state.db)
    .await?;
    Ok(())
}

pub async fn list(state: &AppState) -> ApiResult<Vec<runner::Model>> {
    Ok(runner::Entity::find()
        .order_by_asc(runner::Column::Name)
        .all(&state.db)
        .await?)
}

/// The deployments runner `name` holds now, oldest first.
pub async fn holds(db: &impl ConnectionTrait, name: &str) -> ApiResult<Vec<DeploymentView>> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .filter(deployment::Column::Runner.eq(name))
        .order_by_asc(deployment::Column::Id)
        .all(db)
        .await?;
    crate::view::hydrate(db, rows).await
}

//! Runners as the API knows them: a name (the token's subject), labels, version,
//! the instance last heard from and when.
//!
//! One token may run several processes at once; each names itself with an
//! instance id, so that they are told apart as holders of deployments.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::db::entities::runner;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Longest instance id.
const MAX_INSTANCE: usize = 128;

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
    upsert(state, name, None, None, instance).await.map(|_| ())
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
    upsert(state, name, Some(labels), version, instance).await
}

async fn upsert(
    state: &AppState,
    name: &str,
    labels: Option<Vec<String>>,
    version: Option<String>,
    instance: Option<&str>,
) -> ApiResult<runner::Model> {
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
    runner::Entity::find()
        .filter(runner::Column::Name.eq(name))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::internal(format!("runner {name} vanished after its upsert")))
}

pub async fn list(state: &AppState) -> ApiResult<Vec<runner::Model>> {
    Ok(runner::Entity::find()
        .order_by_asc(runner::Column::Name)
        .all(&state.db)
        .await?)
}

//! Runners as the API knows them: a name (the token's subject), labels, version
//! and when they were last heard from.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::db::entities::runner;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Records that `name` was heard from now (creating the runner on first contact).
pub async fn seen(state: &AppState, name: &str) -> ApiResult<()> {
    upsert(state, name, None, None).await.map(|_| ())
}

/// Registers a runner with its labels and version, or updates them.
pub async fn register(
    state: &AppState,
    name: &str,
    labels: Vec<String>,
    version: Option<String>,
) -> ApiResult<runner::Model> {
    upsert(state, name, Some(labels), version).await
}

async fn upsert(
    state: &AppState,
    name: &str,
    labels: Option<Vec<String>>,
    version: Option<String>,
) -> ApiResult<runner::Model> {
    let now = state.clock.now();
    let mut update = vec![runner::Column::LastSeenAt];
    if labels.is_some() {
        update.push(runner::Column::Labels);
    }
    if version.is_some() {
        update.push(runner::Column::Version);
    }
    let labels = serde_json::to_string(&labels.unwrap_or_default()).unwrap_or_default();
    runner::Entity::insert(runner::ActiveModel {
        name: Set(name.to_owned()),
        labels: Set(labels),
        version: Set(version),
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

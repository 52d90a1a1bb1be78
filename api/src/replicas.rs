//! The API's replicas, as the database knows them. Every process writes a row
//! under an instance id of its own when it starts and the time again at every
//! reaper tick (every 5 s), so that one replica can tell, when it starts,
//! whether another was serving meanwhile.
//!
//! That decides what happens to the leases of deployments in progress. While
//! no API was up, no runner could renew its lease, and that must not count
//! against it; but while another replica was up, a runner that did not renew
//! was lost, and renewing its lease would keep its deployment in progress
//! for nothing. So a starting replica renews:
//!
//! - nothing, when another replica was seen within [`ALIVE_WITHIN`];
//! - otherwise, the leases that still ran when the last replica was last
//!   seen (their runners were alive then and could not renew since);
//! - every lease, when no replica ever wrote a row (a database of an API
//!   older than this table).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use crate::db::entities::{api_replica, deployment};
use crate::deployments::DeploymentStatus;
use crate::error::ApiResult;
use crate::state::AppState;

/// A replica seen this recently is taken to be serving.
pub const ALIVE_WITHIN: chrono::Duration = chrono::Duration::seconds(15);
/// Rows of replicas not seen for this long are removed.
const FORGET_AFTER: chrono::Duration = chrono::Duration::days(1);

/// A name for this process: host, process id and a random part, so that a
/// restarted process is a new replica.
pub fn new_instance() -> ApiResult<String> {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "api".into());
    let random = crate::sessions::random_bytes::<4>()?;
    Ok(format!(
        "{host}-{}-{}",
        std::process::id(),
        hex::encode(random)
    ))
}

/// What [`start`] did to the leases in progress.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewed {
    /// No replica had ever been recorded: every lease, as many as this.
    All(u64),
    /// Another replica was serving: none.
    NoneOtherServing(String),
    /// The leases alive when the last replica was last seen, as many as this.
    SinceLastSeen(u64, DateTime<Utc>),
}

/// Records `instance` as started, renewing leases as the module says.
pub async fn start(state: &AppState, instance: &str) -> ApiResult<Renewed> {
    let now = state.clock.now();
    let last = api_replica::Entity::find()
        .filter(api_replica::Column::Instance.ne(instance))
        .order_by_desc(api_replica::Column::LastSeenAt)
        .limit(1)
        .one(&state.db)
        .await?;
    let renewed = match last {
        Some(other) if now - other.last_seen_at < ALIVE_WITHIN => {
            Renewed::NoneOtherServing(other.instance)
        }
        Some(other) => Renewed::SinceLastSeen(
            renew(state, now, Some(other.last_seen_at)).await?,
            other.last_seen_at,
        ),
        None => Renewed::All(renew(state, now, None).await?),
    };
    api_replica::Entity::insert(api_replica::ActiveModel {
        instance: Set(instance.to_owned()),
        started_at: Set(now),
        last_seen_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(api_replica::Column::Instance)
            .update_column(api_replica::Column::LastSeenAt)
            .to_owned(),
    )
    .exec_without_returning(&state.db)
    .await?;
    Ok(renewed)
}

/// Gives a full lease from `now` to every deployment in progress whose lease
/// ran at `alive_at` (every one, without it).
async fn renew(
    state: &AppState,
    now: DateTime<Utc>,
    alive_at: Option<DateTime<Utc>>,
) -> ApiResult<u64> {
    let mut update = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress));
    if let Some(at) = alive_at {
        update = update.filter(deployment::Column::LeaseExpiresAt.gte(at));
    }
    Ok(update.exec(&state.db).await?.rows_affected)
}

/// Records that `instance` is alive now, and forgets replicas gone a day.
pub async fn alive(state: &AppState, instance: &str) -> ApiResult<()> {
    let now = state.clock.now();
    api_replica::Entity::update_many()
        .col_expr(api_replica::Column::LastSeenAt, Expr::value(now))
        .filter(api_replica::Column::Instance.eq(instance))
        .exec(&state.db)
        .await?;
    api_replica::Entity::delete_many()
        .filter(api_replica::Column::LastSeenAt.lt(now - FORGET_AFTER))
        .exec(&state.db)
        .await?;
    Ok(())
}

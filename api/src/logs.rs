//! Deployment logs: lines get dense sequence numbers (from 1) assigned by the API
//! and are stored before the append is acknowledged. A follower reads what is
//! stored after a sequence number, then live lines, with no gap and no duplicate.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::db::entities::{deployment, log_line};
use crate::deployments::DeploymentStatus;
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::leases::{self, Holder};
use crate::runners;
use crate::state::AppState;
use crate::view;

/// Most lines one append may carry.
pub const MAX_LINES_PER_APPEND: usize = 5000;
/// Longest line, in bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct NewLine {
    pub text: String,
    pub stream: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// Stores `lines` for the deployment `id` held by `holder`, after every line it
/// already has, and renews the lease. Returns the deployment as it is after.
///
/// `after` is the sequence number the caller last knew stored: lines of the
/// batch already stored past it are skipped, so a retried batch is stored once.
pub async fn append(
    state: &AppState,
    holder: impl Into<Holder<'_>>,
    id: i64,
    lines: Vec<NewLine>,
    after: Option<i64>,
) -> ApiResult<deployment::Model> {
    let holder = holder.into();
    if let Some(instance) = holder.instance {
        runners::validate_instance(instance)?;
    }
    if lines.is_empty() {
        return Err(ApiError::BadInput("`lines` is empty".into()));
    }
    if lines.len() > MAX_LINES_PER_APPEND {
        return Err(ApiError::BadInput(format!(
            "{} lines in one append; at most {MAX_LINES_PER_APPEND}",
            lines.len()
        )));
    }
    for (i, line) in lines.iter().enumerate() {
        if line.text.len() > MAX_LINE_BYTES {
            return Err(ApiError::BadInput(format!(
                "line {i} is {} bytes long; at most {MAX_LINE_BYTES}",
                line.text.len()
            )));
        }
        if line
            .stream
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 64)
        {
            return Err(ApiError::BadInput(format!(
                "line {i}: `stream` must be 1 to 64 characters"
            )));
        }
    }
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    // The first statement renews the lease and so takes the write lock
    // (SQLite) or the deployment's row lock (PostgreSQL) at once.
    let current = deployment::Entity::update_many()
        .col_expr(deployment::Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .filter(holder.holds())
        .exec_with_returning(&txn)
        .await?
        .pop();
    let Some(current) = current else {
        txn.rollback().await?;
        return Err(leases::not_held(state, holder, id).await);
    };
    // A batch sent again (its answer was lost) stores only what is new.
    let skip = match after {
        None => 0,
        Some(after) if after > current.log_count => {
            txn.rollback().await?;
            return Err(ApiError::BadInput(format!(
                "`after` is {after} but deployment {id} has {} lines: lines would be missing",
                current.log_count
            )));
        }
        Some(after) => (current.log_count - after.max(0)) as usize,
    };
    let lines: Vec<NewLine> = lines.into_iter().skip(skip).collect();
    if lines.is_empty() {
        txn.commit().await?;
        return Ok(current);
    }
    let count = lines.len() as i64;
    let held = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::LogCount,
            Expr::col(deployment::Column::LogCount).add(count),
        )
        .filter(deployment::Column::Id.eq(id))
        .exec_with_returning(&txn)
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(format!("deployment {id} vanished while locked")))?;
    let first = held.log_count - count + 1;
    let stored: Vec<log_line::Model> = lines
        .into_iter()
        .zip(first..)
        .map(|(line, seq)| log_line::Model {
            deployment_id: id,
            seq,
            at: line.at.unwrap_or(now),
            stream: line.stream.unwrap_or_else(|| "stdout".to_owned()),
            text: line.text,
        })
        .collect();
    for chunk in stored.chunks(1000) {
        log_line::Entity::insert_many(chunk.iter().map(|line| log_line::ActiveModel {
            deployment_id: Set(line.deployment_id),
            seq: Set(line.seq),
            at: Set(line.at),
            stream: Set(line.stream.clone()),
            text: Set(line.text.clone()),
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    state.events.lines_stored(id, Arc::new(stored));
    Ok(held)
}

/// Up to `limit` stored lines of a deployment after sequence number `after`.
pub async fn read(
    db: &impl ConnectionTrait,
    id: i64,
    after: i64,
    limit: u64,
) -> ApiResult<Vec<log_line::Model>> {
    Ok(log_line::Entity::find()
        .filter(log_line::Column::DeploymentId.eq(id))
        .filter(log_line::Column::Seq.gt(after))
        .order_by_asc(log_line::Column::Seq)
        .limit(limit)
        .all(db)
        .await?)
}

/// The lines of deployment `id` after `after`: first the stored ones, then live
/// ones as they are appended. Ends once the deployment has finished and every
/// line it has is sent.
pub async fn follow(
    state: &AppState,
    id: i64,
    after: i64,
) -> ApiResult<impl Stream<Item = log_line::Model>> {
    // Subscribing before reading makes the hand-over gap-free: a line stored
    // while the backlog is read arrives on `events` too, and is skipped by seq.
    let events = state.events.subscribe();
    view::get(&state.db, id).await?;
    let (tx, rx) = mpsc::channel(256);
    let state = state.clone();
    tokio::spawn(async move {
        match forward(&state, id, after, events, &tx).await {
            Ok(()) | Err(Stop::Gone) => {}
            Err(Stop::Failed(err)) => {
                tracing::warn!(deployment = id, ?err, "log follower stopped early");
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Why a follower stopped early: its subscriber left, or the database failed.
#[derive(Debug)]
enum Stop {
    Gone,
    Failed(ApiError),
}

impl From<ApiError> for Stop {
    fn from(err: ApiError) -> Self {
        Stop::Failed(err)
    }
}

async fn forward(
    state: &AppState,
    id: i64,
    mut last: i64,
    mut events: broadcast::Receiver<Event>,
    tx: &mpsc::Sender<log_line::Model>,
) -> Result<(), Stop> {
    last = catch_up(state, id, last, tx).await?;
    if view::get(&state.db, id).await?.status().is_final() {
        // Lines stored between the catch-up and the finish are sent too.
        catch_up(state, id, last, tx).await?;
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            () = tx.closed() => return Err(Stop::Gone),
            event = events.recv() => event,
        };
        match event {
            Ok(Event::Logs(stored)) if stored.deployment_id == id => match stored.loaded() {
                Some(lines) => {
                    if *stored.seqs.start() > last + 1 {
                        last = catch_up(state, id, last, tx).await?;
                    }
                    for line in lines.iter() {
                        if line.seq > last {
                            tx.send(line.clone()).await.map_err(|_| Stop::Gone)?;
                            last = line.seq;
                        }
                    }
                }
                None if *stored.seqs.end() > last => {
                    last = catch_up(state, id, last, tx).await?;
                }
                None => {}
            },
            Ok(Event::Deployment(changed)) if changed.deployment_id == id => {
                if changed.view(&state.db).await?.status().is_final() {
                    catch_up(state, id, last, tx).await?;
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // The finish may be among the missed events: look again.
                last = catch_up(state, id, last, tx).await?;
                if view::get(&state.db, id).await?.status().is_final() {
                    catch_up(state, id, last, tx).await?;
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends every stored line after `last`; returns the new last sequence number.
async fn catch_up(
    state: &AppState,
    id: i64,
    mut last: i64,
    tx: &mpsc::Sender<log_line::Model>,
) -> Result<i64, Stop> {
    loop {
        let page = read(&state.db, id, last, 1000).await?;
        let full = page.len() == 1000;
        for line in page {
            last = line.seq;
            tx.send(line).await.map_err(|_| Stop::Gone)?;
        }
        if !full {
            return Ok(last);
        }
    }
}

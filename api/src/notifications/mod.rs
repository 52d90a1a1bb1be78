//! Telling people: where each environment's deployments are announced
//! (a Slack incoming webhook, a signed webhook, a Sentry project's
//! releases), and the outbox of what is to be sent.
//!
//! Nothing here decides when a message is owed. The database does: a
//! trigger on `deployments` (migration 11) writes a `deliveries` row for
//! every notification that asked for the event, in the same transaction as
//! the change itself — a deployment created, claimed, or ended. So no
//! change that committed goes untold, whichever code path made it, and no
//! message is owed for one that did not commit. [`outbox`] sends them.
//!
//! A notification's target URL and signing secret are write-only: the API
//! answers the target as [`shown_target`] (scheme and host), never the
//! secret, except once — the secret it made when none was given.

pub mod outbox;
pub mod sentry;
pub mod slack;
pub mod webhook;

use std::collections::BTreeSet;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set, TransactionTrait,
};

use crate::db::entities::delivery::{self, DeliveryState};
use crate::db::entities::notification::{self, NotificationKind};
use crate::db::entities::notification_event::{self, DeploymentEvent};
use crate::error::{ApiError, ApiResult};
use crate::gates::environment_of;
use crate::state::AppState;

/// The longest target URL taken.
const MAX_TARGET: usize = 2048;

/// What `setNotification` asks for.
pub struct NewNotification {
    pub application: String,
    pub environment: String,
    pub kind: NotificationKind,
    pub target: String,
    /// A webhook's signing key (`whsec_` and base64 of 24 to 64 bytes);
    /// one is made when none is given.
    pub secret: Option<String>,
    pub events: Vec<DeploymentEvent>,
}

/// A notification with the events it is sent for.
#[derive(Clone, Debug)]
pub struct Notification {
    pub model: notification::Model,
    pub events: Vec<DeploymentEvent>,
}

/// Sets where an environment's deployments are told about. A notification
/// of the same kind and target is changed (its events, its secret when one
/// is given; a disabled one is enabled again), otherwise one is added.
/// Answers the notification and, for a webhook given no secret, the secret
/// made for it: the one time it is shown.
pub async fn set(
    state: &AppState,
    by: &str,
    input: NewNotification,
) -> ApiResult<(Notification, Option<String>)> {
    let target = check_target(&input.target)?;
    match (input.kind, &input.secret) {
        (NotificationKind::Slack, Some(_)) => {
            return Err(ApiError::BadInput(
                "`secret` is for webhooks and Sentry: a Slack incoming webhook is not signed, its URL is the secret"
                    .into(),
            ));
        }
        (NotificationKind::Webhook, Some(secret)) => {
            webhook::parse(secret)?;
        }
        (NotificationKind::Sentry, secret) => {
            sentry::Project::parse(&target)?;
            check_sentry(state, secret.as_deref(), &input.events)?;
        }
        _ => {}
    }
    let events: BTreeSet<_> = input.events.iter().copied().map(EventOrder).collect();
    if events.is_empty() {
        return Err(ApiError::BadInput(
            "`events` must name at least one event (QUEUED, STARTED, SUCCEEDED, FAILED, CANCELLED, ROLLED_BACK)"
                .into(),
        ));
    }
    let (env, _) = environment_of(&state.db, &input.application, &input.environment).await?;
    let made = match (&input.secret, input.kind) {
        (None, NotificationKind::Webhook) => Some(webhook::generate()?),
        _ => None,
    };
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    let existing = notification::Entity::find()
        .filter(notification::Column::EnvironmentId.eq(env.id))
        .filter(notification::Column::Kind.eq(input.kind))
        .filter(notification::Column::Target.eq(target.clone()))
        .filter(notification::Column::DeploymentId.is_null())
        .filter(notification::Column::RemovedAt.is_null())
        .one(&txn)
        .await?;
    let (model, answered) = match existing {
        Some(row) => {
            let mut change: notification::ActiveModel = row.into();
            if let Some(secret) = &input.secret {
                change.secret = Set(Some(secret.clone()));
            }
            change.disabled_at = Set(None);
            change.disabled_reason = Set(None);
            (change.update(&txn).await?, None)
        }
        None => {
            let secret = input.secret.clone().or_else(|| made.clone());
            let row = notification::ActiveModel {
                environment_id: Set(env.id),
                kind: Set(input.kind),
                target: Set(target),
                secret: Set(secret),
                created_by: Set(by.to_owned()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            (row, made)
        }
    };
    notification_event::Entity::delete_many()
        .filter(notification_event::Column::NotificationId.eq(model.id))
        .exec(&txn)
        .await?;
    notification_event::Entity::insert_many(events.iter().map(|event| {
        notification_event::ActiveModel {
            notification_id: Set(model.id),
            event: Set(event.0),
        }
    }))
    .exec(&txn)
    .await?;
    txn.commit().await?;
    tracing::info!(
        notification = model.id,
        kind = ?model.kind,
        target = %shown_target(&model.target),
        by,
        "notification set"
    );
    let events = events.into_iter().map(|e| e.0).collect();
    Ok((Notification { model, events }, answered))
}

/// A Sentry notification has a token (its own, or the API's) and asks for
/// what Sentry records: the start and the success of a deployment.
fn check_sentry(
    state: &AppState,
    token: Option<&str>,
    events: &[DeploymentEvent],
) -> ApiResult<()> {
    if let Some(token) = token {
        if token.is_empty() || token.len() > 512 || token.contains(char::is_whitespace) {
            return Err(ApiError::BadInput(
                "`secret` of a Sentry notification is an auth token (with project:releases): 1 to 512 characters, no spaces"
                    .into(),
            ));
        }
    } else if state.settings.sentry_token.is_none() {
        return Err(ApiError::BadInput(
            "a Sentry notification needs a token: give `secret` (an auth token with project:releases), or start the API with --sentry-token-file"
                .into(),
        ));
    }
    let told = [DeploymentEvent::Started, DeploymentEvent::Succeeded];
    if let Some(other) = events.iter().find(|e| !told.contains(e)) {
        return Err(ApiError::BadInput(format!(
            "Sentry is told STARTED (the release) and SUCCEEDED (a deploy), not {}",
            sea_orm::ActiveEnum::to_value(other)
        )));
    }
    Ok(())
}

/// Tells a Slack `target` (a chat command's `response_url`) what becomes
/// of one deployment from now on: it starts, and how it ends. Through the
/// outbox like any notification; not listed among the environment's.
pub async fn follow(
    state: &AppState,
    by: &str,
    deployment: &crate::view::DeploymentView,
    target: &str,
) -> ApiResult<()> {
    let target = check_target(target)?;
    let txn = state.db.begin().await?;
    let row = notification::ActiveModel {
        environment_id: Set(deployment.environment.id),
        deployment_id: Set(Some(deployment.deployment.id)),
        kind: Set(NotificationKind::Slack),
        target: Set(target),
        created_by: Set(by.to_owned()),
        created_at: Set(state.clock.now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let events = [
        DeploymentEvent::Started,
        DeploymentEvent::Succeeded,
        DeploymentEvent::Failed,
        DeploymentEvent::RolledBack,
        DeploymentEvent::Cancelled,
    ];
    notification_event::Entity::insert_many(events.map(|event| notification_event::ActiveModel {
        notification_id: Set(row.id),
        event: Set(event),
    }))
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Removes a notification: nothing more is sent to it, and what it still
/// owed is discarded. The row stays, with its deliveries, for the record.
pub async fn remove(state: &AppState, id: i64) -> ApiResult<Notification> {
    let missing = || ApiError::NotFound(format!("notification {id} does not exist"));
    let txn = state.db.begin().await?;
    let row = notification::Entity::find_by_id(id)
        .filter(notification::Column::RemovedAt.is_null())
        .one(&txn)
        .await?
        .ok_or_else(missing)?;
    let mut change: notification::ActiveModel = row.into();
    change.removed_at = Set(Some(state.clock.now()));
    let model = change.update(&txn).await?;
    discard_pending(&txn, id, "the notification was removed").await?;
    txn.commit().await?;
    let events = events_of(&state.db, id).await?;
    Ok(Notification { model, events })
}

/// Marks what `notification` still owed as discarded, saying why.
async fn discard_pending(db: &impl ConnectionTrait, notification: i64, why: &str) -> ApiResult<()> {
    delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            Expr::value(DeliveryState::Discarded),
        )
        .col_expr(delivery::Column::LastAnswer, Expr::value(why))
        .filter(delivery::Column::NotificationId.eq(notification))
        .filter(delivery::Column::State.eq(DeliveryState::Pending))
        .exec(db)
        .await?;
    Ok(())
}

/// The notifications of an environment, oldest first, removed ones left out.
pub async fn of_environment(
    db: &impl ConnectionTrait,
    environment_id: i64,
) -> ApiResult<Vec<Notification>> {
    let rows = notification::Entity::find()
        .filter(notification::Column::EnvironmentId.eq(environment_id))
        .filter(notification::Column::DeploymentId.is_null())
        .filter(notification::Column::RemovedAt.is_null())
        .order_by_asc(notification::Column::Id)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for model in rows {
        let events = events_of(db, model.id).await?;
        out.push(Notification { model, events });
    }
    Ok(out)
}

async fn events_of(db: &impl ConnectionTrait, id: i64) -> ApiResult<Vec<DeploymentEvent>> {
    let mut events: Vec<_> = notification_event::Entity::find()
        .filter(notification_event::Column::NotificationId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| EventOrder(row.event))
        .collect();
    events.sort();
    Ok(events.into_iter().map(|e| e.0).collect())
}

/// Which deliveries a `deliveries` query asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryFilter {
    pub environment_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub notification_id: Option<i64>,
    pub state: Option<DeliveryState>,
}

/// Deliveries, newest first, `first` of them before the id `before`; and
/// whether there are more.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    filter: DeliveryFilter,
    first: u64,
    before: Option<i64>,
) -> ApiResult<(Vec<delivery::Model>, bool)> {
    let mut query = delivery::Entity::find().order_by_desc(delivery::Column::Id);
    if let Some(env) = filter.environment_id {
        let of_env = notification::Entity::find()
            .select_only()
            .column(notification::Column::Id)
            .filter(notification::Column::EnvironmentId.eq(env))
            .into_query();
        query = query.filter(delivery::Column::NotificationId.in_subquery(of_env));
    }
    if let Some(id) = filter.deployment_id {
        query = query.filter(delivery::Column::DeploymentId.eq(id));
    }
    if let Some(id) = filter.notification_id {
        query = query.filter(delivery::Column::NotificationId.eq(id));
    }
    if let Some(state) = filter.state {
        query = query.filter(delivery::Column::State.eq(state));
    }
    if let Some(before) = before {
        query = query.filter(delivery::Column::Id.lt(before));
    }
    let mut rows = query.limit(first + 1).all(db).await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// The notification a delivery goes to, removed ones included.
pub async fn notification(db: &impl ConnectionTrait, id: i64) -> ApiResult<Notification> {
    let model = notification::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification {id} does not exist")))?;
    let events = events_of(db, id).await?;
    Ok(Notification { model, events })
}

/// A target URL as the API shows it: its scheme and host, since the rest
/// (a Slack webhook's path, a token in a query) may be its secret.
pub fn shown_target(target: &str) -> String {
    match reqwest::Url::parse(target) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            match url.port() {
                Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
                None => format!("{}://{host}/…", url.scheme()),
            }
        }
        Err(_) => "…".into(),
    }
}

/// An http or https URL with a host, at most [`MAX_TARGET`] long. The
/// error never repeats the URL: it may be a secret.
fn check_target(target: &str) -> ApiResult<String> {
    let target = target.trim();
    if target.len() > MAX_TARGET {
        return Err(ApiError::BadInput(format!(
            "`target` is longer than {MAX_TARGET} characters"
        )));
    }
    let url = reqwest::Url::parse(target)
        .map_err(|err| ApiError::BadInput(format!("`target` is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::BadInput(format!(
            "`target` must be an http or https URL, not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::BadInput("`target` must name a host".into()));
    }
    Ok(target.to_owned())
}

/// Events in the order of a deployment's life, for sets and lists.
#[derive(Clone, Copy, PartialEq, Eq)]
struct EventOrder(DeploymentEvent);

impl EventOrder {
    fn rank(self) -> u8 {
        match self.0 {
            DeploymentEvent::Queued => 0,
            DeploymentEvent::Started => 1,
            DeploymentEvent::Succeeded => 2,
            DeploymentEvent::Failed => 3,
            DeploymentEvent::RolledBack => 4,
            DeploymentEvent::Cancelled => 5,
        }
    }
}

impl Ord for EventOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for EventOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl DeploymentEvent {
    /// The event's name in a webhook's `type` (`deployment.rolled_back`).
    pub fn webhook_type(self) -> &'static str {
        match self {
            DeploymentEvent::Queued => "deployment.queued",
            DeploymentEvent::Started => "deployment.started",
            DeploymentEvent::Succeeded => "deployment.succeeded",
            DeploymentEvent::Failed => "deployment.failed",
            DeploymentEvent::Cancelled => "deployment.cancelled",
            DeploymentEvent::RolledBack => "deployment.rolled_back",
        }
    }
}

//! The schema's view of notifications and their deliveries. A target is
//! shown as its scheme and host only, a secret never (but once, made).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::types::{page_arguments, state, Deployment};
use crate::db::entities::{delivery, notification, notification_event};
use crate::error::ApiResult;
use crate::notifications::{self, webhook, DeliveryFilter};
use crate::view;

/// Where a notification posts.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "notification::NotificationKind")]
pub(crate) enum NotificationKind {
    /// A Slack incoming webhook: a message with blocks per event.
    Slack,
    /// JSON with the deployment as the API shows it, signed per the
    /// Standard Webhooks specification (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`).
    Webhook,
    /// A Sentry project (its page is the target): the release of the
    /// commit when a deployment starts, a deploy to the environment when it
    /// succeeds. Events: `STARTED`, `SUCCEEDED`.
    Sentry,
}

/// What happened to a deployment, as notifications tell it.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "notification_event::DeploymentEvent")]
pub(crate) enum DeploymentEvent {
    /// It was created (it may wait at a gate).
    Queued,
    /// A runner claimed it.
    Started,
    Succeeded,
    /// It failed, the stack left as it ran before (or never touched).
    Failed,
    Cancelled,
    /// It failed after changing the stack, and the stack was taken back.
    RolledBack,
}

/// Where a delivery is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "delivery::DeliveryState")]
pub(crate) enum DeliveryState {
    /// Not sent yet, or to be tried again at `nextAttemptAt`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt of the retry schedule failed.
    Failed,
    /// Not sent: the notification was removed, or its receiver answered 410.
    Discarded,
}

pub(crate) struct Notification(pub notifications::Notification);

/// Why a notification sends nothing more.
#[derive(SimpleObject)]
pub(crate) struct NotificationDisabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.model.id.to_string())
    }

    async fn kind(&self) -> NotificationKind {
        self.0.model.kind.into()
    }

    /// The target's scheme and host (`https://hooks.slack.com/…`): the rest
    /// of the URL may be its secret, and is never shown.
    async fn target(&self) -> String {
        notifications::shown_target(&self.0.model.target)
    }

    /// The events it is sent for, in the order of a deployment's life.
    async fn events(&self) -> Vec<DeploymentEvent> {
        self.0.events.iter().map(|e| (*e).into()).collect()
    }

    async fn created_by(&self) -> &str {
        &self.0.model.created_by
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.model.created_at
    }

    /// Set when its receiver answered 410 Gone: nothing is sent until it
    /// is set again (`setNotification`).
    async fn disabled(&self) -> Option<NotificationDisabled> {
        let m = &self.0.model;
        Some(NotificationDisabled {
            at: m.disabled_at?,
            reason: m.disabled_reason.clone().unwrap_or_default(),
        })
    }

    /// Set once it was removed.
    async fn removed_at(&self) -> Option<DateTime<Utc>> {
        self.0.model.removed_at
    }

    /// Its deliveries, newest first.
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Delivery>> {
        let filter = DeliveryFilter {
            notification_id: Some(self.0.model.id),
            ..DeliveryFilter::default()
        };
        delivery_page(ctx, filter, first, after).await
    }
}

/// What `setNotification` answers.
#[derive(SimpleObject)]
pub(crate) struct SetNotificationPayload {
    pub notification: Notification,
    /// The signing secret made for a webhook that was given none: shown
    /// this once, never again. Null otherwise.
    pub secret: Option<String>,
}

pub(crate) struct Delivery(pub delivery::Model);

#[Object]
impl Delivery {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The id a receiver sees (`webhook-id`): the same for every attempt.
    async fn message_id(&self) -> String {
        webhook::message_id(self.0.id)
    }

    async fn event(&self) -> DeploymentEvent {
        self.0.event.into()
    }

    /// When the deployment's change committed.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    async fn state(&self) -> DeliveryState {
        self.0.state.into()
    }

    async fn attempts(&self) -> i64 {
        self.0.attempts
    }

    /// When it is tried (again), while PENDING.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.0.state == delivery::DeliveryState::Pending).then_some(self.0.next_attempt_at)
    }

    async fn last_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_attempt_at
    }

    /// The receiver's last answer (`HTTP 500: …`) or why there was none.
    async fn last_answer(&self) -> Option<&str> {
        self.0.last_answer.as_deref()
    }

    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivered_at
    }

    async fn deployment(&self, ctx: &Context<'_>) -> ApiResult<Deployment> {
        let view = view::get(&state(ctx).db, self.0.deployment_id).await?;
        Ok(Deployment::of(view))
    }

    async fn notification(&self, ctx: &Context<'_>) -> ApiResult<Notification> {
        let n = notifications::notification(&state(ctx).db, self.0.notification_id).await?;
        Ok(Notification(n))
    }
}

pub(crate) async fn delivery_page(
    ctx: &Context<'_>,
    filter: DeliveryFilter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<String, Delivery>> {
    let (first, before_id) = page_arguments(first, after)?;
    let (rows, more) =
        notifications::deliveries(&state(ctx).db, filter, first as u64, before_id).await?;
    let mut connection = Connection::new(before_id.is_some(), more);
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(row.id.to_string(), Delivery(row))),
    );
    Ok(connection)
}

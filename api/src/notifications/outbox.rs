//! The sender of the outbox: every `deliveries` row the database's triggers
//! wrote, posted to its notification's target until the receiver takes it.
//!
//! - At least once, with a stable id: a row is marked delivered only after
//!   the receiver answered 2xx, so a restart between the two sends it again
//!   — with the same `webhook-id` and the same body (made at the first
//!   attempt and kept), so a receiver sees one message.
//! - In order per deployment and target: a delivery waits while an earlier
//!   one of the same deployment to the same notification is pending, so a
//!   "succeeded" never arrives before its "started", even across retries.
//! - Retries on the Standard Webhooks schedule ([`RETRY_AFTER`]), then
//!   FAILED; a `429`'s `Retry-After` is honoured when it asks for longer. A
//!   `410 Gone` disables the notification and discards what it still owed.
//! - A Sentry delivery is two calls, the release (Sentry answers `208`
//!   when it exists) and then its deploy; a retry makes both again.
//! - Slack takes at most one message per second per webhook: sends to one
//!   Slack notification are spaced by [`SLACK_GAP`].
//! - Several senders (API replicas) share the outbox: a sender takes a row
//!   by setting `locked_until`, which another respects until it passes.
//!
//! The sender wakes when a deployment changes (the triggers may have
//! written rows) and every [`POLL`] for retries and other replicas' rows.

use std::collections::{HashMap, HashSet};
use std::time::Duration as StdDuration;

use async_graphql::{Request, Variables};
use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{sentry, slack, webhook, Notification};
use crate::auth::{Auth, Claims, Role};
use crate::db::entities::delivery::{self, DeliveryState};
use crate::db::entities::notification::{self, NotificationKind};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::graphql::{self, SlipwaySchema};
use crate::state::AppState;
use crate::view;

/// How long to wait after each failed attempt before the next: the
/// Standard Webhooks schedule. The first attempt is at once; after the
/// last of these fails, the delivery is FAILED.
pub const RETRY_AFTER: [StdDuration; 7] = [
    StdDuration::from_secs(5),
    StdDuration::from_secs(5 * 60),
    StdDuration::from_secs(30 * 60),
    StdDuration::from_secs(2 * 3600),
    StdDuration::from_secs(5 * 3600),
    StdDuration::from_secs(10 * 3600),
    StdDuration::from_secs(10 * 3600),
];

/// How often the outbox is looked at without a deployment changing.
const POLL: StdDuration = StdDuration::from_secs(1);
/// How many due deliveries are taken at a time.
const BATCH: u64 = 50;
/// How long a taken delivery is left to its sender.
const LOCK: Duration = Duration::minutes(2);
/// How long a receiver has to answer.
const TIMEOUT: StdDuration = StdDuration::from_secs(15);
/// The least time between two messages to one Slack webhook.
pub const SLACK_GAP: StdDuration = StdDuration::from_secs(1);
/// The most of a receiver's answer kept in `last_answer`.
const MAX_ANSWER: usize = 300;

/// The fields of a deployment a webhook's body holds, as the API shows them.
const DEPLOYMENT: &str = "query($id: ID!) { deployment(id: $id) {
    id name number
    application { name repository }
    environment { name url }
    ref sha task runsTask description
    status phase message
    gate { kind waitingFor since until }
    review { verdict by at comment }
    createdBy autoDeploy createdAt startedAt finishedAt
    runner cancelRequested
    services { name image digest }
    restores { deployment { id name } }
    url
} }";

/// Sends the outbox until `shutdown` resolves.
pub async fn run(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    let mut events = state.events.subscribe();
    let sender = match Sender::new(state) {
        Ok(sender) => sender,
        Err(err) => {
            tracing::error!(?err, "cannot send notifications");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            drained = sender.drain() => if let Err(err) = drained {
                tracing::error!(?err, "sending notifications failed");
            },
            () = &mut shutdown => {
                // What was being sent goes again after the restart, with
                // the same id: hand it back rather than let its lock run out.
                sender.release().await;
                return;
            }
        }
        let changed = async {
            loop {
                match events.recv().await {
                    Ok(Event::Deployment(_) | Event::Queued(_)) | Err(RecvError::Lagged(_)) => {
                        return
                    }
                    Ok(_) => {}
                    Err(RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = changed => {}
            () = &mut shutdown => return,
        }
    }
}

struct Sender {
    state: AppState,
    http: reqwest::Client,
    schema: SlipwaySchema,
    /// When each Slack notification was last sent to.
    last_slack: Mutex<HashMap<i64, Instant>>,
    /// The deliveries this sender has taken and not yet recorded.
    taken: std::sync::Mutex<HashSet<i64>>,
}

impl Sender {
    fn new(state: AppState) -> ApiResult<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Slipway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::internal)?;
        Ok(Self {
            schema: graphql::own_schema(state.clone()),
            state,
            http,
            last_slack: Mutex::default(),
            taken: std::sync::Mutex::default(),
        })
    }

    /// Sends every delivery that is due, a batch at a time.
    async fn drain(&self) -> ApiResult<()> {
        loop {
            let due = self.due().await?;
            let full = due.len() as u64 == BATCH;
            if due.is_empty() {
                return Ok(());
            }
            let mut by_notification: Vec<(i64, Vec<delivery::Model>)> = Vec::new();
            for row in due {
                match by_notification
                    .iter_mut()
                    .find(|(id, _)| *id == row.notification_id)
                {
                    Some((_, rows)) => rows.push(row),
                    None => by_notification.push((row.notification_id, vec![row])),
                }
            }
            let sent = join_all(by_notification.into_iter().map(|(id, rows)| async move {
                let notification = super::notification(&self.state.db, id).await?;
                for row in rows {
                    if !self.send(&notification, row).await? {
                        // Gone (410): what it still owed is discarded.
                        break;
                    }
                }
                ApiResult::Ok(())
            }))
            .await;
            for result in sent {
                result?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Pending deliveries whose time has come, that no sender holds, and
    /// that no earlier pending delivery of the same deployment to the same
    /// notification precedes; oldest first.
    async fn due(&self) -> ApiResult<Vec<delivery::Model>> {
        let now = self.state.clock.now();
        let earlier = Alias::new("earlier");
        let before = Query::select()
            .expr(Expr::val(1))
            .from_as(delivery::Entity, earlier.clone())
            .and_where(
                Expr::col((earlier.clone(), delivery::Column::NotificationId))
                    .equals((delivery::Entity, delivery::Column::NotificationId)),
            )
            .and_where(
                Expr::col((earlier.clone(), delivery::Column::DeploymentId))
                    .equals((delivery::Entity, delivery::Column::DeploymentId)),
            )
            .and_where(
                Expr::col((earlier.clone(), delivery::Column::State))
                    .eq(Expr::value(DeliveryState::Pending)),
            )
            .and_where(
                Expr::col((earlier.clone(), delivery::Column::Id))
                    .lt(Expr::col((delivery::Entity, delivery::Column::Id))),
            )
            .to_owned();
        Ok(delivery::Entity::find()
            .filter(delivery::Column::State.eq(DeliveryState::Pending))
            .filter(delivery::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(delivery::Column::LockedUntil.is_null())
                    .add(delivery::Column::LockedUntil.lt(now)),
            )
            .filter(Expr::exists(before).not())
            .order_by_asc(delivery::Column::Id)
            .limit(BATCH)
            .all(&self.state.db)
            .await?)
    }

    /// Takes `row` for this sender; false when another took it first.
    async fn take(&self, row: &delivery::Model) -> ApiResult<bool> {
        let now = self.state.clock.now();
        let taken = delivery::Entity::update_many()
            .col_expr(delivery::Column::LockedUntil, Expr::value(now + LOCK))
            .filter(delivery::Column::Id.eq(row.id))
            .filter(delivery::Column::State.eq(DeliveryState::Pending))
            .filter(
                Condition::any()
                    .add(delivery::Column::LockedUntil.is_null())
                    .add(delivery::Column::LockedUntil.lt(now)),
            )
            .exec(&self.state.db)
            .await?;
        let taken = taken.rows_affected == 1;
        if taken {
            self.taken.lock().unwrap().insert(row.id);
        }
        Ok(taken)
    }

    /// Unlocks the deliveries this sender took and has not recorded, for
    /// the next sender to take at once.
    async fn release(&self) {
        let taken: Vec<i64> = self.taken.lock().unwrap().drain().collect();
        if taken.is_empty() {
            return;
        }
        let released = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::LockedUntil,
                Expr::value(None::<DateTime<Utc>>),
            )
            .filter(delivery::Column::Id.is_in(taken))
            .filter(delivery::Column::State.eq(DeliveryState::Pending))
            .exec(&self.state.db)
            .await;
        if let Err(err) = released {
            tracing::warn!(?err, "could not hand back the deliveries being sent");
        }
    }

    /// Sends `row` once; false when its notification is no longer sent to.
    async fn send(&self, notification: &Notification, row: delivery::Model) -> ApiResult<bool> {
        let n = &notification.model;
        if n.removed_at.is_some() || n.disabled_at.is_some() {
            let why = match &n.disabled_reason {
                Some(reason) if n.removed_at.is_none() => reason.clone(),
                _ => "the notification was removed".into(),
            };
            super::discard_pending(&self.state.db, n.id, &why).await?;
            return Ok(false);
        }
        if !self.take(&row).await? {
            return Ok(true);
        }
        let body = match &row.body {
            Some(body) => body.clone(),
            None => {
                let body = self.body(n, &row).await?;
                delivery::Entity::update_many()
                    .col_expr(delivery::Column::Body, Expr::value(body.clone()))
                    .filter(delivery::Column::Id.eq(row.id))
                    .exec(&self.state.db)
                    .await?;
                body
            }
        };
        let outcome = match n.kind {
            NotificationKind::Sentry => self.send_sentry(n, &body).await?,
            NotificationKind::Slack | NotificationKind::Webhook => {
                if n.kind == NotificationKind::Slack {
                    self.space_slack(n.id).await;
                }
                let mut request = self
                    .http
                    .post(&n.target)
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if n.kind == NotificationKind::Webhook {
                    let key = webhook::parse(n.secret.as_deref().unwrap_or_default())?;
                    let id = webhook::message_id(row.id);
                    let timestamp = Utc::now().timestamp();
                    request = request
                        .header("webhook-signature", key.sign(&id, timestamp, &body))
                        .header("webhook-id", id)
                        .header("webhook-timestamp", timestamp.to_string());
                }
                Outcome::of(request.body(body).send().await).await
            }
        };
        let now = self.state.clock.now();
        tracing::debug!(
            delivery = row.id,
            notification = n.id,
            target = %super::shown_target(&n.target),
            answer = %outcome.answer,
            "delivery attempted"
        );
        let recorded = self.record(n, &row, outcome, now).await;
        self.taken.lock().unwrap().remove(&row.id);
        recorded
    }

    /// Creates the release a Sentry delivery holds, then its deploy if it
    /// has one; the outcome of the first call that failed, or of the last.
    async fn send_sentry(&self, n: &notification::Model, body: &str) -> ApiResult<Outcome> {
        let calls: Value = serde_json::from_str(body).map_err(ApiError::internal)?;
        if let Some(skip) = calls["skip"].as_str() {
            return Ok(Outcome {
                verdict: Verdict::Delivered,
                answer: format!("nothing sent: {skip}"),
            });
        }
        let project = sentry::Project::parse(&n.target)?;
        let token = n.secret.clone().or_else(|| {
            self.state
                .settings
                .sentry_token
                .as_ref()
                .map(|t| t.expose().to_owned())
        });
        let Some(token) = token else {
            return Ok(Outcome {
                verdict: Verdict::Retry(None),
                answer: "no Sentry token: start the API with --sentry-token-file".into(),
            });
        };
        let release = &calls["release"];
        let version = release["version"].as_str().unwrap_or_default();
        let answer = self
            .http
            .post(project.releases_url())
            .bearer_auth(&token)
            .json(release)
            .send()
            .await;
        let made = Outcome::of(answer).await;
        if !matches!(made.verdict, Verdict::Delivered) || calls["deploy"].is_null() {
            return Ok(made);
        }
        let answer = self
            .http
            .post(project.deploys_url(version))
            .bearer_auth(&token)
            .json(&calls["deploy"])
            .send()
            .await;
        Ok(Outcome::of(answer).await)
    }

    /// Waits until a message to the Slack notification `id` keeps to
    /// Slack's one per second, and counts this one.
    async fn space_slack(&self, id: i64) {
        let mut last = self.last_slack.lock().await;
        if let Some(at) = last.get(&id) {
            tokio::time::sleep_until(*at + SLACK_GAP).await;
        }
        last.insert(id, Instant::now());
    }

    /// The body of `row`: Slack's blocks, or a webhook's event with the
    /// deployment as the API shows it.
    async fn body(&self, n: &notification::Model, row: &delivery::Model) -> ApiResult<String> {
        Ok(match n.kind {
            NotificationKind::Slack => {
                let view = view::get(&self.state.db, row.deployment_id).await?;
                let public_url = self.state.settings.public_url.as_deref();
                let mut message = slack::message(&view, row.event, public_url);
                if n.deployment_id.is_some() {
                    // The answer to a chat command, for the channel to see.
                    message["response_type"] = json!("in_channel");
                }
                message.to_string()
            }
            NotificationKind::Sentry => {
                let view = view::get(&self.state.db, row.deployment_id).await?;
                let project = sentry::Project::parse(&n.target)?;
                let public_url = self.state.settings.public_url.as_deref();
                sentry::calls(&self.state.db, &project, &view, row.event, public_url)
                    .await?
                    .to_string()
            }
            NotificationKind::Webhook => json!({
                "type": row.event.webhook_type(),
                "timestamp": row.occurred_at,
                "data": {"deployment": self.deployment_as_shown(row.deployment_id).await?},
            })
            .to_string(),
        })
    }

    /// The deployment `id` as a viewer reads it from the API.
    async fn deployment_as_shown(&self, id: i64) -> ApiResult<Value> {
        let now = self.state.clock.now();
        let claims = Claims {
            sub: "slipway-notifications".into(),
            role: Role::Viewer,
            exp: (now + Duration::hours(1)).timestamp(),
            iat: now.timestamp(),
        };
        let request = Request::new(DEPLOYMENT)
            .variables(Variables::from_json(json!({ "id": id.to_string() })))
            .data(Auth::Valid(claims));
        let response = self.schema.execute(request).await;
        if let Some(err) = response.errors.first() {
            return Err(ApiError::internal(format!(
                "reading deployment {id} for a webhook: {}",
                err.message
            )));
        }
        let data = response.data.into_json().map_err(ApiError::internal)?;
        Ok(data["deployment"].clone())
    }

    /// Records how an attempt went; false when the receiver is gone.
    async fn record(
        &self,
        n: &notification::Model,
        row: &delivery::Model,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let attempts = row.attempts + 1;
        let mut update = delivery::Entity::update_many()
            .col_expr(delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(delivery::Column::LastAttemptAt, Expr::value(now))
            .col_expr(
                delivery::Column::LastAnswer,
                Expr::value(outcome.answer.clone()),
            )
            .col_expr(
                delivery::Column::LockedUntil,
                Expr::value(None::<DateTime<Utc>>),
            );
        match outcome.verdict {
            Verdict::Delivered => {
                update = update
                    .col_expr(
                        delivery::Column::State,
                        Expr::value(DeliveryState::Delivered),
                    )
                    .col_expr(delivery::Column::DeliveredAt, Expr::value(now));
            }
            Verdict::Gone => {
                let reason = format!("the receiver answered {}: it is gone", outcome.answer);
                notification::Entity::update_many()
                    .col_expr(notification::Column::DisabledAt, Expr::value(now))
                    .col_expr(
                        notification::Column::DisabledReason,
                        Expr::value(reason.clone()),
                    )
                    .filter(notification::Column::Id.eq(n.id))
                    .exec(&self.state.db)
                    .await?;
                tracing::warn!(
                    notification = n.id,
                    target = %super::shown_target(&n.target),
                    "the receiver is gone (410): notification disabled"
                );
                update = update.col_expr(
                    delivery::Column::State,
                    Expr::value(DeliveryState::Discarded),
                );
                update
                    .filter(delivery::Column::Id.eq(row.id))
                    .exec(&self.state.db)
                    .await?;
                super::discard_pending(&self.state.db, n.id, &reason).await?;
                return Ok(false);
            }
            Verdict::Retry(asked) => match RETRY_AFTER.get(row.attempts as usize) {
                Some(wait) => {
                    let wait = asked.map_or(*wait, |asked| asked.max(*wait));
                    let wait = Duration::from_std(wait).unwrap_or(Duration::hours(10));
                    update =
                        update.col_expr(delivery::Column::NextAttemptAt, Expr::value(now + wait));
                }
                None => {
                    tracing::warn!(
                        delivery = row.id,
                        notification = n.id,
                        target = %super::shown_target(&n.target),
                        answer = %outcome.answer,
                        "delivery failed after every attempt"
                    );
                    update = update
                        .col_expr(delivery::Column::State, Expr::value(DeliveryState::Failed));
                }
            },
        }
        update
            .filter(delivery::Column::Id.eq(row.id))
            .filter(delivery::Column::State.eq(DeliveryState::Pending))
            .exec(&self.state.db)
            .await?;
        Ok(true)
    }
}

/// What an attempt came to.
struct Outcome {
    verdict: Verdict,
    /// `HTTP 500: <the start of the body>`, or why there was no answer.
    answer: String,
}

enum Verdict {
    Delivered,
    /// `410 Gone`.
    Gone,
    /// Anything else; a `429` may say how long to wait.
    Retry(Option<StdDuration>),
}

impl Outcome {
    async fn of(answer: reqwest::Result<reqwest::Response>) -> Self {
        let response = match answer {
            Ok(response) => response,
            Err(err) => {
                // Without the URL: it may hold the target's secret.
                let err = err.without_url();
                let answer = match std::error::Error::source(&err) {
                    Some(source) => format!("{err}: {source}"),
                    None => err.to_string(),
                };
                return Outcome {
                    verdict: Verdict::Retry(None),
                    answer: cut(answer),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(StdDuration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let answer = match text.trim() {
            "" => format!("HTTP {}", status.as_u16()),
            text => cut(format!("HTTP {}: {text}", status.as_u16())),
        };
        let verdict = if status.is_success() {
            Verdict::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Verdict::Gone
        } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Verdict::Retry(retry_after)
        } else {
            Verdict::Retry(None)
        };
        Outcome { verdict, answer }
    }
}

fn cut(text: String) -> String {
    match text.char_indices().nth(MAX_ANSWER) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

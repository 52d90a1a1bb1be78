use std::sync::Arc;

use async_graphql::{Context, Subscription, ID};
use futures_util::{Stream, StreamExt};
use sea_orm::DatabaseConnection;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::types::{deployment_id, state, Deployment, LogLine, Plan};
use crate::auth::{caller, roles, RoleGuard};
use crate::error::ApiError;
use crate::events::{DeploymentChanged, Event};
use crate::plans::{self, PlanStatus};
use crate::{applications, runners};
use crate::{bus, logs};

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every deployment that becomes claimable, as it is then. Runners also read
    /// `claimableDeployments` after (re)connecting, for what they missed.
    /// A subscriber that falls behind gets a `LAGGED` error and the
    /// subscription completes: it subscribes again and reads the list.
    ///
    /// A runner hears only of environments whose `runnerLabels` it has
    /// (as it registered them before subscribing), and is shown as
    /// connected while the subscription is open.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn deployment_queued(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Deployment>>> {
        let runner = caller(ctx).map_err(ApiError::into_graphql)?.sub.clone();
        let state = state(ctx);
        let has = runners::labels_of(state, &runner)
            .await
            .map_err(ApiError::into_graphql)?;
        let presence = Arc::new(runners::keep_present(state, &runner));
        let db = state.db.clone();
        Ok(events(ctx).filter_map(move |event| {
            let (db, has, _presence) = (db.clone(), has.clone(), presence.clone());
            async move {
                match event {
                    Ok(Event::Queued(changed)) => resolve(&db, &changed)
                        .await
                        .filter(|d| runners::may_take(&has, &d.0))
                        .map(Ok),
                    Ok(_) => None,
                    Err(err) => Some(Err(err.into_graphql())),
                }
            }
        }))
    }

    /// Every plan that is requested, as it is then. Runners also read
    /// `requestedPlans` after (re)connecting, for what they missed; a
    /// subscriber that falls behind gets `LAGGED` and the subscription completes.
    /// A runner hears only of environments whose `runnerLabels` it has.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn plan_requested(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Plan>>> {
        let runner = caller(ctx).map_err(ApiError::into_graphql)?.sub.clone();
        let has = runners::labels_of(state(ctx), &runner)
            .await
            .map_err(ApiError::into_graphql)?;
        let db = state(ctx).db.clone();
        Ok(events(ctx).filter_map(move |event| {
            let (db, has) = (db.clone(), has.clone());
            async move {
                match event {
                    Ok(Event::Plan(changed)) if changed.status == PlanStatus::Queued => {
                        match plans::get(&db, changed.plan_id).await {
                            // Claimed already by the time it was read: nothing to take.
                            Ok(view)
                                if view.plan.status == PlanStatus::Queued
                                    && runners::serves(
                                        &has,
                                        &runners::required(&view.environment),
                                    ) =>
                            {
                                Some(Ok(Plan(view)))
                            }
                            Ok(_) => None,
                            Err(err) => {
                                tracing::warn!(
                                    plan = changed.plan_id,
                                    code = err.code(),
                                    "an event's plan could not be read; the event is skipped"
                                );
                                None
                            }
                        }
                    }
                    Ok(_) => None,
                    Err(err) => Some(Err(err.into_graphql())),
                }
            }
        }))
    }

    /// Every change of the deployments of `application`, or of the
    /// deployment `id` (both optional): its status, phase, message, gate,
    /// convergence.
    ///
    /// On PostgreSQL every change has its number in the event log
    /// (`eventId`), and API replicas share the log: with `afterEvent`, the
    /// changes after that one come first, then live ones, so a client that
    /// lost its connection subscribes again on any replica and misses
    /// nothing. A subscriber that falls behind catches up from the log.
    /// Events are kept a day: an `afterEvent` older than the log is refused,
    /// saying from which event on it has them.
    ///
    /// On SQLite the events are this process's alone: `afterEvent` is
    /// refused, and a subscriber that falls behind gets a `LAGGED` error and
    /// the subscription completes.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployment_events(
        &self,
        ctx: &Context<'_>,
        application: Option<String>,
        id: Option<ID>,
        after_event: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Deployment>>> {
        let id = id
            .as_ref()
            .map(deployment_id)
            .transpose()
            .map_err(ApiError::into_graphql)?;
        let after = after_event
            .as_ref()
            .map(event_id)
            .transpose()
            .map_err(ApiError::into_graphql)?;
        let state = state(ctx);
        let db = state.db.clone();
        let application = match application {
            None => Applications::All,
            Some(name) => match applications::find(&db, &name).await {
                Ok(Some(app)) => Applications::Id(app.id),
                Ok(None) => Applications::Named(name),
                Err(err) => return Err(err.into_graphql()),
            },
        };
        let changes = if state.events.is_shared() {
            let only = bus::Only {
                application_id: match application {
                    Applications::Id(app) => Some(app),
                    Applications::All | Applications::Named(_) => None,
                },
                deployment_id: id,
            };
            if let Some(after) = after {
                let pruned = bus::pruned_through(&state.db)
                    .await
                    .map_err(ApiError::into_graphql)?;
                if after < pruned {
                    return Err(ApiError::BadInput(format!(
                        "the event log no longer has the events after {after}: it keeps a \
                         day, and every event up to {pruned} was pruned. Read the current \
                         state, then subscribe again with `afterEvent` {pruned} or later"
                    ))
                    .into_graphql());
                }
            }
            bus::deployment_events(state, after, only).boxed()
        } else if after.is_some() {
            return Err(ApiError::BadInput(
                "`afterEvent` needs the API on PostgreSQL, whose event log keeps events; on \
                 SQLite they live in this process only: read the deployments to catch up and \
                 subscribe without it"
                    .into(),
            )
            .into_graphql());
        } else {
            events(ctx)
                .filter_map(|event| {
                    std::future::ready(match event {
                        Ok(Event::Deployment(changed)) => Some(Ok(changed)),
                        Ok(_) => None,
                        Err(err) => Some(Err(err)),
                    })
                })
                .boxed()
        };
        Ok(changes.filter_map(move |changed| {
            let (db, application) = (db.clone(), application.clone());
            async move {
                let changed = match changed {
                    Ok(changed) => changed,
                    Err(err) => return Some(Err(err.into_graphql())),
                };
                if id.is_some_and(|id| id != changed.deployment_id) {
                    return None;
                }
                let deployment = match application {
                    Applications::Id(app) if app != changed.application_id => return None,
                    Applications::All | Applications::Id(_) => resolve(&db, &changed).await?,
                    Applications::Named(name) => resolve(&db, &changed)
                        .await
                        .filter(|d| d.0.application.name == name)?,
                };
                Some(Ok(deployment))
            }
        }))
    }

    /// The stored log lines after `afterSeq`, then live ones, each exactly once
    /// and in order. Completes when the deployment has finished.
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployment_logs(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 0)] after_seq: i64,
    ) -> async_graphql::Result<impl Stream<Item = LogLine>> {
        let follow = async { logs::follow(state(ctx), deployment_id(&id)?, after_seq).await };
        let lines = follow.await.map_err(ApiError::into_graphql)?;
        Ok(lines.map(LogLine::from))
    }
}

/// The number of an event of the log, as `eventId` gives it.
fn event_id(id: &ID) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::BadInput(format!("`afterEvent` `{}` is not an event id", id.0)))
}

/// Which applications' deployments a subscriber wants.
#[derive(Clone)]
enum Applications {
    All,
    Id(i64),
    /// One that did not exist when the subscription started, by its name.
    Named(String),
}

/// The deployment an event is about, as the event carries it or as read now.
async fn resolve(db: &DatabaseConnection, changed: &DeploymentChanged) -> Option<Deployment> {
    match changed.view(db).await {
        Ok(view) => Some(Deployment(view, changed.event)),
        Err(err) => {
            tracing::warn!(
                deployment = changed.deployment_id,
                code = err.code(),
                "an event's deployment could not be read; the event is skipped"
            );
            None
        }
    }
}

/// The live events. A subscriber too slow to keep up gets, instead of the
/// events it missed, one [`ApiError::Lagged`], and then nothing: skipping
/// events silently would let it miss a queued deployment or a final state.
fn events(ctx: &Context<'_>) -> impl Stream<Item = Result<Event, ApiError>> {
    BroadcastStream::new(state(ctx).events.subscribe())
        .map(|event| {
            event.map_err(|BroadcastStreamRecvError::Lagged(missed)| {
                tracing::warn!(missed, "a subscriber fell behind; ending its subscription");
                ApiError::Lagged(format!(
                    "this subscription fell behind and missed {missed} events; subscribe \
                     again and read the current state"
                ))
            })
        })
        .scan(false, |ended, event| {
            let next = (!*ended).then(|| {
                *ended = event.is_err();
                event
            });
            std::future::ready(next)
        })
}

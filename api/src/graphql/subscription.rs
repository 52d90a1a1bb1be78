use std::sync::Arc;

use async_graphql::{Context, Subscription, ID};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::types::{deployment_id, state, Deployment, LogLine};
use crate::auth::{roles, RoleGuard};
use crate::error::ApiError;
use crate::events::Event;
use crate::logs;

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every deployment that becomes claimable, as it is then. Runners also read
    /// `claimableDeployments` after (re)connecting, for what they missed.
    #[graphql(guard = "RoleGuard::new(roles::RUNNER)")]
    async fn deployment_queued(&self, ctx: &Context<'_>) -> impl Stream<Item = Deployment> {
        events(ctx).filter_map(|event| async move {
            match event {
                Event::Queued(view) => Some(Deployment(view)),
                _ => None,
            }
        })
    }

    /// Every change of state, phase or message of the deployments of
    /// `application`, or of the deployment `id` (both optional).
    #[graphql(guard = "RoleGuard::new(roles::READ)")]
    async fn deployment_events(
        &self,
        ctx: &Context<'_>,
        application: Option<String>,
        id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = Deployment>> {
        let id = id
            .as_ref()
            .map(deployment_id)
            .transpose()
            .map_err(ApiError::into_graphql)?;
        Ok(events(ctx).filter_map(move |event| {
            let application = application.clone();
            async move {
                let Event::Deployment(view) = event else {
                    return None;
                };
                let wanted = application
                    .as_ref()
                    .is_none_or(|name| *name == view.application.name)
                    && id.is_none_or(|id| id == view.deployment.id);
                wanted.then(|| Deployment(Arc::clone(&view)))
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

/// The live events, skipping over any a slow subscriber missed.
fn events(ctx: &Context<'_>) -> impl Stream<Item = Event> {
    BroadcastStream::new(state(ctx).events.subscribe()).filter_map(|event| async move {
        match event {
            Ok(event) => Some(event),
            Err(err) => {
                tracing::warn!(%err, "a subscriber fell behind and missed events");
                None
            }
        }
    })
}

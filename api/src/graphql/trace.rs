//! One tracing span per GraphQL query or mutation, so what a resolver logs
//! says which operation it belonged to (the HTTP layer adds one per request
//! around it). Spans per field would cost more than they tell: there are
//! none. Subscriptions log in their socket's span.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::Response;
use tracing::Instrument as _;

/// The extension that makes the spans.
pub(super) struct Traced;

impl ExtensionFactory for Traced {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Traced)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Traced {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let span = tracing::info_span!("graphql", operation = operation_name.unwrap_or("-"));
        next.run(ctx, operation_name).instrument(span).await
    }
}

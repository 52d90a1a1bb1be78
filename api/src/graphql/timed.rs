//! How long each query and mutation takes to execute, by operation type,
//! into [`Metrics`] (`slipway_graphql_request_duration_seconds`). The type
//! is the label, not the operation's name: names are chosen by clients, and
//! a label per name would let any client grow the metrics without bound.
//! Subscriptions are not timed: they last as long as their socket.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Variables};

use crate::metrics::Metrics;

/// The extension, holding where the timings go.
pub(super) struct Timed(pub(super) Metrics);

impl ExtensionFactory for Timed {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TimedOne {
            metrics: self.0.clone(),
            operation: Mutex::default(),
            kind: Mutex::default(),
        })
    }
}

/// [`Timed`] for one request.
struct TimedOne {
    metrics: Metrics,
    /// The operation the request names.
    operation: Mutex<Option<String>>,
    /// The type of the operation it runs, once parsed.
    kind: Mutex<Option<&'static str>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for TimedOne {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut operation) = self.operation.lock() {
            operation.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let name = self.operation.lock().ok().and_then(|name| name.clone());
        let kind = super::operation_of(&document, name.as_deref()).and_then(|operation| {
            match operation.node.ty {
                OperationType::Query => Some("query"),
                OperationType::Mutation => Some("mutation"),
                OperationType::Subscription => None,
            }
        });
        if let Ok(mut slot) = self.kind.lock() {
            *slot = kind;
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        if let Some(kind) = self.kind.lock().ok().and_then(|kind| *kind) {
            self.metrics.graphql_executed(kind, started.elapsed());
        }
        response
    }
}

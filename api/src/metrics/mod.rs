//! Prometheus metrics, in the text exposition format, on a listener of their
//! own (`--metrics-listen`, off unless given) so they are never served on the
//! API's public port by accident.
//!
//! What reflects the database — deployments by final status and their
//! durations, the queue and the deployment in progress of each environment,
//! its release, the runners' last heartbeats, the notification outbox — is
//! read from the database at each scrape ([`snapshot`]): every replica
//! reports the same truth, and nothing is lost across a restart. What only
//! this process knows, how long GraphQL operations take to execute, is kept
//! in [`Metrics`], which the schema's `Timed` extension feeds.
//!
//! No label holds a secret: applications, environments and runners appear
//! by name, releases by commit.

pub mod snapshot;

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::error::ApiResult;
use crate::state::AppState;

/// Upper bounds (seconds) of the buckets of GraphQL execution times.
const GRAPHQL_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The labels of a GraphQL timing: `operation` is `query` or `mutation`.
type OperationLabels = [(&'static str, &'static str); 1];

/// What this process measures itself, shared by every handler through
/// [`AppState`]; cheap to clone (the figures are shared, not copied).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// How long each query and mutation took to execute, by operation type.
    graphql: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            graphql: Family::new_with_constructor(|| Histogram::new(GRAPHQL_BUCKETS)),
        }
    }
}

impl Metrics {
    /// Records that an operation of `kind` (`query`, `mutation`) took `took`
    /// to execute.
    pub fn graphql_executed(&self, kind: &'static str, took: Duration) {
        self.graphql
            .get_or_create(&[("operation", kind)])
            .observe(took.as_secs_f64());
    }

    /// Registers this process's own metrics in `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "slipway_graphql_request_duration_seconds",
            "How long GraphQL queries and mutations took to execute, by operation type \
             (subscriptions last as long as their socket and are not timed)",
            self.graphql.clone(),
        );
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, with the
/// API's connection timeouts.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let timeouts = state.settings.timeouts.clone();
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    crate::http::serve_connections(listener, router, &timeouts, shutdown).await
}

/// Every metric as of now, in the Prometheus text format.
pub async fn render(state: &AppState) -> ApiResult<String> {
    let snapshot = snapshot::read(state).await?;
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).map_err(crate::error::ApiError::internal)?;
    Ok(text)
}

async fn scrape(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        // The cause is in the log; a scrape that fails is a gap, not a zero.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics could not be read from the database; the cause is in the API's log\n",
        )
            .into_response(),
    }
}

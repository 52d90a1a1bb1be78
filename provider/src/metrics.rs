//! Prometheus metrics of the provider, in the text exposition format, on a
//! listener of their own (`--metrics-listen`, off unless given) so they are
//! never served where GitHub and GitLab send hooks:
//! `slipway_hook_duration_seconds{source,status}`, how long each hook took
//! to be answered, from its head to the answer, by hook source (`github`,
//! `gitlab`, `generic`) and HTTP status. No label holds a secret.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::http::Timeouts;

/// Upper bounds (seconds) of the buckets of hook answer times: GitHub gives
/// up on a hook after 10 s.
const HOOK_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of a hook's timing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    /// The hook source's name.
    source: &'static str,
    /// The HTTP status of the answer.
    status: u16,
}

/// What the provider measures; cheap to clone (the figures are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    hooks: Family<HookLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            hooks: Family::new_with_constructor(|| Histogram::new(HOOK_BUCKETS)),
        }
    }
}

impl Metrics {
    /// Records that a hook of `source` was answered `status` after `took`.
    pub(crate) fn hook_answered(&self, source: &'static str, status: StatusCode, took: Duration) {
        let labels = HookLabels {
            source,
            status: status.as_u16(),
        };
        self.hooks
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register(
            "slipway_hook_duration_seconds",
            "How long hooks took to be answered, from their head to the answer, by source and \
             HTTP status",
            self.hooks.clone(),
        );
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).expect("writing to a String does not fail");
        text
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`, with the hooks'
/// connection timeouts.
pub(crate) async fn serve(
    metrics: Metrics,
    listener: TcpListener,
    timeouts: &Timeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    crate::http::serve(listener, router, timeouts, shutdown).await
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        metrics.render(),
    )
}

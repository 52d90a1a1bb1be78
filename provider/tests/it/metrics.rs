//! The provider's metrics: how long each hook took to be answered, by source
//! and status, scraped from the metrics listener and parsed by Prometheus's
//! own Python parser.

use axum::http::StatusCode;
use clap::Parser as _;
use serde_json::json;
use slipway_provider::Config;

use crate::support::*;

/// The samples of the hook histogram named `name` (`_count`, `_sum`) for
/// `source` and `status`.
fn hooks(
    scrape: &slipway_testkit::prometheus::Scrape,
    name: &str,
    source: &str,
    status: &str,
) -> Option<f64> {
    scrape.value(name, &[("source", source), ("status", status)])
}

#[tokio::test]
async fn each_hook_answer_is_timed_by_source_and_status() {
    let mut world = World::start().await;
    world.shop().await;
    let mut config = world.stop_provider().await;
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    world.start_provider(config).await;
    let provider = world.provider();

    let before = provider.scrape().await;
    assert_eq!(
        before
            .find("slipway_hook_duration_seconds_count", &[])
            .count(),
        0
    );

    let body = json!({"application": "shop", "environment": "qa", "ref": "main"});
    let (status, answer) = provider.generic(Some(GENERIC_TOKEN), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = provider.generic(Some("wrong"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = provider.generic(Some("wrong"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = provider
        .github(
            "ping",
            "delivery-1",
            &json!({"zen": "Keep it logically awesome."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let scrape = provider.scrape().await;
    assert_eq!(
        scrape.kind("slipway_hook_duration_seconds"),
        Some("histogram")
    );
    let count = "slipway_hook_duration_seconds_count";
    assert_eq!(hooks(&scrape, count, "generic", "200"), Some(1.0));
    assert_eq!(hooks(&scrape, count, "generic", "401"), Some(2.0));
    assert_eq!(hooks(&scrape, count, "github", "200"), Some(1.0));
    assert_eq!(hooks(&scrape, count, "gitlab", "200"), None);
    let sum = hooks(
        &scrape,
        "slipway_hook_duration_seconds_sum",
        "generic",
        "200",
    )
    .unwrap();
    assert!(sum > 0.0, "creating a deployment takes some time: {sum}");
    let infinite = scrape
        .find(
            "slipway_hook_duration_seconds_bucket",
            &[("source", "generic"), ("status", "401"), ("le", "+Inf")],
        )
        .map(|sample| sample.value)
        .collect::<Vec<_>>();
    assert_eq!(infinite, [2.0]);
    let sources: Vec<_> = scrape
        .find(count, &[])
        .filter_map(|sample| sample.label("source"))
        .collect();
    assert!(
        sources
            .iter()
            .all(|source| ["github", "generic"].contains(source)),
        "{sources:?}"
    );
}

#[tokio::test]
async fn metrics_are_off_unless_a_listener_is_given() {
    let world = World::start().await;
    assert!(world.provider().metrics_addr.is_none());
    let response = reqwest::get(world.provider().url("/metrics"))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the hooks' port serves no metrics"
    );
    let args = ["slipway-provider", "--api-url", "http://127.0.0.1:8700"];
    assert_eq!(Config::try_parse_from(args).unwrap().metrics_listen, None);
    let config =
        Config::try_parse_from([&args[..], &["--metrics-listen", "127.0.0.1:9701"]].concat())
            .unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9701".parse().unwrap())
    );
}

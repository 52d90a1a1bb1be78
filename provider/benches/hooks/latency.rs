//! `latency`: hooks one after another; time from sending to the 2xx answer
//! (the API has stored the deployment by then), p50 and p99.

use std::time::Duration;

use anyhow::Result;
use slipway_testkit::bench::{ms, percentile, Row};

use crate::Bench;

/// Hooks sent in a full run.
pub(crate) const HOOKS: usize = 1_000;
const P99_TARGET: Duration = Duration::from_millis(25);

pub(crate) async fn bench(bench: &Bench, count: usize) -> Result<Vec<Row>> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        times.push(bench.hook().await?);
    }
    times.sort();
    let (p50, p99, max) = (
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default(),
    );
    println!("\n== latency ({count} hooks, one at a time)");
    println!("   p50 {}   p99 {}   max {}", ms(p50), ms(p99), ms(max));
    Ok(vec![
        Row::info("latency", "time to 2xx, p50", ms(p50)),
        Row::target(
            "latency",
            "time to 2xx, p99",
            ms(p99),
            "< 25 ms",
            p99 < P99_TARGET,
        ),
    ])
}

//! `throughput`: hooks from 16 concurrent senders; hooks per second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use slipway_testkit::bench::{ms, percentile, Row};

use crate::Bench;

/// Hooks sent in a full run.
pub(crate) const HOOKS: usize = 4_000;
const SENDERS: usize = 16;
const RATE_TARGET: f64 = 300.0;

pub(crate) async fn bench(bench: &Arc<Bench>, count: usize) -> Result<Vec<Row>> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let bench = bench.clone();
        let next = next.clone();
        senders.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                times.push(bench.hook().await?);
            }
            anyhow::Ok(times)
        }))
    }
    let mut times = Vec::with_capacity(count);
    for sender in senders {
        times.extend(sender.await??);
    }
    let elapsed = started.elapsed();
    times.sort();
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("\n== throughput ({count} hooks, {SENDERS} concurrent senders)");
    println!(
        "   {rate:.0} hooks/s over {:.2} s   p50 {}   p99 {}",
        elapsed.as_secs_f64(),
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99))
    );
    Ok(vec![Row::target(
        "throughput",
        format!("hooks/s, {SENDERS} senders"),
        format!("{rate:.0}"),
        "≥ 300",
        rate >= RATE_TARGET,
    )])
}

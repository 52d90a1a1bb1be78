//! `Environment.dora`: the delivery figures of [`crate::dora`] as GraphQL.

use async_graphql::Object;
use chrono::{DateTime, Utc};

/// How an environment delivered over a window of days: deploy frequency,
/// change failure rate and time to restore. Counted are rollouts (not tasks
/// run alone) that ended SUCCEEDED or FAILED in the window.
pub(super) struct Dora(pub(super) crate::dora::Dora);

#[Object]
impl Dora {
    /// Where the window begins: `days` before `until`.
    async fn since(&self) -> DateTime<Utc> {
        self.0.since
    }

    /// Where the window ends: now.
    async fn until(&self) -> DateTime<Utc> {
        self.0.until
    }

    /// How many days the window spans.
    async fn days(&self) -> i64 {
        self.0.days
    }

    /// Rollouts that ended SUCCEEDED or FAILED in the window.
    async fn deployments(&self) -> u64 {
        self.0.deployments()
    }

    /// Of those, the ones that succeeded.
    async fn succeeded(&self) -> u64 {
        self.0.succeeded
    }

    /// Of those, the ones that failed.
    async fn failed(&self) -> u64 {
        self.0.failed
    }

    /// `deployments` per day of the window.
    async fn deploys_per_day(&self) -> f64 {
        self.0.deploys_per_day()
    }

    /// `failed / deployments`; null when there were no deployments.
    async fn change_failure_rate(&self) -> Option<f64> {
        self.0.change_failure_rate()
    }

    /// How many of the window's failures the environment has recovered
    /// from: a later rollout of it succeeded.
    async fn restored(&self) -> usize {
        self.0.restore_times.len()
    }

    /// The mean, over the window's restored failures, of the time from the
    /// failure's end to the end of the next rollout that succeeded, in
    /// seconds; null when none has been restored.
    async fn mean_time_to_restore_seconds(&self) -> Option<f64> {
        self.0.mean_time_to_restore_seconds()
    }
}

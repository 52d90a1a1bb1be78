//! The metrics that reflect the database, read at each scrape ([`read`]) and
//! encoded as a [`Collector`]:
//!
//! - `slipway_deployments_total{application,environment,status}`: the
//!   deployments that reached a final status (SUCCEEDED, FAILED, CANCELLED);
//! - `slipway_deployment_duration_seconds{application,environment,status}`:
//!   a histogram of `finished_at - started_at` of those that started, its
//!   buckets counted by the database ([`DURATION_BUCKETS`]);
//! - `slipway_deployments_queued{application,environment}` and
//!   `slipway_deployments_in_progress{application,environment}`, for every
//!   environment (zero included);
//! - `slipway_release_info{application,environment,sha} 1`: the commit of
//!   each environment's release (`deployments::current_release`);
//! - `slipway_environment_drift{application,environment}`: how many ways
//!   what runs differs from the release (`Environment.nodes.drift`; 0 is
//!   consistent), for every environment a runner has looked at;
//! - `slipway_environment_git_drift{application,environment}`: how many
//!   services differ from the release's commit (`Environment.drift`), for
//!   every environment checked;
//! - `slipway_runner_last_heartbeat_age_seconds{runner}`: how long ago each
//!   runner was last heard from;
//! - `slipway_notification_deliveries{state}`: the outbox's rows by state,
//!   and `slipway_notification_delivery_failures_total`: the attempts that
//!   did not deliver (every attempt but the one that delivered a row).

use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect,
};

use crate::db::entities::delivery::DeliveryState;
use crate::db::entities::deployment::DeploymentStatus;
use crate::db::entities::{application, delivery, deployment, environment, runner};
use crate::deployments;
use crate::error::ApiResult;
use crate::state::AppState;

/// Upper bounds (seconds) of the buckets of deployment durations: 10 s,
/// 30 s, 1, 2, 5, 10, 20 and 30 min, 1 h.
pub const DURATION_BUCKETS: [f64; 9] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// The statuses a deployment ends in.
const FINAL: [DeploymentStatus; 3] = [
    DeploymentStatus::Succeeded,
    DeploymentStatus::Failed,
    DeploymentStatus::Cancelled,
];

/// Every state of a delivery, so each is reported (zero included).
const DELIVERY_STATES: [DeliveryState; 4] = [
    DeliveryState::Pending,
    DeliveryState::Delivered,
    DeliveryState::Failed,
    DeliveryState::Discarded,
];

/// What the database holds, as of one scrape.
#[derive(Debug)]
pub struct Snapshot {
    environments: Vec<EnvironmentNow>,
    finished: Vec<Finished>,
    /// Each runner's name and the seconds since it was last heard from.
    heartbeats: Vec<(String, f64)>,
    outbox: Outbox,
}

/// The notification outbox.
#[derive(Debug)]
struct Outbox {
    /// How many deliveries are in each state.
    states: Vec<(&'static str, u64)>,
    /// Attempts that did not deliver.
    failures: u64,
}

/// One environment as it is now.
#[derive(Debug)]
struct EnvironmentNow {
    application: String,
    environment: String,
    queued: u64,
    in_progress: u64,
    /// Its release's commit, when it has a release whose commit is known.
    release_sha: Option<String>,
    /// How many ways what runs differs from the release, once a runner looked.
    drift: Option<u64>,
    /// How many services differ from the release's commit, once checked.
    git_drift: Option<u64>,
}

/// A gauge of every environment: its name, its help and what it reads.
type EnvironmentGauge = (&'static str, &'static str, fn(&EnvironmentNow) -> u64);

/// A gauge of the environments that have its value (those a runner looked at).
type OptionalEnvironmentGauge = (
    &'static str,
    &'static str,
    fn(&EnvironmentNow) -> Option<u64>,
);

/// The finished deployments of one environment with one final status.
#[derive(Debug)]
struct Finished {
    application: String,
    environment: String,
    status: &'static str,
    /// All of them, started or not (one cancelled while queued never started).
    total: u64,
    /// Of those that started, how many took at most each bound of
    /// [`DURATION_BUCKETS`] (and more than the one before), and how many
    /// took longer than the last.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Their durations added up, in seconds.
    seconds: f64,
}

impl Finished {
    /// How many of them started (and so have a duration).
    fn timed(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Reads the snapshot from the database.
pub async fn read(state: &AppState) -> ApiResult<Snapshot> {
    let db = &state.db;
    let applications: HashMap<i64, String> = application::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|app| (app.id, app.name))
        .collect();
    let environments = environment::Entity::find().all(db).await?;
    let names: HashMap<i64, (String, String)> = environments
        .iter()
        .map(|env| {
            let application = applications
                .get(&env.application_id)
                .cloned()
                .unwrap_or_default();
            (env.id, (application, env.name.clone()))
        })
        .collect();
    let now = state.clock.now();
    Ok(Snapshot {
        environments: environments_now(db, &environments, &names).await?,
        finished: finished(db, &names).await?,
        heartbeats: runner::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|r| {
                let age = (now - r.last_seen_at).num_milliseconds() as f64 / 1000.0;
                (r.name, age.max(0.0))
            })
            .collect(),
        outbox: outbox(db).await?,
    })
}

/// Queue, deployment in progress and release of every environment.
async fn environments_now(
    db: &impl ConnectionTrait,
    environments: &[environment::Model],
    names: &HashMap<i64, (String, String)>,
) -> ApiResult<Vec<EnvironmentNow>> {
    let counts: HashMap<(i64, &str), i64> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::EnvironmentId)
        .column(deployment::Column::Status)
        .column_as(deployment::Column::Id.count(), "n")
        .filter(
            deployment::Column::Status
                .is_in([DeploymentStatus::Queued, DeploymentStatus::InProgress]),
        )
        .group_by(deployment::Column::EnvironmentId)
        .group_by(deployment::Column::Status)
        .into_tuple::<(i64, DeploymentStatus, i64)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(env, status, n)| ((env, status.as_str()), n))
        .collect();
    let count = |env: i64, status: DeploymentStatus| {
        counts.get(&(env, status.as_str())).map_or(0, |n| *n as u64)
    };
    let mut now = Vec::with_capacity(environments.len());
    for env in environments {
        let (application, environment) = names[&env.id].clone();
        let release = deployments::current_release(db, env.id).await?;
        let drift = match (crate::nodes::observed(env)?, &release) {
            (Some(observed), Some(release)) => {
                Some(crate::nodes::drift(&crate::view::services(release)?, &observed).len() as u64)
            }
            _ => None,
        };
        now.push(EnvironmentNow {
            application,
            environment,
            queued: count(env.id, DeploymentStatus::Queued),
            in_progress: count(env.id, DeploymentStatus::InProgress),
            release_sha: release.and_then(|release| release.sha),
            drift,
            git_drift: crate::drift::latest(db, env.id)
                .await?
                .map(|plan| crate::drift::drifted(&plan).len() as u64),
        });
    }
    Ok(now)
}

/// How long a deployment took, in seconds, as this database computes it.
fn duration_sql(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            "CAST(EXTRACT(EPOCH FROM (finished_at - started_at)) AS DOUBLE PRECISION)"
        }
        // Timestamps are ISO 8601 text with their offset, which unixepoch
        // reads to the millisecond (julianday's doubles are coarser).
        _ => "(unixepoch(finished_at, 'subsec') - unixepoch(started_at, 'subsec'))",
    }
}

/// The index in [`Finished::buckets`] of a duration, as SQL: -1 for a
/// deployment that never started.
fn bucket_sql(duration: &str) -> String {
    let mut sql = String::from("CAST(CASE WHEN started_at IS NULL THEN -1");
    for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
        sql.push_str(&format!(" WHEN {duration} <= {bound:.1} THEN {i}"));
    }
    sql.push_str(&format!(" ELSE {} END AS BIGINT)", DURATION_BUCKETS.len()));
    sql
}

/// The finished deployments by environment and final status, counted per
/// duration bucket by the database.
async fn finished(
    db: &impl ConnectionTrait,
    names: &HashMap<i64, (String, String)>,
) -> ApiResult<Vec<Finished>> {
    let duration = duration_sql(db.get_database_backend());
    let bucket = bucket_sql(duration);
    let rows = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::EnvironmentId)
        .column(deployment::Column::Status)
        .column_as(Expr::cust(bucket), "bucket")
        .column_as(deployment::Column::Id.count(), "n")
        .column_as(Expr::cust(format!("SUM({duration})")), "seconds")
        .filter(deployment::Column::Status.is_in(FINAL))
        .group_by(deployment::Column::EnvironmentId)
        .group_by(deployment::Column::Status)
        .group_by(Expr::cust("bucket"))
        .into_tuple::<(i64, DeploymentStatus, i64, i64, Option<f64>)>()
        .all(db)
        .await?;
    let mut finished: HashMap<(i64, &str), Finished> = HashMap::new();
    for (env, status, bucket, n, seconds) in rows {
        let Some((application, environment)) = names.get(&env) else {
            continue;
        };
        let figures = finished
            .entry((env, status.as_str()))
            .or_insert_with(|| Finished {
                application: application.clone(),
                environment: environment.clone(),
                status: status.as_str(),
                total: 0,
                buckets: Default::default(),
                seconds: 0.0,
            });
        figures.total += n as u64;
        if let Ok(bucket) = usize::try_from(bucket) {
            figures.buckets[bucket.min(DURATION_BUCKETS.len())] += n as u64;
            figures.seconds += seconds.unwrap_or(0.0);
        }
    }
    let mut finished: Vec<Finished> = finished.into_values().collect();
    finished.sort_by(|a, b| {
        (&a.application, &a.environment, a.status).cmp(&(&b.application, &b.environment, b.status))
    });
    Ok(finished)
}

/// The outbox's rows by state, and the attempts that did not deliver:
/// every attempt recorded, less the one that delivered each delivered row.
async fn outbox(db: &impl ConnectionTrait) -> ApiResult<Outbox> {
    let rows: Vec<(DeliveryState, i64, i64)> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::State)
        .column_as(delivery::Column::Id.count(), "n")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(attempts), 0) AS BIGINT)"),
            "attempts",
        )
        .group_by(delivery::Column::State)
        .into_tuple()
        .all(db)
        .await?;
    let rows_in = |state: DeliveryState| {
        rows.iter()
            .filter(|(of, _, _)| *of == state)
            .map(|(_, n, _)| *n as u64)
            .sum::<u64>()
    };
    let attempts: i64 = rows.iter().map(|(_, _, attempts)| attempts).sum();
    let delivered = rows_in(DeliveryState::Delivered) as i64;
    Ok(Outbox {
        states: DELIVERY_STATES
            .iter()
            .map(|state| (state_name(*state), rows_in(*state)))
            .collect(),
        failures: (attempts - delivered).max(0) as u64,
    })
}

/// A delivery state as the database and the API's answers spell it.
fn state_name(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "PENDING",
        DeliveryState::Delivered => "DELIVERED",
        DeliveryState::Failed => "FAILED",
        DeliveryState::Discarded => "DISCARDED",
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.encode_finished(&mut encoder)?;
        self.encode_environments(&mut encoder)?;
        self.encode_runners(&mut encoder)?;
        self.encode_deliveries(&mut encoder)
    }
}

impl Snapshot {
    fn encode_finished(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut totals = encoder.encode_descriptor(
            "slipway_deployments",
            "Deployments that reached a final status (SUCCEEDED, FAILED, CANCELLED)",
            None,
            MetricType::Counter,
        )?;
        for f in &self.finished {
            let labels = finished_labels(f);
            ConstCounter::new(f.total).encode(totals.encode_family(&labels)?)?;
        }
        let mut durations = encoder.encode_descriptor(
            "slipway_deployment_duration_seconds",
            "How long finished deployments ran, from the claim (started_at) to the end \
             (finished_at)",
            None,
            MetricType::Histogram,
        )?;
        for f in &self.finished {
            let labels = finished_labels(f);
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .zip(f.buckets.iter().copied())
                .collect();
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(f.seconds, f.timed(), &buckets, None)?;
        }
        Ok(())
    }

    fn encode_environments(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let gauges: [EnvironmentGauge; 2] = [
            (
                "slipway_deployments_queued",
                "Deployments waiting in each environment's queue, those at a gate included",
                |env| env.queued,
            ),
            (
                "slipway_deployments_in_progress",
                "Deployments in progress in each environment (at most one)",
                |env| env.in_progress,
            ),
        ];
        for (name, help, value) in gauges {
            let mut gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for env in &self.environments {
                let labels = [
                    ("application", env.application.as_str()),
                    ("environment", env.environment.as_str()),
                ];
                ConstGauge::new(value(env) as i64).encode(gauge.encode_family(&labels)?)?;
            }
        }
        let mut releases = encoder.encode_descriptor(
            "slipway_release_info",
            "The commit each environment's release runs (the rollout that last succeeded there)",
            None,
            MetricType::Gauge,
        )?;
        for env in &self.environments {
            let Some(sha) = &env.release_sha else {
                continue;
            };
            let labels = [
                ("application", env.application.as_str()),
                ("environment", env.environment.as_str()),
                ("sha", sha.as_str()),
            ];
            ConstGauge::new(1i64).encode(releases.encode_family(&labels)?)?;
        }
        let drifts: [OptionalEnvironmentGauge; 2] = [
            (
                "slipway_environment_drift",
                "How many ways what runs on the swarm differs from each environment's release, \
                 as a runner last saw it (0: every node runs the release)",
                |env| env.drift,
            ),
            (
                "slipway_environment_git_drift",
                "How many services differ on the swarm from each environment's release's commit \
                 (edited, scaled, removed or added by hand), as the last drift check planned it",
                |env| env.git_drift,
            ),
        ];
        for (name, help, value) in drifts {
            let mut gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for env in &self.environments {
                let Some(value) = value(env) else {
                    continue;
                };
                let labels = [
                    ("application", env.application.as_str()),
                    ("environment", env.environment.as_str()),
                ];
                ConstGauge::new(value as i64).encode(gauge.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_runners(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut ages = encoder.encode_descriptor(
            "slipway_runner_last_heartbeat_age_seconds",
            "Seconds since each runner was last heard from (a claim, a heartbeat, a \
             registration)",
            None,
            MetricType::Gauge,
        )?;
        for (name, age) in &self.heartbeats {
            ConstGauge::new(*age).encode(ages.encode_family(&[("runner", name.as_str())])?)?;
        }
        Ok(())
    }

    fn encode_deliveries(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut states = encoder.encode_descriptor(
            "slipway_notification_deliveries",
            "Notification deliveries in the outbox, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.outbox.states {
            ConstGauge::new(*n as i64).encode(states.encode_family(&[("state", *state)])?)?;
        }
        let failures = encoder.encode_descriptor(
            "slipway_notification_delivery_failures",
            "Attempts to send a notification that did not deliver it (an error, a timeout, \
             a non-2xx answer)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.outbox.failures).encode(failures)
    }
}

fn finished_labels(f: &Finished) -> [(&'static str, &str); 3] {
    [
        ("application", f.application.as_str()),
        ("environment", f.environment.as_str()),
        ("status", f.status),
    ]
}

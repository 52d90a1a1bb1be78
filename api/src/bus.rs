//! The event log on PostgreSQL, which makes API replicas one API.
//!
//! Triggers (migration 15) write an `events` row for every change of a
//! deployment, environment or plan and every batch of log lines, and
//! `NOTIFY slipway_events` with its id, in the transaction of the change: an
//! event is in the log exactly when its change committed. Each replica
//! follows the log ([`follow`]) on a connection of its own and publishes what
//! it reads to its own subscribers ([`crate::events`]), its own changes as
//! much as any other replica's; which deployment became claimable it works
//! out itself from the changes it reads.
//!
//! A notification only wakes the follower: it reads the log by id, on every
//! notification, on every reconnection and every second, so a notification
//! lost with a connection loses nothing. Ids are handed out when a change is
//! made and become visible when it commits, so a smaller id may appear after
//! a larger one; such an id is a *gap*, read again until it appears or its
//! transaction is surely over. Two changes of one deployment commit in the
//! order of their ids (the second waits for the row lock of the first), so
//! publishing every visible event in id order keeps each deployment's order.
//!
//! Subscribers replay the log by id ([`replay`]): a client that lost its
//! connection to one replica goes on from the last event it saw on another.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ActiveEnum, ConnectionTrait, DatabaseBackend, FromQueryResult, QueryResult, Statement, Value,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::db::entities::deployment;
use crate::db::entities::plan::PlanStatus;
use crate::deployments;
use crate::error::{ApiError, ApiResult};
use crate::events::{DeploymentChanged, Event, LinesStored, PlanChanged};
use crate::state::AppState;
use crate::view;

/// The channel the triggers notify.
const CHANNEL: &str = "slipway_events";

/// How often the log is read when no notification comes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long an id not yet visible is waited for: longer than any of
/// Slipway's transactions takes.
const GAP_FOR: Duration = Duration::from_secs(30);

/// The most gaps kept at once (a burst of rolled-back changes).
const MAX_GAPS: usize = 10_000;

/// Events read at a time.
const PAGE: u64 = 500;

/// How long events are kept, and how many at most.
const KEEP_FOR: &str = "1 day";
const KEEP_AT_MOST: i64 = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One row of the log.
struct Logged {
    id: i64,
    application_id: i64,
    environment_id: i64,
    what: What,
}

enum What {
    /// A deployment, as the change left it.
    Deployment(Box<deployment::Model>),
    Logs {
        deployment_id: i64,
        first: i64,
        last: i64,
    },
    Environment,
    Plan {
        plan_id: i64,
        status: PlanStatus,
    },
}

/// The log's columns (prefixed, as they sit beside a deployment's) and the
/// deployment of each row.
const SELECT: &str = "SELECT e.id AS event_id, e.kind AS event_kind, \
     e.application_id AS event_application_id, e.environment_id AS event_environment_id, \
     e.deployment_id AS event_deployment_id, e.plan_id AS event_plan_id, \
     e.status AS event_status, e.first_seq AS event_first_seq, e.last_seq AS event_last_seq, \
     d.* \
     FROM events e LEFT JOIN LATERAL jsonb_populate_record(NULL::deployments, e.snapshot) d \
     ON e.kind = 'deployment'";

fn parse(row: &QueryResult) -> ApiResult<Logged> {
    let id: i64 = row.try_get("", "event_id")?;
    let kind: String = row.try_get("", "event_kind")?;
    let unreadable = |what: &str| ApiError::internal(format!("event {id} has {what}"));
    let what = match kind.as_str() {
        "deployment" => What::Deployment(Box::new(deployment::Model::from_query_result(row, "")?)),
        "logs" => What::Logs {
            deployment_id: row
                .try_get::<Option<i64>>("", "event_deployment_id")?
                .ok_or_else(|| unreadable("no deployment"))?,
            first: row.try_get("", "event_first_seq")?,
            last: row.try_get("", "event_last_seq")?,
        },
        "environment" => What::Environment,
        "plan" => What::Plan {
            plan_id: row
                .try_get::<Option<i64>>("", "event_plan_id")?
                .ok_or_else(|| unreadable("no plan"))?,
            status: PlanStatus::try_from_value(&row.try_get::<String>("", "event_status")?)
                .map_err(|_| unreadable("an unknown plan status"))?,
        },
        other => return Err(unreadable(&format!("the unknown kind `{other}`"))),
    };
    Ok(Logged {
        id,
        application_id: row.try_get("", "event_application_id")?,
        environment_id: row.try_get("", "event_environment_id")?,
        what,
    })
}

async fn read(
    db: &impl ConnectionTrait,
    condition: &str,
    values: Vec<Value>,
) -> ApiResult<Vec<Logged>> {
    let sql = format!("{SELECT} WHERE {condition} ORDER BY e.id LIMIT {PAGE}");
    db.query_all(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        values,
    ))
    .await?
    .iter()
    .map(parse)
    .collect()
}

/// The events of `rows`, in their order; deployments with their application
/// and environment (two queries for all).
async fn events_of(db: &impl ConnectionTrait, rows: Vec<Logged>) -> ApiResult<Vec<(i64, Event)>> {
    let mut snapshots = Vec::new();
    let mut rest = Vec::new();
    for row in rows {
        match row.what {
            What::Deployment(d) => snapshots.push((row.id, *d)),
            what => rest.push(Logged { what, ..row }),
        }
    }
    let (ids, models): (Vec<i64>, Vec<deployment::Model>) = snapshots.into_iter().unzip();
    let views = view::hydrate(db, models).await?;
    let mut events: Vec<(i64, Event)> = ids
        .into_iter()
        .zip(views)
        .map(|(id, view)| {
            let changed = DeploymentChanged::logged(id, Arc::new(view));
            (id, Event::Deployment(changed))
        })
        .collect();
    events.extend(rest.into_iter().map(|row| {
        let event = match row.what {
            What::Deployment(_) => unreachable!("deployments are taken out above"),
            What::Logs {
                deployment_id,
                first,
                last,
            } => Event::Logs(LinesStored::logged(deployment_id, first..=last)),
            What::Environment => Event::Environment {
                application_id: row.application_id,
                environment_id: row.environment_id,
            },
            What::Plan { plan_id, status } => Event::Plan(PlanChanged {
                plan_id,
                application_id: row.application_id,
                environment_id: row.environment_id,
                status,
            }),
        };
        (row.id, event)
    }));
    events.sort_by_key(|(id, _)| *id);
    Ok(events)
}

/// Follows the event log until `stop`, publishing every event to this
/// replica's subscribers. Only on PostgreSQL.
pub async fn follow(state: AppState, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let pool = state.db.get_postgres_connection_pool().clone();
    let mut follower = loop {
        match Follower::start(&state).await {
            Ok(follower) => break follower,
            Err(err) => {
                tracing::warn!(?err, "cannot read the event log yet; trying again");
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        }
    };
    let mut listener: Option<PgListener> = None;
    let mut poll = tokio::time::interval(POLL_EVERY);
    let mut pruned = Instant::now();
    loop {
        if listener.is_none() {
            match PgListener::connect_with(&pool).await {
                Ok(mut connected) => match connected.listen(CHANNEL).await {
                    Ok(()) => listener = Some(connected),
                    Err(err) => tracing::warn!(%err, "cannot listen for events; polling"),
                },
                Err(err) => tracing::warn!(%err, "cannot connect to listen for events; polling"),
            }
        }
        tokio::select! {
            () = &mut stop => return,
            _ = poll.tick() => {}
            woken = wait(&mut listener) => match woken {
                Ok(true) => {
                    // Many notifications make one read.
                    while listener.as_mut().and_then(PgListener::next_buffered).is_some() {}
                }
                // sqlx connects again on the next wait; what was notified
                // meanwhile is read below all the same.
                Ok(false) => tracing::warn!("lost the connection that listens for events"),
                Err(err) => {
                    tracing::warn!(%err, "listening for events failed; connecting again");
                    listener = None;
                }
            },
        }
        if let Err(err) = follower.catch_up(&state).await {
            tracing::warn!(?err, "could not read the event log; trying again");
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            if let Err(err) = prune(&state.db).await {
                tracing::warn!(?err, "could not prune the event log");
            }
        }
    }
}

/// Waits for a notification: `Ok(false)` when the connection was lost.
async fn wait(listener: &mut Option<PgListener>) -> Result<bool, sea_orm::sqlx::Error> {
    match listener {
        Some(listener) => Ok(listener.try_recv().await?.is_some()),
        None => std::future::pending().await,
    }
}

/// Drops the events older than [`KEEP_FOR`] and beyond the newest
/// [`KEEP_AT_MOST`], and records up to which event the log was pruned.
/// Every replica does it; they may do it at once.
pub async fn prune(db: &impl ConnectionTrait) -> ApiResult<u64> {
    let sql = format!(
        "WITH gone AS (DELETE FROM events WHERE at < now() - interval '{KEEP_FOR}' \
         OR id <= (SELECT max(id) FROM events) - {KEEP_AT_MOST} RETURNING id) \
         UPDATE events_pruned SET through = GREATEST(through, (SELECT COALESCE(max(id), 0) FROM gone)) \
         RETURNING (SELECT count(*) FROM gone) AS pruned"
    );
    let row = db
        .query_one(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64>("", "pruned")?.max(0) as u64,
        None => 0,
    })
}

/// Every event up to this one was pruned from the log.
pub async fn pruned_through(db: &impl ConnectionTrait) -> ApiResult<i64> {
    let row = db
        .query_one(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT through FROM events_pruned",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "through")?,
        None => 0,
    })
}

/// Where a replica is in the log.
struct Follower {
    /// The newest event read.
    seen: i64,
    /// Ids below `seen` not read yet, and since when they are missing.
    gaps: BTreeMap<i64, Instant>,
    /// Per environment, the deployment last offered as claimable.
    offered: HashMap<i64, i64>,
}

impl Follower {
    /// Starts after the newest event: what came before is history, for
    /// subscribers to [`replay`].
    async fn start(state: &AppState) -> ApiResult<Self> {
        let row = state
            .db
            .query_one(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT COALESCE(max(id), 0) AS newest FROM events",
            ))
            .await?;
        let seen: i64 = match row {
            Some(row) => row.try_get("", "newest")?,
            None => 0,
        };
        state.events.followed(seen, seen);
        Ok(Self {
            seen,
            gaps: BTreeMap::new(),
            offered: HashMap::new(),
        })
    }

    /// Publishes every event visible now that was not published yet.
    async fn catch_up(&mut self, state: &AppState) -> ApiResult<()> {
        loop {
            let now = Instant::now();
            self.gaps
                .retain(|_, since| now.duration_since(*since) < GAP_FOR);
            let gaps = self
                .gaps
                .keys()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let rows = read(
                &state.db,
                "e.id > $1 OR e.id = ANY($2::bigint[])",
                vec![self.seen.into(), format!("{{{gaps}}}").into()],
            )
            .await?;
            let full = rows.len() as u64 == PAGE;
            for row in &rows {
                self.saw(row.id, now);
            }
            let settled = self.gaps.keys().next().map_or(self.seen, |gap| gap - 1);
            self.publish(state, rows, settled).await?;
            state.events.followed(self.seen, settled);
            if !full {
                return Ok(());
            }
        }
    }

    fn saw(&mut self, id: i64, now: Instant) {
        if id <= self.seen {
            self.gaps.remove(&id);
            return;
        }
        // Ids a change took and did not commit yet (or rolled back).
        let missing = (self.seen + 1).max(id - MAX_GAPS as i64)..id;
        self.gaps.extend(missing.map(|gap| (gap, now)));
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
        self.seen = id;
    }

    /// Publishes the events of `rows`, then the deployments that became
    /// claimable in the environments they touched. Every event up to
    /// `settled` is among them or was published before.
    async fn publish(
        &mut self,
        state: &AppState,
        rows: Vec<Logged>,
        settled: i64,
    ) -> ApiResult<()> {
        // Per environment touched: whether it changed itself, and which of
        // its deployments did.
        let mut touched: BTreeMap<i64, (bool, Vec<i64>)> = BTreeMap::new();
        for row in &rows {
            match &row.what {
                What::Deployment(d) => touched.entry(row.environment_id).or_default().1.push(d.id),
                What::Environment => touched.entry(row.environment_id).or_default().0 = true,
                What::Logs { .. } | What::Plan { .. } => {}
            }
        }
        for (id, mut event) in events_of(&state.db, rows).await? {
            if let Event::Deployment(changed) = &mut event {
                // Those of `rows` before it are published before it.
                changed.settled = settled.min(id);
            }
            state.events.deliver(event);
        }
        for (environment_id, (itself, changed)) in touched {
            let Some(next) = deployments::next_claimable(&state.db, environment_id).await? else {
                self.offered.remove(&environment_id);
                continue;
            };
            // Offered again only when something may have made it takeable
            // anew: a new head, the head itself changed (a gate opened), or
            // the environment did (unlocked, new runner labels).
            let again = self.offered.get(&environment_id) == Some(&next.id)
                && !itself
                && !changed.contains(&next.id);
            if again {
                continue;
            }
            self.offered.insert(environment_id, next.id);
            let view = view::hydrate_one(&state.db, next).await?;
            state
                .events
                .deliver(Event::Queued(DeploymentChanged::of(Arc::new(view))));
        }
        Ok(())
    }
}

/// Which deployments' events a subscriber replays.
#[derive(Clone, Copy, Debug, Default)]
pub struct Only {
    pub application_id: Option<i64>,
    pub deployment_id: Option<i64>,
}

/// Up to a page of the deployment events of the log after `after`, in order.
pub async fn replay(
    db: &impl ConnectionTrait,
    after: i64,
    only: Only,
) -> ApiResult<Vec<DeploymentChanged>> {
    let mut condition = "e.id > $1 AND e.kind = 'deployment'".to_owned();
    let mut values: Vec<Value> = vec![after.into()];
    if let Some(app) = only.application_id {
        values.push(app.into());
        condition += &format!(" AND e.application_id = ${}", values.len());
    }
    if let Some(id) = only.deployment_id {
        values.push(id.into());
        condition += &format!(" AND e.deployment_id = ${}", values.len());
    }
    let rows = read(db, &condition, values).await?;
    Ok(events_of(db, rows)
        .await?
        .into_iter()
        .filter_map(|(_, event)| match event {
            Event::Deployment(changed) => Some(changed),
            _ => None,
        })
        .collect())
}

impl Only {
    fn matches(&self, changed: &DeploymentChanged) -> bool {
        self.application_id
            .is_none_or(|app| app == changed.application_id)
            && self
                .deployment_id
                .is_none_or(|id| id == changed.deployment_id)
    }
}

/// The deployment events a subscriber of this replica gets: with `after`,
/// those of the log after it first, then live ones; each once, each
/// deployment's in order. A subscriber that falls behind replays what it
/// missed from the log instead of losing it.
pub fn deployment_events(
    state: &AppState,
    after: Option<i64>,
    only: Only,
) -> ReceiverStream<ApiResult<DeploymentChanged>> {
    // Subscribing before reading the log makes the hand-over gap-free: an
    // event both read and received is sent once.
    let mut live = state.events.subscribe();
    let (latest, _) = state.events.log_position().unwrap_or_default();
    let (tx, rx) = mpsc::channel(64);
    let state = state.clone();
    tokio::spawn(async move {
        let mut sent = Sent {
            upto: after.unwrap_or(latest),
            above: BTreeMap::new(),
        };
        if after.is_some() && sent.replay(&state, only, &tx).await.is_err() {
            return;
        }
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                event = live.recv() => event,
            };
            match event {
                Ok(Event::Deployment(changed)) => {
                    sent.upto = sent.upto.max(changed.settled);
                    if only.matches(&changed)
                        && sent.first_time(changed.event)
                        && tx.send(Ok(changed)).await.is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "a subscriber fell behind; replaying the event log");
                    if sent.replay(&state, only, &tx).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// How long an event sent is remembered, to send it once even if it is
/// both replayed and received live: longer than the follower waits for a gap.
const REMEMBER_FOR: Duration = Duration::from_secs(60);

/// What a subscriber was sent.
struct Sent {
    /// Every event up to this one was sent, or was not for this subscriber.
    upto: i64,
    /// Events sent, and when; those after `upto`, and recent ones.
    above: BTreeMap<i64, Instant>,
}

impl Sent {
    /// Whether the event `id` (of a live event) was not sent yet; it counts as
    /// sent from now on.
    fn first_time(&mut self, id: Option<i64>) -> bool {
        if self.above.len() >= 1024 {
            self.forget();
        }
        // Live events are new to this subscriber unless it read them in
        // the log: their ids alone cannot tell (a gap is filled late).
        id.is_none_or(|id| self.above.insert(id, Instant::now()).is_none())
    }

    /// Forgets the events sent long ago, up to `upto`.
    fn forget(&mut self) {
        let (upto, now) = (self.upto, Instant::now());
        self.above
            .retain(|id, at| *id > upto || now.duration_since(*at) < REMEMBER_FOR);
    }

    /// Sends the events of the log after `upto` not sent yet. `Err` once
    /// the subscriber is gone or the log could not be read (it is told).
    async fn replay(
        &mut self,
        state: &AppState,
        only: Only,
        tx: &mpsc::Sender<ApiResult<DeploymentChanged>>,
    ) -> Result<(), ()> {
        // What the follower had settled before the log is read is in it.
        let (_, settled) = state.events.log_position().unwrap_or_default();
        let mut cursor = self.upto;
        loop {
            let page = match replay(&state.db, cursor, only).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    return Err(());
                }
            };
            let full = page.len() as u64 == PAGE;
            for changed in page {
                let id = changed.event.unwrap_or(cursor);
                cursor = cursor.max(id);
                if self.first_time(Some(id)) {
                    tx.send(Ok(changed)).await.map_err(|_| ())?;
                }
            }
            if !full {
                break;
            }
        }
        self.upto = self.upto.max(settled);
        self.forget();
        Ok(())
    }
}

//! The in-process event bus behind subscriptions and the web UI's live pages.
//!
//! An event names what changed by id: a deployment (with its application and
//! environment), a range of stored log lines, or an environment (locked,
//! unlocked, auto-deploys resumed). That is all a bus through the
//! database could carry (a PostgreSQL `NOTIFY` payload holds at most 8 kB).
//! In this process an event also carries the rows already loaded, shared, so
//! that subscribers here need not read them again; a subscriber reads from the
//! database whatever an event does not carry.
//!
//! Events are published only after the transaction that caused them has
//! committed, so a subscriber never hears of a change that is not in the
//! database. The changes of one deployment are published one at a time, each
//! with the deployment as read after taking its turn: subscribers see its
//! states in the order they were committed, never an older one after a newer.
//!
//! On PostgreSQL the bus is *shared*: several API replicas write to one
//! database, so the calls that publish here do nothing, and every event comes
//! from the database's event log instead ([`crate::bus`]), this replica's own
//! changes as much as any other's. Those events carry their number in the log.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tokio::sync::{broadcast, watch, Mutex};

use crate::db::entities::plan::PlanStatus;
use crate::db::entities::{deployment, environment, log_line, plan};
use crate::error::ApiResult;
use crate::view::{self, DeploymentView};

#[derive(Clone, Debug)]
pub enum Event {
    /// A deployment was created or changed state, phase or message.
    Deployment(DeploymentChanged),
    /// A deployment became claimable: the oldest queued one of an environment
    /// that has none in progress.
    Queued(DeploymentChanged),
    /// Log lines of a deployment were stored.
    Logs(LinesStored),
    /// An environment was locked or unlocked, or its auto-deploys resumed.
    Environment {
        application_id: i64,
        environment_id: i64,
    },
    /// A plan was requested, claimed or finished (see [`crate::plans`]).
    Plan(PlanChanged),
}

/// Which plan an event is about, and the state it reached.
#[derive(Clone, Debug)]
pub struct PlanChanged {
    pub plan_id: i64,
    pub application_id: i64,
    pub environment_id: i64,
    pub status: PlanStatus,
}

/// Which deployment an event is about.
#[derive(Clone, Debug)]
pub struct DeploymentChanged {
    pub deployment_id: i64,
    pub application_id: i64,
    pub environment_id: i64,
    /// The deployment as it was read for the event, when this process has it.
    loaded: Option<Arc<DeploymentView>>,
    /// Its number in the event log, on a shared bus.
    pub event: Option<i64>,
    /// On a shared bus, an event of the log up to which every event was
    /// published before this one (or never will be).
    pub(crate) settled: i64,
}

impl DeploymentChanged {
    /// An event about `view`, carrying it.
    pub fn of(view: Arc<DeploymentView>) -> Self {
        Self {
            deployment_id: view.deployment.id,
            application_id: view.deployment.application_id,
            environment_id: view.deployment.environment_id,
            loaded: Some(view),
            event: None,
            settled: 0,
        }
    }

    /// Event `event` of the log, about `view` as that change left it.
    pub(crate) fn logged(event: i64, view: Arc<DeploymentView>) -> Self {
        Self {
            event: Some(event),
            ..Self::of(view)
        }
    }

    /// An event that carries only the ids of `view`.
    fn ids_of(view: &DeploymentView) -> Self {
        Self {
            deployment_id: view.deployment.id,
            application_id: view.deployment.application_id,
            environment_id: view.deployment.environment_id,
            loaded: None,
            event: None,
            settled: 0,
        }
    }

    /// The deployment: the one carried, or as the database has it now.
    pub async fn view(&self, db: &impl ConnectionTrait) -> ApiResult<Arc<DeploymentView>> {
        match &self.loaded {
            Some(view) => Ok(view.clone()),
            None => Ok(Arc::new(view::get(db, self.deployment_id).await?)),
        }
    }
}

/// Which log lines were stored.
#[derive(Clone, Debug)]
pub struct LinesStored {
    pub deployment_id: i64,
    /// Their sequence numbers.
    pub seqs: RangeInclusive<i64>,
    /// The lines themselves, when this process has them.
    loaded: Option<Arc<Vec<log_line::Model>>>,
}

impl LinesStored {
    /// The lines `seqs` of a deployment, to be read from the database.
    pub(crate) fn logged(deployment_id: i64, seqs: RangeInclusive<i64>) -> Self {
        Self {
            deployment_id,
            seqs,
            loaded: None,
        }
    }

    /// An event about `lines` (consecutive lines of one deployment, at least
    /// one), carrying them.
    fn of(deployment_id: i64, lines: Arc<Vec<log_line::Model>>) -> Self {
        let first = lines.first().map_or(0, |l| l.seq);
        let last = lines.last().map_or(0, |l| l.seq);
        Self {
            deployment_id,
            seqs: first..=last,
            loaded: Some(lines),
        }
    }

    /// The lines, when the event carries them; otherwise they are to be read
    /// from the database.
    pub fn loaded(&self) -> Option<&Arc<Vec<log_line::Model>>> {
        self.loaded.as_ref()
    }
}

/// How many deployments may publish at the same time (changes of deployments
/// that share a turn wait for each other).
const TURNS: usize = 64;

#[derive(Clone, Debug)]
pub struct Events {
    sender: broadcast::Sender<Event>,
    /// Per group of deployments, the lock a publisher holds while it reads
    /// the deployment and publishes it, and the row it published last.
    turns: Arc<[Mutex<Option<deployment::Model>>]>,
    /// Set when the API shuts down: streams that never end by themselves
    /// (the web UI's live pages) end then.
    closing: Arc<watch::Sender<bool>>,
    /// Where the events of a shared bus stand; `None` in-process.
    log: Option<Arc<Log>>,
}

/// How far a replica has followed the event log.
#[derive(Debug, Default)]
struct Log {
    /// The newest event published.
    latest: AtomicI64,
    /// Every event up to this one is published, or will never be (its
    /// transaction rolled back).
    settled: AtomicI64,
}

impl Events {
    /// An in-process bus, for one API process alone on its database.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
            turns: (0..TURNS).map(|_| Mutex::new(None)).collect(),
            closing: Arc::new(watch::channel(false).0),
            log: None,
        }
    }

    /// A bus fed by the database's event log alone ([`crate::bus`]).
    pub fn shared(capacity: usize) -> Self {
        Self {
            log: Some(Arc::default()),
            ..Self::new(capacity)
        }
    }

    /// Whether events come from the database's event log.
    pub fn is_shared(&self) -> bool {
        self.log.is_some()
    }

    /// The newest event of the log published, and the one up to which every
    /// event is published or never will be; `None` in-process.
    pub(crate) fn log_position(&self) -> Option<(i64, i64)> {
        self.log.as_ref().map(|log| {
            (
                log.latest.load(Ordering::Acquire),
                log.settled.load(Ordering::Acquire),
            )
        })
    }

    /// Records how far the event log was followed (see [`Events::log_position`]).
    pub(crate) fn followed(&self, latest: i64, settled: i64) {
        if let Some(log) = &self.log {
            log.latest.fetch_max(latest, Ordering::AcqRel);
            log.settled.fetch_max(settled, Ordering::AcqRel);
        }
    }

    /// Hands `event` to every subscriber of this process, whatever the bus.
    /// The event log's follower publishes through this; so may tests.
    pub fn deliver(&self, event: Event) {
        // No subscriber is not an error: the change is in the database.
        let _ = self.sender.send(event);
    }

    fn publish(&self, event: Event) {
        if !self.is_shared() {
            self.deliver(event);
        }
    }

    /// Publishes that `view` became claimable.
    pub fn queued(&self, view: Arc<DeploymentView>) {
        self.publish(Event::Queued(DeploymentChanged::of(view)));
    }

    /// Publishes that `lines` of the deployment `deployment_id` were stored
    /// (consecutive lines, at least one). Followers order lines by their
    /// sequence numbers, so these events need no turn.
    pub fn lines_stored(&self, deployment_id: i64, lines: Arc<Vec<log_line::Model>>) {
        self.publish(Event::Logs(LinesStored::of(deployment_id, lines)));
    }

    /// Publishes that the deployment of `changed` changed, once the change
    /// has committed. Waits for the deployment's turn, reads it again and
    /// publishes what it reads, so that a publisher that comes late cannot
    /// show a state older than one already published. A state just published
    /// is not published again.
    pub async fn deployment_changed(&self, db: &impl ConnectionTrait, changed: &DeploymentView) {
        if self.is_shared() {
            return;
        }
        let id = changed.deployment.id;
        let mut last = self.turns[id.rem_euclid(TURNS as i64) as usize]
            .lock()
            .await;
        let event = match view::reread(db, changed).await {
            Ok(now) if last.as_ref() == Some(&now.deployment) => return,
            Ok(now) => {
                *last = Some(now.deployment.clone());
                DeploymentChanged::of(Arc::new(now))
            }
            Err(_) => {
                // Subscribers read it themselves; it is logged already.
                *last = None;
                DeploymentChanged::ids_of(changed)
            }
        };
        self.publish(Event::Deployment(event));
    }

    /// Publishes that an environment changed.
    pub fn environment_changed(&self, env: &environment::Model) {
        self.publish(Event::Environment {
            application_id: env.application_id,
            environment_id: env.id,
        });
    }

    /// Publishes that a plan was requested, claimed or finished, as `row` is
    /// after the change committed.
    pub fn plan_changed(&self, row: &plan::Model) {
        self.publish(Event::Plan(PlanChanged {
            plan_id: row.id,
            application_id: row.application_id,
            environment_id: row.environment_id,
            status: row.status,
        }));
    }

    /// Ends the streams that wait for [`Events::closed`]: the API is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Events::close`] was called.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|closed| *closed).await;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

//! The runner's loop: hear about claimable deployments, claim them, and hand
//! each to [`crate::rollout`], up to `concurrency` at once; and, idle or
//! busy, take requested plans and answer them ([`crate::preview`], read-only,
//! a few at once beside the deployments).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_client::operations::{
    claim_deployment, claim_plan, claimable_deployments, deployment_queued, held_deployments,
    plan_requested, register_runner, requested_plans, ClaimDeployment, ClaimPlan,
    ClaimableDeployments, DeploymentQueued, HeldDeployments, PlanRequested, RegisterRunner,
    RequestedPlans,
};
use slipway_client::{Client, Code};
use tokio::time::Instant;

use crate::git::{redact_url, Credentials, Mirrors};
use crate::instance::{Instance, InstanceError};
use crate::lease;
use crate::plan::Restore;
use crate::preview::{self, Preview};
use crate::registry::RegistryAuth;
use crate::swarm::Engine;

/// A deployment as the runner needs it.
#[derive(Clone, Debug)]
pub struct Work {
    pub id: String,
    pub name: String,
    pub reference: String,
    pub sha: Option<String>,
    pub application: String,
    pub repository: String,
    pub spec_path: String,
    pub environment: String,
    /// Lines the deployment's log already has (a resumed one has some).
    pub log_count: i64,
    /// Made by a push or a pipeline, not asked for by a person.
    pub auto_deploy: bool,
    /// What the environment runs now, if anything.
    pub release: Option<CurrentRelease>,
    /// For a rollback: the release it restores, whose digests it pins.
    pub restores: Option<Restore>,
    /// The task of the spec it runs alone, rolling nothing out.
    pub runs_task: Option<String>,
    /// The runner instance that holds it, if any.
    pub runner_instance: Option<String>,
    /// The lease the API grants, as its last answer said.
    pub lease: Option<Duration>,
}

/// The release an environment runs.
#[derive(Clone, Debug)]
pub struct CurrentRelease {
    pub sha: String,
    /// The deployment that made it (`web#41`).
    pub name: String,
}

macro_rules! work_from {
    ($module:ident) => {
        impl From<$module::Work> for Work {
            fn from(w: $module::Work) -> Self {
                Work {
                    id: w.id,
                    name: w.name,
                    reference: w.ref_,
                    sha: w.sha,
                    application: w.application.name,
                    repository: w.application.repository,
                    spec_path: w.application.spec_path,
                    environment: w.environment.name,
                    log_count: w.log_count,
                    auto_deploy: w.auto_deploy,
                    release: w.environment.release.and_then(|r| {
                        Some(CurrentRelease {
                            sha: r.sha?,
                            name: r.deployment.name,
                        })
                    }),
                    restores: w.restores.map(|r| Restore {
                        release: r.deployment.name,
                        digests: r
                            .services
                            .into_iter()
                            .filter_map(|s| Some((s.name, (s.image, s.digest?))))
                            .collect(),
                    }),
                    runs_task: w.runs_task,
                    runner_instance: w.runner_instance,
                    lease: lease::granted(w.last_heartbeat_at, w.lease_expires_at),
                }
            }
        }
    };
}
work_from!(claimable_deployments);
work_from!(deployment_queued);
work_from!(claim_deployment);
work_from!(held_deployments);

/// Everything a runner holds.
#[derive(Clone)]
pub struct Runner {
    pub client: Client,
    /// The runner's name in its own log; the API knows it by its token's subject.
    pub name: String,
    /// This process's instance id (see [`crate::instance`]).
    pub instance: String,
    pub labels: Vec<String>,
    /// Mirrors and the records of deployments in progress live here.
    pub workdir: PathBuf,
    pub mirrors: Mirrors,
    pub engine: Engine,
    /// Values of the secrets file: for interpolation and swarm secrets, masked in logs.
    pub secrets: BTreeMap<String, String>,
    /// Credentials of private registries: to resolve digests, and sent with
    /// the services whose images they hold (masked in logs too).
    pub registry_auth: RegistryAuth,
    /// How many deployments (of different environments) it carries out at once.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
    /// How often `claimableDeployments` is read even when no event came: a
    /// safety net under the subscription.
    pub resync_every: Duration,
    /// How often what runs where is reported ([`crate::observe`]).
    pub observe_every: Duration,
    /// Keeps the workdir's instance lock for as long as the runner lives.
    _instance: Arc<Instance>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.name)
            .field("instance", &self.instance)
            .field("api", &self.client.base())
            .field("workdir", &self.workdir)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("registry_auth", &self.registry_auth)
            .finish_non_exhaustive()
    }
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a claim is retried while the API cannot be reached.
const CLAIM_PATIENCE: Duration = Duration::from_secs(30);
/// How many plans a runner answers at once, beside its deployments.
const PLANS_AT_ONCE: usize = 2;

impl Runner {
    /// A runner with the defaults: no labels, no registry credentials, four
    /// deployments at once, fetches of ten minutes at most, the claimable
    /// list read every 30 s, what runs where reported every minute.
    /// Takes `workdir`'s instance id and lock (see [`crate::instance`]).
    pub fn open(
        client: Client,
        name: impl Into<String>,
        workdir: impl Into<PathBuf>,
        engine: Engine,
        credentials: Credentials,
    ) -> Result<Self, InstanceError> {
        let workdir = workdir.into();
        let instance = Instance::open(&workdir)?;
        Ok(Self {
            client,
            name: name.into(),
            instance: instance.id.clone(),
            labels: Vec::new(),
            mirrors: Mirrors::new(workdir.join("mirrors"), credentials),
            workdir,
            engine,
            secrets: BTreeMap::new(),
            registry_auth: RegistryAuth::none(),
            concurrency: 4,
            fetch_timeout: Duration::from_secs(600),
            resync_every: Duration::from_secs(30),
            observe_every: Duration::from_secs(60),
            _instance: Arc::new(instance),
        })
    }
}

/// Runs until `shutdown` resolves: resumes what this runner held, then takes
/// claimable deployments as they come, up to `concurrency` at once,
/// reconnecting to the API with backoff. Work in flight is dropped at shutdown
/// (its lease lets another start of this runner resume it).
pub async fn run(runner: Runner, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut slots = Slots::new(runner.concurrency);
    let observer = tokio::spawn(crate::observe::run(runner.clone(), runner.observe_every));
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            result = runner.session(&mut slots) => {
                match result {
                    Ok(()) => backoff = Duration::from_millis(500),
                    Err(err) => tracing::warn!(%err, "lost the API; reconnecting in {backoff:?}"),
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // Nothing of this runner outlives `run`: the workdir's lock is free
    // for the next start once it returns.
    observer.abort();
    let _ = observer.await;
    slots.tasks.shutdown().await;
    slots.previews.shutdown().await;
}

/// The deployments a runner carries out at once.
struct Slots {
    tasks: tokio::task::JoinSet<()>,
    free: Arc<tokio::sync::Semaphore>,
    /// Ids in flight, so a reconnect does not resume one twice.
    running: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Woken when a deployment ends: something queued may be claimable now.
    freed: Arc<tokio::sync::Notify>,
    /// Plans being answered; they hold no deployment slot.
    previews: tokio::task::JoinSet<()>,
    preview_slots: Arc<tokio::sync::Semaphore>,
}

impl Slots {
    fn new(concurrency: usize) -> Self {
        Self {
            tasks: tokio::task::JoinSet::new(),
            free: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            running: Default::default(),
            freed: Default::default(),
            previews: tokio::task::JoinSet::new(),
            preview_slots: Arc::new(tokio::sync::Semaphore::new(PLANS_AT_ONCE)),
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.running.lock().map(|r| r.contains(id)).unwrap_or(false)
    }

    /// Runs `work` on its own task, holding `permit` until it ends. `sent`
    /// is when its claim was sent (`None`: held before a restart).
    fn start(
        &mut self,
        runner: &Runner,
        work: Work,
        sent: Option<Instant>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        while self.tasks.try_join_next().is_some() {}
        if let Ok(mut running) = self.running.lock() {
            running.insert(work.id.clone());
        }
        let (runner, running, freed) = (runner.clone(), self.running.clone(), self.freed.clone());
        self.tasks.spawn(async move {
            let id = work.id.clone();
            let (application, environment) = (work.application.clone(), work.environment.clone());
            crate::rollout::execute(&runner, work, sent).await;
            // What the deployment left running, at once.
            if let Err(err) =
                crate::observe::report(&runner, Some((&application, &environment))).await
            {
                tracing::warn!(%err, "could not report what runs where");
            }
            if let Ok(mut running) = running.lock() {
                running.remove(&id);
            }
            drop(permit);
            freed.notify_one();
        });
    }
}

impl Runner {
    /// One connection's worth of work: ends when the subscription does.
    async fn session(&self, slots: &mut Slots) -> Result<(), slipway_client::Error> {
        // The API knows this runner by its token's subject, whatever `--name` says.
        let me = self
            .client
            .run::<RegisterRunner>(register_runner::Variables {
                labels: self.labels.clone(),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                instance: Some(self.instance.clone()),
            })
            .await?
            .register_runner
            .name;
        let mut queued = self
            .client
            .subscribe::<DeploymentQueued>(deployment_queued::Variables)
            .await?;
        let mut plans = self
            .client
            .subscribe::<PlanRequested>(plan_requested::Variables)
            .await?;
        tracing::info!(runner = %self.name, instance = %self.instance, api = self.client.base(), "listening for deployments");
        self.resume(slots, &me).await?;
        // What became claimable, or was asked for, while nobody listened.
        self.claim_claimable(slots).await?;
        self.take_requested_plans(slots).await?;
        let mut resync = tokio::time::interval(self.resync_every);
        resync.reset();
        loop {
            let freed = slots.freed.clone();
            tokio::select! {
                event = queued.next() => match event {
                    Some(event) => {
                        let work = Work::from(event?.deployment_queued);
                        self.try_claim(slots, work).await;
                    }
                    None => return Err(slipway_client::Error::Ended),
                },
                event = plans.next() => match event {
                    Some(event) => {
                        let preview = Preview::from(event?.plan_requested);
                        self.take_plan(slots, preview).await;
                    }
                    None => return Err(slipway_client::Error::Ended),
                },
                () = freed.notified() => self.claim_claimable(slots).await?,
                _ = resync.tick() => {
                    self.claim_claimable(slots).await?;
                    self.take_requested_plans(slots).await?;
                }
            }
        }
    }

    /// Picks up what this runner instance held before a restart, to
    /// reconcile it with the swarm. Another instance's deployments are its
    /// own until their lease lapses (the API then ends them).
    async fn resume(&self, slots: &mut Slots, me: &str) -> Result<(), slipway_client::Error> {
        let held = self
            .client
            .run::<HeldDeployments>(held_deployments::Variables)
            .await?;
        for edge in held.deployments.edges {
            let node = edge.node;
            let mine = node.runner.as_deref() == Some(me)
                && node.work.runner_instance.as_deref() == Some(self.instance.as_str());
            if mine && !slots.is_running(&node.work.id) {
                let work = Work::from(node.work);
                tracing::info!(deployment = %work.name, "resuming a deployment this runner held");
                let permit = slots
                    .free
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("open semaphore");
                slots.start(self, work, None, permit);
            }
        }
        Ok(())
    }

    async fn claim_claimable(&self, slots: &mut Slots) -> Result<(), slipway_client::Error> {
        let claimable = self
            .client
            .run::<ClaimableDeployments>(claimable_deployments::Variables)
            .await?;
        for work in claimable.claimable_deployments {
            self.try_claim(slots, Work::from(work)).await;
        }
        Ok(())
    }

    /// Claims `work` if this runner has a free slot; another runner, or this
    /// one when a slot frees, takes it otherwise. A claim whose answer was
    /// lost is sent again: the API answers the instance that holds it with
    /// the deployment.
    async fn try_claim(&self, slots: &mut Slots, work: Work) {
        if slots.is_running(&work.id) {
            return;
        }
        let Ok(permit) = slots.free.clone().try_acquire_owned() else {
            tracing::debug!(deployment = %work.name, "no free slot; leaving it queued");
            return;
        };
        let deadline = Instant::now() + CLAIM_PATIENCE;
        let mut wait = Duration::from_millis(200);
        loop {
            let sent = Instant::now();
            let claimed = self
                .client
                .run::<ClaimDeployment>(claim_deployment::Variables {
                    id: work.id.clone(),
                    instance: Some(self.instance.clone()),
                })
                .await;
            match claimed {
                Ok(data) => {
                    let work = Work::from(data.claim_deployment);
                    return slots.start(self, work, Some(sent), permit);
                }
                Err(err) if err.code() == Some(Code::Conflict) => {
                    tracing::debug!(deployment = %work.name, %err, "not claimable");
                    return;
                }
                Err(err) if err.is_transient() && Instant::now() < deadline => {
                    tracing::warn!(deployment = %work.name, %err, "claim failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    tracing::warn!(deployment = %work.name, repository = %redact_url(&work.repository), %err, "claim failed");
                    return;
                }
            }
        }
    }
}

impl Runner {
    async fn take_requested_plans(&self, slots: &mut Slots) -> Result<(), slipway_client::Error> {
        let requested = self
            .client
            .run::<RequestedPlans>(requested_plans::Variables)
            .await?;
        for plan in requested.requested_plans {
            self.take_plan(slots, Preview::from(plan)).await;
        }
        Ok(())
    }

    /// Claims a requested plan when a plan slot is free and answers it on a
    /// task of its own; another runner (or this one, at the next resync)
    /// takes it otherwise. A plan claimed by another runner is left to it.
    async fn take_plan(&self, slots: &mut Slots, preview: Preview) {
        while slots.previews.try_join_next().is_some() {}
        let Ok(permit) = slots.preview_slots.clone().try_acquire_owned() else {
            tracing::debug!(plan = %preview.id, "no free plan slot; leaving it requested");
            return;
        };
        let claimed = self
            .client
            .run::<ClaimPlan>(claim_plan::Variables {
                id: preview.id.clone(),
            })
            .await;
        match claimed {
            Ok(data) => {
                let (runner, preview) = (self.clone(), Preview::from(data.claim_plan));
                slots.previews.spawn(async move {
                    preview::answer(&runner, preview).await;
                    drop(permit);
                });
            }
            Err(err) if err.code() == Some(Code::Conflict) => {
                tracing::debug!(plan = %preview.id, %err, "taken by another runner");
            }
            Err(err) => tracing::warn!(plan = %preview.id, %err, "claiming the plan failed"),
        }
    }
}

//! The runner's loop: hear about claimable deployments, claim one, and carry it
//! from the commit to a converged (or rolled back) stack.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_client::operations::{
    claim_deployment, claimable_deployments, deployment_queued, finish_deployment,
    heartbeat_deployment, held_deployments, register_runner,
    update_deployment_progress::DeploymentPhase, ClaimDeployment, ClaimableDeployments,
    DeploymentQueued, FinishDeployment, HeartbeatDeployment, HeldDeployments, RegisterRunner,
};
use slipway_client::Client;

use crate::git::{CommitFiles, Mirrors};
use crate::report::{Mask, Reporter};
use crate::spec::{self, Context};
use crate::swarm::{self, ChangeKind, Engine, Outcome};

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
    /// The runner's name: its token's subject.
    pub name: String,
    pub labels: Vec<String>,
    pub mirrors: Mirrors,
    pub engine: Engine,
    /// Values of the secrets file: for interpolation and swarm secrets, masked in logs.
    pub secrets: BTreeMap<String, String>,
    /// How often a held deployment's lease is renewed (a third of the lease).
    pub heartbeat: Duration,
    /// How many deployments (of different environments) it carries out at once.
    pub concurrency: usize,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the end of a deployment is retried while the API cannot be reached.
const FINISH_PATIENCE: Duration = Duration::from_secs(600);

/// Runs until `shutdown` resolves: resumes what this runner held, then takes
/// claimable deployments as they come, up to `concurrency` at once,
/// reconnecting to the API with backoff. Work in flight is dropped at shutdown
/// (its lease lets another start of this runner resume it).
pub async fn run(runner: Runner, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut slots = Slots::new(runner.concurrency);
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            result = runner.session(&mut slots) => {
                match result {
                    Ok(()) => backoff = Duration::from_millis(500),
                    Err(err) => tracing::warn!(%err, "lost the API; reconnecting in {backoff:?}"),
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The deployments a runner carries out at once.
struct Slots {
    tasks: tokio::task::JoinSet<()>,
    free: Arc<tokio::sync::Semaphore>,
    /// Ids in flight, so a reconnect does not resume one twice.
    running: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Woken when a deployment ends: something queued may be claimable now.
    freed: Arc<tokio::sync::Notify>,
}

impl Slots {
    fn new(concurrency: usize) -> Self {
        Self {
            tasks: tokio::task::JoinSet::new(),
            free: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            running: Default::default(),
            freed: Default::default(),
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.running.lock().map(|r| r.contains(id)).unwrap_or(false)
    }

    /// Runs `work` on its own task, holding `permit` until it ends.
    fn start(
        &mut self,
        runner: &Runner,
        work: Work,
        resumed: bool,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        while self.tasks.try_join_next().is_some() {}
        if let Ok(mut running) = self.running.lock() {
            running.insert(work.id.clone());
        }
        let (runner, running, freed) = (runner.clone(), self.running.clone(), self.freed.clone());
        self.tasks.spawn(async move {
            let id = work.id.clone();
            runner.execute(work, resumed).await;
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
            })
            .await?
            .register_runner
            .name;
        let mut queued = self
            .client
            .subscribe::<DeploymentQueued>(deployment_queued::Variables)
            .await?;
        tracing::info!(runner = %self.name, api = self.client.base(), "listening for deployments");
        // What this runner held before a restart: reconcile with the swarm.
        let held = self
            .client
            .run::<HeldDeployments>(held_deployments::Variables)
            .await?;
        for edge in held.deployments.edges {
            let mine = edge.node.runner.as_deref() == Some(me.as_str());
            if mine && !slots.is_running(&edge.node.work.id) {
                let work = Work::from(edge.node.work);
                tracing::info!(deployment = %work.name, "resuming a deployment this runner held");
                let permit = slots
                    .free
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("open semaphore");
                slots.start(self, work, true, permit);
            }
        }
        // What became claimable while nobody listened.
        self.claim_claimable(slots).await?;
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
                () = freed.notified() => self.claim_claimable(slots).await?,
            }
        }
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
    /// one when a slot frees, takes it otherwise.
    async fn try_claim(&self, slots: &mut Slots, work: Work) {
        let Ok(permit) = slots.free.clone().try_acquire_owned() else {
            tracing::debug!(deployment = %work.name, "no free slot; leaving it queued");
            return;
        };
        let claimed = self
            .client
            .run::<ClaimDeployment>(claim_deployment::Variables {
                id: work.id.clone(),
            })
            .await;
        match claimed {
            Ok(data) => slots.start(self, Work::from(data.claim_deployment), false, permit),
            Err(err) if err.code() == Some("CONFLICT") => {
                tracing::debug!(deployment = %work.name, %err, "not claimable");
            }
            Err(err) => tracing::warn!(deployment = %work.name, %err, "claim failed"),
        }
    }

    /// Carries a claimed deployment to its end, heartbeating meanwhile.
    pub async fn execute(&self, work: Work, resumed: bool) {
        let mask = Mask::new(self.secrets.values().cloned());
        let reporter = Reporter::start(
            self.client.clone(),
            work.id.clone(),
            mask.clone(),
            work.log_count,
        );
        let cancel = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = AbortOnDrop(tokio::spawn(heartbeat_loop(
            self.client.clone(),
            work.id.clone(),
            self.heartbeat,
            cancel.clone(),
            lost.clone(),
        )));
        if resumed {
            reporter.line(format!(
                "runner {} restarted; reconciling {} with the swarm",
                self.name, work.name
            ));
        }
        let (status, message, services) = self.deploy(&work, &reporter, &cancel, &lost).await;
        reporter.line(format!("{}: {message}", status_word(&status)));
        // Lines first, then the end: a finished deployment takes no more lines.
        // The heartbeat goes on meanwhile, so a slow API does not cost the lease.
        reporter.flush().await;
        if lost.load(Ordering::SeqCst) {
            tracing::warn!(deployment = %work.name, "the lease was lost; not reporting the end");
            return;
        }
        let variables = finish_deployment::Variables {
            id: work.id.clone(),
            status,
            message: Some(mask.apply(&message)),
            services,
        };
        // The end is worth waiting for: an API restarting now must not turn a
        // converged rollout into a lost runner.
        let mut wait = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + FINISH_PATIENCE;
        loop {
            match self.client.run::<FinishDeployment>(variables.clone()).await {
                Ok(_) => break,
                Err(err) if err.is_transient() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(deployment = %work.name, %err, "reporting the end; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(err) => {
                    tracing::error!(deployment = %work.name, %err, "could not report the end");
                    break;
                }
            }
        }
        drop(heartbeat);
    }

    async fn deploy(
        &self,
        work: &Work,
        reporter: &Reporter,
        cancel: &AtomicBool,
        lost: &AtomicBool,
    ) -> (
        finish_deployment::DeploymentStatus,
        String,
        Option<Vec<finish_deployment::ServiceImageInput>>,
    ) {
        use finish_deployment::DeploymentStatus as Status;
        let failed = |message: String| (Status::FAILED, message, None);

        let _ = reporter
            .progress(
                Some(DeploymentPhase::CLONING),
                &format!("fetching {} at {}", work.repository, work.reference),
                None,
            )
            .await;
        let fetched = match self
            .mirrors
            .fetch(
                &work.repository,
                &work.reference,
                work.sha.as_deref(),
                self.fetch_timeout,
            )
            .await
        {
            Ok(fetched) => fetched,
            Err(err) => return failed(err.to_string()),
        };
        reporter.line(format!(
            "fetched {} ({}): {} bytes in {} ms",
            fetched.sha,
            fetched.how,
            fetched.received_bytes,
            fetched.took.as_millis()
        ));

        let _ = reporter
            .progress(
                Some(DeploymentPhase::PLANNING),
                &format!("reading {} at {}", work.spec_path, &fetched.sha[..7]),
                Some(&fetched.sha),
            )
            .await;
        let ctx = Context {
            application: work.application.clone(),
            environment: work.environment.clone(),
            deployment: work.id.clone(),
            sha: fetched.sha.clone(),
            ref_name: work.reference.clone(),
            secrets: self.secrets.clone(),
        };
        let plan = match CommitFiles::open(&fetched.mirror, &fetched.sha)
            .map_err(|e| e.to_string())
            .and_then(|files| spec::load(&files, &work.spec_path, &ctx).map_err(|e| e.to_string()))
        {
            Ok(plan) => plan,
            Err(err) => return failed(err),
        };
        for warning in &plan.warnings {
            reporter.line(format!("warning: {warning}"));
        }
        if cancel.load(Ordering::SeqCst) {
            return (
                Status::CANCELLED,
                "cancelled before anything changed".into(),
                None,
            );
        }

        let _ = reporter
            .progress(
                Some(DeploymentPhase::UPDATING),
                &format!(
                    "applying stack {} ({} services)",
                    plan.stack,
                    plan.services.len()
                ),
                None,
            )
            .await;
        let applied = match swarm::apply(&self.engine, &plan).await {
            Ok(applied) => applied,
            Err(err) => return failed(err.to_string()),
        };
        for change in &applied.changes {
            reporter.line(format!("{}: {}", change.name, kind_word(change.kind)));
        }

        let _ = reporter
            .progress(
                Some(DeploymentPhase::VERIFYING),
                "waiting for services to converge",
                None,
            )
            .await;
        let is_cancelled = || cancel.load(Ordering::SeqCst);
        let mut progress = |service: &str, state: &str| {
            reporter.line(format!("{service}: {state}"));
        };
        let outcome = swarm::converge(
            &self.engine,
            &applied,
            plan.timeout,
            &is_cancelled,
            &mut progress,
        )
        .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Failed(err.to_string()),
        };
        if lost.load(Ordering::SeqCst) {
            // Another runner may hold the environment now: leave the swarm alone.
            return failed("the lease was lost; the swarm was left as it was".into());
        }
        match outcome {
            Outcome::Converged => {
                if let Err(err) = swarm::apply::remove_dropped(&self.engine, &applied).await {
                    reporter.line(format!(
                        "warning: removing services no longer in the stack: {err}"
                    ));
                }
                if let Err(err) = swarm::apply::prune_data(&self.engine, &plan).await {
                    reporter.line(format!(
                        "warning: removing unused configs and secrets: {err}"
                    ));
                }
                let mut services = Vec::new();
                for service in &plan.services {
                    let image = service
                        .spec
                        .task_template
                        .as_ref()
                        .and_then(|t| t.container_spec.as_ref())
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default();
                    let digest = swarm::image_digest(&self.engine, &image).await;
                    services.push(finish_deployment::ServiceImageInput {
                        name: service.name.clone(),
                        image,
                        digest,
                    });
                }
                let unchanged = applied
                    .changes
                    .iter()
                    .all(|c| c.kind == ChangeKind::Unchanged);
                let message = if unchanged {
                    format!("{} unchanged at {}", plan.stack, &fetched.sha[..7])
                } else {
                    format!("{} converged at {}", plan.stack, &fetched.sha[..7])
                };
                (Status::SUCCEEDED, message, Some(services))
            }
            Outcome::Failed(why) if plan.rollback_on_failure => {
                let _ = reporter
                    .progress(Some(DeploymentPhase::ROLLING_BACK), &why, None)
                    .await;
                reporter.line(format!("rolling back: {why}"));
                match swarm::rollback(&self.engine, &applied, plan.timeout).await {
                    Ok(()) => failed(format!("rolled back: {why}")),
                    Err(err) => failed(format!("{why}; the rollback failed too: {err}")),
                }
            }
            Outcome::Failed(why) => failed(why),
            Outcome::Cancelled => {
                let _ = reporter
                    .progress(
                        Some(DeploymentPhase::ROLLING_BACK),
                        "cancel requested",
                        None,
                    )
                    .await;
                match swarm::rollback(&self.engine, &applied, plan.timeout).await {
                    Ok(()) => (
                        Status::CANCELLED,
                        "cancelled; rolled back what it changed".into(),
                        None,
                    ),
                    Err(err) => (
                        Status::CANCELLED,
                        format!("cancelled; the rollback failed: {err}"),
                        None,
                    ),
                }
            }
        }
    }
}

/// Stops a task when its owner goes away, e.g. a deployment's heartbeat when
/// the work on it is dropped mid-way.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn status_word(status: &finish_deployment::DeploymentStatus) -> &'static str {
    use finish_deployment::DeploymentStatus as Status;
    match status {
        Status::SUCCEEDED => "succeeded",
        Status::CANCELLED => "cancelled",
        _ => "failed",
    }
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Unchanged => "unchanged",
        ChangeKind::Removed => "no longer in the stack: removed once the rest has converged",
    }
}

/// Renews the lease every `every`; raises `cancel` when the API says a cancel
/// was requested and `lost` when the runner no longer holds the deployment.
async fn heartbeat_loop(
    client: Client,
    id: String,
    every: Duration,
    cancel: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match client
            .run::<HeartbeatDeployment>(heartbeat_deployment::Variables { id: id.clone() })
            .await
        {
            Ok(data) => {
                if data.heartbeat_deployment.cancel_requested {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            Err(err) if err.code() == Some("CONFLICT") => {
                tracing::warn!(deployment = %id, %err, "no longer holding the deployment");
                lost.store(true, Ordering::SeqCst);
                cancel.store(true, Ordering::SeqCst);
                return;
            }
            Err(err) => tracing::warn!(deployment = %id, %err, "heartbeat failed; retrying"),
        }
    }
}

//! Slipway's API: the system of record for applications, environments and
//! deployments, served as GraphQL over HTTP and WebSocket.
//!
//! # Layout
//!
//! - [`config`]: the `slipway-api` command line.
//! - [`http`]: connections and their timeouts; routes — `/graphql` (GraphQL
//!   over HTTP: POST, GET for queries, GraphiQL for browsers), `/graphql/ws`,
//!   `/healthz`, `/readyz` — and WebSocket authentication, keepalive and
//!   expiry.
//! - [`web`]: the web UI's pages, forms and live streams; [`sessions`] its
//!   sign-ins.
//! - [`graphql`]: the schema (queries, mutations, subscriptions); each field
//!   checks the caller's role with [`auth::RoleGuard`]; [`graphql::cost`]
//!   prices queries.
//! - [`auth`]: HS256 JWTs and roles.
//! - Domain modules, each owning its rules and its SQL: [`applications`]
//!   (and environment locks; [`repository`] keeps credentials out of their
//!   URLs), [`deployments`] (creation, history, cancel, the
//!   queue), [`leases`] (claim, heartbeat, progress, finish, expiry), [`logs`],
//!   [`runners`], [`gates`] (what a queued deployment waits for: freeze
//!   windows, approvals) with [`checks`] (required CI checks, as the
//!   provider reports them).
//! - [`notifications`]: where each environment's deployments are told
//!   (Slack, signed webhooks) and the outbox the database's triggers fill in
//!   the transaction of each change; [`notifications::outbox`] sends it.
//! - [`audit`]: the audit log of every mutation, web UI action and chat
//!   command; [`chatops`]: Slack's slash command.
//! - [`db`]: connection, append-only migrations and entities. Only this crate
//!   knows the SQL schema.
//! - [`view`]: the deployment read model (a deployment with its application
//!   and environment), which every other module may use.
//! - [`events`]: the in-process stream behind subscriptions, fed after commit;
//!   events name what changed by id and carry the rows already loaded.
//! - [`clock`]: "now", movable in tests.
//! - [`metrics`]: Prometheus metrics on a listener of their own, read from
//!   the database at each scrape; [`dora`] the delivery figures
//!   (`Environment.dora`): deploy frequency, change failure rate, time to
//!   restore.

pub mod applications;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod chatops;
pub mod checks;
pub mod clock;
pub mod commits;
pub mod config;
pub mod db;
pub mod deployments;
pub mod dora;
pub mod drift;
pub mod error;
pub mod events;
pub mod gates;
pub mod graphql;
pub mod http;
pub mod leases;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod notifications;
pub mod plans;
pub mod releases;
pub mod replicas;
pub mod repository;
pub mod runners;
pub mod sessions;
pub mod state;
pub mod view;
pub mod web;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::clock::Clock;
pub use crate::state::{AppState, Settings, Timeouts};

/// How often expired leases are looked for.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// Where the API listens: its own listener and, when metrics are on, theirs.
/// A `TcpListener` alone is the API without metrics.
#[derive(Debug)]
pub struct Listeners {
    /// GraphQL, the web UI and the health checks.
    pub api: TcpListener,
    /// `GET /metrics` ([`metrics::serve`]); `None` keeps metrics off.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(api: TcpListener) -> Self {
        Self { api, metrics: None }
    }
}

/// Serves the API on `listeners` until `shutdown` resolves, expiring the leases
/// of lost runners in the background. WebSocket connections get a runtime of
/// their own (one thread), so subscriptions cannot starve requests. Slow and
/// idle connections are closed after `state.settings.timeouts`.
pub async fn serve(
    state: AppState,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listeners {
        api: listener,
        metrics,
    } = listeners.into();
    let subscriptions = SubscriptionRuntime::start()?;
    // Runners could not renew their leases while no API was up.
    let instance =
        replicas::new_instance().map_err(|err| std::io::Error::other(err.message().to_owned()))?;
    match replicas::start(&state, &instance).await {
        Ok(replicas::Renewed::NoneOtherServing(other)) => {
            tracing::info!(%instance, %other, "another replica is serving: leases kept as they are")
        }
        Ok(replicas::Renewed::All(0) | replicas::Renewed::SinceLastSeen(0, _)) => {}
        Ok(replicas::Renewed::All(n)) => {
            tracing::info!(%instance, "renewed the leases of {n} deployment(s) in progress")
        }
        Ok(replicas::Renewed::SinceLastSeen(n, at)) => tracing::info!(
            %instance,
            "renewed the leases of {n} deployment(s) in progress when the last replica was seen at {at}"
        ),
        Err(err) => tracing::error!(
            ?err,
            "could not record this replica or renew leases at start"
        ),
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(leases::reap(state.clone(), instance, REAP_EVERY, {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }));
    let bus = state.events.is_shared().then(|| {
        let mut stopped = stopped.clone();
        tokio::spawn(bus::follow(state.clone(), async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let outbox = tokio::spawn(notifications::outbox::run(state.clone(), {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }));
    let metrics = metrics.map(|listener| {
        let mut stopped = stopped.clone();
        tokio::spawn(metrics::serve(state.clone(), listener, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let router = http::router_with(state.clone(), subscriptions.handle.clone());
    let events = state.events.clone();
    let result = http::serve_connections(listener, router, &state.settings.timeouts, async move {
        shutdown.await;
        events.close();
        let _ = stop.send(true);
    })
    .await;
    let _ = reaper.await;
    let _ = outbox.await;
    if let Some(bus) = bus {
        let _ = bus.await;
    }
    if let Some(metrics) = metrics {
        if let Ok(Err(err)) = metrics.await {
            tracing::error!(%err, "the metrics listener failed");
        }
    }
    drop(subscriptions);
    result
}

/// A one-thread runtime for WebSocket connections, on a thread of its own so
/// it can be stopped from async code.
struct SubscriptionRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl SubscriptionRuntime {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("slipway-subscriptions")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("slipway-subscriptions-owner".into())
            .spawn(move || {
                let _ = stopped.recv();
                runtime.shutdown_background();
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for SubscriptionRuntime {
    fn drop(&mut self) {
        // Dropping the sender wakes the owner thread, which shuts the runtime down.
        self.stop.take();
    }
}

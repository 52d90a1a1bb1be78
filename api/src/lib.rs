//! Slipway's API: the system of record for applications, environments and
//! deployments, served as GraphQL over HTTP and WebSocket.
//!
//! # Layout
//!
//! - [`config`]: the `slipway-api` command line.
//! - [`http`]: routes — `/graphql` (POST, and GraphiQL on GET), `/graphql/ws`,
//!   `/healthz`, `/readyz` — and WebSocket authentication.
//! - [`graphql`]: the schema (queries, mutations, subscriptions); each field
//!   checks the caller's role with [`auth::RoleGuard`].
//! - [`auth`]: HS256 JWTs and roles.
//! - Domain modules, each owning its rules and its SQL: [`applications`]
//!   (and environment locks), [`deployments`] (creation, history, cancel, the
//!   queue), [`leases`] (claim, heartbeat, progress, finish, expiry), [`logs`],
//!   [`runners`].
//! - [`db`]: connection, append-only migrations and entities. Only this crate
//!   knows the SQL schema.
//! - [`events`]: the in-process stream behind subscriptions, fed after commit.
//! - [`clock`]: "now", movable in tests.

pub mod applications;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod deployments;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod leases;
pub mod logs;
pub mod runners;
pub mod state;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::clock::Clock;
pub use crate::state::{AppState, Settings};

/// How often expired leases are looked for.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// Serves the API on `listener` until `shutdown` resolves, expiring the leases
/// of lost runners in the background.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(leases::reap(state.clone(), REAP_EVERY, {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }));
    let result = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    let _ = reaper.await;
    result
}

//! What every request handler and background task shares.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use sea_orm::DatabaseConnection;

use crate::auth::Keys;
use crate::clock::Clock;
use crate::events::Events;
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub events: Events,
    pub keys: Keys,
    pub settings: Arc<Settings>,
    /// What this process measures itself (GraphQL timings), for `/metrics`.
    pub metrics: Metrics,
}

/// Behaviour that deployments of this API share.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// Where people reach this API (for links in answers), if known.
    pub public_url: Option<String>,
    /// Where the provider takes hooks, if known (the setup page shows it).
    pub hooks_url: Option<String>,
    /// Slack's slash commands, when chat-ops is configured.
    pub slack: Option<crate::chatops::SlackCommands>,
    /// The auth token Sentry notifications use unless they bring their own.
    pub sentry_token: Option<slipway_secret::Secret>,
    /// How long clients may take, so a slow or silent one cannot hold a
    /// connection for ever.
    pub timeouts: Timeouts,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::seconds(30),
            public_url: None,
            hooks_url: None,
            slack: None,
            sentry_token: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// The API's timeouts at the edge. Tests shorten them.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// How long a request's head (request line and headers) may take to
    /// arrive. hyper starts this clock whenever a connection waits for a
    /// request, so it is also how long a keep-alive connection may sit idle.
    pub header: StdDuration,
    /// How long a request's body may take to arrive, once its head has.
    pub body: StdDuration,
    /// How long a client may take to read a heavy answer, during which no
    /// other heavy query runs (see `graphql::HEAVY_COST`).
    pub answer: StdDuration,
    /// How long a WebSocket may take to send `connection_init`.
    pub ws_init: StdDuration,
    /// How often the API pings a WebSocket client.
    pub ws_ping: StdDuration,
    /// How long a WebSocket client may stay silent (no pong, no message)
    /// before the API drops it; also how long a write to it may block.
    pub ws_silence: StdDuration,
    /// How often a live page's stream checks that its session still lasts:
    /// signing out ends the session's streams within this.
    pub session_check: StdDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header: StdDuration::from_secs(30),
            body: StdDuration::from_secs(60),
            answer: StdDuration::from_secs(60),
            ws_init: StdDuration::from_secs(10),
            ws_ping: StdDuration::from_secs(15),
            ws_silence: StdDuration::from_secs(45),
            session_check: StdDuration::from_secs(20),
        }
    }
}

impl AppState {
    pub fn new(db: DatabaseConnection, keys: Keys, clock: Clock, settings: Settings) -> Self {
        // Several replicas may share a PostgreSQL database; its event log
        // tells each of them every change.
        let events = match db {
            DatabaseConnection::SqlxPostgresPoolConnection(_) => Events::shared(4096),
            _ => Events::new(4096),
        };
        Self {
            db,
            clock,
            events,
            keys,
            settings: Arc::new(settings),
            metrics: Metrics::default(),
        }
    }
}

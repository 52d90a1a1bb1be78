//! What every request handler and background task shares.

use std::sync::Arc;

use chrono::Duration;
use sea_orm::DatabaseConnection;

use crate::auth::Keys;
use crate::clock::Clock;
use crate::events::Events;

#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub events: Events,
    pub keys: Keys,
    pub settings: Arc<Settings>,
}

/// Behaviour that deployments of this API share.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// Where people reach this API (for links in answers), if known.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::seconds(30),
            public_url: None,
        }
    }
}

impl AppState {
    pub fn new(db: DatabaseConnection, keys: Keys, clock: Clock, settings: Settings) -> Self {
        Self {
            db,
            clock,
            events: Events::new(4096),
            keys,
            settings: Arc::new(settings),
        }
    }
}

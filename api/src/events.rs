//! The in-process event stream behind subscriptions. Events are published only
//! after the transaction that caused them has committed, so a subscriber never
//! sees a change that is not in the database.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::db::entities::log_line;
use crate::deployments::DeploymentView;

#[derive(Clone, Debug)]
pub enum Event {
    /// A deployment was created or changed state, phase or message.
    Deployment(Arc<DeploymentView>),
    /// A deployment became claimable: the oldest queued one of an environment
    /// that has none in progress.
    Queued(Arc<DeploymentView>),
    /// Log lines of a deployment were stored.
    Logs {
        deployment_id: i64,
        lines: Arc<Vec<log_line::Model>>,
    },
}

#[derive(Clone, Debug)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Events {
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, event: Event) {
        // No subscriber is not an error: the change is in the database.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

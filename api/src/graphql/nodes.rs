//! The schema's view of what runs where: an environment's services as a
//! runner last saw them on the swarm, task by task and node by node, and how
//! that differs from the release (see [`crate::nodes`]).

use async_graphql::{InputObject, SimpleObject};
use chrono::{DateTime, Utc};

use crate::nodes;
use crate::view::ServiceImage;

/// An environment's stack as a runner last saw it on the swarm.
#[derive(SimpleObject)]
pub(crate) struct EnvironmentNodes {
    pub observed_at: DateTime<Utc>,
    /// The runner that looked.
    pub observed_by: String,
    pub services: Vec<ObservedService>,
    /// Whether every task of every service of the release runs the
    /// release's digest, every replica is up, and nothing else runs:
    /// `drift` is empty. False when there is no release.
    pub consistent: bool,
    /// How it differs, a sentence each: "shop_web on node-2 runs
    /// 9f8e7d6c5b4a, not the release's 1a2b3c4d5e6f", "shop_web runs 1 of 3
    /// tasks", "shop_worker is not on the swarm: removed since the release".
    pub drift: Vec<String>,
}

impl EnvironmentNodes {
    pub(super) fn of(
        observed: Vec<nodes::ObservedService>,
        at: DateTime<Utc>,
        by: String,
        release: Option<&[ServiceImage]>,
    ) -> Self {
        let drift = match release {
            Some(release) => nodes::drift(release, &observed),
            None => vec!["the environment has no release".into()],
        };
        Self {
            observed_at: at,
            observed_by: by,
            services: observed.into_iter().map(ObservedService::of).collect(),
            consistent: drift.is_empty(),
            drift,
        }
    }
}

/// One service as the swarm runs it.
#[derive(SimpleObject)]
pub(crate) struct ObservedService {
    /// `<stack>_<service>`.
    pub name: String,
    /// The replicas it asks for; null for a global service.
    pub replicas: Option<u64>,
    /// How many of its tasks run.
    pub running: u64,
    pub tasks: Vec<ObservedTask>,
}

impl ObservedService {
    fn of(s: nodes::ObservedService) -> Self {
        Self {
            name: s.name.clone(),
            replicas: s.replicas,
            running: s.running() as u64,
            tasks: s.tasks.into_iter().map(ObservedTask::of).collect(),
        }
    }
}

/// One task of a service: where it runs, what, and how it is.
#[derive(SimpleObject)]
pub(crate) struct ObservedTask {
    /// The node's host name; null while the task has none.
    pub node: Option<String>,
    /// The image digest (`sha256:…`) it runs; null when unpinned.
    pub digest: Option<String>,
    /// The engine's state: running, pending, preparing, starting, failed, …
    pub state: String,
    pub error: Option<String>,
}

impl ObservedTask {
    fn of(t: nodes::ObservedTask) -> Self {
        Self {
            node: t.node,
            digest: t.digest,
            state: t.state,
            error: t.error,
        }
    }
}

/// A service as a runner sees it on the swarm (`reportObserved`).
#[derive(InputObject)]
pub(crate) struct ObservedServiceInput {
    pub name: String,
    pub replicas: Option<u64>,
    pub tasks: Vec<ObservedTaskInput>,
}

#[derive(InputObject)]
pub(crate) struct ObservedTaskInput {
    pub node: Option<String>,
    pub digest: Option<String>,
    pub state: String,
    pub error: Option<String>,
}

impl From<ObservedServiceInput> for nodes::ObservedService {
    fn from(s: ObservedServiceInput) -> Self {
        Self {
            name: s.name,
            replicas: s.replicas,
            tasks: s
                .tasks
                .into_iter()
                .map(|t| nodes::ObservedTask {
                    node: t.node,
                    digest: t.digest,
                    state: t.state,
                    error: t.error,
                })
                .collect(),
        }
    }
}

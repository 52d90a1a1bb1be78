//! What runs where, node by node. Runners report, for each environment they
//! may deploy, every service of its stack as the swarm runs it: each task's
//! node, the image digest it runs, its state (`reportObserved`), after every
//! deployment and on a timer. Against the environment's release that tells
//! whether every node runs the release's digests — and, when not, how it
//! drifted: a node still on an old digest, a task stuck pending, fewer tasks
//! running than the service asks for, a service removed by hand, a service
//! the release does not have.

use std::collections::BTreeMap;

use sea_orm::{ActiveModelTrait, Set};
use serde::{Deserialize, Serialize};

use crate::db::entities::{application, environment};
use crate::error::{quote, ApiError, ApiResult};
use crate::state::AppState;
use crate::view::ServiceImage;

/// The most services and tasks a report holds, and the longest text in it.
const MAX_SERVICES: usize = 500;
const MAX_TASKS: usize = 1000;
const MAX_TEXT: usize = 1024;

/// One service as the swarm runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedService {
    /// `<stack>_<service>`.
    pub name: String,
    /// The replicas it asks for (replicated services); `None` for global ones.
    pub replicas: Option<u64>,
    /// Its current tasks: those the swarm wants running.
    pub tasks: Vec<ObservedTask>,
}

/// One task of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedTask {
    /// The node's host name (its id when the node is gone).
    pub node: Option<String>,
    /// The image digest (`sha256:…`) its spec pins; `None` when unpinned.
    pub digest: Option<String>,
    /// The engine's state of the task (`running`, `pending`, `failed`, …).
    pub state: String,
    /// Why it is not running, when the engine says.
    pub error: Option<String>,
}

impl ObservedService {
    pub fn running(&self) -> usize {
        self.tasks.iter().filter(|t| t.state == "running").count()
    }
}

fn check_text(what: &str, text: &str) -> ApiResult<()> {
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(ApiError::BadInput(format!(
            "{what} must be at most {MAX_TEXT} characters without control characters"
        )));
    }
    Ok(())
}

fn validate(services: &[ObservedService]) -> ApiResult<()> {
    if services.len() > MAX_SERVICES {
        return Err(ApiError::BadInput(format!(
            "a report holds at most {MAX_SERVICES} services, not {}",
            services.len()
        )));
    }
    for (i, s) in services.iter().enumerate() {
        if s.name.is_empty() {
            return Err(ApiError::BadInput("a service's `name` is empty".into()));
        }
        check_text("a service's `name`", &s.name)?;
        if services[..i].iter().any(|other| other.name == s.name) {
            return Err(ApiError::BadInput(format!(
                "service {} is reported twice",
                quote(&s.name)
            )));
        }
        if s.tasks.len() > MAX_TASKS {
            return Err(ApiError::BadInput(format!(
                "service {} reports {} tasks; at most {MAX_TASKS}",
                quote(&s.name),
                s.tasks.len()
            )));
        }
        for t in &s.tasks {
            for (what, text) in [
                ("a task's `node`", t.node.as_deref()),
                ("a task's `digest`", t.digest.as_deref()),
                ("a task's `state`", Some(t.state.as_str())),
                ("a task's `error`", t.error.as_deref()),
            ] {
                if let Some(text) = text {
                    check_text(what, text)?;
                }
            }
        }
    }
    Ok(())
}

/// Stores what runner `runner` saw of the environment's stack, replacing
/// what was seen before.
pub async fn report(
    state: &AppState,
    runner: &str,
    application: &str,
    environment: &str,
    services: Vec<ObservedService>,
) -> ApiResult<(environment::Model, application::Model)> {
    validate(&services)?;
    let (env, app) = crate::gates::environment_of(&state.db, application, environment).await?;
    crate::runners::check_may_take(
        state,
        runner,
        &env,
        &format!("environment `{}` of {}", env.name, app.name),
    )
    .await?;
    let json = serde_json::to_string(&services).expect("observed services are JSON");
    let changed = env.observed.as_deref() != Some(json.as_str());
    let env = environment::ActiveModel {
        id: Set(env.id),
        observed: Set(Some(json)),
        observed_at: Set(Some(state.clock.now())),
        observed_by: Set(Some(runner.to_owned())),
        ..Default::default()
    }
    .update(&state.db)
    .await?;
    // Its page shows it live; a report that says what the last one said
    // changes nothing there.
    if changed {
        state.events.environment_changed(&env);
    }
    Ok((env, app))
}

/// What a runner last saw of `env`, if one reported.
pub fn observed(env: &environment::Model) -> ApiResult<Option<Vec<ObservedService>>> {
    let Some(json) = env.observed.as_deref() else {
        return Ok(None);
    };
    serde_json::from_str(json).map(Some).map_err(|err| {
        ApiError::internal(format!(
            "environment {} has an unreadable observation: {err}",
            env.id
        ))
    })
}

/// A digest's first 12 hex characters, for messages.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// How what runs differs from the release's services, one sentence each;
/// empty when every node runs the release's digests with every replica up.
pub fn drift(release: &[ServiceImage], observed: &[ObservedService]) -> Vec<String> {
    let seen: BTreeMap<&str, &ObservedService> =
        observed.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut drift = Vec::new();
    for service in release {
        let Some(runs) = seen.get(service.name.as_str()) else {
            drift.push(format!(
                "{} is not on the swarm: removed since the release",
                service.name
            ));
            continue;
        };
        for task in &runs.tasks {
            let node = task.node.as_deref().unwrap_or("no node yet");
            if let (Some(want), Some(has)) = (&service.digest, &task.digest) {
                if want != has {
                    drift.push(format!(
                        "{} on {node} runs {}, not the release's {}",
                        service.name,
                        short(has),
                        short(want)
                    ));
                }
            }
            if task.state != "running" {
                drift.push(format!(
                    "{} on {node} is {}{}",
                    service.name,
                    task.state,
                    task.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(replicas) = runs.replicas {
            let running = runs.running() as u64;
            if running < replicas {
                drift.push(format!(
                    "{} runs {running} of {replicas} tasks",
                    service.name
                ));
            }
        }
    }
    for runs in observed {
        if !release.iter().any(|s| s.name == runs.name) {
            drift.push(format!("{} runs but is not in the release", runs.name));
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(name: &str, digest: &str) -> ServiceImage {
        ServiceImage {
            name: name.into(),
            image: format!("shop/web:1@{digest}"),
            digest: Some(digest.into()),
            spec_hash: None,
        }
    }

    fn task(node: &str, digest: &str, state: &str) -> ObservedTask {
        ObservedTask {
            node: Some(node.into()),
            digest: Some(digest.into()),
            state: state.into(),
            error: None,
        }
    }

    const NEW: &str = "sha256:1111111111111111aaaa";
    const OLD: &str = "sha256:2222222222222222bbbb";

    #[test]
    fn every_node_on_the_release_s_digest_is_no_drift() {
        let observed = [ObservedService {
            name: "shop_web".into(),
            replicas: Some(2),
            tasks: vec![task("n1", NEW, "running"), task("n2", NEW, "running")],
        }];
        assert!(drift(&[release("shop_web", NEW)], &observed).is_empty());
    }

    #[test]
    fn old_digests_pending_tasks_and_services_changed_by_hand_are_drift() {
        let observed = [
            ObservedService {
                name: "shop_web".into(),
                replicas: Some(3),
                tasks: vec![
                    task("n1", NEW, "running"),
                    task("n2", OLD, "running"),
                    ObservedTask {
                        error: Some("no suitable node".into()),
                        ..task("n3", NEW, "pending")
                    },
                ],
            },
            ObservedService {
                name: "shop_cron".into(),
                replicas: Some(0),
                tasks: vec![],
            },
            ObservedService {
                name: "shop_debug".into(),
                replicas: None,
                tasks: vec![],
            },
        ];
        let release = [
            release("shop_web", NEW),
            release("shop_cron", NEW),
            release("shop_worker", NEW),
        ];
        assert_eq!(
            drift(&release, &observed),
            [
                "shop_web on n2 runs 222222222222, not the release's 111111111111",
                "shop_web on n3 is pending: no suitable node",
                "shop_web runs 2 of 3 tasks",
                "shop_worker is not on the swarm: removed since the release",
                "shop_debug runs but is not in the release",
            ]
        );
    }
}

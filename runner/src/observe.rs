//! What runs where, told to the API: every `every` (and after each
//! deployment this runner ends), for each environment with a release that
//! this runner may deploy, the stack its release's services belong to, as
//! the swarm runs it task by task ([`crate::swarm::observe`]), goes to
//! `reportObserved`. The API compares it with the release
//! (`Environment.nodes`): a node on an old digest, a task stuck pending, a
//! service removed or added by hand show there as drift.

use std::time::Duration;

use slipway_client::operations::{
    observable_environments, report_observed, ObservableEnvironments, ReportObserved,
};

use crate::swarm::observe;
use crate::work::Runner;

/// Observes and reports every `every` until dropped.
pub async fn run(runner: Runner, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match report(&runner, None).await {
            Ok(n) => tracing::debug!(environments = n, "reported what runs where"),
            Err(err) => tracing::warn!(%err, "could not report what runs where"),
        }
    }
}

/// Reports the environments this runner may deploy (only `only`, an
/// application and environment, when given); returns how many.
pub async fn report(runner: &Runner, only: Option<(&str, &str)>) -> Result<usize, String> {
    let listed = runner
        .client
        .run::<ObservableEnvironments>(observable_environments::Variables)
        .await
        .map_err(|err| err.to_string())?;
    let mut reported = 0;
    for app in listed.applications {
        for env in app.environments {
            if only.is_some_and(|(a, e)| (a, e) != (app.name.as_str(), env.name.as_str())) {
                continue;
            }
            let mine = env.runner_labels.iter().all(|l| runner.labels.contains(l));
            let Some(release) = env.release.filter(|_| mine) else {
                continue;
            };
            let names: Vec<String> = release.services.into_iter().map(|s| s.name).collect();
            let services = match observe::stack_of(&runner.engine, &names)
                .await
                .map_err(|err| err.to_string())?
            {
                Some(stack) => observe::stack(&runner.engine, &stack)
                    .await
                    .map_err(|err| err.to_string())?,
                // None of the release's services is there any more.
                None => Vec::new(),
            };
            runner
                .client
                .run::<ReportObserved>(report_observed::Variables {
                    application: app.name.clone(),
                    environment: env.name.clone(),
                    services: services.into_iter().map(input).collect(),
                })
                .await
                .map_err(|err| err.to_string())?;
            reported += 1;
        }
    }
    Ok(reported)
}

fn input(s: observe::ObservedService) -> report_observed::ObservedServiceInput {
    report_observed::ObservedServiceInput {
        name: s.name,
        replicas: s.replicas.map(|r| r as i64),
        tasks: s
            .tasks
            .into_iter()
            .map(|t| report_observed::ObservedTaskInput {
                node: t.node,
                digest: t.digest,
                state: t.state,
                error: t.error,
            })
            .collect(),
    }
}

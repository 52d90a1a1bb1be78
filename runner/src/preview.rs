//! Plans asked for through the API (`requestPlan`): what deploying a ref
//! would change, answered before anyone deploys.
//!
//! A preview is read-only. It fetches the commit into the repository's
//! mirror, plans it as a deployment would, resolves every image to the
//! digest a deployment would pin now (through the registry, never pulling),
//! and compares the plan with what the engine runs ([`swarm::diff`]); it
//! takes no lease and writes nothing to the swarm. The answer is the JSON
//! `slipway-runner plan --diff` prints, or the error a deployment would
//! have stopped with (a spec error names the file and the field).

use std::time::Duration;

use slipway_client::operations::{
    claim_plan, finish_plan, plan_requested, requested_plans, FinishPlan,
};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::git::{redact_url, CommitFiles};
use crate::report::Mask;
use crate::spec::{self, Context};
use crate::swarm;
use crate::work::Runner;

/// A requested plan as the runner needs it.
#[derive(Clone, Debug)]
pub struct Preview {
    pub id: String,
    pub reference: String,
    pub application: String,
    pub repository: String,
    pub spec_path: String,
    pub environment: String,
}

macro_rules! preview_from {
    ($module:ident) => {
        impl From<$module::PlanWork> for Preview {
            fn from(w: $module::PlanWork) -> Self {
                Preview {
                    id: w.id,
                    reference: w.ref_,
                    application: w.application.name,
                    repository: w.application.repository,
                    spec_path: w.application.spec_path,
                    environment: w.environment.name,
                }
            }
        }
    };
}
preview_from!(requested_plans);
preview_from!(plan_requested);
preview_from!(claim_plan);

/// The longest a preview's fetch may take: well within the time the API
/// waits for an answer before it expires the plan (10 minutes).
const FETCH_AT_MOST: Duration = Duration::from_secs(300);
/// How long the answer is retried while the API cannot be reached.
const FINISH_PATIENCE: Duration = Duration::from_secs(60);

/// What a preview found: the commit, the diff, and warnings.
struct Planned {
    sha: String,
    diff: serde_json::Value,
    warnings: Vec<String>,
}

/// Why a preview could not answer, with the commit when it got that far.
struct Failed {
    sha: Option<String>,
    why: String,
}

/// Plans `preview`, which this runner claimed, and answers it.
pub(crate) async fn answer(runner: &Runner, preview: Preview) {
    let span = tracing::info_span!("plan", id = %preview.id, application = %preview.application, environment = %preview.environment);
    async {
        let mask = Mask::new(
            runner
                .secrets
                .values()
                .cloned()
                .chain(runner.registry_auth.secret_values()),
        );
        let variables = match plan(runner, &preview).await {
            Ok(planned) => {
                // The diff names paths and images, not values; masked anyway.
                let mut diff = planned.diff;
                mask_strings(&mut diff, &mask);
                finish_plan::Variables {
                    id: preview.id.clone(),
                    sha: Some(planned.sha),
                    result: Some(diff),
                    message: (!planned.warnings.is_empty())
                        .then(|| mask.apply(&planned.warnings.join("\n"))),
                }
            }
            Err(failed) => {
                tracing::info!(why = %failed.why, "the plan failed");
                finish_plan::Variables {
                    id: preview.id.clone(),
                    sha: failed.sha,
                    result: None,
                    message: Some(mask.apply(&failed.why)),
                }
            }
        };
        finish(runner, variables).await;
    }
    .instrument(span)
    .await
}

/// The steps: fetch, plan, resolve, compare. None writes to the swarm.
async fn plan(runner: &Runner, preview: &Preview) -> Result<Planned, Failed> {
    let fetched = runner
        .mirrors
        .fetch(
            &preview.repository,
            &preview.reference,
            // A full commit id is fetched as one, as a deployment's sha is.
            is_sha(&preview.reference).then_some(preview.reference.as_str()),
            runner.fetch_timeout.min(FETCH_AT_MOST),
        )
        .await
        .map_err(|err| Failed {
            sha: None,
            why: format!(
                "fetching {} at {}: {err}",
                redact_url(&preview.repository),
                preview.reference
            ),
        })?;
    let sha = fetched.sha.clone();
    let failed = |why: String| Failed {
        sha: Some(sha.clone()),
        why,
    };
    let ctx = Context {
        application: preview.application.clone(),
        environment: preview.environment.clone(),
        deployment: "plan".into(),
        sha: fetched.sha.clone(),
        ref_name: preview.reference.clone(),
        secrets: runner.secrets.clone(),
    };
    let mut plan = CommitFiles::open(&fetched.mirror, &fetched.sha)
        .map_err(|e| e.to_string())
        .and_then(|files| spec::load(&files, &preview.spec_path, &ctx).map_err(|e| e.to_string()))
        .map_err(failed)?;
    let engine = &runner.engine;
    let deployed = swarm::apply::snapshot(engine, &plan.stack)
        .await
        .map_err(|err| failed(format!("reading stack {}: {err}", plan.stack)))?;
    if let Some(owner) = deployed.owned_by_other(&preview.application, &preview.environment) {
        return Err(failed(format!(
            "a deployment would change nothing: {owner}"
        )));
    }
    let resolution = swarm::resolve(engine, &mut plan, &deployed, &runner.registry_auth)
        .await
        .map_err(|err| failed(format!("a deployment would stop here: {err}")))?;
    let diff = swarm::diff::diff(engine, &plan)
        .await
        .map_err(|err| failed(format!("comparing with stack {}: {err}", plan.stack)))?;
    let mut warnings = plan.warnings.clone();
    warnings.extend(resolution.warnings);
    Ok(Planned {
        sha: fetched.sha,
        diff: serde_json::json!({"stack": plan.stack, "services": diff}),
        warnings,
    })
}

/// Masks the secrets in every string of `value`, keys included.
fn mask_strings(value: &mut serde_json::Value, mask: &Mask) {
    use serde_json::Value;
    match value {
        Value::String(text) => *text = mask.apply(text),
        Value::Array(items) => items.iter_mut().for_each(|item| mask_strings(item, mask)),
        Value::Object(map) => {
            let masked = std::mem::take(map)
                .into_iter()
                .map(|(key, mut item)| {
                    mask_strings(&mut item, mask);
                    (mask.apply(&key), item)
                })
                .collect();
            *map = masked;
        }
        _ => {}
    }
}

fn is_sha(text: &str) -> bool {
    matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Sends the answer, retrying while the API cannot be reached.
async fn finish(runner: &Runner, variables: finish_plan::Variables) {
    let deadline = Instant::now() + FINISH_PATIENCE;
    let mut wait = Duration::from_millis(200);
    loop {
        match runner.client.run::<FinishPlan>(variables.clone()).await {
            Ok(_) => return,
            Err(err) if err.is_transient() && Instant::now() < deadline => {
                tracing::warn!(%err, "answering the plan; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(%err, "could not answer the plan");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_a_diff_is_masked() {
        let mask = Mask::new(["s3cr\"et".to_owned()]);
        let mut diff = serde_json::json!({
            "stack": "shop",
            "services": [{"name": "web", "image": "r/s3cr\"et:1", "changes": ["/Env/s3cr\"et"]}],
        });
        mask_strings(&mut diff, &mask);
        assert!(!diff.to_string().contains("s3cr"), "{diff}");
        assert_eq!(diff["stack"], "shop");
    }

    #[test]
    fn full_commit_ids_are_shas_and_refs_are_not() {
        assert!(is_sha(&"a".repeat(40)));
        assert!(is_sha(&"0".repeat(64)));
        assert!(!is_sha("main"));
        assert!(!is_sha(&"A".repeat(40)));
        assert!(!is_sha(&"a".repeat(41)));
    }
}

//! Releases: what ran in an environment and for how long (`slipway
//! releases`), restoring one (`slipway rollback`), letting pushes deploy
//! again after a rollback paused them (`slipway resume`), and how the other
//! environments of an application differ from one (`slipway status
//! --against`).
//!
//! Services are shown as the Compose file names them (`web`): the API has
//! them with their stack's prefix (`shop-production_web`), which is another
//! one in every environment.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use slipway_client::operations::{
    cli_compare, cli_releases, cli_resume_auto_deploy, cli_rollback_deployment, CliCompare,
    CliReleases, CliResumeAutoDeploy, CliRollbackDeployment,
};
use slipway_client::Client;

use crate::commands::{client, not_found, print_json};
use crate::config::{EnvArgs, Output, ReleasesArgs, RollbackArgs};
use crate::follow;
use crate::view::{self, short, table, time, Service};

pub async fn list(args: ReleasesArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let page = releases(&client, &args, args.limit, None).await?;
    if output == Output::Json {
        print_json(&page.nodes);
        return Ok(ExitCode::SUCCESS);
    }
    let shown: Vec<view::Release> = view::read(&page.nodes);
    if shown.is_empty() {
        println!(
            "no releases of {} in {} yet: a deployment that succeeds there is one",
            args.application, args.environment
        );
        return Ok(ExitCode::SUCCESS);
    }
    // The release before the oldest one shown, to say what that one changed.
    let info = &page.page_info;
    let older: Option<view::Release> = match (info.has_next_page, &info.end_cursor) {
        (true, Some(cursor)) => {
            let rest = releases(&client, &args, 1, Some(cursor.clone())).await?;
            view::read::<_, Vec<view::Release>>(&rest.nodes)
                .into_iter()
                .next()
        }
        _ => None,
    };
    let stack = default_stack(&args.application, &args.environment);
    let rows: Vec<Vec<String>> = shown
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let changed = match shown.get(i + 1).or(older.as_ref()) {
                None => "all (first)".to_owned(),
                Some(previous) => describe(
                    &differences(&r.services, &stack, &previous.services, &stack),
                    "new",
                    "removed",
                ),
            };
            let served = match (&r.deployed_at, &r.replaced_at) {
                (_, None) => "serving".to_owned(),
                (Some(from), Some(to)) => view::duration(from, to),
                (None, Some(_)) => "-".to_owned(),
            };
            vec![
                r.deployment.name.clone(),
                r.sha.as_deref().map(short).unwrap_or("-").to_owned(),
                r.task.clone(),
                changed,
                r.created_by.clone(),
                r.deployed_at
                    .as_deref()
                    .map(time)
                    .unwrap_or_else(|| "-".into()),
                served,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "RELEASE",
                "SHA",
                "TASK",
                "IMAGES CHANGED",
                "BY",
                "DEPLOYED",
                "SERVED"
            ],
            &rows
        )
    );
    if page.page_info.has_next_page {
        println!("(older ones not shown: --limit N)");
    }
    Ok(ExitCode::SUCCESS)
}

/// A page of the releases `args` names, newest first.
async fn releases(
    client: &Client,
    args: &ReleasesArgs,
    first: i64,
    after: Option<String>,
) -> anyhow::Result<cli_releases::CliReleasesApplicationEnvironmentReleases> {
    let data = client
        .run::<CliReleases>(cli_releases::Variables {
            application: args.application.clone(),
            environment: args.environment.clone(),
            first: Some(first),
            after,
        })
        .await?;
    let Some(app) = data.application else {
        return Err(not_found(format!(
            "no application named {:?}",
            args.application
        )));
    };
    let Some(env) = app.environment else {
        return Err(not_found(format!(
            "{} has no environment named {:?}",
            app.name, args.environment
        )));
    };
    Ok(env.releases)
}

pub async fn rollback(args: RollbackArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliRollbackDeployment>(cli_rollback_deployment::Variables {
            application: args.application.clone(),
            environment: args.environment.clone(),
            to: args.to,
            reason: args.reason.clone(),
        })
        .await?;
    let answer = &data.rollback_deployment;
    let queued: view::Deployment = view::read(answer);
    let rollback: view::Rollback = view::read(answer);
    if output == Output::Text {
        let what = match &rollback.restores {
            Some(r) => format!(
                "roll back {} to {} ({})",
                queued.environment.name,
                r.deployment.name,
                r.sha.as_deref().map(short).unwrap_or("no commit")
            ),
            None => rollback.description.clone().unwrap_or_default(),
        };
        println!("queued {}: {what}", queued.name);
        println!("  reason: {}", args.reason.trim());
        println!(
            "  auto-deploys of {} are paused until someone deploys it or runs \
             `slipway resume {} {}`",
            queued.environment.name, queued.application.name, queued.environment.name
        );
        if !args.follow {
            println!("  follow it with `slipway logs {} --follow`", queued.id);
        }
    }
    if args.follow {
        return follow::follow(&client, queued, output).await;
    }
    if output == Output::Json {
        print_json(answer);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(args: EnvArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliResumeAutoDeploy>(cli_resume_auto_deploy::Variables {
            application: args.application,
            environment: args.environment,
        })
        .await?;
    if output == Output::Json {
        print_json(&data.resume_auto_deploy);
        return Ok(ExitCode::SUCCESS);
    }
    let env: view::Environment = view::read(&data.resume_auto_deploy);
    match &env.auto_deploy_ref {
        Some(branch) => println!(
            "auto-deploys of {} of {} resumed: pushes to {branch} deploy here again",
            env.name, env.application.name
        ),
        None => println!(
            "auto-deploys of {} of {} resumed (none come: no branch deploys here automatically)",
            env.name, env.application.name
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The stack an environment deploys unless its spec names another.
fn default_stack(application: &str, environment: &str) -> String {
    format!("{application}-{environment}")
}

/// A service's name as its Compose file has it: without `<stack>_`. A stack
/// the spec names itself is not known here; its prefix is taken to end at the
/// first `_`.
fn service_name<'a>(full: &'a str, stack: &str) -> &'a str {
    full.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .or_else(|| full.split_once('_').map(|(_, name)| name))
        .unwrap_or(full)
}

/// What identifies the image a service runs: its digest, or the image as
/// written when it has none (a local image).
fn image_key(service: &Service) -> &str {
    service.digest.as_deref().unwrap_or(&service.image)
}

/// A service whose image differs between two releases.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// As the Compose file names it.
    pub service: String,
    /// What it runs in the release looked at; `None` where it does not run.
    pub here: Option<Service>,
    /// What it runs in the release compared with.
    pub base: Option<Service>,
}

/// The services of `here` (of stack `here_stack`) whose image differs from
/// `base`'s, in `here`'s order, then those only `base` has.
pub fn differences(
    here: &[Service],
    here_stack: &str,
    base: &[Service],
    base_stack: &str,
) -> Vec<Difference> {
    let here_by_name: BTreeMap<&str, &Service> = here
        .iter()
        .map(|s| (service_name(&s.name, here_stack), s))
        .collect();
    let base_by_name: BTreeMap<&str, &Service> = base
        .iter()
        .map(|s| (service_name(&s.name, base_stack), s))
        .collect();
    let mut out = Vec::new();
    for s in here {
        let name = service_name(&s.name, here_stack);
        let other = base_by_name.get(name).copied();
        if other.map(image_key) != Some(image_key(s)) {
            out.push(Difference {
                service: name.to_owned(),
                here: Some(s.clone()),
                base: other.cloned(),
            });
        }
    }
    for s in base {
        let name = service_name(&s.name, base_stack);
        if !here_by_name.contains_key(name) {
            out.push(Difference {
                service: name.to_owned(),
                here: None,
                base: Some(s.clone()),
            });
        }
    }
    out
}

/// `web, worker (new), cache (removed)`; `—` when nothing differs. `only_here`
/// and `only_base` say what a service that runs on one side only is.
fn describe(differences: &[Difference], only_here: &str, only_base: &str) -> String {
    if differences.is_empty() {
        return "—".to_owned();
    }
    differences
        .iter()
        .map(|d| match (&d.here, &d.base) {
            (Some(_), None) => format!("{} ({only_here})", d.service),
            (None, Some(_)) => format!("{} ({only_base})", d.service),
            _ => d.service.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `status --against ENV`: every other environment of an application
/// compared with ENV's release.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Against {
    pub environment: String,
    /// Its release; `None` when it has none, and then nothing is compared.
    pub release: Option<String>,
    pub sha: Option<String>,
    pub environments: Vec<Comparison>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub environment: String,
    pub release: Option<String>,
    pub sha: Option<String>,
    /// Whether it runs the same commit; `None` when either commit is not known.
    pub same_commit: Option<bool>,
    /// The services whose image (digest) differs from the compared release's.
    pub different_images: Vec<Difference>,
    /// How many commits it is behind and ahead of the compared release, as
    /// the API knows them; `None` when it does not.
    pub commits: Option<CommitsApart>,
    /// The forge's page of the commits between the two releases (GitHub,
    /// GitLab), when the commits differ.
    pub compare_url: Option<String>,
}

/// How far one release is from another, in commits.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitsApart {
    /// Commits the compared release has and this one does not.
    pub behind: i64,
    /// Commits this release has and the compared one does not.
    pub ahead: i64,
    /// False when part of the history is not known to the API: the figures
    /// are the commits it knows, and the true ones may be higher.
    pub exact: bool,
}

impl std::fmt::Display for CommitsApart {
    /// `3 commits behind`, `1 commit ahead`, `at least 3 behind, 1 ahead`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let commits = |n: i64| if n == 1 { "commit" } else { "commits" };
        if !self.exact {
            f.write_str("at least ")?;
        }
        match (self.behind, self.ahead) {
            (0, 0) => f.write_str("no commits apart"),
            (behind, 0) => write!(f, "{behind} {} behind", commits(behind)),
            (0, ahead) => write!(f, "{ahead} {} ahead", commits(ahead)),
            (behind, ahead) => write!(f, "{behind} behind, {ahead} ahead"),
        }
    }
}

/// Compares the environments of `application` (as `status` read them) with
/// `base`'s release; the compare URLs come from the API.
pub async fn against(
    client: &Client,
    application: &str,
    base: &str,
    environments: &[view::Placed],
) -> anyhow::Result<Against> {
    let Some(base_env) = environments.iter().find(|e| e.name == base) else {
        return Err(not_found(format!(
            "{application} has no environment named {base:?}"
        )));
    };
    let Some(base_release) = &base_env.release else {
        return Ok(Against {
            environment: base.to_owned(),
            release: None,
            sha: None,
            environments: Vec::new(),
        });
    };
    let compared = client
        .run::<CliCompare>(cli_compare::Variables {
            application: application.to_owned(),
            from: base_release.deployment.id.clone(),
            base: base.to_owned(),
        })
        .await?
        .application
        .map(|app| app.environments)
        .unwrap_or_default();
    let distances: BTreeMap<String, CommitsApart> = compared
        .iter()
        .filter_map(|e| {
            let d = e.commit_distance.as_ref()?;
            Some((
                e.name.clone(),
                CommitsApart {
                    behind: d.behind,
                    ahead: d.ahead,
                    exact: d.exact,
                },
            ))
        })
        .collect();
    let urls: BTreeMap<String, String> = compared
        .into_iter()
        .filter_map(|e| Some((e.name, e.release?.compare_url?)))
        .collect();
    let base_stack = default_stack(application, base);
    let compared = environments
        .iter()
        .filter(|e| e.name != base)
        .map(|e| {
            let Some(release) = &e.release else {
                return Comparison {
                    environment: e.name.clone(),
                    release: None,
                    sha: None,
                    same_commit: None,
                    different_images: Vec::new(),
                    commits: None,
                    compare_url: None,
                };
            };
            let same_commit = match (&release.sha, &base_release.sha) {
                (Some(here), Some(there)) => Some(here == there),
                _ => None,
            };
            Comparison {
                environment: e.name.clone(),
                release: Some(release.deployment.name.clone()),
                sha: release.sha.clone(),
                same_commit,
                different_images: differences(
                    &release.services,
                    &default_stack(application, &e.name),
                    &base_release.services,
                    &base_stack,
                ),
                commits: distances.get(&e.name).copied(),
                compare_url: match same_commit {
                    Some(true) => None,
                    _ => urls.get(&e.name).cloned(),
                },
            }
        })
        .collect();
    Ok(Against {
        environment: base.to_owned(),
        release: Some(base_release.deployment.name.clone()),
        sha: base_release.sha.clone(),
        environments: compared,
    })
}

/// `against` as text: a line naming the release compared with, and a table.
pub fn print_against(against: &Against) {
    let Some(release) = &against.release else {
        println!(
            "\n{} has no release yet: nothing to compare with",
            against.environment
        );
        return;
    };
    let sha = against.sha.as_deref().map(short).unwrap_or("no commit");
    println!(
        "\ncompared with {} ({release}, {sha}):",
        against.environment
    );
    if against.environments.is_empty() {
        println!("no other environments");
        return;
    }
    let only_base = format!("only in {}", against.environment);
    let only_here = format!("not in {}", against.environment);
    let rows: Vec<Vec<String>> = against
        .environments
        .iter()
        .map(|c| {
            let Some(release) = &c.release else {
                return vec![c.environment.clone(), "-".into(), "no release".into()];
            };
            vec![
                c.environment.clone(),
                release.clone(),
                match (c.same_commit, c.commits) {
                    (Some(true), _) => "same commit".to_owned(),
                    (Some(false), Some(apart)) => apart.to_string(),
                    (Some(false), None) => "different commit".to_owned(),
                    (None, _) => "commit not known".to_owned(),
                },
                describe(&c.different_images, &only_here, &only_base),
                c.compare_url.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "ENVIRONMENT",
        "RELEASE",
        "COMMIT",
        "DIFFERENT IMAGES",
        "COMPARE",
    ];
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|mut row| {
            row.resize(header.len(), String::new());
            row
        })
        .collect();
    print!("{}", table(&header, &rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, image: &str, digest: Option<&str>) -> Service {
        Service {
            name: name.to_owned(),
            image: image.to_owned(),
            digest: digest.map(str::to_owned),
        }
    }

    #[test]
    fn differences_go_by_digest_or_by_image_without_one_across_stacks() {
        let production = [
            service("shop-production_web", "shop/web:1", Some("sha256:a")),
            service("shop-production_worker", "shop/worker:1", Some("sha256:b")),
            service("shop-production_cache", "redis:7", None),
            service("shop-production_old", "shop/old:1", None),
        ];
        let staging = [
            // Another tag, the same digest: the same image.
            service("shop-staging_web", "shop/web:main", Some("sha256:a")),
            service("shop-staging_worker", "shop/worker:1", Some("sha256:c")),
            service("shop-staging_cache", "redis:8", None),
            service("shop-staging_new", "shop/new:1", None),
        ];
        let found = differences(&staging, "shop-staging", &production, "shop-production");
        let names: Vec<&str> = found.iter().map(|d| d.service.as_str()).collect();
        assert_eq!(names, ["worker", "cache", "new", "old"]);
        assert_eq!(
            describe(&found, "new", "removed"),
            "worker, cache, new (new), old (removed)"
        );
        assert_eq!(found[0].base, Some(production[1].clone()));
        assert!(differences(
            &production,
            "shop-production",
            &production,
            "shop-production"
        )
        .is_empty());
        assert_eq!(describe(&[], "new", "removed"), "—");
    }

    #[test]
    fn commits_apart_say_which_way_and_whether_exactly() {
        let apart = |behind, ahead, exact| {
            CommitsApart {
                behind,
                ahead,
                exact,
            }
            .to_string()
        };
        assert_eq!(apart(3, 0, true), "3 commits behind");
        assert_eq!(apart(1, 0, true), "1 commit behind");
        assert_eq!(apart(0, 1, true), "1 commit ahead");
        assert_eq!(apart(0, 12, true), "12 commits ahead");
        assert_eq!(apart(2, 1, true), "2 behind, 1 ahead");
        assert_eq!(apart(2, 1, false), "at least 2 behind, 1 ahead");
        assert_eq!(apart(4, 0, false), "at least 4 commits behind");
    }

    #[test]
    fn a_service_of_a_stack_the_spec_names_loses_its_prefix_too() {
        assert_eq!(
            service_name("shop-production_web", "shop-production"),
            "web"
        );
        assert_eq!(
            service_name("frontdoor_web_api", "shop-production"),
            "web_api"
        );
        assert_eq!(service_name("web", "shop-production"), "web");
    }
}

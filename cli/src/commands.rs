//! The client commands: each one GraphQL operation (or a few) over
//! `slipway-client`, printed as text for people or JSON for scripts.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use slipway_client::operations::{
    cli_approve_deployment, cli_audit_log, cli_cancel_deployment, cli_create_application,
    cli_create_deployment, cli_create_environment, cli_deployment_logs, cli_deployments,
    cli_lock_environment, cli_reject_deployment, cli_set_approval_policy, cli_set_required_checks,
    cli_status, cli_unlock_environment, CliApproveDeployment, CliAuditLog, CliCancelDeployment,
    CliCreateApplication, CliCreateDeployment, CliCreateEnvironment, CliDeploymentLogs,
    CliDeployments, CliLockEnvironment, CliRejectDeployment, CliSetApprovalPolicy,
    CliSetRequiredChecks, CliStatus, CliUnlockEnvironment,
};
use slipway_client::Client;

use crate::config::{
    ApiArgs, AppCreateArgs, ApproveArgs, AuditArgs, CancelArgs, DeployArgs, DeploymentsArgs,
    EnvApprovalArgs, EnvArgs, EnvChecksArgs, EnvCreateArgs, EnvLockArgs, LogsArgs, Output,
    RejectArgs, StatusArgs,
};
use crate::view::{self, short, table, time};
use crate::{follow, releases};

/// A client for the API the flags name.
pub fn client(api: &ApiArgs) -> anyhow::Result<Client> {
    let token = api.token().map_err(anyhow::Error::msg)?;
    Ok(Client::new(&api.api_url, &token))
}

/// The error of something the API does not have, as the API would say it.
pub fn not_found(message: String) -> anyhow::Error {
    slipway_client::Error::Api {
        code: slipway_client::Code::NotFound,
        message,
    }
    .into()
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("answers serialize")
    );
}

pub async fn app_create(args: AppCreateArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let repository = repository_url(&args.repository);
    let data = client
        .run::<CliCreateApplication>(cli_create_application::Variables {
            input: cli_create_application::CreateApplicationInput {
                name: args.name,
                repository,
                spec_path: args.spec_path,
            },
        })
        .await?;
    let app = data.create_application;
    match output {
        Output::Json => print_json(&app),
        Output::Text => println!(
            "created application {} (repository {}, spec {})",
            app.name, app.repository, app.spec_path
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// A path to a local repository becomes a `file://` URL the runner can clone;
/// anything else is passed on as written.
fn repository_url(repository: &str) -> String {
    let looks_like_url = repository.contains("://") || repository.contains('@');
    if looks_like_url {
        return repository.to_owned();
    }
    match std::path::Path::new(repository).canonicalize() {
        Ok(path) if path.is_dir() => format!("file://{}", path.display()),
        _ => repository.to_owned(),
    }
}

pub async fn env_create(args: EnvCreateArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliCreateEnvironment>(cli_create_environment::Variables {
            input: cli_create_environment::CreateEnvironmentInput {
                application: args.application,
                name: args.environment,
                auto_deploy_ref: args.auto_deploy_ref,
                url: args.url,
                queue_policy: None,
                max_queued: None,
                runner_labels: (!args.runner_labels.is_empty()).then_some(args.runner_labels),
            },
        })
        .await?;
    print_environment(&data.create_environment, "created", output);
    Ok(ExitCode::SUCCESS)
}

pub async fn env_lock(args: EnvLockArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliLockEnvironment>(cli_lock_environment::Variables {
            application: args.application,
            environment: args.environment,
            reason: args.reason,
        })
        .await?;
    print_environment(&data.lock_environment, "locked", output);
    Ok(ExitCode::SUCCESS)
}

pub async fn env_unlock(args: EnvArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliUnlockEnvironment>(cli_unlock_environment::Variables {
            application: args.application,
            environment: args.environment,
        })
        .await?;
    print_environment(&data.unlock_environment, "unlocked", output);
    Ok(ExitCode::SUCCESS)
}

pub async fn env_approval(args: EnvApprovalArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliSetApprovalPolicy>(cli_set_approval_policy::Variables {
            application: args.application,
            environment: args.environment,
            required: args.required,
            not_by_creator: args.not_by_creator,
        })
        .await?;
    let done = match (args.required, args.not_by_creator) {
        (false, _) => "takes deployments without an approval",
        (true, false) => "needs an approval for each deployment (`slipway approve ID`)",
        (true, true) => "needs an approval for each deployment, not by its creator",
    };
    print_environment(&data.set_approval_policy, done, output);
    Ok(ExitCode::SUCCESS)
}

pub async fn env_checks(args: EnvChecksArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliSetRequiredChecks>(cli_set_required_checks::Variables {
            application: args.application,
            environment: args.environment,
            checks: Some(args.names),
            all: Some(args.all),
            timeout_minutes: args.timeout,
        })
        .await?;
    let done = match &data.set_required_checks.required_checks {
        None => "takes deployments without waiting for checks".to_owned(),
        Some(required) => {
            let mut what: Vec<String> = required.names.iter().map(|n| format!("`{n}`")).collect();
            if required.all {
                what.push(if what.is_empty() {
                    "every check".to_owned()
                } else {
                    "every other check".to_owned()
                });
            }
            format!(
                "waits for {} to pass on each deployment's commit (for at most {} minutes)",
                what.join(" and "),
                required.timeout_minutes
            )
        }
    };
    print_environment(&data.set_required_checks, &done, output);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_environment(answer: &impl Serialize, done: &str, output: Output) {
    if output == Output::Json {
        return print_json(answer);
    }
    let env: view::Environment = view::read(answer);
    let mut text = format!(
        "{done} environment {} of {}",
        env.name, env.application.name
    );
    if let Some(url) = &env.url {
        text.push_str(&format!(", url {url}"));
    }
    if let Some(branch) = &env.auto_deploy_ref {
        text.push_str(&format!(", pushes to {branch} deploy here"));
    }
    if let Some(lock) = &env.lock {
        text.push_str(&format!(
            "; locked by {} at {}: {}",
            lock.locked_by,
            time(&lock.locked_at),
            lock.reason
        ));
    }
    println!("{text}");
}

pub async fn deploy(args: DeployArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliCreateDeployment>(cli_create_deployment::Variables {
            input: cli_create_deployment::CreateDeploymentInput {
                application: args.application,
                environment: args.environment,
                ref_: args.reference,
                sha: args.sha,
                task: args.task,
                payload: None,
                external_id: None,
                description: args.description,
                // A person asked for it.
                auto_deploy: Some(false),
                override_freeze: args.override_freeze,
                force: Some(args.force),
            },
        })
        .await?;
    let created: view::Deployment = view::read(&data.create_deployment);
    if args.follow {
        return follow::follow(&client, created, output).await;
    }
    match output {
        Output::Json => print_json(&data.create_deployment),
        Output::Text => println!(
            "{} {} (id {}): {} of {} to {}; follow it with `slipway logs {} --follow`",
            created.name,
            created.status,
            created.id,
            created.task,
            created.reference,
            created.environment.name,
            created.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    if args.nodes {
        return crate::nodes::print(&client, args.application.as_deref(), output).await;
    }
    let mut data = client.run::<CliStatus>(cli_status::Variables).await?;
    if let Some(name) = &args.application {
        data.applications.retain(|app| &app.name == name);
        data.queued.nodes.retain(|d| &d.application.name == name);
        if data.applications.is_empty() {
            return Err(not_found(format!("no application named {name:?}")));
        }
    }
    let against = match (&args.against, data.applications.first()) {
        (Some(base), Some(app)) => Some(
            releases::against(
                &client,
                &app.name,
                base,
                &view::read::<_, Vec<view::Placed>>(&app.environments),
            )
            .await?,
        ),
        _ => None,
    };
    if output == Output::Json {
        let mut value = serde_json::to_value(&data)?;
        if let Some(against) = &against {
            value["against"] = serde_json::to_value(against)?;
        }
        print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    if data.applications.is_empty() {
        println!("no applications yet: `slipway app create NAME REPOSITORY`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut queued: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for d in &data.queued.nodes {
        queued
            .entry((d.application.name.clone(), d.environment.name.clone()))
            .or_default()
            .push(match &d.gate {
                Some(gate) => format!("{} ({}) at {:?}", d.name, d.id, gate.kind),
                None => format!("{} ({})", d.name, d.id),
            });
    }
    let gates: Vec<String> = data
        .queued
        .nodes
        .iter()
        .filter_map(|d| {
            let gate = d.gate.as_ref()?;
            Some(format!(
                "{} ({}) waits for {}{}",
                d.name,
                d.id,
                gate.waiting_for,
                match view::read::<_, view::Gate>(gate).kind.as_str() {
                    "APPROVAL" => format!(
                        ": `slipway approve {}` or `slipway reject {} --comment WHY`",
                        d.id, d.id
                    ),
                    "CHECKS" => checks_line(&view::read::<_, Vec<view::Check>>(&d.checks)),
                    _ => String::new(),
                }
            ))
        })
        .collect();
    let mut rows = Vec::new();
    for app in &data.applications {
        if app.environments.is_empty() {
            rows.push(vec![
                app.name.clone(),
                "-".into(),
                "no environments yet".into(),
            ]);
        }
        for env in &app.environments {
            let (release, sha, deployed) = match &env.release {
                Some(r) => (
                    format!("{} ({})", r.deployment.name, r.deployment.id),
                    r.sha.as_deref().map(short).unwrap_or("-").to_owned(),
                    r.deployed_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let in_progress = match &env.in_progress {
                Some(d) => {
                    let phase = d.phase.as_ref().map(|p| format!("{p:?}"));
                    format!(
                        "{} ({}) {}{}",
                        d.name,
                        d.id,
                        d.ref_,
                        phase.map(|p| format!(" {p}")).unwrap_or_default()
                    )
                }
                None => "-".into(),
            };
            let waiting = queued
                .get(&(app.name.clone(), env.name.clone()))
                .map(|q| q.join(", "))
                .unwrap_or_else(|| "-".into());
            let lock = match &env.lock {
                Some(l) => format!("locked by {}: {}", l.locked_by, l.reason),
                None => "-".into(),
            };
            rows.push(vec![
                app.name.clone(),
                env.name.clone(),
                release,
                sha,
                deployed,
                in_progress,
                waiting,
                lock,
            ]);
        }
    }
    let header = [
        "APPLICATION",
        "ENVIRONMENT",
        "RELEASE",
        "SHA",
        "DEPLOYED",
        "IN PROGRESS",
        "QUEUED",
        "LOCK",
    ];
    for row in &mut rows {
        row.resize(header.len(), String::new());
    }
    print!("{}", table(&header, &rows));
    let pauses: Vec<String> = data
        .applications
        .iter()
        .flat_map(|app| {
            app.environments.iter().filter_map(move |env| {
                let pause = env.auto_deploy_pause.as_ref()?;
                let rollback = pause
                    .rollback
                    .as_ref()
                    .map(|d| format!(" (rollback {})", d.name))
                    .unwrap_or_default();
                Some(format!(
                    "{} {}: auto-deploys paused by {} at {}{rollback}: {}; \
                     `slipway resume {} {}` lets them deploy again",
                    app.name,
                    env.name,
                    pause.paused_by,
                    pause.paused_at.format("%Y-%m-%d %H:%M:%S"),
                    pause.reason,
                    app.name,
                    env.name
                ))
            })
        })
        .collect();
    if !pauses.is_empty() {
        println!("\n{}", pauses.join("\n"));
    }
    if !gates.is_empty() {
        println!("\n{}", gates.join("\n"));
    }
    if let Some(against) = &against {
        releases::print_against(against);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(args: AuditArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliAuditLog>(cli_audit_log::Variables {
            application: args.application,
            actor: args.actor,
            first: Some(args.limit),
        })
        .await?;
    let entries = &data.audit_log.nodes;
    if output == Output::Json {
        print_json(entries);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("nothing recorded");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let on: Vec<&str> = [&e.application, &e.environment, &e.object]
                .into_iter()
                .filter_map(|part| part.as_deref())
                .collect();
            let result = match &e.error {
                Some(error) => format!("{}: {error}", e.result),
                None => e.result.clone(),
            };
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.role.clone().unwrap_or_else(|| "-".into()),
                e.via.clone(),
                e.action.clone(),
                if on.is_empty() {
                    "-".into()
                } else {
                    on.join(" ")
                },
                e.ip.clone().unwrap_or_else(|| "-".into()),
                result,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["AT", "ACTOR", "ROLE", "VIA", "ACTION", "ON", "FROM", "RESULT"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn deployments(args: DeploymentsArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliDeployments>(cli_deployments::Variables {
            application: Some(args.application.clone()),
            environment: args.environment.clone(),
            first: Some(args.limit),
        })
        .await?;
    if output == Output::Json {
        print_json(&data.deployments.nodes);
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<view::Deployment> = view::read(&data.deployments.nodes);
    if list.is_empty() {
        println!("no deployments of {} yet", args.application);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.name.clone(),
                d.environment.name.clone(),
                d.reference.clone(),
                d.sha.as_deref().map(short).unwrap_or("-").to_owned(),
                d.status.clone(),
                d.created_by.clone(),
                time(&d.created_at),
                d.finished_at
                    .as_deref()
                    .map(time)
                    .unwrap_or_else(|| "-".into()),
                d.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "DEPLOYMENT",
                "ENVIRONMENT",
                "REF",
                "SHA",
                "STATUS",
                "BY",
                "CREATED",
                "FINISHED",
                "MESSAGE"
            ],
            &rows
        )
    );
    if data.deployments.page_info.has_next_page {
        println!("(older ones not shown: --limit N)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines read per request.
const LOG_PAGE: i64 = 1000;

pub async fn logs(args: LogsArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    if args.follow {
        let deployment = follow::current(&client, &args.id).await?;
        return follow::follow(&client, deployment, output).await;
    }
    let mut after = 0;
    loop {
        let data = client
            .run::<CliDeploymentLogs>(cli_deployment_logs::Variables {
                id: args.id.clone(),
                after,
                first: LOG_PAGE,
            })
            .await?;
        let Some(deployment) = data.deployment else {
            return Err(not_found(format!("no deployment with id {}", args.id)));
        };
        let count = deployment.logs.len() as i64;
        for line in &deployment.logs {
            after = line.seq;
            match output {
                Output::Json => println!("{}", serde_json::to_string(line)?),
                Output::Text => println!("{}", follow::log_text(&view::read(line))),
            }
        }
        if count < LOG_PAGE {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

pub async fn cancel(args: CancelArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliCancelDeployment>(cli_cancel_deployment::Variables { id: args.id })
        .await?;
    if output == Output::Json {
        print_json(&data.cancel_deployment);
        return Ok(ExitCode::SUCCESS);
    }
    let d: view::Deployment = view::read(&data.cancel_deployment);
    if d.status == "CANCELLED" {
        println!("{} CANCELLED", d.name);
    } else {
        println!(
            "{} {}: cancel requested; its runner stops and rolls back (`slipway logs {} --follow`)",
            d.name, d.status, d.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approve(args: ApproveArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliApproveDeployment>(cli_approve_deployment::Variables {
            id: args.id,
            comment: args.comment,
        })
        .await?;
    if output == Output::Json {
        print_json(&data.approve_deployment);
        return Ok(ExitCode::SUCCESS);
    }
    let d: view::Deployment = view::read(&data.approve_deployment);
    match &d.gate {
        Some(gate) => println!(
            "{} approved; it still waits for {}",
            d.name, gate.waiting_for
        ),
        None => println!(
            "{} approved; it goes in its turn (`slipway logs {} --follow`)",
            d.name, d.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reject(args: RejectArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliRejectDeployment>(cli_reject_deployment::Variables {
            id: args.id,
            comment: args.comment,
        })
        .await?;
    if output == Output::Json {
        print_json(&data.reject_deployment);
        return Ok(ExitCode::SUCCESS);
    }
    let d: view::Deployment = view::read(&data.reject_deployment);
    println!(
        "{} {}: {}",
        d.name,
        d.status,
        d.message.as_deref().unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// "; ci/build passed, test pending (https://…)": what the provider last
/// saw of a deployment's checks; "; no report yet" before it said anything.
fn checks_line(checks: &[view::Check]) -> String {
    if checks.is_empty() {
        return "; no check reported yet".to_owned();
    }
    let each: Vec<String> = checks
        .iter()
        .map(|c| {
            let state = match c.state.as_str() {
                "SUCCESS" => "passed",
                "FAILURE" => "failed",
                _ => "pending",
            };
            match &c.url {
                Some(url) => format!("{} {state} ({url})", c.name),
                None => format!("{} {state}", c.name),
            }
        })
        .collect();
    format!("; {}", each.join(", "))
}

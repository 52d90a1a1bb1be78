//! Runner pools: `slipway runners` lists the runners, `slipway env runners`
//! sets which of them may deploy an environment.

use std::process::ExitCode;

use slipway_client::operations::{
    cli_runners, cli_set_runner_labels, CliRunners, CliSetRunnerLabels,
};

use crate::commands::{client, print_environment, print_json};
use crate::config::{ApiArgs, EnvRunnersArgs, Output};
use crate::view::{table, time};

pub async fn list(api: ApiArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&api)?;
    let data = client.run::<CliRunners>(cli_runners::Variables).await?;
    if output == Output::Json {
        print_json(&data.runners);
        return Ok(ExitCode::SUCCESS);
    }
    if data.runners.is_empty() {
        println!("no runner has registered yet");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = data
        .runners
        .iter()
        .map(|r| {
            let holds: Vec<String> = r
                .holds
                .iter()
                .map(|d| format!("{} → {}", d.name, d.environment.name))
                .collect();
            vec![
                r.name.clone(),
                match &r.health {
                    cli_runners::RunnerHealth::CONNECTED => "connected".into(),
                    cli_runners::RunnerHealth::LOST => "lost".into(),
                    other => format!("{other:?}").to_lowercase(),
                },
                if r.labels.is_empty() {
                    "-".into()
                } else {
                    r.labels.join(",")
                },
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.last_instance.clone().unwrap_or_else(|| "-".into()),
                time(&r.last_seen_at.to_rfc3339()),
                if holds.is_empty() {
                    "nothing".into()
                } else {
                    holds.join(", ")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "RUNNER",
                "HEALTH",
                "LABELS",
                "VERSION",
                "INSTANCE",
                "LAST HEARD",
                "HOLDS"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn set(args: EnvRunnersArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliSetRunnerLabels>(cli_set_runner_labels::Variables {
            application: args.application,
            environment: args.environment,
            labels: args.labels,
        })
        .await?;
    let labels = &data.set_runner_labels.runner_labels;
    let done = if labels.is_empty() {
        "any runner may deploy".to_owned()
    } else {
        format!("only runners with {} may deploy", labels.join(" and "))
    };
    print_environment(&data.set_runner_labels, &done, output);
    Ok(ExitCode::SUCCESS)
}

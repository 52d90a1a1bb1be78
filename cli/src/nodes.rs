//! `slipway status --nodes`: what runs where, node by node, per environment,
//! as a runner last saw the swarm, and how it drifted from the release.

use std::process::ExitCode;

use slipway_client::operations::{cli_nodes, CliNodes};
use slipway_client::Client;

use crate::commands::{not_found, print_json};
use crate::config::Output;
use crate::view::{table, time};

/// A digest's first 12 hex characters.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub async fn print(
    client: &Client,
    application: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut data = client.run::<CliNodes>(cli_nodes::Variables).await?;
    if let Some(name) = application {
        data.applications.retain(|app| app.name == name);
        if data.applications.is_empty() {
            return Err(not_found(format!("no application named {name:?}")));
        }
    }
    if output == Output::Json {
        print_json(&data.applications);
        return Ok(ExitCode::SUCCESS);
    }
    for app in &data.applications {
        for env in &app.environments {
            let Some(nodes) = &env.nodes else {
                println!("{} {}: not seen on the swarm yet", app.name, env.name);
                continue;
            };
            println!(
                "{} {}: {} (seen {} by {})",
                app.name,
                env.name,
                if nodes.consistent {
                    "every node runs the release"
                } else {
                    "drift"
                },
                time(&nodes.observed_at.to_rfc3339()),
                nodes.observed_by
            );
            for line in &nodes.drift {
                println!("  - {line}");
            }
            let rows: Vec<Vec<String>> = nodes
                .services
                .iter()
                .flat_map(|s| {
                    let count = match s.replicas {
                        Some(want) => format!("{}/{want}", s.running),
                        None => format!("{} (global)", s.running),
                    };
                    let mut rows: Vec<Vec<String>> = s
                        .tasks
                        .iter()
                        .map(|t| {
                            vec![
                                s.name.clone(),
                                count.clone(),
                                t.node.clone().unwrap_or_else(|| "-".into()),
                                t.digest.as_deref().map(short).unwrap_or("-").to_owned(),
                                match &t.error {
                                    Some(error) => format!("{}: {error}", t.state),
                                    None => t.state.clone(),
                                },
                            ]
                        })
                        .collect();
                    if rows.is_empty() {
                        rows.push(vec![
                            s.name.clone(),
                            count,
                            "-".into(),
                            "-".into(),
                            "no task".into(),
                        ]);
                    }
                    rows
                })
                .collect();
            if !rows.is_empty() {
                for line in table(&["SERVICE", "TASKS", "NODE", "DIGEST", "STATE"], &rows).lines() {
                    println!("  {line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Notifications: `slipway env notify`, `env notifications`, `env unnotify`.

use std::process::ExitCode;

use anyhow::Context as _;
use slipway_client::operations::{
    cli_notifications, cli_remove_notification, cli_set_notification, CliNotifications,
    CliRemoveNotification, CliSetNotification,
};

use crate::commands::{client, not_found, print_json};
use crate::config::{EnvArgs, EnvNotifyArgs, EnvUnnotifyArgs, NotifyEvent, Output};
use crate::view::table;

use cli_set_notification::{DeploymentEvent, NotificationKind};

fn event(e: NotifyEvent) -> DeploymentEvent {
    match e {
        NotifyEvent::Queued => DeploymentEvent::QUEUED,
        NotifyEvent::Started => DeploymentEvent::STARTED,
        NotifyEvent::Succeeded => DeploymentEvent::SUCCEEDED,
        NotifyEvent::Failed => DeploymentEvent::FAILED,
        NotifyEvent::RolledBack => DeploymentEvent::ROLLED_BACK,
        NotifyEvent::Cancelled => DeploymentEvent::CANCELLED,
    }
}

/// The events a kind is told when none are named.
fn default_events(kind: &NotificationKind) -> Vec<NotifyEvent> {
    use NotifyEvent::*;
    match kind {
        NotificationKind::SENTRY => vec![Started, Succeeded],
        _ => vec![Started, Succeeded, Failed, RolledBack, Cancelled],
    }
}

/// An enum's name as GraphQL spells it (`ROLLED_BACK`).
fn name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub async fn set(args: EnvNotifyArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let (kind, target) = match (args.slack, args.webhook, args.sentry) {
        (Some(url), _, _) => (NotificationKind::SLACK, url),
        (_, Some(url), _) => (NotificationKind::WEBHOOK, url),
        (_, _, Some(url)) => (NotificationKind::SENTRY, url),
        _ => unreachable!("clap requires one target"),
    };
    let secret = match &args.secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?
                .trim_end()
                .to_owned(),
        ),
        None => None,
    };
    let events = if args.events.is_empty() {
        default_events(&kind)
    } else {
        args.events
    };
    let data = client
        .run::<CliSetNotification>(cli_set_notification::Variables {
            input: cli_set_notification::SetNotificationInput {
                application: args.application.clone(),
                environment: args.environment.clone(),
                kind,
                target,
                secret,
                events: events.into_iter().map(event).collect(),
            },
        })
        .await?;
    let set = &data.set_notification;
    if output == Output::Json {
        print_json(set);
        return Ok(ExitCode::SUCCESS);
    }
    let n = &set.notification;
    let events: Vec<String> = n.events.iter().map(name).collect();
    println!(
        "notification {} of {} {}: {} {} told {}",
        n.id,
        args.application,
        args.environment,
        name(&n.kind),
        n.target,
        events.join(", ")
    );
    if let Some(secret) = &set.secret {
        println!("signing secret (shown this once; give it to the receiver): {secret}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(args: EnvArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliNotifications>(cli_notifications::Variables {
            application: args.application.clone(),
            environment: args.environment.clone(),
        })
        .await?;
    let Some(environment) = data.application.and_then(|a| a.environment) else {
        return Err(not_found(format!(
            "environment {} of {} does not exist",
            args.environment, args.application
        )));
    };
    let notifications = environment.notifications;
    if output == Output::Json {
        print_json(&notifications);
        return Ok(ExitCode::SUCCESS);
    }
    if notifications.is_empty() {
        println!("{} {} tells nobody", args.application, args.environment);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = notifications
        .iter()
        .map(|listed| {
            let n = &listed.cli_notification_view;
            let events: Vec<String> = n.events.iter().map(name).collect();
            let last = match listed.deliveries.nodes.first() {
                Some(d) => {
                    let mut last = format!("{} {}", name(&d.event), name(&d.state));
                    if let Some(answer) = &d.last_answer {
                        last.push_str(&format!(" ({answer})"));
                    }
                    last
                }
                None => "-".into(),
            };
            vec![
                n.id.clone(),
                name(&n.kind),
                n.target.clone(),
                events.join(","),
                match &n.disabled {
                    Some(disabled) => format!("disabled: {}", disabled.reason),
                    None => "on".into(),
                },
                last,
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "KIND", "TARGET", "EVENTS", "STATE", "LAST"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(args: EnvUnnotifyArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliRemoveNotification>(cli_remove_notification::Variables { id: args.id })
        .await?;
    let n = &data.remove_notification;
    if output == Output::Json {
        print_json(n);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "notification {} removed: nothing more is sent to {}",
        n.id, n.target
    );
    Ok(ExitCode::SUCCESS)
}

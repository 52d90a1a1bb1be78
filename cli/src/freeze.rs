//! Freeze windows: `slipway env freeze`, `env freezes`, `env unfreeze`, and
//! `slipway override-freeze` for a deployment that waits for one's end.

use std::process::ExitCode;

use slipway_client::operations::{
    cli_add_freeze_window, cli_freeze_windows, cli_override_freeze, cli_remove_freeze_window,
    CliAddFreezeWindow, CliFreezeWindows, CliOverrideFreeze, CliRemoveFreezeWindow,
};

use crate::commands::{client, print_json};
use crate::config::{EnvArgs, EnvFreezeArgs, EnvUnfreezeArgs, Output, OverrideFreezeArgs};
use crate::view::{table, time};

/// `2h`, `90m`, `3d` as a person reads a window's length.
fn minutes(total: i64) -> String {
    match (total / 1440, total % 1440 / 60, total % 60) {
        (d, 0, 0) if d > 0 => format!("{d}d"),
        (0, h, 0) => format!("{h}h"),
        (0, 0, m) => format!("{m}m"),
        (d, h, m) => {
            let mut text = String::new();
            if d > 0 {
                text.push_str(&format!("{d}d"));
            }
            if h > 0 {
                text.push_str(&format!("{h}h"));
            }
            if m > 0 {
                text.push_str(&format!("{m}m"));
            }
            text
        }
    }
}

pub async fn add(args: EnvFreezeArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliAddFreezeWindow>(cli_add_freeze_window::Variables {
            application: args.application.clone(),
            environment: args.environment.clone(),
            cron: args.cron,
            duration_minutes: args.duration.num_minutes(),
            time_zone: args.time_zone,
            reason: args.reason,
            mode: if args.refuse {
                cli_add_freeze_window::FreezeMode::REFUSE
            } else {
                cli_add_freeze_window::FreezeMode::WAIT
            },
        })
        .await?;
    let w = &data.add_freeze_window;
    if output == Output::Json {
        print_json(w);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "freeze window {} of {} {}: from `{}` ({}) for {}, new deployments {}: {}{}",
        w.id,
        args.application,
        args.environment,
        w.cron,
        w.time_zone,
        minutes(w.duration_minutes),
        if args.refuse {
            "are refused"
        } else {
            "wait for its end"
        },
        w.reason,
        match &w.active_until {
            Some(until) => format!("; in force now, until {}", time(&until.to_rfc3339())),
            None => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn list(args: EnvArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliFreezeWindows>(cli_freeze_windows::Variables {
            application: args.application.clone(),
            environment: args.environment.clone(),
        })
        .await?;
    let Some(env) = data.application.and_then(|a| a.environment) else {
        anyhow::bail!(
            "{} has no environment {} (or there is no application {})",
            args.application,
            args.environment,
            args.application
        );
    };
    if output == Output::Json {
        print_json(&env.freeze_windows);
        return Ok(ExitCode::SUCCESS);
    }
    if env.freeze_windows.is_empty() {
        println!(
            "{} {} has no freeze windows (`slipway env freeze` adds one)",
            args.application, args.environment
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = env
        .freeze_windows
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.cron.clone(),
                w.time_zone.clone(),
                minutes(w.duration_minutes),
                match w.mode {
                    cli_freeze_windows::FreezeMode::REFUSE => "refuse".into(),
                    _ => "wait".into(),
                },
                match &w.active_until {
                    Some(until) => format!("until {}", time(&until.to_rfc3339())),
                    None => "-".into(),
                },
                format!("{} ({})", w.reason, w.created_by),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["ID", "CRON", "ZONE", "FOR", "MODE", "IN FORCE", "REASON"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(args: EnvUnfreezeArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliRemoveFreezeWindow>(cli_remove_freeze_window::Variables { id: args.id })
        .await?;
    let w = &data.remove_freeze_window;
    match output {
        Output::Json => print_json(w),
        Output::Text => println!(
            "removed freeze window {} (`{}` {}, {}); deployments already waiting for its end \
             keep waiting (`slipway override-freeze ID` lets one through)",
            w.id, w.cron, w.time_zone, w.reason
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn override_freeze(args: OverrideFreezeArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = client(&args.api)?;
    let data = client
        .run::<CliOverrideFreeze>(cli_override_freeze::Variables {
            id: args.id,
            reason: args.reason,
        })
        .await?;
    if output == Output::Json {
        print_json(&data.override_freeze);
        return Ok(ExitCode::SUCCESS);
    }
    let d: crate::view::Deployment = crate::view::read(&data.override_freeze);
    match &d.gate {
        Some(gate) => println!(
            "{} is through the freeze; it still waits for {}",
            d.name, gate.waiting_for
        ),
        None => println!(
            "{} is through the freeze; it goes in its turn (`slipway logs {} --follow`)",
            d.name, d.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

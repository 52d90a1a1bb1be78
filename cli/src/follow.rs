//! Following a deployment to its end: phase changes and log lines as they
//! come, a progress line when stdout is a terminal, plain lines otherwise,
//! JSON lines for scripts. The exit code says whether it succeeded.
//!
//! Log lines come from `deploymentLogs`, which replays what is stored and
//! then follows live lines, each once, and completes when the deployment
//! ends; a broken connection is resumed after the last line seen. Phases come
//! from `deploymentEvents`, and a periodic read covers a lost event stream.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use slipway_client::operations::{
    cli_deployment, cli_deployment_events, cli_deployment_log_lines, CliDeployment,
    CliDeploymentEvents, CliDeploymentLogLines,
};
use slipway_client::Client;

use crate::config::Output;
use crate::view::{self, Deployment, LogLine};

/// How long the API may stay unreachable while following.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
/// How often the deployment is read again, in case an event was missed.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// The deployment `id` as it is now.
pub async fn current(client: &Client, id: &str) -> anyhow::Result<Deployment> {
    let data = client
        .run::<CliDeployment>(cli_deployment::Variables { id: id.to_owned() })
        .await?;
    match data.deployment {
        Some(d) => Ok(view::read(&d)),
        None => Err(crate::commands::not_found(format!(
            "no deployment with id {id}"
        ))),
    }
}

/// Shows `deployment` until it ends; success is exit code 0, anything else 1.
pub async fn follow(
    client: &Client,
    deployment: Deployment,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut screen = Screen::new(output, deployment.clone());
    screen.deployment(&deployment);
    let id = deployment.id.clone();
    let mut events = subscribe_events(client, &id).await;
    let mut last_seq = 0;
    let mut logs = subscribe_logs(client, &id, last_seq).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    let mut last_poll = Instant::now();
    loop {
        tokio::select! {
            line = logs.next() => match line {
                Some(Ok(data)) => {
                    let line: LogLine = view::read(&data.deployment_logs);
                    last_seq = line.seq;
                    screen.log(&line);
                }
                // Completed: the deployment has ended and every line was sent.
                None => break,
                Some(Err(err)) => {
                    logs = resubscribe_logs(client, &id, last_seq, err).await?;
                    if events.is_none() {
                        events = subscribe_events(client, &id).await;
                    }
                }
            },
            event = next_event(&mut events) => match event {
                Some(Ok(data)) => screen.deployment(&view::read(&data.deployment_events)),
                _ => events = None,
            },
            _ = tick.tick() => {
                screen.redraw();
                if last_poll.elapsed() >= POLL_EVERY {
                    last_poll = Instant::now();
                    if let Ok(now) = current(client, &id).await {
                        screen.deployment(&now);
                    }
                }
            }
        }
    }
    let end = current(client, &id).await?;
    screen.finish(&end);
    Ok(if end.status == "SUCCEEDED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

type Events =
    BoxStream<'static, Result<cli_deployment_events::ResponseData, slipway_client::Error>>;
type Logs =
    BoxStream<'static, Result<cli_deployment_log_lines::ResponseData, slipway_client::Error>>;

async fn subscribe_events(client: &Client, id: &str) -> Option<Events> {
    client
        .subscribe::<CliDeploymentEvents>(cli_deployment_events::Variables { id: id.to_owned() })
        .await
        .ok()
}

async fn subscribe_logs(client: &Client, id: &str, after: i64) -> anyhow::Result<Logs> {
    Ok(client
        .subscribe::<CliDeploymentLogLines>(cli_deployment_log_lines::Variables {
            id: id.to_owned(),
            after_seq: after,
        })
        .await?)
}

/// Subscribes again after the last line seen, for as long as [`RECONNECT_FOR`].
async fn resubscribe_logs(
    client: &Client,
    id: &str,
    after: i64,
    mut err: slipway_client::Error,
) -> anyhow::Result<Logs> {
    let since = Instant::now();
    loop {
        if since.elapsed() > RECONNECT_FOR {
            return Err(anyhow::Error::new(err).context(format!(
                "lost the API for {}s while following",
                RECONNECT_FOR.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match client
            .subscribe::<CliDeploymentLogLines>(cli_deployment_log_lines::Variables {
                id: id.to_owned(),
                after_seq: after,
            })
            .await
        {
            Ok(stream) => return Ok(stream),
            Err(again) => err = again,
        }
    }
}

async fn next_event(
    events: &mut Option<Events>,
) -> Option<Result<cli_deployment_events::ResponseData, slipway_client::Error>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// A log line as text: time, the stream when it is not the runner's own, the text.
pub fn log_text(line: &LogLine) -> String {
    let at = chrono::DateTime::parse_from_rfc3339(&line.at)
        .map(|t| t.with_timezone(&chrono::Utc).format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| line.at.clone());
    match line.stream.as_str() {
        "stdout" | "system" => format!("{at} {}", line.text),
        stream => format!("{at} [{stream}] {}", line.text),
    }
}

/// Where the progress goes: a redrawn status line on a terminal, one line
/// per change otherwise, JSON lines for scripts.
struct Screen {
    output: Output,
    terminal: bool,
    started: Instant,
    shown: Deployment,
    /// What the last printed state line said, so unchanged states are not repeated.
    said: String,
    frame: usize,
    status_drawn: bool,
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

impl Screen {
    fn new(output: Output, deployment: Deployment) -> Self {
        Screen {
            output,
            terminal: output == Output::Text && std::io::stdout().is_terminal(),
            started: Instant::now(),
            shown: deployment,
            said: String::new(),
            frame: 0,
            status_drawn: false,
        }
    }

    fn state(d: &Deployment) -> String {
        let mut text = format!("{} {}", d.name, d.status);
        if let Some(phase) = &d.phase {
            if !d.is_final() {
                text.push_str(&format!(" {phase}"));
            }
        }
        if let Some(message) = &d.message {
            text.push_str(&format!(": {message}"));
        }
        text
    }

    fn deployment(&mut self, d: &Deployment) {
        // Events may arrive after a newer read; never go back from a final state.
        if self.shown.is_final() && !d.is_final() {
            return;
        }
        self.shown = d.clone();
        if d.is_final() {
            // `finish` says how it ended, once.
            return;
        }
        let state = Self::state(d);
        if state == self.said {
            return;
        }
        self.said = state.clone();
        match (self.output, self.terminal) {
            (Output::Json, _) => {
                let line = serde_json::json!({"deployment": d});
                println!("{line}");
            }
            (Output::Text, terminal) => {
                // Each change stays on screen; the status line below it
                // shows the time passing.
                self.clear();
                println!("==> {state}");
                if terminal {
                    self.redraw();
                }
            }
        }
    }

    fn log(&mut self, line: &LogLine) {
        match self.output {
            Output::Json => {
                let value = serde_json::json!({"log": {
                    "seq": line.seq, "at": line.at, "stream": line.stream, "text": line.text,
                }});
                println!("{value}");
            }
            Output::Text => {
                self.clear();
                println!("{}", log_text(line));
                if self.terminal {
                    self.redraw();
                }
            }
        }
    }

    /// Clears the status line of a terminal, so a log line can take its place.
    fn clear(&mut self) {
        if self.terminal && self.status_drawn {
            print!("\r\x1b[2K");
            self.status_drawn = false;
        }
    }

    fn redraw(&mut self) {
        if !self.terminal {
            return;
        }
        self.frame = (self.frame + 1) % SPINNER.len();
        let elapsed = self.started.elapsed().as_secs();
        let mut line = format!(
            "{} {} · {}s",
            SPINNER[self.frame],
            Self::state(&self.shown),
            elapsed
        );
        let width = terminal_width();
        if line.chars().count() > width {
            line = line.chars().take(width.saturating_sub(1)).collect();
            line.push('…');
        }
        print!("\r\x1b[2K{line}");
        let _ = std::io::stdout().flush();
        self.status_drawn = true;
    }

    fn finish(&mut self, d: &Deployment) {
        self.shown = d.clone();
        match self.output {
            Output::Json => println!("{}", serde_json::json!({"deployment": d})),
            Output::Text => {
                self.clear();
                let mark = match (self.terminal, d.status.as_str()) {
                    (false, _) => "==>",
                    (true, "SUCCEEDED") => "✔",
                    (true, _) => "✘",
                };
                let took = self.started.elapsed().as_secs();
                println!("{mark} {} (followed for {took}s)", Self::state(d));
                if let Some(url) = &d.url {
                    println!("    {url}");
                }
            }
        }
    }
}

/// Columns of the terminal, from `COLUMNS`, or 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80)
}

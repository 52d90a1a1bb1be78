//! Telling the API what a deployment does: log lines (batched, stored in
//! order, secret values masked) and phase/message updates.

use std::sync::Arc;
use std::time::Duration;

use slipway_client::operations::{
    append_deployment_logs, update_deployment_progress, AppendDeploymentLogs,
    UpdateDeploymentProgress,
};
use slipway_client::Client;
use tokio::sync::mpsc;

/// Replaces known secret values with `***`.
#[derive(Clone, Debug, Default)]
pub struct Mask {
    /// Longest first, so a secret that contains another is masked whole.
    values: Arc<Vec<String>>,
}

impl Mask {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        // Very short values would mask ordinary text; they are not secrets.
        let mut values: Vec<String> = secrets.into_iter().filter(|v| v.len() >= 4).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self {
            values: Arc::new(values),
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in self.values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "***");
            }
        }
        out
    }
}

/// How often buffered lines are sent.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most lines sent in one append.
const BATCH: usize = 500;
/// Longest line the API stores; longer ones are cut.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How long lines are retried while the API cannot be reached.
const LINE_PATIENCE: Duration = Duration::from_secs(600);

enum Command {
    Line(String, String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The log and progress of one deployment.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    id: String,
    mask: Mask,
    lines: mpsc::UnboundedSender<Command>,
}

impl Reporter {
    /// Starts the sender that appends lines in batches, in order, after the
    /// `stored` lines the deployment already has.
    pub fn start(client: Client, id: String, mask: Mask, stored: i64) -> Self {
        let (lines, mut rx) = mpsc::unbounded_channel::<Command>();
        let sender = client.clone();
        let deployment = id.clone();
        tokio::spawn(async move {
            let mut stored = stored;
            let mut buffer: Vec<append_deployment_logs::LogLineInput> = Vec::new();
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            loop {
                let command = tokio::select! {
                    command = rx.recv() => command,
                    _ = ticker.tick() => {
                        send(&sender, &deployment, &mut buffer, &mut stored).await;
                        continue;
                    }
                };
                match command {
                    Some(Command::Line(stream, text)) => {
                        buffer.push(append_deployment_logs::LogLineInput {
                            text,
                            stream: Some(stream),
                            at: Some(chrono::Utc::now()),
                        });
                        if buffer.len() >= BATCH {
                            send(&sender, &deployment, &mut buffer, &mut stored).await;
                        }
                    }
                    Some(Command::Flush(done)) => {
                        send(&sender, &deployment, &mut buffer, &mut stored).await;
                        let _ = done.send(());
                    }
                    None => {
                        send(&sender, &deployment, &mut buffer, &mut stored).await;
                        return;
                    }
                }
            }
        });
        Self {
            client,
            id,
            mask,
            lines,
        }
    }

    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Logs a line of the runner's own (stream `system`).
    pub fn line(&self, text: impl AsRef<str>) {
        self.stream_line("system", text);
    }

    pub fn stream_line(&self, stream: &str, text: impl AsRef<str>) {
        let mut text = self.mask.apply(text.as_ref());
        if text.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES - 16;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" …[truncated]");
        }
        tracing::info!(deployment = %self.id, "{text}");
        let _ = self.lines.send(Command::Line(stream.to_owned(), text));
    }

    /// Waits until every line logged so far is stored.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.lines.send(Command::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(LINE_PATIENCE + Duration::from_secs(30), wait).await;
        }
    }

    /// Sets the phase and message; answers whether a cancel was requested.
    pub async fn progress(
        &self,
        phase: Option<update_deployment_progress::DeploymentPhase>,
        message: &str,
        sha: Option<&str>,
    ) -> Result<bool, slipway_client::Error> {
        let data = self
            .client
            .run::<UpdateDeploymentProgress>(update_deployment_progress::Variables {
                id: self.id.clone(),
                phase,
                message: Some(self.mask.apply(message)),
                sha: sha.map(str::to_owned),
            })
            .await?;
        Ok(data.update_deployment_progress.cancel_requested)
    }
}

async fn send(
    client: &Client,
    id: &str,
    buffer: &mut Vec<append_deployment_logs::LogLineInput>,
    stored: &mut i64,
) {
    if buffer.is_empty() {
        return;
    }
    let lines = std::mem::take(buffer);
    // Lines are retried while the API cannot be reached (it may be restarting):
    // lines are kept in order, and none is dropped for a short outage.
    let mut wait = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + LINE_PATIENCE;
    loop {
        let result = client
            .run::<AppendDeploymentLogs>(append_deployment_logs::Variables {
                id: id.to_owned(),
                lines: lines.clone(),
                // A retry of a batch whose answer was lost stores it once.
                after: Some(*stored),
            })
            .await;
        match result {
            Ok(data) => {
                *stored = data.append_deployment_logs.log_count;
                return;
            }
            Err(err) if err.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(err) => {
                tracing::warn!(deployment = id, %err, lines = lines.len(), "could not store log lines");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mask;

    #[test]
    fn secret_values_are_masked_longest_first() {
        let mask = Mask::new([
            "hunter2-long".to_owned(),
            "hunter2".to_owned(),
            "ab".to_owned(),
        ]);
        assert_eq!(
            mask.apply("password=hunter2-long or hunter2, ab stays"),
            "password=*** or ***, ab stays"
        );
    }
}
